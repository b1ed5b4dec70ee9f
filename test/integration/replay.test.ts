import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Worker } from '@temporalio/worker';
import * as workflows from '../../src/workflows';

const dir = join(__dirname, '..', 'histories');

/**
 * The workflow id a recorded run had, for histories recorded without it. Histories do not carry it, but signed decisions bind it: the
 * statements in the run's updates and signals name it, and the workflow verifies them against its own
 * id on replay too, so the history is replayed under that id.
 */
function recordedWorkflowId(history: { events?: Record<string, any>[] }): string | undefined {
  for (const e of history.events ?? []) {
    const payloads = e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.args?.payloads ?? e.workflowExecutionSignaledEventAttributes?.input?.payloads ?? [];
    for (const p of payloads) {
      try {
        const statement = JSON.parse(JSON.parse(Buffer.from(p.data, 'base64').toString('utf8')).statement);
        if (typeof statement.workflowId === 'string') return statement.workflowId;
      } catch {
        /* not a signed statement */
      }
    }
  }
  return undefined;
}
const files = readdirSync(dir).filter((f) => f.endsWith('.json'));

// Recorded runs of every runbook, happy and failure paths, replayed against the current code: a
// change that would break runs in flight (a reordered activity, a new timer without patched())
// fails here with a determinism error instead of in production.
describe('replay of recorded runbook histories', () => {
  test('every runbook has recorded histories', () => {
    for (const runbook of Object.keys(workflows)) {
      assert.ok(files.filter((f) => f.startsWith(`${runbook}-`)).length >= 2, `${runbook}: a happy path and a failure path`);
    }
  });

  for (const file of files) {
    test(`${file} replays without a determinism error`, async () => {
      // Recordings name their workflow id beside the events (older ones only through signed statements).
      const { workflowId, ...history } = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { workflowId?: string; events?: Record<string, any>[] };
      await Worker.runReplayHistory({ workflowsPath: require.resolve('../../src/workflows'), replayName: file }, history, workflowId ?? recordedWorkflowId(history));
    });
  }
});
