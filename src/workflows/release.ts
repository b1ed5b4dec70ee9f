import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  isCancellation,
  log,
  ParentClosePolicy,
  proxyActivities,
  setHandler,
  startChild,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { BackupActivities } from '../activities/backups';
import type { DatabaseRestoreActivities } from '../activities/databaseRestore';
import type { JobActivities, JobOutcome } from '../activities/jobs';
import type { KubernetesActivities } from '../activities/kubernetes';
import type { ReleaseActivities, ReleasePlan } from '../activities/release';
import { renderReleaseMarkdown, ReleaseReport } from '../reports/release';
import type { BackupDatabaseResult } from './backupDatabase';
import { RUNBOOK_DEFAULT_QUEUE } from './catalog';
import { hasChecks, runAnalysis } from './lib/analysis';
import { PREFLIGHT } from './lib/backupOptions';
import { causeText, ChildRun, childSearchAttributes, linked } from './lib/children';
import { acquireTarget } from './lib/exclusive';
import { PERMANENT_FAILURES } from './lib/failures';
import { GateRecord, Gates, startFieldProblem } from './lib/gate';
import { describe, ENVIRONMENT_NAME, InputChecker } from './lib/input';
import { ANALYSIS_MEASURE, K8S_CHANGE, K8S_READ } from './lib/kubernetesOptions';
import { runRunbook, Timeline, TimelineSnapshot } from './lib/timeline';
import type { RollbackInput, RollbackResult } from './rollback';
import { RolloutInput, RolloutResult, validateRolloutInput } from './rolloutDefs';
import type { VerifyBackupResult } from './verifyBackup';

// Reading the plan and writing the report: quick, idempotent.
const config = proxyActivities<ReleaseActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 5, nonRetryableErrorTypes: PERMANENT_FAILURES },
});
const read = proxyActivities<KubernetesActivities>(K8S_READ);
const backups = proxyActivities<BackupActivities>(PREFLIGHT);
// Creating a Job: a retry finds the Job this run created.
const jobs = proxyActivities<JobActivities>(K8S_CHANGE);
// Waiting for a Job: as long as its deadline, heartbeating; a worker lost meanwhile costs the heartbeat
// timeout, and the next attempt waits for the same Job (it is never created twice).
const jobWait = proxyActivities<JobActivities>({
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '10 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 10, nonRetryableErrorTypes: PERMANENT_FAILURES },
});
// Restoring the pre-release backup into the live database: a transfer (hours for a large database).
const restore = proxyActivities<DatabaseRestoreActivities>({
  startToCloseTimeout: '12 hours',
  heartbeatTimeout: '30 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '10 seconds', backoffCoefficient: 2, maximumInterval: '5 minutes', maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
});
const measure = proxyActivities<KubernetesActivities>(ANALYSIS_MEASURE);

/** What the release passes to its rollout (see RolloutInput), plus its own gates' timeouts. */
export type ReleaseInput = Pick<
  RolloutInput,
  'environment' | 'deployment' | 'strategy' | 'steps' | 'analysis' | 'backgroundAnalysis' | 'comparison' | 'healthTimeoutSeconds' | 'gateTimeoutSeconds' | 'onGateTimeout' | 'remindEverySeconds' | 'start'
> & {
  /** The new image of the released container (releases.<deployment>.container, else the first). */
  image: string;
  /** How long the release approval waits before the release stops unchanged (default 14400). */
  approvalTimeoutSeconds?: number;
  /** How long the restore approval and the forward-fix gate wait (default 86400). */
  decisionTimeoutSeconds?: number;
};

export type ReleasePhase = 'preflight' | 'backup' | 'restore test' | 'approval' | 'migration' | 'rollout' | 'watch' | 'compensating' | 'reporting' | 'done';

export interface ReleaseStatus {
  deployment: string;
  image: string;
  database?: string;
  policy?: ReleasePlan['onFailure'];
  phase: ReleasePhase;
  waitingFor?: string;
  children: { backup?: ChildRun; restoreTest?: ChildRun; rollout?: ChildRun; rollback?: ChildRun };
  backupId?: string;
  migration?: { job: string; succeeded?: boolean; exitCode?: number };
  approvals: GateRecord[];
  outcome?: ReleaseReport['outcome'];
  reason?: string;
}

export type ReleaseResult = ReleaseReport & { runbook: 'release'; reportKeys: string[]; timeline: TimelineSnapshot };

export const releaseStatusQuery = defineQuery<ReleaseStatus>('status');

export function validateReleaseInput(input: unknown): ReleaseInput {
  const check = InputChecker.of('release', input);
  const v = check.value;
  check.matches('environment', ENVIRONMENT_NAME, 'an environment name');
  const rolloutFields = ['environment', 'deployment', 'image', 'strategy', 'steps', 'analysis', 'backgroundAnalysis', 'comparison', 'healthTimeoutSeconds', 'gateTimeoutSeconds', 'onGateTimeout', 'remindEverySeconds'] as const satisfies readonly (keyof RolloutInput)[];
  if (typeof v.image !== 'string') check.problem(`image: expected an image reference with a tag or digest (registry/app:1.2.3), found ${describe(v.image)}`);
  try {
    validateRolloutInput(Object.fromEntries(Object.entries(v).filter(([k]) => (rolloutFields as readonly string[]).includes(k))));
  } catch (err) {
    const text = (err as Error).message.replace(/^invalid rollout input: /, '');
    for (const p of text.split('; ')) if (!p.startsWith('environment:') && !(typeof v.image !== 'string' && p.startsWith('image:'))) check.problem(p);
  }
  const known: string[] = [...rolloutFields, 'start', 'approvalTimeoutSeconds', 'decisionTimeoutSeconds'];
  for (const k of Object.keys(v)) if (!known.includes(k)) check.problem(`${k}: unknown field; expected one of ${known.join(', ')}`);
  const startProblem = startFieldProblem(v.start);
  if (startProblem) check.problem(startProblem);
  for (const f of ['approvalTimeoutSeconds', 'decisionTimeoutSeconds'] as const) {
    const t = v[f];
    if (t !== undefined && !(typeof t === 'number' && Number.isInteger(t) && t >= 1 && t <= 30 * 86_400)) check.problem(`${f}: expected 1 to 2592000 seconds, found ${describe(t)}`);
  }
  check.done();
  return v as unknown as ReleaseInput;
}

/** Why the release stopped: before any change (blocked, not approved) or after (rolled back, aborted, failed). */
class ReleaseStop extends Error {
  constructor(
    readonly type: 'ReleaseBlocked' | 'ReleaseNotApproved' | 'ReleaseRolledBack' | 'ReleaseFailed',
    readonly outcome: ReleaseReport['outcome'],
    message: string,
  ) {
    super(message);
  }
}

/**
 * A release of a service and its database as one durable run with one timeline: a fresh backup (the
 * backup runbook as a child), optionally a restore test of it, a signed approval, the schema migration
 * as a Kubernetes Job from the new image (its log's tail as evidence), the gated rollout (a child),
 * and a watch window. When anything fails after the migration, the Deployment is rolled back and the
 * database handled by the configured policy: a down-migration Job, a restore of the pre-release backup
 * (after a signed approval: it discards writes made since), or a forward fix (page, wait at a gate).
 */
export async function release(rawInput: ReleaseInput): Promise<ReleaseResult> {
  const input = validateReleaseInput(rawInput);
  const { workflowId } = workflowInfo();
  const gates = new Gates('release', input.environment);
  const status: ReleaseStatus = { deployment: input.deployment, image: input.image, phase: 'preflight', children: {}, approvals: [] };
  setHandler(releaseStatusQuery, () => ({ ...status, children: { ...status.children }, approvals: gates.list() }));
  const decisionMs = (input.decisionTimeoutSeconds ?? 86_400) * 1000;

  return runRunbook('release', input.environment, async (timeline: Timeline) => {
    gates.attach(timeline);
    const releaseId = `release-${uuid4().replace(/-/g, '').slice(0, 12)}`;
    const short = releaseId.slice(-6);
    const by = (step: string) => ({ workflowId, step });
    const report: ReleaseReport = {
      releaseId,
      workflowId,
      environment: input.environment,
      deployment: input.deployment,
      database: '',
      image: input.image,
      outcome: 'released',
      passed: false,
      policy: 'down-migration',
      startedAt: new Date(Date.now()).toISOString(),
      endedAt: '',
      steps: [],
    };
    let plan!: ReleasePlan;
    let migrated = false;
    let migrationJob: { name: string; timeoutMs: number } | undefined;
    let rollout: RolloutResult | undefined;
    // An abort cancels what runs forward (the rollout child among it); compensation runs outside.
    const forward = new CancellationScope();
    void condition(() => gates.aborted !== undefined && status.phase !== 'done' && status.phase !== 'compensating').then(() => forward.cancel());
    const abortText = () => `aborted by ${gates.aborted!.principal} (key ${gates.aborted!.fingerprint})${gates.aborted!.reason ? `: ${gates.aborted!.reason}` : ''}`;

    const writeReport = async (): Promise<string[]> => {
      status.phase = 'reporting';
      report.endedAt = new Date(Date.now()).toISOString();
      report.steps = timeline.snapshot().steps;
      const { keys } = await config.writeReleaseReport({ releaseId, json: report, markdown: renderReleaseMarkdown(report) });
      return keys;
    };

    const runJob = async (kind: 'migrate' | 'down', spec: NonNullable<ReleasePlan['down']>, evidence: Record<string, unknown>): Promise<JobOutcome & { command: string[] }> => {
      const name = `${input.deployment.slice(0, 40)}-${kind}-${short}`;
      status.waitingFor = `the ${kind === 'migrate' ? 'migration' : 'down-migration'} Job ${name}`;
      const started = await jobs.startJob({
        name,
        deployment: input.deployment,
        container: plan.container,
        image: kind === 'migrate' ? input.image : (rollout?.previousImages.find((c) => c.name === (plan.container ?? rollout?.previousImages[0]?.name))?.image ?? input.image),
        command: spec.command,
        env: spec.env,
        timeoutMs: spec.timeoutMs,
        labels: { 'runbook.dev/release': releaseId, 'runbook.dev/job': kind === 'migrate' ? 'migration' : 'down-migration' },
        by: by(kind === 'migrate' ? 'migrate' : 'down-migration'),
      });
      evidence.job = started.name;
      if (kind === 'migrate') migrationJob = { name, timeoutMs: spec.timeoutMs };
      const outcome = await jobWait.waitForJob({ name, timeoutMs: spec.timeoutMs });
      status.waitingFor = undefined;
      Object.assign(evidence, { succeeded: outcome.succeeded, exitCode: outcome.exitCode ?? null, pod: outcome.pod ?? null, reason: outcome.reason ?? null, logSource: outcome.logSource, logTail: outcome.logTail.split('\n').slice(-10).join('\n') });
      return { ...outcome, command: spec.command };
    };

    /** The database after a failure, by the policy; returns what became of it. */
    const handleDatabase = async (why: string): Promise<NonNullable<ReleaseReport['compensation']>['database']> => {
      const c = report.compensation!;
      if (plan.onFailure === 'down-migration') {
        const down = await timeline.step('compensate: down-migration', async (evidence) => runJob('down', plan.down!, evidence));
        c.downMigration = down;
        if (!down.succeeded) throw new ReleaseStop('ReleaseFailed', 'failed', `${why}; the Deployment is back, but the down-migration Job ${down.name} failed (${down.reason ?? `exit ${down.exitCode}`}): the database is left migrated; see its log in the report`);
        return 'migrated back';
      }
      if (plan.onFailure === 'restore') {
        const backupId = report.backup!.backupId;
        const gate = await timeline.step('compensate: approve the restore', async (evidence) => {
          status.waitingFor = `a signed approval to restore ${plan.database} to backup ${backupId} (it discards every write since the backup): runbook release approve ${input.deployment}`;
          gates.announce('run failed', `${input.deployment}: ${why}; restoring ${plan.database} to the pre-release backup ${backupId} waits for a signed approval`.slice(0, 500));
          const g = await gates.wait(`restore ${plan.database} to backup ${backupId}, discarding writes since`, decisionMs);
          status.waitingFor = undefined;
          Object.assign(evidence, { outcome: g.outcome, by: g.by ?? null, fingerprint: g.fingerprint ?? null, reason: g.reason ?? null });
          return g;
        });
        c.restore = { gate, backupId };
        if (gate.outcome !== 'approved') throw new ReleaseStop('ReleaseFailed', 'failed', `${why}; the Deployment is back, but the restore of ${plan.database} was ${gate.outcome}${gate.by ? ` by ${gate.by}` : ''}: the database is left migrated`);
        await timeline.step('compensate: restore the database', async (evidence) => {
          status.waitingFor = `${plan.database} restored from backup ${backupId}`;
          try {
            const r = await restore.restoreBackupIntoLiveDatabase({ environment: input.environment, database: plan.database, backupId, restoreId: short });
            Object.assign(c.restore!, { keptAside: r.keptAside, checks: r.checks.length, durationMs: r.durationMs });
            Object.assign(evidence, { backupId, bytes: r.bytes, sha256: r.sha256, tablesChecked: r.checks.length, keptAside: r.keptAside, durationMs: r.durationMs });
          } catch (err) {
            c.restore!.error = causeText(err);
            throw new ReleaseStop('ReleaseFailed', 'failed', `${why}; the restore of ${plan.database} from ${backupId} failed: ${causeText(err)}`);
          } finally {
            status.waitingFor = undefined;
          }
        });
        return 'restored from the backup';
      }
      // forward-fix: the migration stays; people are paged and the run waits until someone signs off the fix.
      const gate = await timeline.step('compensate: forward fix', async (evidence) => {
        gates.announce('run failed', `${input.deployment}: ${why}; ${plan.database} stays migrated (policy forward-fix): fix forward, then sign off with runbook release approve ${input.deployment}`.slice(0, 500));
        status.waitingFor = `a forward fix of ${plan.database}, signed off by an approver (approve: fixed; reject: not fixed)`;
        const g = await gates.wait(`forward fix of ${plan.database} after the failed release`, decisionMs);
        status.waitingFor = undefined;
        Object.assign(evidence, { outcome: g.outcome, by: g.by ?? null, fingerprint: g.fingerprint ?? null, reason: g.reason ?? null });
        return g;
      });
      c.forwardFix = { gate };
      if (gate.outcome !== 'approved') throw new ReleaseStop('ReleaseFailed', 'failed', `${why}; the forward fix was ${gate.outcome}${gate.by ? ` by ${gate.by}` : ''}: the database is left migrated`);
      return 'left migrated';
    };

    /** Rolls the Deployment back through the rollback runbook (when the rollout has not done so itself). */
    const rollBackDeployment = async (why: string): Promise<void> => {
      const c = report.compensation!;
      await timeline.step('compensate: roll back the Deployment', async (evidence) => {
        const rollbackInput: RollbackInput = {
          environment: input.environment,
          deployment: input.deployment,
          toRevision: rollout?.previousRevision,
          analysis: input.analysis,
          healthTimeoutSeconds: input.healthTimeoutSeconds,
          reason: `release ${releaseId}: ${why}`.slice(0, 1000),
        };
        const h = await startChild('rollback', {
          workflowId: `${releaseId}-rollback`,
          taskQueue: plan.taskQueues[RUNBOOK_DEFAULT_QUEUE.rollback],
          args: [rollbackInput],
          typedSearchAttributes: childSearchAttributes('rollback'),
          parentClosePolicy: ParentClosePolicy.ABANDON,
        });
        status.children.rollback = linked(h);
        try {
          const r = (await h.result()) as RollbackResult;
          c.rollback = { ...linked(h), changed: r.changed, verified: r.verified, images: r.to.images, by: 'the release' };
          Object.assign(evidence, { rollbackWorkflowId: h.workflowId, changed: r.changed, verified: r.verified, images: r.to.images.map((x) => `${x.name}=${x.image}`) });
        } catch (err) {
          c.rollback = { ...linked(h), error: causeText(err), by: 'the release' };
          throw new ReleaseStop('ReleaseFailed', 'failed', `${why}; the rollback ${h.workflowId} failed (${causeText(err)}): the database was not touched, since the new version may still serve`);
        }
      });
    };

    try {
      await gates.start(input as unknown as Record<string, unknown>);
      report.requestedBy = gates.requester ? `${gates.requester.principal} (key ${gates.requester.fingerprint})` : undefined;
      await timeline.step('preflight', async (evidence) => {
        plan = await config.describeRelease({ environment: input.environment, deployment: input.deployment });
        Object.assign(report, { database: plan.database, policy: plan.onFailure });
        Object.assign(status, { database: plan.database, policy: plan.onFailure });
        if (plan.approvers.length === 0) throw new ReleaseStop('ReleaseBlocked', 'blocked', 'approvers: no approvers are configured for release (approvers.release or approvers.default); nothing was changed');
        const d = await read.readDeployment({ deployment: input.deployment });
        if (!d.exists) throw new ReleaseStop('ReleaseBlocked', 'blocked', `deployment: ${input.deployment} does not exist; nothing was changed`);
        const container = plan.container ?? d.containers[0]?.name;
        if (!d.containers.some((c) => c.name === container)) throw new ReleaseStop('ReleaseBlocked', 'blocked', `releases.${input.deployment}.container: ${input.deployment} has no container ${container}; it has ${d.containers.map((c) => c.name).join(', ')}`);
        if (d.containers.find((c) => c.name === container)?.image === input.image) throw new ReleaseStop('ReleaseBlocked', 'blocked', `${input.deployment} already runs ${input.image}; nothing to release`);
        const db = await backups.preflightBackupTarget({ environment: input.environment, database: plan.database });
        // One change per target: the release holds its Deployment and its database; its children act under the hold.
        const heldDeployment = await acquireTarget({ environment: input.environment, runbook: 'release', kind: 'deployment', target: input.deployment });
        const heldDatabase = await acquireTarget({ environment: input.environment, runbook: 'release', kind: 'database', target: plan.database });
        Object.assign(evidence, {
          database: `${plan.database} (${db.databaseName}, PostgreSQL ${db.serverVersion})`,
          policy: plan.onFailure,
          migration: plan.migration.command.join(' '),
          images: d.containers.map((c) => `${c.name}=${c.image}`),
          newImage: input.image,
          targets: [heldDeployment && `deployment ${input.deployment} held (${heldDeployment.held})`, heldDatabase && `database ${plan.database} held (${heldDatabase.held})`].filter(Boolean),
          approvers: gates.rules.approvers,
          requester: report.requestedBy ?? gates.startedBy,
        });
      });

      await forward.run(async () => {
        status.phase = 'backup';
        await timeline.step('backup', async (evidence) => {
          const h = await startChild('backupDatabase', {
            workflowId: `${releaseId}-backup`,
            taskQueue: plan.taskQueues[RUNBOOK_DEFAULT_QUEUE.backupDatabase],
            args: [{ environment: input.environment, database: plan.database }],
            typedSearchAttributes: childSearchAttributes('backupDatabase'),
          });
          status.children.backup = linked(h);
          status.waitingFor = `the backup ${h.workflowId}`;
          const b = (await h.result().catch((err: unknown) => {
            throw new ReleaseStop('ReleaseBlocked', 'blocked', `the pre-release backup ${h.workflowId} failed (${causeText(err)}); nothing was changed`);
          })) as BackupDatabaseResult;
          status.backupId = b.backupId;
          report.backup = { ...linked(h), backupId: b.backupId, bytes: b.bytes, sha256: b.sha256, manifestKey: b.manifestKey };
          Object.assign(evidence, { backupWorkflowId: h.workflowId, backupId: b.backupId, bytes: b.bytes, sha256: b.sha256 });
        });

        if (plan.restoreTest) {
          status.phase = 'restore test';
          await timeline.step('restore test', async (evidence) => {
            const h = await startChild('verifyBackup', {
              workflowId: `${releaseId}-restore-test`,
              taskQueue: plan.taskQueues[RUNBOOK_DEFAULT_QUEUE.verifyBackup],
              args: [{ environment: input.environment, database: plan.database, selection: { mode: 'key', backupId: report.backup!.backupId } }],
              typedSearchAttributes: childSearchAttributes('verifyBackup'),
            });
            status.children.restoreTest = linked(h);
            status.waitingFor = `the restore test ${h.workflowId}`;
            try {
              const r = (await h.result()) as VerifyBackupResult;
              report.restoreTest = { ...linked(h), passed: r.passed };
              Object.assign(evidence, { restoreTestWorkflowId: h.workflowId, passed: r.passed });
            } catch (err) {
              report.restoreTest = { ...linked(h), passed: false, reason: causeText(err) };
              throw new ReleaseStop('ReleaseBlocked', 'blocked', `the restore test of backup ${report.backup!.backupId} failed (${causeText(err)}): a release needs a backup it can go back to; nothing was changed`);
            }
          });
        } else timeline.skip('restore test', `releases.${input.deployment}.restoreTest is off`);

        status.phase = 'approval';
        report.approval = await timeline.step('approval', async (evidence) => {
          status.waitingFor = `approval by ${gates.rules.approvals > 1 ? `${gates.rules.approvals} of` : 'one of'} ${gates.rules.approvers.join(', ')}: runbook release approve ${input.deployment}`;
          const g = await gates.wait(`release ${input.image} to ${input.deployment}, migrating ${plan.database}`, (input.approvalTimeoutSeconds ?? 4 * 3600) * 1000);
          status.waitingFor = undefined;
          Object.assign(evidence, { outcome: g.outcome, by: g.by ?? null, fingerprint: g.fingerprint ?? null, reason: g.reason ?? null, approvals: g.approvals.map((a) => `${a.principal} (${a.fingerprint})`) });
          if (g.outcome === 'aborted') throw new ReleaseStop('ReleaseNotApproved', 'aborted', `${abortText()} at the approval gate; nothing was changed (the backup ${report.backup?.backupId} stays)`);
          if (g.outcome !== 'approved') throw new ReleaseStop('ReleaseNotApproved', 'not approved', `the release was ${g.outcome}${g.by ? ` by ${g.by}` : ''}${g.reason ? `: ${g.reason}` : ''} at the approval gate; nothing was changed`);
          return g;
        });

        status.phase = 'migration';
        const migration = await timeline.step('migrate', async (evidence) => {
          migrated = true;
          const m = await runJob('migrate', plan.migration, evidence);
          status.migration = { job: m.name, succeeded: m.succeeded, exitCode: m.exitCode };
          report.migration = m;
          return m;
        });
        if (!migration.succeeded) throw new ReleaseStop('ReleaseRolledBack', 'rolled back', `the migration Job ${migration.name} failed (${migration.reason ?? `exit ${migration.exitCode}`})`);

        status.phase = 'rollout';
        rollout = await timeline.step('rollout', async (evidence) => {
          const rolloutInput: RolloutInput = {
            environment: input.environment,
            deployment: input.deployment,
            image: input.image,
            container: plan.container,
            strategy: input.strategy,
            steps: input.steps,
            analysis: input.analysis,
            backgroundAnalysis: input.backgroundAnalysis,
            comparison: input.comparison,
            healthTimeoutSeconds: input.healthTimeoutSeconds,
            gateTimeoutSeconds: input.gateTimeoutSeconds,
            onGateTimeout: input.onGateTimeout,
            remindEverySeconds: input.remindEverySeconds,
          };
          // The CLI's id for a rollout of this Deployment, so runbook rollout status/approve act on it.
          const h = await startChild('rollout', {
            workflowId: `rollout-${input.environment}-${input.deployment}`,
            taskQueue: plan.taskQueues[RUNBOOK_DEFAULT_QUEUE.rollout],
            args: [rolloutInput],
            typedSearchAttributes: childSearchAttributes('rollout'),
          });
          status.children.rollout = linked(h);
          status.waitingFor = `the rollout ${h.workflowId}: runbook rollout status ${input.deployment}; its pauses are approved with runbook rollout approve ${input.deployment}`;
          let r: RolloutResult;
          try {
            r = (await h.result()) as RolloutResult;
          } catch (err) {
            report.rollout = { ...linked(h), outcome: 'failed', reason: causeText(err), revision: 0, previousImages: [], finalImages: [] };
            if (isCancellation(err) && gates.aborted) throw err;
            throw new ReleaseStop('ReleaseFailed', 'failed', `the rollout ${h.workflowId} failed (${causeText(err)}); its rollback did not bring the Deployment back, so the database was not touched`);
          }
          status.waitingFor = undefined;
          report.rollout = { ...linked(h), outcome: r.outcome, reason: r.reason, revision: r.revision, previousRevision: r.previousRevision, previousImages: r.previousImages, finalImages: r.finalImages };
          Object.assign(evidence, { rolloutWorkflowId: h.workflowId, outcome: r.outcome, reason: r.reason ?? null, revision: r.revision });
          if (r.outcome === 'rolled back' || r.outcome === 'aborted') {
            report.compensation = { database: 'untouched', rollback: r.status.rollback && { ...r.status.rollback, images: r.finalImages, by: 'the rollout' } };
            throw new ReleaseStop('ReleaseRolledBack', r.outcome === 'aborted' ? 'aborted' : 'rolled back', `the rollout ended ${r.outcome}: ${r.reason}`);
          }
          return r;
        });

        if (hasChecks(input.analysis)) {
          status.phase = 'watch';
          const intervalSeconds = Math.max(1, Math.round(plan.watch.intervalMs / 1000));
          const count = Math.max(1, Math.floor(plan.watch.durationMs / plan.watch.intervalMs));
          const watched = await timeline.step('watch window', async (evidence) => {
            status.waitingFor = `${count} measurement(s), one every ${intervalSeconds} s`;
            const run = await runAnalysis('watch window', { ...input.analysis!, intervalSeconds, count }, [input.deployment], (checks) => measure.measureAnalysis({ checks }), () => undefined, { settle: true });
            status.waitingFor = undefined;
            report.watch = { passed: run.passed, reason: run.reason, measurements: run.measurements.length, of: count, intervalSeconds };
            Object.assign(evidence, { passed: run.passed, measurements: run.measurements.length, failures: run.failures, reason: run.reason ?? null });
            return run;
          });
          if (!watched.passed) throw new ReleaseStop('ReleaseRolledBack', 'rolled back', `the watch window saw the alert condition hold: ${watched.reason}`);
        } else timeline.skip('watch window', 'no analysis given (--analysis)');
      });
    } catch (err) {
      const stop =
        err instanceof ReleaseStop
          ? err
          : isCancellation(err) && gates.aborted
            ? new ReleaseStop('ReleaseRolledBack', 'aborted', abortText())
            : new ReleaseStop('ReleaseFailed', 'failed', `step '${timeline.snapshot().steps.filter((s) => s.outcome === 'failed').pop()?.name ?? '?'}' failed: ${causeText(err)}`);
      let final = gates.aborted && stop.type === 'ReleaseRolledBack' ? new ReleaseStop('ReleaseRolledBack', 'aborted', `${abortText()}${stop.outcome !== 'aborted' ? ` (${stop.message})` : ''}`) : stop;
      const reason = final.message;
      if (migrated && final.type === 'ReleaseRolledBack') {
        // After the migration: the Deployment back first (unless the rollout did it), then the database by the policy.
        status.phase = 'compensating';
        report.compensation ??= { database: 'untouched' };
        log.warn('release failed after the migration: compensating', { deployment: input.deployment, policy: plan.onFailure, reason });
        try {
          await CancellationScope.nonCancellable(async () => {
            if (migrationJob && !report.migration) {
              // Aborted while the migration ran: it runs to its end in the cluster; the database is handled after it.
              const m = await timeline.step('wait for the migration to end', async (evidence) => {
                const o = await jobWait.waitForJob(migrationJob!);
                Object.assign(evidence, { job: o.name, succeeded: o.succeeded, exitCode: o.exitCode ?? null });
                return o;
              });
              report.migration = { ...m, command: plan.migration.command };
            }
            if (report.rollout && report.compensation!.rollback === undefined) await rollBackDeployment(reason);
            report.compensation!.database = await handleDatabase(reason);
          });
        } catch (e) {
          final = e instanceof ReleaseStop ? e : new ReleaseStop('ReleaseFailed', 'failed', `${stop.message}; compensation failed: ${causeText(e)}`);
          if (report.compensation.database === 'untouched') report.compensation.database = 'left migrated';
        }
      }
      report.outcome = final.outcome;
      report.reason = final.message;
      status.outcome = report.outcome;
      status.reason = report.reason;
      const keys = await CancellationScope.nonCancellable(() => writeReport()).catch((e: unknown) => {
        log.warn('release report not written', { error: causeText(e) });
        return [] as string[];
      });
      status.phase = 'done';
      if (report.outcome === 'rolled back' || report.outcome === 'aborted') gates.announce(report.outcome === 'aborted' ? 'run aborted' : 'run rolled back', `${input.deployment}: ${report.reason}`.slice(0, 500));
      throw ApplicationFailure.create({ type: final.type, message: `release ${releaseId} of ${input.deployment}: ${report.reason}`, nonRetryable: true, details: [{ ...report, reportKeys: keys }] });
    }

    report.passed = true;
    report.outcome = 'released';
    status.outcome = 'released';
    gates.outcomeSummary = `released: ${input.deployment} runs ${input.image}, ${plan.database} migrated`;
    const reportKeys = await timeline.step('write report', async (evidence) => {
      const keys = await writeReport();
      evidence.keys = keys;
      return keys;
    });
    status.phase = 'done';
    return { ...report, runbook: 'release' as const, reportKeys };
  });
}
