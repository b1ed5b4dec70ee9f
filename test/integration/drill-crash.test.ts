import assert from 'node:assert/strict';
import { signedDecision } from '../../src/cli/sign';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Resolver } from 'node:dns/promises';
import { after, before, describe, test } from 'node:test';
import { Client as PgClient } from 'pg';
import { ConnectedClient, connectClient } from '../../src/cli/client';
import { loadConfig } from '../../src/config/load';
import { freePort } from '../../src/system/process';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import type { DrDrillResult } from '../../src/workflows/drDrill';
import { decideUpdate, gatesQuery } from '../../src/workflows/lib/gate';
import { timelineQuery } from '../../src/workflows/lib/timeline';
import { httpStatus, startCli, waitFor, operator, superuserPassword } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-drill-crash-'));
chmodSync(dir, 0o755);
let stack: StackState;
let c: ConnectedClient;
let password: string;
const workers: ReturnType<typeof startCli>[] = [];

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack') });
  const loaded = loadConfig(stack.configFile);
  password = superuserPassword(stack);
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
});

after(async () => {
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
  await c?.close();
  await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
});

async function startWorker(): Promise<ReturnType<typeof startCli>> {
  const port = await freePort();
  const w = startCli(['--config', stack.configFile, 'worker', '--queues', 'critical', '--http-port', String(port)]);
  workers.push(w);
  await waitFor('worker ready', async () => (await httpStatus(`http://127.0.0.1:${port}/ready`)).status === 200, 180_000, 200);
  return w;
}

async function soaSerial(): Promise<number> {
  const r = new Resolver({ timeout: 1_000, tries: 1 });
  r.setServers([`${stack.dns!.host}:${stack.dns!.port}`]);
  return (await r.resolveSoa('sandbox.test')).serial;
}

/** The WAL timeline a node is on: each promotion starts a new one. */
async function walTimeline(host: string): Promise<number> {
  const pg = new PgClient({ host, port: stack.postgres!.port, user: 'postgres', password, database: 'app' });
  await pg.connect();
  try {
    const r = await pg.query<{ f: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS f');
    return parseInt(r.rows[0].f.slice(0, 8), 16);
  } finally {
    await pg.end();
  }
}

describe('a drill whose worker is killed', () => {
  test('SIGKILL mid-drill: a new worker finishes it, and the promotion and the DNS change happened exactly once', async () => {
    const first = await startWorker();
    const timelineBefore = await walTimeline('127.0.0.2');
    const serialBefore = await soaSerial();
    const handle = await c.client.workflow.start('drDrill', {
      taskQueue: 'critical-queue',
      workflowId: `drill-crash-${Date.now()}`,
      args: [{ environment: 'sandbox', database: 'main', mode: 'failover', failback: true }],
    });
    await waitFor('the gate', async () => (await handle.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 30_000, 100);
    await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', operator(stack))] });
    // Kill the worker as soon as the promotion has started: the middle of the drill.
    const killedAt = await waitFor(
      'the promote step',
      async () => {
        const t = await handle.query(timelineQuery);
        return t.steps.find((s) => s.name === 'new primary: detected and writable')?.name;
      },
      60_000,
      20,
    );
    first.child.kill('SIGKILL');
    const exit = await first.exited;
    assert.equal(exit.signal, 'SIGKILL');
    assert.equal(killedAt, 'new primary: detected and writable');

    await startWorker();
    const result: DrDrillResult = await handle.result();
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.equal(await walTimeline('127.0.0.3'), timelineBefore + 1, 'exactly one promotion: one new WAL timeline');
    assert.equal(await soaSerial(), serialBefore + 1, 'exactly one DNS update');
    const steps = result.timeline.steps.map((s) => `${s.name}:${s.outcome}`);
    assert.equal(steps.filter((s) => s.startsWith('new primary: detected and writable')).length, 1);
    assert.equal(steps.filter((s) => s.startsWith('switch the service endpoint')).length, 1);
    assert.ok(result.timeline.steps.every((s) => s.outcome === 'succeeded' || s.outcome === 'skipped'), steps.join(', '));
  });
});
