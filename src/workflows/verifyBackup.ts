import { ActivityCancellationType, ActivityFailure, ApplicationFailure, CancellationScope, isCancellation, proxyActivities, uuid4, workflowInfo } from '@temporalio/workflow';
import type { BackupActivities, BackupListEntry } from '../activities/backups';
import type { RestoreReport } from '../activities/reports';
import { PREFLIGHT, QUICK, TRANSFER } from './lib/backupOptions';
import { BACKUP_ID, DATABASE_KEY, describe, ENVIRONMENT_NAME, InputChecker } from './lib/input';
import { runRunbook, TimelineSnapshot } from './lib/timeline';

const preflight = proxyActivities<BackupActivities>(PREFLIGHT);
const quick = proxyActivities<BackupActivities>(QUICK);
// A cancelled run waits until the restore has really stopped, so the scratch database is dropped
// after the last write to it, not before.
const transfer = proxyActivities<BackupActivities>({ ...TRANSFER, cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED });
// Validation reads every table once: long on a large database; it heartbeats meanwhile, like every backup activity.
const validation = proxyActivities<BackupActivities>({ ...QUICK, startToCloseTimeout: '2 hours', retry: { ...QUICK.retry, maximumAttempts: 2 } });

export type RecoveryPointSelection = { mode: 'latest' } | { mode: 'random' } | { mode: 'key'; backupId: string };

export interface VerifyBackupInput {
  environment: string;
  database: string;
  selection?: RecoveryPointSelection;
}

export type VerifyBackupResult = RestoreReport & { runbook: 'verifyBackup'; timeline: TimelineSnapshot };

export function validateVerifyBackupInput(input: unknown): VerifyBackupInput {
  const check = InputChecker.of('verifyBackup', input);
  check.matches('environment', ENVIRONMENT_NAME, 'an environment name');
  check.matches('database', DATABASE_KEY, 'a database key from the config (e.g. main)');
  const sel = check.value.selection as Record<string, unknown> | undefined;
  if (sel !== undefined) {
    if (typeof sel !== 'object' || sel === null || !['latest', 'random', 'key'].includes(sel.mode as string)) {
      check.problem(`selection.mode: expected latest, random or key, found ${describe(sel?.mode)}`);
    } else if (sel.mode === 'key' && (typeof sel.backupId !== 'string' || !BACKUP_ID.test(sel.backupId))) {
      check.problem(`selection.backupId: expected a backup id such as 20261125T030000Z-a1b2c3, found ${describe(sel.backupId)}`);
    }
  }
  check.done();
  return check.value as unknown as VerifyBackupInput;
}

function causeMessage(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

const age = (nowMs: number, b: BackupListEntry) => nowMs - Date.parse(b.endedAt);

function formatAge(ms: number): string {
  if (ms < 120_000) return `${Math.round(ms / 1000)}s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m`;
  return `${(ms / 3_600_000).toFixed(1)}h`;
}

/**
 * The restore test: choose a recovery point, check the RPO, restore into a scratch database,
 * compare every table with the manifest, run the SQL assertions, always drop the scratch database,
 * and write the report next to the backup. A failed test fails the run, with the report as details.
 */
export async function verifyBackup(rawInput: VerifyBackupInput): Promise<VerifyBackupResult> {
  const input = validateVerifyBackupInput(rawInput);
  const selection = input.selection ?? { mode: 'latest' };
  return runRunbook('verifyBackup', input.environment, async (timeline) => {
    const testId = uuid4().replace(/-/g, '').slice(0, 10);
    const report: RestoreReport = {
      testId,
      workflowId: workflowInfo().workflowId,
      environment: input.environment,
      database: input.database,
      passed: false,
      reasons: [],
      selection: selection.mode === 'key' ? `key ${selection.backupId}` : selection.mode,
      rpo: { met: null },
      checks: [],
      scratchDatabase: `restore_test_${testId}`,
      scratchDropped: false,
      startedAt: new Date(Date.now()).toISOString(),
      endedAt: '',
    };

    const target = await timeline.step('preflight', async (evidence) => {
      const p = await preflight.preflightBackupTarget({ database: input.database, environment: input.environment });
      Object.assign(evidence, { databaseName: p.databaseName, serverVersion: p.serverVersion, rpoMs: p.maxBackupAgeMs ?? null });
      return p;
    });

    const backups = await quick.listBackups({ database: input.database });
    const now = Date.now();
    const chosen = await timeline.step('select recovery point', async (evidence) => {
      evidence.available = backups.length;
      let pick: BackupListEntry | undefined;
      if (selection.mode === 'latest') pick = backups[0];
      else if (selection.mode === 'key') pick = backups.find((b) => b.backupId === selection.backupId);
      else {
        const inWindow = backups.filter((b) => age(now, b) <= target.randomWindowMs);
        evidence.inWindow = inWindow.length;
        // Math.random is seeded per run by the SDK, so replay picks the same backup.
        pick = inWindow[Math.floor(Math.random() * inWindow.length)];
      }
      if (!pick) {
        const why =
          selection.mode === 'key'
            ? `backup ${selection.backupId} not found (${backups.length} backups exist)`
            : selection.mode === 'random'
              ? `no backup within the random window of ${formatAge(target.randomWindowMs)}`
              : 'no backup exists';
        report.reasons.push(why);
        evidence.reason = why;
        return undefined;
      }
      Object.assign(evidence, { backupId: pick.backupId, endedAt: pick.endedAt, ageMs: age(now, pick), bytes: pick.bytes });
      report.backupId = pick.backupId;
      report.backupEndedAt = pick.endedAt;
      report.backupAgeMs = age(now, pick);
      return pick;
    });

    await timeline.step('check RPO', async (evidence) => {
      const newest = backups[0];
      report.rpo = { limitMs: target.maxBackupAgeMs, newestBackupAgeMs: newest ? age(now, newest) : undefined, met: null };
      if (target.maxBackupAgeMs === undefined) {
        evidence.result = 'no RPO target configured';
        return;
      }
      report.rpo.met = newest !== undefined && age(now, newest) <= target.maxBackupAgeMs;
      Object.assign(evidence, { newestAgeMs: report.rpo.newestBackupAgeMs ?? null, limitMs: target.maxBackupAgeMs, met: report.rpo.met });
      if (!report.rpo.met) {
        report.reasons.push(
          newest
            ? `RPO violated: the newest backup (${newest.backupId}) is ${formatAge(age(now, newest))} old, the target is ${formatAge(target.maxBackupAgeMs)}`
            : 'RPO violated: there is no backup at all',
        );
      }
    });

    if (chosen) {
      const scratchName = report.scratchDatabase;
      try {
        const restored = await timeline
          .step('restore into scratch database', async (evidence) => {
            evidence.scratchDatabase = scratchName;
            const r = await transfer.restoreIntoScratchDatabase({ database: input.database, backupId: chosen.backupId, scratchName });
            Object.assign(evidence, { bytes: r.bytes, durationMs: r.durationMs, mode: r.mode, jobs: r.jobs, phasesMs: r.phasesMs, unloggedTables: r.unloggedTables, sha256: 'matches manifest' });
            report.restore = { bytes: r.bytes, durationMs: r.durationMs, mode: r.mode, jobs: r.jobs };
            report.checks.push({ name: 'restore completed', passed: true, detail: `pg_restore exited 0; sha256 matches the manifest` });
            return true;
          })
          .catch((err: unknown) => {
            if (isCancellation(err)) throw err;
            const why = causeMessage(err);
            report.checks.push({ name: 'restore completed', passed: false, detail: why });
            report.reasons.push(`restore failed: ${why}`);
            return false;
          });
        if (restored) {
          await timeline.step('validate restored data', async (evidence) => {
            const checks = await validation.validateRestoredDatabase({ database: input.database, backupId: chosen.backupId, scratchName });
            report.checks.push(...checks);
            const failed = checks.filter((c) => !c.passed);
            Object.assign(evidence, { checks: checks.length, failed: failed.length });
            for (const c of failed) report.reasons.push(`${c.name}: ${c.detail}`);
          });
        }
      } finally {
        // Runs on success, failure and cancellation alike: the scratch database never outlives the test.
        await CancellationScope.nonCancellable(() =>
          timeline.step('drop scratch database', async (evidence) => {
            const d = await quick.dropScratchDatabase({ database: input.database, scratchName });
            report.scratchDropped = true;
            Object.assign(evidence, { scratchDatabase: scratchName, existed: d.dropped });
          }),
        );
      }
    }

    report.passed = report.reasons.length === 0;
    report.endedAt = new Date(Date.now()).toISOString();
    await timeline.step('write report', async (evidence) => {
      const keys = await quick.writeRestoreReport({ report });
      Object.assign(evidence, keys);
    });
    if (!report.passed) {
      throw ApplicationFailure.create({ type: 'RestoreTestFailed', message: `restore test failed: ${report.reasons.join('; ')}`, nonRetryable: true, details: [report] });
    }
    return { ...report, runbook: 'verifyBackup' as const };
  });
}
