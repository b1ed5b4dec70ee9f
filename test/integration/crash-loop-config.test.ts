import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createS3Client, ObjectStore } from '../../src/activities/s3';
import { RESTORE_TEST_NAMESPACE } from '../../src/activities/temporalConfig';
import { startRunbook } from '../../src/cli/client';
import { loadConfig } from '../../src/config/load';
import type { BackupTemporalConfigResult } from '../../src/workflows/backupTemporalConfig';
import type { VerifyTemporalConfigResult } from '../../src/workflows/verifyTemporalConfig';
import { HistoryWatch } from '../history-watch';
import { assertScheduledLikeRecorded, c, crashLoop, recorded, stack, table, useCrashLoopStack } from '../crash-loop-harness';

/* The crash loop (test/crash-loop-harness.ts) for the configuration backup and its restore test. */

useCrashLoopStack();

describe('the crash loop: the Temporal configuration backup and its restore test', () => {
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
