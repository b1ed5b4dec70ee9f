import {
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
import type { JobActivities } from '../activities/jobs';
import type { KubernetesActivities } from '../activities/kubernetes';
import type { PromotionPlan, ReleaseActivities } from '../activities/release';
import type { StepRecord } from './lib/timeline';
import { AnalysisRun, runAnalysis } from './lib/analysis';
import { causeText, ChildRun, childSearchAttributes, linked } from './lib/children';
import { PERMANENT_FAILURES } from './lib/failures';
import { GateRecord, Gates, startFieldProblem } from './lib/gate';
import { describe, ENVIRONMENT_NAME, InputChecker } from './lib/input';
import { ANALYSIS_MEASURE, K8S_CHANGE } from './lib/kubernetesOptions';
import { runRunbook, Timeline, TimelineSnapshot } from './lib/timeline';
import type { ReleaseInput, ReleaseResult } from './release';
import type { RollbackInput, RollbackResult } from './rollback';
import { RolloutInput, RolloutResult, validateRolloutInput } from './rolloutDefs';

// Reading the plan and writing the report on this environment's worker: quick, idempotent.
const config = proxyActivities<ReleaseActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 5, nonRetryableErrorTypes: PERMANENT_FAILURES },
});

/** Activities on another environment's workers: the same options, sent to that environment's task queue. */
const on = (taskQueue: string) => ({
  measure: proxyActivities<KubernetesActivities>({ ...ANALYSIS_MEASURE, taskQueue }),
  config: proxyActivities<ReleaseActivities>({ startToCloseTimeout: '1 minute', taskQueue, retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 5, nonRetryableErrorTypes: PERMANENT_FAILURES } }),
  jobs: proxyActivities<JobActivities>({ ...K8S_CHANGE, taskQueue }),
  jobWait: proxyActivities<JobActivities>({
    startToCloseTimeout: '6 hours',
    heartbeatTimeout: '10 seconds',
    taskQueue,
    retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 10, nonRetryableErrorTypes: PERMANENT_FAILURES },
  }),
});

/** What every environment's run gets (a release's or rollout's input without the environment). */
export type PromotionRunInput = Pick<RolloutInput, 'strategy' | 'steps' | 'analysis' | 'backgroundAnalysis' | 'comparison' | 'healthTimeoutSeconds' | 'gateTimeoutSeconds' | 'onGateTimeout' | 'remindEverySeconds'>;

export interface PromotionInput extends PromotionRunInput {
  /** The first environment of the promotion: the one whose workers run it. */
  environment: string;
  /** The key under promotions: in the config. */
  promotion: string;
  image: string;
  start?: RolloutInput['start'];
  /** How long each approval between environments waits (default 14400). */
  approvalTimeoutSeconds?: number;
}

export type StageState = 'pending' | 'running' | 'baking' | 'waiting for approval' | 'promoted' | 'failed' | 'rolled back' | 'skipped';

export interface PromotionStageStatus {
  environment: string;
  state: StageState;
  run?: ChildRun;
  outcome?: string;
  reason?: string;
  previousRevision?: number;
  previousImage?: string;
  bake?: { until?: string; analysis?: { measurements: number; failures: Record<string, number> } };
  rollback?: ChildRun & { verified?: boolean | null; error?: string; database?: string };
}

export interface PromotionStatus {
  promotion: string;
  runbook?: 'release' | 'rollout';
  deployment?: string;
  image: string;
  phase: 'preflight' | 'promoting' | 'rolling back' | 'reporting' | 'done';
  current?: number;
  waitingFor?: string;
  stages: PromotionStageStatus[];
  approvals: GateRecord[];
  outcome?: 'promoted' | 'aborted' | 'failed';
  reason?: string;
}

export interface PromotionReport {
  promotionId: string;
  workflowId: string;
  promotion: string;
  /** The runbook each environment runs. */
  runs: 'release' | 'rollout';
  deployment: string;
  image: string;
  requestedBy?: string;
  outcome: 'promoted' | 'aborted' | 'failed';
  reason?: string;
  onAbort: 'rollback-promoted' | 'leave';
  stages: PromotionStageStatus[];
  startedAt: string;
  endedAt: string;
  steps: StepRecord[];
}

export type PromotionResult = PromotionReport & { runbook: 'promotion'; reportKeys: string[]; timeline: TimelineSnapshot };

export const promotionStatusQuery = defineQuery<PromotionStatus>('status');

export function validatePromotionInput(input: unknown): PromotionInput {
  const check = InputChecker.of('promotion', input);
  const v = check.value;
  check.matches('environment', ENVIRONMENT_NAME, 'an environment name');
  check.matches('promotion', /^[a-z0-9][a-z0-9-]{0,40}$/, 'a promotion name from the config (promotions:)');
  const runFields = ['strategy', 'steps', 'analysis', 'backgroundAnalysis', 'comparison', 'healthTimeoutSeconds', 'gateTimeoutSeconds', 'onGateTimeout', 'remindEverySeconds'];
  try {
    validateRolloutInput({ environment: 'x', deployment: 'x', image: v.image, ...Object.fromEntries(Object.entries(v).filter(([k]) => runFields.includes(k))) });
  } catch (err) {
    for (const p of (err as Error).message.replace(/^invalid rollout input: /, '').split('; ')) check.problem(p);
  }
  if (typeof v.image !== 'string') check.problem(`image: expected an image reference with a tag or digest, found ${describe(v.image)}`);
  const known = ['environment', 'promotion', 'image', 'start', 'approvalTimeoutSeconds', ...runFields];
  for (const k of Object.keys(v)) if (!known.includes(k)) check.problem(`${k}: unknown field; expected one of ${known.join(', ')}`);
  const startProblem = startFieldProblem(v.start);
  if (startProblem) check.problem(startProblem);
  const t = v.approvalTimeoutSeconds;
  if (t !== undefined && !(typeof t === 'number' && Number.isInteger(t) && t >= 1 && t <= 30 * 86_400)) check.problem(`approvalTimeoutSeconds: expected 1 to 2592000 seconds, found ${describe(t)}`);
  check.done();
  return v as unknown as PromotionInput;
}

class PromotionStop extends Error {
  constructor(
    readonly outcome: 'aborted' | 'failed',
    message: string,
  ) {
    super(message);
  }
}

/** The workflow id each environment's run gets: the one the CLI of that environment acts on. */
export const stageWorkflowId = (runbook: 'release' | 'rollout', environment: string, deployment: string) => `${runbook}-${environment}-${deployment}`;

/**
 * A release or rollout promoted across environments in the configured order (staging, then prod-eu,
 * then prod-us), each run on that environment's own workers against its own cluster, with a bake
 * time (and an analysis measured in that environment meanwhile) and an optional signed approval
 * between them. One abort, or a failed stage, stops the rest; by policy, the environments already
 * promoted are rolled back, newest first.
 */
export async function promotion(rawInput: PromotionInput): Promise<PromotionResult> {
  const input = validatePromotionInput(rawInput);
  const { workflowId } = workflowInfo();
  const gates = new Gates('promotion', input.environment);
  const status: PromotionStatus = { promotion: input.promotion, image: input.image, phase: 'preflight', stages: [], approvals: [] };
  setHandler(promotionStatusQuery, () => ({ ...status, stages: status.stages.map((s) => ({ ...s })), approvals: gates.list() }));

  return runRunbook('promotion', input.environment, async (timeline: Timeline) => {
    gates.attach(timeline);
    const promotionId = `promotion-${uuid4().replace(/-/g, '').slice(0, 12)}`;
    let plan!: PromotionPlan;
    const startedAt = new Date(Date.now()).toISOString();
    const forward = new CancellationScope();
    void condition(() => gates.aborted !== undefined && status.phase === 'promoting').then(() => forward.cancel());
    const abortText = () => `aborted by ${gates.aborted!.principal} (key ${gates.aborted!.fingerprint})${gates.aborted!.reason ? `: ${gates.aborted!.reason}` : ''}`;
    const runInput: PromotionRunInput = {
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

    await gates.start(input as unknown as Record<string, unknown>);
    await timeline.step('preflight', async (evidence) => {
      plan = await config.describePromotion({ environment: input.environment, promotion: input.promotion });
      if (plan.approvers.length === 0 && plan.stages.some((s) => s.approval)) throw ApplicationFailure.create({ type: 'InvalidInput', message: 'approvers: the promotion has approval gates but no approvers (approvers.promotion or approvers.default); nothing was changed', nonRetryable: true });
      Object.assign(status, { runbook: plan.runbook, deployment: plan.deployment });
      status.stages = plan.stages.map((s) => ({ environment: s.environment, state: 'pending' }));
      Object.assign(evidence, { runbook: plan.runbook, deployment: plan.deployment, order: plan.stages.map((s) => s.environment), onAbort: plan.onAbort, requester: gates.requester ? `${gates.requester.principal} (${gates.requester.fingerprint})` : gates.startedBy });
    });

    let stop: PromotionStop | undefined;
    status.phase = 'promoting';
    try {
      await forward.run(async () => {
        for (const [i, stage] of plan.stages.entries()) {
          const s = status.stages[i];
          status.current = i;
          s.state = 'running';
          await timeline.step(`${stage.environment}: ${plan.runbook}`, async (evidence) => {
            const id = stageWorkflowId(plan.runbook, stage.environment, plan.deployment);
            status.waitingFor = `the ${plan.runbook} ${id} in ${stage.environment} (runbook --env ${stage.environment} ${plan.runbook} status ${plan.deployment})`;
            const h = await startChild(plan.runbook, {
              workflowId: id,
              taskQueue: stage.taskQueues.critical,
              args: [{ environment: stage.environment, deployment: plan.deployment, image: input.image, ...runInput } satisfies RolloutInput & ReleaseInput],
              typedSearchAttributes: childSearchAttributes(plan.runbook, stage.environment),
            });
            s.run = linked(h);
            evidence.run = h.workflowId;
            try {
              if (plan.runbook === 'rollout') {
                const r = (await h.result()) as RolloutResult;
                Object.assign(s, { outcome: r.outcome, reason: r.reason, previousRevision: r.previousRevision, previousImage: r.previousImages.map((c) => c.image).join(', ') });
                if (r.outcome === 'rolled back' || r.outcome === 'aborted') {
                  s.state = 'rolled back';
                  throw new PromotionStop(gates.aborted ? 'aborted' : 'failed', gates.aborted ? abortText() : `the rollout in ${stage.environment} ended ${r.outcome}: ${r.reason}`);
                }
              } else {
                const r = (await h.result()) as ReleaseResult;
                Object.assign(s, { outcome: r.outcome, previousRevision: r.rollout?.previousRevision, previousImage: r.rollout?.previousImages.map((c) => c.image).join(', ') });
              }
            } catch (err) {
              if (err instanceof PromotionStop) throw err;
              s.state = 'failed';
              s.reason = causeText(err);
              throw new PromotionStop(gates.aborted ? 'aborted' : 'failed', gates.aborted ? abortText() : `the ${plan.runbook} in ${stage.environment} failed: ${causeText(err)}`);
            }
            s.state = 'promoted';
            status.waitingFor = undefined;
            Object.assign(evidence, { outcome: s.outcome, previousRevision: s.previousRevision ?? null });
          });
          const last = i === plan.stages.length - 1;
          if (stage.bakeMs) {
            s.state = 'baking';
            await timeline.step(`${stage.environment}: bake`, async (evidence) => {
              const until = new Date(Date.now() + stage.bakeMs!).toISOString();
              s.bake = { until };
              status.waitingFor = `the bake in ${stage.environment} until ${until}${stage.analysis ? ', measuring its analysis' : ''}`;
              if (stage.analysis) {
                const interval = stage.analysis.intervalSeconds ?? 10;
                const count = Math.max(1, Math.floor(stage.bakeMs! / 1000 / interval));
                const remote = on(stage.taskQueues.critical);
                const run: AnalysisRun = await runAnalysis(`bake in ${stage.environment}`, { ...stage.analysis, count }, [plan.deployment], (checks) => remote.measure.measureAnalysis({ checks }), (r) => (s.bake!.analysis = { measurements: r.measurements.length, failures: { ...r.failures } }), { settle: true });
                Object.assign(evidence, { passed: run.passed, measurements: run.measurements.length, failures: run.failures, reason: run.reason ?? null });
                if (!run.passed) throw new PromotionStop('failed', `the bake in ${stage.environment} failed its analysis: ${run.reason}`);
              } else {
                await condition(() => false, stage.bakeMs!);
                evidence.bakedSeconds = Math.round(stage.bakeMs! / 1000);
              }
              status.waitingFor = undefined;
            });
            s.state = 'promoted';
          }
          if (stage.approval && !last) {
            s.state = 'waiting for approval';
            await timeline.step(`approve promotion to ${plan.stages[i + 1].environment}`, async (evidence) => {
              status.waitingFor = `approval by ${gates.rules.approvals > 1 ? `${gates.rules.approvals} of` : 'one of'} ${gates.rules.approvers.join(', ')}: runbook promotion approve ${input.promotion}`;
              const g = await gates.wait(`promote ${input.image} from ${stage.environment} to ${plan.stages[i + 1].environment}`, (input.approvalTimeoutSeconds ?? 4 * 3600) * 1000);
              status.waitingFor = undefined;
              Object.assign(evidence, { outcome: g.outcome, by: g.by ?? null, fingerprint: g.fingerprint ?? null, reason: g.reason ?? null });
              if (g.outcome === 'aborted') throw new PromotionStop('aborted', abortText());
              if (g.outcome !== 'approved') throw new PromotionStop('failed', `the promotion to ${plan.stages[i + 1].environment} was ${g.outcome}${g.by ? ` by ${g.by}` : ''}${g.reason ? `: ${g.reason}` : ''}`);
            });
            s.state = 'promoted';
          }
        }
      });
    } catch (err) {
      if (err instanceof PromotionStop) stop = err;
      else if (isCancellation(err) && gates.aborted) stop = new PromotionStop('aborted', abortText());
      else stop = new PromotionStop('failed', causeText(err));
    }

    if (stop) {
      status.reason = stop.message;
      for (const s of status.stages) if (s.state === 'pending') s.state = 'skipped';
      const promoted = status.stages.map((s, i) => ({ s, stage: plan.stages[i] })).filter(({ s }) => s.state === 'promoted' || s.state === 'baking' || s.state === 'waiting for approval');
      if (plan.onAbort === 'rollback-promoted' && promoted.length) {
        status.phase = 'rolling back';
        log.warn('promotion stopped: rolling back the promoted environments', { promotion: input.promotion, environments: promoted.map((p) => p.s.environment), reason: stop.message });
        await CancellationScope.nonCancellable(async () => {
          for (const { s, stage } of promoted.reverse()) {
            await timeline
              .step(`roll back ${s.environment}`, async (evidence) => {
                const rollbackInput: RollbackInput = { environment: s.environment, deployment: plan.deployment, toRevision: s.previousRevision, analysis: input.analysis, healthTimeoutSeconds: input.healthTimeoutSeconds, reason: `promotion ${promotionId} stopped: ${stop!.message}`.slice(0, 1000) };
                status.waitingFor = `the rollback of ${plan.deployment} in ${s.environment}`;
                const h = await startChild('rollback', {
                  workflowId: `${promotionId}-rollback-${s.environment}`,
                  taskQueue: stage.taskQueues.critical,
                  args: [rollbackInput],
                  typedSearchAttributes: childSearchAttributes('rollback', s.environment),
                  parentClosePolicy: ParentClosePolicy.ABANDON,
                });
                s.rollback = linked(h);
                try {
                  const r = (await h.result()) as RollbackResult;
                  Object.assign(s.rollback, { verified: r.verified });
                  Object.assign(evidence, { rollbackWorkflowId: h.workflowId, changed: r.changed, images: r.to.images.map((c) => `${c.name}=${c.image}`), verified: r.verified });
                } catch (err) {
                  s.rollback.error = causeText(err);
                  throw err;
                }
                if (plan.runbook === 'release') s.rollback.database = await undoReleaseDatabase(s.environment, stage.taskQueues.critical, evidence);
                s.state = 'rolled back';
                status.waitingFor = undefined;
              })
              .catch(() => undefined);
          }
        });
      }
    }

    const report: PromotionReport = {
      promotionId,
      workflowId,
      promotion: input.promotion,
      runs: plan.runbook,
      deployment: plan.deployment,
      image: input.image,
      requestedBy: gates.requester ? `${gates.requester.principal} (key ${gates.requester.fingerprint})` : undefined,
      outcome: stop ? stop.outcome : 'promoted',
      reason: stop?.message,
      onAbort: plan.onAbort,
      stages: status.stages.map((s) => ({ ...s })),
      startedAt,
      endedAt: '',
      steps: [],
    };
    status.phase = 'reporting';
    const reportKeys = await CancellationScope.nonCancellable(async () => {
      report.endedAt = new Date(Date.now()).toISOString();
      report.steps = timeline.snapshot().steps;
      return (await config.writePromotionReport({ promotionId, json: report, markdown: renderPromotionMarkdown(report) })).keys;
    }).catch(() => [] as string[]);
    status.phase = 'done';
    status.outcome = report.outcome;
    const failedRollbacks = status.stages.filter((s) => s.rollback?.error);
    if (stop?.outcome === 'failed' || failedRollbacks.length) {
      throw ApplicationFailure.create({
        type: failedRollbacks.length ? 'RollbackFailed' : 'PromotionFailed',
        message: `promotion ${input.promotion}: ${stop?.message ?? ''}${failedRollbacks.length ? `; the rollback failed in ${failedRollbacks.map((s) => `${s.environment} (${s.rollback!.error})`).join(', ')}` : ''}`,
        nonRetryable: true,
        details: [{ ...report, reportKeys }],
      });
    }
    gates.outcomeSummary = stop ? `aborted: ${stop.message}` : `promoted ${input.image} to ${plan.stages.map((s) => s.environment).join(', ')}`;
    if (stop) gates.announce('run aborted', `promotion ${input.promotion}: ${stop.message}`.slice(0, 500));
    return { ...report, runbook: 'promotion' as const, reportKeys };

    /** A promoted release's database after its Deployment went back: its down-migration where that is the policy. */
    async function undoReleaseDatabase(environment: string, taskQueue: string, evidence: Record<string, unknown>): Promise<string> {
      const remote = on(taskQueue);
      const rp = await remote.config.describeRelease({ environment, deployment: plan.deployment });
      if (rp.onFailure !== 'down-migration' || !rp.down) {
        evidence.database = `${rp.database} left migrated: its policy (${rp.onFailure}) needs a person; see the release report`;
        return String(evidence.database);
      }
      const name = `${plan.deployment.slice(0, 40)}-down-${promotionId.slice(-6)}`;
      await remote.jobs.startJob({ name, deployment: plan.deployment, container: rp.container, image: input.image, command: rp.down.command, env: rp.down.env, timeoutMs: rp.down.timeoutMs, labels: { 'runbook.dev/promotion': promotionId, 'runbook.dev/job': 'down-migration' }, by: { workflowId, step: `roll back ${environment}` } });
      const o = await remote.jobWait.waitForJob({ name, timeoutMs: rp.down.timeoutMs });
      evidence.downMigration = { job: name, succeeded: o.succeeded, exitCode: o.exitCode ?? null };
      if (!o.succeeded) throw new Error(`the down-migration Job ${name} in ${environment} failed (${o.reason ?? `exit ${o.exitCode}`})`);
      return `${rp.database} migrated back by Job ${name}`;
    }
  });
}

export function renderPromotionMarkdown(r: PromotionReport): string {
  const cell = (t: string) => t.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const lines = [
    `# Promotion ${r.outcome.toUpperCase()}: ${r.promotion} (${r.runs} of ${r.deployment} → ${r.image})`,
    '',
    `- Promotion \`${r.promotionId}\` (workflow \`${r.workflowId}\`), ${r.startedAt} to ${r.endedAt}${r.requestedBy ? `, requested by ${r.requestedBy}` : ''}`,
    `- After an abort or a failure: ${r.onAbort}`,
  ];
  if (r.reason) lines.push(`- Stopped: ${r.reason}`);
  lines.push('', '| environment | state | run | rollback |', '| --- | --- | --- | --- |');
  for (const s of r.stages) {
    lines.push(
      `| ${s.environment} | ${s.state}${s.outcome ? ` (${s.outcome})` : ''}${s.reason ? `: ${cell(s.reason)}` : ''} | ${s.run ? `\`${s.run.workflowId}\` (run \`${s.run.runId}\`)` : ''} | ${s.rollback ? `\`${s.rollback.workflowId}\`${s.rollback.error ? ` **failed**: ${cell(s.rollback.error)}` : `, verified: ${s.rollback.verified ?? 'no analysis'}`}${s.rollback.database ? `; ${cell(s.rollback.database)}` : ''}` : ''} |`,
    );
  }
  lines.push('', '## Steps', '', '| step | outcome | duration |', '| --- | --- | --- |');
  for (const s of r.steps) lines.push(`| ${cell(s.name)} | ${s.outcome}${s.error ? `: ${cell(s.error)}` : ''} | ${s.durationMs ?? 0} ms |`);
  return `${lines.join('\n')}\n`;
}
