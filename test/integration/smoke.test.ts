import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { ConnectedClient, connectClient } from '../../src/cli/client';
import { runSmokeTest } from '../../src/cli/smoke';
import { loadConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { startTemporalDevServer, stopTemporalDevServer, TemporalDevServerInfo } from '../../src/sandbox/temporal';
import { timelineQuery } from '../../src/workflows/lib/timeline';
import { RunbookWorker } from '../../src/worker';
import { waitFor } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-smoke-test-'));
let temporal: TemporalDevServerInfo;
let worker: RunbookWorker;
let c: ConnectedClient;

before(async () => {
  temporal = await startTemporalDevServer({ dir });
  const file = join(dir, 'runbook.yaml');
  writeFileSync(file, `version: 1\nenvironments:\n  ci:\n    temporal: { address: "${temporal.address}" }\n`);
  const loaded = loadConfig(file);
  worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  await worker.start();
  await worker.waitUntilReady();
  c = await connectClient(loaded, 'ci', loaded.config.environments.ci);
});

after(async () => {
  await c?.close();
  await worker?.shutdown();
  await stopTemporalDevServer(temporal.pid);
  rmSync(dir, { recursive: true, force: true });
});

describe('the smoke-test runbook', () => {
  const badInputs: { input: Record<string, unknown>; field: RegExp }[] = [
    { input: { environment: 'ci', holdSeconds: -1 }, field: /holdSeconds: expected a number of seconds from 0 to 3600, found -1/ },
    { input: { environment: 'ci', holdSeconds: 'forever' }, field: /holdSeconds: .*found "forever"/ },
    { input: { environment: 'ci; DROP TABLE x' }, field: /environment: expected an environment name/ },
    { input: {}, field: /environment: expected an environment name/ },
  ];
  for (const { input, field } of badInputs) {
    test(`input ${JSON.stringify(input)} fails at once as InvalidInput naming the field`, async () => {
      const handle = await c.client.workflow.start('smokeTest', { taskQueue: 'standard-queue', workflowId: `bad-${Date.now()}-${Math.random()}`, args: [input] });
      const err = await handle.result().then(
        () => assert.fail('a bad input was accepted'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof WorkflowFailedError);
      assert.ok(err.cause instanceof ApplicationFailure);
      assert.equal(err.cause.type, 'InvalidInput');
      assert.equal(err.cause.nonRetryable, true);
      assert.match(err.cause.message, field);
    });
  }

  test('the worker keeps serving after bad input', async () => {
    const outcome = await runSmokeTest(c, { queue: 'standard' });
    assert.equal(outcome.ok, true, outcome.error);
    assert.ok(outcome.result!.roundTripMs >= 0);
    assert.equal(outcome.result!.timeline.steps[0].outcome, 'succeeded');
  });

  test('a run cancelled while its activity works ends with a cancelled step and a cancelled run on the timeline', async () => {
    const handle = await c.client.workflow.start('smokeTest', { taskQueue: 'batch-queue', workflowId: `cancel-${Date.now()}`, args: [{ environment: 'ci', holdSeconds: 60 }] });
    await waitFor('the step to be running', async () => (await handle.query(timelineQuery)).steps[0]?.outcome === 'running');
    await handle.cancel();
    await assert.rejects(handle.result(), WorkflowFailedError);
    const timeline = await handle.query(timelineQuery);
    assert.equal(timeline.outcome, 'cancelled');
    assert.equal(timeline.steps[0].outcome, 'cancelled');
    assert.ok(timeline.endedAt);
    const metrics = await worker.metrics.registry.metrics();
    assert.match(metrics, /runbook_runs_completed_total\{runbook="smokeTest",environment="ci",outcome="cancelled"\} 1/);
  });
});
