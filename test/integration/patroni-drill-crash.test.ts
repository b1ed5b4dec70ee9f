import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConnectedClient, connectClient } from '../../src/cli/client';
import { loadConfig } from '../../src/config/load';
import { freePort } from '../../src/system/process';
import { patroniCluster, waitForPatroniHealthy } from '../../src/sandbox/patroni';
import { PATRONI_DATABASE_KEY, StackState, startStack, stopStack } from '../../src/sandbox/stack';
import type { DrDrillResult } from '../../src/workflows/drDrill';
import { decideUpdate, gatesQuery } from '../../src/workflows/lib/gate';
import { signedDecision } from '../../src/cli/sign';
import { timelineQuery } from '../../src/workflows/lib/timeline';
import { httpStatus, startCli, waitFor, operator } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-patroni-crash-'));
chmodSync(dir, 0o755);
let stack: StackState;
let c: ConnectedClient;
const workers: ReturnType<typeof startCli>[] = [];

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 's3', 'patroni'] });
  const loaded = loadConfig(stack.configFile);
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
});

after(async () => {
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
  await c?.close();
  if (stack) await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
});

async function startWorker(): Promise<ReturnType<typeof startCli>> {
  const port = await freePort();
  const w = startCli(['--config', stack.configFile, 'worker', '--queues', 'critical', '--http-port', String(port)]);
  workers.push(w);
  await waitFor('worker ready', async () => (await httpStatus(`http://127.0.0.1:${port}/ready`)).status === 200, 90_000, 200);
  return w;
}

async function kill(w: ReturnType<typeof startCli>): Promise<void> {
  w.child.kill('SIGKILL');
  assert.equal((await w.exited).signal, 'SIGKILL');
}

const controlLines = () => readFileSync(stack.patroni!.controlLog, 'utf8').trim().split('\n').filter(Boolean);

describe('a Patroni drill whose worker is killed', () => {
  test('SIGKILL right after the fault and again mid-failback: new workers finish the drill, the leader was killed once and started once, and the RTO clock did not move', async () => {
    const first = await startWorker();
    const before = (await patroniCluster(stack.patroni!)).members.find((m) => m.role === 'leader')!;
    const mark = controlLines().length;
    const handle = await c.client.workflow.start('drDrill', {
      taskQueue: 'critical-queue',
      workflowId: `patroni-crash-${Date.now()}`,
      args: [{ environment: 'sandbox', database: PATRONI_DATABASE_KEY, mode: 'failover', writeLoad: { rate: 20, warmupSeconds: 2 } }],
    });
    await waitFor('the gate', async () => (await handle.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 60_000, 200);
    await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', operator(stack))] });

    // The moment the leader is killed, its worker dies too: the fault activity may not have reported back.
    await waitFor('the fault', async () => controlLines().slice(mark).some((l) => l.endsWith(`kill ${before.name}`)), 120_000, 20);
    const faultSeenAt = new Date().toISOString();
    await kill(first);

    const second = await startWorker();
    await waitFor(
      'the failback step',
      async () => (await handle.query(timelineQuery)).steps.some((s) => s.name === 'failback: rejoin the old primary as a replica' && s.outcome === 'running'),
      300_000,
      100,
    );
    await kill(second);
    await startWorker();

    const result: DrDrillResult = await handle.result();
    assert.equal(result.passed, true, result.reasons.join('; '));
    // One fault and one recovery of the old leader, whatever was retried.
    assert.deepEqual(controlLines().slice(mark).map((l) => l.split(' ').slice(1).join(' ')), [`kill ${before.name}`, `start ${before.name}`]);
    const faults = result.timeline.steps.filter((s) => s.name.startsWith('fault'));
    assert.equal(faults.length, 1);
    // The clock started once, before the fault, in the workflow's own state.
    assert.equal(result.rto!.clockStartedAt, faults[0].evidence.clockStartedAt);
    assert.ok(result.rto!.clockStartedAt! < faultSeenAt, `${result.rto!.clockStartedAt} before ${faultSeenAt}`);
    // The writer's log outlived its worker: a new attempt continued it.
    assert.ok(result.rpo!.writes!.writerAttempts >= 2, `writer attempts: ${result.rpo!.writes!.writerAttempts}`);
    await waitForPatroniHealthy(stack.patroni!, 120_000);
    const after = (await patroniCluster(stack.patroni!)).members;
    assert.equal(after.find((m) => m.role === 'leader')!.timeline, (before.timeline ?? 0) + 1, 'one promotion: one new timeline');
    assert.equal(after.find((m) => m.name === before.name)!.role, 'replica');
  });
});
