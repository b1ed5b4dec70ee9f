/**
 * The restore test of a pgBackRest database, as verifyBackup runs it: read the repository, choose a
 * recovery point (a backup, or a point in time that the WAL covers), refuse to restore from an
 * unhealthy repository (a stale newest backup, an archive gap, an archiving backlog, a failed check
 * or verify), restore into a scratch instance that replays WAL to the target, prove the data against
 * the restore canary and the configured SQL checks, always remove the scratch instance, report.
 */
import { ActivityCancellationType, ActivityFailure, ApplicationFailure, CancellationScope, isCancellation, proxyActivities } from '@temporalio/workflow';
import type { PhysicalBackupActivities, PhysicalRestoreTarget, RepositoryOverview } from '../../activities/pgbackrest';
import type { ScratchHostActivities } from '../../activities/scratchHost';
import type { RestoreReport } from '../../activities/reports';
import type { PhysicalBackup } from '../../system/pgbackrest';
import { PHYSICAL_QUICK, PHYSICAL_TRANSFER, REPOSITORY_CHECK, REPOSITORY_READ, SCRATCH_HOST_WAIT } from './physicalOptions';
import type { Timeline } from './timeline';
import { parseDuration } from '../../config/duration';

const read = proxyActivities<PhysicalBackupActivities>(REPOSITORY_READ);
const check = proxyActivities<PhysicalBackupActivities>(REPOSITORY_CHECK);
const verifyRepo = proxyActivities<PhysicalBackupActivities>(PHYSICAL_TRANSFER);
const claim = proxyActivities<ScratchHostActivities>(REPOSITORY_READ);

/**
 * The scratch instance's activities, on the queue of the host that holds it. A host that does not come
 * back within the schedule-to-start limit fails the step (its instance went with it).
 */
function onScratchHost(taskQueue: string) {
  return {
    // A cancelled run waits until the restore has really stopped, so the scratch instance is removed after the last write to it.
    transfer: proxyActivities<PhysicalBackupActivities>({ ...PHYSICAL_TRANSFER, taskQueue, scheduleToStartTimeout: SCRATCH_HOST_WAIT, cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED }),
    read: proxyActivities<PhysicalBackupActivities>({ ...REPOSITORY_READ, taskQueue, scheduleToStartTimeout: SCRATCH_HOST_WAIT }),
    quick: proxyActivities<PhysicalBackupActivities>({ ...PHYSICAL_QUICK, taskQueue, scheduleToStartTimeout: SCRATCH_HOST_WAIT }),
  };
}

export type PhysicalSelection =
  | { mode: 'latest' }
  | { mode: 'random' }
  | { mode: 'key'; backupId: string }
  | { mode: 'label'; label: string }
  | { mode: 'time'; at: string }
  | { mode: 'randomTime'; within?: string };

function causeMessage(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

export function formatAge(ms: number): string {
  if (ms < 120_000) return `${Math.round(ms / 1000)}s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m`;
  return `${(ms / 3_600_000).toFixed(1)}h`;
}

const refuse = (message: string) => ApplicationFailure.create({ type: 'InvalidInput', message, nonRetryable: true });

interface Choice {
  set: PhysicalBackup;
  target: PhysicalRestoreTarget;
  description: string;
  canary?: { before: string; after: string; label: string };
}

/**
 * The recovery point. Bad choices (an unknown label, a time outside the recoverable window) are
 * refused with InvalidInput before anything is restored; a repository that offers nothing to choose
 * (no backup, no point in time in the window) fails the test with the reason.
 */
function choose(selection: PhysicalSelection, repo: RepositoryOverview, nowMs: number, randomWindowMs: number): Choice | string {
  const backups = repo.backups.filter((b) => !b.error);
  const newest = backups[backups.length - 1];
  const consistent = (b: PhysicalBackup, how: string): Choice => ({
    set: b,
    target: { set: b.label, type: 'immediate' },
    description: `${how}: backup ${b.label} at its consistent point (${b.stoppedAt})`,
    canary: { before: b.startedAt, after: b.stoppedAt, label: `the backup ${b.label}` },
  });
  const windowText = () => (repo.window.from && repo.window.until ? `${repo.window.from} to ${repo.window.until}` : `none (${repo.window.reason})`);
  switch (selection.mode) {
    case 'latest':
      if (!newest) return 'the repository holds no complete backup';
      return { set: newest, target: { set: newest.label, type: 'end' }, description: `latest: backup ${newest.label} and every archived WAL segment after it` };
    case 'random': {
      const inWindow = backups.filter((b) => nowMs - Date.parse(b.stoppedAt) <= randomWindowMs);
      if (inWindow.length === 0) return `no backup within the random window of ${formatAge(randomWindowMs)}`;
      // Math.random is seeded per run by the SDK, so replay picks the same backup.
      return consistent(inWindow[Math.floor(Math.random() * inWindow.length)], 'random backup');
    }
    case 'key':
      throw refuse(`selection.backupId: ${selection.backupId} is a dump's backup id; ${repo.database} is backed up with pgBackRest: choose a backup by label (${backups.map((b) => b.label).slice(-3).join(', ') || 'none yet'})`);
    case 'label': {
      const b = backups.find((x) => x.label === selection.label);
      if (!b) throw refuse(`selection.label: backup ${selection.label} is not in the repository of stanza ${repo.stanza}; it holds ${backups.map((x) => x.label).join(', ') || 'no backup'}`);
      return consistent(b, 'backup by label');
    }
    case 'time':
    case 'randomTime': {
      const from = repo.window.from ? Date.parse(repo.window.from) : undefined;
      const until = repo.window.until ? Date.parse(repo.window.until) : undefined;
      let at: number;
      if (selection.mode === 'time') {
        at = Date.parse(selection.at);
        if (from === undefined || until === undefined || at < from || at > until) {
          throw refuse(`selection.at: ${new Date(at).toISOString()} is outside the window this repository can restore to: ${windowText()}`);
        }
      } else {
        const within = selection.within !== undefined ? (parseDuration(selection.within) ?? randomWindowMs) : randomWindowMs;
        if (from === undefined || until === undefined) return `no point in time can be restored: ${repo.window.reason}`;
        const lo = Math.max(from, nowMs - within);
        if (lo > until) return `no point in time within the last ${formatAge(within)} is covered: the recoverable window is ${windowText()}`;
        at = lo + Math.floor(Math.random() * (until - lo));
      }
      // The newest backup that ended by then; WAL replays from it to the target.
      const base = [...backups].reverse().find((b) => Date.parse(b.stoppedAt) <= at)!;
      const time = new Date(at).toISOString();
      return {
        set: base,
        target: { set: base.label, type: 'time', time },
        description: `${selection.mode === 'time' ? 'point in time' : `random point in time within ${selection.within ?? formatAge(randomWindowMs)}`}: ${time}, from backup ${base.label}`,
        canary: { before: time, after: time, label: `the target ${time}` },
      };
    }
  }
}

export async function physicalRestoreTest(
  input: { environment: string; database: string },
  selection: PhysicalSelection,
  timeline: Timeline,
  report: RestoreReport,
  workflowId: string,
): Promise<void> {
  report.method = 'pgbackrest';
  const repo = await timeline.step('read repository', async (evidence) => {
    const r = await read.inspectPhysicalRepository({ database: input.database });
    Object.assign(evidence, {
      stanza: r.stanza,
      status: r.status,
      backups: r.backups.length,
      newestBackup: r.backups[r.backups.length - 1]?.label ?? null,
      archive: r.archive ?? null,
      window: r.window,
      archiver: r.archiver,
      canaryRows: r.canary.rows,
    });
    return r;
  });
  const now = Date.now();
  const limits = { maxBackupAgeMs: repo.maxBackupAgeMs, randomWindowMs: repo.randomWindowMs };
  report.pitr = {
    stanza: repo.stanza,
    window: repo.window,
    rpoAchievable: {
      newestArchivedWal: repo.archiver.lastArchivedWal,
      archivedAt: repo.archiver.lastArchivedAt,
      unarchivedWal: repo.archiver.unarchivedWal,
      exposureMs: repo.archiver.unarchivedWal && repo.archiver.lastArchivedAt ? now - Date.parse(repo.archiver.lastArchivedAt) : repo.archiver.unarchivedWal ? undefined : 0,
    },
    archive: { min: repo.archive?.min, max: repo.archive?.max, missing: [] },
  };

  const choice = await timeline.step('select recovery point', async (evidence) => {
    const c = choose(selection, repo, now, limits.randomWindowMs);
    if (typeof c === 'string') {
      report.reasons.push(c);
      evidence.reason = c;
      return undefined;
    }
    Object.assign(evidence, { label: c.set.label, type: c.set.type, target: c.target, description: c.description });
    report.backupId = c.set.label;
    report.backupEndedAt = c.set.stoppedAt;
    report.backupAgeMs = now - Date.parse(c.set.stoppedAt);
    report.pitr!.backup = { label: c.set.label, type: c.set.type, startedAt: c.set.startedAt, stoppedAt: c.set.stoppedAt, databaseBytes: c.set.databaseBytes, repoBytes: c.set.repoBytes };
    report.pitr!.target = { type: c.target.type, time: c.target.time, description: c.description };
    return c;
  });

  // The repository must be sound before anything is restored from it: each problem is a reason of its own.
  const healthy = await timeline.step('check repository', async (evidence) => {
    const before = report.reasons.length;
    const newest = repo.backups.filter((b) => !b.error).pop();
    const age = newest ? now - Date.parse(newest.stoppedAt) : undefined;
    report.rpo = { limitMs: limits.maxBackupAgeMs, newestBackupAgeMs: age, met: null };
    if (limits.maxBackupAgeMs !== undefined) {
      report.rpo.met = age !== undefined && age <= limits.maxBackupAgeMs;
      if (!report.rpo.met) {
        report.reasons.push(
          newest
            ? `RPO violated: the newest backup (${newest.label}) is ${formatAge(age!)} old, the target is ${formatAge(limits.maxBackupAgeMs)}`
            : 'RPO violated: there is no backup at all',
        );
      }
    }
    const a = repo.archiver;
    if (a.failing) report.reasons.push(`WAL archiving is failing on ${a.node}: the last attempt, ${a.lastFailedWal} at ${a.lastFailedAt}, failed after the last success (${a.lastArchivedWal ?? 'none'} at ${a.lastArchivedAt ?? '-'})`);
    const maxBacklog = repo.maxArchiveBacklog;
    if (a.backlogSegments > maxBacklog) report.reasons.push(`archive-push backlog on ${a.node}: ${a.backlogSegments} completed WAL segments wait to be archived (limit ${maxBacklog}); the last archived is ${a.lastArchivedWal ?? 'none'}`);
    const exposure = report.pitr!.rpoAchievable!.exposureMs;
    if (repo.maxArchiveAgeMs !== undefined && exposure !== undefined && exposure > repo.maxArchiveAgeMs) {
      report.reasons.push(`RPO at risk: WAL written since ${a.lastArchivedAt} (after ${a.lastArchivedWal}) is not archived; ${formatAge(exposure)} of writes would be lost with the primary, the target is ${formatAge(repo.maxArchiveAgeMs)}`);
    }
    if (choice) {
      const c = await check.checkPhysicalRepository({ database: input.database, fromWal: choice.set.walStart });
      report.pitr!.archive = { min: repo.archive?.min, max: c.archiveMax, scannedSegments: c.scanned.segments, missing: c.missing };
      report.pitr!.checks = { check: c.checkMessage };
      report.checks.push({ name: 'pgbackrest check', passed: c.checkOk, detail: c.checkMessage });
      if (!c.checkOk && !c.checkSkipped) report.reasons.push(c.checkMessage);
      const gap = c.missing.length === 0;
      report.checks.push({
        name: 'WAL archive continuous',
        passed: gap,
        detail: gap ? `${c.scanned.segments} segments from ${c.scanned.from} to ${c.scanned.to}, none missing` : `missing from the archive: ${c.missing.slice(0, 10).join(', ')}${c.missing.length > 10 ? ` and ${c.missing.length - 10} more` : ''}`,
      });
      if (!gap) report.reasons.push(`gap in the WAL archive: segment ${c.missing.slice(0, 10).join(', ')}${c.missing.length > 10 ? ` and ${c.missing.length - 10} more` : ''} missing between ${c.scanned.from} and ${c.scanned.to} (needed to replay from backup ${choice.set.label})`);
      Object.assign(evidence, { check: c.checkMessage, scanned: c.scanned, missing: c.missing });
    }
    Object.assign(evidence, { newestBackupAgeMs: age ?? null, backlog: a.backlogSegments, archivingFailing: a.failing, problems: report.reasons.slice(before) });
    return report.reasons.length === 0;
  });

  if (healthy && choice && repo.verifyRepository) {
    await timeline.step('verify repository', async (evidence) => {
      const v = await verifyRepo.verifyPhysicalRepository({ database: input.database });
      report.pitr!.checks = { ...report.pitr!.checks!, verify: v.ok ? `${v.backupsChecked} backups and ${v.walChecked} WAL segments valid` : v.problems.join('; ') };
      report.checks.push({ name: 'pgbackrest verify', passed: v.ok, detail: report.pitr!.checks.verify! });
      for (const p of v.problems) report.reasons.push(`pgbackrest verify: ${p}`);
      Object.assign(evidence, { ok: v.ok, problems: v.problems, backupsChecked: v.backupsChecked, walChecked: v.walChecked, durationMs: v.durationMs });
    });
  }

  if (!choice) return;
  if (report.reasons.length > 0) {
    // Nothing was restored, so there is no scratch instance to remove.
    timeline.skip('restore into scratch instance', `the repository checks failed: ${report.reasons.join('; ')}`);
    report.scratchDropped = true;
    return;
  }
  report.scratchInstance = `restore-test-${report.testId}`;
  const host = await claim.claimScratchHost();
  const pinned = onScratchHost(host.taskQueue);
  try {
    const restored = await timeline
      .step('restore into scratch instance', async (evidence) => {
        Object.assign(evidence, { scratchInstance: report.scratchInstance, host: host.host });
        const r = await pinned.transfer.restorePhysicalBackup({ database: input.database, testId: report.testId, workflowId, target: choice.target });
        Object.assign(evidence, r);
        Object.assign(report.pitr!, {
          restoreMs: r.restoreMs,
          replayMs: r.replayMs,
          walReplayedBytes: r.walReplayedBytes,
          segmentsRestored: r.segmentsRestored,
          replayFrom: r.replayFrom,
          replayTo: r.replayTo,
          stoppedBecause: r.stoppedBecause,
          lastTransactionAt: r.lastTransactionAt,
        });
        report.checks.push({ name: 'restore and replay completed', passed: true, detail: `${choice.set.label} restored in ${formatAge(r.restoreMs)}, WAL replayed in ${formatAge(r.replayMs)}: ${r.stoppedBecause}` });
        return r;
      })
      .catch((err: unknown) => {
        if (isCancellation(err)) throw err;
        const why = causeMessage(err);
        report.checks.push({ name: 'restore and replay completed', passed: false, detail: why });
        report.reasons.push(`restore failed: ${why}`);
        return undefined;
      });
    if (restored) {
      await timeline.step('validate restored data', async (evidence) => {
        const checks = await pinned.read.validatePhysicalRestore({
          database: input.database,
          testId: report.testId,
          target: choice.target,
          canaryWindow: choice.canary,
          replay: { replayTo: restored.replayTo },
          archiveMax: report.pitr!.archive?.max,
        });
        report.checks.push(...checks);
        const failed = checks.filter((c) => !c.passed);
        Object.assign(evidence, { checks: checks.length, failed: failed.length });
        for (const c of failed) report.reasons.push(`${c.name}: ${c.detail}`);
      });
    }
  } finally {
    // On success, failure and cancellation alike: the scratch instance never outlives the test.
    await CancellationScope.nonCancellable(() =>
      timeline.step('remove scratch instance', async (evidence) => {
        const r = await pinned.quick.removeScratchInstance({ database: input.database, testId: report.testId });
        report.scratchDropped = true;
        Object.assign(evidence, { scratchInstance: report.scratchInstance, existed: r.existed, wasRunning: r.wasRunning });
      }),
    );
  }
}
