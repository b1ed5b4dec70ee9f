import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { parse, stringify } from 'yaml';
import { K8sObject, renderKustomization } from '../../scripts/render-manifests';
import { connectClient, startRunbook } from '../../src/cli/client';
import { CHECKLIST } from '../../src/checklist/catalog';
import { loadConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { startKubernetes, stopKubernetes, KubernetesInfo } from '../../src/sandbox/kubernetes';
import { startStack, stopStack } from '../../src/sandbox/stack';
import { RunbookWorker } from '../../src/worker';
import type { ReadinessAuditResult } from '../../src/workflows/readinessAudit';
import type { RolloutResult } from '../../src/workflows/rollout';
import { httpStatus, startCli, waitFor } from '../helpers';
import { kubernetesActivityRules, ruleKey } from '../activity-rbac';

const REPO = join(__dirname, '..', '..');
const root = mkdtempSync(join(tmpdir(), 'runbook-deploy-test-'));
const FIELD_MANAGER = 'runbook-deploy-test';
const QUEUES = ['critical', 'standard', 'batch'];

/** What the Kubernetes activities call (read from their source): the worker's ServiceAccount must be allowed these and nothing else. */
const NEEDED = kubernetesActivityRules();

interface Overlay {
  name: string;
  objects: K8sObject[];
  workerNs: string;
  managedNs: string;
}

let cluster: KubernetesInfo;
let kc: k8s.KubeConfig;
let objectApi: k8s.KubernetesObjectApi;
let apps: k8s.AppsV1Api;
let core: k8s.CoreV1Api;
const overlays: Overlay[] = ['prod', 'staging'].map((name) => {
  const objects = renderKustomization(join(REPO, 'deploy', 'kubernetes', 'overlays', name));
  const workerNs = objects.find((o) => o.kind === 'Namespace')!.metadata.name;
  const managedNs = objects.find((o) => o.kind === 'Role')!.metadata.namespace!;
  return { name, objects, workerNs, managedNs };
});

/** A minimal ServiceMonitor CRD: the Prometheus Operator's types for the fields the manifests use. */
const SERVICE_MONITOR_CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'servicemonitors.monitoring.coreos.com' },
  spec: {
    group: 'monitoring.coreos.com',
    scope: 'Namespaced',
    names: { kind: 'ServiceMonitor', listKind: 'ServiceMonitorList', plural: 'servicemonitors', singular: 'servicemonitor' },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: {
                type: 'object',
                required: ['selector', 'endpoints'],
                properties: {
                  selector: { type: 'object', properties: { matchLabels: { type: 'object', additionalProperties: { type: 'string' } } } },
                  endpoints: {
                    type: 'array',
                    items: {
                      type: 'object',
                      properties: {
                        port: { type: 'string' },
                        path: { type: 'string' },
                        interval: { type: 'string', pattern: '^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$' },
                        scrapeTimeout: { type: 'string', pattern: '^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$' },
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
    ],
  },
};

async function serverSideApply(objects: K8sObject[], dryRun = false): Promise<void> {
  for (const o of objects) {
    try {
      await objectApi.patch(o as k8s.KubernetesObject, undefined, dryRun ? 'All' : undefined, FIELD_MANAGER, true, k8s.PatchStrategy.ServerSideApply);
    } catch (err) {
      throw new Error(`${dryRun ? 'dry-run ' : ''}apply of ${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name} failed: ${(err as Error).message}`);
    }
  }
}

/** A client that acts as the worker's ServiceAccount through the admin's impersonation rights (kubectl --as). */
function impersonating(ns: string, sa: string): k8s.KubeConfig {
  const admin = kc.getCurrentUser()!;
  const as = new k8s.KubeConfig();
  as.loadFromOptions({
    clusters: kc.clusters,
    users: [{ ...admin, name: 'as-sa', impersonateUser: `system:serviceaccount:${ns}:${sa}` }],
    contexts: [{ name: 'as-sa', cluster: kc.getCurrentCluster()!.name, user: 'as-sa' }],
    currentContext: 'as-sa',
  });
  return as;
}

/** A client holding a real token of the ServiceAccount, as the pod would. */
async function withToken(ns: string, sa: string): Promise<k8s.KubeConfig> {
  const tr = await core.createNamespacedServiceAccountToken({ name: sa, namespace: ns, body: { spec: { audiences: [], expirationSeconds: 600 } } });
  const out = new k8s.KubeConfig();
  out.loadFromOptions({
    clusters: kc.clusters,
    users: [{ name: 'sa-token', token: tr.status!.token }],
    contexts: [{ name: 'sa-token', cluster: kc.getCurrentCluster()!.name, user: 'sa-token' }],
    currentContext: 'sa-token',
  });
  return out;
}

async function canI(auth: k8s.AuthorizationV1Api, attrs: k8s.V1ResourceAttributes): Promise<boolean> {
  const review = await auth.createSelfSubjectAccessReview({ body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', spec: { resourceAttributes: attrs } } });
  return review.status?.allowed === true;
}

/** "group/resource:verb" for every resource rule a subject has in a namespace (SelfSubjectRulesReview). */
async function rulesIn(as: k8s.KubeConfig, namespace: string): Promise<Set<string>> {
  const review = await as.makeApiClient(k8s.AuthorizationV1Api).createSelfSubjectRulesReview({ body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectRulesReview', spec: { namespace } } });
  assert.equal(review.status?.incomplete, false, review.status?.evaluationError);
  const out = new Set<string>();
  for (const r of review.status?.resourceRules ?? []) {
    for (const g of r.apiGroups ?? []) for (const res of r.resources ?? []) for (const v of r.verbs) out.add(`${g}/${res}:${v}${r.resourceNames?.length ? `[${r.resourceNames.join(',')}]` : ''}`);
  }
  return out;
}

function statusCode(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

before(async () => {
  cluster = await startKubernetes({ dir: root, nodes: 3 });
  kc = new k8s.KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  objectApi = k8s.KubernetesObjectApi.makeApiClient(kc);
  apps = kc.makeApiClient(k8s.AppsV1Api);
  core = kc.makeApiClient(k8s.CoreV1Api);
  // The namespaces the runbooks manage belong to the applications, not to these manifests.
  for (const o of overlays) await core.createNamespace({ body: { metadata: { name: o.managedNs } } });
  await serverSideApply([SERVICE_MONITOR_CRD as unknown as K8sObject]);
  const ext = kc.makeApiClient(k8s.ApiextensionsV1Api);
  await waitFor('ServiceMonitor CRD established', async () => {
    const crd = await ext.readCustomResourceDefinition({ name: SERVICE_MONITOR_CRD.metadata.name });
    return crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
  }, 30_000, 200);
});
after(async () => {
  if (cluster) await stopKubernetes(cluster);
  rmSync(root, { recursive: true, force: true });
});

describe('the deploy manifests on a real control plane', () => {
  test('both overlays pass a server-side dry run and then apply: every object is accepted, the pod templates under the restricted Pod Security Standard', async () => {
    for (const o of overlays) {
      const namespaces = o.objects.filter((x) => x.kind === 'Namespace');
      await serverSideApply(namespaces);
      const rest = o.objects.filter((x) => x.kind !== 'Namespace');
      await serverSideApply(rest, true);
      const deployments = await apps.listNamespacedDeployment({ namespace: o.workerNs });
      assert.equal(deployments.items.length, 0, 'the dry run created nothing');
      await serverSideApply(rest);
      // The Secrets the Deployments reference (README: created by the operator, never shipped).
      const keys = new Map<string, Set<string>>();
      for (const d of rest.filter((x) => x.kind === 'Deployment') as unknown as k8s.V1Deployment[]) {
        for (const e of d.spec!.template.spec!.containers[0].env ?? []) {
          const ref = e.valueFrom?.secretKeyRef;
          if (ref?.name) keys.set(ref.name, (keys.get(ref.name) ?? new Set<string>()).add(ref.key));
        }
        for (const v of d.spec!.template.spec!.volumes ?? []) if (v.secret) keys.set(v.secret.secretName!, new Set(['tls.crt', 'tls.key', 'ca.crt']));
      }
      for (const [name, k] of keys) {
        await core.createNamespacedSecret({ namespace: o.workerNs, body: { metadata: { name }, stringData: Object.fromEntries([...k].map((key) => [key, `test-${key}`])) } });
      }
      for (const x of o.objects) {
        const live = await objectApi.read({ apiVersion: x.apiVersion, kind: x.kind, metadata: { name: x.metadata.name, namespace: x.metadata.namespace } });
        assert.equal(live.metadata?.name, x.metadata.name);
      }
      const sm = (await objectApi.read({ apiVersion: 'monitoring.coreos.com/v1', kind: 'ServiceMonitor', metadata: { name: 'runbook-worker', namespace: o.workerNs } })) as K8sObject;
      assert.deepEqual(sm.spec, o.objects.find((x) => x.kind === 'ServiceMonitor')!.spec, 'no field of the ServiceMonitor was pruned');
    }
  });

  test('each queue gets two Ready worker pods on kwok nodes: the autoscaler raises the Deployment to its minimum', async () => {
    for (const o of overlays) {
      for (const q of QUEUES) {
        const name = `runbook-worker-${q}`;
        const d = await waitFor(`${o.name} ${name} at 2 available replicas`, async () => {
          const cur = await apps.readNamespacedDeployment({ name, namespace: o.workerNs });
          return cur.spec?.replicas === 2 && cur.status?.availableReplicas === 2 && cur.status.updatedReplicas === 2 && cur;
        }, 60_000, 250);
        assert.equal(d.metadata?.annotations?.['deployment.kubernetes.io/revision'], '1');
        const pods = await core.listNamespacedPod({ namespace: o.workerNs, labelSelector: `app.kubernetes.io/name=runbook-worker,runbook.dev/queue=${q}` });
        assert.equal(pods.items.length, 2);
        for (const p of pods.items) {
          assert.ok(cluster.nodes.includes(p.spec?.nodeName ?? ''), `${p.metadata?.name} on a kwok node`);
          assert.equal(p.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
          assert.equal(p.spec?.serviceAccountName, 'runbook-worker');
          assert.deepEqual(p.spec?.containers[0].args?.slice(-2), ['--queues', q]);
        }
      }
      // Pods reached the API through PodSecurity admission: the namespace enforces "restricted".
      const ns = await core.readNamespace({ name: o.workerNs });
      assert.equal(ns.metadata?.labels?.['pod-security.kubernetes.io/enforce'], 'restricted');
    }
  });

  test('where payloads are encrypted, the codec server gets its two Ready pods, as its own ServiceAccount with no API token mounted', async () => {
    const withCodec = overlays.filter((o) => o.objects.some((x) => x.kind === 'Deployment' && x.metadata.name === 'runbook-codec-server'));
    assert.ok(withCodec.length > 0, 'an overlay deploys the codec server');
    for (const o of withCodec) {
      await waitFor(`${o.name} codec server at 2 available replicas`, async () => {
        const cur = await apps.readNamespacedDeployment({ name: 'runbook-codec-server', namespace: o.workerNs });
        return cur.status?.availableReplicas === 2 && cur.status.updatedReplicas === 2;
      }, 60_000, 250);
      const pods = await core.listNamespacedPod({ namespace: o.workerNs, labelSelector: 'app.kubernetes.io/name=runbook-codec-server' });
      assert.equal(pods.items.length, 2);
      for (const p of pods.items) {
        assert.equal(p.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
        assert.equal(p.spec?.serviceAccountName, 'runbook-codec-server');
        assert.ok(!(p.spec?.volumes ?? []).some((v) => v.projected?.sources?.some((src) => src.serviceAccountToken)), 'no ServiceAccount token is mounted');
        assert.deepEqual(p.spec?.containers[0].args?.slice(-5), ['codec-server', '--host', '0.0.0.0', '--port', '8888']);
      }
      // The codec Service reaches the codec server pods only, never a worker.
      const discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
      const slices = await waitFor(`${o.name} codec endpoints`, async () => {
        const list = await discovery.listNamespacedEndpointSlice({ namespace: o.workerNs, labelSelector: 'kubernetes.io/service-name=runbook-codec-server' });
        const ready = list.items.flatMap((sl) => (sl.endpoints ?? []).filter((e) => e.conditions?.ready).flatMap((e) => e.addresses));
        return ready.length === 2 && ready;
      }, 30_000, 250);
      assert.deepEqual([...slices].sort(), pods.items.map((p) => p.status?.podIP).sort());
    }
  });

  test('the disruption budgets count two healthy pods per queue and allow one voluntary disruption', async () => {
    const policy = kc.makeApiClient(k8s.PolicyV1Api);
    for (const o of overlays) {
      for (const q of QUEUES) {
        const pdb = await waitFor(`${o.name} PDB ${q}`, async () => {
          const cur = await policy.readNamespacedPodDisruptionBudget({ name: `runbook-worker-${q}`, namespace: o.workerNs });
          return cur.status?.currentHealthy === 2 && cur.status;
        }, 30_000, 250);
        assert.equal(pdb.expectedPods, 2);
        assert.equal(pdb.desiredHealthy, 1);
        assert.equal(pdb.disruptionsAllowed, 1);
      }
    }
  });

  test('the metrics Service has every worker pod as an endpoint on the metrics port', async () => {
    const discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
    for (const o of overlays) {
      const pods = await core.listNamespacedPod({ namespace: o.workerNs, labelSelector: 'app.kubernetes.io/name=runbook-worker' });
      const podIps = pods.items.map((p) => p.status?.podIP).sort();
      assert.equal(podIps.length, 6);
      const slices = await waitFor(`${o.name} endpoints`, async () => {
        const list = await discovery.listNamespacedEndpointSlice({ namespace: o.workerNs, labelSelector: 'kubernetes.io/service-name=runbook-worker-metrics' });
        const ready = list.items.flatMap((s) => (s.endpoints ?? []).filter((e) => e.conditions?.ready).flatMap((e) => e.addresses));
        return ready.length === 6 && list.items;
      }, 30_000, 250);
      assert.deepEqual(slices.flatMap((s) => (s.endpoints ?? []).flatMap((e) => e.addresses)).sort(), podIps);
      assert.deepEqual(slices.flatMap((s) => (s.ports ?? []).map((p) => [p.name, p.port])), [['metrics', 9464]]);
    }
  });

  test('re-applying the manifests changes no Deployment and keeps a replica count the autoscaler chose', async () => {
    const o = overlays[0];
    // As the HorizontalPodAutoscaler does under load: scale through the scale subresource.
    await apps.patchNamespacedDeploymentScale({ name: 'runbook-worker-critical', namespace: o.workerNs, body: { spec: { replicas: 3 } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    const before = await Promise.all(QUEUES.map((q) => apps.readNamespacedDeployment({ name: `runbook-worker-${q}`, namespace: o.workerNs })));
    await serverSideApply(o.objects);
    const afterApply = await Promise.all(QUEUES.map((q) => apps.readNamespacedDeployment({ name: `runbook-worker-${q}`, namespace: o.workerNs })));
    assert.deepEqual(afterApply.map((d) => d.metadata?.generation), before.map((d) => d.metadata?.generation), 'no Deployment changed');
    assert.equal(afterApply[0].spec?.replicas, 3);
  });

  test('impersonating the worker\'s ServiceAccount: allowed every call the activities make in the managed namespace, refused everything else asked', async () => {
    for (const o of overlays) {
      const auth = impersonating(o.workerNs, 'runbook-worker').makeApiClient(k8s.AuthorizationV1Api);
      assert.ok(NEEDED.length > 0);
      for (const n of NEEDED) {
        assert.equal(await canI(auth, { namespace: o.managedNs, group: n.group, resource: n.resource, subresource: n.subresource, verb: n.verb }), true, `${o.name}: ${ruleKey(n)} in ${o.managedNs}`);
        // The same call in the worker's own namespace, or another overlay's, is refused.
        for (const elsewhere of [o.workerNs, ...overlays.filter((x) => x !== o).map((x) => x.managedNs), 'default']) {
          assert.equal(await canI(auth, { namespace: elsewhere, group: n.group, resource: n.resource, subresource: n.subresource, verb: n.verb }), false, `${o.name}: ${ruleKey(n)} in ${elsewhere}`);
        }
      }
      const refused: k8s.V1ResourceAttributes[] = [
        { namespace: o.managedNs, resource: 'secrets', verb: 'get' },
        { namespace: o.managedNs, resource: 'secrets', verb: 'list' },
        { namespace: o.workerNs, resource: 'secrets', verb: 'get', name: 'runbook-secrets' },
        { namespace: o.managedNs, resource: 'pods', subresource: 'exec', verb: 'create' },
        { namespace: o.managedNs, resource: 'pods', subresource: 'attach', verb: 'create' },
        { namespace: o.managedNs, resource: 'pods', verb: 'delete' },
        { namespace: o.managedNs, resource: 'pods', verb: 'create' },
        { namespace: o.managedNs, resource: 'configmaps', verb: 'update' },
        { namespace: o.managedNs, resource: 'services', verb: 'patch' },
        { namespace: o.managedNs, group: 'apps', resource: 'deployments', verb: 'deletecollection' },
        { namespace: o.managedNs, group: 'apps', resource: 'replicasets', verb: 'delete' },
        { namespace: o.managedNs, group: 'apps', resource: 'statefulsets', verb: 'patch' },
        { namespace: o.managedNs, group: 'apps', resource: 'daemonsets', verb: 'list' },
        { namespace: o.managedNs, group: 'rbac.authorization.k8s.io', resource: 'roles', verb: 'escalate' },
        { namespace: o.managedNs, group: 'rbac.authorization.k8s.io', resource: 'rolebindings', verb: 'create' },
        { namespace: o.managedNs, resource: 'serviceaccounts', subresource: 'token', verb: 'create' },
        { resource: 'nodes', verb: 'list' },
        { resource: 'namespaces', verb: 'list' },
        { group: 'apps', resource: 'deployments', verb: 'list' },
        { group: 'rbac.authorization.k8s.io', resource: 'clusterroles', verb: 'get' },
        { group: 'rbac.authorization.k8s.io', resource: 'clusterrolebindings', verb: 'create' },
        { group: 'apiextensions.k8s.io', resource: 'customresourcedefinitions', verb: 'list' },
      ];
      for (const attrs of refused) {
        assert.equal(await canI(auth, attrs), false, `${o.name}: ${attrs.verb} ${attrs.group ? `${attrs.group}/` : ''}${attrs.resource}${attrs.subresource ? `/${attrs.subresource}` : ''} in ${attrs.namespace ?? 'the cluster scope'}`);
      }
    }
  });

  test('nothing more: the worker\'s rules in each namespace, minus what any ServiceAccount has, are exactly the activities\' needs', async () => {
    const needed = new Set(NEEDED.map(ruleKey));
    for (const o of overlays) {
      // An account with no bindings of its own, in the same namespace: the cluster's defaults for every account.
      await core.createNamespacedServiceAccount({ namespace: o.workerNs, body: { metadata: { name: 'baseline' } } });
      const worker = impersonating(o.workerNs, 'runbook-worker');
      const baseline = impersonating(o.workerNs, 'baseline');
      for (const ns of [o.managedNs, o.workerNs, 'default', 'kube-system']) {
        const base = await rulesIn(baseline, ns);
        const extra = [...(await rulesIn(worker, ns))].filter((r) => !base.has(r)).sort();
        assert.deepEqual(extra, ns === o.managedNs ? [...needed].sort() : [], `${o.name}: rules beyond the defaults in ${ns}`);
      }
    }
  });

  test('with its own token the worker\'s ServiceAccount makes the activities\' calls on a canary in the managed namespace and is refused the rest', async () => {
    const o = overlays[0];
    const as = await withToken(o.workerNs, 'runbook-worker');
    const saApps = as.makeApiClient(k8s.AppsV1Api);
    const saCore = as.makeApiClient(k8s.CoreV1Api);
    const namespace = o.managedNs;
    const strategicMerge = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch);
    const canary: k8s.V1Deployment = {
      metadata: { name: 'web-canary', labels: { app: 'web', track: 'canary' } },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'web', track: 'canary' } },
        template: { metadata: { labels: { app: 'web', track: 'canary' } }, spec: { containers: [{ name: 'app', image: 'registry.sandbox.test/web:1.1' }] } },
      },
    };
    // Each call the activities make: create the canary, read it, patch its image and replicas, list its
    // ReplicaSets and pods, delete it.
    await saApps.createNamespacedDeployment({ namespace, body: canary });
    const read = await saApps.readNamespacedDeployment({ name: 'web-canary', namespace });
    assert.equal(read.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/web:1.1');
    await saApps.patchNamespacedDeployment({ name: 'web-canary', namespace, body: { metadata: { annotations: { 'runbook.dev/step': 'canary' } }, spec: { replicas: 2, template: { spec: { containers: [{ name: 'app', image: 'registry.sandbox.test/web:1.2' }] } } } } }, strategicMerge);
    const pods = await waitFor('two canary pods', async () => {
      const list = await saCore.listNamespacedPod({ namespace, labelSelector: 'track=canary' });
      return list.items.filter((p) => p.spec?.containers[0].image?.endsWith(':1.2')).length === 2 && list.items;
    }, 30_000, 250);
    const sets = await saApps.listNamespacedReplicaSet({ namespace, labelSelector: 'track=canary' });
    assert.equal(sets.items.length, 2, 'one ReplicaSet per image');
    await saApps.deleteNamespacedDeployment({ name: 'web-canary', namespace, propagationPolicy: 'Foreground' });
    const pod = pods[0];

    const forbidden: [string, () => Promise<unknown>][] = [
      ['list the secrets of the managed namespace', () => saCore.listNamespacedSecret({ namespace })],
      ['read its own secrets', () => saCore.readNamespacedSecret({ name: 'runbook-secrets', namespace: o.workerNs })],
      ['list Deployments in its own namespace', () => saApps.listNamespacedDeployment({ namespace: o.workerNs })],
      ['delete a pod', () => saCore.deleteNamespacedPod({ name: pod.metadata!.name!, namespace })],
      ['list nodes', () => saCore.listNode()],
      ['change a ConfigMap', () => saCore.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'x' }, data: {} } })],
      ['list ReplicaSets in another namespace', () => saApps.listNamespacedReplicaSet({ namespace: 'default' })],
      ['delete a ReplicaSet', () => saApps.deleteNamespacedReplicaSet({ name: sets.items[0].metadata!.name!, namespace })],
    ];
    for (const [what, call] of forbidden) {
      await assert.rejects(call(), (err: unknown) => statusCode(err) === 403, `refused to ${what}`);
    }
  });
});

describe('the worker as its own ServiceAccount, on a real control plane', () => {
  test('with its token it runs a readiness audit that answers every Kubernetes item, and a canary rollout to the end', async () => {
    const o = overlays[0];
    const namespace = o.managedNs;
    // The application the runbooks manage: two replicas, probes, limits, a budget, an autoscaler, a policy.
    const web: k8s.V1Deployment = {
      metadata: { name: 'web', labels: { app: 'web' } },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'web' } },
        template: {
          metadata: { labels: { app: 'web' } },
          spec: {
            containers: [
              {
                name: 'app',
                image: 'registry.sandbox.test/web:1.0',
                livenessProbe: { httpGet: { path: '/health', port: 8080 } },
                readinessProbe: { httpGet: { path: '/ready', port: 8080 } },
                startupProbe: { httpGet: { path: '/health', port: 8080 }, failureThreshold: 30 },
                resources: { requests: { cpu: '100m', memory: '64Mi' }, limits: { cpu: '500m', memory: '256Mi' } },
              },
            ],
          },
        },
      },
    };
    await apps.createNamespacedDeployment({ namespace, body: web });
    await kc.makeApiClient(k8s.PolicyV1Api).createNamespacedPodDisruptionBudget({ namespace, body: { metadata: { name: 'web' }, spec: { minAvailable: 1, selector: { matchLabels: { app: 'web' } } } } });
    await kc.makeApiClient(k8s.AutoscalingV2Api).createNamespacedHorizontalPodAutoscaler({
      namespace,
      body: { metadata: { name: 'web' }, spec: { scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web' }, minReplicas: 2, maxReplicas: 4, metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } }] } },
    });
    await kc.makeApiClient(k8s.NetworkingV1Api).createNamespacedNetworkPolicy({ namespace, body: { metadata: { name: 'web' }, spec: { podSelector: { matchLabels: { app: 'web' } }, policyTypes: ['Ingress'] } } });
    await waitFor('web available', async () => ((await apps.readNamespacedDeployment({ name: 'web', namespace })).status?.availableReplicas ?? 0) === 2, 60_000, 250);

    const dir = join(root, 'as-service-account');
    const stack = await startStack({ dir, components: ['temporal', 's3'] });
    let worker: RunbookWorker | undefined;
    try {
      // The kubeconfig holds nothing but the ServiceAccount's token, as the pod's would.
      const kubeconfig = join(dir, 'worker-kubeconfig.json');
      writeFileSync(kubeconfig, (await withToken(o.workerNs, 'runbook-worker')).exportConfig(), { mode: 0o600 });
      const doc = parse(readFileSync(stack.configFile, 'utf8'));
      doc.environments.sandbox.kubernetes = { kubeconfig, namespace, deployments: ['web'] };
      doc.schedules = [];
      const configFile = join(dir, 'runbook-as-sa.yaml');
      writeFileSync(configFile, stringify(doc));
      const loaded = loadConfig(configFile);
      worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('error') });
      await worker.start();
      await worker.waitUntilReady(120_000);
      const c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
      try {
        const audit = await startRunbook(c, 'readinessAudit', [{ environment: 'sandbox', checkTimeoutSeconds: 20 }], {});
        const report = (await audit.handle.result()) as ReadinessAuditResult;
        const kubernetesItems = CHECKLIST.filter((i) => i.proof.kind === 'automated' && i.proof.checks.every((ch) => ch.startsWith('checkKubernetes'))).map((i) => i.id);
        assert.ok(kubernetesItems.length >= 8, `${kubernetesItems.length} items proved by Kubernetes checks`);
        const items = report.sections.flatMap((x) => x.items).filter((i) => kubernetesItems.includes(i.id));
        assert.equal(items.length, kubernetesItems.length);
        const unknown = items.filter((i) => i.status === 'unknown').map((i) => `${i.id}: ${i.summary}`);
        assert.deepEqual(unknown, [], 'every Kubernetes item is answered with the ServiceAccount\'s rights');
        assert.equal(items.find((i) => i.id === 'worker-replicas')?.status, 'pass', 'two replicas of web');
        assert.equal(items.find((i) => i.id === 'pdb-configured')?.status, 'pass');
        assert.equal(items.find((i) => i.id === 'hpa-configured')?.status, 'pass');
        assert.equal(items.find((i) => i.id === 'network-policies')?.status, 'pass');

        const rollout = await startRunbook(c, 'rollout', [{ environment: 'sandbox', deployment: 'web', image: 'registry.sandbox.test/web:1.1', steps: [{ setWeight: 50 }] }], { target: 'web' });
        const result = (await rollout.handle.result()) as RolloutResult;
        assert.equal(result.outcome, 'promoted', JSON.stringify(result.timeline?.steps?.filter((x) => x.outcome === 'failed')));
        const after = await apps.readNamespacedDeployment({ name: 'web', namespace });
        assert.equal(after.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/web:1.1');
        await assert.rejects(apps.readNamespacedDeployment({ name: 'web-canary', namespace }), (err: unknown) => statusCode(err) === 404, 'the canary is gone');
      } finally {
        await c.close();
      }
    } finally {
      await worker?.shutdown();
      await stopStack(stack);
    }
  });
});

describe('the worker container as the Deployment runs it', () => {
  test('the production command line and config start a worker whose /health answers and whose /ready stays 503 until it polls', async () => {
    const o = overlays[0];
    const d = o.objects.find((x) => x.kind === 'Deployment' && x.metadata.name === 'runbook-worker-critical') as unknown as k8s.V1Deployment;
    const container = d.spec!.template.spec!.containers[0];
    const cm = o.objects.find((x) => x.kind === 'ConfigMap') as unknown as { data: Record<string, string> };
    const dir = mkdtempSync(join(root, 'pod-'));
    const configFile = join(dir, 'runbook.yaml');
    writeFileSync(configFile, cm.data['runbook.yaml']);
    // The env the kubelet would build: literal values, and each secretKeyRef from the Secret.
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const e of container.env ?? []) env[e.name] = e.value ?? (e.valueFrom?.secretKeyRef?.key === 'codec-key' ? Buffer.alloc(32, 7).toString('base64') : `test-${e.valueFrom?.secretKeyRef?.key}`);
    // Unreachable Temporal: the worker must stay alive and unready rather than exit.
    env.TEMPORAL_ADDRESS = '127.0.0.1:9';
    const args = container.args!.map((a) => (a === '/etc/runbook/config/runbook.yaml' ? configFile : a));
    const worker = startCli([...args, '--http-port', '0'], { env });
    try {
      const url = await waitFor('worker HTTP address', async () => {
        if (worker.child.exitCode !== null) throw new Error(`worker exited: ${worker.output.stderr}${worker.output.stdout}`);
        return /"httpUrl":"(http:\/\/[^"]+)"/.exec(worker.output.stdout + worker.output.stderr)?.[1];
      }, 60_000, 100);
      assert.match(url, /^http:\/\/0\.0\.0\.0:\d+$/, 'bound to every address of the pod');
      const port = new URL(url).port;
      assert.equal((await httpStatus(`http://127.0.0.1:${port}/health`)).status, 200);
      const ready = await httpStatus(`http://127.0.0.1:${port}/ready`);
      assert.equal(ready.status, 503);
      assert.deepEqual(JSON.parse(ready.body).taskQueues, ['critical-queue', 'critical-queue-plan']);
    } finally {
      worker.child.kill('SIGTERM');
      const exit = await worker.exited;
      assert.equal(exit.code, 0, 'a SIGTERM drains and exits 0');
    }
  });
});

describe('the codec server container as the Deployment runs it', () => {
  test('the production command line and config, with only its own secrets, answer /health, refuse a request without a token and decode for the CLI token', async () => {
    const o = overlays.find((x) => x.objects.some((d) => d.kind === 'Deployment' && d.metadata.name === 'runbook-codec-server'))!;
    const d = o.objects.find((x) => x.kind === 'Deployment' && x.metadata.name === 'runbook-codec-server') as unknown as k8s.V1Deployment;
    const container = d.spec!.template.spec!.containers[0];
    const cm = o.objects.find((x) => x.kind === 'ConfigMap') as unknown as { data: Record<string, string> };
    const dir = mkdtempSync(join(root, 'codec-pod-'));
    const configFile = join(dir, 'runbook.yaml');
    // The identity provider is not reachable from here: its JWKS URL points at a closed loopback port instead.
    writeFileSync(configFile, cm.data['runbook.yaml'].replace(/jwksUrl: \S+/, 'jwksUrl: http://127.0.0.1:9/.well-known/jwks.json'));
    const key = Buffer.alloc(32, 9);
    const token = `cli-token-${'x'.repeat(24)}`;
    // The env the kubelet would build from its secretKeyRefs, and nothing of the workers' (no database or cloud credentials).
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
    for (const e of container.env ?? []) env[e.name] = e.valueFrom?.secretKeyRef?.key === 'codec-key' ? key.toString('base64') : token;
    const args = container.args!.map((a, i, all) => (a === '/etc/runbook/config/runbook.yaml' ? configFile : all[i - 1] === '--port' ? '0' : a));
    const server = startCli(args, { env });
    try {
      const url = await waitFor('the codec server to listen', async () => {
        if (server.child.exitCode !== null) throw new Error(`codec server exited: ${server.output.stderr}${server.output.stdout}`);
        return /"url":"(http:\/\/[^"]+)"/.exec(server.output.stdout)?.[1];
      }, 120_000, 100);
      assert.match(url, /^http:\/\/0\.0\.0\.0:\d+$/, 'bound to every address of the pod');
      const base = `http://127.0.0.1:${new URL(url).port}`;
      assert.equal((await httpStatus(`${base}/health`)).status, 200);
      const { EncryptionCodec } = await import('../../src/codec');
      const { defaultPayloadConverter } = await import('@temporalio/common');
      const [sealed] = await new EncryptionCodec(new Map([['2026-01', key]]), '2026-01').encode([defaultPayloadConverter.toPayload({ deployed: true })]);
      const body = JSON.stringify({ payloads: [{ metadata: Object.fromEntries(Object.entries(sealed.metadata!).map(([k, v]) => [k, Buffer.from(v).toString('base64')])), data: Buffer.from(sealed.data!).toString('base64') }] });
      const post = (headers: Record<string, string>) => fetch(`${base}/decode`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
      assert.equal((await post({})).status, 401);
      const res = await post({ authorization: `Bearer ${token}` });
      assert.equal(res.status, 200, await res.clone().text());
      const [p] = ((await res.json()) as { payloads: { metadata: Record<string, string>; data: string }[] }).payloads;
      assert.deepEqual(JSON.parse(Buffer.from(p.data, 'base64').toString()), { deployed: true });
    } finally {
      server.child.kill('SIGTERM');
      const exit = await server.exited;
      assert.equal(exit.code, 0, 'a SIGTERM closes it and exits 0');
    }
  });
});
