import type * as k8s from '@kubernetes/client-node';
import { Context } from '@temporalio/activity';
import { checkServedEnvironment, failure } from './errors';
import { heartbeater, withHeartbeat } from './heartbeat';
import { canonical, jsonPatch, lazyKubeApi, mergePatch, strategicMerge } from './kube';

/** Annotations this project writes on every object it touches: which run and which step. */
export const ANNOTATION_WORKFLOW = 'runbook.dev/workflow-id';
export const ANNOTATION_STEP = 'runbook.dev/step';
/** Set by an undo beside the two above: the revision it went back from (a retried undo does not undo again). */
export const ANNOTATION_UNDONE_FROM = 'runbook.dev/undone-from-revision';
export const ANNOTATION_STABLE_REPLICAS = 'runbook.dev/stable-replicas';
export const LABEL_TRACK = 'runbook.dev/track';
/** Flux's per-object switch: reconciliation of an object carrying it is suspended. */
export const FLUX_RECONCILE = 'kustomize.toolkit.fluxcd.io/reconcile';
/** What the Flux annotation was before a rollout suspended reconciliation ("" when absent), so it is put back as it was. */
export const ANNOTATION_RECONCILE_WAS = 'runbook.dev/reconcile-was';
const REVISION = 'deployment.kubernetes.io/revision';

export interface KubernetesTarget {
  kubeconfig?: string;
  context?: string;
  namespace: string;
  /** When not empty, the only Deployments runbooks may change. */
  deployments: string[];
  approvers: string[];
  gate: { timeoutMs: number; onTimeout: 'rollback' | 'remind'; remindEveryMs: number };
  /** How often a canary's share follows an autoscaler during pauses. */
  autoscalerCheckEveryMs?: number;
  /** What to do with Deployments that Argo CD or Flux manage. */
  gitops?: { onManaged: 'refuse' | 'proceed' | 'suspend' };
}

/** A GitOps tool's marker on an object: which tool manages it and by which label or annotation we know. */
export interface GitOpsMarker {
  tool: 'Argo CD' | 'Flux';
  marker: string;
  /** Whether reconciliation of this one object can be suspended (Flux) or not (Argo CD). */
  suspendable: boolean;
  /** Reconciliation is suspended now (Flux's reconcile: disabled). */
  suspended: boolean;
}

/**
 * Argo CD (its tracking annotation or label, any argocd.argoproj.io/ marker) or Flux (the
 * kustomize- and helm-controller's ownership labels) on a Deployment, or undefined.
 */
export function gitopsMarker(labels: Record<string, string>, annotations: Record<string, string>): GitOpsMarker | undefined {
  const suspended = annotations[FLUX_RECONCILE] === 'disabled';
  for (const key of ['kustomize.toolkit.fluxcd.io/name', 'helm.toolkit.fluxcd.io/name']) {
    if (labels[key]) return { tool: 'Flux', marker: `label ${key}=${labels[key]}`, suspendable: true, suspended };
  }
  if (annotations['argocd.argoproj.io/tracking-id']) return { tool: 'Argo CD', marker: `annotation argocd.argoproj.io/tracking-id=${annotations['argocd.argoproj.io/tracking-id']}`, suspendable: false, suspended: false };
  const argo = [...Object.keys(annotations).map((k) => `annotation ${k}`), ...Object.keys(labels).map((k) => `label ${k}`)].find((k) => k.includes('argocd.argoproj.io/'));
  if (argo) return { tool: 'Argo CD', marker: argo, suspendable: false, suspended: false };
  // Argo CD's default tracking label before 3.0; Helm sets the same label, but with managed-by Helm.
  if (labels['app.kubernetes.io/instance'] && labels['app.kubernetes.io/managed-by'] !== 'Helm' && annotations['kubectl.kubernetes.io/last-applied-configuration']) {
    return { tool: 'Argo CD', marker: `label app.kubernetes.io/instance=${labels['app.kubernetes.io/instance']} with a client-side apply record (Argo CD's tracking label before 3.0)`, suspendable: false, suspended: false };
  }
  return undefined;
}

/**
 * A change of the pod template: images and env of named containers, pod annotations, or a whole
 * template. Values of null remove an env variable or an annotation.
 */
export interface PodTemplateChange {
  containers?: { name: string; image?: string; env?: { name: string; value: string | null }[] }[];
  podAnnotations?: Record<string, string | null>;
  /** A whole pod template ({ metadata, spec }) replacing the Deployment's; the other fields apply on top of it. */
  template?: Record<string, unknown>;
}

/** A pod template as JSON (what the Kubernetes API takes). */
export type PodTemplate = Record<string, unknown>;

export interface ContainerImage {
  name: string;
  image: string;
}

export interface DeploymentState {
  name: string;
  namespace: string;
  exists: boolean;
  generation: number;
  observedGeneration: number;
  revision: number;
  replicas: number;
  updated: number;
  ready: number;
  available: number;
  unavailable: number;
  total: number;
  containers: ContainerImage[];
  progressing?: { status: string; reason?: string; message?: string };
  paused: boolean;
  /** Labels that select this Deployment's pods (a Service uses the same). */
  selector: Record<string, string>;
  annotations: Record<string, string>;
  labels?: Record<string, string>;
  /** Argo CD or Flux manages it (by its markers). */
  gitops?: GitOpsMarker;
}

export interface ReplicaSetState {
  name: string;
  revision: number;
  replicas: number;
  ready: number;
  containers: ContainerImage[];
}

export interface PodState {
  name: string;
  phase: string;
  ready: boolean;
  restarts: number;
  images: string[];
  node?: string;
  deployment: string;
}

/** Who changes an object: recorded on it as annotations. */
export interface ChangeContext {
  workflowId: string;
  step: string;
}

interface HttpishError {
  code?: number | string;
  body?: unknown;
  message?: string;
}

function statusMessage(err: HttpishError): string {
  const body = typeof err.body === 'string' ? safeJson(err.body) : err.body;
  const msg = (body as { message?: string } | undefined)?.message;
  return msg ?? err.message ?? String(err);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { message: text.slice(0, 300) };
  }
}

/** Kubernetes API errors as named failures: what a retry cannot fix is not retried. */
export function classifyKubernetes(err: unknown, context: string): unknown {
  const e = (err ?? {}) as HttpishError & { cause?: { code?: string } };
  const code = typeof e.code === 'number' ? e.code : undefined;
  const message = `${context}: ${statusMessage(e)}`;
  if (code === 404) return failure('NotFound', message);
  if (code === 401) return failure('AuthenticationFailed', message);
  if (code === 403) return failure('PermissionDenied', message);
  if (code === 422 || code === 400) return failure('InvalidInput', message);
  if (code === 409) return failure('Conflict', message);
  const sys = typeof e.code === 'string' ? e.code : e.cause?.code;
  if (sys === 'ECONNREFUSED' || sys === 'EHOSTUNREACH' || sys === 'ETIMEDOUT' || sys === 'ENOTFOUND') return failure('ServerUnreachable', message);
  if (sys === 'ECONNRESET' || sys === 'EPIPE') return failure('ConnectionLost', message);
  return err;
}

function revisionOf(o: { metadata?: k8s.V1ObjectMeta }): number {
  return Number(o.metadata?.annotations?.[REVISION] ?? 0);
}

function imagesOf(spec: k8s.V1PodSpec | undefined): ContainerImage[] {
  return (spec?.containers ?? []).map((c) => ({ name: c.name, image: c.image ?? '' }));
}

function stateOf(d: k8s.V1Deployment): DeploymentState {
  const s = d.status ?? {};
  const p = d.status?.conditions?.find((c) => c.type === 'Progressing');
  return {
    name: d.metadata!.name!,
    namespace: d.metadata!.namespace!,
    exists: true,
    generation: d.metadata?.generation ?? 0,
    observedGeneration: s.observedGeneration ?? 0,
    revision: revisionOf(d),
    replicas: d.spec?.replicas ?? 1,
    updated: s.updatedReplicas ?? 0,
    ready: s.readyReplicas ?? 0,
    available: s.availableReplicas ?? 0,
    unavailable: s.unavailableReplicas ?? 0,
    total: s.replicas ?? 0,
    containers: imagesOf(d.spec?.template.spec),
    progressing: p && { status: p.status, reason: p.reason, message: p.message },
    paused: d.spec?.paused === true,
    selector: { ...(d.spec?.selector.matchLabels ?? {}) },
    annotations: { ...(d.metadata?.annotations ?? {}) },
    labels: { ...(d.metadata?.labels ?? {}) },
    gitops: gitopsMarker(d.metadata?.labels ?? {}, d.metadata?.annotations ?? {}),
  };
}

export function withoutHash(t: k8s.V1PodTemplateSpec): k8s.V1PodTemplateSpec {
  const copy = JSON.parse(JSON.stringify(t)) as k8s.V1PodTemplateSpec;
  if (copy.metadata?.labels) delete copy.metadata.labels['pod-template-hash'];
  return copy;
}

/**
 * The pod template a change gives, from the Deployment's current one: a whole template first (its
 * labels must still carry the selector's, or the Deployment could not own its pods), then images and
 * env per container, then pod annotations. Returns the new template and what changed, line by line.
 */
export function applyTemplateChange(current: k8s.V1PodTemplateSpec, selector: Record<string, string>, change: PodTemplateChange): { template: k8s.V1PodTemplateSpec; changes: string[] } {
  const base = withoutHash(current);
  let t: k8s.V1PodTemplateSpec = change.template ? (JSON.parse(JSON.stringify(change.template)) as k8s.V1PodTemplateSpec) : JSON.parse(JSON.stringify(base));
  const changes: string[] = [];
  if (change.template) {
    const labels = t.metadata?.labels ?? {};
    const missing = Object.entries(selector).filter(([k, v]) => labels[k] !== v);
    if (missing.length) throw failure('InvalidInput', `change.template: its labels must keep the Deployment's selector (${missing.map(([k, v]) => `${k}=${v}`).join(', ')}), or the Deployment would not own its pods`);
    if (!t.spec?.containers?.length) throw failure('InvalidInput', 'change.template: spec.containers: a pod template needs at least one container');
    if (canonical(t) !== canonical(base)) changes.push('the whole pod template is replaced');
  }
  const containers = t.spec?.containers ?? [];
  for (const c of change.containers ?? []) {
    const target = containers.find((x) => x.name === c.name);
    if (!target) throw failure('InvalidInput', `container: the pod template has no container ${c.name}; it has ${containers.map((x) => x.name).join(', ')}`);
    if (c.image !== undefined && target.image !== c.image) {
      changes.push(`container ${c.name}: image ${target.image} -> ${c.image}`);
      target.image = c.image;
    }
    for (const e of c.env ?? []) {
      const env = (target.env ??= []);
      const at = env.findIndex((x) => x.name === e.name);
      if (e.value === null) {
        if (at >= 0) {
          env.splice(at, 1);
          changes.push(`container ${c.name}: env ${e.name} removed`);
        }
      } else if (at < 0 || env[at].value !== e.value || env[at].valueFrom) {
        if (at >= 0) env[at] = { name: e.name, value: e.value };
        else env.push({ name: e.name, value: e.value });
        changes.push(`container ${c.name}: env ${e.name} set`);
      }
    }
  }
  for (const [k, v] of Object.entries(change.podAnnotations ?? {})) {
    const annotations = ((t.metadata ??= {}).annotations ??= {});
    if (v === null) {
      if (k in annotations) {
        delete annotations[k];
        changes.push(`pod annotation ${k} removed`);
      }
    } else if (annotations[k] !== v) {
      annotations[k] = v;
      changes.push(`pod annotation ${k} set`);
    }
  }
  t = withoutHash(t);
  return { template: t, changes: canonical(t) === canonical(base) ? [] : changes.length ? changes : ['the pod template changes'] };
}

export function changeAnnotations(by: ChangeContext): Record<string, string> {
  return { [ANNOTATION_WORKFLOW]: by.workflowId, [ANNOTATION_STEP]: by.step.slice(0, 200) };
}

/** A canary's pod template: the given one, with a track label that keeps its pods apart from the stable Deployment's. */
export function canaryPodTemplate(t: k8s.V1PodTemplateSpec): k8s.V1PodTemplateSpec {
  const copy = withoutHash(t);
  copy.metadata = { ...copy.metadata, labels: { ...(copy.metadata?.labels ?? {}), [LABEL_TRACK]: 'canary' } };
  return copy;
}

/** The ReplicaSet an undo goes back to (sets oldest first): the named revision, or as `kubectl rollout undo`, the newest before the current. */
export function undoTarget<T>(sets: T[], revision: (rs: T) => number, fromRevision: number, toRevision?: number): T | undefined {
  return toRevision !== undefined ? sets.find((rs) => revision(rs) === toRevision) : [...sets].reverse().find((rs) => revision(rs) < fromRevision);
}

/** What an analysis measures once: HTTP checks, Prometheus instant queries, pod health. */
export interface AnalysisChecks {
  http?: { name?: string; url: string; expectStatus?: number; maxLatencyMs?: number; timeoutMs?: number }[];
  prometheus?: { name?: string; address: string; query: string; successCondition: string }[];
  pods?: { deployments: string[]; maxRestarts?: number; minReadyRatio?: number };
}

export interface MeasurementResult {
  name: string;
  kind: 'http' | 'prometheus' | 'pods';
  /** passed: condition held; failed: condition broken; error: could not measure; inconclusive: measured, but there was no data. */
  phase: 'passed' | 'failed' | 'error' | 'inconclusive';
  value?: number;
  detail: string;
}

const CONDITION = /^\s*(?:result\s*)?(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*$/i;

/** "< 0.05" or "result >= 200": the comparison a measured value must satisfy. */
export function parseCondition(text: string): { op: string; value: number } | undefined {
  const m = CONDITION.exec(text);
  return m ? { op: m[1], value: Number(m[2]) } : undefined;
}

export function conditionHolds(value: number, text: string): boolean {
  const c = parseCondition(text);
  if (!c) return false;
  switch (c.op) {
    case '<':
      return value < c.value;
    case '<=':
      return value <= c.value;
    case '>':
      return value > c.value;
    case '>=':
      return value >= c.value;
    case '==':
      return value === c.value;
    default:
      return value !== c.value;
  }
}

/** Refuses a Deployment (or its canary) that the environment's kubernetes.deployments does not list. */
export function deploymentGuard(api: () => unknown, target: KubernetesTarget | undefined): (name: string) => void {
  return (name: string) => {
    if (!target) api();
    const base = name.endsWith('-canary') ? name.slice(0, -'-canary'.length) : name;
    if (target!.deployments.length > 0 && !target!.deployments.includes(base)) {
      throw failure('InvalidInput', `deployment: ${name} is not one of the Deployments this environment may change (kubernetes.deployments: ${target!.deployments.join(', ')})`);
    }
  };
}

export function createKubernetesActivities(opts: { environment: string; target: KubernetesTarget | undefined; api?: ReturnType<typeof lazyKubeApi> }) {
  const { environment, target } = opts;
  const api = opts.api ?? lazyKubeApi(environment, target);
  const ns = () => target!.namespace;

  const allowed = deploymentGuard(api, target);

  async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw classifyKubernetes(err, what);
    }
  }

  async function read(name: string): Promise<k8s.V1Deployment | undefined> {
    try {
      return await api().apps.readNamespacedDeployment({ name, namespace: ns() });
    } catch (err) {
      if ((err as HttpishError).code === 404) return undefined;
      throw classifyKubernetes(err, `reading deployment ${ns()}/${name}`);
    }
  }

  async function mustRead(name: string): Promise<k8s.V1Deployment> {
    const d = await read(name);
    if (!d) throw failure('NotFound', `deployment ${ns()}/${name} does not exist`);
    return d;
  }

  async function replicaSets(d: k8s.V1Deployment): Promise<k8s.V1ReplicaSet[]> {
    const selector = Object.entries(d.spec?.selector.matchLabels ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    const list = await call(`listing replica sets of ${d.metadata?.name}`, () => api().apps.listNamespacedReplicaSet({ namespace: ns(), labelSelector: selector }));
    return list.items.filter((rs) => rs.metadata?.ownerReferences?.some((o) => o.uid === d.metadata?.uid)).sort((a, b) => revisionOf(a) - revisionOf(b));
  }

  async function pods(name: string): Promise<PodState[]> {
    const d = await mustRead(name);
    const selector = Object.entries(d.spec?.selector.matchLabels ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    const list = await call(`listing pods of ${name}`, () => api().core.listNamespacedPod({ namespace: ns(), labelSelector: selector }));
    // A stable Deployment's selector also matches its canary's pods; keep only pods of this Deployment's ReplicaSets.
    const sets = new Set((await replicaSets(d)).map((rs) => rs.metadata?.uid));
    return list.items
      .filter((p) => p.metadata?.ownerReferences?.some((o) => sets.has(o.uid)))
      .map((p) => ({
        name: p.metadata!.name!,
        phase: p.status?.phase ?? 'Unknown',
        ready: p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
        restarts: (p.status?.containerStatuses ?? []).reduce((n, c) => n + (c.restartCount ?? 0), 0),
        images: (p.spec?.containers ?? []).map((c) => c.image ?? ''),
        node: p.spec?.nodeName,
        deployment: name,
      }));
  }

  async function setImages(name: string, images: ContainerImage[], by: ChangeContext, resume = false): Promise<{ changed: boolean; state: DeploymentState }> {
    allowed(name);
    const d = await mustRead(name);
    const current = imagesOf(d.spec?.template.spec);
    for (const c of images) {
      if (!current.some((x) => x.name === c.name)) {
        throw failure('InvalidInput', `container: deployment ${name} has no container ${c.name}; it has ${current.map((x) => x.name).join(', ')}`);
      }
    }
    const paused = d.spec?.paused === true && resume;
    if (!paused && images.every((c) => current.find((x) => x.name === c.name)?.image === c.image)) return { changed: false, state: stateOf(d) };
    const patched = await call(`patching deployment ${name}`, () =>
      api().apps.patchNamespacedDeployment(
        {
          name,
          namespace: ns(),
          body: {
            metadata: { annotations: changeAnnotations(by) },
            spec: { ...(resume ? { paused: false } : {}), template: { spec: { containers: images.map((c) => ({ name: c.name, image: c.image })) } } },
          },
        },
        strategicMerge(),
      ),
    );
    return { changed: true, state: stateOf(patched) };
  }

  /** Replaces a Deployment's pod template (and unpauses it when asked); a no-op when it already has it. */
  async function setTemplate(name: string, template: PodTemplate | k8s.V1PodTemplateSpec, by: ChangeContext, resume = false): Promise<{ changed: boolean; state: DeploymentState }> {
    allowed(name);
    const d = await mustRead(name);
    const wanted = withoutHash(template as k8s.V1PodTemplateSpec);
    const same = canonical(withoutHash(d.spec!.template)) === canonical(wanted);
    if (same && !(resume && d.spec?.paused)) return { changed: false, state: stateOf(d) };
    const patched = await call(`replacing the pod template of deployment ${name}`, () =>
      api().apps.patchNamespacedDeployment(
        {
          name,
          namespace: ns(),
          body: [
            { op: 'replace', path: '/spec/template', value: wanted },
            ...(resume ? [{ op: 'add', path: '/spec/paused', value: false }] : []),
            { op: 'add', path: '/metadata/annotations', value: { ...(d.metadata?.annotations ?? {}), ...changeAnnotations(by) } },
          ],
        },
        jsonPatch(),
      ),
    );
    return { changed: true, state: stateOf(patched) };
  }

  async function scale(name: string, replicas: number, by: ChangeContext): Promise<{ changed: boolean; previous: number }> {
    allowed(name);
    const d = await mustRead(name);
    const previous = d.spec?.replicas ?? 1;
    if (previous === replicas) return { changed: false, previous };
    await call(`scaling deployment ${name}`, () =>
      api().apps.patchNamespacedDeployment({ name, namespace: ns(), body: { metadata: { annotations: changeAnnotations(by) }, spec: { replicas } } }, strategicMerge()),
    );
    return { changed: true, previous };
  }

  const activities = {
    /** What the rollout runbooks need from config, checked against this worker's environment. */
    async describeRolloutTarget(input: { environment?: string; deployment: string }): Promise<{ namespace: string; approvers: string[]; gate: KubernetesTarget['gate']; autoscalerCheckEveryMs: number; gitops: { onManaged: 'refuse' | 'proceed' | 'suspend' } }> {
      checkServedEnvironment(input.environment, environment);
      api();
      allowed(input.deployment);
      return { namespace: target!.namespace, approvers: target!.approvers, gate: target!.gate, autoscalerCheckEveryMs: target!.autoscalerCheckEveryMs ?? 30_000, gitops: target!.gitops ?? { onManaged: 'refuse' } };
    },

    /**
     * The pod template a change gives from the Deployment's current one, and what changes, line by line
     * (empty when the Deployment already has it). Nothing is written.
     */
    async planTemplateChange(input: { deployment: string; change: PodTemplateChange }): Promise<{ template: PodTemplate; changes: string[]; images: ContainerImage[] }> {
      allowed(input.deployment);
      const d = await mustRead(input.deployment);
      const { template, changes } = applyTemplateChange(d.spec!.template, d.spec?.selector.matchLabels ?? {}, input.change);
      return { template: template as PodTemplate, changes, images: imagesOf(template.spec) };
    },

    /** Replaces the Deployment's pod template (a JSON patch); a no-op when it already has it. */
    async setDeploymentTemplate(input: { deployment: string; template: PodTemplate; by: ChangeContext }): Promise<{ changed: boolean; revision: number }> {
      const r = await setTemplate(input.deployment, input.template, input.by);
      return { changed: r.changed, revision: r.state.revision };
    },

    /** The live replica counts of the stable Deployment and its canary: what an autoscaler may have changed since. */
    async readReplicas(input: { deployment: string }): Promise<{ stable: number; stableReady: number; canary: number; canaryReady: number; canaryExists: boolean }> {
      const stable = await mustRead(input.deployment);
      const canary = await read(`${input.deployment}-canary`);
      return {
        stable: stable.spec?.replicas ?? 1,
        stableReady: stable.status?.readyReplicas ?? 0,
        canary: canary ? (canary.spec?.replicas ?? 1) : 0,
        canaryReady: canary?.status?.readyReplicas ?? 0,
        canaryExists: canary !== undefined,
      };
    },

    /**
     * Suspends (Flux's reconcile: disabled) or resumes GitOps reconciliation of a Deployment for the time
     * of a rollout; what was there before is kept on the object and put back on resume. Idempotent.
     */
    async setGitOpsReconcile(input: { deployment: string; suspend: boolean; by: ChangeContext }): Promise<{ changed: boolean; annotation: string | null }> {
      allowed(input.deployment);
      const d = await mustRead(input.deployment);
      const a = d.metadata?.annotations ?? {};
      const marker = gitopsMarker(d.metadata?.labels ?? {}, a);
      if (marker && !marker.suspendable) throw failure('InvalidInput', `deployment ${input.deployment} is managed by ${marker.tool} (${marker.marker}), which has no per-object switch to suspend; set kubernetes.gitops.onManaged to proceed (with the tool told to ignore replicas and the pod template) or roll out through the GitOps repository`);
      let annotations: Record<string, string | null>;
      if (input.suspend) {
        if (ANNOTATION_RECONCILE_WAS in a) return { changed: false, annotation: a[FLUX_RECONCILE] ?? null };
        annotations = { [FLUX_RECONCILE]: 'disabled', [ANNOTATION_RECONCILE_WAS]: a[FLUX_RECONCILE] ?? '' };
      } else {
        if (!(ANNOTATION_RECONCILE_WAS in a)) return { changed: false, annotation: a[FLUX_RECONCILE] ?? null };
        annotations = { [FLUX_RECONCILE]: a[ANNOTATION_RECONCILE_WAS] || null, [ANNOTATION_RECONCILE_WAS]: null };
      }
      await call(`${input.suspend ? 'suspending' : 'resuming'} GitOps reconciliation of deployment ${input.deployment}`, () =>
        api().apps.patchNamespacedDeployment({ name: input.deployment, namespace: ns(), body: { metadata: { annotations: { ...annotations, ...changeAnnotations(input.by) } } } }, mergePatch()),
      );
      return { changed: true, annotation: annotations[FLUX_RECONCILE] };
    },

    async readDeployment(input: { deployment: string }): Promise<DeploymentState> {
      const d = await read(input.deployment);
      if (!d) return { ...emptyState(input.deployment, ns()) };
      return stateOf(d);
    },

    async listReplicaSets(input: { deployment: string }): Promise<ReplicaSetState[]> {
      const d = await mustRead(input.deployment);
      return (await replicaSets(d)).map((rs) => ({
        name: rs.metadata!.name!,
        revision: revisionOf(rs),
        replicas: rs.status?.replicas ?? 0,
        ready: rs.status?.readyReplicas ?? 0,
        containers: imagesOf(rs.spec?.template?.spec),
      }));
    },

    async listPods(input: { deployment: string }): Promise<PodState[]> {
      return pods(input.deployment);
    },

    /** Sets container images (a strategic merge on the pod template); a no-op when they are already set. */
    async setDeploymentImage(input: { deployment: string; images: ContainerImage[]; by: ChangeContext }): Promise<{ changed: boolean; revision: number }> {
      const r = await setImages(input.deployment, input.images, input.by);
      return { changed: r.changed, revision: r.state.revision };
    },

    async scaleDeployment(input: { deployment: string; replicas: number; by: ChangeContext }): Promise<{ changed: boolean; previous: number }> {
      return scale(input.deployment, input.replicas, input.by);
    },

    /**
     * Creates or updates `<name>-canary`: a copy of the stable Deployment with the new images, whose pods
     * carry the stable pod labels (so the same Service sends them traffic) plus a track label that keeps
     * the two Deployments' selectors apart.
     */
    async ensureCanary(input: { deployment: string; images?: ContainerImage[]; template?: PodTemplate; replicas: number; stableReplicas?: number; by: ChangeContext }): Promise<{ name: string; created: boolean; changed: boolean }> {
      allowed(input.deployment);
      const stable = await mustRead(input.deployment);
      const name = `${input.deployment}-canary`;
      const existing = await read(name);
      if (existing) {
        const templateChanged = input.template ? (await setTemplate(name, canaryPodTemplate(input.template as k8s.V1PodTemplateSpec), input.by)).changed : (await setImages(name, input.images ?? [], input.by)).changed;
        const scaled = (await scale(name, input.replicas, input.by)).changed;
        // The stable Deployment's full size when the canary goes (a rollback reads it): kept current as an autoscaler moves it.
        if (input.stableReplicas !== undefined && existing.metadata?.annotations?.[ANNOTATION_STABLE_REPLICAS] !== String(input.stableReplicas)) {
          await call(`annotating deployment ${name}`, () => api().apps.patchNamespacedDeployment({ name, namespace: ns(), body: { metadata: { annotations: { [ANNOTATION_STABLE_REPLICAS]: String(input.stableReplicas) } } } }, mergePatch()));
        }
        return { name, created: false, changed: templateChanged || scaled };
      }
      const template = canaryPodTemplate(input.template ? (input.template as k8s.V1PodTemplateSpec) : stable.spec!.template);
      if (!input.template) {
        for (const c of template.spec?.containers ?? []) {
          const img = (input.images ?? []).find((i) => i.name === c.name);
          if (img) c.image = img.image;
        }
      }
      const body: k8s.V1Deployment = {
        metadata: {
          name,
          namespace: ns(),
          labels: { ...(stable.metadata?.labels ?? {}), [LABEL_TRACK]: 'canary' },
          annotations: { ...changeAnnotations(input.by), 'runbook.dev/canary-of': input.deployment, [ANNOTATION_STABLE_REPLICAS]: String(input.stableReplicas ?? stable.spec?.replicas ?? 1) },
        },
        spec: {
          replicas: input.replicas,
          selector: { matchLabels: { ...(stable.spec?.selector.matchLabels ?? {}), [LABEL_TRACK]: 'canary' } },
          strategy: stable.spec?.strategy,
          minReadySeconds: stable.spec?.minReadySeconds,
          progressDeadlineSeconds: stable.spec?.progressDeadlineSeconds,
          template,
        },
      };
      try {
        await api().apps.createNamespacedDeployment({ namespace: ns(), body });
      } catch (err) {
        // Created by an attempt whose answer was lost: the next attempt finds it and updates it.
        if ((err as HttpishError).code === 409) throw failure('Conflict', `deployment ${name} appeared while it was being created; retrying`);
        throw classifyKubernetes(err, `creating deployment ${name}`);
      }
      return { name, created: true, changed: true };
    },

    /**
     * Deletes `<name>-canary` with foreground propagation (its pods go first) and waits until it is gone,
     * so that after this step no canary pod serves. A canary already gone is not an error.
     */
    async deleteCanary(input: { deployment: string }): Promise<{ deleted: boolean; gone: boolean }> {
      allowed(input.deployment);
      const name = `${input.deployment}-canary`;
      let deleted = true;
      try {
        await api().apps.deleteNamespacedDeployment({ name, namespace: ns(), propagationPolicy: 'Foreground' });
      } catch (err) {
        if ((err as HttpishError).code !== 404) throw classifyKubernetes(err, `deleting deployment ${name}`);
        deleted = false;
      }
      const deadline = Date.now() + 45_000;
      while (Date.now() < deadline) {
        if (!(await read(name))) return { deleted, gone: true };
        await new Promise((r) => setTimeout(r, 250));
      }
      return { deleted, gone: false };
    },

    /**
     * Undo the way `kubectl rollout undo` does: the pod template of an earlier ReplicaSet revision (the
     * previous one by default) replaces the Deployment's; or, with an image, the containers are set to it.
     * A no-op when the Deployment already runs that template.
     */
    async undoDeployment(input: { deployment: string; toRevision?: number; toImages?: ContainerImage[]; by: ChangeContext }): Promise<{ changed: boolean; fromRevision: number; toRevision?: number; images: ContainerImage[] }> {
      allowed(input.deployment);
      const d = await mustRead(input.deployment);
      const fromRevision = revisionOf(d);
      // A retry after this run's own undo went through (its worker died before it reported) must not
      // undo again: the reverted template became the newest revision, so "the one before" would be the
      // template just left. The undo's annotations say this run made it, and from which revision.
      const notes = d.metadata?.annotations ?? {};
      const mine = notes[ANNOTATION_WORKFLOW] === input.by.workflowId && notes[ANNOTATION_STEP] === input.by.step.slice(0, 200);
      const undoneFrom = mine ? Number(notes[ANNOTATION_UNDONE_FROM]) : NaN;
      if (input.toImages) {
        const r = await setImages(input.deployment, input.toImages, input.by, true);
        return { changed: r.changed || mine, fromRevision, images: r.state.containers };
      }
      if (Number.isInteger(undoneFrom) && undoneFrom > 0 && d.spec?.paused !== true) {
        return { changed: true, fromRevision: undoneFrom, toRevision: fromRevision, images: imagesOf(d.spec!.template.spec) };
      }
      const sets = await replicaSets(d);
      const current = canonical(withoutHash(d.spec!.template));
      const target = undoTarget(sets, revisionOf, fromRevision, input.toRevision);
      if (!target) {
        const known = sets.map((rs) => revisionOf(rs)).join(', ') || 'none';
        throw failure('RevisionNotFound', input.toRevision !== undefined ? `deployment ${input.deployment} has no revision ${input.toRevision} (revisions: ${known})` : `deployment ${input.deployment} has no revision before ${fromRevision} to go back to`);
      }
      const template = withoutHash(target.spec!.template!);
      if (canonical(template) === current && d.spec?.paused !== true) return { changed: false, fromRevision, toRevision: revisionOf(target), images: imagesOf(template.spec) };
      await call(`rolling back deployment ${input.deployment}`, () =>
        api().apps.patchNamespacedDeployment(
          {
            name: input.deployment,
            namespace: ns(),
            body: [
              { op: 'replace', path: '/spec/template', value: template },
              { op: 'add', path: '/spec/paused', value: false },
              { op: 'add', path: '/metadata/annotations', value: { ...(d.metadata?.annotations ?? {}), ...changeAnnotations(input.by), [ANNOTATION_UNDONE_FROM]: String(fromRevision) } },
            ],
          },
          jsonPatch(),
        ),
      );
      return { changed: true, fromRevision, toRevision: revisionOf(target), images: imagesOf(template.spec) };
    },

    /**
     * Waits until the rollout is complete the way `kubectl rollout status` judges it. Fails with
     * RolloutFailed on ProgressDeadlineExceeded or when new pods keep restarting; heartbeats the counts.
     */
    async waitForRolloutHealthy(input: { deployment: string; timeoutMs: number; maxRestarts?: number }): Promise<DeploymentState & { waitedMs: number }> {
      const hb = heartbeater();
      const started = Date.now();
      const maxRestarts = input.maxRestarts ?? 3;
      try {
        for (;;) {
          const d = await mustRead(input.deployment);
          const s = stateOf(d);
          hb.beat({ deployment: s.name, replicas: s.replicas, updated: s.updated, ready: s.ready, available: s.available, revision: s.revision });
          if (s.progressing?.reason === 'ProgressDeadlineExceeded') {
            throw failure('RolloutFailed', `deployment ${s.name} exceeded its progress deadline: ${s.progressing.message ?? ''} (${s.updated}/${s.replicas} updated, ${s.available} available)`, s);
          }
          const done = s.observedGeneration >= s.generation && s.updated === s.replicas && s.total === s.replicas && s.available === s.replicas;
          if (done) return { ...s, waitedMs: Date.now() - started };
          if (s.observedGeneration >= s.generation) {
            const current = (await pods(input.deployment)).filter((p) => p.images.every((img) => s.containers.some((c) => c.image === img)));
            const crashing = current.filter((p) => !p.ready && p.restarts >= maxRestarts);
            if (crashing.length > 0) {
              throw failure('RolloutFailed', `deployment ${s.name}: new pods are not becoming ready and keep restarting (${crashing.map((p) => `${p.name}: ${p.restarts} restarts`).join(', ')})`, s);
            }
          }
          if (Date.now() - started > input.timeoutMs) {
            throw failure('RolloutFailed', `deployment ${s.name} was not healthy within ${Math.round(input.timeoutMs / 1000)} s (${s.updated}/${s.replicas} updated, ${s.available} available)`, s);
          }
          await new Promise((r) => setTimeout(r, 500));
          if (hb.signal.aborted) throw Context.current().cancellationSignal.reason ?? new Error('cancelled');
        }
      } finally {
        hb.stop();
      }
    },

    /**
     * One batch of a rolling update: sets the images (resuming the Deployment if a batch paused it), waits
     * until at least `untilUpdated` pods of the new revision are ready, then pauses the Deployment there
     * unless that is all of them. The controller may have started one more pod by the time it pauses.
     */
    async rollForward(input: { deployment: string; images?: ContainerImage[]; template?: PodTemplate; untilUpdated: number; timeoutMs: number; maxRestarts?: number; by: ChangeContext }): Promise<{ updated: number; ready: number; replicas: number; paused: boolean }> {
      const hb = heartbeater();
      const started = Date.now();
      try {
        if (input.template) await setTemplate(input.deployment, input.template, input.by, true);
        else await setImages(input.deployment, input.images ?? [], input.by, true);
        for (;;) {
          const d = await mustRead(input.deployment);
          const s = stateOf(d);
          const sets = await replicaSets(d);
          const newest = sets[sets.length - 1];
          const newReady = newest && revisionOf(newest) === s.revision ? (newest.status?.readyReplicas ?? 0) : 0;
          hb.beat({ deployment: s.name, replicas: s.replicas, updated: s.updated, newReady, target: input.untilUpdated });
          if (s.progressing?.reason === 'ProgressDeadlineExceeded') throw failure('RolloutFailed', `deployment ${s.name} exceeded its progress deadline (${s.updated}/${s.replicas} updated, ${newReady} ready)`, s);
          if (s.observedGeneration >= s.generation && newReady >= Math.min(input.untilUpdated, s.replicas)) {
            const pause = input.untilUpdated < s.replicas;
            if (pause) {
              await call(`pausing deployment ${s.name}`, () =>
                api().apps.patchNamespacedDeployment({ name: s.name, namespace: ns(), body: { metadata: { annotations: changeAnnotations(input.by) }, spec: { paused: true } } }, strategicMerge()),
              );
            }
            return { updated: s.updated, ready: newReady, replicas: s.replicas, paused: pause };
          }
          const crashing = (await pods(input.deployment)).filter((p) => !p.ready && p.restarts >= (input.maxRestarts ?? 3) && p.images.every((img) => s.containers.some((c) => c.image === img)));
          if (crashing.length > 0) throw failure('RolloutFailed', `deployment ${s.name}: new pods keep restarting (${crashing.map((p) => `${p.name}: ${p.restarts} restarts`).join(', ')})`, s);
          if (Date.now() - started > input.timeoutMs) throw failure('RolloutFailed', `deployment ${s.name}: ${newReady} of the ${input.untilUpdated} new pods ready after ${Math.round(input.timeoutMs / 1000)} s`, s);
          // Short polls while a pause is due: the controller's next batch does not wait for us.
          await new Promise((r) => setTimeout(r, input.untilUpdated < s.replicas ? 150 : 500));
          if (hb.signal.aborted) throw Context.current().cancellationSignal.reason ?? new Error('cancelled');
        }
      } finally {
        hb.stop();
      }
    },

    /**
     * One measurement of every check of an analysis. A Prometheus query answering several series passes
     * only when every series meets the condition. A query answering no series is an error, or with
     * noData: inconclusive, inconclusive (there is nothing to judge, which is not a failure).
     */
    async measureAnalysis(input: { checks: AnalysisChecks; noData?: 'error' | 'inconclusive' }): Promise<MeasurementResult[]> {
      const results: MeasurementResult[] = [];
      for (const h of input.checks.http ?? []) {
        const name = h.name ?? `http ${h.url}`;
        const started = performance.now();
        try {
          const res = await fetch(h.url, { signal: AbortSignal.timeout(h.timeoutMs ?? 5_000), redirect: 'manual' });
          await res.arrayBuffer();
          const latency = Math.round(performance.now() - started);
          const statusOk = res.status === (h.expectStatus ?? 200);
          const latencyOk = h.maxLatencyMs === undefined || latency <= h.maxLatencyMs;
          results.push({ name, kind: 'http', phase: statusOk && latencyOk ? 'passed' : 'failed', value: latency, detail: `HTTP ${res.status} in ${latency} ms${statusOk ? '' : ` (expected ${h.expectStatus ?? 200})`}${latencyOk ? '' : ` (over ${h.maxLatencyMs} ms)`}` });
        } catch (err) {
          results.push({ name, kind: 'http', phase: 'failed', detail: `no answer: ${(err as Error).message}` });
        }
      }
      for (const q of input.checks.prometheus ?? []) {
        const name = q.name ?? q.query;
        try {
          const url = `${q.address.replace(/\/$/, '')}/api/v1/query?query=${encodeURIComponent(q.query)}`;
          const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
          const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: unknown } };
          if (body.status !== 'success') throw new Error(body.error ?? `HTTP ${res.status}`);
          const r = body.data?.result;
          const series: { labels: string; value: number }[] =
            body.data?.resultType === 'scalar'
              ? [{ labels: '', value: Number((r as [number, string])[1]) }]
              : ((r as { metric?: Record<string, string>; value: [number, string] }[]) ?? []).map((x) => ({
                  labels: Object.entries(x.metric ?? {}).map(([k, v]) => `${k}="${v}"`).join(','),
                  value: Number(x.value[1]),
                }));
          if (series.length === 0) {
            results.push({ name, kind: 'prometheus', phase: input.noData === 'inconclusive' ? 'inconclusive' : 'error', detail: 'the query returned no sample' });
            continue;
          }
          const breaking = series.find((x) => !(Number.isFinite(x.value) && conditionHolds(x.value, q.successCondition)));
          const shown = breaking ?? series[0];
          const of = series.length > 1 ? ` (${breaking ? `series {${shown.labels}} of ${series.length}` : `all ${series.length} series`})` : '';
          results.push({ name, kind: 'prometheus', phase: breaking ? 'failed' : 'passed', value: shown.value, detail: `${shown.value} ${breaking ? 'breaks' : 'meets'} "${q.successCondition}"${of}` });
        } catch (err) {
          results.push({ name, kind: 'prometheus', phase: 'error', detail: `query failed: ${(err as Error).message}` });
        }
      }
      if (input.checks.pods) {
        const p = input.checks.pods;
        for (const dep of p.deployments) {
          try {
            const list = await pods(dep);
            const ready = list.filter((x) => x.ready).length;
            const restarts = list.reduce((n, x) => n + x.restarts, 0);
            const ratio = list.length ? ready / list.length : 0;
            const ok = restarts <= (p.maxRestarts ?? 0) && ratio >= (p.minReadyRatio ?? 1);
            results.push({ name: `pods of ${dep}`, kind: 'pods', phase: ok ? 'passed' : 'failed', value: ratio, detail: `${ready}/${list.length} ready, ${restarts} restarts` });
          } catch (err) {
            results.push({ name: `pods of ${dep}`, kind: 'pods', phase: 'error', detail: (err as Error).message });
          }
        }
      }
      return results;
    },
  };
  // Every activity heartbeats (the two long waits with their progress), so an attempt lost with its
  // worker is retried after the heartbeat timeout, not after its start-to-close timeout.
  const progressReporting = new Set<string>(['waitForRolloutHealthy', 'rollForward']);
  return Object.fromEntries(
    Object.entries(activities).map(([name, fn]) => [name, progressReporting.has(name) ? fn : (input: never) => withHeartbeat(() => (fn as (i: never) => Promise<unknown>)(input))]),
  ) as typeof activities;
}

function emptyState(name: string, namespace: string): DeploymentState {
  return {
    name,
    namespace,
    exists: false,
    generation: 0,
    observedGeneration: 0,
    revision: 0,
    replicas: 0,
    updated: 0,
    ready: 0,
    available: 0,
    unavailable: 0,
    total: 0,
    containers: [],
    paused: false,
    selector: {},
    annotations: {},
  };
}

export type KubernetesActivities = ReturnType<typeof createKubernetesActivities>;
