import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { connectClient } from '../../src/cli/client';
import { runSmokeTest } from '../../src/cli/smoke';
import { loadConfig } from '../../src/config/load';
import { freePort } from '../../src/system/process';
import { startTemporalDevServer, stopTemporalDevServer, TemporalDevServerInfo } from '../../src/sandbox/temporal';
import { timelineQuery } from '../../src/workflows/lib/timeline';
import { httpStatus, jsonLines, metricNames, REPO, startCli, waitFor } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-worker-test-'));
let temporal: TemporalDevServerInfo | undefined;
after(async () => {
  if (temporal) await stopTemporalDevServer(temporal.pid);
  rmSync(dir, { recursive: true, force: true });
});

describe('the worker process', () => {
  test('is not ready until it polls, serves the smoke runbook, exports metrics and context-rich logs, and shuts down gracefully on SIGTERM', async () => {
    const temporalPort = await freePort();
    const httpPort = await freePort();
    const configFile = join(dir, 'runbook.yaml');
    writeFileSync(
      configFile,
      `version: 1\nenvironments:\n  ci:\n    temporal: { address: "127.0.0.1:${temporalPort}" }\nworker:\n  http: { host: 127.0.0.1, port: ${httpPort} }\n`,
    );
    const base = `http://127.0.0.1:${httpPort}`;
    const worker = startCli(['--config', configFile, 'worker'], { env: { RUNBOOK_SHUTDOWN_GRACE_TIME: '3s' } });
    try {
      // Started before the server: alive, but not ready, and retrying.
      await waitFor('/health', async () => (await httpStatus(`${base}/health`)).status === 200);
      assert.equal((await httpStatus(`${base}/ready`)).status, 503);
      await waitFor('a retry log line', async () => worker.output.stdout.includes('cannot reach Temporal yet'));
      assert.equal((await httpStatus(`${base}/ready`)).status, 503);

      temporal = await startTemporalDevServer({ dir, port: temporalPort });
      await waitFor('/ready 200', async () => (await httpStatus(`${base}/ready`)).status === 200, 60_000, 200);
      const ready = JSON.parse((await httpStatus(`${base}/ready`)).body);
      // And the environment's plan queue, served by the same process with no changing activity.
      assert.deepEqual(ready.taskQueues, ['critical-queue', 'standard-queue', 'batch-queue', 'critical-queue-plan']);

      const loaded = loadConfig(configFile);
      const c = await connectClient(loaded, 'ci', loaded.config.environments.ci);
      try {
        // The smoke runbook completes through the worker; its timeline shows the step.
        const smoke = await runSmokeTest(c, { queue: 'critical' });
        assert.equal(smoke.ok, true, smoke.error);
        assert.equal(smoke.taskQueue, 'critical-queue');
        assert.equal(smoke.result!.worker.taskQueue, 'critical-queue');
        assert.equal(smoke.result!.worker.pid, worker.child.pid, "answered by the worker process under test");
        const timeline = await c.client.workflow.getHandle(smoke.workflowId).query(timelineQuery);
        assert.equal(timeline.outcome, 'succeeded');
        assert.equal(timeline.steps.length, 1);
        assert.equal(timeline.steps[0].name, 'execute activity round trip');
        assert.equal(timeline.steps[0].outcome, 'succeeded');
        assert.equal(typeof timeline.steps[0].evidence.roundTripMs, 'number');

        // Runbook counters moved, and the SDK's own worker metrics are on the same endpoint.
        const metrics = (await httpStatus(`${base}/metrics`)).body;
        assert.match(metrics, /^runbook_runs_started_total\{runbook="smokeTest",environment="ci"\} 1$/m);
        assert.match(metrics, /^runbook_runs_completed_total\{runbook="smokeTest",environment="ci",outcome="succeeded"\} 1$/m);
        assert.match(metrics, /^runbook_step_duration_seconds_count\{runbook="smokeTest",step="execute activity round trip",outcome="succeeded"\} 1$/m);
        assert.match(metrics, /^temporal_[a-z_]+(\{[^}]*\})? \d/m, 'an SDK worker metric (temporal_*) is exported');
        assert.match(metrics, /^runbook_worker_ready 1$/m);

        // The SDK metrics the alert rules and the dashboard use exist under those names once a
        // workflow and an activity have failed too (this environment has no backups: section).
        await c.client.workflow
          .start('smokeTest', { taskQueue: 'standard-queue', workflowId: `bad-${Date.now()}`, args: [{ environment: 'ci', holdSeconds: -1 }] })
          .then((h) => h.result())
          .catch(() => undefined);
        await c.client.workflow
          .start('backupDatabase', { taskQueue: 'batch-queue', workflowId: `no-backups-${Date.now()}`, args: [{ environment: 'ci', database: 'main' }] })
          .then((h) => h.result())
          .catch(() => undefined);
        const withFailure = (await httpStatus(`${base}/metrics`)).body;
        const exported = new Set(withFailure.split('\n').filter((l) => /^[a-z]/.test(l)).map((l) => l.replace(/[{ ].*$/, '').replace(/_(bucket|sum|count)$/, '')));
        for (const file of [join('prometheus', 'rules.yml'), join('grafana', 'runbooks.json')]) {
          const used = metricNames(readFileSync(join(REPO, 'deploy', file), 'utf8'), 'temporal_');
          assert.ok(used.length >= 3);
          assert.deepEqual(used.filter((n) => !exported.has(n)), [], `SDK metrics named in deploy/${file}`);
        }

        // Log lines carry the workflow and activity context.
        const lines = jsonLines(worker.output.stdout);
        const activityLine = lines.find((l) => l.msg === 'smoke check picked up' && l.workflowId === smoke.workflowId);
        assert.ok(activityLine, 'the smoke activity logged');
        assert.equal(activityLine.runId, smoke.runId);
        assert.equal(activityLine.activityType, 'smokeCheck');
        assert.equal(activityLine.workflowType, 'smokeTest');
        assert.equal(activityLine.attempt, 1);
        assert.equal(activityLine.taskToken, undefined, 'task tokens are not logged');
        const workflowLine = lines.find((l) => l.msg === 'step finished' && l.workflowId === smoke.workflowId);
        assert.ok(workflowLine, 'the workflow logged');
        assert.equal(workflowLine.runId, smoke.runId);
        assert.equal(workflowLine.workflowType, 'smokeTest');
        assert.equal(workflowLine.runbook, 'smokeTest');
        assert.equal(workflowLine.environment, 'ci');
        assert.equal(workflowLine.step, 'execute activity round trip');
        assert.ok(lines.some((l) => l.msg === 'step started' && l.workflowId === smoke.workflowId && l.step === 'execute activity round trip'));

        // A long activity is running when SIGTERM arrives.
        const held = c.client.workflow.start('smokeTest', {
          taskQueue: 'standard-queue',
          workflowId: `held-${Date.now()}`,
          args: [{ environment: 'ci', holdSeconds: 120 }],
        });
        const heldId = (await held).workflowId;
        await waitFor('the held activity to start', async () =>
          jsonLines(worker.output.stdout).some((l) => l.msg === 'smoke check picked up' && l.workflowId === heldId),
        );
        const signalledAt = Date.now();
        worker.child.kill('SIGTERM');
        await waitFor('/ready 503 during shutdown', async () => (await httpStatus(`${base}/ready`)).status === 503, 3_000, 50);
        const exit = await worker.exited;
        assert.equal(exit.code, 0, `exit code 0 (stderr: ${worker.output.stderr.slice(-500)})`);
        assert.ok(exit.at - signalledAt < 3_000 + 10_000, `exited ${exit.at - signalledAt} ms after SIGTERM, within the 3 s grace period plus the force margin`);
        const cancelled = jsonLines(worker.output.stdout).find((l) => l.msg === 'smoke check cancelled' && l.workflowId === heldId);
        assert.ok(cancelled, 'the heartbeating activity saw the cancellation');
        assert.equal(cancelled.reason, 'worker shutdown');
        assert.ok(jsonLines(worker.output.stdout).some((l) => l.msg === 'worker stopped'));
      } finally {
        await c.close();
      }
    } finally {
      if (worker.child.exitCode === null) worker.child.kill('SIGKILL');
    }
  });
});
