import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { parse } from 'yaml';
import { kubernetesPids, startKubernetes, stopKubernetes, KubernetesInfo } from '../../src/sandbox/kubernetes';
import { processesInGroup, runCli, waitFor } from '../helpers';

const root = mkdtempSync(join(tmpdir(), 'runbook-k8s-test-'));
let cluster: KubernetesInfo;
let apps: k8s.AppsV1Api;
let core: k8s.CoreV1Api;

before(async () => {
  cluster = await startKubernetes({ dir: root, nodes: 3 });
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  apps = kc.makeApiClient(k8s.AppsV1Api);
  core = kc.makeApiClient(k8s.CoreV1Api);
});
after(async () => {
  if (cluster) await stopKubernetes(cluster);
  rmSync(root, { recursive: true, force: true });
});

function deployment(name: string, image: string, replicas = 3, progressDeadlineSeconds = 600): k8s.V1Deployment {
  return {
    metadata: { name, labels: { app: name } },
    spec: {
      replicas,
      progressDeadlineSeconds,
      selector: { matchLabels: { app: name } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: 'app', image, ports: [{ containerPort: 8080 }] }] },
      },
    },
  };
}

function condition(d: k8s.V1Deployment, type: string): k8s.V1DeploymentCondition | undefined {
  return d.status?.conditions?.find((c) => c.type === type);
}

/** The rollout is complete the way `kubectl rollout status` judges it. */
function rolledOut(d: k8s.V1Deployment): boolean {
  const want = d.spec?.replicas ?? 1;
  const s = d.status ?? {};
  return (
    (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 1) &&
    (s.updatedReplicas ?? 0) === want &&
    (s.replicas ?? 0) === want &&
    (s.availableReplicas ?? 0) === want &&
    condition(d, 'Available')?.status === 'True'
  );
}

async function replicaSetsOf(name: string): Promise<k8s.V1ReplicaSet[]> {
  const list = await apps.listNamespacedReplicaSet({ namespace: 'default', labelSelector: `app=${name}` });
  return list.items.sort((a, b) => Number(a.metadata?.annotations?.['deployment.kubernetes.io/revision']) - Number(b.metadata?.annotations?.['deployment.kubernetes.io/revision']));
}

describe('the Kubernetes test control plane', () => {
  test('nodes are kwok nodes, Ready, and the API server is the pinned release', async () => {
    const nodes = await core.listNode();
    assert.equal(nodes.items.length, 3);
    for (const n of nodes.items) {
      assert.equal(n.metadata?.annotations?.['kwok.x-k8s.io/node'], 'fake');
      assert.equal(n.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True', `node ${n.metadata?.name} Ready`);
    }
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cluster.kubeconfig);
    const version = await kc.makeApiClient(k8s.VersionApi).getCode();
    assert.equal(version.gitVersion.replace(/^v/, '').split('.').slice(0, 2).join('.'), (cluster.versions.kubernetes ?? '').replace(/^v/, '').split('.').slice(0, 2).join('.'));
    const sa = await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
    assert.equal(sa.metadata?.name, 'default');
  });

  test('a Deployment becomes available with Ready pods spread over the kwok nodes', async () => {
    await apps.createNamespacedDeployment({ namespace: 'default', body: deployment('web', 'registry.sandbox.test/web:1.0') });
    const d = await waitFor('web rolled out', async () => {
      const cur = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
      return rolledOut(cur) && cur;
    }, 60_000, 250);
    assert.equal(d.status?.readyReplicas, 3);
    const pods = await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' });
    assert.equal(pods.items.length, 3);
    for (const p of pods.items) {
      assert.equal(p.status?.phase, 'Running');
      assert.ok(cluster.nodes.includes(p.spec?.nodeName ?? ''), `pod scheduled on a kwok node, got ${p.spec?.nodeName}`);
      assert.equal(p.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
    }
    // The real scheduler spreads replicas of one Deployment over nodes.
    assert.ok(new Set(pods.items.map((p) => p.spec?.nodeName)).size >= 2, 'replicas spread over at least two nodes');
  });

  test('changing the image makes a new ReplicaSet and revision, and the old one scales to zero', async () => {
    await apps.patchNamespacedDeployment(
      { name: 'web', namespace: 'default', body: { spec: { template: { spec: { containers: [{ name: 'app', image: 'registry.sandbox.test/web:1.1' }] } } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch),
    );
    const d = await waitFor('web 1.1 rolled out', async () => {
      const cur = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
      return rolledOut(cur) && cur.metadata?.annotations?.['deployment.kubernetes.io/revision'] === '2' && cur;
    }, 60_000, 250);
    assert.equal(d.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/web:1.1');
    const sets = await waitFor('old ReplicaSet scaled down', async () => {
      const rs = await replicaSetsOf('web');
      return rs.length === 2 && rs[0].status?.replicas === 0 && rs;
    }, 30_000, 250);
    assert.equal(sets[0].metadata?.annotations?.['deployment.kubernetes.io/revision'], '1');
    assert.equal(sets[0].spec?.template?.spec?.containers[0].image, 'registry.sandbox.test/web:1.0');
    assert.equal(sets[1].metadata?.annotations?.['deployment.kubernetes.io/revision'], '2');
    assert.equal(sets[1].status?.readyReplicas, 3);
  });

  test('a bad release never becomes Ready, its containers crash-loop, and the rollout reports ProgressDeadlineExceeded', async () => {
    await apps.createNamespacedDeployment({ namespace: 'default', body: deployment('api', 'registry.sandbox.test/api:1.0', 2, 8) });
    await waitFor('api rolled out', async () => rolledOut(await apps.readNamespacedDeployment({ name: 'api', namespace: 'default' })), 60_000, 250);
    await apps.patchNamespacedDeployment(
      { name: 'api', namespace: 'default', body: { spec: { template: { spec: { containers: [{ name: 'app', image: 'registry.sandbox.test/api:2.0-bad' }] } } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch),
    );
    const stuck = await waitFor('ProgressDeadlineExceeded', async () => {
      const cur = await apps.readNamespacedDeployment({ name: 'api', namespace: 'default' });
      const p = condition(cur, 'Progressing');
      return p?.status === 'False' && p.reason === 'ProgressDeadlineExceeded' && cur;
    }, 90_000, 500);
    // maxUnavailable 0: the old pods keep serving while the new one never becomes ready.
    assert.equal(stuck.status?.availableReplicas, 2);
    assert.ok((stuck.status?.unavailableReplicas ?? 0) >= 1);
    const bad = await waitFor('a crash-looping pod of the bad release', async () => {
      const pods = await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=api' });
      return pods.items.find((p) => p.spec?.containers[0].image?.endsWith(':2.0-bad') && (p.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1);
    }, 30_000, 500);
    assert.equal(bad.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'False');
    assert.equal(bad.status?.containerStatuses?.[0]?.ready, false);
    assert.equal(bad.status?.containerStatuses?.[0]?.state?.waiting?.reason, 'CrashLoopBackOff');
  });

  test('a pod annotated to fail readiness stays unready with a good image', async () => {
    const body = deployment('worker', 'registry.sandbox.test/worker:1.0', 1, 600);
    body.spec!.template.metadata!.annotations = { 'sandbox.runbook.dev/readiness': 'fail' };
    await apps.createNamespacedDeployment({ namespace: 'default', body });
    const pod = await waitFor('worker pod running', async () => {
      const pods = await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=worker' });
      return pods.items.find((p) => p.status?.phase === 'Running');
    }, 60_000, 250);
    assert.equal(pod.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'False');
    const d = await apps.readNamespacedDeployment({ name: 'worker', namespace: 'default' });
    assert.equal(d.status?.availableReplicas ?? 0, 0);
  });

  test('stopping the control plane leaves no process behind', async () => {
    const pids = kubernetesPids(cluster);
    assert.equal(pids.length, 6);
    await stopKubernetes(cluster);
    for (const pid of pids) assert.deepEqual(processesInGroup(pid), [], `process group ${pid} is empty`);
    cluster = undefined as unknown as KubernetesInfo;
  });
});

describe('runbook stack up --with-kubernetes', () => {
  test('starts the control plane beside the stack, writes its kubeconfig into the config, and stack down stops it', async () => {
    const dir = join(root, 'stack');
    const up = await runCli(['--json', 'stack', 'up', '--dir', dir, '--only', 'temporal', '--with-kubernetes', '--headless'], { timeoutMs: 180_000 });
    assert.equal(up.code, 0, up.stderr);
    const state = JSON.parse(up.stdout).stack as { configFile: string; kubernetes: KubernetesInfo };
    try {
      const config = parse(readFileSync(state.configFile, 'utf8')) as { environments: { sandbox: { kubernetes: { kubeconfig: string; namespace: string } } } };
      assert.equal(config.environments.sandbox.kubernetes.kubeconfig, state.kubernetes.kubeconfig);
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(config.environments.sandbox.kubernetes.kubeconfig);
      const nodes = await kc.makeApiClient(k8s.CoreV1Api).listNode();
      assert.equal(nodes.items.length, 3);
      const status = await runCli(['--json', 'stack', 'status', '--dir', dir]);
      assert.equal(status.code, 0, status.stdout);
      const k = (JSON.parse(status.stdout).components as Array<{ component: string; running: boolean; endpoint: string }>).find((c) => c.component === 'kubernetes');
      assert.deepEqual(k && { running: k.running, endpoint: k.endpoint }, { running: true, endpoint: state.kubernetes.server });
      const check = await runCli(['config', 'check', state.configFile]);
      assert.equal(check.code, 0, check.stderr + check.stdout);
    } finally {
      const down = await runCli(['stack', 'down', '--dir', dir]);
      assert.equal(down.code, 0, down.stderr);
      assert.match(down.stdout, /kubernetes/);
    }
    for (const pid of kubernetesPids(state.kubernetes)) assert.deepEqual(processesInGroup(pid), [], `process group ${pid} is empty after stack down`);
  });
});
