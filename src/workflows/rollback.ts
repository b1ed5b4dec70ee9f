import { ApplicationFailure, patched, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { AutoscalerActivities } from '../activities/autoscaler';
import type { ContainerImage, KubernetesActivities } from '../activities/kubernetes';
import { AnalysisRun, AnalysisSpec, analysisProblems, hasChecks, runAnalysis } from './lib/analysis';
import { ANALYSIS_MEASURE, K8S_CHANGE, K8S_READ, K8S_WAIT } from './lib/kubernetesOptions';
import { describe, ENVIRONMENT_NAME, InputChecker } from './lib/input';
import { acquireTarget } from './lib/exclusive';
import { runRunbook, Timeline, TimelineSnapshot } from './lib/timeline';
import { K8S_NAME } from './rolloutDefs';

/** Marker of the rollback that restores an autoscaler's bounds a rollout narrowed. */
const RESTORES_AUTOSCALER = 'rollback-restores-autoscaler';

const read = proxyActivities<KubernetesActivities & AutoscalerActivities>(K8S_READ);
const change = proxyActivities<KubernetesActivities & AutoscalerActivities>(K8S_CHANGE);
const wait = proxyActivities<KubernetesActivities>(K8S_WAIT);
const measure = proxyActivities<KubernetesActivities>(ANALYSIS_MEASURE);

export interface RollbackInput {
  environment: string;
  deployment: string;
  /** Go back to this ReplicaSet revision; default: the one before the current. */
  toRevision?: number;
  /** Or set the container to this image (the first container unless `container` says which). */
  toImage?: string;
  container?: string;
  /** Verify the result with this analysis after the Deployment is healthy. */
  analysis?: AnalysisSpec;
  healthTimeoutSeconds?: number;
  reason?: string;
  requestedBy?: string;
}

export interface RollbackResult {
  runbook: 'rollback';
  deployment: string;
  changed: boolean;
  from: { revision: number; images: ContainerImage[] };
  to: { revision: number; images: ContainerImage[]; replicas?: number };
  /** The canary of an interrupted rollout was found and removed. */
  canaryRemoved?: boolean;
  /** An autoscaler's bounds a rollout had narrowed, put back. */
  autoscaler?: string;
  verified: boolean | null;
  analysis?: AnalysisRun;
  timeline: TimelineSnapshot;
}

export function validateRollbackInput(input: unknown): RollbackInput {
  const check = InputChecker.of('rollback', input);
  const v = check.value;
  check.matches('environment', ENVIRONMENT_NAME, 'an environment name');
  check.matches('deployment', K8S_NAME, 'a Deployment name (lower-case letters, digits and -, at most 63)');
  if (v.toRevision !== undefined && !(typeof v.toRevision === 'number' && Number.isInteger(v.toRevision) && v.toRevision >= 1)) check.problem(`toRevision: expected a revision number (1 or more), found ${describe(v.toRevision)}`);
  if (v.toImage !== undefined && !(typeof v.toImage === 'string' && /^[a-z0-9][a-z0-9._\-/:@]{0,254}$/i.test(v.toImage) && /[:@]/.test(v.toImage))) check.problem(`toImage: expected an image reference with a tag or digest, found ${describe(v.toImage)}`);
  if (v.toImage !== undefined && v.toRevision !== undefined) check.problem('toImage: give either toImage or toRevision, not both');
  check.matches('container', K8S_NAME, 'a container name', true);
  const h = v.healthTimeoutSeconds;
  if (h !== undefined && !(typeof h === 'number' && Number.isInteger(h) && h >= 5 && h <= 86_400)) check.problem(`healthTimeoutSeconds: expected 5 to 86400, found ${describe(h)}`);
  if (v.reason !== undefined && !(typeof v.reason === 'string' && v.reason.length <= 1000)) check.problem(`reason: expected text of at most 1000 characters, found ${describe(v.reason)}`);
  if (v.requestedBy !== undefined && !(typeof v.requestedBy === 'string' && /^[A-Za-z0-9._@+-]{1,128}$/.test(v.requestedBy))) check.problem(`requestedBy: expected a person's id, found ${describe(v.requestedBy)}`);
  for (const p of analysisProblems(v.analysis, 'analysis')) check.problem(p);
  check.done();
  return v as unknown as RollbackInput;
}

/**
 * Returns a Deployment to an earlier revision (as `kubectl rollout undo` does) or to a named image,
 * waits until it is healthy, verifies it with the analysis if one is given, and reports.
 */
export async function rollback(rawInput: RollbackInput): Promise<RollbackResult> {
  const input = validateRollbackInput(rawInput);
  const healthMs = (input.healthTimeoutSeconds ?? 300) * 1000;
  const by = { workflowId: workflowInfo().workflowId, step: 'rollback' };
  return runRunbook('rollback', input.environment, async (timeline: Timeline) => {
    const before = await timeline.step('preflight', async (evidence) => {
      await read.describeRolloutTarget({ environment: input.environment, deployment: input.deployment });
      const d = await read.readDeployment({ deployment: input.deployment });
      if (!d.exists) throw ApplicationFailure.create({ type: 'InvalidInput', message: `deployment: ${input.deployment} does not exist`, nonRetryable: true });
      const sets = await read.listReplicaSets({ deployment: input.deployment });
      const held = await acquireTarget({ environment: input.environment, runbook: 'rollback', checkFreezes: true, kind: 'deployment', target: input.deployment });
      if (held) evidence.target = `deployment ${input.deployment} held (${held.held})`;
      Object.assign(evidence, { revision: d.revision, images: d.containers.map((c) => `${c.name}=${c.image}`), revisions: sets.map((s) => `${s.revision}=${s.containers.map((c) => c.image).join(',')}`), reason: input.reason ?? null, requestedBy: input.requestedBy ?? null });
      return d;
    });
    const undo = await timeline.step('revert', async (evidence) => {
      const container = input.container ?? before.containers[0]?.name;
      const u = await change.undoDeployment({
        deployment: input.deployment,
        toRevision: input.toRevision,
        toImages: input.toImage ? [{ name: container!, image: input.toImage }] : undefined,
        by,
      });
      Object.assign(evidence, u);
      return u;
    });
    // The canary of an interrupted rollout is removed too: after a rollback only the stable version serves.
    const canary = await read.readDeployment({ deployment: `${input.deployment}-canary` });
    if (canary.exists) {
      await timeline.step('remove the canary', async (evidence) => {
        Object.assign(evidence, await change.deleteCanary({ deployment: input.deployment }));
        const stableReplicas = Number(canary.annotations['runbook.dev/stable-replicas'] ?? 0);
        if (stableReplicas > 0) evidence.scaled = await change.scaleDeployment({ deployment: input.deployment, replicas: stableReplicas, by });
      });
    }
    let autoscaler: string | undefined;
    if (patched(RESTORES_AUTOSCALER)) {
      // A rollout narrows the autoscaler's bounds to the stable share and keeps the originals on it: put them back.
      const hpa = await read.describeAutoscaler({ deployment: input.deployment });
      if (hpa?.held) {
        autoscaler = await timeline.step('restore the autoscaler', async (evidence) => {
          const r = await change.restoreAutoscaler({ deployment: input.deployment, by });
          Object.assign(evidence, { autoscaler: hpa.name, narrowed: `${hpa.minReplicas}-${hpa.maxReplicas}`, restored: r?.bounds ? `${r.bounds.minReplicas}-${r.bounds.maxReplicas}` : null, narrowedBy: hpa.held!.workflowId ?? null });
          return `${hpa.name} back to ${r?.bounds?.minReplicas}-${r?.bounds?.maxReplicas}`;
        });
      }
    }
    const after = await timeline.step('wait until healthy', async (evidence) => {
      const h = await wait.waitForRolloutHealthy({ deployment: input.deployment, timeoutMs: healthMs });
      Object.assign(evidence, { revision: h.revision, ready: h.ready, available: h.available, waitedMs: h.waitedMs });
      return h;
    });
    let analysis: AnalysisRun | undefined;
    if (hasChecks(input.analysis)) {
      analysis = await timeline.step('verify', async (evidence) => {
        const run = await runAnalysis('verify rollback', input.analysis!, [input.deployment], (checks) => measure.measureAnalysis({ checks }), () => undefined, { settle: true, maxCount: 3 });
        Object.assign(evidence, { passed: run.passed, failures: run.failures, reason: run.reason ?? null });
        if (!run.passed) throw ApplicationFailure.create({ type: 'RolloutFailed', message: `the rolled-back ${input.deployment} failed verification: ${run.reason}`, nonRetryable: true, details: [run] });
        return run;
      });
    } else timeline.skip('verify', 'no analysis given');
    return {
      runbook: 'rollback' as const,
      deployment: input.deployment,
      changed: undo.changed,
      from: { revision: before.revision, images: before.containers },
      to: { revision: after.revision, images: after.containers, replicas: after.replicas },
      canaryRemoved: canary.exists,
      autoscaler,
      verified: analysis ? analysis.passed : null,
      analysis,
    };
  });
}
