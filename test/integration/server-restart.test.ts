import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConnectedClient, connectClient } from '../../src/cli/client';
import { loadConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { startTemporalDevServer, stopTemporalDevServer } from '../../src/sandbox/temporal';
import type { DrDrillResult } from '../../src/workflows/drDrill';
import { decideUpdate, gatesQuery } from '../../src/workflows/lib/gate';
import { signedDecision } from '../../src/cli/sign';
import { actOnRollout } from '../../src/cli/rollout';
import { timelineQuery } from '../../src/workflows/lib/timeline';
import { RunbookWorker } from '../../src/worker';
import { waitFor, operator } from '../helpers';
import * as k8s from '@kubernetes/client-node';
import { createDemoDeployment } from '../../src/cli/demoRollout';
import { RolloutResult, rolloutStatusQuery } from '../../src/workflows/rollout';

const dir = mkdtempSync(join(tmpdir(), 'runbook-server-restart-'));
chmodSync(dir, 0o755);
let stack: StackState;
let worker: RunbookWorker;

before(async () => {
  // Temporal keeps its state in a SQLite file, as `runbook stack up` does by default.
  stack = await startStack({ dir: join(dir, 'stack'), persist: true, components: ['temporal', 'postgres', 'replica', 's3', 'dns', 'kubernetes'] });
  worker = new RunbookWorker({ loaded: loadConfig(stack.configFile), httpPort: 0, logger: createLogger('error') });
  await worker.start();
  await worker.waitUntilReady();
});

after(async () => {
  await worker?.shutdown().catch(() => undefined);
  await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
});

async function client(): Promise<ConnectedClient> {
  const loaded = loadConfig(stack.configFile);
  return connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
}

describe('the Temporal server restarts in the middle of a drill', () => {
  test('the drill, waiting at its gate when the server stopped, continues after the restart and finishes', async () => {
    let c = await client();
    const handle = await c.client.workflow.start('drDrill', {
      taskQueue: 'critical-queue',
      workflowId: `drill-restart-${Date.now()}`,
      args: [{ environment: 'sandbox', database: 'main', mode: 'failover' }],
    });
    await waitFor('the gate', async () => (await handle.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 30_000, 100);
    await c.close();

    // Stop the server with the drill in flight, start it again on the same port and the same file.
    const [host, port] = stack.temporal!.address.split(':');
    await stopTemporalDevServer(stack.temporal!.pid);
    stack.temporal = await startTemporalDevServer({ dir: join(stack.dir, 'restarted'), host, port: Number(port), dbFile: stack.temporal!.dbFile });
    await worker.waitUntilReady(60_000);

    c = await client();
    try {
      const resumed = c.client.workflow.getHandle(handle.workflowId);
      await waitFor('the gate after the restart', async () => (await resumed.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 60_000, 200);
      await resumed.executeUpdate(decideUpdate, { args: [await signedDecision(c, resumed, 'drDrill', 'approve', operator(stack))] });
      const result: DrDrillResult = await resumed.result();
      assert.equal(result.passed, true, result.reasons.join('; '));
      const timeline = await resumed.query(timelineQuery);
      assert.equal(timeline.outcome, 'succeeded');
      assert.equal(timeline.steps.filter((s) => s.name === 'preflight').length, 1, 'steps done before the restart are not repeated');
    } finally {
      await c.close();
    }
  });
});

/** Stops the dev server and starts it again on the same port with the same SQLite file. */
async function restartServer(): Promise<void> {
  const [host, port] = stack.temporal!.address.split(':');
  await stopTemporalDevServer(stack.temporal!.pid);
  stack.temporal = await startTemporalDevServer({ dir: join(stack.dir, `restarted-${Date.now()}`), host, port: Number(port), dbFile: stack.temporal!.dbFile });
  await worker.waitUntilReady(60_000);
}

describe('the Temporal server restarts in the middle of a gated rollout', () => {
  test('the rollout, waiting at its gate when the server stopped, continues after the restart and is promoted without repeating a step', async () => {
    await createDemoDeployment(stack.kubernetes!.kubeconfig);
    let c = await client();
    const handle = await c.client.workflow.start('rollout', {
      taskQueue: 'critical-queue',
      workflowId: `rollout-restart-${Date.now()}`,
      args: [{ environment: 'sandbox', deployment: 'web', image: 'registry.sandbox.test/web:1.1', steps: [{ setWeight: 34 }, { pause: {} }] }],
    });
    await waitFor('the gate', async () => (await handle.query(rolloutStatusQuery)).approvals.some((g) => g.outcome === 'waiting'), 60_000, 100);
    await c.close();

    await restartServer();

    c = await client();
    try {
      const resumed = c.client.workflow.getHandle(handle.workflowId);
      await waitFor('the gate after the restart', async () => (await resumed.query(rolloutStatusQuery)).approvals.some((g) => g.outcome === 'waiting'), 60_000, 200);
      await actOnRollout(c, resumed, 'promote', operator(stack), 'after the restart');
      const result: RolloutResult = await resumed.result();
      assert.equal(result.outcome, 'promoted', result.reason);
      assert.deepEqual(result.timeline.steps.map((s) => s.name), ['preflight', 'step 1: set weight 34%', 'step 2: pause for approval', 'promote: the stable Deployment takes the new image']);
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(stack.kubernetes!.kubeconfig);
      const apps = kc.makeApiClient(k8s.AppsV1Api);
      const web = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
      assert.equal(web.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/web:1.1');
      assert.equal(web.status?.availableReplicas, 3);
      await assert.rejects(apps.readNamespacedDeployment({ name: 'web-canary', namespace: 'default' }));
    } finally {
      await c.close();
    }
  });
});
