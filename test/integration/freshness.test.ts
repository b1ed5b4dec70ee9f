import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse, stringify } from 'yaml';
import { lazyClient } from '../../src/activities';
import { ConnectedClient, connectClient, startRunbook } from '../../src/cli/client';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { FreshnessCollector } from '../../src/observability/freshness';
import { createLogger } from '../../src/observability/logger';
import { RunbookMetrics } from '../../src/observability/metrics';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { ImplementedRunbook, RUNBOOK_DEFAULT_QUEUE } from '../../src/workflows/catalog';
import { gatesQuery } from '../../src/workflows/lib/gate';
import { RunbookWorker } from '../../src/worker';
import { runCli, waitFor } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-freshness-test-'));
chmodSync(dir, 0o755);
let stack: StackState;
let loaded: LoadedConfig;
let worker: RunbookWorker;
let c: ConnectedClient;
let configFile: string;
const clients: ReturnType<typeof lazyClient>[] = [];

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack') });
  // The sandbox config plus a second database, billing, that no runbook has ever touched.
  const config = parse(readFileSync(stack.configFile, 'utf8'));
  config.environments.sandbox.databases.billing = { ...config.environments.sandbox.databases.main };
  delete config.environments.sandbox.databases.billing.topology;
  delete config.environments.sandbox.databases.billing.dnsRecord;
  configFile = join(dir, 'stack', 'runbook-two-databases.yaml');
  writeFileSync(configFile, stringify(config));
  loaded = loadConfig(configFile);
  worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  await worker.start();
  await worker.waitUntilReady();
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
});

after(async () => {
  for (const client of clients) await client.close();
  await c?.close();
  await worker?.shutdown();
  await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
});

/** A collector as a freshly started worker process has it: nothing in memory but the config. */
function newCollector(metrics = new RunbookMetrics()) {
  const client = lazyClient(loaded, 'sandbox');
  clients.push(client);
  return {
    metrics,
    collector: new FreshnessCollector({
      environment: 'sandbox',
      env: loaded.config.environments.sandbox,
      client,
      metrics,
      runbooks: Object.keys(RUNBOOK_DEFAULT_QUEUE) as ImplementedRunbook[],
    }),
  };
}

const at = (list: { runbook: string; target: string; atMs: number }[], runbook: string, target: string) => list.find((r) => r.runbook === runbook && r.target === target)?.atMs;

describe('freshness read from Temporal, per target', () => {
  test('backups, restore tests, schedules and an open gate are reported per database; a database never touched is reported as never; a new process reads the same', async () => {
    const startedAt = Date.now();
    const applied = await runCli(['--config', configFile, 'schedule', 'apply']);
    assert.equal(applied.code, 0, applied.stderr);

    for (const runbook of ['backupDatabase', 'verifyBackup'] as const) {
      const { handle } = await startRunbook(c, runbook, [{ environment: 'sandbox', database: 'main' }], {});
      await handle.result();
    }
    const { handle: drill } = await startRunbook(c, 'drDrill', [{ environment: 'sandbox', database: 'main', mode: 'failover', approvalTimeoutSeconds: 3_600 }], {});
    await waitFor('the drill to wait at its gate', async () => (await drill.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 60_000, 250);

    const first = newCollector();
    const s = await first.collector.collect();
    const backupAt = at(s.lastSuccess, 'backupDatabase', 'main');
    assert.ok(backupAt && backupAt >= startedAt - 1_000, `the backup of main is reported (${backupAt})`);
    assert.ok((at(s.lastSuccess, 'verifyBackup', 'main') ?? 0) >= backupAt!, 'the restore test of main, after the backup');
    assert.equal(at(s.lastSuccess, 'backupDatabase', 'billing'), 0, 'billing was never backed up: 0, which every "older than" alert treats as overdue');
    assert.equal(at(s.lastSuccess, 'verifyBackup', 'billing'), 0);
    assert.equal(at(s.lastFailure, 'verifyBackup', 'main'), 0, 'no restore test of main failed');
    assert.equal(at(s.lastSuccess, 'drDrill', 'main'), 0, 'the drill has not finished');

    const gate = s.openGates.find((g) => g.workflowId === drill.workflowId);
    assert.ok(gate, `the drill's open gate is reported: ${JSON.stringify(s.openGates)}`);
    assert.equal(gate.runbook, 'drDrill');
    assert.equal(gate.target, 'main');
    assert.ok(gate.openedAtMs >= startedAt - 1_000 && gate.openedAtMs <= Date.now());

    const scheduled = loaded.config.schedules.filter((x) => x.environment === 'sandbox');
    assert.ok(scheduled.length > 0, 'the sandbox config has schedules');
    for (const sch of scheduled) {
      const due = s.nextDue.find((d) => d.schedule === sch.id);
      assert.ok(due, `schedule ${sch.id} has a next run`);
      assert.equal(due.runbook, sch.runbook);
      assert.equal(due.target, String(sch.input.database ?? ''));
      assert.ok(due.atMs > Date.now() - 60_000);
    }

    const text = await first.metrics.registry.metrics();
    assert.match(text, /^runbook_last_success_timestamp_seconds\{runbook="backupDatabase",environment="sandbox",target="billing"\} 0$/m);
    assert.match(text, new RegExp(`^runbook_gate_open_since_timestamp_seconds\\{runbook="drDrill",environment="sandbox",target="main",workflow_id="${drill.workflowId}"\\} [\\d.]+$`, 'm'));
    assert.match(text, /^runbook_restore_test_duration_seconds\{environment="sandbox",database="main"\} [\d.]+$/m);
    const bytes = Number(/^runbook_restore_test_restored_bytes\{environment="sandbox",database="main"\} (\d+)$/m.exec(text)?.[1]);
    assert.ok(bytes > 0, 'restored bytes of the newest restore test');

    // The drill is ended from outside: the gate disappears and the drill counts as failed for main.
    await drill.terminate('freshness test: ended at the gate');
    const second = newCollector();
    const t = await second.collector.collect();
    assert.equal(t.openGates.filter((g) => g.workflowId === drill.workflowId).length, 0, 'a closed gate is no longer reported');
    assert.ok((at(t.lastFailure, 'drDrill', 'main') ?? 0) >= gate.openedAtMs, 'the terminated drill is the newest drill failure of main');
    // A process that never saw any of these runs reports the same times.
    assert.equal(at(t.lastSuccess, 'backupDatabase', 'main'), backupAt);
    assert.equal(at(t.lastSuccess, 'verifyBackup', 'main'), at(s.lastSuccess, 'verifyBackup', 'main'));
    assert.doesNotMatch(await second.metrics.registry.metrics(), /runbook_gate_open_since_timestamp_seconds\{/);
  });
});
