import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { parse, stringify } from 'yaml';
import { connectClient, ConnectedClient } from '../../src/cli/client';
import { loadConfig } from '../../src/config/load';
import { createSampleDeployment } from '../../src/sandbox/kubernetes';
import { freePort } from '../../src/system/process';
import type { StackState } from '../../src/sandbox/stack';
import { gatesQuery } from '../../src/workflows/lib/gate';
import { timelineQuery } from '../../src/workflows/lib/timeline';
import { rolloutStatusQuery } from '../../src/workflows/rollout';
import { HistoryWatch } from '../history-watch';
import { httpStatus, runCli, startCli, waitFor } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-rollout-cli-'));
chmodSync(dir, 0o755);
const stackDir = join(dir, 'stack');
let stack: StackState;
let configFile: string;
let apps: k8s.AppsV1Api;
let c: ConnectedClient;
const workers: ReturnType<typeof startCli>[] = [];

before(async () => {
  const up = await runCli(['--json', 'stack', 'up', '--dir', stackDir, '--only', 'temporal', '--with-kubernetes', '--headless'], { timeoutMs: 180_000 });
  assert.equal(up.code, 0, up.stderr);
  stack = JSON.parse(up.stdout).stack;
  configFile = stack.configFile;
  const doc = parse(readFileSync(configFile, 'utf8'));
  doc.environments.sandbox.approvers = { rollout: ['sandbox-reviewer'] };
  doc.environments.sandbox.policies = {};
  writeFileSync(configFile, stringify(doc));
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(stack.kubernetes!.kubeconfig);
  apps = kc.makeApiClient(k8s.AppsV1Api);
  const loaded = loadConfig(configFile);
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
});

after(async () => {
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
  await c?.close();
  await runCli(['stack', 'down', '--dir', stackDir]);
  rmSync(dir, { recursive: true, force: true });
});

async function startWorker(): Promise<ReturnType<typeof startCli>> {
  const port = await freePort();
  const w = startCli(['--config', configFile, 'worker', '--queues', 'critical', '--http-port', String(port)]);
  workers.push(w);
  await waitFor('worker ready', async () => (await httpStatus(`http://127.0.0.1:${port}/ready`)).status === 200, 180_000, 200);
  return w;
}

const cli = (...args: string[]) => runCli(['--config', configFile, ...args], { env: { RUNBOOK_SIGNING_KEY: join(stackDir, 'keys', 'sandbox-reviewer') } });

async function status(deployment: string): Promise<{ phase: string; currentStep?: number; weight: number; outcome?: string; approvals: { outcome: string; by?: string }[] }> {
  const r = await cli('--json', 'rollout', 'status', deployment);
  return JSON.parse(r.stdout).status;
}

describe('runbook rollout, as an operator runs it', () => {
  test('bad arguments are refused with the option named, before anything starts', async () => {
    for (const [args, says] of [
      [['rollout', 'start', 'web', '--image', 'registry.sandbox.test/web'], /image: expected an image reference with a tag or digest/],
      [['rollout', 'start', 'web', '--image', 'r/web:2', '--steps', '50,bogus'], /--steps: step 2 is "bogus"/],
      [['rollout', 'start', 'Web_1', '--image', 'r/web:2'], /DEPLOYMENT: expected a Deployment name/],
      [['rollout', 'start', 'web', '--image', 'r/web:2', '--strategy', 'blue-green'], /--strategy: expected canary or rolling/],
      [['rollout', 'start', 'web', '--image', 'r/web:2', '--health-timeout', 'soon'], /--health-timeout: expected a duration/],
      [['rollback', 'web', '--to-revision', '-1'], /--to-revision: expected a revision number/],
      [['rollout', 'status', 'nothing-here'], /no rollout of nothing-here/],
    ] as const) {
      const r = await cli(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, says);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
  });

  test('a gated rollout survives its worker being killed at the gate and in the middle of the promotion, with no step repeated or skipped', async () => {
    await createSampleDeployment(apps, { name: 'web', image: 'registry.sandbox.test/web:1.0', replicas: 4 });
    let worker = await startWorker();

    const start = await cli('rollout', 'start', 'web', '--image', 'registry.sandbox.test/web:1.1', '--steps', '50,pause');
    assert.equal(start.code, 0, start.stderr);
    assert.equal(start.stdout.trim(), 'rollout-sandbox-web');
    const twice = await cli('rollout', 'start', 'web', '--image', 'registry.sandbox.test/web:1.2');
    assert.equal(twice.code, 2);
    assert.match(twice.stderr, /a rollout of web is already running/);

    await waitFor('at the gate', async () => (await status('web')).phase === 'paused', 90_000, 250);
    const refused = await cli('rollout', 'approve', 'web', '--by', 'mallory');
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /approve refused: key SHA256:\S+ is not listed for mallory in the allowed signers/);
    const list = await cli('rollout', 'list');
    assert.match(list.stdout, /^web\s+paused\s+50%\s+waiting for approval by one of sandbox-reviewer/m);

    // Kill 1: while the run waits at the gate.
    worker.child.kill('SIGKILL');
    await worker.exited;
    worker = await startWorker();
    const approve = await cli('rollout', 'approve', 'web', '--comment', 'canary looks fine');
    assert.equal(approve.code, 0, approve.stderr);
    assert.match(approve.stdout, /approved by sandbox-reviewer/);

    // Kill 2: in the middle of the promotion, while the stable Deployment rolls to the new image.
    const run = c.client.workflow.getHandle('rollout-sandbox-web');
    await waitFor('promoting', async () => (await run.query(rolloutStatusQuery)).phase === 'promoting', 60_000, 25);
    worker.child.kill('SIGKILL');
    await worker.exited;
    worker = await startWorker();

    const watch = await runCli(['--config', configFile, 'rollout', 'status', 'web', '--watch'], { timeoutMs: 180_000 });
    assert.equal(watch.code, 0, watch.stdout + watch.stderr);
    assert.match(watch.stdout, /phase done: promoted/);
    assert.match(watch.stdout, /gate 'step 2: continue the rollout at 50%': approved by sandbox-reviewer \(key SHA256:\S+\) \("canary looks fine"\)/);

    const handle = c.client.workflow.getHandle('rollout-sandbox-web');
    const timeline = await handle.query(timelineQuery);
    assert.deepEqual(
      timeline.steps.map((s) => [s.name, s.outcome]),
      [
        ['preflight', 'succeeded'],
        ['step 1: set weight 50%', 'succeeded'],
        ['step 2: pause for approval', 'succeeded'],
        ['promote: the stable Deployment takes the new image', 'succeeded'],
      ],
    );
    // Every change was scheduled once: the new workers continued the run rather than redoing it.
    const scheduled: Record<string, number> = {};
    for (const e of (await handle.fetchHistory()).events ?? []) {
      const type = e.activityTaskScheduledEventAttributes?.activityType?.name;
      if (type) scheduled[type] = (scheduled[type] ?? 0) + 1;
    }
    assert.equal(scheduled.ensureCanary, 1);
    assert.equal(scheduled.setDeploymentImage, 1);
    assert.equal(scheduled.deleteCanary, 1);
    // And the cluster agrees: the new image everywhere, two revisions of web, no canary.
    const web = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
    assert.equal(web.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/web:1.1');
    assert.equal(web.status?.availableReplicas, 4);
    const sets = await apps.listNamespacedReplicaSet({ namespace: 'default', labelSelector: 'app=web' });
    assert.deepEqual(sets.items.map((rs) => rs.metadata?.annotations?.['deployment.kubernetes.io/revision']).sort(), ['1', '2']);
    await assert.rejects(apps.readNamespacedDeployment({ name: 'web-canary', namespace: 'default' }));

    const rb = await cli('rollback', 'web', '--reason', 'test the way back');
    assert.equal(rb.code, 0, rb.stdout + rb.stderr);
    assert.match(rb.stdout, /rollback done: web revision 2 \(registry.sandbox.test\/web:1.1\) -> 3 \(registry.sandbox.test\/web:1.0\)/);
  });

  test('killed at every step boundary and in the middle of a health wait, a rollout still runs each step and each change once', async () => {
    await createSampleDeployment(apps, { name: 'api', image: 'registry.sandbox.test/api:1.0', replicas: 3 });
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    let worker = await startWorker();
    const start = await cli('rollout', 'start', 'api', '--image', 'registry.sandbox.test/api:1.1', '--steps', '34,pause,67');
    assert.equal(start.code, 0, start.stderr);
    const handle = c.client.workflow.getHandle('rollout-sandbox-api');
    const watch = new HistoryWatch(c.client, handle);
    const points: string[] = [];
    const crash = async (point: string, when: () => Promise<unknown>) => {
      await when();
      worker.child.kill('SIGKILL');
      await worker.exited;
      points.push(point);
      worker = await startWorker();
    };
    try {
      await crash('preflight', () => watch.waitScheduled('describeRolloutTarget'));
      await crash('step 1: canary created', () => watch.waitScheduled('ensureCanary'));
      await crash('step 1: in the middle of the health wait', () => watch.waitScheduled('waitForRolloutHealthy'));
      await crash('step 1: stable scaled down', () => watch.waitScheduled('scaleDeployment'));
      await crash('step 2: at the gate', () => waitFor('the gate', async () => (await handle.query(rolloutStatusQuery)).phase === 'paused', 90_000, 50));
      // The restarted worker replays to the pause and opens the gate again (after reading its approvers): approve once it waits.
      await waitFor('the gate to open again after the restart', async () => (await handle.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 90_000, 100);
      const approve = await cli('rollout', 'approve', 'api', '--comment', 'after three crashes');
      assert.equal(approve.code, 0, approve.stderr);
      await crash('step 3: canary scaled up', () => watch.waitScheduledCount('ensureCanary', 2));
      await crash('promote: image set', () => watch.waitScheduled('setDeploymentImage'));
      await crash('promote: canary deleted', () => watch.waitScheduled('deleteCanary'));
      const result = await handle.result();
      assert.equal(result.outcome, 'promoted', result.reason);
      assert.deepEqual(
        result.timeline.steps.map((s: { name: string; outcome: string }) => [s.name, s.outcome]),
        [
          ['preflight', 'succeeded'],
          ['step 1: set weight 34%', 'succeeded'],
          ['step 2: pause for approval', 'succeeded'],
          ['step 3: set weight 67%', 'succeeded'],
          ['promote: the stable Deployment takes the new image', 'succeeded'],
        ],
      );
    } finally {
      await watch.close();
    }
    assert.equal(points.length, 8);
    // Each change was scheduled exactly as often as the steps call for it: nothing redone after a crash.
    assert.deepEqual(
      Object.fromEntries(['ensureCanary', 'scaleDeployment', 'setDeploymentImage', 'deleteCanary'].map((t) => [t, watch.count(t)])),
      { ensureCanary: 2, scaleDeployment: 3, setDeploymentImage: 1, deleteCanary: 1 },
    );
    const api = await apps.readNamespacedDeployment({ name: 'api', namespace: 'default' });
    assert.equal(api.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/api:1.1');
    assert.equal(api.spec?.replicas, 3);
    assert.equal(api.status?.availableReplicas, 3);
    const sets = await apps.listNamespacedReplicaSet({ namespace: 'default', labelSelector: 'app=api' });
    const stableSets = sets.items.filter((rs) => rs.metadata?.ownerReferences?.[0]?.name === 'api');
    assert.deepEqual(stableSets.map((rs) => rs.metadata?.annotations?.['deployment.kubernetes.io/revision']).sort(), ['1', '2'], 'one image patch: two revisions');
    await assert.rejects(apps.readNamespacedDeployment({ name: 'api-canary', namespace: 'default' }));
  });
});
