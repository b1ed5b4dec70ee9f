/**
 * The rollout runbook as it ran before releases (image changes only, the stable Deployment scaled from
 * a total read once, rollback inline). Runs started by that code carry no 'rollout-v2' marker in their
 * history and replay here, unchanged; new runs take src/workflows/rollout.ts. Remove this file once no
 * rollout started before the change can still be in flight.
 */
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  log,
  proxyActivities,
  proxySinks,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { ContainerImage, DeploymentState, KubernetesActivities } from '../../activities/kubernetes';
import { AnalysisRun, AnalysisSpec, hasChecks, runAnalysis } from '../lib/analysis';
import { ANALYSIS_MEASURE, K8S_CHANGE, K8S_READ, K8S_WAIT } from '../lib/kubernetesOptions';
import { Gates } from '../lib/gate';
import { acquireTarget } from '../lib/exclusive';
import type { SignedAct } from '../../identity/policy';
import type { RunbookSinks } from '../lib/sinks';
import { runRunbook, Timeline } from '../lib/timeline';
import {
  abortUpdate,
  defaultSteps,
  describeStep,
  mandatoryPauseProblem,
  OperatorAction,
  promoteUpdate,
  RolloutInput,
  RolloutOutcome,
  RolloutResult,
  RolloutStatus,
  rolloutStatusQuery,
  RolloutStop,
  validateRolloutInput,
} from '../rolloutDefs';

const read = proxyActivities<KubernetesActivities>(K8S_READ);
const change = proxyActivities<KubernetesActivities>(K8S_CHANGE);
const wait = proxyActivities<KubernetesActivities>(K8S_WAIT);
const measure = proxyActivities<KubernetesActivities>(ANALYSIS_MEASURE);

const sinks = proxySinks<RunbookSinks>();

type LegacyStep = { setWeight: number } | { pause: { durationSeconds?: number } } | { analysis: AnalysisSpec | Record<string, never> };

/** The split of that code: the canary's count rounded up (so 34% of 3 pods was 2 of them). */
function splitReplicasV1(total: number, weight: number): { canary: number; stable: number } {
  if (weight >= 100) return { canary: total, stable: 0 };
  const canary = Math.min(Math.max(1, Math.ceil((total * weight) / 100)), Math.max(total - 1, 1));
  return { canary, stable: Math.max(total - canary, 1) };
}

export async function rolloutV1(rawInput: RolloutInput): Promise<RolloutResult> {
  const input = validateRolloutInput(rawInput);
  const strategy = input.strategy ?? 'canary';
  const steps = (input.steps ?? defaultSteps(strategy)) as LegacyStep[];
  const healthMs = (input.healthTimeoutSeconds ?? 300) * 1000;
  const gates = new Gates('rollout', input.environment);
  const workflowId = workflowInfo().workflowId;
  const status: RolloutStatus = {
    deployment: input.deployment,
    strategy,
    image: input.image!,
    previousImages: [],
    phase: 'preflight',
    steps,
    weight: 0,
    replicas: { stable: 0, canary: 0, total: 0 },
    analyses: [],
    approvals: [],
  };
  let ready = false;
  let gateSettings = { timeoutMs: 4 * 3_600_000, onTimeout: 'remind' as 'rollback' | 'remind', remindEveryMs: 1_800_000 };
  let promoteFull = false;
  const setPhase = (phase: RolloutStatus['phase']) => {
    status.phase = phase;
    sinks.runbookMetrics.rolloutPhase(input.environment, input.deployment, phase);
  };
  const snapshot = (): RolloutStatus => ({ ...status, approvals: gates.list(), analyses: status.analyses.map((a) => ({ ...a })), fullPromoteVotes: status.fullPromoteVotes && [...status.fullPromoteVotes] });
  setHandler(rolloutStatusQuery, snapshot);

  const phaseProblem = (): string | undefined => {
    if (status.phase === 'done') return 'the rollout has already ended';
    if (!ready) return 'the rollout is still in preflight; try again in a moment';
    return undefined;
  };
  const actOf = (p: unknown): string | undefined => {
    try {
      return (JSON.parse(String((p as { statement?: unknown } | null)?.statement)) as { act?: string }).act;
    } catch {
      return undefined;
    }
  };
  // promote --full: each signer counts once; when enough distinct people signed, every remaining step is skipped.
  const fullVote = { name: 'promote --full', required: 1, approvals: [] as SignedAct[], allowed: [] as string[] };
  const checkFull = (p: OperatorAction) => {
    const v = gates.verifyAct(p, 'promote-full', ['promote-full'], gates.rules.approvers);
    Object.assign(fullVote, { required: gates.rules.rollout.fullPromoteApprovals, allowed: gates.rules.approvers });
    gates.checkFourEyes(v, fullVote);
    return v;
  };
  setHandler(
    promoteUpdate,
    async (p) => {
      if (actOf(p) !== 'promote-full') {
        await gates.applyDecision(p, ['promote']);
        return snapshot();
      }
      await gates.serialised(async () => {
        await gates.refresh();
        const v = (() => {
          try {
            return checkFull(p);
          } catch (err) {
            gates.ignore('decide', p, (err as Error).message);
            throw ApplicationFailure.create({ type: 'DecisionRefused', message: (err as Error).message, nonRetryable: true });
          }
        })();
        const act = gates.accept(v, p);
        fullVote.approvals.push(act);
        status.fullPromoteVotes = [...fullVote.approvals];
        await gates.onAct?.(act, gates.current);
        if (gates.agreed(fullVote) >= fullVote.required) {
          promoteFull = true;
          status.promotedFull = { by: act.principal, at: act.at, signed: [...fullVote.approvals] };
          const open = gates.current;
          if (open) {
            open.approvals.push(act);
            gates.close(open, 'approved', act);
          }
        }
      });
      return snapshot();
    },
    {
      validator: (p) => {
        const problem = phaseProblem();
        if (problem) throw new Error(problem);
        if (actOf(p) === 'promote-full') checkFull(p);
        else if (!gates.current) throw new Error('the rollout is not waiting at a pause; use --full to skip the remaining steps');
        else gates.checkDecision(p, ['promote']);
      },
    },
  );
  setHandler(
    abortUpdate,
    async (a) => {
      await gates.applyAbort(a);
      return snapshot();
    },
    {
      validator: (a) => {
        const problem = phaseProblem();
        if (problem) throw new Error(problem);
        if (status.phase === 'rolling back') throw new Error('the rollout is already rolling back');
        gates.checkAbort(a);
      },
    },
  );

  return runRunbook('rollout', input.environment, async (timeline: Timeline) => {
    gates.attach(timeline);
    const by = (step: string) => ({ workflowId, step });
    let stable!: DeploymentState;
    let images: ContainerImage[] = [];
    let total = 0;
    let canaryCreated = false;
    let stableChanged = false;

    await gates.start(input as unknown as Record<string, unknown>);
    const policyProblem = mandatoryPauseProblem(steps, gates.rules.rollout.pauseBeforeWeight);
    if (policyProblem) throw ApplicationFailure.create({ type: 'StartRefused', message: `the rollout is refused before anything ran: ${policyProblem}`, nonRetryable: true });
    await timeline.step('preflight', async (evidence) => {
      const target = await read.describeRolloutTarget({ environment: input.environment, deployment: input.deployment });
      stable = await read.readDeployment({ deployment: input.deployment });
      if (!stable.exists) throw ApplicationFailure.create({ type: 'InvalidInput', message: `deployment: ${target.namespace}/${input.deployment} does not exist`, nonRetryable: true });
      const container = input.container ?? stable.containers[0]?.name;
      if (!stable.containers.some((c) => c.name === container)) {
        throw ApplicationFailure.create({ type: 'InvalidInput', message: `container: ${input.deployment} has no container ${container}; it has ${stable.containers.map((c) => c.name).join(', ')}`, nonRetryable: true });
      }
      if (target.approvers.length === 0) throw ApplicationFailure.create({ type: 'InvalidInput', message: 'approvers: no approvers are configured for rollout (approvers.rollout or approvers.default)', nonRetryable: true });
      const healthy = stable.observedGeneration >= stable.generation && stable.available === stable.replicas && stable.updated === stable.replicas && !stable.paused;
      if (!healthy) throw ApplicationFailure.create({ type: 'RolloutFailed', message: `deployment ${input.deployment} is not healthy before the rollout (${stable.updated}/${stable.replicas} updated, ${stable.available} available${stable.paused ? ', paused' : ''}); nothing was changed`, nonRetryable: true });
      const canary = await read.readDeployment({ deployment: `${input.deployment}-canary` });
      if (canary.exists) throw ApplicationFailure.create({ type: 'RolloutFailed', message: `${input.deployment}-canary already exists: another rollout is in progress or was left behind; roll it back first (runbook rollback ${input.deployment})`, nonRetryable: true });
      // One rollout, rollback or go-live per Deployment: taken before anything changes.
      const held = await acquireTarget({ environment: input.environment, runbook: 'rollout', kind: 'deployment', target: input.deployment });
      if (held) evidence.target = `deployment ${input.deployment} held (${held.held})`;
      ready = true;
      images = [{ name: container!, image: input.image! }];
      total = stable.replicas;
      status.previousImages = stable.containers;
      status.replicas = { stable: total, canary: 0, total };
      Object.assign(evidence, { namespace: target.namespace, replicas: total, revision: stable.revision, images: stable.containers.map((c) => `${c.name}=${c.image}`), newImage: input.image, approvers: gates.rules.approvers, approvals: gates.rules.approvals, requester: gates.requester ? `${gates.requester.principal} (${gates.requester.fingerprint})` : gates.startedBy });
      gateSettings = {
        timeoutMs: input.gateTimeoutSeconds !== undefined ? input.gateTimeoutSeconds * 1000 : target.gate.timeoutMs,
        onTimeout: input.onGateTimeout ?? target.gate.onTimeout,
        remindEveryMs: input.remindEverySeconds !== undefined ? input.remindEverySeconds * 1000 : target.gate.remindEveryMs,
      };
      evidence.gate = gateSettings;
    });
    if (stable.containers.find((c) => c.name === images[0].name)?.image === input.image) {
      setPhase('done');
      status.outcome = 'unchanged';
      timeline.skip('rollout', `${input.deployment} already runs ${input.image}`);
      sinks.runbookMetrics.rolloutFinished(input.environment, 'unchanged');
      return result('unchanged', `${input.deployment} already runs ${input.image}`);
    }

    // Everything forward runs in a scope that an abort cancels; the rollback runs outside it.
    const forward = new CancellationScope();
    void condition(() => gates.aborted !== undefined && status.phase !== 'done').then(() => forward.cancel());
    let stop: RolloutStop | undefined;
    try {
      await forward.run(async () => {
        for (const [i, step] of steps.entries()) {
          if (promoteFull) {
            timeline.skip(`step ${i + 1}: ${describeStep(step)}`, `promoted in full by ${status.promotedFull?.by}`);
            continue;
          }
          status.currentStep = i;
          await timeline.step(`step ${i + 1}: ${describeStep(step)}`, async (evidence) => {
            if ('setWeight' in step) {
              setPhase('progressing');
              if (strategy === 'canary') {
                const split = splitReplicasV1(total, step.setWeight);
                status.waitingFor = `${input.deployment}-canary to have ${split.canary} ready pod(s)`;
                const c = await change.ensureCanary({ deployment: input.deployment, images, replicas: split.canary, by: by(`step ${i + 1}`) });
                canaryCreated = true;
                const h = await wait.waitForRolloutHealthy({ deployment: c.name, timeoutMs: healthMs });
                // Capacity first: the stable Deployment shrinks only once the canary pods are ready.
                await change.scaleDeployment({ deployment: input.deployment, replicas: split.stable, by: by(`step ${i + 1}`) });
                status.replicas = { stable: split.stable, canary: split.canary, total };
                status.weight = Math.round((100 * split.canary) / (split.canary + split.stable));
                Object.assign(evidence, { canary: split.canary, stable: split.stable, weight: status.weight, canaryReady: h.ready, waitedMs: h.waitedMs });
              } else {
                const target = Math.max(1, Math.ceil((total * step.setWeight) / 100));
                status.waitingFor = `${target} of ${total} pods on ${input.image}`;
                stableChanged = true;
                const r = await wait.rollForward({ deployment: input.deployment, images, untilUpdated: target, timeoutMs: healthMs, by: by(`step ${i + 1}`) });
                status.weight = Math.round((100 * Math.min(r.ready, total)) / total);
                Object.assign(evidence, { updated: r.updated, ready: r.ready, replicas: r.replicas, paused: r.paused, weight: status.weight });
              }
            } else if ('pause' in step) {
              setPhase('paused');
              if (step.pause.durationSeconds) {
                status.waitingFor = `bake time of ${step.pause.durationSeconds} s (or promote --full)`;
                const early = await condition(() => promoteFull, step.pause.durationSeconds * 1000);
                Object.assign(evidence, { bakedSeconds: step.pause.durationSeconds, endedEarly: early });
              } else {
                status.waitingFor = `approval by ${gates.rules.approvals > 1 ? `${gates.rules.approvals} of` : 'one of'} ${gates.rules.approvers.join(', ')}`;
                const g = await gates.wait(`step ${i + 1}: continue the rollout at ${status.weight}%`, gateSettings.timeoutMs, gateSettings.onTimeout === 'remind' ? { everyMs: gateSettings.remindEveryMs } : undefined);
                Object.assign(evidence, { outcome: g.outcome, by: g.by ?? null, fingerprint: g.fingerprint ?? null, comment: g.reason ?? null, at: g.closedAt ?? null, approvals: g.approvals.map((a) => `${a.principal} (${a.fingerprint})`), reminders: g.reminders ?? 0, ignored: g.ignored });
                if (g.outcome === 'rejected') throw new RolloutStop('rolled back', `rejected by ${g.by}${g.reason ? `: ${g.reason}` : ''} at step ${i + 1}`);
                if (g.outcome === 'timed out') throw new RolloutStop('rolled back', `nobody approved step ${i + 1} within ${Math.round(gateSettings.timeoutMs / 1000)} s (policy: roll back)`);
                if (g.outcome === 'aborted') throw new RolloutStop('aborted', abortReason());
              }
            } else {
              setPhase('analysis');
              const spec = Object.keys(step.analysis).length ? (step.analysis as AnalysisSpec) : input.analysis!;
              const targets = strategy === 'canary' && canaryCreated ? [`${input.deployment}-canary`] : [input.deployment];
              status.waitingFor = `analysis of ${targets.join(', ')}`;
              const run = await analyse(`step ${i + 1}`, spec, targets);
              Object.assign(evidence, { passed: run.passed, measurements: run.measurements.length, failures: run.failures, errors: run.errors, reason: run.reason ?? null });
              if (!run.passed) throw new RolloutStop('rolled back', run.reason!);
            }
            status.waitingFor = undefined;
          });
        }
        status.currentStep = undefined;
        setPhase('promoting');
        await timeline.step('promote: the stable Deployment takes the new image', async (evidence) => {
          status.waitingFor = `${input.deployment} to run ${input.image} on all ${total} pods`;
          stableChanged = true;
          if (strategy === 'canary') {
            await change.setDeploymentImage({ deployment: input.deployment, images, by: by('promote') });
            await change.scaleDeployment({ deployment: input.deployment, replicas: total, by: by('promote') });
            const h = await wait.waitForRolloutHealthy({ deployment: input.deployment, timeoutMs: healthMs });
            const d = await change.deleteCanary({ deployment: input.deployment });
            status.replicas = { stable: total, canary: 0, total };
            Object.assign(evidence, { revision: h.revision, ready: h.ready, canaryDeleted: d.deleted });
          } else {
            const r = await wait.rollForward({ deployment: input.deployment, images, untilUpdated: total, timeoutMs: healthMs, by: by('promote') });
            const h = await wait.waitForRolloutHealthy({ deployment: input.deployment, timeoutMs: healthMs });
            Object.assign(evidence, { revision: h.revision, ready: r.ready });
          }
          status.weight = 100;
          status.waitingFor = undefined;
        });
      });
    } catch (err) {
      if (err instanceof RolloutStop) stop = err;
      else if (isCancellation(err) && gates.aborted) stop = new RolloutStop('aborted', abortReason());
      else if (err instanceof Error) {
        const cause = (err as Error & { cause?: Error }).cause;
        stop = new RolloutStop('rolled back', cause?.message ?? err.message);
      } else throw err;
    }

    if (stop) {
      setPhase('rolling back');
      status.reason = stop.message;
      status.waitingFor = `${input.deployment} back on ${status.previousImages.map((c) => c.image).join(', ')}`;
      log.warn('rolling back', { deployment: input.deployment, reason: stop.message });
      await CancellationScope.nonCancellable(() =>
        timeline.step('roll back', async (evidence) => {
          if (stableChanged) {
            const u = await change.undoDeployment({ deployment: input.deployment, toImages: status.previousImages, by: by('roll back') });
            evidence.undone = u.changed;
          }
          await change.scaleDeployment({ deployment: input.deployment, replicas: total, by: by('roll back') });
          const h = await wait.waitForRolloutHealthy({ deployment: input.deployment, timeoutMs: healthMs });
          const d = await change.deleteCanary({ deployment: input.deployment });
          status.replicas = { stable: total, canary: 0, total };
          status.weight = 0;
          Object.assign(evidence, { reason: stop!.message, canaryDeleted: d.deleted, revision: h.revision, ready: h.ready, images: h.containers.map((c) => `${c.name}=${c.image}`) });
        }),
      );
      if (hasChecks(input.analysis)) {
        await CancellationScope.nonCancellable(() =>
          timeline.step('verify the rollback', async (evidence) => {
            const run = await analyse('after rollback', input.analysis!, [input.deployment], { settle: true, maxCount: 3 });
            Object.assign(evidence, { passed: run.passed, failures: run.failures, reason: run.reason ?? null });
          }),
        );
      }
      status.waitingFor = undefined;
      setPhase('done');
      status.outcome = stop.outcome;
      sinks.runbookMetrics.rolloutFinished(input.environment, stop.outcome);
      gates.announce(stop.outcome === 'aborted' ? 'run aborted' : 'run rolled back', `${input.deployment} ${stop.outcome}: ${stop.message}`.slice(0, 500));
      gates.outcomeSummary = `${stop.outcome}: ${stop.message}`;
      return result(stop.outcome, stop.message);
    }
    setPhase('done');
    status.outcome = 'promoted';
    gates.outcomeSummary = `promoted: ${input.deployment} runs ${input.image}`;
    sinks.runbookMetrics.rolloutFinished(input.environment, 'promoted');
    return result('promoted');

    async function analyse(name: string, spec: AnalysisSpec, deployments: string[], opts?: { settle?: boolean; maxCount?: number }): Promise<AnalysisRun> {
      const index = status.analyses.length;
      return runAnalysis(
        name,
        spec,
        deployments,
        (checks) => measure.measureAnalysis({ checks }),
        (run) => {
          status.analyses[index] = { ...run, measurements: run.measurements.slice(-5) };
        },
        opts,
      );
    }

    async function result(outcome: RolloutOutcome, reason?: string): Promise<Omit<RolloutResult, 'timeline'>> {
      const final = await CancellationScope.nonCancellable(() => read.readDeployment({ deployment: input.deployment }));
      return { runbook: 'rollout', outcome, reason, deployment: input.deployment, image: input.image!, previousImages: status.previousImages, finalImages: final.containers, revision: final.revision, status: snapshot() };
    }
  });

  function abortReason(): string {
    const a = gates.aborted!;
    return `aborted by ${a.principal} (key ${a.fingerprint})${a.reason ? `: ${a.reason}` : ''}`;
  }
}
