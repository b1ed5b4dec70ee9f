/**
 * Physical backups and point-in-time restore tests with pgBackRest: backups (full, differential,
 * incremental) from whichever node is primary, retention, the repository's state (info, WAL archive
 * continuity, the source's archiver), `pgbackrest check` and `verify`, and restores into scratch
 * PostgreSQL instances that replay WAL to a target and are then proved against the restore canary.
 */
import { CancelledFailure, Context, log } from '@temporalio/activity';
import { chownSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEFAULT_WAL_SEGMENT_BYTES,
  formatLsn,
  parseHistory,
  parseInfo,
  parseLsn,
  parseSegmentName,
  parseVerify,
  PgBackRestOptions,
  PgBackRestPg,
  PgBackRestRepo,
  PgBackRestRun,
  pgbackrestEnv,
  pgbackrestError,
  PhysicalBackup,
  RepositoryInfo,
  requiredSegments,
  runPgBackRest,
  segmentName,
  segmentOfLsn,
} from '../system/pgbackrest';
import { postgresOwner } from '../system/postgres';
import { MissingBinaryError, freePort, sleep } from '../system/process';
import { freeBytes, pgBinDirFor, prepareScratch, processAlive, readMarker, removeScratch, ScratchInstance, scratchLog, scratchPaths, startScratch, thisCreator } from '../system/scratch';
import { CANARY_COMMIT_MARGIN_MS, CanaryRow, judgeCanary, readCanaryRows, writeCanaryRow } from './canary';
import { checkServedEnvironment, classify, failure } from './errors';
import { heartbeater, withHeartbeat } from './heartbeat';
import { connectPg, PgServer } from './pg';
import { renderRestoreReportMarkdown, RestoreReport } from './reports';
import type { ObjectStore } from './s3';

export interface PhysicalNode {
  name: string;
  host: string;
  port: number;
  dataDir: string;
  socketDir: string;
}

/** One pgBackRest database as the activities see it; secrets are read at each use. */
export interface PhysicalTarget {
  database: string;
  /** Credentials of the database's own role; host and port come from each node. */
  server: PgServer;
  stanza: string;
  repo: () => PgBackRestRepo;
  access: 'local' | 'tls';
  nodes: PhysicalNode[];
  dbUser: string;
  tls?: { port: number; caFile: string; certFile: string; keyFile: string };
  processMax: number;
  compressType: string;
  bundle: boolean;
  retention: { full: number; diff?: number };
  restore: {
    scratchDir: string;
    sharedBuffers: string;
    assertions: { name: string; sql: string }[];
    maxBackupAgeMs?: number;
    maxArchiveAgeMs?: number;
    maxArchiveBacklog: number;
    verifyRepository: boolean;
    randomWindowMs: number;
    canaryKeepMs: number;
  };
}

export interface PhysicalDeps {
  environment: string;
  databases: Record<string, PhysicalTarget>;
  reports?: { store: ObjectStore; prefix: string };
  /** pgBackRest's lock files (default: under the system temp directory). */
  lockDir?: string;
}

export type BackupType = 'full' | 'diff' | 'incr';

export interface PhysicalBackupResult extends PhysicalBackup {
  node: string;
  durationMs: number;
  alreadyDone: boolean;
}

/** The source's WAL archiver, as pg_stat_archiver and the current WAL position tell it. */
export interface ArchiverState {
  node: string;
  currentWal: string;
  lastArchivedWal: string | null;
  lastArchivedAt: string | null;
  lastFailedWal: string | null;
  lastFailedAt: string | null;
  /** Completed segments not archived yet. */
  backlogSegments: number;
  failing: boolean;
  /** WAL written since the last archived segment: what a loss of the primary now would lose. */
  unarchivedWal: boolean;
}

export interface RepositoryOverview {
  database: string;
  stanza: string;
  status: string;
  pgVersion?: string;
  walSegmentBytes: number;
  archive?: { min: string; max: string };
  backups: PhysicalBackup[];
  archiver: ArchiverState;
  /** What can be restored: from the oldest backup's end to the newest archived canary row. */
  window: { from?: string; until?: string; reason?: string };
  canary: { rows: number; newestCovered?: CanaryRow; newest?: CanaryRow };
  /** The restore test's limits from the config. */
  maxBackupAgeMs?: number;
  maxArchiveAgeMs?: number;
  maxArchiveBacklog: number;
  verifyRepository: boolean;
  randomWindowMs: number;
}

export interface RepositoryCheck {
  checkOk: boolean;
  checkMessage: string;
  checkSkipped: boolean;
  archiveMax?: string;
  scanned: { from: string; to: string; segments: number };
  missing: string[];
}

export interface PhysicalRestoreTarget {
  /** Backup set to restore (pgBackRest label). */
  set: string;
  /** immediate: the backup's consistent point; time: replay to a moment; end: replay every archived segment. */
  type: 'immediate' | 'time' | 'end';
  time?: string;
}

export interface PhysicalRestoreResult {
  scratch: string;
  port: number;
  restoreMs: number;
  replayMs: number;
  replayFrom?: string;
  replayTo?: string;
  walReplayedBytes?: number;
  segmentsRestored: number;
  stoppedBecause: string;
  lastTransactionAt?: string;
  replacedLeftover: boolean;
}

const LABEL = /^\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?$/;
const SCRATCH_PREFIX = 'restore-test-';

function walSegmentBytesOf(setting: string | undefined): number {
  const n = Number(setting);
  return Number.isFinite(n) && n > 0 ? n : DEFAULT_WAL_SEGMENT_BYTES;
}

/** pgBackRest's errors: configuration problems are permanent, the rest (S3, locks, timeouts) are retried. */
function pgbackrestFailure(what: string, run: PgBackRestRun) {
  const e = pgbackrestError(run);
  // 31/32/37/38: options; 55: no stanza in the repository; 95/96: TLS certificate; 103: missing repository path.
  const permanent = e.code !== undefined && [31, 32, 37, 38, 55, 95, 96, 103].includes(e.code);
  const hint = e.code === 55 ? ' (has the stanza been created? pgbackrest stanza-create on the database host)' : '';
  return failure(permanent ? 'PgBackRestConfigError' : 'PgBackRestFailed', `${what}: pgbackrest exited with ${run.code}${e.code !== undefined ? ` [${e.code}]` : ''}: ${e.message}${hint}`, {
    exitCode: run.code,
    errorCode: e.code,
  });
}

export function createPhysicalBackupActivities(deps: PhysicalDeps) {
  const lockDir = deps.lockDir ?? join(tmpdir(), 'runbook-pgbackrest');
  const runAs = postgresOwner();

  const target = (database: string): PhysicalTarget => {
    const t = deps.databases[database];
    if (!t) {
      const known = Object.keys(deps.databases);
      throw failure('InvalidInput', `database '${database}' is not backed up with pgBackRest in environment ${deps.environment}; pgBackRest databases: ${known.join(', ') || 'none'}`);
    }
    return t;
  };

  const ensureLockDir = () => {
    mkdirSync(lockDir, { recursive: true, mode: 0o700 });
    if (runAs) chownSync(lockDir, runAs.uid, runAs.gid);
  };

  const pgFor = (t: PhysicalTarget, node: PhysicalNode): PgBackRestPg => ({
    dataDir: node.dataDir,
    port: node.port,
    socketDir: node.socketDir,
    user: t.dbUser,
    tls: t.access === 'tls' && t.tls ? { host: node.host, port: t.tls.port, caFile: t.tls.caFile, certFile: t.tls.certFile, keyFile: t.tls.keyFile } : undefined,
  });

  const options = (t: PhysicalTarget, pg?: PgBackRestPg): PgBackRestOptions => ({
    stanza: t.stanza,
    repo: t.repo(),
    pg,
    lockDir,
    processMax: t.processMax,
    compressType: t.compressType,
    bundle: t.bundle,
    retention: t.retention,
  });

  /** Runs pgBackRest as the user that owns the clusters here (postgres when the worker is root). */
  async function pgbackrest(t: PhysicalTarget, args: string[], opts: { pg?: PgBackRestPg; extraEnv?: Record<string, string>; onLine?: (l: string) => void; signal?: AbortSignal } = {}): Promise<PgBackRestRun> {
    ensureLockDir();
    try {
      return await runPgBackRest(args, { env: pgbackrestEnv(options(t, opts.pg), opts.extraEnv), runAs: t.access === 'local' || !opts.pg ? runAs : undefined, onLine: opts.onLine, signal: opts.signal });
    } catch (err) {
      if (err instanceof MissingBinaryError) throw failure('ProgramMissing', err.message);
      throw err;
    }
  }

  async function info(t: PhysicalTarget, signal?: AbortSignal): Promise<RepositoryInfo> {
    const run = await pgbackrest(t, ['info', '--output=json'], { signal });
    if (run.code !== 0) throw pgbackrestFailure(`reading the repository of stanza ${t.stanza}`, run);
    return parseInfo(run.stdout, t.stanza);
  }

  /** The node that is primary now: backups, checks and the canary follow it after a failover. */
  async function primaryNode(t: PhysicalTarget): Promise<{ node: PhysicalNode; walSegmentBytes: number }> {
    const seen: string[] = [];
    for (const node of t.nodes) {
      try {
        const client = await connectPg({ ...t.server, host: node.host, port: node.port, password: t.server.password }, t.database, 'runbook-pgbackrest');
        try {
          const r = await client.query<{ rec: boolean; seg: string }>("SELECT pg_is_in_recovery() AS rec, current_setting('wal_segment_size') AS seg");
          if (!r.rows[0].rec) return { node, walSegmentBytes: walSegmentBytesOf(parseSize(r.rows[0].seg)) };
          seen.push(`${node.name}: a replica`);
        } finally {
          await client.end().catch(() => undefined);
        }
      } catch (err) {
        seen.push(`${node.name}: ${(err as Error).message}`);
      }
    }
    throw failure('ServerUnreachable', `no node of ${t.database} is a reachable primary (${seen.join('; ')})`);
  }

  async function withSource<T>(t: PhysicalTarget, node: PhysicalNode, fn: (client: Awaited<ReturnType<typeof connectPg>>) => Promise<T>): Promise<T> {
    const client = await connectPg({ ...t.server, host: node.host, port: node.port, password: t.server.password }, t.database, 'runbook-pgbackrest');
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async function archiverState(t: PhysicalTarget, node: PhysicalNode, segBytes: number): Promise<ArchiverState> {
    return withSource(t, node, async (client) => {
      const r = await client.query<{ cur: string; lsn: string; aw: string | null; at: Date | null; fw: string | null; ft: Date | null }>(
        `SELECT pg_walfile_name(pg_current_wal_lsn()) AS cur, pg_current_wal_lsn()::text AS lsn, last_archived_wal AS aw, last_archived_time AS at, last_failed_wal AS fw, last_failed_time AS ft FROM pg_stat_archiver`,
      );
      const x = r.rows[0];
      const cur = parseSegmentName(x.cur, segBytes).segno;
      const last = x.aw && /^[0-9A-F]{24}$/.test(x.aw) ? parseSegmentName(x.aw, segBytes).segno : undefined;
      const backlog = last === undefined ? Number(cur) : Math.max(0, Number(cur - last - 1n));
      const failing = x.ft !== null && (x.at === null || x.ft > x.at);
      // WAL beyond the first bytes of the segment after the last archived one is WAL no archive holds yet.
      const segStart = cur * BigInt(segBytes);
      const unarchivedWal = last === undefined || cur > last + 1n || parseLsn(x.lsn) - segStart > 4096n;
      return {
        node: node.name,
        currentWal: x.cur,
        lastArchivedWal: x.aw,
        lastArchivedAt: x.at?.toISOString() ?? null,
        lastFailedWal: x.fw,
        lastFailedAt: x.ft?.toISOString() ?? null,
        backlogSegments: backlog,
        failing,
        unarchivedWal,
      };
    });
  }

  async function overview(t: PhysicalTarget, database: string, signal?: AbortSignal): Promise<RepositoryOverview> {
    const { node, walSegmentBytes } = await primaryNode(t);
    const [repo, archiver] = await Promise.all([info(t, signal), archiverState(t, node, walSegmentBytes)]);
    const backups = repo.backups.filter((b) => !b.error);
    const window: RepositoryOverview['window'] = {};
    let canary: RepositoryOverview['canary'] = { rows: 0 };
    const max = repo.archive?.max;
    await withSource(t, node, async (client) => {
      const all = await readCanaryRows(client);
      if (!all) return;
      canary = { rows: all.length, newest: all[all.length - 1] };
      if (!max) return;
      const maxSeg = parseSegmentName(max, walSegmentBytes).segno;
      const covered = all.filter((r) => segmentOfLsn(r.lsn, walSegmentBytes) <= maxSeg);
      canary.newestCovered = covered[covered.length - 1];
    });
    if (backups.length === 0) window.reason = 'the repository holds no complete backup';
    else if (!canary.newestCovered) window.reason = canary.rows === 0 ? 'no restore canary row exists yet (schedule the restoreCanary runbook)' : 'no restore canary row is in the archived WAL yet';
    else {
      window.from = backups[0].stoppedAt;
      // A time target needs a commit after it in the archive: the newest archived canary row is one.
      const until = Date.parse(canary.newestCovered.writtenAt) - 1;
      if (until <= Date.parse(window.from)) window.reason = 'no restore canary row was written after the oldest backup ended';
      else window.until = new Date(until).toISOString();
      if (window.reason) window.from = undefined;
    }
    return {
      database,
      stanza: t.stanza,
      status: repo.status.message,
      pgVersion: repo.pgVersion,
      walSegmentBytes,
      archive: repo.archive ? { min: repo.archive.min, max: repo.archive.max } : undefined,
      backups: repo.backups,
      archiver,
      window,
      canary,
      maxBackupAgeMs: t.restore.maxBackupAgeMs,
      maxArchiveAgeMs: t.restore.maxArchiveAgeMs,
      maxArchiveBacklog: t.restore.maxArchiveBacklog,
      verifyRepository: t.restore.verifyRepository,
      randomWindowMs: t.restore.randomWindowMs,
    };
  }

  /** Timeline history of `timeline` from the archive (empty for timeline 1). */
  async function history(t: PhysicalTarget, archiveId: string, timeline: number): Promise<{ timeline: number; switchLsn: string }[]> {
    if (timeline <= 1) return [];
    const name = `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
    const run = await pgbackrest(t, ['repo-get', `archive/${t.stanza}/${archiveId}/${name}`]);
    if (run.code !== 0) throw pgbackrestFailure(`reading ${name}`, run);
    return parseHistory(run.stdout);
  }

  /** Every WAL file of the archive between two segments, by name (pgBackRest stores NAME-sha1.ext). */
  async function archivedSegments(t: PhysicalTarget, archiveId: string, fromSegno: bigint, toSegno: bigint, segBytes: number): Promise<Set<string>> {
    const per = 0x100000000n / BigInt(segBytes);
    const found = new Set<string>();
    const dirs = new Set<string>();
    for (let hi = fromSegno / per; hi <= toSegno / per; hi++) dirs.add(hi.toString(16).toUpperCase().padStart(8, '0'));
    const run = await pgbackrest(t, ['repo-ls', `archive/${t.stanza}/${archiveId}`, '--recurse', '--output=json']);
    if (run.code !== 0) throw pgbackrestFailure('listing the WAL archive', run);
    const listing = JSON.parse(run.stdout) as Record<string, { type: string }>;
    for (const [path, entry] of Object.entries(listing)) {
      if (entry.type !== 'file') continue;
      const [dir, file] = path.split('/');
      if (!file || !dirs.has(dir.slice(8))) continue;
      const m = /^([0-9A-F]{24})(-[0-9a-f]{40})?(\.\w+)?$/.exec(file);
      if (m && !file.includes('.partial') && !file.includes('.backup')) found.add(m[1]);
    }
    return found;
  }

  async function validateConnection<T>(inst: { socketDir: string; port: number }, t: PhysicalTarget, fn: (client: Awaited<ReturnType<typeof connectPg>>) => Promise<T>): Promise<T> {
    // Trust over the scratch instance's own socket: only its owner reaches it.
    const client = await connectPg({ host: inst.socketDir, port: inst.port, user: t.server.user, password: '' }, t.database, 'runbook-restore-validate');
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  const scratchName = (testId: string) => {
    const name = `${SCRATCH_PREFIX}${testId}`;
    scratchPaths('/', name);
    return name;
  };

  return {
    /** Writes one restore-canary row on the current primary and prunes rows older than the canary's retention. */
    async writeRestoreCanary(input: { database: string; environment?: string; workflowId?: string }): Promise<{ row: CanaryRow; pruned: number; node: string }> {
      checkServedEnvironment(input.environment, deps.environment);
      const t = target(input.database);
      return withHeartbeat(async () => {
        const { node } = await primaryNode(t);
        try {
          const r = await withSource(t, node, (client) => writeCanaryRow(client, input.workflowId, t.restore.canaryKeepMs));
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
          ['backup', `--type=${input.type}`, '--start-fast', '--no-expire-auto', '--log-level-console=detail', `--annotation=runbook-backup-id=${input.backupId}`, `--annotation=runbook-node=${node.name}`],
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

    /**
     * Restores a backup set into a fresh scratch instance (whatever an earlier attempt of the same test
     * left is stopped and removed first), starts it on a free port with settings that keep it away from
     * production, and waits while it replays WAL to the target and promotes. A recovery that ends in an
     * error fails with the server's own words (RecoveryFailed).
     */
    async restorePhysicalBackup(input: { database: string; testId: string; workflowId?: string; target: PhysicalRestoreTarget }): Promise<PhysicalRestoreResult> {
      const t = target(input.database);
      if (!LABEL.test(input.target.set)) throw failure('InvalidInput', `'${input.target.set}' is not a pgBackRest backup label`);
      const hb = heartbeater();
      const name = scratchName(input.testId);
      try {
        const repo = await info(t, hb.signal);
        const set = repo.backups.find((b) => b.label === input.target.set);
        if (!set) throw failure('BackupNotFound', `backup ${input.target.set} is not in the repository of stanza ${t.stanza}`);
        const binDir = pgBinDirFor(set.pgVersion);
        const port = await freePort('127.0.0.1');
        const attempt = Context.current().info.attempt;
        const { paths, leftover } = await prepareScratch(t.restore.scratchDir, { name, database: input.database, workflowId: input.workflowId, port, pgMajor: set.pgVersion, kind: 'physical', creator: { ...thisCreator(), attempt } });
        if (leftover) log.info('removed what an earlier attempt left of the scratch instance', { scratch: name });
        const inst: ScratchInstance = { ...paths, port, binDir };
        // A restored copy is the database's size plus WAL to replay: refuse early rather than fill the volume.
        const need = Math.ceil(set.databaseBytes * 1.1) + 256 * 1024 * 1024;
        const free = freeBytes(t.restore.scratchDir);
        if (free < need) {
          throw failure('InsufficientScratchSpace', `restoring ${set.label} needs about ${(need / 1e9).toFixed(1)} GB in ${t.restore.scratchDir}; ${(free / 1e9).toFixed(1)} GB are free (restoreTest.scratchDir)`);
        }
        const pg: PgBackRestPg = { dataDir: inst.dataDir, port };
        const args = ['restore', `--set=${set.label}`, '--archive-mode=off', '--log-level-console=warn'];
        // With a target, promote once it is reached; without one (the end of the archive) recovery promotes by itself.
        if (input.target.type !== 'end') args.push('--target-action=promote');
        if (input.target.type === 'immediate') args.push('--type=immediate');
        // PostgreSQL's recovery_target_time does not take the ISO 8601 "T" form: "2026-11-25 03:00:00.000+00".
        else if (input.target.type === 'time') args.push('--type=time', `--target=${new Date(input.target.time!).toISOString().replace('T', ' ').replace('Z', '+00')}`);
        else args.push('--type=default');
        hb.beat({ phase: 'restore', set: set.label, scratch: name });
        const restore = await pgbackrest(t, args, { pg, signal: hb.signal });
        if (hb.signal.aborted) throw new CancelledFailure('restore cancelled; pgbackrest stopped');
        if (restore.code !== 0) {
          const e = pgbackrestError(restore);
          // A file whose content does not match its checksum: the backup is corrupt, no retry helps.
          if (/checksum|FormatError|data error|\[029\]|\[039\]|\[044\]/i.test(`${e.code ? `[0${e.code}]` : ''} ${e.message}`)) {
            throw failure('BackupChecksumMismatch', `restoring ${set.label} failed: a file of the backup is corrupt: ${e.message}`);
          }
          throw pgbackrestFailure(`restoring ${set.label} into ${name}`, restore);
        }
        // Replay: restore_command fetches each segment from the repository with the worker's repository settings.
        const env = pgbackrestEnv(options(t, pg));
        const settings: Record<string, string> = {
          shared_buffers: t.restore.sharedBuffers,
          restore_command: 'pgbackrest archive-get %f "%p"',
          primary_conninfo: '',
          hot_standby: 'on',
        };
        const replayStarted = Date.now();
        const pid = startScratch(inst, settings, env);
        let segments = 0;
        for (;;) {
          if (hb.signal.aborted) throw new CancelledFailure('restore cancelled during replay');
          const text = scratchLog(inst);
          segments = (text.match(/restored log file "/g) ?? []).length;
          const failed = /aborting startup due to startup process failure|startup process \(PID \d+\) (exited with exit code|was terminated)/.test(text);
          if (failed || !processAlive(pid)) {
            // The startup process's own words; connection refusals while it starts are not the reason.
            const lines = text
              .split('\n')
              .filter((l) => /(FATAL|PANIC|ERROR):/.test(l) && !/the database system is (starting up|not yet accepting connections|shutting down)/.test(l))
              .map((l) => l.replace(/^.*?(FATAL|PANIC|ERROR):\s+/, '$1: '));
            throw failure('RecoveryFailed', `the scratch instance's recovery of ${set.label} failed: ${lines.slice(-4).join('; ') || 'the server exited'}`, { log: text.split('\n').slice(-20).join('\n') });
          }
          if (/database system is ready to accept connections/.test(text)) {
            const promoted = await validateConnection(inst, t, async (c) => (await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0].r === false).catch(() => false);
            if (promoted) break;
          }
          hb.beat({ phase: 'replay', set: set.label, scratch: name, segmentsRestored: segments });
          await sleep(300);
        }
        const replayMs = Date.now() - replayStarted;
        const log2 = scratchLog(inst);
        const from = /redo starts at ([0-9A-F]+\/[0-9A-F]+)/.exec(log2)?.[1];
        const to = /redo done at ([0-9A-F]+\/[0-9A-F]+)/.exec(log2)?.[1];
        const stop = /(recovery stopping [^\n]*)/.exec(log2)?.[1] ?? (/redo done at/.test(log2) ? 'replayed every archived WAL segment' : 'consistent after the backup');
        const lastTx = /last completed transaction was at log time ([^\n]+)/.exec(log2)?.[1];
        return {
          scratch: name,
          port,
          restoreMs: restore.durationMs,
          replayMs,
          replayFrom: from,
          replayTo: to,
          walReplayedBytes: from && to ? Number(parseLsn(to) - parseLsn(from)) : undefined,
          segmentsRestored: segments,
          stoppedBecause: stop,
          lastTransactionAt: lastTx ? new Date(lastTx.replace(' ', 'T').replace(/\+00$/, 'Z')).toISOString() : undefined,
          replacedLeftover: leftover,
        };
      } catch (err) {
        if (err instanceof MissingBinaryError) throw failure('ProgramMissing', err.message);
        throw classify(err, `restoring into ${name}`);
      } finally {
        hb.stop();
      }
    },

    /**
     * Proves the restored copy: recovery reached where it should (the target, or the archive's end),
     * the canary holds exactly the rows written before the target, and the configured SQL checks hold.
     */
    async validatePhysicalRestore(input: {
      database: string;
      testId: string;
      target: PhysicalRestoreTarget;
      /** Canary rows before this must be there, none after `after`; without it (replay to the end), every row in the archive must be. */
      canaryWindow?: { before: string; after: string; label: string };
      replay: { replayTo?: string };
      archiveMax?: string;
    }): Promise<{ name: string; passed: boolean; detail: string }[]> {
      const t = target(input.database);
      return withHeartbeat(async () => {
        const p = scratchPaths(t.restore.scratchDir, scratchName(input.testId));
        const marker = readMarker(t.restore.scratchDir, p.name);
        if (!marker) throw failure('RecoveryFailed', `the scratch instance ${p.name} is gone`);
        const inst = { socketDir: p.socketDir, port: marker.port };
        const checks: { name: string; passed: boolean; detail: string }[] = [];
        const { node, walSegmentBytes } = await primaryNode(t);
        if (input.target.type === 'end' && input.archiveMax && input.replay.replayTo) {
          // Replay that stops early (a segment the archive cannot give) ends recovery silently: compare where it ended.
          const endSeg = segmentOfLsn(input.replay.replayTo, walSegmentBytes);
          const maxSeg = parseSegmentName(input.archiveMax, walSegmentBytes).segno;
          checks.push({
            name: 'replay reached the end of the archive',
            passed: endSeg >= maxSeg,
            detail:
              endSeg >= maxSeg
                ? `replayed to ${input.replay.replayTo}, in the newest archived segment ${input.archiveMax}`
                : `replay ended at ${input.replay.replayTo} (segment ${segmentName(parseSegmentName(input.archiveMax, walSegmentBytes).timeline, endSeg, walSegmentBytes)}), but the archive reaches ${input.archiveMax}: the WAL from ${formatLsn((endSeg + 1n) * BigInt(walSegmentBytes))} on was not replayed`,
          });
        }
        const source = (await withSource(t, node, (c) => readCanaryRows(c))) ?? [];
        const restored = await validateConnection(inst, t, (c) => readCanaryRows(c));
        let window: { before: number; after: number; label: string };
        if (input.canaryWindow) window = { before: Date.parse(input.canaryWindow.before), after: Date.parse(input.canaryWindow.after), label: input.canaryWindow.label };
        else {
          // Replayed to the end: every row whose WAL lies in a segment before the newest archived one committed in the archive.
          const maxSeg = input.archiveMax ? parseSegmentName(input.archiveMax, walSegmentBytes).segno : -1n;
          const inArchive = source.filter((r) => segmentOfLsn(r.lsn, walSegmentBytes) < maxSeg);
          const last = inArchive[inArchive.length - 1];
          window = { before: last ? Date.parse(last.writtenAt) + CANARY_COMMIT_MARGIN_MS + 1 : 0, after: Number.POSITIVE_INFINITY, label: `the end of the archive (${input.archiveMax ?? '-'})` };
        }
        const verdict = judgeCanary(source, restored ?? [], window, window.label);
        checks.push({ name: 'restore canary', passed: verdict.passed, detail: verdict.detail });
        await validateConnection(inst, t, async (client) => {
          for (const assertion of t.restore.assertions) {
            try {
              await client.query('BEGIN READ ONLY');
              await client.query("SET LOCAL statement_timeout = '60s'");
              const res = await client.query({ text: assertion.sql, rowMode: 'array' });
              await client.query('ROLLBACK');
              const value = res.rows[0]?.[0];
              checks.push({ name: `assertion: ${assertion.name}`, passed: value === true, detail: value === true ? 'returned true' : `returned ${JSON.stringify(value ?? null)}, expected true` });
            } catch (err) {
              await client.query('ROLLBACK').catch(() => undefined);
              checks.push({ name: `assertion: ${assertion.name}`, passed: false, detail: `failed: ${(err as Error).message}` });
            }
          }
        });
        return checks;
      });
    },

    /** Stops and removes a restore test's scratch instance; removing one that does not exist is a no-op. */
    async removeScratchInstance(input: { database: string; testId: string }): Promise<{ existed: boolean; wasRunning: boolean }> {
      const t = target(input.database);
      return withHeartbeat(() => removeScratch(t.restore.scratchDir, scratchName(input.testId)));
    },

    /** The restore test's report as JSON and Markdown under <prefix><database>/pgbackrest/restore-tests/. */
    async writePhysicalRestoreReport(input: { report: RestoreReport }): Promise<{ jsonKey: string; markdownKey: string }> {
      const { report } = input;
      target(report.database);
      if (!deps.reports) throw failure('InvalidInput', `environment ${deps.environment} has no backups: section to write restore-test reports to`);
      if (!/^[a-z0-9-]{4,64}$/.test(report.testId)) throw failure('InvalidInput', `report testId '${report.testId}' is not a test id`);
      const base = `${deps.reports.prefix}${report.database}/pgbackrest/restore-tests/${report.testId}`;
      const keys = { jsonKey: `${base}.json`, markdownKey: `${base}.md` };
      const store = deps.reports.store;
      return withHeartbeat(async () => {
        await store.putJson(keys.jsonKey, report);
        await store.putText(keys.markdownKey, renderRestoreReportMarkdown(report), 'text/markdown');
        return keys;
      });
    },
  };
}

/** `current_setting('wal_segment_size')` says "16MB". */
function parseSize(text: string): string {
  const m = /^(\d+)\s*(kB|MB|GB)?$/.exec(text.trim());
  if (!m) return text;
  const unit = { kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 }[m[2] as 'kB' | 'MB' | 'GB'] ?? 1;
  return String(Number(m[1]) * unit);
}

export type PhysicalBackupActivities = ReturnType<typeof createPhysicalBackupActivities>;

/** Used by tests and the CLI: the directory a test's scratch instance lives in. */
export function scratchInstanceDir(scratchDir: string, testId: string): string {
  return scratchPaths(scratchDir, `${SCRATCH_PREFIX}${testId}`).dir;
}

