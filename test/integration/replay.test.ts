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

  test("every recording names the release that made it, and the previous release's cover every runbook it shipped", () => {
    const manifest = JSON.parse(readFileSync(join(__dirname, '..', 'history-releases.json'), 'utf8')) as { releases: Record<string, { runbooks: string[]; histories: string[] }> };
    const listed = Object.values(manifest.releases).flatMap((r) => r.histories);
    assert.deepEqual([...listed].sort(), [...files].sort(), 'test/history-releases.json lists each file of test/histories once (scripts/record-histories.ts keeps it)');
    const current = (JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
    const num = (v: string) => v.split('.').map(Number);
    const older = (a: string, b: string) => { const [x, y] = [num(a), num(b)]; for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] < y[i]; return false; };
    const previous = Object.keys(manifest.releases).filter((v) => older(v, current)).sort((a, b) => (older(a, b) ? 1 : -1))[0];
    assert.ok(previous, `no release before ${current} has recordings: a worker upgrade could not be shown to keep runs in flight`);
    const shipped = manifest.releases[previous];
    for (const runbook of shipped.runbooks) {
      if (!(runbook in workflows)) continue; // removed since, after its runs drained (README "Changing a runbook safely")
      assert.ok(shipped.histories.some((f) => f.startsWith(`${runbook}-`)), `${runbook}: no history recorded by release ${previous}`);
    }
  });

  test('no recording carries the absolute path of the checkout or machine that recorded it', () => {
    for (const file of files) {
      const absolute = readFileSync(join(dir, file), 'utf8').match(/[\s("']\/[^\s"'():]*?\/(?:node_modules|src)\/[^\s"'():]*/);
      assert.equal(absolute, null, `${file}: ${absolute?.[0]} (scripts/record-histories.ts makes these relative)`);
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
