import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runPlan } from '../../src/cli/plan';
import * as k8s from '@kubernetes/client-node';
import { WorkflowHandle, WorkflowUpdateFailedError } from '@temporalio/client';
import { parse, stringify } from 'yaml';
import { ConnectedClient, connectClient, startRunbook } from '../../src/cli/client';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { PrometheusInfo, startPrometheus, stopPrometheus } from '../../src/sandbox/prometheus';
import { createSampleDeployment } from '../../src/sandbox/kubernetes';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { GateRecord } from '../../src/workflows/lib/gate';
import { timelineQuery } from '../../src/workflows/lib/timeline';
import type { RollbackResult } from '../../src/workflows/rollback';
import { abortUpdate, promoteUpdate, RolloutInput, RolloutResult, rolloutStatusQuery } from '../../src/workflows/rollout';
import { actOnRollout } from '../../src/cli/rollout';
import { RunbookWorker } from '../../src/worker';
import { createKubernetesActivities } from '../../src/activities/kubernetes';
import { kubernetesTargetFor } from '../../src/activities/index';
import { waitFor, operator } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-rollout-test-'));
chmodSync(dir, 0o755);
let stack: StackState;
let loaded: LoadedConfig;
let worker: RunbookWorker;
let c: ConnectedClient;
let apps: k8s.AppsV1Api;
let core: k8s.CoreV1Api;
let prometheus: PrometheusInfo;
let app: Server;
let appUrl: string;
/** What the stand-in application reports: its error ratio (scraped by Prometheus) and its health. */
const appState = { errorRatio: 0.01, healthy: true };

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'kubernetes'] });
  // Two approvers for rollouts; everyone else is refused.
  const doc = parse(readFileSync(stack.configFile, 'utf8'));
  doc.environments.sandbox.approvers = { rollout: ['sandbox-operator', 'sandbox-reviewer'] };
  doc.environments.sandbox.policies = {};
  writeFileSync(stack.configFile, stringify(doc));
  loaded = loadConfig(stack.configFile);
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(stack.kubernetes!.kubeconfig);
  apps = kc.makeApiClient(k8s.AppsV1Api);
  core = kc.makeApiClient(k8s.CoreV1Api);

  app = createServer((req, res) => {
    if (req.url === '/metrics') {
      res.setHeader('content-type', 'text/plain; version=0.0.4');
      res.end(`# TYPE app_error_ratio gauge\napp_error_ratio ${appState.errorRatio}\n`);
    } else if (req.url === '/healthz') {
      res.statusCode = appState.healthy ? 200 : 503;
      res.end(appState.healthy ? 'ok' : 'unhealthy');
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  prometheus = await startPrometheus({ dir, targets: [appUrl.replace('http://', '')], ruleFiles: [], intervalSeconds: 1 });

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
  if (stack) await stopStack(stack);
  if (!process.env.RUNBOOK_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
});

const createDeployment = (name: string, image: string, replicas = 4) => createSampleDeployment(apps, { name, image, replicas });

let rollbackPlanSteps: string[] | undefined;

/** What a plan must leave alone: every Deployment's spec and annotations, and every ReplicaSet. */
async function deploymentsWorld(): Promise<unknown> {
  const ds = await apps.listNamespacedDeployment({ namespace: 'default' });
  const rs = await apps.listNamespacedReplicaSet({ namespace: 'default' });
  return {
    deployments: ds.items.map((d) => ({ name: d.metadata?.name, spec: d.spec, annotations: d.metadata?.annotations })).sort((a, b) => String(a.name).localeCompare(String(b.name))),
    replicaSets: rs.items.map((r) => `${r.metadata?.name} ${r.metadata?.annotations?.['deployment.kubernetes.io/revision']} ${r.spec?.replicas}`).sort(),
  };
}

async function image(name: string): Promise<string | undefined> {
  const d = await apps.readNamespacedDeployment({ name, namespace: 'default' });
  return d.spec?.template.spec?.containers[0].image;
}

async function exists(name: string): Promise<boolean> {
  try {
    await apps.readNamespacedDeployment({ name, namespace: 'default' });
    return true;
  } catch {
    return false;
  }
}

async function startRollout(input: Omit<RolloutInput, 'environment'>): Promise<WorkflowHandle> {
  const { handle } = await startRunbook(c, 'rollout', [{ environment: 'sandbox', ...input }], { workflowId: `rollout-test-${input.deployment}-${Date.now()}` });
  return handle;
}

/** Waits until the rollout waits at an open gate and returns the gates so far. */
async function atGate(handle: WorkflowHandle, count: number): Promise<GateRecord[]> {
  return waitFor(`gate ${count} open`, async () => {
    const s = await handle.query(rolloutStatusQuery);
    const open = s.approvals.filter((g) => g.outcome === 'waiting');
    return s.approvals.length === count && open.length === 1 && s.approvals;
  }, 90_000, 200);
}

/** An update refused by its validator, with the refusal's text. */
function refused(pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof WorkflowUpdateFailedError, `expected an update refusal, got ${String(err)}`);
    assert.match(String((err as Error & { cause?: Error }).cause?.message), pattern);
    return true;
  };
}

describe('rollout', () => {
  test('a three-step gated canary approved at each gate ends on the new image, the canary gone, every approval on the timeline', async () => {
    await createDeployment('shop', 'registry.sandbox.test/shop:1.0');
    const handle = await startRollout({
      deployment: 'shop',
      image: 'registry.sandbox.test/shop:1.1',
      steps: [{ setWeight: 25 }, { pause: {} }, { setWeight: 50 }, { pause: {} }, { setWeight: 75 }, { pause: {} }],
    });
    const expectedCanary = [1, 2, 3];
    for (let gate = 1; gate <= 3; gate++) {
      await atGate(handle, gate);
      const canary = await apps.readNamespacedDeployment({ name: 'shop-canary', namespace: 'default' });
      const stable = await apps.readNamespacedDeployment({ name: 'shop', namespace: 'default' });
      // The real controllers run the split: canary pods on the new image, the stable ones on the old.
      assert.equal(canary.status?.readyReplicas, expectedCanary[gate - 1], `canary ready replicas at gate ${gate}`);
      assert.equal(stable.spec?.replicas, 4 - expectedCanary[gate - 1]);
      assert.equal(canary.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/shop:1.1');
      assert.equal(stable.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/shop:1.0');
      assert.equal(canary.metadata?.annotations?.['runbook.dev/workflow-id'], handle.workflowId);
      await actOnRollout(c, handle, 'promote', operator(stack, gate === 2 ? 'sandbox-reviewer' : 'sandbox-operator'), `looks good at gate ${gate}`);
    }
    const result = await handle.result() as RolloutResult;
    assert.equal(result.outcome, 'promoted');
    assert.equal(await image('shop'), 'registry.sandbox.test/shop:1.1');
    assert.equal(await exists('shop-canary'), false);
    const stable = await apps.readNamespacedDeployment({ name: 'shop', namespace: 'default' });
    assert.equal(stable.spec?.replicas, 4);
    assert.equal(stable.status?.availableReplicas, 4);
    assert.equal(stable.metadata?.annotations?.['runbook.dev/workflow-id'], handle.workflowId);
    const gates = result.timeline.steps.filter((s) => s.name.includes('pause for approval'));
    assert.deepEqual(gates.map((g) => [g.outcome, g.evidence.outcome, g.evidence.by, g.evidence.comment]), [
      ['succeeded', 'approved', 'sandbox-operator', 'looks good at gate 1'],
      ['succeeded', 'approved', 'sandbox-reviewer', 'looks good at gate 2'],
      ['succeeded', 'approved', 'sandbox-operator', 'looks good at gate 3'],
    ]);
    for (const g of gates) assert.match(String((g.evidence as { at: string }).at), /^\d{4}-\d\d-\d\dT/);
  });

  test('rollout and rollback plans change nothing and show the Deployment patches, the canary and the gates', async () => {
    const before = await deploymentsWorld();
    const rollout = await runPlan(c, 'rollout', { environment: 'sandbox', deployment: 'shop', image: 'registry.sandbox.test/shop:1.2', steps: [{ setWeight: 50 }, { pause: {} }] });
    assert.equal(rollout.ok, true, rollout.problems.join('; '));
    const changes = rollout.steps.flatMap((st) => st.planned);
    assert.ok(changes.some((x) => x.kind === 'gate' && /sandbox-operator/.test(x.what)), JSON.stringify(changes.map((x) => x.what)));
    assert.ok(changes.some((x) => x.kind === 'compensation' && /the rollback runbook returns shop to the revision it had before this rollout/.test(x.what)), 'what a stop would undo');
    // The canary as it would be created, then the stable Deployment's own patch to the new image.
    assert.ok(changes.some((x) => x.by === 'ensureCanary' && JSON.stringify(x.detail).includes('shop-canary') && JSON.stringify(x.detail).includes('registry.sandbox.test/shop:1.2')), JSON.stringify(changes.map((x) => x.what)));
    const patch = changes.find((x) => (x.by === 'setDeploymentImage' || x.by === 'setDeploymentTemplate') && JSON.stringify(x.detail).includes('/spec/template/spec/containers/0/image'));
    assert.ok(patch, JSON.stringify(changes.map((x) => [x.by, x.detail])));
    assert.ok(JSON.stringify(patch.detail).includes('"op":"replace"') && JSON.stringify(patch.detail).includes('registry.sandbox.test/shop:1.2'), JSON.stringify(patch.detail));

    const rollback = await runPlan(c, 'rollback', { environment: 'sandbox', deployment: 'shop', reason: 'test' });
    assert.equal(rollback.ok, true, rollback.problems.join('; '));
    const undo = rollback.steps.flatMap((st) => st.planned).find((x) => x.by === 'undoDeployment');
    assert.ok(undo && /registry\.sandbox\.test\/shop:1\.0/.test(undo.what), JSON.stringify(rollback.steps));
    rollbackPlanSteps = rollback.steps.map((st) => st.name);
    assert.deepEqual(await deploymentsWorld(), before, 'the plans changed nothing');
  });

  test('rollback alone returns the Deployment to its previous revision', async () => {
    const before = await apps.readNamespacedDeployment({ name: 'shop', namespace: 'default' });
    const { handle } = await startRunbook(c, 'rollback', [{ environment: 'sandbox', deployment: 'shop', reason: 'test' }], { workflowId: `rollback-test-shop-${Date.now()}` });
    const r = (await handle.result()) as RollbackResult;
    // The plan of this same rollback, made just before, named these steps.
    if (rollbackPlanSteps) assert.deepEqual(r.timeline.steps.map((st) => st.name), rollbackPlanSteps);
    assert.equal(r.changed, true);
    assert.equal(await image('shop'), 'registry.sandbox.test/shop:1.0');
    const after = await apps.readNamespacedDeployment({ name: 'shop', namespace: 'default' });
    // kubectl's semantics: going back reuses the old ReplicaSet, which becomes the newest revision.
    assert.ok(Number(after.metadata?.annotations?.['deployment.kubernetes.io/revision']) > Number(before.metadata?.annotations?.['deployment.kubernetes.io/revision']));
    assert.equal(after.status?.availableReplicas, 4);
    const sets = await apps.listNamespacedReplicaSet({ namespace: 'default', labelSelector: 'app=shop' });
    assert.equal(sets.items.filter((rs) => (rs.status?.replicas ?? 0) > 0).length, 1, 'one ReplicaSet serves after the rollback');
    // A second rollback to the same target changes nothing: the image named is already running.
    const again = await startRunbook(c, 'rollback', [{ environment: 'sandbox', deployment: 'shop', toImage: 'registry.sandbox.test/shop:1.0' }], { workflowId: `rollback-test-shop-again-${Date.now()}` });
    assert.equal(((await again.handle.result()) as RollbackResult).changed, false);
  });

  test("a retried undo (its first attempt went through, then its worker died) does not undo again: one revision more, on the previous image, reported as this run's change", async () => {
    await apps.patchNamespacedDeployment({ name: 'shop', namespace: 'default', body: { spec: { template: { spec: { containers: [{ name: 'shop', image: 'registry.sandbox.test/shop:1.2' }] } } } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch));
    await waitFor('shop on 1.2', async () => (await image('shop')) === 'registry.sandbox.test/shop:1.2', 60_000, 250);
    const revision = async () => Number((await apps.readNamespacedDeployment({ name: 'shop', namespace: 'default' })).metadata?.annotations?.['deployment.kubernetes.io/revision']);
    const onRevision = await revision();
    const env = loaded.config.environments.sandbox;
    const acts = createKubernetesActivities({ environment: 'sandbox', target: kubernetesTargetFor(loaded, env) });
    const by = { workflowId: `undo-retry-${Date.now()}`, step: 'rollback' };
    const first = await acts.undoDeployment({ deployment: 'shop', by });
    assert.equal(first.changed, true);
    assert.equal(first.fromRevision, onRevision);
    assert.equal(await image('shop'), 'registry.sandbox.test/shop:1.0');
    // The controller numbers the revision once it has seen the change.
    await waitFor('the undo numbered as a new revision', async () => (await revision()) === onRevision + 1, 60_000, 100);
    // The same call again, as the retry of an attempt whose result was lost.
    const retry = await acts.undoDeployment({ deployment: 'shop', by });
    assert.deepEqual([retry.changed, retry.fromRevision], [true, onRevision], JSON.stringify(retry));
    assert.equal(await image('shop'), 'registry.sandbox.test/shop:1.0', 'not undone back to 1.2');
    await waitFor('the controller caught up', async () => {
      const d = await apps.readNamespacedDeployment({ name: 'shop', namespace: 'default' });
      return (d.status?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0);
    }, 60_000, 100);
    assert.equal(await revision(), onRevision + 1, 'no second revision');
    // Another run's undo is a new undo: it goes back to the revision before (1.2).
    const other = await acts.undoDeployment({ deployment: 'shop', by: { workflowId: `undo-other-${Date.now()}`, step: 'rollback' } });
    assert.equal(other.changed, true);
    assert.equal(await image('shop'), 'registry.sandbox.test/shop:1.2');
  });

  test('an unauthorized approver is refused at once and the rollout keeps waiting', async () => {
    await createDeployment('cart', 'registry.sandbox.test/cart:1.0', 2);
    const handle = await startRollout({ deployment: 'cart', image: 'registry.sandbox.test/cart:1.1', steps: [{ setWeight: 50 }, { pause: {} }] });
    await atGate(handle, 1);
    await assert.rejects(handle.executeUpdate(promoteUpdate, { args: [{ by: 'mallory' } as never] }), refused(/statement: expected the signed statement text/));
    await assert.rejects(handle.executeUpdate(abortUpdate, { args: [{ by: 'mallory', reason: 'nope' } as never] }), refused(/statement: expected the signed statement text/));
    const s = await handle.query(rolloutStatusQuery);
    assert.equal(s.phase, 'paused');
    assert.equal(s.approvals[0].outcome, 'waiting');
    assert.equal(await exists('cart-canary'), true);
    await actOnRollout(c, handle, 'promote-full', operator(stack));
    const r = (await handle.result()) as RolloutResult;
    assert.equal(r.outcome, 'promoted');
    assert.equal(r.status.promotedFull?.by, 'sandbox-operator');
  });

  test('a gate timeout with policy "roll back" restores the old image', async () => {
    await createDeployment('search', 'registry.sandbox.test/search:1.0', 2);
    const handle = await startRollout({ deployment: 'search', image: 'registry.sandbox.test/search:1.1', steps: [{ setWeight: 50 }, { pause: {} }], gateTimeoutSeconds: 3, onGateTimeout: 'rollback' });
    const r = (await handle.result()) as RolloutResult;
    assert.equal(r.outcome, 'rolled back');
    assert.match(r.reason ?? '', /nobody approved step 2 within 3 s/);
    assert.equal(await image('search'), 'registry.sandbox.test/search:1.0');
    assert.equal(await exists('search-canary'), false);
    assert.equal((await apps.readNamespacedDeployment({ name: 'search', namespace: 'default' })).spec?.replicas, 2);
  });

  test('a bad image fails the health wait and is rolled back automatically, the result says why', async () => {
    await createDeployment('pay', 'registry.sandbox.test/pay:1.0', 2);
    const handle = await startRollout({ deployment: 'pay', image: 'registry.sandbox.test/pay:2.0-bad', steps: [{ setWeight: 50 }, { pause: {} }], healthTimeoutSeconds: 120 });
    const r = (await handle.result()) as RolloutResult;
    assert.equal(r.outcome, 'rolled back');
    assert.match(r.reason ?? '', /keep restarting|progress deadline/);
    assert.equal(await image('pay'), 'registry.sandbox.test/pay:1.0');
    assert.equal(await exists('pay-canary'), false);
    const pods = await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=pay' });
    assert.ok(pods.items.every((p) => p.spec?.containers[0].image === 'registry.sandbox.test/pay:1.0' || p.metadata?.deletionTimestamp), 'no pod of the bad release is left');
    const step = r.timeline.steps.find((s) => s.name === 'roll back');
    assert.equal(step?.outcome, 'succeeded');
  });

  test('an error ratio above the threshold during analysis rolls back within two analysis intervals of the breach', async () => {
    await createDeployment('api', 'registry.sandbox.test/api:1.0', 2);
    appState.errorRatio = 0.01;
    await waitFor('Prometheus sees the app', async () => {
      const res = await fetch(`${prometheus.url}/api/v1/query?query=app_error_ratio`);
      const body = (await res.json()) as { data: { result: unknown[] } };
      return body.data.result.length > 0;
    }, 30_000, 250);
    const analysis = {
      intervalSeconds: 2,
      count: 30,
      failureLimit: 0,
      prometheus: [{ name: 'error ratio', address: prometheus.url, query: 'app_error_ratio', successCondition: '< 0.05' }],
      http: [{ name: 'health', url: `${appUrl}/healthz`, expectStatus: 200 }],
      pods: { maxRestarts: 0 },
    };
    const handle = await startRollout({ deployment: 'api', image: 'registry.sandbox.test/api:1.1', steps: [{ setWeight: 50 }, { analysis: {} }], analysis });
    await waitFor('two passing measurements', async () => {
      const s = await handle.query(rolloutStatusQuery);
      return (s.analyses[0]?.measurements.length ?? 0) >= 2;
    }, 90_000, 200);
    // The breach: the application starts failing (Prometheus scrapes it every second, the analysis measures every two).
    const breachAt = Date.now();
    appState.errorRatio = 0.4;
    // The reverted version is healthy again: the error ratio falls as soon as the rollback starts.
    await waitFor('rolling back', async () => ['rolling back', 'done'].includes((await handle.query(rolloutStatusQuery)).phase), 60_000, 100);
    appState.errorRatio = 0.01;
    const r = (await handle.result()) as RolloutResult;
    assert.equal(r.outcome, 'rolled back');
    assert.match(r.reason ?? '', /error ratio failed 1 time/);
    const run = r.status.analyses[0];
    const after = run.measurements.filter((m) => Date.parse(m.at) >= breachAt);
    assert.ok(after.length >= 1 && after.length <= 2, `the breach was acted on within two measurements, took ${after.length}`);
    const last = after[after.length - 1].results.find((x) => x.name === 'error ratio');
    assert.equal(last?.phase, 'failed');
    assert.equal(await image('api'), 'registry.sandbox.test/api:1.0');
    assert.equal(await exists('api-canary'), false);
    // The rollback is verified with the same analysis, which now passes.
    const verify = r.timeline.steps.find((s) => s.name === 'verify the rollback');
    assert.equal(verify?.evidence.passed, true);
  });

  test('abort in the middle of a step rolls back and ends the run as aborted, not failed', async () => {
    await createDeployment('mail', 'registry.sandbox.test/mail:1.0', 2);
    const handle = await startRollout({ deployment: 'mail', image: 'registry.sandbox.test/mail:1.1', steps: [{ setWeight: 50 }, { pause: { durationSeconds: 600 } }, { setWeight: 100 }] });
    await waitFor('baking', async () => (await handle.query(rolloutStatusQuery)).phase === 'paused', 90_000, 200);
    await actOnRollout(c, handle, 'abort', operator(stack, 'sandbox-reviewer'), 'customer reports');
    const r = (await handle.result()) as RolloutResult;
    assert.equal(r.outcome, 'aborted');
    assert.match(r.reason!, /^aborted by sandbox-reviewer \(key SHA256:\S+\): customer reports$/);
    assert.equal((await handle.describe()).status.name, 'COMPLETED');
    assert.equal(await image('mail'), 'registry.sandbox.test/mail:1.0');
    assert.equal(await exists('mail-canary'), false);
    const tl = await handle.query(timelineQuery);
    assert.equal(tl.steps.find((s) => s.name.startsWith('step 2'))?.outcome, 'cancelled');
    assert.ok(!tl.steps.some((s) => s.name.startsWith('step 3')), 'no step after the abort ran');
  });

  test('bad rollout input is refused, naming the field, before anything changes', async () => {
    const { handle } = await startRunbook(c, 'rollout', [{ environment: 'sandbox', deployment: 'Bad_Name', image: 'no-tag', steps: [{ setWeight: 50 }, { setWeight: 20 }] }], {
      workflowId: `rollout-test-bad-${Date.now()}`,
    });
    await assert.rejects(handle.result(), (err: Error & { cause?: Error }) => {
      const m = err.cause?.message ?? '';
      assert.match(m, /deployment: expected a Deployment name/);
      assert.match(m, /image: expected an image reference with a tag or digest/);
      assert.match(m, /steps\[1\]\.setWeight: weights only grow/);
      return true;
    });
  });
});
