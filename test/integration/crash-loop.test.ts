import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRunbook } from '../../src/cli/client';
import { RUNBOOK_DEFAULT_QUEUE } from '../../src/workflows/catalog';
import { HistoryWatch } from '../history-watch';
import { REPO } from '../helpers';
import { assertScheduledLikeRecorded, c, CRASH_TESTS, crashLoop, recorded, table, useCrashLoopStack } from '../crash-loop-harness';
/*
 * The crash loop (test/crash-loop-harness.ts): a runbook runs once while its worker process group is
 * SIGKILLed as each step of its recorded step list starts and inside each heartbeating activity, and
 * must end as the recorded run did, every side effect once. One runbook per file where a run is long,
 * so the files run side by side.
 */

useCrashLoopStack();

describe('the crash loop: every runbook survives its worker killed at each step', () => {
  test('the registry: every runbook the worker runs has a recorded step list and a crash scenario', () => {
    for (const runbook of Object.keys(RUNBOOK_DEFAULT_QUEUE)) {
      assert.ok(CRASH_TESTS[runbook], `${runbook} has no crash scenario: add it to the crash loop (test/crash-loop-harness.ts names where each lives)`);
      const file = readFileSync(join(REPO, CRASH_TESTS[runbook]), 'utf8');
      assert.ok(file.includes(`'${runbook}'`), `${CRASH_TESTS[runbook]} starts ${runbook}`);
      assert.ok(recorded(runbook), `${runbook} has no recorded happy-path history with a step list in test/histories (scripts/record-histories.ts)`);
    }
  });

  test('readinessAudit: one report set however often its worker dies', async () => {
    const rec = recorded('readinessAudit')!;
    const { handle } = await startRunbook(c, 'readinessAudit', [{ environment: 'sandbox', checkTimeoutSeconds: 5 }], {});
    const watch = new HistoryWatch(c.client, handle);
    let survived = false;
    const points = await crashLoop(handle, rec, watch);
    try {
      const result = (await handle.result()) as { auditId: string; reportKeys: string[]; timeline: { steps: { name: string }[] } };
      assert.deepEqual(result.timeline.steps.map((s) => s.name), rec.steps);
      await watch.close();
      assertScheduledLikeRecorded(watch, rec);
      assert.equal(result.reportKeys.length, 3, 'JSON, Markdown and HTML once each');
      assert.equal(new Set(result.reportKeys).size, 3);
      survived = true;
    } finally {
      table.push({ runbook: 'readinessAudit', points, survived });
    }
  });

  test('loadTest: every phase measured once however often its worker dies', async () => {
    const rec = recorded('loadTest')!;
    const { handle } = await startRunbook(c, 'loadTest', [{ environment: 'sandbox' }], {});
    const watch = new HistoryWatch(c.client, handle);
    let survived = false;
    const points = await crashLoop(handle, rec, watch);
    try {
      // A phase whose worker died is measured again by its retry (a load test re-measures); the run still has each phase once.
      const result = (await handle.result()) as { phases?: { phase: string }[]; timeline?: { steps: { name: string }[] } };
      assert.deepEqual(result.timeline?.steps.map((s) => s.name), rec.steps);
      assert.deepEqual(result.phases?.map((p) => p.phase), ['baseline', 'peak', 'failure', 'recovery']);
      await watch.close();
      assertScheduledLikeRecorded(watch, rec);
      survived = true;
    } finally {
      table.push({ runbook: 'loadTest', points, survived });
    }
  });

});
