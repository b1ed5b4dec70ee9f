import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connectClient, startRunbook } from '../../src/cli/client';
import { loadConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { PrometheusInfo, startPrometheus, stopPrometheus } from '../../src/sandbox/prometheus';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { freePort } from '../../src/system/process';
import { RunbookWorker } from '../../src/worker';
import { REPO, waitFor } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-prometheus-test-'));
chmodSync(dir, 0o755);
let stack: StackState;
let worker: RunbookWorker;
let prometheus: PrometheusInfo;
let httpPort: number;

/** A worker on the port Prometheus scrapes: a restarted one answers at the same address. */
async function startWorker(): Promise<RunbookWorker> {
  const w = new RunbookWorker({ loaded: loadConfig(stack.configFile), httpPort, logger: createLogger('error') });
  await w.start();
  try {
    await w.waitUntilReady(120_000);
  } catch (err) {
    await w.shutdown();
    throw err;
  }
  return w;
}

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 's3'] });
  httpPort = await freePort();
  worker = await startWorker();
  prometheus = await startPrometheus({ dir, targets: [`127.0.0.1:${httpPort}`], ruleFiles: [join(REPO, 'deploy', 'prometheus', 'rules.yml')] });
});

after(async () => {
  if (prometheus) await stopPrometheus(prometheus.pid);
  await worker?.shutdown();
  await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
});

async function firing(alertname: string): Promise<{ labels: Record<string, string> }[]> {
  const res = (await (await fetch(`${prometheus.url}/api/v1/alerts`)).json()) as { data: { alerts: { labels: Record<string, string>; state: string }[] } };
  return res.data.alerts.filter((a) => a.labels.alertname === alertname && a.state === 'firing');
}

async function promQuery(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const r = (await (await fetch(`${prometheus.url}/api/v1/query?query=${encodeURIComponent(expr)}`)).json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  return r.data.result;
}

/** A freshness series as the worker itself exports it now. */
async function exported(w: RunbookWorker, name: string, labels: string): Promise<number | undefined> {
  const text = await w.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.split(',').every((kv) => l.includes(kv)));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

describe('a real Prometheus scraping a worker with the project alert rules', () => {
  test('before any run, the configured database is reported as never backed up and never restore-tested; nothing fails yet', async () => {
    const never = await waitFor('the freshness series of database main', async () => {
      const r = await promQuery('runbook_last_success_timestamp_seconds{runbook="backupDatabase", target="main"}');
      return r.length > 0 ? r : undefined;
    }, 90_000, 500);
    assert.equal(never[0].value[1], '0', 'a database never backed up is exported as 0, which the RPO alert treats as overdue');
    assert.equal(never[0].metric.environment, 'sandbox');
    // The RPO alert is already pending for it (it fires after its 10 minutes).
    const pending = await waitFor('BackupOlderThanRpo pending for main', async () => {
      const r = await promQuery('ALERTS{alertname="BackupOlderThanRpo", alertstate="pending"}');
      return r.length > 0 ? r : undefined;
    }, 60_000, 500);
    assert.equal(pending[0].metric.target, 'main');
    assert.deepEqual(await firing('RestoreTestFailing'), []);
    assert.deepEqual(await firing('RunbookFreshnessMissing'), []);
  });

  test('the restore-test alert fires for that database after a failing restore test, and keeps firing across a worker restart', async () => {
    const loaded = loadConfig(stack.configFile);
    const c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
    try {
      // No backup exists yet: the restore test fails. Started as the CLI starts it, with its search attributes.
      const { handle } = await startRunbook(c, 'verifyBackup', [{ environment: 'sandbox', database: 'main' }], {});
      await handle.result().then(() => assert.fail('the restore test passed without a backup'), () => undefined);
    } finally {
      await c.close();
    }
    const alerts = await waitFor('RestoreTestFailing to fire', async () => {
      const a = await firing('RestoreTestFailing');
      return a.length > 0 ? a : undefined;
    }, 60_000, 500);
    assert.equal(alerts[0].labels.environment, 'sandbox');
    assert.equal(alerts[0].labels.target, 'main');
    assert.equal(alerts[0].labels.severity, 'critical');
    const failedAt = await exported(worker, 'runbook_last_failure_timestamp_seconds', 'runbook="verifyBackup",environment="sandbox",target="main"');
    assert.ok(failedAt && failedAt > 0);

    // A new worker process knows nothing of the old one's memory: it reads the same value from Temporal.
    await worker.shutdown();
    worker = await startWorker();
    const again = await waitFor('the restarted worker to export the failure', async () => {
      const v = await exported(worker, 'runbook_last_failure_timestamp_seconds', 'runbook="verifyBackup",environment="sandbox",target="main"');
      return v !== undefined && v > 0 ? v : undefined;
    }, 90_000, 250);
    assert.equal(again, failedAt, 'the same failure time, read again from Temporal');
    await waitFor('RestoreTestFailing firing after the restart', async () => {
      const r = await promQuery('runbook_last_failure_timestamp_seconds{runbook="verifyBackup", target="main"}');
      return r.length > 0 && (await firing('RestoreTestFailing')).some((a) => a.labels.target === 'main');
    }, 60_000, 500);
  });
});
