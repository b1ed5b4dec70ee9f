/**
 * The readiness audit's Kubernetes checks: the configured Deployments (all of the namespace when none
 * are listed) read through the API with the worker's own credentials, judged one by one.
 */
import type * as k8s from '@kubernetes/client-node';
import { isAbsolute, join } from 'node:path';
import type { CheckId } from '../../checklist/catalog';
import type { EnvironmentConfig } from '../../config/schema';
import { k8sRuntime } from '../k8sRuntime';
import { namedSecretKind, secretKind } from './secretShapes';
import { CheckDeps, fail, pass, unknown, Verdict, VerdictFn } from './support';


interface Workload {
  name: string;
  replicas: number;
  available: number;
  podLabels: Record<string, string>;
  /** The long-running containers (probes, resources and HA concern these). */
  containers: k8s.V1Container[];
  initContainers: k8s.V1Container[];
  volumes: k8s.V1Volume[];
}

function selects(selector: k8s.V1LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = e.key in labels;
    const value = labels[e.key];
    if (e.operator === 'In' && !(has && (e.values ?? []).includes(value))) return false;
    if (e.operator === 'NotIn' && has && (e.values ?? []).includes(value)) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

class KubernetesView {
  private readonly kc = new (k8sRuntime().KubeConfig)();
  readonly namespace: string;

  constructor(
    private readonly config: NonNullable<EnvironmentConfig['kubernetes']>,
    baseDir: string,
  ) {
    if (config.kubeconfig) this.kc.loadFromFile(isAbsolute(config.kubeconfig) ? config.kubeconfig : join(baseDir, config.kubeconfig));
    else this.kc.loadFromDefault();
    if (config.context) this.kc.setCurrentContext(config.context);
    this.namespace = config.namespace;
  }

  api<T extends k8s.ApiType>(kind: new (config: k8s.Configuration) => T): T {
    return this.kc.makeApiClient(kind);
  }

  /** The configured Deployments (all in the namespace when none are listed); a missing one is a problem of its own. */
  async workloads(): Promise<{ items: Workload[]; missing: string[] }> {
    const apps = this.api(k8sRuntime().AppsV1Api);
    const all = (await apps.listNamespacedDeployment({ namespace: this.namespace })).items;
    const wanted = this.config.deployments.length ? this.config.deployments : all.map((d) => d.metadata!.name!);
    const items: Workload[] = [];
    const missing: string[] = [];
    for (const name of wanted) {
      const d = all.find((x) => x.metadata?.name === name);
      if (!d) {
        missing.push(name);
        continue;
      }
      const spec = d.spec!.template.spec;
      items.push({
        name,
        replicas: d.spec?.replicas ?? 1,
        available: d.status?.availableReplicas ?? 0,
        podLabels: d.spec?.template.metadata?.labels ?? {},
        containers: spec?.containers ?? [],
        initContainers: spec?.initContainers ?? [],
        volumes: spec?.volumes ?? [],
      });
    }
    return { items, missing };
  }
}

export function createKubernetesChecks(deps: CheckDeps): Record<Extract<CheckId, `checkKubernetes${string}`>, VerdictFn> {
  const { env } = deps;
  const kube = env.kubernetes ? new KubernetesView(env.kubernetes, deps.baseDir) : undefined;
  /** One check per Deployment; the check passes when no Deployment has a problem. */
  type Context = { pdbs: k8s.V1PodDisruptionBudget[]; hpas: k8s.V2HorizontalPodAutoscaler[]; policies: k8s.V1NetworkPolicy[]; configMaps: k8s.V1ConfigMap[] };
  const perWorkload = (what: string, judge: (w: Workload, ctx: Context) => string | undefined, needs: { pdbs?: boolean; hpas?: boolean; policies?: boolean; configMaps?: boolean } = {}) =>
    async (): Promise<Verdict> => {
      if (!kube) return unknown(`no kubernetes: section for environment ${deps.environment}`);
      const ns = kube.namespace;
      const [{ items, missing }, pdbs, hpas, policies, configMaps] = await Promise.all([
        kube.workloads(),
        needs.pdbs ? kube.api(k8sRuntime().PolicyV1Api).listNamespacedPodDisruptionBudget({ namespace: ns }).then((l) => l.items) : [],
        needs.hpas ? kube.api(k8sRuntime().AutoscalingV2Api).listNamespacedHorizontalPodAutoscaler({ namespace: ns }).then((l) => l.items) : [],
        needs.policies ? kube.api(k8sRuntime().NetworkingV1Api).listNamespacedNetworkPolicy({ namespace: ns }).then((l) => l.items) : [],
        needs.configMaps ? kube.api(k8sRuntime().CoreV1Api).listNamespacedConfigMap({ namespace: ns }).then((l) => l.items) : [],
      ]);
      if (items.length === 0 && missing.length === 0) return unknown(`no Deployments in namespace ${ns}`, { namespace: ns });
      const deployments: Record<string, string> = {};
      for (const name of missing) deployments[name] = 'not found';
      for (const w of items) deployments[w.name] = judge(w, { pdbs, hpas, policies, configMaps }) ?? 'ok';
      const bad = Object.entries(deployments).filter(([, v]) => v !== 'ok');
      const evidence = { namespace: ns, deployments };
      return bad.length === 0 ? pass(`${what}: every Deployment (${items.length}) complies`, evidence) : fail(`${what}: ${bad.map(([n, v]) => `${n}: ${v}`).join('; ')}`, evidence);
    };
  const containersLacking = (w: Workload, lacks: (c: k8s.V1Container) => string[], containers = w.containers): string | undefined => {
    const problems = containers.flatMap((c) => lacks(c).map((p) => `${c.name} ${p}`));
    return problems.length ? problems.join(', ') : undefined;
  };
  const probe = (kind: 'livenessProbe' | 'readinessProbe' | 'startupProbe', label: string) =>
    perWorkload(`${label} probes`, (w) => containersLacking(w, (c) => (c[kind] ? [] : [`has no ${label} probe`])));
  const resources = (resource: 'cpu' | 'memory') =>
    perWorkload(`${resource} requests and limits`, (w) =>
      containersLacking(w, (c) => [...(c.resources?.requests?.[resource] ? [] : [`has no ${resource} request`]), ...(c.resources?.limits?.[resource] ? [] : [`has no ${resource} limit`])]),
    );

  return {
    checkKubernetesReplicas: perWorkload('replicas', (w) => (w.replicas >= 2 ? undefined : `${w.replicas} replica${w.replicas === 1 ? '' : 's'} (at least 2 for HA; ${w.available} available)`)),
    checkKubernetesPdb: perWorkload(
      'PodDisruptionBudgets',
      (w, { pdbs }) => {
        const matching = pdbs.filter((p) => selects(p.spec?.selector, w.podLabels));
        if (matching.length === 0) return 'no PodDisruptionBudget selects its pods';
        const useful = matching.some((p) => {
          const s = p.spec!;
          if (s.minAvailable !== undefined) return typeof s.minAvailable === 'number' ? s.minAvailable >= 1 && s.minAvailable < w.replicas : s.minAvailable !== '100%' && s.minAvailable !== '0%';
          if (s.maxUnavailable !== undefined) return typeof s.maxUnavailable === 'number' ? s.maxUnavailable >= 1 && s.maxUnavailable < w.replicas : s.maxUnavailable !== '0%' && s.maxUnavailable !== '100%';
          return false;
        });
        return useful ? undefined : `PodDisruptionBudget ${matching.map((p) => p.metadata?.name).join(', ')} either blocks every eviction or allows losing all pods`;
      },
      { pdbs: true },
    ),
    checkKubernetesHpa: perWorkload('HorizontalPodAutoscalers', (w, { hpas }) => {
      const h = hpas.find((x) => x.spec?.scaleTargetRef.kind === 'Deployment' && x.spec.scaleTargetRef.name === w.name);
      if (!h) return 'no HorizontalPodAutoscaler targets it';
      return (h.spec!.minReplicas ?? 1) >= 2 ? undefined : `HorizontalPodAutoscaler ${h.metadata?.name} may scale it down to ${h.spec!.minReplicas ?? 1} replica`;
    }, { hpas: true }),
    checkKubernetesCpuLimits: resources('cpu'),
    checkKubernetesMemoryLimits: resources('memory'),
    checkKubernetesLivenessProbes: probe('livenessProbe', 'liveness'),
    checkKubernetesReadinessProbes: probe('readinessProbe', 'readiness'),
    checkKubernetesStartupProbes: probe('startupProbe', 'startup'),
    checkKubernetesNetworkPolicies: perWorkload('NetworkPolicies', (w, { policies }) => {
      // An empty podSelector selects every pod of the namespace.
      const matching = policies.filter((p) => selects(p.spec?.podSelector, w.podLabels));
      return matching.length ? undefined : 'no NetworkPolicy selects its pods';
    }, { policies: true }),
    // Secrets in the pod spec, in the ConfigMaps its env reads and in the ConfigMaps it mounts, by name and
    // by shape. The object, the field and the kind of secret are evidence; a value never leaves the worker.
    checkKubernetesSecretEnv: perWorkload(
      'secrets in workloads',
      (w, { configMaps }) => {
        const found: string[] = [];
        const data = (name: string) => {
          const cm = configMaps.find((c) => c.metadata?.name === name);
          return cm ? { ...(cm.data ?? {}) } : undefined;
        };
        for (const c of [...w.initContainers, ...w.containers]) {
          for (const e of c.env ?? []) {
            const kind = namedSecretKind(e.name, e.value);
            if (kind) found.push(`${c.name} sets ${e.name} to a literal value holding ${kind} (use valueFrom.secretKeyRef)`);
            const ref = e.valueFrom?.configMapKeyRef;
            const refKind = ref && namedSecretKind(e.name, data(ref.name ?? '')?.[ref.key]);
            if (ref && refKind) found.push(`${c.name} reads ${e.name} from ConfigMap ${ref.name} key ${ref.key}, which holds ${refKind} (keep it in a Secret)`);
          }
          for (const from of c.envFrom ?? []) {
            const name = from.configMapRef?.name;
            for (const [key, value] of Object.entries((name && data(name)) || {})) {
              const kind = namedSecretKind(key, value);
              if (kind) found.push(`${c.name} takes its env from ConfigMap ${name}, whose key ${key} holds ${kind} (keep it in a Secret)`);
            }
          }
        }
        for (const v of w.volumes) {
          const names = [v.configMap?.name, ...(v.projected?.sources ?? []).map((s) => s.configMap?.name)].filter((n): n is string => !!n);
          for (const name of names) {
            for (const [file, content] of Object.entries(data(name) ?? {})) {
              const kind = secretKind(content);
              if (kind) found.push(`volume ${v.name} mounts ConfigMap ${name}, whose file ${file} holds ${kind} (mount a Secret instead)`);
            }
          }
        }
        return found.length ? found.join(', ') : undefined;
      },
      { configMaps: true },
    ),
  };
}
