import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { parse, stringify } from 'yaml';
import { ConnectedClient, connectClient } from '../../src/cli/client';
import { startPromotion } from '../../src/cli/promotion';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { createSampleDeployment, KubernetesInfo, startKubernetes, stopKubernetes } from '../../src/sandbox/kubernetes';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import type { PromotionResult } from '../../src/workflows/promotion';
import { promotionStatusQuery } from '../../src/workflows/promotion';
import type { RollbackResult } from '../../src/workflows/rollback';
import type { RolloutResult } from '../../src/workflows/rollout';
import { freePort } from '../../src/system/process';
import { RunbookWorker } from '../../src/worker';
import { httpStatus, operator, runCli, startCli, waitFor } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-promotion-test-'));
chmodSync(dir, 0o755);
let stack: StackState;
let prodCluster: KubernetesInfo;
let loaded: LoadedConfig;
let configFile: string;
let prodWorker: RunbookWorker;
/** Staging's workers: `runbook worker` processes, so one can be killed with SIGKILL. */
const stagingWorkers: ReturnType<typeof startCli>[] = [];
let c: ConnectedClient;
const apps: Record<'staging' | 'prod', k8s.AppsV1Api> = {} as never;

function appsFor(kubeconfig: string): k8s.AppsV1Api {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfig);
  return kc.makeApiClient(k8s.AppsV1Api);
}

before(async () => {
  // Two environments, each with its own Kubernetes control plane, sharing one Temporal namespace with task queues of their own.
  const [s, k] = await Promise.all([startStack({ dir: join(dir, 'stack'), components: ['temporal', 'kubernetes'] }), startKubernetes({ dir: join(dir, 'prod') })]);
  stack = s;
  prodCluster = k;
  const doc = parse(readFileSync(stack.configFile, 'utf8'));
  const staging = doc.environments.sandbox;
  staging.policies = {};
  const prod = JSON.parse(JSON.stringify(staging));
  prod.temporal.taskQueues = { critical: 'prod-critical', standard: 'prod-standard', batch: 'prod-batch' };
  prod.kubernetes.kubeconfig = prodCluster.kubeconfig;
  doc.environments = { staging, prod };
  doc.defaultEnvironment = 'staging';
  doc.schedules = [];
  doc.promotions = {
    web: {
      runbook: 'rollout',
      deployment: 'web',
      stages: [
        { environment: 'staging', bake: '2s' },
        { environment: 'prod', bake: '10m' },
      ],
      onAbort: 'rollback-promoted',
    },
  };
  configFile = join(stack.dir, 'promotion.yaml');
  writeFileSync(configFile, stringify(doc));
  loaded = loadConfig(configFile);
  prodWorker = new RunbookWorker({ loaded, environment: 'prod', httpPort: 0, logger: createLogger('warn') });
  await prodWorker.start();
  await Promise.all([prodWorker.waitUntilReady(), startStagingWorker()]);
  c = await connectClient(loaded, 'staging', loaded.config.environments.staging);
  apps.staging = appsFor(stack.kubernetes!.kubeconfig);
  apps.prod = appsFor(prodCluster.kubeconfig);
});

after(async () => {
  await c?.close();
  for (const w of stagingWorkers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
  await Promise.all(stagingWorkers.map((w) => w.exited));
  await prodWorker?.shutdown();
  if (prodCluster) await stopKubernetes(prodCluster);
  if (stack) await stopStack(stack);
  if (!process.env.RUNBOOK_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
});

async function startStagingWorker(): Promise<void> {
  const port = await freePort();
  const w = startCli(['--config', configFile, '--env', 'staging', 'worker', '--http-port', String(port)]);
  stagingWorkers.push(w);
  await waitFor('staging worker ready', async () => (await httpStatus(`http://127.0.0.1:${port}/ready`)).status === 200, 180_000, 250);
}

const image = async (env: 'staging' | 'prod', name: string) => (await apps[env].readNamespacedDeployment({ name, namespace: 'default' })).spec?.template.spec?.containers[0].image;

describe('promotion across environments', () => {
  test('staging then prod, each on its own control plane; an abort during prod\'s bake rolls back both, newest first', async () => {
    await Promise.all([
      createSampleDeployment(apps.staging, { name: 'web', image: 'registry.sandbox.test/web:1.0', replicas: 2 }),
      createSampleDeployment(apps.prod, { name: 'web', image: 'registry.sandbox.test/web:1.0', replicas: 3 }),
    ]);
    const { handle, workflowId } = await startPromotion(c, { environment: 'staging', promotion: 'web', image: 'registry.sandbox.test/web:1.1', steps: [{ setWeight: 50 }, { pause: { durationSeconds: 1 } }] }, operator(stack));
    assert.equal(workflowId, 'promotion-web');
    await waitFor("prod's bake", async () => {
      const s = await handle.query(promotionStatusQuery);
      return s.stages[1]?.state === 'baking' && s;
    }, 180_000, 250);
    // Both clusters run the new version now, each rolled out by a rollout of its own environment.
    assert.equal(await image('staging', 'web'), 'registry.sandbox.test/web:1.1');
    assert.equal(await image('prod', 'web'), 'registry.sandbox.test/web:1.1');
    const prodRollout = (await c.client.workflow.getHandle('rollout-prod-web').result()) as RolloutResult;
    assert.equal(prodRollout.outcome, 'promoted');
    assert.equal((await c.client.workflow.getHandle('rollout-prod-web').describe()).taskQueue, 'prod-critical');

    const status = await runCli(['--config', configFile, 'promotion', 'status', 'web']);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /staging\s+promoted \(promoted\)\s+rollout-staging-web/);
    assert.match(status.stdout, />\s+prod\s+baking \(promoted\)\s+rollout-prod-web\s+until /);
    // The worker that runs the promotion itself dies during prod's bake; a new one takes over from the history.
    for (const w of stagingWorkers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await Promise.all(stagingWorkers.map((w) => w.exited));
    await startStagingWorker();
    await waitFor('the promotion still baking prod', async () => (await handle.query(promotionStatusQuery)).stages[1]?.state === 'baking', 60_000, 250);
    const abort = await runCli(['--config', configFile, 'promotion', 'abort', 'web', '--reason', 'errors in prod'], { env: { RUNBOOK_SIGNING_KEY: operator(stack, 'sandbox-reviewer').keyFile } });
    assert.equal(abort.code, 0, abort.stderr);

    const r = (await handle.result()) as PromotionResult;
    assert.equal(r.outcome, 'aborted');
    assert.match(r.reason ?? '', /^aborted by sandbox-reviewer \(key SHA256:\S+\): errors in prod$/);
    assert.deepEqual(r.stages.map((s) => [s.environment, s.state]), [['staging', 'rolled back'], ['prod', 'rolled back']]);
    assert.equal(await image('staging', 'web'), 'registry.sandbox.test/web:1.0');
    assert.equal(await image('prod', 'web'), 'registry.sandbox.test/web:1.0');
    // Each rollback ran in its own environment, prod first.
    const rollbacks = r.timeline.steps.filter((s) => s.name.startsWith('roll back '));
    assert.deepEqual(rollbacks.map((s) => [s.name, s.outcome]), [['roll back prod', 'succeeded'], ['roll back staging', 'succeeded']]);
    for (const [env, queue] of [['prod', 'prod-critical'], ['staging', 'critical-queue']] as const) {
      const rb = c.client.workflow.getHandle(r.stages.find((s) => s.environment === env)!.rollback!.workflowId);
      assert.equal((await rb.describe()).taskQueue, queue);
      assert.equal(((await rb.result()) as RollbackResult).to.images[0].image, 'registry.sandbox.test/web:1.0');
    }
    assert.equal((await apps.prod.readNamespacedDeployment({ name: 'web', namespace: 'default' })).status?.availableReplicas, 3);
    // Killed mid-bake, nothing ran twice: one rollout per environment, one rollback each.
    const started: string[] = [];
    for (const e of (await handle.fetchHistory()).events ?? []) {
      const a = e.startChildWorkflowExecutionInitiatedEventAttributes;
      if (a) started.push(`${a.workflowType?.name} ${a.workflowId?.replace(/^promotion-[0-9a-f]+-/, '')}`);
    }
    assert.deepEqual(started, ['rollout rollout-staging-web', 'rollout rollout-prod-web', 'rollback rollback-prod', 'rollback rollback-staging']);
  });

  test('a promotion whose environments do not share a Temporal namespace, or share task queues, is refused by the config check', async () => {
    const doc = parse(readFileSync(configFile, 'utf8'));
    doc.environments.prod.temporal.namespace = 'production';
    doc.environments.staging.temporal.taskQueues = { critical: 'prod-critical' };
    const bad = join(stack.dir, 'bad-promotion.yaml');
    writeFileSync(bad, stringify(doc));
    const check = await runCli(['config', 'check', '--no-secrets', bad]);
    assert.equal(check.code, 2);
    assert.match(check.stderr, /promotions\.web\.stages\.1\.environment: prod uses Temporal \S+\/production, staging \S+\/default: a promotion runs its environments' runs as child workflows, so they share one Temporal namespace/);
    assert.match(check.stderr, /prod and staging share the task queue prod-critical/);
    const unknown = await runCli(['--config', configFile, 'promotion', 'status', 'nothing']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /NAME: \S+ has no promotions\.nothing; configured: web/);
  });
});
