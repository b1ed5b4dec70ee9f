/**
 * Plan-mode stand-ins for the activities that change Kubernetes (or follow such a change) in the
 * rollout, rollback, release and promotion runbooks. Each reads the cluster through the read-only
 * activities, answers as the real activity would after a successful change, and records the change
 * as the patch the real one would send. What a plan has done to a Deployment or an autoscaler is kept
 * in the plan's world, so a later step (a health wait, an undo, the canary's removal) sees it.
 */
import type * as k8s from '@kubernetes/client-node';
import { ANNOTATION_AUTOSCALER_BOUNDS, canaryFor, stableBounds, type AutoscalerState } from '../../activities/autoscaler';
import { querySet } from '../../activities/canaryAnalysis';
import { failure } from '../../activities/errors';
import { jobManifest } from '../../activities/jobs';
import { canonical } from '../../activities/kube';
import {
  ANNOTATION_RECONCILE_WAS,
  ANNOTATION_STABLE_REPLICAS,
  ANNOTATION_UNDONE_FROM,
  canaryPodTemplate,
  changeAnnotations,
  FLUX_RECONCILE,
  gitopsMarker,
  LABEL_TRACK,
  undoTarget,
  withoutHash,
  type ChangeContext,
  type ContainerImage,
  type DeploymentState,
  type PodTemplate,
} from '../../activities/kubernetes';
import type { PlanContext, Planners } from '../recording';
import type { PlannedChange } from '../types';

/** One RFC 6902 operation. */
export type JsonPatchOp = { op: 'add' | 'remove' | 'replace'; path: string; value?: unknown };

const pointer = (key: string | number) => `/${String(key).replaceAll('~', '~0').replaceAll('/', '~1')}`;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The RFC 6902 patch that turns `from` into `to`: object members added, removed or replaced, arrays
 * element by element (surplus elements removed from the end first). Undefined members are absent, as
 * in the JSON the API server keeps.
 */
export function jsonPatchDiff(from: unknown, to: unknown, path = ''): JsonPatchOp[] {
  if (isObject(from) && isObject(to)) {
    const ops: JsonPatchOp[] = [];
    for (const k of Object.keys(from)) if (from[k] !== undefined && to[k] === undefined) ops.push({ op: 'remove', path: path + pointer(k) });
    for (const k of Object.keys(to)) {
      if (to[k] === undefined) continue;
      if (from[k] === undefined) ops.push({ op: 'add', path: path + pointer(k), value: to[k] });
      else ops.push(...jsonPatchDiff(from[k], to[k], path + pointer(k)));
    }
    return ops;
  }
  if (Array.isArray(from) && Array.isArray(to)) {
    const ops: JsonPatchOp[] = [];
    for (let i = 0; i < Math.min(from.length, to.length); i++) ops.push(...jsonPatchDiff(from[i], to[i], path + pointer(i)));
    for (let i = from.length - 1; i >= to.length; i--) ops.push({ op: 'remove', path: path + pointer(i) });
    for (let i = from.length; i < to.length; i++) ops.push({ op: 'add', path: path + pointer(i), value: to[i] });
    return ops;
  }
  return canonical(from) === canonical(to) ? [] : [{ op: 'replace', path, value: to }];
}

/** Annotations set (or, with null, removed) on an object whose annotations are `current` (undefined: not read). */
function annotationOps(current: Record<string, string> | undefined, set: Record<string, string | null>): JsonPatchOp[] {
  const base = '/metadata/annotations';
  if (current && Object.keys(current).length === 0) {
    const value = Object.fromEntries(Object.entries(set).filter(([, v]) => v !== null));
    return Object.keys(value).length ? [{ op: 'add', path: base, value }] : [];
  }
  return Object.entries(set).flatMap(([k, v]): JsonPatchOp[] => {
    if (v === null) return current && !(k in current) ? [] : [{ op: 'remove', path: base + pointer(k) }];
    if (current?.[k] === v) return [];
    return [{ op: current && k in current ? 'replace' : 'add', path: base + pointer(k), value: v }];
  });
}

function withAnnotations(current: Record<string, string>, set: Record<string, string | null>): Record<string, string> {
  const out = { ...current };
  for (const [k, v] of Object.entries(set)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

type Template = k8s.V1PodTemplateSpec;
const asTemplate = (t: PodTemplate) => t as unknown as Template;
const imagesIn = (t: Template): ContainerImage[] => (t.spec?.containers ?? []).map((c) => ({ name: c.name, image: c.image ?? '' }));
const list = (images: ContainerImage[]) => images.map((c) => `${c.name}=${c.image}`).join(', ');
const seconds = (ms: number) => `${Math.round(ms / 1000)} s`;

function withImages(t: Template, images: ContainerImage[]): Template {
  const copy = withoutHash(t);
  for (const c of copy.spec?.containers ?? []) c.image = images.find((i) => i.name === c.name)?.image ?? c.image;
  return copy;
}

/** What this plan has done so far, over what the cluster says: Deployments (by name), their pod templates, autoscalers (by Deployment). */
interface KubernetesWorld {
  deployments: Record<string, Partial<DeploymentState>>;
  templates: Record<string, PodTemplate>;
  autoscalers: Record<string, AutoscalerState>;
}

const worldOf = (ctx: PlanContext) => (ctx.world.kubernetes ??= { deployments: {}, templates: {}, autoscalers: {} }) as KubernetesWorld;

async function deployment(ctx: PlanContext, name: string): Promise<DeploymentState> {
  return { ...(await ctx.reads.readDeployment({ deployment: name })), ...worldOf(ctx).deployments[name] };
}

async function existing(ctx: PlanContext, name: string): Promise<DeploymentState> {
  const d = await deployment(ctx, name);
  if (!d.exists) throw failure('NotFound', `deployment ${d.namespace}/${name} does not exist`);
  return d;
}

function remember(ctx: PlanContext, name: string, now: DeploymentState, change: Partial<DeploymentState>, template?: Template): DeploymentState {
  const w = worldOf(ctx);
  w.deployments[name] = { ...w.deployments[name], ...change };
  if (template) w.templates[name] = template as unknown as PodTemplate;
  return { ...now, ...change };
}

async function templateOf(ctx: PlanContext, name: string): Promise<Template> {
  return asTemplate(worldOf(ctx).templates[name] ?? (await ctx.reads.planTemplateChange({ deployment: name, change: {} })).template);
}

async function autoscaler(ctx: PlanContext, deployment: string): Promise<AutoscalerState | null> {
  return worldOf(ctx).autoscalers[deployment] ?? ctx.reads.describeAutoscaler({ deployment });
}

type Changed = { changed: boolean; state: DeploymentState; planned: PlannedChange[] };

/** A new pod template (and, with resume, an unpaused Deployment): the patch against the template now, the revision it reaches. */
async function changeTemplate(ctx: PlanContext, by: string, name: string, wanted: (now: Template) => Template, change: ChangeContext, resume: boolean): Promise<Changed> {
  const d = await existing(ctx, name);
  const before = await templateOf(ctx, name);
  const after = withoutHash(wanted(before));
  const templateOps = jsonPatchDiff(before, after, '/spec/template');
  const resuming = resume && d.paused;
  if (templateOps.length === 0 && !resuming) return { changed: false, state: d, planned: [] };
  const revision = templateOps.length ? d.revision + 1 : d.revision;
  const notes = changeAnnotations(change);
  const ops = [...templateOps, ...(resuming ? [{ op: 'add' as const, path: '/spec/paused', value: false }] : []), ...annotationOps(d.annotations, notes)];
  const containers = imagesIn(after);
  const state = remember(ctx, name, d, { revision, containers, paused: resuming ? false : d.paused, annotations: withAnnotations(d.annotations, notes) }, after);
  const was = (c: ContainerImage) => d.containers.find((x) => x.name === c.name)?.image;
  const images = containers.filter((c) => was(c) !== c.image).map((c) => `container ${c.name}: image ${was(c) ?? '(none)'} -> ${c.image}`);
  const others = templateOps.filter((o) => !/^\/spec\/template\/spec\/containers\/\d+\/image$/.test(o.path)).length;
  const what = templateOps.length
    ? `changes the pod template of ${name} (${[...images, ...(others ? [`${others} other change(s), see the patch`] : [])].join('; ')}): revision ${d.revision} -> ${revision}${resuming ? '; resumes the paused Deployment' : ''}`
    : `resumes the paused ${name} on revision ${revision}`;
  return { changed: true, state, planned: [{ kind: 'change', by, what, detail: ops }] };
}

async function changeImages(ctx: PlanContext, by: string, name: string, images: ContainerImage[], change: ChangeContext, resume: boolean): Promise<Changed> {
  const d = await existing(ctx, name);
  for (const c of images) {
    if (!d.containers.some((x) => x.name === c.name)) throw failure('InvalidInput', `container: deployment ${name} has no container ${c.name}; it has ${d.containers.map((x) => x.name).join(', ')}`);
  }
  return changeTemplate(ctx, by, name, (t) => withImages(t, images), change, resume);
}

async function scale(ctx: PlanContext, by: string, name: string, replicas: number, change: ChangeContext): Promise<{ changed: boolean; previous: number; planned: PlannedChange[] }> {
  const d = await existing(ctx, name);
  if (d.replicas === replicas) return { changed: false, previous: d.replicas, planned: [] };
  const notes = changeAnnotations(change);
  remember(ctx, name, d, { replicas, annotations: withAnnotations(d.annotations, notes) });
  const detail = [{ op: 'replace', path: '/spec/replicas', value: replicas }, ...annotationOps(d.annotations, notes)];
  return { changed: true, previous: d.replicas, planned: [{ kind: 'change', by, what: `scales ${name} from ${d.replicas} to ${replicas} replica(s)`, detail }] };
}

function boundsOps(bounds: { minReplicas: number; maxReplicas: number }, notes: Record<string, string | null>): JsonPatchOp[] {
  return [{ op: 'replace', path: '/spec/minReplicas', value: bounds.minReplicas }, { op: 'replace', path: '/spec/maxReplicas', value: bounds.maxReplicas }, ...annotationOps(undefined, notes)];
}

export const kubernetesPlanners: Planners = {
  async setDeploymentImage(input, ctx) {
    const r = await changeImages(ctx, 'setDeploymentImage', input.deployment, input.images, input.by, false);
    return { result: { changed: r.changed, revision: r.state.revision }, planned: r.planned };
  },

  async setDeploymentTemplate(input, ctx) {
    const r = await changeTemplate(ctx, 'setDeploymentTemplate', input.deployment, () => asTemplate(input.template), input.by, false);
    return { result: { changed: r.changed, revision: r.state.revision }, planned: r.planned };
  },

  async scaleDeployment(input, ctx) {
    const { planned, ...result } = await scale(ctx, 'scaleDeployment', input.deployment, input.replicas, input.by);
    return { result, planned };
  },

  async waitForRolloutHealthy(input, ctx) {
    const d = await existing(ctx, input.deployment);
    const n = d.replicas;
    const healthyNow = d.observedGeneration >= d.generation && d.updated === n && d.total === n && d.available === n;
    const unchanged = !(input.deployment in worldOf(ctx).deployments);
    return {
      result: { ...d, observedGeneration: d.generation, updated: n, ready: n, available: n, unavailable: 0, total: n, progressing: { status: 'True', reason: 'NewReplicaSetAvailable' }, waitedMs: 0 },
      planned: [
        {
          kind: 'wait',
          by: 'waitForRolloutHealthy',
          what: `waits until ${n} of ${n} replicas of ${input.deployment} revision ${d.revision} (${list(d.containers)}) are ready, up to ${seconds(input.timeoutMs)}${unchanged && healthyNow ? '; it is healthy now, so the wait ends at once' : ''}`,
          detail: { deployment: input.deployment, revision: d.revision, replicas: n, images: d.containers, timeoutMs: input.timeoutMs },
        },
      ],
    };
  },

  async rollForward(input, ctx) {
    const r = input.template
      ? await changeTemplate(ctx, 'rollForward', input.deployment, () => asTemplate(input.template!), input.by, true)
      : await changeImages(ctx, 'rollForward', input.deployment, input.images ?? [], input.by, true);
    const d = r.state;
    const until = Math.min(input.untilUpdated, d.replicas);
    const pause = input.untilUpdated < d.replicas;
    const planned: PlannedChange[] = [
      ...r.planned,
      { kind: 'wait', by: 'rollForward', what: `waits until ${until} of ${d.replicas} pods of ${input.deployment} revision ${d.revision} are ready, up to ${seconds(input.timeoutMs)}`, detail: { deployment: input.deployment, revision: d.revision, ready: until, replicas: d.replicas, timeoutMs: input.timeoutMs } },
    ];
    if (pause) {
      const notes = changeAnnotations(input.by);
      remember(ctx, input.deployment, d, { paused: true, annotations: withAnnotations(d.annotations, notes) });
      planned.push({ kind: 'change', by: 'rollForward', what: `pauses ${input.deployment} with ${until} of ${d.replicas} pods on revision ${d.revision} (the controller may have started one more)`, detail: [{ op: 'add', path: '/spec/paused', value: true }, ...annotationOps(d.annotations, notes)] });
    }
    return { result: { updated: until, ready: until, replicas: d.replicas, paused: pause }, planned };
  },

  async undoDeployment(input, ctx) {
    if (input.toImages) {
      const from = (await existing(ctx, input.deployment)).revision;
      const r = await changeImages(ctx, 'undoDeployment', input.deployment, input.toImages, input.by, true);
      return { result: { changed: r.changed, fromRevision: from, images: r.state.containers }, planned: r.planned };
    }
    const d = await existing(ctx, input.deployment);
    const sets: { name: string; revision: number; containers: ContainerImage[] }[] = await ctx.reads.listReplicaSets({ deployment: input.deployment });
    // A change this plan made stands for the ReplicaSet the real run would have by now.
    if (d.revision > Math.max(0, ...sets.map((rs) => rs.revision))) sets.push({ name: `(the ReplicaSet of this plan's change of ${input.deployment})`, revision: d.revision, containers: d.containers });
    const target = undoTarget(sets, (rs) => rs.revision, d.revision, input.toRevision);
    if (!target) {
      const known = sets.map((rs) => rs.revision).join(', ') || 'none';
      throw failure('RevisionNotFound', input.toRevision !== undefined ? `deployment ${input.deployment} has no revision ${input.toRevision} (revisions: ${known})` : `deployment ${input.deployment} has no revision before ${d.revision} to go back to`);
    }
    const result = { fromRevision: d.revision, toRevision: target.revision, images: target.containers };
    // One ReplicaSet per template: only the current revision's has the template the Deployment has now.
    if (target.revision === d.revision && !d.paused) return { result: { changed: false, ...result }, planned: [] };
    // The ReplicaSet taken back becomes the newest revision, as the Deployment controller numbers it.
    const revision = target.revision === d.revision ? d.revision : Math.max(...sets.map((rs) => rs.revision)) + 1;
    const notes = { ...changeAnnotations(input.by), [ANNOTATION_UNDONE_FROM]: String(d.revision) };
    remember(ctx, input.deployment, d, { revision, containers: target.containers, paused: false, annotations: withAnnotations(d.annotations, notes) });
    // The read-only listReplicaSets gives a ReplicaSet's images, not its whole template: the detail names where the template comes from.
    delete worldOf(ctx).templates[input.deployment];
    return {
      result: { changed: true, ...result },
      planned: [
        {
          kind: 'change',
          by: 'undoDeployment',
          what: `replaces the pod template of ${input.deployment}, revision ${d.revision} (${list(d.containers)}), with that of revision ${target.revision}, ReplicaSet ${target.name} (${list(target.containers)}), which becomes revision ${revision}`,
          detail: { templateFrom: { replicaSet: target.name, revision: target.revision, images: target.containers }, patch: [{ op: 'add', path: '/spec/paused', value: false }, ...annotationOps(d.annotations, notes)] },
        },
      ],
    };
  },

  async setGitOpsReconcile(input, ctx) {
    const d = await existing(ctx, input.deployment);
    const a = d.annotations;
    const marker = gitopsMarker(d.labels ?? {}, a);
    if (marker && !marker.suspendable) throw failure('InvalidInput', `deployment ${input.deployment} is managed by ${marker.tool} (${marker.marker}), which has no per-object switch to suspend; set kubernetes.gitops.onManaged to proceed (with the tool told to ignore replicas and the pod template) or roll out through the GitOps repository`);
    const suspended = ANNOTATION_RECONCILE_WAS in a;
    if (input.suspend === suspended) return { result: { changed: false, annotation: a[FLUX_RECONCILE] ?? null }, planned: [] };
    const was = input.suspend ? (a[FLUX_RECONCILE] ?? '') : a[ANNOTATION_RECONCILE_WAS];
    const set: Record<string, string | null> = input.suspend ? { [FLUX_RECONCILE]: 'disabled', [ANNOTATION_RECONCILE_WAS]: was } : { [FLUX_RECONCILE]: was || null, [ANNOTATION_RECONCILE_WAS]: null };
    const notes = { ...set, ...changeAnnotations(input.by) };
    remember(ctx, input.deployment, d, { annotations: withAnnotations(a, notes) });
    const what = input.suspend
      ? `suspends Flux reconciliation of ${input.deployment}: ${FLUX_RECONCILE}=disabled (it was ${was ? `'${was}'` : 'absent'}, kept in ${ANNOTATION_RECONCILE_WAS})`
      : `resumes Flux reconciliation of ${input.deployment}: ${FLUX_RECONCILE} back to ${was ? `'${was}'` : 'absent'}`;
    return { result: { changed: true, annotation: set[FLUX_RECONCILE] }, planned: [{ kind: 'change', by: 'setGitOpsReconcile', what, detail: annotationOps(a, notes) }] };
  },

  async ensureCanary(input, ctx) {
    const stable = await existing(ctx, input.deployment);
    const name = `${input.deployment}-canary`;
    const canary = await deployment(ctx, name);
    if (canary.exists) {
      const t = input.template
        ? await changeTemplate(ctx, 'ensureCanary', name, () => canaryPodTemplate(asTemplate(input.template!)), input.by, false)
        : await changeImages(ctx, 'ensureCanary', name, input.images ?? [], input.by, false);
      const s = await scale(ctx, 'ensureCanary', name, input.replicas, input.by);
      const planned = [...t.planned, ...s.planned];
      const full = String(input.stableReplicas);
      if (input.stableReplicas !== undefined && canary.annotations[ANNOTATION_STABLE_REPLICAS] !== full) {
        const now = await deployment(ctx, name);
        const set = { [ANNOTATION_STABLE_REPLICAS]: full };
        remember(ctx, name, now, { annotations: withAnnotations(now.annotations, set) });
        planned.push({ kind: 'change', by: 'ensureCanary', what: `records ${full} on ${name} as ${input.deployment}'s full size, which a rollback scales it back to`, detail: annotationOps(now.annotations, set) });
      }
      return { result: { name, created: false, changed: t.changed || s.changed }, planned };
    }
    const template = canaryPodTemplate(input.template ? asTemplate(input.template) : withImages(await templateOf(ctx, input.deployment), input.images ?? []));
    const labels = { ...(stable.labels ?? {}), [LABEL_TRACK]: 'canary' };
    const annotations = { ...changeAnnotations(input.by), 'runbook.dev/canary-of': input.deployment, [ANNOTATION_STABLE_REPLICAS]: String(input.stableReplicas ?? stable.replicas) };
    const selector = { ...stable.selector, [LABEL_TRACK]: 'canary' };
    const containers = imagesIn(template);
    remember(ctx, name, canary, { exists: true, namespace: stable.namespace, generation: 1, revision: 1, replicas: input.replicas, containers, paused: false, annotations, labels, selector, gitops: gitopsMarker(labels, annotations) }, template);
    return {
      result: { name, created: true, changed: true },
      planned: [
        {
          kind: 'change',
          by: 'ensureCanary',
          what: `creates Deployment ${name}: ${input.replicas} replica(s) of ${list(containers)}, its pods carrying ${input.deployment}'s labels (so its Service sends them traffic) and ${LABEL_TRACK}=canary; strategy and deadlines copied from ${input.deployment}, whose full size ${annotations[ANNOTATION_STABLE_REPLICAS]} is recorded on it`,
          detail: { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace: stable.namespace, labels, annotations }, spec: { replicas: input.replicas, selector: { matchLabels: selector }, template } },
        },
      ],
    };
  },

  async deleteCanary(input, ctx) {
    const name = `${input.deployment}-canary`;
    const canary = await deployment(ctx, name);
    if (!canary.exists) return { result: { deleted: false, gone: true }, planned: [] };
    remember(ctx, name, canary, { exists: false });
    return {
      result: { deleted: true, gone: true },
      planned: [{ kind: 'change', by: 'deleteCanary', what: `deletes Deployment ${name} and its ${canary.replicas} pod(s) (foreground: the pods go first), waiting up to 45 s until it is gone`, detail: { delete: `deployments/${name}`, namespace: canary.namespace, propagationPolicy: 'Foreground' } }],
    };
  },

  async followCanaryShare(input, ctx) {
    const stable = (await existing(ctx, input.deployment)).replicas;
    const name = `${input.deployment}-canary`;
    const canary = await existing(ctx, name);
    const previous = canary.replicas;
    const wanted = canaryFor(stable, input.weight);
    const full = String(stable + wanted);
    if (wanted === previous && canary.annotations[ANNOTATION_STABLE_REPLICAS] === full) return { result: { stable, canary: previous, previousCanary: previous, changed: false }, planned: [] };
    const notes = { [ANNOTATION_STABLE_REPLICAS]: full, ...changeAnnotations(input.by) };
    remember(ctx, name, canary, { replicas: wanted, annotations: withAnnotations(canary.annotations, notes) });
    return {
      result: { stable, canary: wanted, previousCanary: previous, changed: wanted !== previous },
      planned: [{ kind: 'change', by: 'followCanaryShare', what: `scales ${name} from ${previous} to ${wanted} replica(s), ${input.weight}% beside ${stable} stable`, detail: [{ op: 'replace', path: '/spec/replicas', value: wanted }, ...annotationOps(canary.annotations, notes)] }],
    };
  },

  async compareCanaryWithStable(input) {
    const { spec, deployment: d } = input;
    const end = input.endMs ?? Date.now();
    const windowSeconds = spec.windowSeconds ?? 300;
    const stepSeconds = spec.stepSeconds ?? 15;
    const thresholds = { pass: spec.thresholds?.pass ?? 95, marginal: spec.thresholds?.marginal ?? 75 };
    const set = (track: string, name: string) => ({ track, deployment: name, pods: [`<pods of ${name}>`] });
    const queries = spec.metrics.map((m) => ({ name: m.name, canary: querySet(m.query, set('canary', `${d}-canary`)), stable: querySet(m.query, set('stable', d)) }));
    return {
      result: {
        // The canary a plan "creates" never runs, so there is nothing to measure: the plan carries on as after a pass.
        verdict: 'pass',
        score: 100,
        thresholds,
        metrics: spec.metrics.map((m) => ({ name: m.name, result: 'pass', canarySamples: 0, stableSamples: 0, weight: m.weight ?? 1, critical: m.critical ?? false, reason: 'not measured in a plan' })),
        reason: 'a plan assumes the canary passes: it never ran',
        window: { start: new Date(end - windowSeconds * 1000).toISOString(), end: new Date(end).toISOString(), stepSeconds },
        queries,
      },
      planned: [
        {
          kind: 'wait',
          by: 'compareCanaryWithStable',
          what: `compares ${d}-canary with ${d} on ${spec.metrics.map((m) => m.name).join(', ')} over the last ${windowSeconds} s (pass at score ${thresholds.pass}, marginal at ${thresholds.marginal}); the plan assumes a pass`,
          detail: { windowSeconds, stepSeconds, queries },
        },
      ],
    };
  },

  async holdAutoscalerShare(input, ctx) {
    const h = await autoscaler(ctx, input.deployment);
    if (!h) return { result: null, planned: [] };
    const original = h.held ? { minReplicas: h.held.minReplicas, maxReplicas: h.held.maxReplicas } : { minReplicas: h.minReplicas, maxReplicas: h.maxReplicas };
    const bounds = stableBounds(original, input.weight);
    if (h.held && h.minReplicas === bounds.minReplicas && h.maxReplicas === bounds.maxReplicas) return { result: { name: h.name, original, bounds, changed: false }, planned: [] };
    const held = { ...original, workflowId: input.by.workflowId };
    worldOf(ctx).autoscalers[input.deployment] = { ...h, ...bounds, held };
    return {
      result: { name: h.name, original, bounds, changed: true },
      planned: [
        {
          kind: 'change',
          by: 'holdAutoscalerShare',
          what: `narrows autoscaler ${h.name} from ${h.minReplicas}-${h.maxReplicas} to ${bounds.minReplicas}-${bounds.maxReplicas} replicas, the stable share at ${input.weight}%; its own bounds ${original.minReplicas}-${original.maxReplicas} are kept on it for the restore`,
          detail: boundsOps(bounds, { [ANNOTATION_AUTOSCALER_BOUNDS]: JSON.stringify(held), ...changeAnnotations(input.by) }),
        },
      ],
    };
  },

  async restoreAutoscaler(input, ctx) {
    const h = await autoscaler(ctx, input.deployment);
    if (!h) return { result: null, planned: [] };
    if (!h.held) return { result: { name: h.name, restored: false }, planned: [] };
    const bounds = { minReplicas: h.held.minReplicas, maxReplicas: h.held.maxReplicas };
    worldOf(ctx).autoscalers[input.deployment] = { ...h, ...bounds, held: undefined };
    return {
      result: { name: h.name, restored: true, bounds },
      planned: [
        {
          kind: 'change',
          by: 'restoreAutoscaler',
          what: `restores autoscaler ${h.name} from ${h.minReplicas}-${h.maxReplicas} to its own bounds ${bounds.minReplicas}-${bounds.maxReplicas} replicas`,
          detail: boundsOps(bounds, { [ANNOTATION_AUTOSCALER_BOUNDS]: null, ...changeAnnotations(input.by) }),
        },
      ],
    };
  },

  async startJob(input, ctx) {
    // Jobs have no read-only activity, so a Job of that name left by an earlier attempt cannot be seen: the plan creates it.
    const manifest = jobManifest({ spec: { template: await templateOf(ctx, input.deployment) } } as k8s.V1Deployment, input);
    const namespace = ctx.env.kubernetes?.namespace;
    const timeout = Math.max(1, Math.ceil(input.timeoutMs / 1000));
    return {
      result: { name: input.name, created: true },
      planned: [
        {
          kind: 'change',
          by: 'startJob',
          what: `creates Job ${input.name}${namespace ? ` in ${namespace}` : ''}: image ${input.image} runs ${JSON.stringify(input.command)} with the configuration of ${input.deployment}'s ${input.container ? `container ${input.container}` : 'first container'}; one attempt, deadline ${timeout} s`,
          detail: { apiVersion: 'batch/v1', kind: 'Job', ...manifest },
        },
      ],
    };
  },

  async waitForJob(input) {
    return {
      result: { name: input.name, succeeded: true, logTail: '', logSource: 'none' },
      planned: [{ kind: 'wait', by: 'waitForJob', what: `waits until Job ${input.name} has run to completion, up to ${seconds(input.timeoutMs)} (the plan assumes it succeeds)`, detail: { job: input.name, timeoutMs: input.timeoutMs } }],
    };
  },
};
