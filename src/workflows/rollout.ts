import {
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  log,
  ParentClosePolicy,
  patched,
  proxyActivities,
  proxySinks,
  setHandler,
  sleep,
  startChild,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { AutoscalerActivities, AutoscalerState } from '../activities/autoscaler';
import type { CanaryActivities } from '../activities/canaryAnalysis';
import type { ContainerImage, DeploymentState, KubernetesActivities, PodTemplate, PodTemplateChange } from '../activities/kubernetes';
import { AnalysisRun, AnalysisSpec, CompareSpec, hasChecks, runAnalysis } from './lib/analysis';
import { causeText, childSearchAttributes, linked } from './lib/children';
import { ANALYSIS_MEASURE, K8S_CHANGE, K8S_READ, K8S_WAIT } from './lib/kubernetesOptions';
import { GateRecord, Gates } from './lib/gate';
import { acquireTarget } from './lib/exclusive';
import type { SignedAct } from '../identity/policy';
import type { RunbookSinks } from './lib/sinks';
import { runRunbook, Timeline } from './lib/timeline';
import { isPlanRun, recordPlanned } from './lib/plan';
import { rolloutV1 } from './legacy/rolloutV1';
import type { RollbackInput, RollbackResult } from './rollback';
import {
  abortUpdate,
  defaultSteps,
  describeStep,
  mandatoryPauseProblem,
  OperatorAction,
  promoteUpdate,
  ROLLOUT_V2_PATCH,
  RolloutInput,
  RolloutOutcome,
  RolloutResult,
  RolloutStatus,
  rolloutStatusQuery,
  RolloutStop,
  splitReplicas,
  validateRolloutInput,
} from './rolloutDefs';

export * from './rolloutDefs';

type Activities = KubernetesActivities & AutoscalerActivities & CanaryActivities;
const read = proxyActivities<Activities>(K8S_READ);
const change = proxyActivities<Activities>(K8S_CHANGE);
const wait = proxyActivities<Activities>(K8S_WAIT);
const measure = proxyActivities<Activities>(ANALYSIS_MEASURE);

const sinks = proxySinks<RunbookSinks>();

/**
 * A progressive rollout of one Deployment: steps (weights, pauses a person approves, bake times,
 * analyses, canary-versus-stable comparisons) as data, each on the timeline; a failed health wait,
 * analysis or comparison rolls back on its own, through the rollback runbook as a child run whose
 * verification decides the outcome; an analysis without data waits at a gate with the evidence; abort
 * at any moment rolls back and ends the run as aborted, with the reason. With an autoscaler the canary
 * share is computed from the live counts and kept while the autoscaler scales.
 */
export async function rollout(rawInput: RolloutInput): Promise<RolloutResult> {
  // Runs started before this code replay on the code they were recorded with.
  if (!patched(ROLLOUT_V2_PATCH)) return rolloutV1(rawInput);
  const input = validateRolloutInput(rawInput);
  const strategy = input.strategy ?? 'canary';
  const steps = input.steps ?? defaultSteps(strategy);
  const healthMs = (input.healthTimeoutSeconds ?? 300) * 1000;
  const gates = new Gates('rollout', input.environment);
  const workflowId = workflowInfo().workflowId;
  const status: RolloutStatus = {
    deployment: input.deployment,
    strategy,
    image: input.image ?? 'pod template change',
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
  const snapshot = (): RolloutStatus => ({
    ...status,
    approvals: gates.list(),
    analyses: status.analyses.map((a) => ({ ...a })),
    fullPromoteVotes: status.fullPromoteVotes && [...status.fullPromoteVotes],
    autoscaler: status.autoscaler && { ...status.autoscaler, follows: status.autoscaler.follows.slice(-10) },
    comparisons: status.comparisons && [...status.comparisons],
  });
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
    let template: PodTemplate | undefined;
    let images: ContainerImage[] = [];
    let imageOnly = true;
    let autoscaler: AutoscalerState | null = null;
    let followEveryMs = 30_000;
    let canaryCreated = false;
    let requestedWeight = 0;
    let gitopsSuspended = false;

    await gates.start(input as unknown as Record<string, unknown>);
    const policyProblem = mandatoryPauseProblem(steps, gates.rules.rollout.pauseBeforeWeight);
    if (policyProblem) throw ApplicationFailure.create({ type: 'StartRefused', message: `the rollout is refused before anything ran: ${policyProblem}`, nonRetryable: true });
    await timeline.step('preflight', async (evidence) => {
      const target = await read.describeRolloutTarget({ environment: input.environment, deployment: input.deployment });
      stable = await read.readDeployment({ deployment: input.deployment });
      if (!stable.exists) throw ApplicationFailure.create({ type: 'InvalidInput', message: `deployment: ${target.namespace}/${input.deployment} does not exist`, nonRetryable: true });
      const container = input.container ?? stable.containers[0]?.name;
      if (input.image !== undefined && !stable.containers.some((c) => c.name === container)) {
        throw ApplicationFailure.create({ type: 'InvalidInput', message: `container: ${input.deployment} has no container ${container}; it has ${stable.containers.map((c) => c.name).join(', ')}`, nonRetryable: true });
      }
      if (target.approvers.length === 0) throw ApplicationFailure.create({ type: 'InvalidInput', message: 'approvers: no approvers are configured for rollout (approvers.rollout or approvers.default)', nonRetryable: true });
      const healthy = stable.observedGeneration >= stable.generation && stable.available === stable.replicas && stable.updated === stable.replicas && !stable.paused;
      if (!healthy) throw ApplicationFailure.create({ type: 'RolloutFailed', message: `deployment ${input.deployment} is not healthy before the rollout (${stable.updated}/${stable.replicas} updated, ${stable.available} available${stable.paused ? ', paused' : ''}); nothing was changed`, nonRetryable: true });
      const canary = await read.readDeployment({ deployment: `${input.deployment}-canary` });
      if (canary.exists) throw ApplicationFailure.create({ type: 'RolloutFailed', message: `${input.deployment}-canary already exists: another rollout is in progress or was left behind; roll it back first (runbook rollback ${input.deployment})`, nonRetryable: true });
      if (stable.gitops) {
        const policy = target.gitops.onManaged;
        status.gitops = { ...stable.gitops, policy };
        evidence.gitops = `${stable.gitops.tool} (${stable.gitops.marker}); policy ${policy}`;
        const fix = 'set kubernetes.gitops.onManaged to proceed (once the tool ignores replicas and the pod template: Argo CD ignoreDifferences, Flux ssa: IfNotPresent) or suspend (Flux), or roll out through the GitOps repository';
        if (policy === 'refuse') throw ApplicationFailure.create({ type: 'StartRefused', message: `deployment ${input.deployment} is managed by ${stable.gitops.tool} (${stable.gitops.marker}), which would undo the rollout's changes; nothing was changed. To coexist, ${fix}`, nonRetryable: true });
        if (policy === 'suspend' && !stable.gitops.suspendable) throw ApplicationFailure.create({ type: 'StartRefused', message: `deployment ${input.deployment} is managed by ${stable.gitops.tool} (${stable.gitops.marker}), which cannot be suspended for one object; nothing was changed. ${fix}`, nonRetryable: true });
      }
      autoscaler = await read.describeAutoscaler({ deployment: input.deployment });
      if (autoscaler?.held) throw ApplicationFailure.create({ type: 'RolloutFailed', message: `autoscaler ${autoscaler.name} still has the bounds an earlier rollout narrowed (${autoscaler.held.workflowId ?? 'unknown run'}); roll it back first (runbook rollback ${input.deployment}), which restores them`, nonRetryable: true });
      if (autoscaler) {
        status.autoscaler = { name: autoscaler.name, original: { minReplicas: autoscaler.minReplicas, maxReplicas: autoscaler.maxReplicas }, follows: [] };
        evidence.autoscaler = `${autoscaler.name}: ${autoscaler.minReplicas}-${autoscaler.maxReplicas} replicas, ${autoscaler.currentReplicas} now`;
      }
      // One rollout, rollback or go-live per Deployment: taken before anything changes.
      const held = await acquireTarget({ environment: input.environment, runbook: 'rollout', kind: 'deployment', target: input.deployment });
      if (held) evidence.target = `deployment ${input.deployment} held (${held.held})`;
      const wanted: PodTemplateChange = { ...input.change, containers: [...(input.change?.containers ?? []), ...(input.image !== undefined ? [{ name: container!, image: input.image }] : [])] };
      const plan = await read.planTemplateChange({ deployment: input.deployment, change: wanted });
      template = plan.template;
      imageOnly = !input.change;
      images = input.image !== undefined ? [{ name: container!, image: input.image }] : [];
      status.change = plan.changes;
      ready = true;
      status.previousImages = stable.containers;
      status.previousRevision = stable.revision;
      status.replicas = { stable: stable.replicas, canary: 0, total: stable.replicas };
      followEveryMs = target.autoscalerCheckEveryMs;
      Object.assign(evidence, { namespace: target.namespace, replicas: stable.replicas, revision: stable.revision, images: stable.containers.map((c) => `${c.name}=${c.image}`), change: plan.changes, approvers: gates.rules.approvers, approvals: gates.rules.approvals, requester: gates.requester ? `${gates.requester.principal} (${gates.requester.fingerprint})` : gates.startedBy });
      if (input.image !== undefined) evidence.newImage = input.image;
      gateSettings = {
        timeoutMs: input.gateTimeoutSeconds !== undefined ? input.gateTimeoutSeconds * 1000 : target.gate.timeoutMs,
        onTimeout: input.onGateTimeout ?? target.gate.onTimeout,
        remindEveryMs: input.remindEverySeconds !== undefined ? input.remindEverySeconds * 1000 : target.gate.remindEveryMs,
      };
      evidence.gate = gateSettings;
    });
    if (status.change!.length === 0) {
      setPhase('done');
      status.outcome = 'unchanged';
      const why = input.image !== undefined && !input.change ? `${input.deployment} already runs ${input.image}` : `${input.deployment} already has that pod template`;
      timeline.skip('rollout', why);
      sinks.runbookMetrics.rolloutFinished(input.environment, 'unchanged');
      return result('unchanged', why);
    }
    if (status.gitops?.policy === 'suspend') {
      await timeline.step('suspend GitOps reconciliation', async (evidence) => {
        Object.assign(evidence, await change.setGitOpsReconcile({ deployment: input.deployment, suspend: true, by: by('suspend GitOps reconciliation') }), { tool: status.gitops!.tool });
        gitopsSuspended = true;
      });
    }
    const rolloutImages = imageOnly ? images : undefined;
    const rolloutTemplate = imageOnly ? undefined : template;

    /**
     * Runs a pause (a gate, a bake) while the background analysis measures and the canary follows the
     * autoscaler; a failing background analysis ends the pause and rolls back.
     */
    async function whileWatching<T>(stepName: string, work: () => Promise<T>): Promise<T> {
      const follow = autoscaler !== null && strategy === 'canary' && canaryCreated && requestedWeight < 100;
      const background = hasChecks(input.backgroundAnalysis) ? input.backgroundAnalysis : undefined;
      if (!follow && !background) return work();
      const scope = new CancellationScope();
      let stopped: unknown;
      const loops: Promise<void>[] = [];
      const settled = scope.run(async () => {
        if (background) {
          loops.push(
            (async () => {
              const targets = strategy === 'canary' && canaryCreated ? [`${input.deployment}-canary`] : [input.deployment];
              const run = await runAnalysis(
                `background during ${stepName}`,
                { ...background, count: 1_000_000, inconclusiveLimit: 1_000_000 },
                targets,
                (checks) => measure.measureAnalysis({ checks, noData: 'inconclusive' }),
                (r) => (status.background = { ...r, measurements: r.measurements.slice(-5) }),
                { inconclusive: true },
              );
              throw new RolloutStop('rolled back', `background analysis during ${stepName}: ${run.reason}`);
            })(),
          );
        }
        if (follow) {
          loops.push(
            (async () => {
              for (;;) {
                await sleep(followEveryMs);
                const f = await change.followCanaryShare({ deployment: input.deployment, weight: requestedWeight, by: by(stepName) });
                if (!f.changed) continue;
                status.replicas = { stable: f.stable, canary: f.canary, total: f.stable + f.canary };
                status.weight = Math.round((100 * f.canary) / (f.stable + f.canary));
                status.autoscaler?.follows.push({ at: new Date(Date.now()).toISOString(), stable: f.stable, canary: f.canary, previousCanary: f.previousCanary });
                timeline.note(`autoscaler: canary ${f.previousCanary} -> ${f.canary} pod(s) beside ${f.stable} stable`, 'succeeded', { stable: f.stable, canary: f.canary, previousCanary: f.previousCanary, weight: status.weight });
              }
            })(),
          );
        }
        for (const l of loops) {
          l.catch((err: unknown) => {
            if (isCancellation(err) && stopped === undefined) return;
            stopped ??= err;
            scope.cancel();
          });
        }
        return work();
      });
      try {
        return await settled;
      } catch (err) {
        if (stopped !== undefined) throw stopped;
        throw err;
      } finally {
        scope.cancel();
        await Promise.allSettled(loops);
      }
    }

    /** An analysis that could not judge (no data, a marginal score): a person decides, with the evidence on the gate's step. */
    async function inconclusiveGate(i: number, reason: string, evidence: Record<string, unknown>): Promise<void> {
      setPhase('paused');
      status.waitingFor = `a decision on the inconclusive analysis (approve: continue, reject: roll back), by ${gates.rules.approvals > 1 ? `${gates.rules.approvals} of` : 'one of'} ${gates.rules.approvers.join(', ')}`;
      const g = await whileWatching(`step ${i + 1}`, () =>
        gates.wait(`step ${i + 1}: analysis inconclusive: continue the rollout at ${requestedWeight}%`, gateSettings.timeoutMs, gateSettings.onTimeout === 'remind' ? { everyMs: gateSettings.remindEveryMs } : undefined),
      );
      Object.assign(evidence, { inconclusive: reason, decision: g.outcome, decidedBy: g.by ?? null, fingerprint: g.fingerprint ?? null, comment: g.reason ?? null, reminders: g.reminders ?? 0 });
      if (g.outcome === 'rejected') throw new RolloutStop('rolled back', `the analysis at step ${i + 1} was inconclusive (${reason}) and ${g.by} rejected continuing${g.reason ? `: ${g.reason}` : ''}`);
      if (g.outcome === 'timed out') throw new RolloutStop('rolled back', `the analysis at step ${i + 1} was inconclusive (${reason}) and nobody decided within ${Math.round(gateSettings.timeoutMs / 1000)} s (policy: roll back)`);
      if (g.outcome === 'aborted') throw new RolloutStop('aborted', abortReason());
    }

    // A plan says what a stop from here on would undo (it never takes that path itself).
    if (isPlanRun()) recordPlanned([{ kind: 'compensation', by: 'rollback', what: `from here on, if a step, a health wait or an analysis fails, a gate is rejected or the run is aborted: the rollback runbook returns ${input.deployment} to the revision it had before this rollout, removes the canary, restores the autoscaler and verifies` }]);
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
              // The live counts: an autoscaler may have moved them since the last step.
              const live = await read.readReplicas({ deployment: input.deployment });
              const total = live.stable + (live.canaryExists ? live.canary : 0);
              if (strategy === 'canary') {
                const split = splitReplicas(total, step.setWeight);
                status.waitingFor = `${input.deployment}-canary to have ${split.canary} ready pod(s)`;
                const c = await change.ensureCanary({ deployment: input.deployment, images: rolloutImages, template: rolloutTemplate, replicas: split.canary, stableReplicas: total, by: by(`step ${i + 1}`) });
                canaryCreated = true;
                const h = await wait.waitForRolloutHealthy({ deployment: c.name, timeoutMs: healthMs });
                if (autoscaler) {
                  // Before the stable Deployment shrinks: the autoscaler would otherwise scale it straight back.
                  const held = await change.holdAutoscalerShare({ deployment: input.deployment, weight: step.setWeight, by: by(`step ${i + 1}`) });
                  if (held && status.autoscaler) status.autoscaler.bounds = held.bounds;
                  evidence.autoscaler = held && `${held.name}: ${held.original.minReplicas}-${held.original.maxReplicas} -> ${held.bounds.minReplicas}-${held.bounds.maxReplicas} for the stable share`;
                }
                // Capacity first: the stable Deployment shrinks only once the canary pods are ready.
                await change.scaleDeployment({ deployment: input.deployment, replicas: split.stable, by: by(`step ${i + 1}`) });
                requestedWeight = step.setWeight;
                status.replicas = { stable: split.stable, canary: split.canary, total };
                status.weight = Math.round((100 * split.canary) / (split.canary + split.stable));
                Object.assign(evidence, { canary: split.canary, stable: split.stable, total, weight: status.weight, canaryReady: h.ready, waitedMs: h.waitedMs });
              } else {
                const target = Math.max(1, Math.round((total * step.setWeight) / 100));
                status.waitingFor = `${target} of ${total} pods on the new version`;
                const r = await wait.rollForward({ deployment: input.deployment, images: rolloutImages, template: rolloutTemplate, untilUpdated: target, timeoutMs: healthMs, by: by(`step ${i + 1}`) });
                requestedWeight = step.setWeight;
                status.replicas = { stable: Math.max(0, total - r.ready), canary: Math.min(r.ready, total), total };
                status.weight = Math.round((100 * Math.min(r.ready, total)) / total);
                Object.assign(evidence, { updated: r.updated, ready: r.ready, replicas: r.replicas, paused: r.paused, weight: status.weight });
              }
            } else if ('pause' in step) {
              setPhase('paused');
              if (step.pause.durationSeconds) {
                status.waitingFor = `bake time of ${step.pause.durationSeconds} s (or promote --full)`;
                const early = await whileWatching(`step ${i + 1}`, () => condition(() => promoteFull, step.pause.durationSeconds! * 1000));
                Object.assign(evidence, { bakedSeconds: step.pause.durationSeconds, endedEarly: early });
              } else {
                status.waitingFor = `approval by ${gates.rules.approvals > 1 ? `${gates.rules.approvals} of` : 'one of'} ${gates.rules.approvers.join(', ')}`;
                const g = await whileWatching(`step ${i + 1}`, () =>
                  gates.wait(`step ${i + 1}: continue the rollout at ${requestedWeight}%`, gateSettings.timeoutMs, gateSettings.onTimeout === 'remind' ? { everyMs: gateSettings.remindEveryMs } : undefined),
                );
                Object.assign(evidence, { outcome: g.outcome, by: g.by ?? null, fingerprint: g.fingerprint ?? null, comment: g.reason ?? null, at: g.closedAt ?? null, approvals: g.approvals.map((a) => `${a.principal} (${a.fingerprint})`), reminders: g.reminders ?? 0, ignored: g.ignored });
                if (g.outcome === 'rejected') throw new RolloutStop('rolled back', `rejected by ${g.by}${g.reason ? `: ${g.reason}` : ''} at step ${i + 1}`);
                if (g.outcome === 'timed out') throw new RolloutStop('rolled back', `nobody approved step ${i + 1} within ${Math.round(gateSettings.timeoutMs / 1000)} s (policy: roll back)`);
                if (g.outcome === 'aborted') throw new RolloutStop('aborted', abortReason());
              }
              if (status.background) evidence.background = { measurements: status.background.measurements.length, failures: status.background.failures, inconclusive: status.background.inconclusive ?? {} };
            } else if ('analysis' in step) {
              setPhase('analysis');
              const spec = Object.keys(step.analysis).length ? (step.analysis as AnalysisSpec) : input.analysis!;
              const targets = strategy === 'canary' && canaryCreated ? [`${input.deployment}-canary`] : [input.deployment];
              status.waitingFor = `analysis of ${targets.join(', ')}`;
              const run = await analyse(`step ${i + 1}`, spec, targets, { inconclusive: true });
              Object.assign(evidence, { passed: run.passed, verdict: run.verdict ?? null, measurements: run.measurements.length, failures: run.failures, errors: run.errors, inconclusive: run.inconclusive ?? {}, reason: run.reason ?? null });
              if (run.verdict === 'inconclusive') await inconclusiveGate(i, run.reason!, evidence);
              else if (!run.passed) throw new RolloutStop('rolled back', run.reason!);
            } else {
              setPhase('analysis');
              const spec = Object.keys(step.compare).length ? (step.compare as CompareSpec) : input.comparison!;
              status.waitingFor = `canary compared with stable over ${spec.windowSeconds ?? 300} s`;
              if (spec.delaySeconds) await sleep(spec.delaySeconds * 1000);
              const judged = await measure.compareCanaryWithStable({ deployment: input.deployment, spec });
              (status.comparisons ??= []).push({ ...judged, step: i + 1 });
              Object.assign(evidence, {
                verdict: judged.verdict,
                score: judged.score ?? null,
                window: judged.window,
                metrics: judged.metrics.map((m) => `${m.name}: ${m.result} (canary ${m.canarySamples} / stable ${m.stableSamples} samples${m.p !== undefined ? `, p=${m.p.toPrecision(3)}` : ''})`),
                reason: judged.reason,
              });
              if (judged.verdict === 'fail') throw new RolloutStop('rolled back', `the canary was judged worse than the stable version at step ${i + 1}: ${judged.reason}`);
              if (judged.verdict !== 'pass') await inconclusiveGate(i, judged.reason, evidence);
            }
            status.waitingFor = undefined;
          });
        }
        status.currentStep = undefined;
        setPhase('promoting');
        await timeline.step(input.image !== undefined && imageOnly ? 'promote: the stable Deployment takes the new image' : 'promote: the stable Deployment takes the new pod template', async (evidence) => {
          const live = await read.readReplicas({ deployment: input.deployment });
          const total = live.stable + (live.canaryExists ? live.canary : 0);
          status.waitingFor = `${input.deployment} to run the new version on all ${total} pods`;
          if (strategy === 'canary') {
            if (autoscaler) {
              const r = await change.restoreAutoscaler({ deployment: input.deployment, by: by('promote') });
              if (status.autoscaler) status.autoscaler.restored = r?.restored ?? false;
              evidence.autoscaler = r && (r.restored ? `${r.name} back to ${r.bounds!.minReplicas}-${r.bounds!.maxReplicas}` : `${r.name} unchanged`);
            }
            if (imageOnly) await change.setDeploymentImage({ deployment: input.deployment, images, by: by('promote') });
            else await change.setDeploymentTemplate({ deployment: input.deployment, template: template!, by: by('promote') });
            await change.scaleDeployment({ deployment: input.deployment, replicas: total, by: by('promote') });
            const h = await wait.waitForRolloutHealthy({ deployment: input.deployment, timeoutMs: healthMs });
            const d = await change.deleteCanary({ deployment: input.deployment });
            status.replicas = { stable: total, canary: 0, total };
            Object.assign(evidence, { revision: h.revision, ready: h.ready, canaryDeleted: d.deleted });
          } else {
            const r = await wait.rollForward({ deployment: input.deployment, images: rolloutImages, template: rolloutTemplate, untilUpdated: total, timeoutMs: healthMs, by: by('promote') });
            const h = await wait.waitForRolloutHealthy({ deployment: input.deployment, timeoutMs: healthMs });
            status.replicas = { stable: total, canary: 0, total };
            Object.assign(evidence, { revision: h.revision, ready: r.ready });
          }
          status.weight = 100;
          status.waitingFor = undefined;
        });
      });
    } catch (err) {
      if (err instanceof RolloutStop) stop = err;
      else if (isCancellation(err) && gates.aborted) stop = new RolloutStop('aborted', abortReason());
      else if (err instanceof Error) stop = new RolloutStop('rolled back', causeText(err));
      else throw err;
    }

    try {
      if (stop) {
        setPhase('rolling back');
        status.reason = stop.message;
        status.waitingFor = `${input.deployment} back on revision ${status.previousRevision} (${status.previousImages.map((c) => c.image).join(', ')})`;
        log.warn('rolling back', { deployment: input.deployment, reason: stop.message });
        const stopped = stop;
        // The rollback runbook does the undo (revert, canary removed, autoscaler restored, verified): its verification decides.
        const rolledBack = await CancellationScope.nonCancellable(() =>
          timeline.step('roll back', async (evidence) => {
            const rollbackInput: RollbackInput = {
              environment: input.environment,
              deployment: input.deployment,
              toRevision: status.previousRevision,
              analysis: input.analysis,
              healthTimeoutSeconds: input.healthTimeoutSeconds,
              reason: `rollout ${workflowId}: ${stopped.message}`.slice(0, 1000),
            };
            const h = await startChild('rollback', {
              workflowId: `${workflowId}-rollback-${uuid4().slice(0, 6)}`,
              args: [rollbackInput],
              typedSearchAttributes: childSearchAttributes('rollback'),
              // A rollback finishes even if this run is terminated meanwhile.
              parentClosePolicy: ParentClosePolicy.ABANDON,
            });
            status.rollback = linked(h);
            evidence.rollbackWorkflowId = h.workflowId;
            try {
              const r = (await h.result()) as RollbackResult;
              status.rollback.verified = r.verified;
              status.replicas = { stable: r.to.replicas ?? status.replicas.total, canary: 0, total: r.to.replicas ?? status.replicas.total };
              status.weight = 0;
              Object.assign(evidence, { reason: stopped.message, changed: r.changed, revision: r.to.revision, images: r.to.images.map((c) => `${c.name}=${c.image}`), canaryRemoved: r.canaryRemoved ?? null, autoscaler: r.autoscaler ?? null, verified: r.verified });
              return r;
            } catch (err) {
              status.rollback.error = causeText(err);
              throw err;
            }
          }),
        ).catch((err: unknown) => err);
        if (hasChecks(input.analysis)) {
          await CancellationScope.nonCancellable(() =>
            timeline.step('verify the rollback', async (evidence) => {
              const run = rolledBack instanceof Error ? verificationOf(rolledBack) : (rolledBack as RollbackResult).analysis;
              Object.assign(evidence, { passed: run?.passed ?? false, failures: run?.failures ?? {}, reason: run?.reason ?? (rolledBack instanceof Error ? causeText(rolledBack) : null), by: status.rollback?.workflowId });
              if (!run?.passed) throw new Error(`the rollback ${status.rollback?.workflowId} did not verify: ${run?.reason ?? causeText(rolledBack)}`);
            }),
          ).catch(() => undefined);
        }
        if (rolledBack instanceof Error) {
          status.waitingFor = undefined;
          setPhase('done');
          gates.announce('run failed', `${input.deployment}: the rollback after "${stop.message}" failed: ${causeText(rolledBack)}`.slice(0, 500));
          throw ApplicationFailure.create({ type: 'RollbackFailed', message: `${input.deployment}: ${stop.message}; the rollback ${status.rollback?.workflowId} failed: ${causeText(rolledBack)}`, nonRetryable: true, details: [snapshot()] });
        }
        status.waitingFor = undefined;
        setPhase('done');
        status.outcome = stop.outcome;
        sinks.runbookMetrics.rolloutFinished(input.environment, stop.outcome);
        gates.announce(stop.outcome === 'aborted' ? 'run aborted' : 'run rolled back', `${input.deployment} ${stop.outcome}: ${stop.message}`.slice(0, 500));
        gates.outcomeSummary = `${stop.outcome}: ${stop.message}`;
        return await result(stop.outcome, stop.message);
      }
      setPhase('done');
      status.outcome = 'promoted';
      gates.outcomeSummary = `promoted: ${input.deployment} runs ${status.image}`;
      sinks.runbookMetrics.rolloutFinished(input.environment, 'promoted');
      return await result('promoted');
    } finally {
      if (gitopsSuspended) {
        await CancellationScope.nonCancellable(() =>
          timeline.step('resume GitOps reconciliation', async (evidence) => {
            Object.assign(evidence, await change.setGitOpsReconcile({ deployment: input.deployment, suspend: false, by: by('resume GitOps reconciliation') }));
          }),
        ).catch(() => undefined);
      }
    }

    async function analyse(name: string, spec: AnalysisSpec, deployments: string[], opts?: { settle?: boolean; maxCount?: number; inconclusive?: boolean }): Promise<AnalysisRun> {
      const index = status.analyses.length;
      return runAnalysis(
        name,
        spec,
        deployments,
        (checks) => measure.measureAnalysis({ checks, noData: opts?.inconclusive ? 'inconclusive' : undefined }),
        (run) => {
          status.analyses[index] = { ...run, measurements: run.measurements.slice(-5) };
        },
        opts,
      );
    }

    async function result(outcome: RolloutOutcome, reason?: string): Promise<Omit<RolloutResult, 'timeline'>> {
      const final = await CancellationScope.nonCancellable(() => read.readDeployment({ deployment: input.deployment }));
      return {
        runbook: 'rollout',
        outcome,
        reason,
        deployment: input.deployment,
        image: input.image ?? final.containers.map((c) => c.image).join(', '),
        previousImages: status.previousImages,
        finalImages: final.containers,
        revision: final.revision,
        previousRevision: status.previousRevision,
        status: snapshot(),
      };
    }
  });

  function abortReason(): string {
    const a = gates.aborted!;
    return `aborted by ${a.principal} (key ${a.fingerprint})${a.reason ? `: ${a.reason}` : ''}`;
  }
}

/** The analysis a failed rollback child carried (its verify step fails with the run as details). */
function verificationOf(err: unknown): AnalysisRun | undefined {
  let e: unknown = err;
  while (e instanceof Error) {
    const details = (e as Error & { details?: unknown[] }).details;
    const run = details?.[0] as AnalysisRun | undefined;
    if (run && typeof run === 'object' && 'measurements' in run) return run;
    e = (e as Error & { cause?: unknown }).cause;
  }
  return undefined;
}

export type { GateRecord };
