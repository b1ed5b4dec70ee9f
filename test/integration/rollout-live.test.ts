import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, IncomingMessage, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { WorkflowHandle } from '@temporalio/client';
import { parse, stringify } from 'yaml';
import { ConnectedClient, connectClient, startRunbook } from '../../src/cli/client';
import { actOnRollout } from '../../src/cli/rollout';
import { signedDecision } from '../../src/cli/sign';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { PrometheusInfo, startPrometheus, stopPrometheus } from '../../src/sandbox/prometheus';
import { createSampleDeployment } from '../../src/sandbox/kubernetes';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { decideUpdate } from '../../src/workflows/lib/gate';
import type { RollbackResult } from '../../src/workflows/rollback';
import { RolloutInput, RolloutResult, rolloutStatusQuery } from '../../src/workflows/rollout';
import { RunbookWorker } from '../../src/worker';
import { operator, waitFor } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-rollout-live-test-'));
chmodSync(dir, 0o755);
let stack: StackState;
let loaded: LoadedConfig;
let worker: RunbookWorker;
let c: ConnectedClient;
let apps: k8s.AppsV1Api;
let autoscaling: k8s.AutoscalingV2Api;
let prometheus: PrometheusInfo;
let app: Server;
let receiver: Server;
const hooks: { kind: string; workflowId: string; gate?: string }[] = [];

/**
 * What the stand-in application reports per Deployment and pod set, as its pods would expose it (kwok
 * runs no containers): the error ratio of the canary and of the stable pods, with noise; null or
 * absent: that set serves no traffic, so it has no series at all. Each scenario has its own series,
 * so a window never holds another scenario's samples.
 */
const errors: Record<string, { canary: number | null; stable: number | null }> = {
  // Scraped from the start, so the comparison's window is full by the time its scenario runs.
  api: { canary: 0.2, stable: 0.01 },
  search: { canary: null, stable: 0.01 },
  mail: { canary: null, stable: 0.01 },
};
const noisy = (v: number) => Math.max(0, v * (0.8 + 0.4 * Math.random()));

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'kubernetes'] });
  receiver = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const e = JSON.parse(body) as { kind: string; workflowId: string; gate?: { name: string } };
      hooks.push({ kind: e.kind, workflowId: e.workflowId, gate: e.gate?.name });
      res.end('ok');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  // This stack has no database or S3, so nothing has made its secrets directory yet.
  mkdirSync(join(stack.dir, 'secrets'), { recursive: true, mode: 0o700 });
  writeFileSync(join(stack.dir, 'secrets', 'hook-secret'), 'a-webhook-secret-for-tests\n', { mode: 0o600 });
  const doc = parse(readFileSync(stack.configFile, 'utf8'));
  const env = doc.environments.sandbox;
  env.policies = {};
  // The canary follows an autoscaler every second here (30 s by default); Flux-managed Deployments are suspended for a rollout.
  env.kubernetes.rollout = { autoscalerCheckEvery: '1s' };
  env.kubernetes.gitops = { onManaged: 'suspend' };
  env.notifications = { channels: [{ type: 'webhook', name: 'hook', url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`, secret: 'file:secrets/hook-secret' }], gates: ['hook'], failures: ['hook'] };
  writeFileSync(stack.configFile, stringify(doc));
  loaded = loadConfig(stack.configFile);
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(stack.kubernetes!.kubeconfig);
  apps = kc.makeApiClient(k8s.AppsV1Api);
  autoscaling = kc.makeApiClient(k8s.AutoscalingV2Api);

  app = createServer((req, res) => {
    const lines = ['# TYPE app_error_ratio gauge'];
    for (const [name, e] of Object.entries(errors)) {
      for (const track of ['canary', 'stable'] as const) if (e[track] !== null) lines.push(`app_error_ratio{app="${name}",track="${track}"} ${noisy(e[track]!)}`);
    }
    res.setHeader('content-type', 'text/plain; version=0.0.4');
    res.end(`${lines.join('\n')}\n`);
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  prometheus = await startPrometheus({ dir, targets: [`127.0.0.1:${(app.address() as AddressInfo).port}`], ruleFiles: [], intervalSeconds: 1 });
  worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  await worker.start();
  await worker.waitUntilReady();
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
});

after(async () => {
  await c?.close();
  await worker?.shutdown();
  if (prometheus) await stopPrometheus(prometheus.pid);
  app?.close();
  receiver?.close();
  if (stack) await stopStack(stack);
  if (!process.env.RUNBOOK_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
});

const read = (name: string) => apps.readNamespacedDeployment({ name, namespace: 'default' });
const image = async (name: string) => (await read(name)).spec?.template.spec?.containers[0].image;
const gone = async (name: string) => read(name).then(() => false, () => true);
const envOf = (d: k8s.V1Deployment) => d.spec?.template.spec?.containers[0].env?.map((e) => ({ name: e.name, value: e.value }));

async function startRollout(input: Omit<RolloutInput, 'environment'>): Promise<WorkflowHandle> {
  const { handle } = await startRunbook(c, 'rollout', [{ environment: 'sandbox', ...input }], { workflowId: `rollout-live-${input.deployment}-${Date.now()}` });
  return handle;
}

async function atGate(handle: WorkflowHandle, name?: RegExp) {
  return waitFor('an open gate', async () => {
    const s = await handle.query(rolloutStatusQuery);
    const open = s.approvals.find((g) => g.outcome === 'waiting');
    return open && (!name || name.test(open.name)) && s;
  }, 120_000, 200);
}

const comparison = (app: string, windowSeconds = 20) => ({
  windowSeconds,
  stepSeconds: 1,
  minSamples: 10,
  metrics: [{ name: 'error ratio', address: prometheus.url, query: `app_error_ratio{app="${app}",track="{{track}}"}` }],
});

/** How many samples Prometheus holds of one series over the last seconds. */
async function samples(selector: string, seconds: number): Promise<number> {
  const res = await fetch(`${prometheus.url}/api/v1/query?query=${encodeURIComponent(`count_over_time(${selector}[${seconds}s])`)}`);
  const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
  return Number(body.data.result[0]?.value[1] ?? 0);
}

async function hpa(name: string) {
  return autoscaling.readNamespacedHorizontalPodAutoscaler({ name, namespace: 'default' });
}

describe('rollouts that live with autoscalers, GitOps and real metrics', () => {
  test('with an autoscaler, a 25% canary keeps its share while the autoscaler scales, and the bounds are restored after', async () => {
    await createSampleDeployment(apps, { name: 'shop', image: 'registry.sandbox.test/shop:1.0', replicas: 4 });
    await autoscaling.createNamespacedHorizontalPodAutoscaler({
      namespace: 'default',
      body: { metadata: { name: 'shop' }, spec: { scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'shop' }, minReplicas: 4, maxReplicas: 12, metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 60 } } }] } },
    });
    const handle = await startRollout({ deployment: 'shop', image: 'registry.sandbox.test/shop:1.1', steps: [{ setWeight: 25 }, { pause: {} }] });
    await atGate(handle, /^step 2: continue the rollout at 25%$/);
    assert.equal((await read('shop-canary')).spec?.replicas, 1);
    assert.equal((await read('shop')).spec?.replicas, 3);
    // The autoscaler's bounds follow the stable share, so the real autoscaler controller does not scale the stable pods back to 4.
    const held = await hpa('shop');
    assert.deepEqual([held.spec?.minReplicas, held.spec?.maxReplicas], [3, 9]);
    assert.deepEqual(JSON.parse(held.metadata!.annotations!['runbook.dev/autoscaler-bounds']), { minReplicas: 4, maxReplicas: 12, workflowId: handle.workflowId });

    // Load rises: the sandbox has no metrics server, so this does what the autoscaler controller does
    // when it decides on 6 replicas: it writes the stable Deployment's scale subresource.
    await apps.replaceNamespacedDeploymentScale({ name: 'shop', namespace: 'default', body: { metadata: { name: 'shop', namespace: 'default' }, spec: { replicas: 6 } } });
    await waitFor('the canary follows to 2 of 8', async () => {
      const canary = await read('shop-canary');
      return canary.spec?.replicas === 2 && canary.status?.readyReplicas === 2;
    }, 60_000, 250);
    const s = await handle.query(rolloutStatusQuery);
    assert.equal(s.weight, 25);
    assert.deepEqual(s.replicas, { stable: 6, canary: 2, total: 8 });
    assert.deepEqual(s.autoscaler?.follows.map((f) => [f.previousCanary, f.canary, f.stable]), [[1, 2, 6]]);
    assert.equal((await read('shop')).spec?.replicas, 6, 'the autoscaler controller left the count it chose');

    await actOnRollout(c, handle, 'promote', operator(stack));
    const r = (await handle.result()) as RolloutResult;
    assert.equal(r.outcome, 'promoted');
    const after = await read('shop');
    assert.equal(after.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/shop:1.1');
    assert.equal(after.spec?.replicas, 8, 'the stable Deployment takes over the whole capacity');
    assert.ok(await gone('shop-canary'));
    const restored = await hpa('shop');
    assert.deepEqual([restored.spec?.minReplicas, restored.spec?.maxReplicas], [4, 12]);
    assert.equal(restored.metadata?.annotations?.['runbook.dev/autoscaler-bounds'], undefined);
    assert.ok(r.timeline.steps.some((s) => s.name === 'autoscaler: canary 1 -> 2 pod(s) beside 6 stable'));
  });

  test('an aborted rollout under an autoscaler: the rollback run removes the canary and restores the bounds', async () => {
    await createSampleDeployment(apps, { name: 'cart', image: 'registry.sandbox.test/cart:1.0', replicas: 4 });
    await autoscaling.createNamespacedHorizontalPodAutoscaler({ namespace: 'default', body: { metadata: { name: 'cart' }, spec: { scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'cart' }, minReplicas: 2, maxReplicas: 8 } } });
    const handle = await startRollout({ deployment: 'cart', image: 'registry.sandbox.test/cart:1.1', steps: [{ setWeight: 50 }, { pause: {} }] });
    await atGate(handle);
    assert.deepEqual([(await hpa('cart')).spec?.minReplicas, (await hpa('cart')).spec?.maxReplicas], [1, 4]);
    await actOnRollout(c, handle, 'abort', operator(stack), 'not today');
    const r = (await handle.result()) as RolloutResult;
    assert.equal(r.outcome, 'aborted');
    const rollback = c.client.workflow.getHandle(r.status.rollback!.workflowId);
    const rb = (await rollback.result()) as RollbackResult;
    assert.equal(rb.canaryRemoved, true);
    assert.equal(rb.autoscaler, 'cart back to 2-8');
    assert.deepEqual([(await hpa('cart')).spec?.minReplicas, (await hpa('cart')).spec?.maxReplicas], [2, 8]);
    assert.equal((await read('cart')).spec?.replicas, 4);
    assert.equal(await image('cart'), 'registry.sandbox.test/cart:1.0');
    assert.ok(await gone('cart-canary'));
  });

  test('a canary with a higher error rate than the stable version is judged worse by rank test and rolled back', async () => {
    await createSampleDeployment(apps, { name: 'api', image: 'registry.sandbox.test/api:1.0', replicas: 2 });
    // Both pod sets have been scraped since the file started: the window holds enough samples of each.
    await waitFor('a full window of both pod sets', async () => (await samples('app_error_ratio{app="api",track="canary"}', 15)) >= 12 && (await samples('app_error_ratio{app="api",track="stable"}', 15)) >= 12, 60_000, 500);
    const handle = await startRollout({ deployment: 'api', image: 'registry.sandbox.test/api:1.1', steps: [{ setWeight: 50 }, { compare: {} }, { pause: {} }], comparison: comparison('api', 15) });
    const r = (await handle.result()) as RolloutResult;
    assert.equal(r.outcome, 'rolled back');
    assert.match(r.reason ?? '', /the canary was judged worse than the stable version at step 2: score 0 is below the marginal threshold of 75: error ratio: canary significantly higher/);
    const judged = r.status.comparisons![0];
    assert.equal(judged.verdict, 'fail');
    assert.equal(judged.metrics[0].result, 'high');
    assert.ok(judged.metrics[0].canarySamples >= 10 && judged.metrics[0].stableSamples >= 10, `samples: ${judged.metrics[0].canarySamples}/${judged.metrics[0].stableSamples}`);
    assert.ok(judged.metrics[0].p! < 0.01);
    assert.deepEqual(judged.queries[0], { name: 'error ratio', canary: 'app_error_ratio{app="api",track="canary"}', stable: 'app_error_ratio{app="api",track="stable"}' });
    assert.equal(await image('api'), 'registry.sandbox.test/api:1.0');
    assert.ok(await gone('api-canary'));
    assert.match(r.status.rollback!.workflowId, new RegExp(`^${handle.workflowId}-rollback-`));
  });

  test('with no traffic to the canary the comparison is inconclusive: the run waits at a gate with the evidence instead of failing', async () => {
    await createSampleDeployment(apps, { name: 'search', image: 'registry.sandbox.test/search:1.0', replicas: 2 });
    const handle = await startRollout({ deployment: 'search', image: 'registry.sandbox.test/search:1.1', steps: [{ setWeight: 50 }, { compare: {} }], comparison: comparison('search', 15) });
    const s = await atGate(handle, /^step 2: analysis inconclusive: continue the rollout at 50%$/);
    assert.equal(s.phase, 'paused');
    assert.equal(s.comparisons?.[0].verdict, 'inconclusive');
    assert.match(s.comparisons![0].reason, /no data to judge error ratio \(too few samples to judge \(canary 0, stable \d+; at least 10 each\)\)/);
    assert.equal(await image('search-canary'), 'registry.sandbox.test/search:1.1', 'nothing was rolled back while the gate waits');
    // A person looks at the evidence and lets it go on.
    await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'rollout', 'approve', operator(stack), 'no traffic yet, a smoke test passed')] });
    const r = (await handle.result()) as RolloutResult;
    assert.equal(r.outcome, 'promoted');
    const step = r.timeline.steps.find((x) => x.name === 'step 2: compare canary with stable');
    assert.equal(step?.evidence.verdict, 'inconclusive');
    assert.equal(step?.evidence.decision, 'approved');
    assert.equal(step?.evidence.decidedBy, 'sandbox-operator');
  });

  test('a background analysis fails during a bake: the rollout rolls back before the bake ends', async () => {
    await createSampleDeployment(apps, { name: 'mail', image: 'registry.sandbox.test/mail:1.0', replicas: 2 });
    const backgroundAnalysis = { intervalSeconds: 1, prometheus: [{ name: 'canary errors', address: prometheus.url, query: 'app_error_ratio{app="mail",track="canary"}', successCondition: '< 0.05' }] };
    const handle = await startRollout({ deployment: 'mail', image: 'registry.sandbox.test/mail:1.1', steps: [{ setWeight: 50 }, { pause: { durationSeconds: 600 } }], backgroundAnalysis });
    await waitFor('background measurements without data', async () => ((await handle.query(rolloutStatusQuery)).background?.inconclusive?.['canary errors'] ?? 0) >= 2, 60_000, 200);
    errors.mail.canary = 0.3;
    const r = (await handle.result()) as RolloutResult;
    assert.equal(r.outcome, 'rolled back');
    assert.match(r.reason ?? '', /^background analysis during step 2: analysis 'background during step 2': canary errors failed 1 time\(s\)/);
    assert.equal(r.timeline.steps.find((s) => s.name === 'step 2: bake for 600 s')?.outcome, 'failed');
    assert.equal(await image('mail'), 'registry.sandbox.test/mail:1.0');
  });

  test('GitOps: an Argo CD-managed Deployment is refused, a Flux-managed one gets an env and annotation change with reconciliation suspended meanwhile', async () => {
    await createSampleDeployment(apps, { name: 'argo', image: 'registry.sandbox.test/argo:1.0', replicas: 2 });
    await apps.patchNamespacedDeployment({ name: 'argo', namespace: 'default', body: { metadata: { annotations: { 'argocd.argoproj.io/tracking-id': 'shop:apps/Deployment:default/argo' } } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    const refused = await startRollout({ deployment: 'argo', image: 'registry.sandbox.test/argo:1.1' });
    await assert.rejects(refused.result(), (err: Error & { cause?: Error & { type?: string } }) => {
      assert.equal(err.cause?.type, 'StartRefused');
      assert.match(err.cause?.message ?? '', /managed by Argo CD \(annotation argocd.argoproj.io\/tracking-id=shop:apps\/Deployment:default\/argo\), which cannot be suspended for one object; nothing was changed\. set kubernetes.gitops.onManaged to proceed/);
      return true;
    });
    assert.ok(await gone('argo-canary'));

    await createSampleDeployment(apps, { name: 'flux', image: 'registry.sandbox.test/flux:1.0', replicas: 2 });
    await apps.patchNamespacedDeployment({ name: 'flux', namespace: 'default', body: { metadata: { labels: { 'kustomize.toolkit.fluxcd.io/name': 'apps', 'kustomize.toolkit.fluxcd.io/namespace': 'flux-system' } } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    const handle = await startRollout({ deployment: 'flux', change: { containers: [{ name: 'app', env: [{ name: 'FEATURE_CHECKOUT', value: 'on' }] }], podAnnotations: { 'shop.example.com/config-version': '7' } }, steps: [{ setWeight: 50 }, { pause: {} }] });
    await atGate(handle);
    assert.equal((await read('flux')).metadata?.annotations?.['kustomize.toolkit.fluxcd.io/reconcile'], 'disabled', 'Flux does not undo the canary meanwhile');
    const canary = await read('flux-canary');
    assert.deepEqual(envOf(canary), [{ name: 'FEATURE_CHECKOUT', value: 'on' }]);
    await actOnRollout(c, handle, 'promote', operator(stack));
    const r = (await handle.result()) as RolloutResult;
    assert.equal(r.outcome, 'promoted');
    assert.deepEqual(r.status.change, ['container app: env FEATURE_CHECKOUT set', 'pod annotation shop.example.com/config-version set']);
    const after = await read('flux');
    assert.deepEqual(envOf(after), [{ name: 'FEATURE_CHECKOUT', value: 'on' }]);
    assert.equal(after.spec?.template.metadata?.annotations?.['shop.example.com/config-version'], '7');
    assert.equal(after.metadata?.annotations?.['kustomize.toolkit.fluxcd.io/reconcile'], undefined, 'reconciliation resumed as it was');
    assert.equal(after.metadata?.annotations?.['runbook.dev/reconcile-was'], undefined);
    assert.deepEqual(r.timeline.steps.map((s) => s.name).filter((n) => /GitOps/.test(n)), ['suspend GitOps reconciliation', 'resume GitOps reconciliation']);
  });

  test('the rolling strategy end to end, its gate under the remind policy reminding through the notification channel until approved', async () => {
    await createSampleDeployment(apps, { name: 'rolly', image: 'registry.sandbox.test/rolly:1.0', replicas: 4 });
    const handle = await startRollout({ deployment: 'rolly', image: 'registry.sandbox.test/rolly:1.1', strategy: 'rolling', steps: [{ setWeight: 50 }, { pause: {} }], gateTimeoutSeconds: 2, onGateTimeout: 'remind', remindEverySeconds: 2 });
    await atGate(handle);
    const paused = await read('rolly');
    assert.equal(paused.spec?.paused, true, 'the rolling update is paused at the gate');
    const sets = await apps.listNamespacedReplicaSet({ namespace: 'default', labelSelector: 'app=rolly' });
    const onNew = sets.items.filter((rs) => rs.spec?.template?.spec?.containers[0].image === 'registry.sandbox.test/rolly:1.1').reduce((n, rs) => n + (rs.status?.readyReplicas ?? 0), 0);
    // The Deployment controller rolls in batches of its own and is paused once half is reached; on the
    // sandbox's instantly ready pods it may have gone a batch further by then.
    assert.ok(onNew >= 2, `at least half the pods on the new version at the gate: ${onNew}`);
    // Nobody decides: the remind policy keeps the gate open and reminds through the webhook every 2 s.
    await waitFor('two reminders delivered', async () => hooks.filter((h) => h.workflowId === handle.workflowId && h.kind === 'gate reminder').length >= 2, 60_000, 250);
    assert.equal((await handle.query(rolloutStatusQuery)).phase, 'paused', 'still waiting, not rolled back');
    assert.equal(hooks.find((h) => h.workflowId === handle.workflowId && h.kind === 'gate opened')?.gate, 'step 2: continue the rollout at 50%');
    await actOnRollout(c, handle, 'promote', operator(stack), 'after the reminders');
    const r = (await handle.result()) as RolloutResult;
    assert.equal(r.outcome, 'promoted');
    const gate = r.timeline.steps.find((s) => s.name === 'step 2: pause for approval');
    assert.ok((gate?.evidence.reminders as number) >= 2);
    const done = await read('rolly');
    assert.equal(done.spec?.paused ?? false, false);
    assert.equal(done.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/rolly:1.1');
    assert.equal(done.status?.updatedReplicas, 4);
    assert.equal(done.status?.availableReplicas, 4);
    assert.ok(await gone('rolly-canary'), 'the rolling strategy makes no canary');
  });
});
