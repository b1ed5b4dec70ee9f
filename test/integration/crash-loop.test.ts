import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRunbook } from '../../src/cli/client';
import { createS3Client, ObjectStore } from '../../src/activities/s3';
import { loadConfig } from '../../src/config/load';
import { RESTORE_TEST_NAMESPACE } from '../../src/activities/temporalConfig';
import type { BackupTemporalConfigResult } from '../../src/workflows/backupTemporalConfig';
import type { VerifyTemporalConfigResult } from '../../src/workflows/verifyTemporalConfig';
import { RUNBOOK_DEFAULT_QUEUE } from '../../src/workflows/catalog';
import { HistoryWatch } from '../history-watch';
import { REPO } from '../helpers';
import { assertScheduledLikeRecorded, c, CRASH_TESTS, crashLoop, recorded, stack, table, useCrashLoopStack } from '../crash-loop-harness';
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

  test('backupTemporalConfig and verifyTemporalConfig: one configuration backup, one restore test, no scratch namespace left, however often their worker dies', async () => {
    const loaded = loadConfig(stack.configFile);
    const backups = loaded.config.environments.sandbox.backups!;
    const store = new ObjectStore(createS3Client(loaded, backups), backups.bucket);
    const objects = async () => (await store.list(`${backups.prefix}temporal-config/`)).map((o) => o.key).sort();
    const before = await objects();

    const backupRec = recorded('backupTemporalConfig')!;
    const { handle: backup } = await startRunbook(c, 'backupTemporalConfig', [{ environment: 'sandbox' }], {});
    const backupWatch = new HistoryWatch(c.client, backup);
    let survived = false;
    const backupPoints = await crashLoop(backup, backupRec, backupWatch);
    let backupResult: BackupTemporalConfigResult;
    try {
      backupResult = await backup.result();
      assert.deepEqual(backupResult.timeline.steps.map((s) => s.name), backupRec.steps);
      await backupWatch.close();
      assertScheduledLikeRecorded(backupWatch, backupRec);
      const added = (await objects()).filter((k) => !before.includes(k));
      assert.ok(added.length > 0 && added.every((k) => k.includes(`/temporal-config/${backupResult.backupId}/`)), `only the one backup was written: ${added.join(', ')}`);
      survived = true;
    } finally {
      table.push({ runbook: 'backupTemporalConfig', points: backupPoints, survived });
    }

    const verifyRec = recorded('verifyTemporalConfig')!;
    const { handle: verify } = await startRunbook(c, 'verifyTemporalConfig', [{ environment: 'sandbox', backupId: backupResult.backupId }], {});
    const verifyWatch = new HistoryWatch(c.client, verify);
    survived = false;
    const verifyPoints = await crashLoop(verify, verifyRec, verifyWatch);
    try {
      const result: VerifyTemporalConfigResult = await verify.result();
      assert.equal(result.passed, true, result.reasons.join('; '));
      assert.deepEqual(result.timeline.steps.map((s) => s.name), verifyRec.steps);
      await verifyWatch.close();
      assertScheduledLikeRecorded(verifyWatch, verifyRec);
      assert.ok(result.scratchNamespaces.every((n) => n.deleted), 'every scratch namespace deleted');
      // Namespaces deleted are renamed and removed in the background: none may still be registered under its scratch name.
      const { namespaces } = await c.client.workflowService.listNamespaces({ pageSize: 1000 });
      const DELETED = 3; // NamespaceState.NAMESPACE_STATE_DELETED
      const left = (namespaces ?? []).filter((n) => RESTORE_TEST_NAMESPACE.test(n.namespaceInfo?.name ?? '') && n.namespaceInfo?.state !== DELETED).map((n) => n.namespaceInfo?.name);
      assert.deepEqual(left, [], 'no scratch namespace left registered');
      const reports = (await objects()).filter((k) => k.includes(`/temporal-config/${backupResult.backupId}/restore-tests/`));
      assert.deepEqual(reports.map((k) => k.replace(/.*restore-tests\//, '')).sort(), [`${result.testId}.json`, `${result.testId}.md`], 'one report, written once');
      survived = true;
    } finally {
      table.push({ runbook: 'verifyTemporalConfig', points: verifyPoints, survived });
    }
  });
});
