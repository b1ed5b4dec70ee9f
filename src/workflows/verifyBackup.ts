import { ActivityCancellationType, ActivityFailure, ApplicationFailure, CancellationScope, isCancellation, patched, proxyActivities, uuid4, workflowInfo } from '@temporalio/workflow';
import type { BackupActivities, BackupListEntry } from '../activities/backups';
import type { PhysicalBackupActivities } from '../activities/pgbackrest';
import type { ScratchHostActivities } from '../activities/scratchHost';
import type { RestoreReport } from '../activities/reports';
import { parseDuration } from '../config/duration';
import { PREFLIGHT, QUICK, TRANSFER } from './lib/backupOptions';
import { BACKUP_ID, DATABASE_KEY, describe, ENVIRONMENT_NAME, InputChecker } from './lib/input';
import { PHYSICAL_QUICK, SCRATCH_HOST_WAIT } from './lib/physicalOptions';
import { physicalRestoreTest, PhysicalSelection } from './lib/physicalRestoreTest';
import { runRunbook, TimelineSnapshot } from './lib/timeline';

const preflight = proxyActivities<BackupActivities>(PREFLIGHT);
const quick = proxyActivities<BackupActivities>(QUICK);
// A cancelled run waits until the restore has really stopped, so the scratch database is dropped
// after the last write to it, not before.
const transfer = proxyActivities<BackupActivities>({ ...TRANSFER, cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED });
// Validation reads every table once: long on a large database; it heartbeats meanwhile, like every backup activity.
const validation = proxyActivities<BackupActivities>({ ...QUICK, startToCloseTimeout: '2 hours', retry: { ...QUICK.retry, maximumAttempts: 2 } });
const physicalQuick = proxyActivities<PhysicalBackupActivities>(PHYSICAL_QUICK);
const claim = proxyActivities<ScratchHostActivities>(QUICK);

/**
 * latest, random (a backup within restoreTest.randomWindow) and key (a dump's backup id) for every
 * database; label (a pgBackRest backup), time (a point in time, ISO 8601 with a zone) and randomTime
 * (a random point within `within`, default restoreTest.randomWindow) for pgBackRest databases.
 */
export type RecoveryPointSelection = PhysicalSelection;

export const PGBACKREST_LABEL = /^\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;
const MAX_WITHIN_MS = 400 * 86_400_000;

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
    if (typeof sel !== 'object' || sel === null || !['latest', 'random', 'key', 'label', 'time', 'randomTime'].includes(sel.mode as string)) {
      check.problem(`selection.mode: expected latest, random, key, label, time or randomTime, found ${describe(sel?.mode)}`);
    } else if (sel.mode === 'key' && (typeof sel.backupId !== 'string' || !BACKUP_ID.test(sel.backupId))) {
      check.problem(`selection.backupId: expected a backup id such as 20261125T030000Z-a1b2c3, found ${describe(sel.backupId)}`);
    } else if (sel.mode === 'label' && (typeof sel.label !== 'string' || !PGBACKREST_LABEL.test(sel.label))) {
      check.problem(`selection.label: expected a pgBackRest backup label such as 20261125-030000F or 20261125-030000F_20261126-030000I, found ${describe(sel.label)}`);
    } else if (sel.mode === 'time' && (typeof sel.at !== 'string' || !ISO_TIME.test(sel.at) || Number.isNaN(Date.parse(sel.at)))) {
      check.problem(`selection.at: expected a time with its zone such as 2026-11-25T03:00:00Z, found ${describe(sel.at)}`);
    } else if (sel.mode === 'time' && Date.parse(sel.at as string) > Date.now()) {
      check.problem(`selection.at: ${describe(sel.at)} is in the future; a restore can only reach the past`);
    } else if (sel.mode === 'randomTime' && sel.within !== undefined) {
      const ms = typeof sel.within === 'string' ? parseDuration(sel.within) : undefined;
      if (ms === undefined || ms > MAX_WITHIN_MS) check.problem(`selection.within: expected a duration of at most 400d such as 7d or 36h, found ${describe(sel.within)}`);
    }
  }
  check.done();
  return check.value as unknown as VerifyBackupInput;
}

function describeSelection(s: RecoveryPointSelection): string {
  switch (s.mode) {
    case 'key':
      return `key ${s.backupId}`;
    case 'label':
      return `label ${s.label}`;
    case 'time':
      return `time ${s.at}`;
    case 'randomTime':
      return `random time${s.within ? ` within ${s.within}` : ''}`;
    default:
      return s.mode;
  }
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
      selection: describeSelection(selection),
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

    if ((target.method ?? 'dump') === 'pgbackrest') {
      await physicalRestoreTest(input, selection, timeline, report, workflowInfo().workflowId);
      report.passed = report.reasons.length === 0;
      report.endedAt = new Date(Date.now()).toISOString();
      await timeline.step('write report', async (evidence) => {
        Object.assign(evidence, await physicalQuick.writePhysicalRestoreReport({ report }));
      });
      if (!report.passed) {
        throw ApplicationFailure.create({ type: 'RestoreTestFailed', message: `restore test failed: ${report.reasons.join('; ')}`, nonRetryable: true, details: [report] });
      }
      return { ...report, runbook: 'verifyBackup' as const };
    }
    if (selection.mode === 'label' || selection.mode === 'time' || selection.mode === 'randomTime') {
      throw ApplicationFailure.create({
        type: 'InvalidInput',
        nonRetryable: true,
        message: `selection.mode: ${selection.mode} needs a pgBackRest database (point-in-time restores replay archived WAL); ${input.database} is backed up with pg_dump: choose latest, random or key`,
      });
    }

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
      // A scratch instance lives on one worker host: its restore, validation and removal go to that host's
      // queue. Runs recorded before scratch instances existed take the old path when replayed.
      let steps = { transfer, validation, quick };
      if (target.restoreInto === 'scratchInstance' && patched('dump-restore-on-scratch-instance-host')) {
        const host = await claim.claimScratchHost();
        report.scratchInstance = scratchName.replace(/_/g, '-');
        steps = {
          transfer: proxyActivities<BackupActivities>({ ...TRANSFER, taskQueue: host.taskQueue, scheduleToStartTimeout: SCRATCH_HOST_WAIT, cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED }),
          validation: proxyActivities<BackupActivities>({ ...QUICK, startToCloseTimeout: '2 hours', retry: { ...QUICK.retry, maximumAttempts: 2 }, taskQueue: host.taskQueue, scheduleToStartTimeout: SCRATCH_HOST_WAIT }),
          quick: proxyActivities<BackupActivities>({ ...QUICK, taskQueue: host.taskQueue, scheduleToStartTimeout: SCRATCH_HOST_WAIT }),
        };
      }
      try {
        const restored = await timeline
          .step('restore into scratch database', async (evidence) => {
            evidence.scratchDatabase = scratchName;
            const r = await steps.transfer.restoreIntoScratchDatabase({ database: input.database, backupId: chosen.backupId, scratchName });
            Object.assign(evidence, { bytes: r.bytes, durationMs: r.durationMs, mode: r.mode, jobs: r.jobs, phasesMs: r.phasesMs, sha256: 'matches manifest' });
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
            const checks = await steps.validation.validateRestoredDatabase({ database: input.database, backupId: chosen.backupId, scratchName });
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
            const d = await steps.quick.dropScratchDatabase({ database: input.database, scratchName });
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
