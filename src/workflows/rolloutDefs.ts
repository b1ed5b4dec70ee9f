import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { ComparisonResult } from '../activities/canaryAnalysis';
import type { ContainerImage, GitOpsMarker, PodTemplateChange } from '../activities/kubernetes';
import type { SignedAct } from '../identity/policy';
import type { SignedStatement } from '../identity/statement';
import { AnalysisRun, AnalysisSpec, analysisProblems, CompareSpec, compareProblems } from './lib/analysis';
import { GateRecord, startFieldProblem } from './lib/gate';
import { describe, ENVIRONMENT_NAME, InputChecker } from './lib/input';
import type { TimelineSnapshot } from './lib/timeline';

// Types, signals and input rules of the rollout runbook, shared by its current code (rollout.ts) and
// the code runs started before releases replay on (legacy/rolloutV1.ts).

export type RolloutStep =
  | { setWeight: number }
  | { pause: { durationSeconds?: number } }
  | { analysis: AnalysisSpec | Record<string, never> }
  /** Canary versus stable, judged by rank test; {} uses the rollout's comparison. */
  | { compare: CompareSpec | Record<string, never> };

export interface RolloutInput {
  environment: string;
  deployment: string;
  /** The new image of the container (the first one unless `container` says which). */
  image?: string;
  container?: string;
  /** Any other change of the pod template: images and env of named containers, pod annotations, or a whole template. */
  change?: PodTemplateChange;
  /** canary: a <name>-canary Deployment stepped through weights; rolling: the Deployment's own rolling update in batches. */
  strategy?: 'canary' | 'rolling';
  /** Default: canary [25%, pause, 50%, pause]; rolling [pause]. */
  steps?: RolloutStep[];
  /** The analysis `{ analysis: {} }` steps run, and the check after a rollback. */
  analysis?: AnalysisSpec;
  /** Measured all through every pause and bake (Argo Rollouts' background analysis); a failure rolls back at once. */
  backgroundAnalysis?: AnalysisSpec;
  /** The comparison `{ compare: {} }` steps run: canary against stable, metric by metric. */
  comparison?: CompareSpec;
  /** How long each change may take to become healthy (default 300). */
  healthTimeoutSeconds?: number;
  /** The requester's signed start (runbook rollout start signs it); a run started by go-live or a schedule has none. */
  start?: SignedStatement;
  /** Override the environment's gate policy (kubernetes.rollout in config) for this run. */
  gateTimeoutSeconds?: number;
  onGateTimeout?: 'rollback' | 'remind';
  remindEverySeconds?: number;
}

export type RolloutOutcome = 'promoted' | 'rolled back' | 'aborted' | 'unchanged';

export interface RolloutStatus {
  deployment: string;
  strategy: 'canary' | 'rolling';
  image: string;
  previousImages: ContainerImage[];
  phase: 'preflight' | 'progressing' | 'paused' | 'analysis' | 'promoting' | 'rolling back' | 'done';
  currentStep?: number;
  steps: RolloutStep[];
  /** Share of replicas on the new version (canary replicas over all), in percent. */
  weight: number;
  replicas: { stable: number; canary: number; total: number };
  waitingFor?: string;
  analyses: AnalysisRun[];
  approvals: GateRecord[];
  promotedFull?: { by: string; at: string; signed: SignedAct[] };
  /** Signed promote --full acts collected so far, when the policy needs more than one person. */
  fullPromoteVotes?: SignedAct[];
  outcome?: RolloutOutcome;
  reason?: string;
  /** What the change does to the pod template, line by line. */
  change?: string[];
  /** The stable Deployment's revision before the rollout: where a rollback returns to. */
  previousRevision?: number;
  /** The HorizontalPodAutoscaler of the Deployment: its own bounds, the narrowed ones, and every time the canary followed it. */
  autoscaler?: { name: string; original: { minReplicas: number; maxReplicas: number }; bounds?: { minReplicas: number; maxReplicas: number }; restored?: boolean; follows: { at: string; stable: number; canary: number; previousCanary: number }[] };
  /** The background analysis of the current or last pause. */
  background?: AnalysisRun;
  /** Canary-versus-stable judgements. */
  comparisons?: (ComparisonResult & { step: number })[];
  /** A GitOps tool manages the Deployment, and what the policy made of it. */
  gitops?: GitOpsMarker & { policy: 'refuse' | 'proceed' | 'suspend' };
  /** The rollback run that undid this rollout. */
  rollback?: { workflowId: string; runId: string; verified?: boolean | null; error?: string };
}

export interface RolloutResult {
  runbook: 'rollout';
  outcome: RolloutOutcome;
  reason?: string;
  deployment: string;
  image: string;
  previousImages: ContainerImage[];
  finalImages: ContainerImage[];
  revision: number;
  /** The revision before the rollout (a rollback of a promoted rollout returns to it). */
  previousRevision?: number;
  status: RolloutStatus;
  timeline: TimelineSnapshot;
}

/** A signed act on a rollout: promote (approve the pause), promote-full, or abort. */
export type OperatorAction = SignedStatement;

export const rolloutStatusQuery = defineQuery<RolloutStatus>('status');
/** Approve the pause the rollout waits at; with full, also skip every remaining step. Refused for people not in the approvers list. */
export const promoteUpdate = defineUpdate<RolloutStatus, [OperatorAction]>('promote');
/** Abort now: the rollout is rolled back and ends as aborted. Refused for people not in the approvers list. */
export const abortUpdate = defineUpdate<RolloutStatus, [OperatorAction]>('abort');

/** Marker of the rollout that follows autoscalers, takes any template change, compares canary with stable and rolls back through the rollback runbook. */
export const ROLLOUT_V2_PATCH = 'rollout-v2';

export const IMAGE = /^[a-z0-9][a-z0-9._\-/:@]{0,254}$/i;
export const K8S_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const CONTAINER = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;
const ANNOTATION_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

/** Problems with a pod-template change, each naming its field. */
export function changeProblems(v: unknown): string[] {
  const out: string[] = [];
  if (v === undefined) return out;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return [`change: expected { containers, podAnnotations, template }, found ${describe(v)}`];
  const c = v as Record<string, unknown>;
  for (const k of Object.keys(c)) if (!['containers', 'podAnnotations', 'template'].includes(k)) out.push(`change.${k}: unknown field; expected containers, podAnnotations or template`);
  if (c.containers !== undefined) {
    if (!Array.isArray(c.containers) || c.containers.length > 20) out.push(`change.containers: expected a list of at most 20 containers, found ${describe(c.containers)}`);
    else
      c.containers.forEach((x: unknown, i: number) => {
        const f = `change.containers[${i}]`;
        const ct = (x ?? {}) as Record<string, unknown>;
        if (x === null || typeof x !== 'object') return out.push(`${f}: expected { name, image, env }, found ${describe(x)}`);
        for (const k of Object.keys(ct)) if (!['name', 'image', 'env'].includes(k)) out.push(`${f}.${k}: unknown field; expected name, image or env`);
        if (typeof ct.name !== 'string' || !CONTAINER.test(ct.name)) out.push(`${f}.name: expected a container name, found ${describe(ct.name)}`);
        if (ct.image !== undefined && !(typeof ct.image === 'string' && IMAGE.test(ct.image) && /[:@]/.test(ct.image))) out.push(`${f}.image: expected an image reference with a tag or digest, found ${describe(ct.image)}`);
        if (ct.env !== undefined) {
          if (!Array.isArray(ct.env) || ct.env.length > 100) out.push(`${f}.env: expected a list of at most 100 { name, value }, found ${describe(ct.env)}`);
          else
            ct.env.forEach((e: unknown, j: number) => {
              const ev = (e ?? {}) as Record<string, unknown>;
              if (typeof ev.name !== 'string' || !ENV_NAME.test(ev.name)) out.push(`${f}.env[${j}].name: expected an environment variable name, found ${describe(ev.name)}`);
              if (!(ev.value === null || (typeof ev.value === 'string' && ev.value.length <= 4096))) out.push(`${f}.env[${j}].value: expected text (at most 4096 characters) or null to remove it, found ${describe(ev.value)}`);
            });
        }
        if (ct.image === undefined && ct.env === undefined) out.push(`${f}: changes nothing; give image or env`);
      });
  }
  if (c.podAnnotations !== undefined) {
    const a = c.podAnnotations as Record<string, unknown>;
    if (a === null || typeof a !== 'object' || Array.isArray(a) || Object.keys(a).length > 50) out.push(`change.podAnnotations: expected a map of at most 50 annotations, found ${describe(a)}`);
    else
      for (const [k, x] of Object.entries(a)) {
        if (k.length > 253 || !ANNOTATION_KEY.test(k)) out.push(`change.podAnnotations: ${describe(k)} is not an annotation key (prefix/name, as Kubernetes allows)`);
        if (!(x === null || (typeof x === 'string' && x.length <= 8192))) out.push(`change.podAnnotations.${k}: expected text or null to remove it, found ${describe(x)}`);
      }
  }
  if (c.template !== undefined) {
    const t = c.template as Record<string, unknown>;
    const spec = (t?.spec ?? {}) as Record<string, unknown>;
    if (t === null || typeof t !== 'object' || Array.isArray(t)) out.push(`change.template: expected a pod template { metadata, spec }, found ${describe(t)}`);
    else if (!Array.isArray(spec.containers) || spec.containers.length === 0) out.push('change.template.spec.containers: a pod template needs at least one container');
    else if (JSON.stringify(t).length > 65_536) out.push('change.template: larger than 64 KB');
  }
  return out;
}

export function validateRolloutInput(input: unknown): RolloutInput {
  const check = InputChecker.of('rollout', input);
  const v = check.value;
  check.matches('environment', ENVIRONMENT_NAME, 'an environment name');
  check.matches('deployment', K8S_NAME, 'a Deployment name (lower-case letters, digits and -, at most 63; the -canary suffix is added by the rollout)');
  if (typeof v.deployment === 'string' && v.deployment.length > 56) check.problem(`deployment: at most 56 characters, so that <name>-canary is a valid name; found ${v.deployment.length}`);
  if (v.image === undefined && v.change === undefined) check.problem('image: expected an image reference with a tag or digest (registry/app:1.2.3), or a change of the pod template (change: containers, podAnnotations or template)');
  else if (v.image !== undefined && (typeof v.image !== 'string' || !IMAGE.test(v.image) || !/[:@]/.test(v.image))) check.problem(`image: expected an image reference with a tag or digest (registry/app:1.2.3), found ${describe(v.image)}`);
  for (const p of changeProblems(v.change)) check.problem(p);
  check.matches('container', CONTAINER, 'a container name', true);
  if (v.strategy !== undefined && v.strategy !== 'canary' && v.strategy !== 'rolling') check.problem(`strategy: expected canary or rolling, found ${describe(v.strategy)}`);
  const h = v.healthTimeoutSeconds;
  if (h !== undefined && !(typeof h === 'number' && Number.isInteger(h) && h >= 5 && h <= 86_400)) check.problem(`healthTimeoutSeconds: expected 5 to 86400, found ${describe(h)}`);
  const startProblem = startFieldProblem(v.start);
  if (startProblem) check.problem(startProblem);
  for (const p of analysisProblems(v.analysis, 'analysis')) check.problem(p);
  for (const p of analysisProblems(v.backgroundAnalysis, 'backgroundAnalysis')) check.problem(p);
  for (const p of compareProblems(v.comparison, 'comparison')) check.problem(p);
  for (const f of ['gateTimeoutSeconds', 'remindEverySeconds'] as const) {
    const t = v[f];
    if (t !== undefined && !(typeof t === 'number' && Number.isInteger(t) && t >= 1 && t <= 30 * 86_400)) check.problem(`${f}: expected 1 to 2592000 seconds, found ${describe(t)}`);
  }
  if (v.onGateTimeout !== undefined && v.onGateTimeout !== 'rollback' && v.onGateTimeout !== 'remind') check.problem(`onGateTimeout: expected rollback or remind, found ${describe(v.onGateTimeout)}`);
  if (v.steps !== undefined) {
    if (!Array.isArray(v.steps) || v.steps.length === 0 || v.steps.length > 50) check.problem(`steps: expected a list of 1 to 50 steps, found ${describe(v.steps)}`);
    else {
      let lastWeight = 0;
      v.steps.forEach((s: unknown, i: number) => {
        const step = (s ?? {}) as Record<string, unknown>;
        const keys = Object.keys(step);
        if (s === null || typeof s !== 'object' || keys.length !== 1) return check.problem(`steps[${i}]: expected one of { setWeight }, { pause }, { analysis }, { compare }, found ${describe(s)}`);
        if ('setWeight' in step) {
          const w = step.setWeight;
          if (!(typeof w === 'number' && Number.isInteger(w) && w >= 1 && w <= 100)) return check.problem(`steps[${i}].setWeight: expected a percentage from 1 to 100, found ${describe(w)}`);
          if (w < lastWeight) check.problem(`steps[${i}].setWeight: weights only grow (${w} after ${lastWeight}); abort to go back`);
          lastWeight = w;
        } else if ('pause' in step) {
          const p = (step.pause ?? {}) as Record<string, unknown>;
          if (typeof p !== 'object' || Object.keys(p).some((k) => k !== 'durationSeconds')) return check.problem(`steps[${i}].pause: expected {} (wait for a person) or { durationSeconds }, found ${describe(step.pause)}`);
          const d = p.durationSeconds;
          if (d !== undefined && !(typeof d === 'number' && Number.isInteger(d) && d >= 1 && d <= 7 * 86_400)) check.problem(`steps[${i}].pause.durationSeconds: expected 1 to 604800, found ${describe(d)}`);
        } else if ('analysis' in step) {
          const a = step.analysis;
          if (a !== null && typeof a === 'object' && Object.keys(a).length === 0) {
            if (!v.analysis) check.problem(`steps[${i}].analysis: an empty analysis uses the rollout's analysis, but none is given`);
          } else for (const p of analysisProblems(a, `steps[${i}].analysis`)) check.problem(p);
        } else if ('compare' in step) {
          const c = step.compare;
          if (v.strategy === 'rolling') check.problem(`steps[${i}].compare: a comparison needs a canary beside the stable version; use the canary strategy`);
          else if (lastWeight === 0) check.problem(`steps[${i}].compare: comes before any setWeight, so there is no canary to compare yet`);
          if (c !== null && typeof c === 'object' && Object.keys(c).length === 0) {
            if (!v.comparison) check.problem(`steps[${i}].compare: an empty comparison uses the rollout's comparison, but none is given`);
          } else for (const p of compareProblems(c, `steps[${i}].compare`)) check.problem(p);
        } else check.problem(`steps[${i}]: unknown step ${describe(keys[0])}; expected setWeight, pause, analysis or compare`);
      });
    }
  }
  check.done();
  return v as unknown as RolloutInput;
}

/** The policy's mandatory gate: an approval pause must come before any step sets a weight above the limit. */
export function mandatoryPauseProblem(steps: RolloutStep[], limit: number | undefined): string | undefined {
  if (limit === undefined) return undefined;
  for (const [i, s] of steps.entries()) {
    if ('pause' in s && !s.pause.durationSeconds) return undefined;
    if ('setWeight' in s && s.setWeight > limit) return `policy pauseBeforeWeight (${limit}%): step ${i + 1} sets ${s.setWeight}% before any approval pause; add a pause step before it (e.g. --steps 25,pause,${s.setWeight})`;
  }
  // Promotion takes every pod to the new version, which passes any limit below 100%.
  return limit < 100 ? `policy pauseBeforeWeight (${limit}%): the rollout promotes to 100% without an approval pause; add a pause step` : undefined;
}

export function defaultSteps(strategy: 'canary' | 'rolling'): RolloutStep[] {
  return strategy === 'canary' ? [{ setWeight: 25 }, { pause: {} }, { setWeight: 50 }, { pause: {} }] : [{ pause: {} }];
}

export function describeStep(s: RolloutStep): string {
  if ('setWeight' in s) return `set weight ${s.setWeight}%`;
  if ('pause' in s) return s.pause.durationSeconds ? `bake for ${s.pause.durationSeconds} s` : 'pause for approval';
  if ('compare' in s) return 'compare canary with stable';
  return 'analysis';
}

/**
 * Canary and stable replica counts for a weight: the canary's share rounded to the nearest pod (at
 * least one), keeping at least one stable pod until 100%. 34% of 3 pods is 1, 67% is 2.
 */
export function splitReplicas(total: number, weight: number): { canary: number; stable: number } {
  if (weight >= 100) return { canary: total, stable: 0 };
  const canary = Math.min(Math.max(1, Math.round((total * weight) / 100)), Math.max(total - 1, 1));
  return { canary, stable: Math.max(total - canary, 1) };
}

/** How a rollout stops early: rolled back (a failed check, a rejection, a timeout) or aborted. */
export class RolloutStop extends Error {
  constructor(
    readonly outcome: 'rolled back' | 'aborted',
    message: string,
  ) {
    super(message);
  }
}
