import { CancelledFailure, Context, log } from '@temporalio/activity';
import type { ReportLinks } from '../reports/html';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { findPgBinary } from '../system/postgres';
import { MissingBinaryError } from '../system/process';
import { pgBinDirFor, scratchPaths } from '../system/scratch';
import { dumpScratchServer, majorVersion, removeDumpScratch, restoreGlobals, scratchInstanceName, startDumpScratch } from './dumpScratch';
import { checkServedEnvironment, classify, failure } from './errors';
import { planParts, uploadInGrowingParts } from './multipart';
import { heartbeater, withHeartbeat } from './heartbeat';
import { connectPg, listTables, PgServer, pgToolEnv, quoteIdent, serverVersion, tableStats, TableStats } from './pg';
import { renderRestoreReportHtml, renderRestoreReportMarkdown, RestoreReport } from './reports';
import type { ObjectStore } from './s3';

/**
 * Where a database is reached: a fixed service address (a DNS name or proxy that follows the primary),
 * or a lookup of the current primary through the topology driver, made at each use so a backup or a
 * restore test after a failover reaches the new primary, never a node's old address.
 */
export type ServerLocator = PgServer | (() => Promise<PgServer>);

const reach = (s: ServerLocator): Promise<PgServer> => Promise.resolve(typeof s === 'function' ? s() : s);

/** One database as the backup activities see it: where it lives and where its restore tests run. */
export interface BackupTarget {
  server: ServerLocator;
  database: string;
  /** dump: pg_dump to S3 (this module); pgbackrest: physical backups (src/activities/pgbackrest.ts). */
  method?: 'dump' | 'pgbackrest';
  /** The role the runbook connects as (the superuser of a scratch instance it starts). */
  user: string;
  restore: {
    server: ServerLocator;
    jobs: number;
    randomWindowMs: number;
    assertions: { name: string; sql: string }[];
    maxBackupAgeMs?: number;
    /**
     * Where the scratch database is made: a scratch instance the worker starts (default), the restore
     * server (`server`), or the source server itself (`server` is then the source).
     */
    into?: 'scratchInstance' | 'restoreServer' | 'sourceServer';
    scratchDir?: string;
    sharedBuffers?: string;
  };
  /** Roles and other globals (pg_dumpall --globals-only) beside each dump. */
  globals?: boolean;
  /** Temporal's own persistence database: a restore test also compares its schema_version with the live server's. */
  temporalSchema?: boolean;
}

export interface BackupDeps {
  environment: string;
  store: ObjectStore;
  prefix: string;
  databases: Record<string, BackupTarget>;
  retention: { keepLast?: number; maxAgeMs?: number };
  /** S3's part-count limit, lowered only to test that dumps stay within it. */
  multipart?: { maxParts: number };
  /** The Temporal UI, for links in the restore test's HTML page. */
  links?: ReportLinks;
}

export interface BackupManifest {
  formatVersion: 1;
  backupId: string;
  environment: string;
  /** The config name of the database (e.g. main) and its name on the server. */
  database: string;
  databaseName: string;
  server: { host: string; port: number; version: string };
  format: 'pg_dump custom';
  dumpKey: string;
  startedAt: string;
  endedAt: string;
  bytes: number;
  sha256: string;
  /** Row counts and checksums from the dump's own snapshot. */
  tables: TableStats[];
  /** The database's size when the dump began (what a restore writes, roughly). */
  databaseBytes?: number;
  /** How the dump was uploaded: the part sizes grow with the dump (src/activities/multipart.ts). */
  upload?: { parts: number; partBytes: number[] };
  /** Owner and privileges of each table, from the same snapshot: checked when the globals are restored too. */
  ownership?: TableOwnership[];
  /** pg_dumpall --globals-only beside the dump (roles, their memberships and settings). */
  globals?: { key: string; bytes: number; sha256: string; rolePasswords: boolean };
}

export interface TableOwnership {
  schema: string;
  name: string;
  owner: string;
  /** The table's ACL items, sorted; null when it has the default privileges. */
  acl: string[] | null;
}

async function tableOwnership(client: Awaited<ReturnType<typeof connectPg>>): Promise<TableOwnership[]> {
  const res = await client.query<{ schema: string; name: string; owner: string; acl: string[] | null }>(
    `SELECT n.nspname AS schema, c.relname AS name, pg_get_userbyid(c.relowner) AS owner, c.relacl::text[] AS acl
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
      ORDER BY 1, 2`,
  );
  return res.rows.map((r) => ({ ...r, acl: r.acl ? [...r.acl].sort() : null }));
}

export interface BackupListEntry {
  backupId: string;
  endedAt: string;
  bytes: number;
  sha256: string;
  manifestKey: string;
  dumpKey: string;
  tableCount: number;
}

export interface RestoreCheck {
  name: string;
  passed: boolean;
  detail: string;
}

const SCRATCH_NAME = /^restore_test_[a-z0-9]{4,40}$/;
const BACKUP_ID = /^\d{8}T\d{6}Z-[a-z0-9]{4,16}$/;

/** Streams bytes through while counting them and computing their sha256. */
class Digest extends Transform {
  bytes = 0;
  private readonly hash = createHash('sha256');
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    done(null, chunk);
  }
  hex(): string {
    return this.hash.digest('hex');
  }
}

/**
 * Feeds a tool's stdin; once the tool has exited (pg_restore on an error) the rest of the stream is
 * read and discarded, so the checksum still covers the whole object and a restore that died (a
 * terminated connection) is not mistaken for a corrupt backup.
 */
function feedOrDiscard(stdin: Writable): Writable {
  let gone = false;
  let waiting: (() => void) | undefined;
  const release = () => {
    gone = true;
    const w = waiting;
    waiting = undefined;
    w?.();
  };
  stdin.on('error', release);
  stdin.on('close', release);
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      if (gone || stdin.write(chunk)) return done();
      waiting = done;
      stdin.once('drain', () => {
        if (waiting === done) {
          waiting = undefined;
          done();
        }
      });
    },
    final(done) {
      if (!gone) stdin.end();
      done();
    },
  });
}

interface ToolRun {
  exitCode: Promise<number>;
  stderrTail: () => string;
}

function runTool(command: string, args: string[], env: NodeJS.ProcessEnv, stdio: ['pipe' | 'ignore', 'pipe' | 'ignore'], signal: AbortSignal) {
  const child = spawn(command, args, { env, stdio: [stdio[0], stdio[1], 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4_000);
  });
  const onAbort = () => child.kill('SIGTERM');
  signal.addEventListener('abort', onAbort, { once: true });
  const exitCode = new Promise<number>((resolve) => {
    child.on('error', (err) => {
      stderr += err.message;
      resolve(-1);
    });
    child.on('close', (code) => {
      signal.removeEventListener('abort', onAbort);
      resolve(code ?? -1);
    });
  });
  const run: ToolRun = { exitCode, stderrTail: () => stderr.trim().split('\n').slice(-8).join('\n') };
  return { child, ...run };
}

/** Whether a scratch database's tables were created unlogged, and why not when they were not. */
export interface UnloggedScratch {
  enabled: boolean;
  reason?: string;
}

const UNLOGGED_SCHEMA = 'runbook_scratch_unlogged';

/**
 * The scratch database is thrown away after the test, so its tables need no write-ahead log and no
 * vacuuming: an event trigger turns each table pg_restore creates (still empty) into an unlogged one
 * with autovacuum off, and the rows are then copied in without writing them a second time to the WAL
 * (nor shipping them to the restore server's replicas), and no autovacuum worker scans the freshly
 * restored tables while they are validated. What the test checks is unchanged: the same rows, counts
 * and checksums, the same indexes and constraints. Only a superuser may create event triggers; for
 * any other restore user the tables stay logged and the reason is reported.
 */
async function createTablesUnlogged(server: PgServer, database: string): Promise<UnloggedScratch> {
  const client = await connectPg(server, database, 'runbook-restore-admin');
  try {
    await client.query(`CREATE SCHEMA ${UNLOGGED_SCHEMA}`);
    await client.query(`
      CREATE FUNCTION ${UNLOGGED_SCHEMA}.set_unlogged() RETURNS event_trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $$
      DECLARE t regclass;
      BEGIN
        FOR t IN SELECT c.objid::regclass FROM pg_event_trigger_ddl_commands() c JOIN pg_class k ON k.oid = c.objid
                  WHERE c.command_tag = 'CREATE TABLE' AND k.relkind = 'r' AND NOT k.relispartition AND k.relpersistence = 'p' LOOP
          EXECUTE format('ALTER TABLE %s SET UNLOGGED, SET (autovacuum_enabled = off, toast.autovacuum_enabled = off)', t);
        END LOOP;
      END $$`);
    await client.query(`CREATE EVENT TRIGGER ${UNLOGGED_SCHEMA} ON ddl_command_end WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION ${UNLOGGED_SCHEMA}.set_unlogged()`);
    return { enabled: true };
  } catch (err) {
    const e = err as Error & { code?: string };
    if (e.code !== '42501') throw err;
    await client.query(`DROP SCHEMA IF EXISTS ${UNLOGGED_SCHEMA} CASCADE`).catch(() => undefined);
    log.info('scratch tables stay logged: the restore user may not create event triggers', { database });
    return { enabled: false, reason: `the restore user ${server.user} may not create event triggers (${e.message})` };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** After the restore the scratch database holds what the dump holds, and nothing of ours. */
async function removeUnloggedTrigger(server: PgServer, database: string): Promise<void> {
  const client = await connectPg(server, database, 'runbook-restore-admin');
  try {
    await client.query(`DROP EVENT TRIGGER IF EXISTS ${UNLOGGED_SCHEMA}`);
    await client.query(`DROP SCHEMA IF EXISTS ${UNLOGGED_SCHEMA} CASCADE`);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Where a dump's objects live: the dump, its manifest and its globals under <prefix><database>/<backupId>/. */
export function dumpBackupKeys(prefix: string, database: string, backupId: string) {
  const base = `${prefix}${database}/${backupId}/`;
  return { base, dump: `${base}dump.pgcustom`, manifest: `${base}manifest.json`, globals: `${base}globals.sql` };
}

/** A dump restore test's report: beside the backup it tested, or under the database when none was chosen. */
export function restoreReportKeys(prefix: string, database: string, backupId: string | undefined, testId: string): { jsonKey: string; markdownKey: string; htmlKey: string } {
  const dir = backupId ? dumpBackupKeys(prefix, database, backupId).base : `${prefix}${database}/`;
  const base = `${dir}restore-tests/${testId}`;
  return { jsonKey: `${base}.json`, markdownKey: `${base}.md`, htmlKey: `${base}.html` };
}

/**
 * The dump retention rule, on backups newest first (as listBackups gives them): kept are the newest
 * keepLast and those younger than maxAge, and the newest backup always; without either limit, all.
 */
export function retentionVerdict(backups: readonly { backupId: string; endedAt: string }[], policy: { keepLast?: number; maxAgeMs?: number }, nowMs: number): { kept: string[]; deleted: string[] } {
  const { keepLast, maxAgeMs } = policy;
  if (keepLast === undefined && maxAgeMs === undefined) return { kept: backups.map((b) => b.backupId), deleted: [] };
  const kept: string[] = [];
  const deleted: string[] = [];
  for (const [i, b] of backups.entries()) {
    const young = maxAgeMs !== undefined && nowMs - Date.parse(b.endedAt) < maxAgeMs;
    const recent = keepLast !== undefined && i < keepLast;
    (i === 0 || young || recent ? kept : deleted).push(b.backupId);
  }
  return { kept, deleted };
}

export function createBackupActivities(deps: BackupDeps) {
  const target = (database: string): BackupTarget => {
    const t = deps.databases[database];
    if (!t) {
      const known = Object.keys(deps.databases);
      throw failure('InvalidInput', `database '${database}' is not configured for environment ${deps.environment}; configured: ${known.join(', ') || 'none'}`);
    }
    return t;
  };
  const backupPrefix = (database: string) => `${deps.prefix}${database}/`;
  const keysFor = (database: string, backupId: string) => {
    if (!BACKUP_ID.test(backupId)) throw failure('InvalidInput', `backupId '${backupId}' is not a backup id (expected e.g. 20261125T030000Z-a1b2c3)`);
    return dumpBackupKeys(deps.prefix, database, backupId);
  };
  const checkScratch = (name: string) => {
    // Only databases this runbook created may be dropped: the name is the guard.
    if (!SCRATCH_NAME.test(name)) throw failure('InvalidInput', `scratch database name '${name}' must match ${SCRATCH_NAME}`);
  };

  async function listBackups(input: { database: string }): Promise<BackupListEntry[]> {
    target(input.database);
    const objects = await deps.store.list(backupPrefix(input.database));
    const manifests = objects.filter((o) => o.key.endsWith('/manifest.json'));
    const entries: BackupListEntry[] = [];
    for (const m of manifests) {
      const manifest = await deps.store.getJson<BackupManifest>(m.key);
      entries.push({ backupId: manifest.backupId, endedAt: manifest.endedAt, bytes: manifest.bytes, sha256: manifest.sha256, manifestKey: m.key, dumpKey: manifest.dumpKey, tableCount: manifest.tables.length });
    }
    return entries.sort((a, b) => (a.endedAt < b.endedAt ? 1 : a.endedAt > b.endedAt ? -1 : 0));
  }

  async function applyRetention(input: { database: string; nowMs: number }): Promise<{ kept: string[]; deleted: string[] }> {
    const backups = await listBackups({ database: input.database });
    const verdict = retentionVerdict(backups, deps.retention, input.nowMs);
    const deleted: string[] = [];
    for (const backupId of verdict.deleted) {
      const keys = keysFor(input.database, backupId);
      await deps.store.deleteKeys([keys.manifest]);
      const rest = (await deps.store.list(keys.base)).map((o) => o.key);
      if (rest.length) await deps.store.deleteKeys(rest);
      deleted.push(backupId);
    }
    if (deleted.length) log.info('retention applied', { kept: verdict.kept.length, deleted });
    return { kept: verdict.kept, deleted };
  }

  /** The restored schema_version row of Temporal's database against the one the running server uses. */
  async function temporalSchemaCheck(t: BackupTarget, restored: Awaited<ReturnType<typeof connectPg>>): Promise<RestoreCheck> {
    const query = 'SELECT curr_version FROM schema_version WHERE db_name = $1';
    const found = (await restored.query<{ curr_version: string }>(query, [t.database]).catch(() => ({ rows: [] as { curr_version: string }[] }))).rows[0]?.curr_version;
    const live = await connectPg(await reach(t.server), t.database, 'runbook-restore-validate');
    try {
      const expected = (await live.query<{ curr_version: string }>(query, [t.database])).rows[0]?.curr_version;
      const passed = found !== undefined && found === expected;
      return {
        name: 'Temporal schema version',
        passed,
        detail: found === undefined ? `the restored copy has no schema_version row for ${t.database}` : passed ? `schema ${found}, as the running server's database` : `restored schema ${found}, the running server's database has ${expected ?? 'none'}`,
      };
    } finally {
      await live.end().catch(() => undefined);
    }
  }

  /** Compares the restored copy with the manifest, table by table, then runs the configured assertions. */
  async function validateRestoredDatabase(input: { database: string; backupId: string; scratchName: string }): Promise<RestoreCheck[]> {
    const t = target(input.database);
    checkScratch(input.scratchName);
    const manifest = await deps.store.getJson<BackupManifest>(keysFor(input.database, input.backupId).manifest);
    const scratch = t.restore.into === 'scratchInstance' ? dumpScratchServer(t.restore.scratchDir!, input.scratchName, t.user) : undefined;
    if (t.restore.into === 'scratchInstance' && !scratch) throw failure('RestoreFailed', `the scratch instance of ${input.scratchName} is not on this worker's host (restoreTest.scratchDir ${t.restore.scratchDir})`);
    const client = await connectPg(scratch ?? (await reach(t.restore.server)), input.scratchName, 'runbook-restore-validate');
    const checks: RestoreCheck[] = [];
    try {
      const globals = scratch ? readGlobalsOutcome(t.restore.scratchDir!, input.scratchName) : undefined;
      if (globals) {
        checks.push({
          name: 'roles and globals restored',
          passed: globals.errors.length === 0,
          detail: globals.errors.length === 0 ? `${manifest.globals!.bytes} bytes of pg_dumpall --globals-only applied${globals.rolePasswords ? '' : ' (without role passwords)'}` : globals.errors.slice(0, 5).join('; '),
        });
      }
      const present = new Set((await listTables(client)).map((x) => `${x.schema}.${x.name}`));
      const missing = manifest.tables.filter((x) => !present.has(`${x.schema}.${x.name}`)).map((x) => `${x.schema}.${x.name}`);
      checks.push({
        name: 'schema present',
        passed: missing.length === 0,
        detail: missing.length === 0 ? `all ${manifest.tables.length} tables present` : `missing tables: ${missing.join(', ')}`,
      });
      for (const expected of manifest.tables) {
        const qualified = `${expected.schema}.${expected.name}`;
        if (!present.has(qualified)) continue;
        const found = await tableStats(client, expected);
        const passed = found.rows === expected.rows && found.checksum === expected.checksum;
        checks.push({
          name: `table ${qualified}`,
          passed,
          detail: passed
            ? `${found.rows} rows, checksum matches`
            : `expected ${expected.rows} rows (checksum ${expected.checksum}), found ${found.rows} rows (checksum ${found.checksum})`,
        });
      }
      if (globals && manifest.ownership) {
        // With the roles restored, pg_restore kept owners and grants: each table's must equal the source's.
        const found = new Map((await tableOwnership(client)).map((o) => [`${o.schema}.${o.name}`, o]));
        const differing = manifest.ownership.filter((o) => {
          const f = found.get(`${o.schema}.${o.name}`);
          return !f || f.owner !== o.owner || JSON.stringify(f.acl) !== JSON.stringify(o.acl);
        });
        checks.push({
          name: 'owners and privileges',
          passed: differing.length === 0,
          detail:
            differing.length === 0
              ? `${manifest.ownership.length} tables with the source's owners and grants`
              : differing
                  .slice(0, 5)
                  .map((o) => {
                    const f = found.get(`${o.schema}.${o.name}`);
                    return `${o.schema}.${o.name}: expected owner ${o.owner} ${JSON.stringify(o.acl)}, found ${f ? `${f.owner} ${JSON.stringify(f.acl)}` : 'no table'}`;
                  })
                  .join('; '),
        });
      }
      if (t.temporalSchema) checks.push(await temporalSchemaCheck(t, client));
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
      return checks;
    } catch (err) {
      throw classify(err, `validating ${input.scratchName}`);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /**
   * pg_dumpall --globals-only (roles, memberships, role settings, tablespaces) uploaded beside the dump.
   * Reading role passwords needs a superuser; without one the roles are dumped without them.
   */
  async function dumpGlobals(t: BackupTarget, key: string, signal: AbortSignal): Promise<NonNullable<BackupManifest['globals']>> {
    const server = await reach(t.server);
    for (const rolePasswords of [true, false]) {
      const run = runTool(
        findPgBinary('pg_dumpall'),
        ['-h', server.host, '-p', String(server.port), '-U', server.user, '-l', t.database, '--globals-only', '--no-password', ...(rolePasswords ? [] : ['--no-role-passwords'])],
        pgToolEnv(server, 'runbook-backup-globals'),
        ['ignore', 'pipe'],
        signal,
      );
      const digest = new Digest();
      const chunks: Buffer[] = [];
      await pipeline(run.child.stdout!, digest, new Writable({ write: (c: Buffer, _e, done) => (chunks.push(c), done()) }));
      const code = await run.exitCode;
      if (code !== 0) {
        if (rolePasswords && /permission denied/i.test(run.stderrTail())) continue;
        throw failure('DumpFailed', `pg_dumpall --globals-only exited with ${code}: ${run.stderrTail()}`);
      }
      await deps.store.putText(key, Buffer.concat(chunks).toString(), 'application/sql');
      return { key, bytes: digest.bytes, sha256: digest.hex(), rolePasswords };
    }
    throw failure('DumpFailed', 'pg_dumpall --globals-only failed');
  }

  return {
    /** Checks the bucket and the database's server exist and answer, before anything is written. */
    async preflightBackupTarget(input: {
      database: string;
      environment?: string;
    }): Promise<{ databaseName: string; serverVersion: string; maxBackupAgeMs?: number; randomWindowMs: number; method: 'dump' | 'pgbackrest'; restoreInto: 'scratchInstance' | 'restoreServer' | 'sourceServer' }> {
      checkServedEnvironment(input.environment, deps.environment);
      const t = target(input.database);
      return withHeartbeat(async () => {
        await deps.store.checkBucket();
        const client = await connectPg(await reach(t.server), t.database, 'runbook-preflight');
        try {
          return { databaseName: t.database, serverVersion: await serverVersion(client), maxBackupAgeMs: t.restore.maxBackupAgeMs, randomWindowMs: t.restore.randomWindowMs, method: t.method ?? 'dump', restoreInto: t.restore.into ?? 'restoreServer' };
        } finally {
          await client.end().catch(() => undefined);
        }
      });
    },

    /**
     * pg_dump in custom format streamed into a multipart upload, with row counts and checksums taken
     * from the same snapshot the dump reads. The manifest is written last: a backup without one is
     * incomplete and never listed. Re-running with the same backupId after success is a no-op.
     */
    async takeBackup(input: { database: string; backupId: string }): Promise<BackupListEntry> {
      const t = target(input.database);
      const keys = keysFor(input.database, input.backupId);
      if (await deps.store.exists(keys.manifest)) {
        const m = await deps.store.getJson<BackupManifest>(keys.manifest);
        log.info('backup already complete; nothing to do', { backupId: input.backupId });
        return { backupId: m.backupId, endedAt: m.endedAt, bytes: m.bytes, sha256: m.sha256, manifestKey: keys.manifest, dumpKey: m.dumpKey, tableCount: m.tables.length };
      }
      await deps.store.checkBucket();
      // A previous attempt that died mid-upload (its worker killed) left its parts behind.
      const aborted = await deps.store.abortIncompleteUploads(keys.dump);
      if (aborted) log.info('aborted unfinished uploads of an earlier attempt', { backupId: input.backupId, aborted });
      const hb = heartbeater();
      const server = await reach(t.server);
      const client = await connectPg(server, t.database, 'runbook-backup');
      try {
        // The exported snapshot is held by this open transaction until pg_dump has finished.
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
        const snapshot = (await client.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0].s;
        const version = await serverVersion(client);
        const databaseBytes = Number((await client.query<{ b: string }>('SELECT pg_database_size(current_database())::text AS b')).rows[0].b);
        const startedAt = new Date().toISOString();
        const dump = runTool(
          findPgBinary('pg_dump'),
          ['-h', server.host, '-p', String(server.port), '-U', server.user, '-d', t.database, '-Fc', `--snapshot=${snapshot}`, '--no-password'],
          pgToolEnv(server, 'runbook-backup-dump'),
          ['ignore', 'pipe'],
          hb.signal,
        );
        const digest = new Digest();
        const body = new PassThrough();
        dump.child.stdout!.pipe(digest).pipe(body);
        // Part sizes planned from the database's size and growing past it: the dump stays within S3's part limit.
        const uploaded = uploadInGrowingParts(deps.store, keys.dump, body, 'application/octet-stream', planParts(databaseBytes, deps.multipart?.maxParts));
        // Awaited below, after the checksums; an upload failing before then must not be an unhandled rejection (it would end the worker).
        uploaded.catch(() => undefined);
        const tables: TableStats[] = [];
        const tableList = await listTables(client);
        const progress = setInterval(() => hb.beat({ phase: 'dump', bytes: digest.bytes, tablesChecksummed: tables.length, tables: tableList.length }), 500);
        let ownership: TableOwnership[] = [];
        let upload: Awaited<typeof uploaded>;
        try {
          for (const table of tableList) tables.push(await tableStats(client, table));
          ownership = await tableOwnership(client);
          const [code, done] = await Promise.all([dump.exitCode, uploaded]);
          upload = done;
          if (code !== 0) {
            await deps.store.deleteKeys([keys.dump]).catch(() => undefined);
            throw failure('DumpFailed', `pg_dump exited with ${code}: ${dump.stderrTail()}`);
          }
        } catch (err) {
          dump.child.kill('SIGTERM');
          throw err;
        } finally {
          clearInterval(progress);
        }
        await client.query('COMMIT');
        const globals = t.globals ? await dumpGlobals(t, keys.globals, hb.signal) : undefined;
        const manifest: BackupManifest = {
          formatVersion: 1,
          backupId: input.backupId,
          environment: deps.environment,
          database: input.database,
          databaseName: t.database,
          server: { host: server.host, port: server.port, version },
          format: 'pg_dump custom',
          dumpKey: keys.dump,
          startedAt,
          endedAt: new Date().toISOString(),
          bytes: digest.bytes,
          sha256: digest.hex(),
          tables,
          databaseBytes,
          upload: { parts: upload.parts, partBytes: upload.partSizes },
          ownership,
          ...(globals ? { globals } : {}),
        };
        await deps.store.putJson(keys.manifest, manifest);
        log.info('backup written', { backupId: input.backupId, bytes: manifest.bytes, tables: tables.length });
        return { backupId: manifest.backupId, endedAt: manifest.endedAt, bytes: manifest.bytes, sha256: manifest.sha256, manifestKey: keys.manifest, dumpKey: keys.dump, tableCount: tables.length };
      } catch (err) {
        throw classify(err, `backing up ${input.database}`);
      } finally {
        hb.stop();
        await client.end().catch(() => undefined);
      }
    },

    listBackups: (input: { database: string }) => withHeartbeat(() => listBackups(input)),

    /**
     * Deletes backups outside the retention policy: kept are the newest keepLast and those younger
     * than maxAge; the newest good backup is never deleted. The manifest goes first, so an
     * interrupted deletion leaves an unlisted leftover, never a listed backup without its dump.
     */
    applyRetention: (input: { database: string; nowMs: number }) => withHeartbeat(() => applyRetention(input)),

    /**
     * Creates the scratch database afresh and streams the dump from S3 into pg_restore, checking the
     * sha256 on the way. With restore jobs > 1 the dump is spooled to a temporary file first, since
     * pg_restore can only run in parallel on a file it can seek. The scratch database's tables are
     * created unlogged where the restore user may arrange it (see createTablesUnlogged).
     */
    async restoreIntoScratchDatabase(input: {
      database: string;
      backupId: string;
      scratchName: string;
    }): Promise<{ bytes: number; sha256: string; durationMs: number; mode: 'stream' | 'parallel'; jobs: number; phasesMs: Record<string, number>; unloggedTables: UnloggedScratch }> {
      const t = target(input.database);
      checkScratch(input.scratchName);
      const keys = keysFor(input.database, input.backupId);
      const started = Date.now();
      const manifest = await deps.store.getJson<BackupManifest>(keys.manifest);
      const hb = heartbeater();
      let spoolDir: string | undefined;
      try {
        const phasesMs: Record<string, number> = {};
        let mark = Date.now();
        const phase = (name: string) => {
          phasesMs[name] = Date.now() - mark;
          mark = Date.now();
        };
        let server = await reach(t.restore.server);
        let withOwners = false;
        if (t.restore.into === 'scratchInstance') {
          // A fresh instance of the dump's major version for every attempt: whatever an earlier attempt left is removed first.
          const started2 = await startDumpScratch({
            root: t.restore.scratchDir!,
            scratchDatabase: input.scratchName,
            database: input.database,
            superuser: t.user,
            serverVersion: manifest.server.version,
            sharedBuffers: t.restore.sharedBuffers ?? '128MB',
            attempt: Context.current().info.attempt,
          }).catch((err: unknown) => {
            if (err instanceof MissingBinaryError) throw failure('ProgramMissing', err.message);
            throw err;
          });
          server = started2.server;
          phase('startScratchInstance');
          if (manifest.globals) {
            // The roles first, so owners and grants can be restored as they were.
            const { body: sql } = await deps.store.download(manifest.globals.key);
            const gd = new Digest();
            const outcome = await restoreGlobals(pgBinDirFor(majorVersion(manifest.server.version)), server, (sql as Readable).pipe(gd), pgToolEnv(server, 'runbook-restore-globals'));
            if (gd.hex() !== manifest.globals.sha256) {
              throw failure('BackupChecksumMismatch', `the globals of backup ${input.backupId} are corrupt: sha256 ${gd.hex()} does not match the manifest's ${manifest.globals.sha256}`);
            }
            writeGlobalsOutcome(t.restore.scratchDir!, input.scratchName, { errors: outcome.errors, rolePasswords: manifest.globals.rolePasswords });
            withOwners = true;
            phase('restoreGlobals');
          }
        }
        const admin = await connectPg(server, 'postgres', 'runbook-restore-admin');
        try {
          // A retry starts from an empty database, never from a half-restored one.
          await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(input.scratchName)} WITH (FORCE)`);
          await admin.query(`CREATE DATABASE ${quoteIdent(input.scratchName)}`);
        } finally {
          await admin.end().catch(() => undefined);
        }
        const unlogged = await createTablesUnlogged(server, input.scratchName);
        phase('createDatabase');
        const { body } = await deps.store.download(manifest.dumpKey);
        const digest = new Digest();
        const jobs = t.restore.jobs;
        const progress = setInterval(() => hb.beat({ phase: 'restore', bytes: digest.bytes, totalBytes: manifest.bytes }), 500);
        // Owners and grants only where their roles exist: a scratch instance that got the dump's globals.
        const ownership = withOwners ? [] : ['--no-owner', '--no-privileges'];
        const baseArgs = ['-h', server.host, '-p', String(server.port), '-U', server.user, '-d', input.scratchName, ...ownership, '--exit-on-error', '--no-password'];
        const env = pgToolEnv(server, 'runbook-restore');
        let exit: number;
        let stderr: () => string;
        try {
          if (jobs <= 1) {
            const restore = runTool(findPgBinary('pg_restore'), baseArgs, env, ['pipe', 'ignore'], hb.signal);
            // pg_restore may exit early (its exit code says why); a failed download stops it.
            await pipeline(body as Readable, digest, feedOrDiscard(restore.child.stdin!)).catch(async (err: unknown) => {
              restore.child.kill('SIGTERM');
              await restore.exitCode;
              if (!hb.signal.aborted) throw err;
            });
            phase('transfer');
            exit = await restore.exitCode;
            phase('restoreAfterTransfer');
            stderr = restore.stderrTail;
          } else {
            spoolDir = mkdtempSync(join(tmpdir(), 'runbook-restore-'));
            const file = join(spoolDir, 'dump.pgcustom');
            await pipeline(body as Readable, digest, createWriteStream(file));
            phase('download');
            const restore = runTool(findPgBinary('pg_restore'), [...baseArgs, '-j', String(jobs), file], env, ['ignore', 'ignore'], hb.signal);
            exit = await restore.exitCode;
            phase('pgRestore');
            stderr = restore.stderrTail;
          }
        } finally {
          clearInterval(progress);
        }
        // Report a cancellation as one, so the workflow sees the restore stopped rather than failed.
        if (hb.signal.aborted) throw new CancelledFailure('restore cancelled; pg_restore stopped');
        const sha256 = digest.hex();
        if (sha256 !== manifest.sha256 || digest.bytes !== manifest.bytes) {
          throw failure('BackupChecksumMismatch', `backup ${input.backupId} is corrupt: sha256 ${sha256} (${digest.bytes} bytes) does not match the manifest's ${manifest.sha256} (${manifest.bytes} bytes)`, {
            expected: manifest.sha256,
            found: sha256,
          });
        }
        if (exit !== 0) throw failure('RestoreFailed', `pg_restore exited with ${exit}: ${stderr()}`);
        if (unlogged.enabled) await removeUnloggedTrigger(server, input.scratchName);
        return { bytes: digest.bytes, sha256, durationMs: Date.now() - started, mode: jobs <= 1 ? 'stream' : 'parallel', jobs, phasesMs, unloggedTables: unlogged };
      } catch (err) {
        throw classify(err, `restoring ${input.backupId} into ${input.scratchName}`);
      } finally {
        hb.stop();
        if (spoolDir) rmSync(spoolDir, { recursive: true, force: true });
      }
    },

    /** Compares the restored copy with the manifest, table by table, then runs the configured assertions. */
    validateRestoredDatabase: (input: { database: string; backupId: string; scratchName: string }) => withHeartbeat(() => validateRestoredDatabase(input)),

    /** Drops a scratch database; dropping one that does not exist is a no-op. */
    async dropScratchDatabase(input: { database: string; scratchName: string }): Promise<{ dropped: boolean }> {
      const t = target(input.database);
      checkScratch(input.scratchName);
      if (t.restore.into === 'scratchInstance') {
        // The database goes with its instance: stopped and its directory removed.
        return withHeartbeat(async () => ({ dropped: (await removeDumpScratch(t.restore.scratchDir!, input.scratchName)).existed }));
      }
      return withHeartbeat(async () => {
        const admin = await connectPg(await reach(t.restore.server), 'postgres', 'runbook-restore-admin');
        try {
          const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [input.scratchName]);
          await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(input.scratchName)} WITH (FORCE)`);
          return { dropped: exists.rowCount === 1 };
        } catch (err) {
          throw classify(err, `dropping ${input.scratchName}`);
        } finally {
          await admin.end().catch(() => undefined);
        }
      });
    },

    /** The restore test's report, as JSON and Markdown, next to the backup it tested. */
    async writeRestoreReport(input: { report: RestoreReport }): Promise<{ jsonKey: string; markdownKey: string; htmlKey: string }> {
      const { report } = input;
      target(report.database);
      if (!/^[a-z0-9-]{4,64}$/.test(report.testId)) throw failure('InvalidInput', `report testId '${report.testId}' is not a test id`);
      // keysFor refuses a malformed backup id before anything is written.
      if (report.backupId) keysFor(report.database, report.backupId);
      const keys = restoreReportKeys(deps.prefix, report.database, report.backupId, report.testId);
      return withHeartbeat(async () => {
        await deps.store.putJson(keys.jsonKey, report);
        await deps.store.putText(keys.markdownKey, renderRestoreReportMarkdown(report), 'text/markdown');
        await deps.store.putText(keys.htmlKey, renderRestoreReportHtml(report, deps.links), 'text/html');
        return keys;
      });
    },
  };
}

export type BackupActivities = ReturnType<typeof createBackupActivities>;

const GLOBALS_OUTCOME = 'globals-restored.json';

/** What restoring the globals into a scratch instance gave, kept beside the instance for the validation step. */
function writeGlobalsOutcome(root: string, scratchName: string, outcome: { errors: string[]; rolePasswords: boolean }): void {
  writeFileSync(join(scratchPaths(root, scratchInstanceName(scratchName)).dir, GLOBALS_OUTCOME), JSON.stringify(outcome));
}

function readGlobalsOutcome(root: string, scratchName: string): { errors: string[]; rolePasswords: boolean } | undefined {
  try {
    return JSON.parse(readFileSync(join(scratchPaths(root, scratchInstanceName(scratchName)).dir, GLOBALS_OUTCOME), 'utf8'));
  } catch {
    return undefined;
  }
}
