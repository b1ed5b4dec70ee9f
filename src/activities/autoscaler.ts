import type * as k8s from '@kubernetes/client-node';
import { failure } from './errors';
import { withHeartbeat } from './heartbeat';
import { classifyKubernetes, ChangeContext, ANNOTATION_STABLE_REPLICAS, ANNOTATION_WORKFLOW, ANNOTATION_STEP } from './kubernetes';
import { KubeApi, mergePatch } from './kube';

/** The autoscaler's own bounds, kept on it while a rollout has narrowed them, so any run can put them back. */
export const ANNOTATION_AUTOSCALER_BOUNDS = 'runbook.dev/autoscaler-bounds';

export interface AutoscalerState {
  name: string;
  minReplicas: number;
  maxReplicas: number;
  currentReplicas: number;
  desiredReplicas: number;
  /** The bounds before a rollout narrowed them (the annotation), when one has. */
  held?: { minReplicas: number; maxReplicas: number; workflowId?: string };
}

/**
 * The stable Deployment's share of an autoscaler's bounds at a canary weight: the stable version keeps
 * (100 - weight)% of them, so the autoscaler neither scales the stable back over the canary's share
 * nor lets the total capacity fall below the bound it had.
 */
export function stableBounds(original: { minReplicas: number; maxReplicas: number }, weight: number): { minReplicas: number; maxReplicas: number } {
  const share = Math.max(0, 100 - weight) / 100;
  const minReplicas = Math.max(1, Math.round(original.minReplicas * share));
  return { minReplicas, maxReplicas: Math.max(minReplicas, Math.round(original.maxReplicas * share)) };
}

/** The canary's replica count that keeps its share beside `stable` pods: weight/(100-weight) of them, at least one. */
export function canaryFor(stable: number, weight: number): number {
  if (weight >= 100) return stable;
  return Math.max(1, Math.round((stable * weight) / (100 - weight)));
}

/**
 * HorizontalPodAutoscalers during a rollout: the one scaling a Deployment is found, its bounds are
 * narrowed to the stable version's share while a canary serves and restored afterwards (the original
 * bounds ride on the object, so a rollback run restores them too), and the canary follows whatever
 * count the autoscaler gives the stable Deployment.
 */
export function createAutoscalerActivities(opts: { api: () => KubeApi; allowed: (deployment: string) => void }) {
  const { api } = opts;
  const ns = () => api().namespace;

  async function find(deployment: string): Promise<k8s.V2HorizontalPodAutoscaler | undefined> {
    let list: k8s.V2HorizontalPodAutoscalerList;
    try {
      list = await api().autoscaling.listNamespacedHorizontalPodAutoscaler({ namespace: ns() });
    } catch (err) {
      throw classifyKubernetes(err, `listing autoscalers in ${ns()}`);
    }
    const matching = list.items.filter((h) => h.spec?.scaleTargetRef.kind === 'Deployment' && h.spec.scaleTargetRef.name === deployment);
    if (matching.length > 1) throw failure('InvalidInput', `deployment ${deployment} is scaled by ${matching.length} autoscalers (${matching.map((h) => h.metadata?.name).join(', ')}); they would fight each other, keep one`);
    return matching[0];
  }

  function stateOf(h: k8s.V2HorizontalPodAutoscaler): AutoscalerState {
    const held = h.metadata?.annotations?.[ANNOTATION_AUTOSCALER_BOUNDS];
    let parsed: AutoscalerState['held'];
    try {
      parsed = held ? (JSON.parse(held) as AutoscalerState['held']) : undefined;
    } catch {
      parsed = undefined;
    }
    return {
      name: h.metadata!.name!,
      minReplicas: h.spec?.minReplicas ?? 1,
      maxReplicas: h.spec!.maxReplicas,
      currentReplicas: h.status?.currentReplicas ?? 0,
      desiredReplicas: h.status?.desiredReplicas ?? 0,
      held: parsed,
    };
  }

  async function patchHpa(name: string, body: object, what: string): Promise<void> {
    try {
      await api().autoscaling.patchNamespacedHorizontalPodAutoscaler({ name, namespace: ns(), body }, mergePatch());
    } catch (err) {
      throw classifyKubernetes(err, `${what} autoscaler ${ns()}/${name}`);
    }
  }

  return {
    /** The autoscaler scaling a Deployment, or null. */
    async describeAutoscaler(input: { deployment: string }): Promise<AutoscalerState | null> {
      return withHeartbeat(async () => {
        const h = await find(input.deployment);
        return h ? stateOf(h) : null;
      });
    },

    /**
     * Narrows the autoscaler's bounds to the stable version's share at this weight, keeping the
     * original bounds on it (written once, so a retry or a later step never records narrowed ones).
     */
    async holdAutoscalerShare(input: { deployment: string; weight: number; by: ChangeContext }): Promise<{ name: string; original: { minReplicas: number; maxReplicas: number }; bounds: { minReplicas: number; maxReplicas: number }; changed: boolean } | null> {
      opts.allowed(input.deployment);
      return withHeartbeat(async () => {
        const h = await find(input.deployment);
        if (!h) return null;
        const s = stateOf(h);
        const original = s.held ? { minReplicas: s.held.minReplicas, maxReplicas: s.held.maxReplicas } : { minReplicas: s.minReplicas, maxReplicas: s.maxReplicas };
        const bounds = stableBounds(original, input.weight);
        if (s.held && s.minReplicas === bounds.minReplicas && s.maxReplicas === bounds.maxReplicas) return { name: s.name, original, bounds, changed: false };
        await patchHpa(
          s.name,
          {
            metadata: { annotations: { [ANNOTATION_AUTOSCALER_BOUNDS]: JSON.stringify({ ...original, workflowId: input.by.workflowId }), [ANNOTATION_WORKFLOW]: input.by.workflowId, [ANNOTATION_STEP]: input.by.step.slice(0, 200) } },
            spec: bounds,
          },
          'narrowing',
        );
        return { name: s.name, original, bounds, changed: true };
      });
    },

    /** Puts back the bounds a rollout narrowed (from the annotation) and removes the annotation; a no-op when nothing is held. */
    async restoreAutoscaler(input: { deployment: string; by: ChangeContext }): Promise<{ name: string; restored: boolean; bounds?: { minReplicas: number; maxReplicas: number } } | null> {
      opts.allowed(input.deployment);
      return withHeartbeat(async () => {
        const h = await find(input.deployment);
        if (!h) return null;
        const s = stateOf(h);
        if (!s.held) return { name: s.name, restored: false };
        const bounds = { minReplicas: s.held.minReplicas, maxReplicas: s.held.maxReplicas };
        await patchHpa(s.name, { metadata: { annotations: { [ANNOTATION_AUTOSCALER_BOUNDS]: null, [ANNOTATION_WORKFLOW]: input.by.workflowId, [ANNOTATION_STEP]: input.by.step.slice(0, 200) } }, spec: bounds }, 'restoring');
        return { name: s.name, restored: true, bounds };
      });
    },

    /**
     * Keeps a canary's share while the autoscaler moves the stable Deployment: reads the stable count
     * the autoscaler set and scales the canary to weight/(100-weight) of it. Idempotent: computed
     * from what is there now.
     */
    async followCanaryShare(input: { deployment: string; weight: number; by: ChangeContext }): Promise<{ stable: number; canary: number; previousCanary: number; changed: boolean }> {
      opts.allowed(input.deployment);
      return withHeartbeat(async () => {
        const name = `${input.deployment}-canary`;
        const read = async (n: string) => {
          try {
            return await api().apps.readNamespacedDeployment({ name: n, namespace: ns() });
          } catch (err) {
            throw classifyKubernetes(err, `reading deployment ${ns()}/${n}`);
          }
        };
        const stable = (await read(input.deployment)).spec?.replicas ?? 1;
        const canary = await read(name);
        const previous = canary.spec?.replicas ?? 1;
        const wanted = canaryFor(stable, input.weight);
        const annotation = String(stable + wanted);
        if (wanted === previous && canary.metadata?.annotations?.[ANNOTATION_STABLE_REPLICAS] === annotation) return { stable, canary: previous, previousCanary: previous, changed: false };
        try {
          await api().apps.patchNamespacedDeployment(
            { name, namespace: ns(), body: { metadata: { annotations: { [ANNOTATION_STABLE_REPLICAS]: annotation, [ANNOTATION_WORKFLOW]: input.by.workflowId, [ANNOTATION_STEP]: input.by.step.slice(0, 200) } }, spec: { replicas: wanted } } },
            mergePatch(),
          );
        } catch (err) {
          throw classifyKubernetes(err, `scaling deployment ${name}`);
        }
        return { stable, canary: wanted, previousCanary: previous, changed: wanted !== previous };
      });
    },
  };
}

export type AutoscalerActivities = ReturnType<typeof createAutoscalerActivities>;
