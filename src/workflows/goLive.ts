import {
  ApplicationFailure,
  condition,
  defineQuery,
  defineUpdate,
  log,
  proxyActivities,
  setHandler,
  startChild,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { GoLiveActivities } from '../activities/golive';
import type { KubernetesActivities } from '../activities/kubernetes';
import { checklistItem } from '../checklist/catalog';
import { GoLiveReport, renderGoLiveMarkdown } from '../reports/golive';
import { RUNBOOK_DEFAULT_QUEUE } from './catalog';
import { AnalysisRun, AnalysisSpec, analysisProblems, runAnalysis } from './lib/analysis';
import { PERMANENT_FAILURES } from './lib/failures';
import { ANALYSIS_MEASURE } from './lib/kubernetesOptions';
import { GateRecord, Gates, startFieldProblem } from './lib/gate';
import { acquireTarget } from './lib/exclusive';
import type { SignedAct } from '../identity/policy';
import type { SignedStatement } from '../identity/statement';
import { describe, ENVIRONMENT_NAME, InputChecker } from './lib/input';
import { runRunbook, Timeline, TimelineSnapshot } from './lib/timeline';
import type { ReadinessAuditInput, ReadinessAuditResult } from './readinessAudit';
import type { RollbackInput, RollbackResult } from './rollback';
import { RolloutInput, RolloutResult, validateRolloutInput } from './rollout';
import type { SmokeTestResult } from './smokeTest';

// Reading config and writing the report: quick, idempotent, retried a few times.
const inspect = proxyActivities<GoLiveActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 5, nonRetryableErrorTypes: PERMANENT_FAILURES },
});
// One measurement of the watch window's alert condition.
const measure = proxyActivities<KubernetesActivities>(ANALYSIS_MEASURE);

const RUNBOOK_NAME = defineSearchAttributeKey('RunbookName', SearchAttributeType.KEYWORD);

/** A critical item a person accepts going live without, signed by them (act waive): shown in the report, never hidden. */
export interface GoLiveWaiver {
  item: string;
  by: string;
  fingerprint: string;
  reason: string;
  signed: SignedAct;
}

/** The gate id a waiver statement names. */
export const WAIVER_GATE = 'audit-gate';

export interface GoLiveWatch {
  /** How long to watch after the rollout (default 1800). */
  durationSeconds?: number;
  /** How often to measure (default 300). */
  intervalSeconds?: number;
  /** The alert condition: an analysis that fails when the service is unwell (default: the rollout's analysis). */
  analysis?: AnalysisSpec;
}

/** What go-live passes to its rollout (see RolloutInput), plus its own stages. */
export type GoLiveInput = Pick<RolloutInput, 'environment' | 'deployment' | 'container' | 'strategy' | 'steps' | 'analysis' | 'healthTimeoutSeconds' | 'start'> & { image: string } & GoLiveStages;

export interface GoLiveStages {
  watch?: GoLiveWatch;
  /** Passed to the readiness audit: wait for attestations, per-check deadline, certificate horizon. */
  audit?: Pick<ReadinessAuditInput, 'waitForAttestationsSeconds' | 'checkTimeoutSeconds' | 'certificateMinDays'>;
  /** When critical items block after the audit, wait this long for signed waivers (runbook golive waive) before stopping (default 0). */
  waiverWaitSeconds?: number;
  /** How long the go-live approval waits before go-live stops unchanged (default 14400). */
  approvalTimeoutSeconds?: number;
}

export interface ChildRun {
  workflowId: string;
  runId: string;
}

export type GoLivePhase = 'audit' | 'smoke test' | 'approval' | 'rollout' | 'watch' | 'rolling back' | 'reporting' | 'done';

export interface GoLiveStatus {
  deployment: string;
  image: string;
  phase: GoLivePhase;
  waitingFor?: string;
  children: { audit?: ChildRun; smoke: (ChildRun & { queue: string })[]; rollout?: ChildRun; rollback?: ChildRun };
  /** Critical items that are neither proved nor waived (set once the audit has reported). */
  blocking?: { id: string; status: string; summary: string }[];
  approvals: GateRecord[];
  /** Signed waivers accepted so far (critical items a goLive approver accepts going live without). */
  waivers: GoLiveWaiver[];
  watch?: { measurements: number; of: number; failures: Record<string, number>; lastAt?: string };
  outcome?: GoLiveReport['outcome'];
  reason?: string;
}

export type GoLiveResult = GoLiveReport & { runbook: 'goLive'; reportKeys: string[]; timeline: TimelineSnapshot };

export const goLiveStatusQuery = defineQuery<GoLiveStatus>('status');
/** Waive a critical item: a statement (act waive, gate audit-gate, the item, the reason) signed by a goLive approver. */
export const waiveUpdate = defineUpdate<GoLiveWaiver, [SignedStatement]>('waive');


export function validateGoLiveInput(input: unknown): GoLiveInput {
  const check = InputChecker.of('goLive', input);
  const v = check.value;
  check.matches('environment', ENVIRONMENT_NAME, 'an environment name');
  // The rollout's own checks, named as the rollout names them (deployment, image, steps, analysis, ...).
  const rolloutFields: string[] = ['environment', 'deployment', 'image', 'container', 'strategy', 'steps', 'analysis', 'healthTimeoutSeconds'] satisfies (keyof RolloutInput)[];
  try {
    validateRolloutInput(Object.fromEntries(Object.entries(v).filter(([k]) => rolloutFields.includes(k))));
  } catch (err) {
    const text = (err as Error).message.replace(/^invalid rollout input: /, '');
    for (const p of text.split('; ')) if (!p.startsWith('environment:')) check.problem(p);
  }
  const known = [...rolloutFields, 'start', 'watch', 'audit', 'waiverWaitSeconds', 'approvalTimeoutSeconds'];
  const startProblem = startFieldProblem(v.start);
  if (startProblem) check.problem(startProblem);
  for (const k of Object.keys(v)) if (!known.includes(k)) check.problem(`${k}: unknown field; expected one of ${known.join(', ')}`);
  const int = (x: unknown, min: number, max: number) => typeof x === 'number' && Number.isInteger(x) && x >= min && x <= max;
  const w = v.watch as Record<string, unknown> | undefined;
  if (w !== undefined && (w === null || typeof w !== 'object' || Array.isArray(w))) check.problem(`watch: expected { durationSeconds, intervalSeconds, analysis }, found ${describe(w)}`);
  else {
    for (const k of Object.keys(w ?? {})) if (!['durationSeconds', 'intervalSeconds', 'analysis'].includes(k)) check.problem(`watch.${k}: unknown field; expected durationSeconds, intervalSeconds or analysis`);
    if (w?.durationSeconds !== undefined && !int(w.durationSeconds, 1, 7 * 86_400)) check.problem(`watch.durationSeconds: expected 1 to 604800, found ${describe(w.durationSeconds)}`);
    if (w?.intervalSeconds !== undefined && !int(w.intervalSeconds, 1, 86_400)) check.problem(`watch.intervalSeconds: expected 1 to 86400, found ${describe(w.intervalSeconds)}`);
    const duration = (w?.durationSeconds as number | undefined) ?? 1800;
    const interval = (w?.intervalSeconds as number | undefined) ?? 300;
    if (int(duration, 1, 7 * 86_400) && int(interval, 1, 86_400) && interval > duration) check.problem(`watch.intervalSeconds: ${interval} s is longer than the watch window of ${duration} s`);
    for (const p of analysisProblems(w?.analysis, 'watch.analysis')) check.problem(p);
    if (w?.analysis === undefined && v.analysis === undefined) check.problem('watch.analysis: the watch window needs an alert condition: watch.analysis, or the rollout\'s analysis');
  }
  const a = v.audit as Record<string, unknown> | undefined;
  if (a !== undefined && (a === null || typeof a !== 'object' || Array.isArray(a))) check.problem(`audit: expected { waitForAttestationsSeconds, checkTimeoutSeconds, certificateMinDays }, found ${describe(a)}`);
  else {
    for (const k of Object.keys(a ?? {})) if (!['waitForAttestationsSeconds', 'checkTimeoutSeconds', 'certificateMinDays'].includes(k)) check.problem(`audit.${k}: unknown field; expected waitForAttestationsSeconds, checkTimeoutSeconds or certificateMinDays`);
    const range = (k: string, min: number, max: number) => {
      const x = a?.[k];
      if (x !== undefined && !(typeof x === 'number' && Number.isFinite(x) && x >= min && x <= max)) check.problem(`audit.${k}: expected a number from ${min} to ${max}, found ${describe(x)}`);
    };
    range('waitForAttestationsSeconds', 0, 7 * 86_400);
    range('checkTimeoutSeconds', 1, 120);
    range('certificateMinDays', 0, 365);
  }
  if (v.waivers !== undefined) check.problem('waivers: waivers are signed acts now, not input fields: runbook golive waive DEPLOYMENT --item ITEM --reason TEXT (with --waiver-wait on start)');
  if (v.waiverWaitSeconds !== undefined && !int(v.waiverWaitSeconds, 0, 7 * 86_400)) check.problem(`waiverWaitSeconds: expected 0 to 604800, found ${describe(v.waiverWaitSeconds)}`);
  const t = v.approvalTimeoutSeconds;
  if (t !== undefined && !int(t, 1, 7 * 86_400)) check.problem(`approvalTimeoutSeconds: expected 1 to 604800, found ${describe(t)}`);
  check.done();
  return v as unknown as GoLiveInput;
}

/** Why go-live stopped; the type names the stage, so a caller can tell a blocked go-live from a rolled-back one. */
class GoLiveStop extends Error {
  constructor(
    readonly type: 'GoLiveBlocked' | 'GoLiveNotApproved' | 'GoLiveRolledBack' | 'GoLiveFailed',
    readonly outcome: GoLiveReport['outcome'],
    message: string,
  ) {
    super(message);
  }
}

const causeText = (err: unknown): string => {
  let e: unknown = err;
  const parts: string[] = [];
  while (e instanceof Error) {
    if (!parts.includes(e.message)) parts.push(e.message);
    e = (e as Error & { cause?: unknown }).cause;
  }
  return parts.length ? parts[parts.length - 1] : String(err);
};

/**
 * Go-live of one Deployment: the readiness audit as a gate (every critical item passes, is attested,
 * or is waived by an approver with a reason), a smoke test on each task queue, a person's approval,
 * the gated rollout, then a watch window that rolls back on its own when the alert condition holds.
 * Every stage is a child run, linked from the report.
 */
export async function goLive(rawInput: GoLiveInput): Promise<GoLiveResult> {
  const input = validateGoLiveInput(rawInput);
  const { workflowId } = workflowInfo();
  const gates = new Gates('goLive', input.environment);
  const watchAnalysis = (input.watch?.analysis ?? input.analysis)!;
  const watchInterval = input.watch?.intervalSeconds ?? 300;
  const watchCount = Math.max(1, Math.floor((input.watch?.durationSeconds ?? 1800) / watchInterval));
  const status: GoLiveStatus = { deployment: input.deployment, image: input.image, phase: 'audit', children: { smoke: [] }, approvals: [], waivers: [] };
  setHandler(goLiveStatusQuery, () => ({ ...status, children: { ...status.children, smoke: [...status.children.smoke] }, approvals: gates.list(), waivers: [...status.waivers] }));
  const waived = new Map<string, GoLiveWaiver>();
  const checkWaiver = (w: SignedStatement) => {
    if (status.phase !== 'audit') throw new Error('waivers are taken only at the audit gate, before the smoke tests');
    const item = (() => {
      try {
        return (JSON.parse(w.statement) as { item?: unknown }).item;
      } catch {
        return undefined;
      }
    })();
    const found = typeof item === 'string' ? checklistItem(item) : undefined;
    if (!found) throw new Error(`item: expected a checklist item id such as persistence-database, found ${describe(item)}`);
    if (found.severity !== 'critical') throw new Error(`item: ${found.id} is ${found.severity}, not critical; only critical items gate go-live`);
    const v = gates.verifyAct(w, WAIVER_GATE, ['waive'], gates.rules.approvers, { item: found.id });
    if (v.statement.reason.trim() === '') throw new Error('reason: a waiver says why going live without the item is acceptable');
    return v;
  };
  setHandler(
    waiveUpdate,
    (w) =>
      gates.serialised(async () => {
        await gates.refresh();
        let v;
        try {
          v = checkWaiver(w);
        } catch (err) {
          gates.ignore('decide', w, (err as Error).message);
          throw ApplicationFailure.create({ type: 'DecisionRefused', message: (err as Error).message, nonRetryable: true });
        }
        const signed = gates.accept(v, w);
        const waiver: GoLiveWaiver = { item: v.statement.item!, by: v.principal, fingerprint: v.fingerprint, reason: v.statement.reason, signed };
        waived.set(waiver.item, waiver);
        status.waivers = [...waived.values()];
        await gates.onAct?.(signed);
        return waiver;
      }),
    {
      validator: (w) => {
        checkWaiver(w);
      },
    },
  );

  // Children carry this run's search attributes (environment, target), so visibility finds them as runs of their own runbook.
  const attributes = (runbook: string) => {
    const mine = workflowInfo().typedSearchAttributes;
    return mine.get(RUNBOOK_NAME) !== undefined ? mine.updateCopy([{ key: RUNBOOK_NAME, value: runbook }]) : mine;
  };
  const linked = (h: { workflowId: string; firstExecutionRunId: string }): ChildRun => ({ workflowId: h.workflowId, runId: h.firstExecutionRunId });

  return runRunbook('goLive', input.environment, async (timeline: Timeline) => {
    gates.attach(timeline);
    // Child ids come from the run's own deterministic id, not the workflow id, so a recorded history replays under any id.
    const goLiveId = `golive-${uuid4().replace(/-/g, '').slice(0, 12)}`;
    const report: GoLiveReport = {
      goLiveId,
      workflowId,
      environment: input.environment,
      deployment: input.deployment,
      image: input.image,
      outcome: 'live',
      passed: false,
      startedAt: new Date(Date.now()).toISOString(),
      endedAt: '',
      smoke: [],
      steps: [],
    };
    const writeReport = async (): Promise<string[]> => {
      status.phase = 'reporting';
      report.endedAt = new Date(Date.now()).toISOString();
      report.steps = timeline.snapshot().steps;
      const { keys } = await inspect.writeGoLiveReport({ goLiveId, json: report, markdown: renderGoLiveMarkdown(report) });
      return keys;
    };

    try {
      await gates.start(input as unknown as Record<string, unknown>);
      report.requestedBy = gates.requester ? `${gates.requester.principal} (key ${gates.requester.fingerprint})` : undefined;
      const target = await timeline.step('preflight', async (evidence) => {
        const t = await inspect.describeGoLiveTarget({ environment: input.environment });
        if (t.approvers.length === 0) throw new GoLiveStop('GoLiveBlocked', 'blocked', 'approvers: no approvers are configured for goLive (approvers.goLive or approvers.default); nothing was changed');
        Object.assign(evidence, { approvers: t.approvers, taskQueues: t.taskQueues, reportsKept: t.reportsKept, watch: { intervalSeconds: watchInterval, measurements: watchCount } });
        return t;
      });
      const queues = target.taskQueues;

      await timeline.step('audit gate', async (evidence) => {
        const h = await startChild('readinessAudit', {
          workflowId: `${goLiveId}-audit`,
          taskQueue: queues[RUNBOOK_DEFAULT_QUEUE.readinessAudit],
          args: [{ environment: input.environment, ...input.audit }],
          typedSearchAttributes: attributes('readinessAudit'),
        });
        status.children.audit = linked(h);
        status.waitingFor = input.audit?.waitForAttestationsSeconds
          ? `the readiness audit ${h.workflowId}; attest with: runbook audit --attest ITEM --comment TEXT --workflow ${h.workflowId}`
          : `the readiness audit ${h.workflowId}`;
        const audit = (await h.result()) as ReadinessAuditResult;
        status.waitingFor = undefined;
        const stillBlocking = () => audit.blocking.filter((b) => !waived.has(b.id));
        if (stillBlocking().length > 0 && (input.waiverWaitSeconds ?? 0) > 0) {
          status.blocking = stillBlocking();
          status.waitingFor = `signed waivers of ${stillBlocking().map((b) => b.id).join(', ')} by one of ${gates.rules.approvers.join(', ')}: runbook golive waive ${input.deployment} --item ITEM --reason TEXT`;
          await condition(() => stillBlocking().length === 0, input.waiverWaitSeconds! * 1000);
          status.waitingFor = undefined;
        }
        const refusedWaivers: { item: string; by: string; problem: string }[] = [];
        for (const w of waived.values()) if (!audit.blocking.some((b) => b.id === w.item)) refusedWaivers.push({ item: w.item, by: w.by, problem: `${w.item} is proved; the waiver is not needed` });
        const blocking = audit.blocking.filter((b) => !waived.has(b.id));
        report.audit = {
          ...linked(h),
          auditId: audit.auditId,
          ready: audit.ready,
          score: audit.score,
          counts: audit.counts,
          blocking,
          waived: audit.blocking.filter((b) => waived.has(b.id)).map((b) => ({ ...b, by: waived.get(b.id)!.by, fingerprint: waived.get(b.id)!.fingerprint, reason: waived.get(b.id)!.reason, signedAt: waived.get(b.id)!.signed.signedAt })),
          refusedActs: gates.list().flatMap((g) => g.ignored).concat(gates.ignoredOutsideGates()),
          refusedWaivers,
          reportKeys: audit.reportKeys,
        };
        status.blocking = blocking;
        Object.assign(evidence, { auditWorkflowId: h.workflowId, ready: audit.ready, score: audit.score, blocking: blocking.map((b) => b.id), waived: [...waived.keys()], refusedWaivers });
        if (blocking.length > 0) {
          throw new GoLiveStop(
            'GoLiveBlocked',
            'blocked',
            `stopped at the audit gate, nothing was changed: ${blocking.length} critical item(s) not proved: ${blocking.map((b) => `${b.id} (${b.status}: ${b.summary})`).join('; ')}`,
          );
        }
      });

      status.phase = 'smoke test';
      await timeline.step('smoke test', async (evidence) => {
        for (const kind of ['critical', 'standard', 'batch'] as const) {
          status.waitingFor = `a smoke test on ${queues[kind]}`;
          const h = await startChild('smokeTest', {
            workflowId: `${goLiveId}-smoke-${kind}`,
            taskQueue: queues[kind],
            args: [{ environment: input.environment }],
            typedSearchAttributes: attributes('smokeTest'),
            workflowExecutionTimeout: '5 minutes',
          });
          status.children.smoke.push({ ...linked(h), queue: queues[kind] });
          const r = (await h.result()) as SmokeTestResult;
          report.smoke.push({ ...linked(h), queue: queues[kind], roundTripMs: r.roundTripMs, worker: r.worker });
          evidence[kind] = { workflowId: h.workflowId, roundTripMs: r.roundTripMs, worker: `${r.worker.host}:${r.worker.pid}` };
        }
        status.waitingFor = undefined;
      });

      status.phase = 'approval';
      const approval = await timeline.step('approval', async (evidence) => {
        status.waitingFor = `approval by ${gates.rules.approvals > 1 ? `${gates.rules.approvals} of` : 'one of'} ${gates.rules.approvers.join(', ')}: runbook golive approve ${input.deployment}`;
        const g = await gates.wait(`go live: roll out ${input.image} to ${input.deployment}`, (input.approvalTimeoutSeconds ?? 4 * 3600) * 1000);
        status.waitingFor = undefined;
        Object.assign(evidence, { outcome: g.outcome, by: g.by ?? null, fingerprint: g.fingerprint ?? null, reason: g.reason ?? null, approvals: g.approvals.map((a) => `${a.principal} (${a.fingerprint})`), allowed: g.allowed, ignored: g.ignored });
        if (g.outcome !== 'approved') throw new GoLiveStop('GoLiveNotApproved', 'not approved', `go-live was ${g.outcome}${g.by ? ` by ${g.by}` : ''}${g.reason ? `: ${g.reason}` : ''} at the approval gate; nothing was changed`);
        return g;
      });
      report.approval = approval;

      status.phase = 'rollout';
      const rollout = await timeline.step('rollout', async (evidence) => {
        // The go-live holds the Deployment from its rollout on; its rollout and rollback children act under that hold.
        const held = await acquireTarget({ environment: input.environment, runbook: 'goLive', kind: 'deployment', target: input.deployment });
        if (held) evidence.target = `deployment ${input.deployment} held (${held.held})`;
        const rolloutInput: RolloutInput = {
          environment: input.environment,
          deployment: input.deployment,
          image: input.image,
          container: input.container,
          strategy: input.strategy,
          steps: input.steps,
          analysis: input.analysis,
          healthTimeoutSeconds: input.healthTimeoutSeconds,
        };
        // The CLI's id for a rollout of this Deployment, so runbook rollout status/approve/abort act on it.
        const h = await startChild('rollout', {
          workflowId: `rollout-${input.environment}-${input.deployment}`,
          taskQueue: queues[RUNBOOK_DEFAULT_QUEUE.rollout],
          args: [rolloutInput],
          typedSearchAttributes: attributes('rollout'),
        });
        status.children.rollout = linked(h);
        status.waitingFor = `the rollout ${h.workflowId}: runbook rollout status ${input.deployment}; its pauses are approved with runbook rollout approve ${input.deployment}`;
        const r = (await h.result()) as RolloutResult;
        status.waitingFor = undefined;
        report.rollout = { ...linked(h), outcome: r.outcome, reason: r.reason, revision: r.revision, previousImages: r.previousImages, finalImages: r.finalImages, approvals: r.status.approvals.map((g) => ({ name: g.name, outcome: g.outcome, by: g.by, fingerprint: g.fingerprint, at: g.closedAt })) };
        Object.assign(evidence, { rolloutWorkflowId: h.workflowId, outcome: r.outcome, reason: r.reason ?? null, revision: r.revision });
        if (r.outcome === 'rolled back' || r.outcome === 'aborted') throw new GoLiveStop('GoLiveRolledBack', r.outcome, `the rollout ended ${r.outcome}: ${r.reason}`);
        return r;
      });

      status.phase = 'watch';
      status.watch = { measurements: 0, of: watchCount, failures: {} };
      const watched = await timeline.step('watch window', async (evidence) => {
        status.waitingFor = `${watchCount} measurement(s), one every ${watchInterval} s`;
        const run = await runAnalysis(
          'watch window',
          { ...watchAnalysis, intervalSeconds: watchInterval, count: watchCount },
          [input.deployment],
          (checks) => measure.measureAnalysis({ checks }),
          (r) => {
            status.watch = { measurements: r.measurements.length, of: watchCount, failures: { ...r.failures }, lastAt: r.measurements[r.measurements.length - 1]?.at };
          },
          { settle: true },
        );
        status.waitingFor = undefined;
        report.watch = summary(run, watchCount, watchInterval);
        Object.assign(evidence, { passed: run.passed, measurements: run.measurements.length, failures: run.failures, errors: run.errors, reason: run.reason ?? null });
        return run;
      });

      if (!watched.passed) {
        status.phase = 'rolling back';
        log.warn('watch window breached: rolling back', { deployment: input.deployment, reason: watched.reason });
        const container = input.container ?? rollout.previousImages[0]?.name;
        const previous = rollout.previousImages.find((c) => c.name === container);
        await timeline.step('roll back', async (evidence) => {
          const rollbackInput: RollbackInput = {
            environment: input.environment,
            deployment: input.deployment,
            container,
            toImage: previous?.image,
            analysis: watchAnalysis,
            healthTimeoutSeconds: input.healthTimeoutSeconds,
            reason: `go-live ${goLiveId}: ${watched.reason}`.slice(0, 1000),
          };
          const h = await startChild('rollback', {
            workflowId: `${goLiveId}-rollback`,
            taskQueue: queues[RUNBOOK_DEFAULT_QUEUE.rollback],
            args: [rollbackInput],
            typedSearchAttributes: attributes('rollback'),
          });
          status.children.rollback = linked(h);
          status.waitingFor = `the rollback ${h.workflowId}`;
          try {
            const r = (await h.result()) as RollbackResult;
            report.rollback = { ...linked(h), changed: r.changed, verified: r.verified, images: r.to.images };
            Object.assign(evidence, { rollbackWorkflowId: h.workflowId, changed: r.changed, verified: r.verified, images: r.to.images.map((c) => `${c.name}=${c.image}`) });
          } catch (err) {
            report.rollback = { ...linked(h), error: causeText(err) };
            throw err;
          } finally {
            status.waitingFor = undefined;
          }
        });
        throw new GoLiveStop('GoLiveRolledBack', 'rolled back', `the watch window saw the alert condition hold: ${watched.reason}; ${input.deployment} was rolled back to ${previous?.image ?? 'its previous revision'}`);
      }
    } catch (err) {
      const stop =
        err instanceof GoLiveStop
          ? err
          : new GoLiveStop('GoLiveFailed', 'failed', `step '${timeline.snapshot().steps.filter((s) => s.outcome === 'failed').pop()?.name ?? '?'}' failed: ${causeText(err)}`);
      report.outcome = stop.outcome;
      report.reason = stop.message;
      status.outcome = stop.outcome;
      status.reason = stop.message;
      const keys = await writeReport().catch((e: unknown) => {
        log.warn('go-live report not written', { error: causeText(e) });
        return [] as string[];
      });
      status.phase = 'done';
      throw ApplicationFailure.create({ type: stop.type, message: `go-live ${goLiveId} of ${input.deployment}: ${stop.message}`, nonRetryable: true, details: [{ ...report, reportKeys: keys }] });
    }

    report.passed = true;
    report.outcome = 'live';
    status.outcome = 'live';
    const reportKeys = await timeline.step('write report', async (evidence) => {
      const keys = await writeReport();
      evidence.keys = keys;
      return keys;
    });
    status.phase = 'done';
    return { ...report, runbook: 'goLive' as const, reportKeys };
  });
}

function summary(run: AnalysisRun, of: number, intervalSeconds: number): NonNullable<GoLiveReport['watch']> {
  return {
    passed: run.passed,
    reason: run.reason,
    measurements: run.measurements.length,
    of,
    intervalSeconds,
    failures: run.failures,
    errors: run.errors,
    last: run.measurements[run.measurements.length - 1]?.results.map((r) => ({ name: r.name, phase: r.phase, detail: r.detail })) ?? [],
  };
}
