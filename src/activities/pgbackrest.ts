/**
 * Physical backups and point-in-time restore tests with pgBackRest: backups (full, differential,
 * incremental) from whichever node is primary, retention, the repository's state (info, WAL archive
 * continuity, the source's archiver), `pgbackrest check` and `verify`, and restores into scratch
 * PostgreSQL instances that replay WAL to a target and are then proved against the restore canary.
 */
import { CancelledFailure, log } from '@temporalio/activity';
import { parseSegmentName, parseVerify, pgbackrestError, PhysicalBackup, requiredSegments } from '../system/pgbackrest';
import { CanaryRow, writeCanaryRow } from './canary';
import { checkServedEnvironment, classify, failure } from './errors';
import { heartbeater, withHeartbeat } from './heartbeat';
import { pgbackrestFailure, physicalContext, PhysicalDeps, SCRATCH_PREFIX } from './pgbackrestContext';
import { createPhysicalRestoreActivities } from './pgbackrestRestore';
import { renderRestoreReportHtml, renderRestoreReportMarkdown, RestoreReport } from './reports';
import { scratchPaths } from '../system/scratch';

export type { ArchiverState, PhysicalDeps, PhysicalNode, PhysicalTarget, RepositoryOverview } from './pgbackrestContext';
export type { PhysicalRestoreResult, PhysicalRestoreTarget } from './pgbackrestRestore';

export type BackupType = 'full' | 'diff' | 'incr';

export interface PhysicalBackupResult extends PhysicalBackup {
  node: string;
  durationMs: number;
  alreadyDone: boolean;
}


export interface RepositoryCheck {
  checkOk: boolean;
  checkMessage: string;
  checkSkipped: boolean;
  archiveMax?: string;
  scanned: { from: string; to: string; segments: number };
  missing: string[];
}

/** pgBackRest's backup command: annotated with the runbook's backup id, so a retry finds a backup already taken. */
export function physicalBackupArgs(type: BackupType, backupId: string, node: string): string[] {
  return ['backup', `--type=${type}`, '--start-fast', '--no-expire-auto', '--log-level-console=detail', `--annotation=runbook-backup-id=${backupId}`, `--annotation=runbook-node=${node}`];
}

/** A pgBackRest restore test's report, under <prefix><database>/pgbackrest/restore-tests/. */
export function physicalRestoreReportKeys(prefix: string, database: string, testId: string): { jsonKey: string; markdownKey: string; htmlKey: string } {
  const base = `${prefix}${database}/pgbackrest/restore-tests/${testId}`;
  return { jsonKey: `${base}.json`, markdownKey: `${base}.md`, htmlKey: `${base}.html` };
}

export function createPhysicalBackupActivities(deps: PhysicalDeps) {
  const ctx = physicalContext(deps);
  const { target, pgFor, pgbackrest, info, primaryNode, withSource, archiverState, overview, history, archivedSegments } = ctx;
  return {
    /** Writes one restore-canary row on the current primary and prunes rows older than the canary's retention. */
    async writeRestoreCanary(input: { database: string; environment?: string; workflowId?: string }): Promise<{ row: CanaryRow; pruned: number; node: string }> {
      checkServedEnvironment(input.environment, deps.environment);
      const t = target(input.database);
      return withHeartbeat(async () => {
        const { node } = await primaryNode(t);
        try {
          const r = await withSource(t, node, (client) => writeCanaryRow(client, input.workflowId, t.restore.canaryKeepMs), t.canary);
          return { ...r, node: node.name };
        } catch (err) {
          throw classify(err, `writing the restore canary on ${node.name}`);
        }
      });
    },

    /**
     * A pgBackRest backup of the current primary, with progress from pgBackRest's per-file lines. The
     * backup is annotated with the runbook's backup id, so a retry after a worker crash that finds it
     * complete returns it instead of taking a second one.
     */
    async takePhysicalBackup(input: { database: string; backupId: string; type: BackupType }): Promise<PhysicalBackupResult> {
      const t = target(input.database);
      const hb = heartbeater();
      const started = Date.now();
      try {
        const done = (await info(t, hb.signal)).backups.find((b) => b.annotation['runbook-backup-id'] === input.backupId && !b.error);
        if (done) {
          log.info('backup already complete; nothing to do', { backupId: input.backupId, label: done.label });
          return { ...done, node: done.annotation['runbook-node'] ?? '', durationMs: 0, alreadyDone: true };
        }
        const { node } = await primaryNode(t);
        let percent = 0;
        let files = 0;
        hb.beat({ phase: 'backup', type: input.type, node: node.name, percent });
        const run = await pgbackrest(
          t,
          physicalBackupArgs(input.type, input.backupId, node.name),
          {
            pg: pgFor(t, node),
            signal: hb.signal,
            onLine: (line) => {
              const m = /backup file .* \(([\d.]+[KMGT]?B), ([\d.]+)%\)/.exec(line);
              if (m) {
                files++;
                percent = Number(m[2]);
                hb.beat({ phase: 'backup', type: input.type, node: node.name, percent, files });
              }
            },
          },
        );
        if (hb.signal.aborted) throw new CancelledFailure('backup cancelled; pgbackrest stopped');
        if (run.code !== 0) throw pgbackrestFailure(`${input.type} backup of stanza ${t.stanza} from ${node.name}`, run);
        const b = (await info(t)).backups.find((x) => x.annotation['runbook-backup-id'] === input.backupId);
        if (!b) throw failure('PgBackRestFailed', `pgbackrest backup exited 0 but the repository lists no backup annotated ${input.backupId}`);
        log.info('physical backup written', { label: b.label, type: b.type, bytes: b.repoDeltaBytes });
        return { ...b, node: node.name, durationMs: Date.now() - started, alreadyDone: false };
      } catch (err) {
        throw classify(err, `backing up ${input.database}`);
      } finally {
        hb.stop();
      }
    },

    /** pgBackRest's expire with the configured retention; returns what it removed. */
    async expirePhysicalBackups(input: { database: string }): Promise<{ kept: string[]; expired: string[] }> {
      const t = target(input.database);
      return withHeartbeat(async () => {
        const before = (await info(t)).backups.map((b) => b.label);
        const run = await pgbackrest(t, ['expire']);
        if (run.code !== 0) throw pgbackrestFailure(`expiring backups of stanza ${t.stanza}`, run);
        const after = (await info(t)).backups.map((b) => b.label);
        return { kept: after, expired: before.filter((l) => !after.includes(l)) };
      });
    },

    /** The repository and the source's archiver as they are now, and the window a point-in-time restore can reach. */
    inspectPhysicalRepository: (input: { database: string }) => withHeartbeat(() => overview(target(input.database), input.database)),

    /**
     * `pgbackrest check` (WAL switch, then waits until the segment is archived; skipped while the
     * archiver is failing, since it could only time out), then the archive's continuity from a backup's
     * first WAL segment to the newest archived one, on the timeline the archive ends on.
     */
    async checkPhysicalRepository(input: { database: string; fromWal: string }): Promise<RepositoryCheck> {
      const t = target(input.database);
      return withHeartbeat(async () => {
        const { node, walSegmentBytes } = await primaryNode(t);
        const archiver = await archiverState(t, node, walSegmentBytes);
        let checkOk = false;
        let checkMessage: string;
        let checkSkipped = false;
        if (archiver.failing) {
          checkSkipped = true;
          checkMessage = `skipped: archiving on ${node.name} is failing (last failure ${archiver.lastFailedWal} at ${archiver.lastFailedAt})`;
        } else {
          const run = await pgbackrest(t, ['check', '--archive-timeout=60'], { pg: pgFor(t, node) });
          checkOk = run.code === 0;
          checkMessage = checkOk ? `pgbackrest check on ${node.name}: WAL archiving works` : `pgbackrest check on ${node.name} failed: ${pgbackrestError(run).message}`;
        }
        const repo = await info(t);
        const max = repo.archive?.max;
        if (!repo.archive || !max) return { checkOk, checkMessage, checkSkipped, scanned: { from: input.fromWal, to: '', segments: 0 }, missing: [] };
        const from = parseSegmentName(input.fromWal, walSegmentBytes);
        const to = parseSegmentName(max, walSegmentBytes);
        const hist = await history(t, repo.archive.id, to.timeline);
        const required = requiredSegments(from.segno, to.segno, to.timeline, hist, walSegmentBytes);
        const present = await archivedSegments(t, repo.archive.id, from.segno, to.segno, walSegmentBytes);
        const missing = required.filter((s) => !present.has(s));
        return { checkOk, checkMessage, checkSkipped, archiveMax: max, scanned: { from: input.fromWal, to: max, segments: required.length }, missing };
      });
    },

    /** `pgbackrest verify`: every file of every backup and WAL segment read and checked; the text decides (pgBackRest 2.45 may exit 0 on errors). */
    async verifyPhysicalRepository(input: { database: string }): Promise<{ ok: boolean; problems: string[]; backupsChecked: number; walChecked: number; durationMs: number }> {
      const t = target(input.database);
      const hb = heartbeater();
      try {
        hb.beat({ phase: 'verify' });
        const run = await pgbackrest(t, ['verify', '--output=text', '--verbose'], { signal: hb.signal });
        if (hb.signal.aborted) throw new CancelledFailure('verify cancelled');
        const v = parseVerify(run.stdout);
        if (run.code !== 0 && v.status === 'unknown') throw pgbackrestFailure(`verifying stanza ${t.stanza}`, run);
        return { ok: v.ok && run.code === 0, problems: run.code !== 0 && v.problems.length === 0 ? [pgbackrestError(run).message] : v.problems, backupsChecked: v.backupsChecked, walChecked: v.walChecked, durationMs: run.durationMs };
      } finally {
        hb.stop();
      }
    },

    /** The restore test's report as JSON and Markdown under <prefix><database>/pgbackrest/restore-tests/. */
    async writePhysicalRestoreReport(input: { report: RestoreReport }): Promise<{ jsonKey: string; markdownKey: string; htmlKey: string }> {
      const { report } = input;
      target(report.database);
      if (!deps.reports) throw failure('InvalidInput', `environment ${deps.environment} has no backups: section to write restore-test reports to`);
      if (!/^[a-z0-9-]{4,64}$/.test(report.testId)) throw failure('InvalidInput', `report testId '${report.testId}' is not a test id`);
      const keys = physicalRestoreReportKeys(deps.reports.prefix, report.database, report.testId);
      const store = deps.reports.store;
      const links = deps.reports.links;
      return withHeartbeat(async () => {
        await store.putJson(keys.jsonKey, report);
        await store.putText(keys.markdownKey, renderRestoreReportMarkdown(report), 'text/markdown');
        await store.putText(keys.htmlKey, renderRestoreReportHtml(report, links), 'text/html');
        return keys;
      });
    },
    ...createPhysicalRestoreActivities(ctx),
  };
}

export type PhysicalBackupActivities = ReturnType<typeof createPhysicalBackupActivities>;

/** Used by tests and the CLI: the directory a test's scratch instance lives in. */
export function scratchInstanceDir(scratchDir: string, testId: string): string {
  return scratchPaths(scratchDir, `${SCRATCH_PREFIX}${testId}`).dir;
}
