/**
 * What the pgBackRest activities share: the databases' settings, running pgBackRest as the clusters'
 * owner, finding the current primary, reading the repository and the source's archiver, and reaching a
 * scratch instance. The activities themselves are in pgbackrest.ts (backups, the repository, reports)
 * and pgbackrestRestore.ts (restores into scratch instances and their proof).
 */
import type { ReportLinks } from '../reports/html';
import { chownSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEFAULT_WAL_SEGMENT_BYTES,
  parseHistory,
  parseInfo,
  parseLsn,
  parseSegmentName,
  PgBackRestOptions,
  PgBackRestPg,
  PgBackRestRepo,
  PgBackRestRun,
  pgbackrestEnv,
  pgbackrestError,
  PhysicalBackup,
  RepositoryInfo,
  runPgBackRest,
  segmentOfLsn,
} from '../system/pgbackrest';
import { postgresOwner } from '../system/postgres';
import { MissingBinaryError } from '../system/process';
import { scratchPaths } from '../system/scratch';
import { CanaryRow, readCanaryRows } from './canary';
import { failure } from './errors';
import { connectPg, PgServer } from './pg';
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
  /** Credentials of the backup role; host and port come from each node. */
  server: PgServer;
  /** Credentials of the canary role (the restore canary's writes); host and port come from each node. */
  canary: PgServer;
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
  reports?: { store: ObjectStore; prefix: string; links?: ReportLinks };
  /** pgBackRest's lock files (default: under the system temp directory). */
  lockDir?: string;
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

export const LABEL = /^\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?$/;
export const SCRATCH_PREFIX = 'restore-test-';

function walSegmentBytesOf(setting: string | undefined): number {
  const n = Number(setting);
  return Number.isFinite(n) && n > 0 ? n : DEFAULT_WAL_SEGMENT_BYTES;
}

/** pgBackRest's errors: configuration problems are permanent, the rest (S3, locks, timeouts) are retried. */
export function pgbackrestFailure(what: string, run: PgBackRestRun) {
  const e = pgbackrestError(run);
  // 31/32/37/38: options; 55: no stanza in the repository; 95/96: TLS certificate; 103: missing repository path.
  const permanent = e.code !== undefined && [31, 32, 37, 38, 55, 95, 96, 103].includes(e.code);
  const hint = e.code === 55 ? ' (has the stanza been created? pgbackrest stanza-create on the database host)' : '';
  return failure(permanent ? 'PgBackRestConfigError' : 'PgBackRestFailed', `${what}: pgbackrest exited with ${run.code}${e.code !== undefined ? ` [${e.code}]` : ''}: ${e.message}${hint}`, {
    exitCode: run.code,
    errorCode: e.code,
  });
}

type PgClient = Awaited<ReturnType<typeof connectPg>>;

/** The node of a cluster that is primary now (not in recovery), and the cluster's WAL segment size. */
export async function findPrimary<N extends { name: string; host: string; port: number }>(server: PgServer, database: string, nodes: N[]): Promise<{ node: N; walSegmentBytes: number }> {
  const seen: string[] = [];
  for (const node of nodes) {
    try {
      const client = await connectPg({ ...server, host: node.host, port: node.port, password: server.password }, database, 'runbook-pgbackrest');
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
  throw failure('ServerUnreachable', `no node of ${database} is a reachable primary (${seen.join('; ')})`);
}

export function physicalContext(deps: PhysicalDeps) {
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
  const primaryNode = (t: PhysicalTarget) => findPrimary(t.server, t.database, t.nodes);

  async function withSource<T>(t: PhysicalTarget, node: PhysicalNode, fn: (client: PgClient) => Promise<T>, login: PgServer = t.server): Promise<T> {
    const client = await connectPg({ ...login, host: node.host, port: node.port, password: login.password }, t.database, 'runbook-pgbackrest');
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
      // The last archived file may be a segment, or a backup label (000000020000000000000048.00000028.backup)
      // or partial segment named after one: each names the segment it belongs to. A timeline history
      // file (00000002.history) names none.
      const lastSegment = x.aw ? /^([0-9A-F]{24})(\.|$)/.exec(x.aw)?.[1] : undefined;
      const last = lastSegment ? parseSegmentName(lastSegment, segBytes).segno : undefined;
      // Nothing archived yet: every segment so far waits; a history file last: its segment is not known, so none is counted.
      const backlog = last !== undefined ? Math.max(0, Number(cur - last - 1n)) : x.aw ? 0 : Number(cur);
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

  async function validateConnection<T>(inst: { socketDir: string; port: number }, t: PhysicalTarget, fn: (client: PgClient) => Promise<T>): Promise<T> {
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
  return { deps, target, pgFor, options, pgbackrest, info, primaryNode, withSource, archiverState, overview, history, archivedSegments, validateConnection, scratchName };
}

export type PhysicalContext = ReturnType<typeof physicalContext>;

/** `current_setting('wal_segment_size')` says "16MB". */
function parseSize(text: string): string {
  const m = /^(\d+)\s*(kB|MB|GB)?$/.exec(text.trim());
  if (!m) return text;
  const unit = { kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 }[m[2] as 'kB' | 'MB' | 'GB'] ?? 1;
  return String(Number(m[1]) * unit);
}
