import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connectClient } from '../../src/cli/client';
import { loadConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { PrometheusInfo, startPrometheus, stopPrometheus } from '../../src/sandbox/prometheus';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { RunbookWorker } from '../../src/worker';
import { REPO, waitFor } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-prometheus-test-'));
chmodSync(dir, 0o755);
let stack: StackState;
let worker: RunbookWorker;
let prometheus: PrometheusInfo;

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 's3'] });
  worker = new RunbookWorker({ loaded: loadConfig(stack.configFile), httpPort: 0, logger: createLogger('error') });
  const { httpUrl } = await worker.start();
  await worker.waitUntilReady();
  prometheus = await startPrometheus({ dir, targets: [httpUrl.replace('http://', '')], ruleFiles: [join(REPO, 'deploy', 'prometheus', 'rules.yml')] });
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

describe('a real Prometheus scraping a worker with the project alert rules', () => {
  test('the restore-test alert fires after a failing restore test, and not before', async () => {
    await waitFor('a first scrape of the worker', async () => {
      const r = (await (await fetch(`${prometheus.url}/api/v1/query?query=runbook_worker_ready`)).json()) as { data: { result: unknown[] } };
      return r.data.result.length > 0;
    }, 30_000, 500);
    assert.deepEqual(await firing('RestoreTestFailing'), []);
    const loaded = loadConfig(stack.configFile);
    const c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
    try {
      // No backup exists yet: the restore test fails.
      await c.client.workflow
        .execute('verifyBackup', { taskQueue: 'batch-queue', workflowId: `prom-verify-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main' }] })
        .then(() => assert.fail('the restore test passed without a backup'), () => undefined);
    } finally {
      await c.close();
    }
    const alerts = await waitFor('RestoreTestFailing to fire', async () => {
      const a = await firing('RestoreTestFailing');
      return a.length > 0 ? a : undefined;
    }, 60_000, 500);
    assert.equal(alerts[0].labels.environment, 'sandbox');
    assert.equal(alerts[0].labels.severity, 'critical');
  });
});
