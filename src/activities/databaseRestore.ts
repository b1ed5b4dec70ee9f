import { CancelledFailure, log } from '@temporalio/activity';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { findPgBinary } from '../system/postgres';
import { checkServedEnvironment, classify, failure } from './errors';
import { heartbeater } from './heartbeat';
import { connectPg, pgToolEnv, quoteIdent, tableStats, TableStats } from './pg';
import type { ObjectStore } from './s3';
import { reachServer } from './primary';
import type { ServerLocator } from './backups';

export interface RestoreIntoLiveResult {
  database: string;
  backupId: string;
  bytes: number;
  sha256: string;
  durationMs: number;
  /** The live database as it was before the restore, kept under this name (its connections refused) for whatever it held. */
  keptAside: string;
  /** Every table of the backup compared with its manifest on the restored database, before it went live. */
  checks: { name: string; passed: boolean; detail: string }[];
  alreadyRestored: boolean;
}

interface Manifest {
  backupId: string;
  format: string;
  dumpKey: string;
  bytes: number;
  sha256: string;
  tables: TableStats[];
}

const BACKUP_ID = /^\d{8}T\d{6}Z-[a-z0-9]{4,16}$/;
const RESTORE_ID = /^[a-z0-9]{4,12}$/;

/**
 * Restores a backup into the live database, the release's `restore` policy: the dump is restored into
 * a new database beside the live one (sha256 checked on the way, every table compared with the
 * manifest), then the two are swapped by renaming, with connections to the live one refused and ended
 * meanwhile. The database as it was before is kept, renamed, so the writes the restore discards are
 * not destroyed. Each stage is checked before it is done again, so a retry after a crash between the
 * two renames completes the swap.
 */
export function createDatabaseRestoreActivities(deps: { environment: string; store: ObjectStore | undefined; prefix: string; databases: Record<string, { server: ServerLocator; database: string }> }) {
  return {
    async restoreBackupIntoLiveDatabase(input: { environment: string; database: string; backupId: string; restoreId: string }): Promise<RestoreIntoLiveResult> {
      checkServedEnvironment(input.environment, deps.environment);
      const t = deps.databases[input.database];
      if (!t) throw failure('InvalidInput', `database '${input.database}' is not configured for environment ${deps.environment}`);
      if (!deps.store) throw failure('InvalidInput', `environment ${deps.environment} has no backups: section to restore from`);
      if (!BACKUP_ID.test(input.backupId)) throw failure('InvalidInput', `backupId '${input.backupId}' is not a backup id`);
      if (!RESTORE_ID.test(input.restoreId)) throw failure('InvalidInput', `restoreId '${input.restoreId}' must be 4-12 lower-case letters and digits`);
      const started = Date.now();
      const live = t.database;
      const base = live.slice(0, 40);
      const restored = `${base}_restore_${input.restoreId}`;
      const aside = `${base}_before_${input.restoreId}`;
      const hb = heartbeater();
      // The current primary, found at this moment (through the service address or the topology).
      const server = await reachServer(t.server);
      const admin = await connectPg(server, 'postgres', 'runbook-release-restore');
      try {
        const exists = async (name: string) => (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
        const manifest = await deps.store.getJson<Manifest>(`${deps.prefix}${input.database}/${input.backupId}/manifest.json`);
        if (manifest.format !== 'pg_dump custom') throw failure('InvalidInput', `backup ${input.backupId} is a ${manifest.format} backup; restoring it into the live database needs a pg_dump custom-format backup`);
        const [hasLive, hasAside, hasRestored] = [await exists(live), await exists(aside), await exists(restored)];
        if (hasLive && hasAside && !hasRestored) {
          log.info('the restore was completed by an earlier attempt', { live, aside });
          return { database: input.database, backupId: input.backupId, bytes: manifest.bytes, sha256: manifest.sha256, durationMs: Date.now() - started, keptAside: aside, checks: [], alreadyRestored: true };
        }
        if (!hasLive && !(hasAside && hasRestored)) throw failure('DatabaseNotFound', `database ${live} does not exist on ${server.host}:${server.port}`);
        if (hasLive && hasAside) throw failure('InvalidInput', `${aside} already exists beside ${live} and so does ${restored}: an earlier restore with id ${input.restoreId} stopped half-way; look at both before restoring again`);
        const checks: RestoreIntoLiveResult['checks'] = [];
        let bytes = manifest.bytes;
        let sha256 = manifest.sha256;
        if (hasLive && !hasAside) {
          // A retry starts from an empty database, never from a half-restored one.
          await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(restored)} WITH (FORCE)`);
          await admin.query(`CREATE DATABASE ${quoteIdent(restored)}`);
          const { body } = await deps.store.download(manifest.dumpKey);
          const hash = createHash('sha256');
          let count = 0;
          const digest = new Transform({
            transform(chunk: Buffer, _e, done) {
              count += chunk.length;
              hash.update(chunk);
              done(null, chunk);
            },
          });
          const child = spawn(
            findPgBinary('pg_restore'),
            ['-h', server.host, '-p', String(server.port), '-U', server.user, '-d', restored, '--no-owner', '--no-privileges', '--exit-on-error', '--single-transaction', '--no-password'],
            { env: pgToolEnv(server, 'runbook-release-restore'), stdio: ['pipe', 'ignore', 'pipe'] },
          );
          let stderr = '';
          child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
          const exit = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
          const onAbort = () => child.kill('SIGTERM');
          hb.signal.addEventListener('abort', onAbort, { once: true });
          const progress = setInterval(() => hb.beat({ phase: 'restore', bytes: count, totalBytes: manifest.bytes }), 500);
          try {
            await pipeline(body as Readable, digest, child.stdin);
          } catch (err) {
            child.kill('SIGTERM');
            await exit;
            if (hb.signal.aborted) throw new CancelledFailure('restore cancelled; pg_restore stopped');
            throw failure('RestoreFailed', `restoring ${input.backupId}: ${(err as Error).message}: ${stderr.trim().split('\n').slice(-5).join('\n')}`);
          } finally {
            clearInterval(progress);
            hb.signal.removeEventListener('abort', onAbort);
          }
          const code = await exit;
          sha256 = hash.digest('hex');
          bytes = count;
          if (sha256 !== manifest.sha256 || bytes !== manifest.bytes) {
            await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(restored)} WITH (FORCE)`);
            throw failure('BackupChecksumMismatch', `backup ${input.backupId} is corrupt: sha256 ${sha256} (${bytes} bytes) does not match the manifest's ${manifest.sha256} (${manifest.bytes} bytes); the live database was not touched`);
          }
          if (code !== 0) throw failure('RestoreFailed', `pg_restore exited with ${code}: ${stderr.trim().split('\n').slice(-8).join('\n')}`);
          hb.beat({ phase: 'validate', tables: manifest.tables.length });
          const copy = await connectPg(server, restored, 'runbook-release-restore-validate');
          try {
            for (const expected of manifest.tables) {
              const found = await tableStats(copy, expected).catch((err: Error) => ({ ...expected, rows: -1, checksum: err.message }));
              const passed = found.rows === expected.rows && found.checksum === expected.checksum;
              checks.push({ name: `table ${expected.schema}.${expected.name}`, passed, detail: passed ? `${found.rows} rows, checksum matches` : `expected ${expected.rows} rows (checksum ${expected.checksum}), found ${found.rows} (${found.checksum})` });
            }
          } finally {
            await copy.end().catch(() => undefined);
          }
          const bad = checks.filter((c) => !c.passed);
          if (bad.length) {
            await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(restored)} WITH (FORCE)`);
            throw failure('RestoreFailed', `the restored copy does not match backup ${input.backupId} (${bad.map((c) => `${c.name}: ${c.detail}`).join('; ')}); the live database was not touched`);
          }
          hb.beat({ phase: 'swap' });
          const owner = (await admin.query<{ owner: string }>('SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = $1', [live])).rows[0]?.owner;
          if (owner) await admin.query(`ALTER DATABASE ${quoteIdent(restored)} OWNER TO ${quoteIdent(owner)}`).catch(() => undefined);
          // No new sessions while the old database is ended and renamed; it stays closed under its new name.
          await admin.query(`ALTER DATABASE ${quoteIdent(live)} ALLOW_CONNECTIONS false`);
          for (let attempt = 0; ; attempt++) {
            // The owner role (pg_signal_backend) ends every client session but a superuser's, which only a
            // superuser may end; PostgreSQL stops autovacuum workers itself when the database is renamed.
            await admin.query(
              `SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
                WHERE a.datname = $1 AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'
                  AND (NOT r.rolsuper OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))`,
              [live],
            );
            try {
              await admin.query(`ALTER DATABASE ${quoteIdent(live)} RENAME TO ${quoteIdent(aside)}`);
              break;
            } catch (err) {
              if (attempt >= 20) {
                const left = (await admin.query<{ who: string }>("SELECT format('%s (%s, pid %s)', usename, coalesce(nullif(application_name, ''), backend_type), pid) AS who FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", [live]).catch(() => ({ rows: [] }))).rows.map((r) => r.who);
                await admin.query(`ALTER DATABASE ${quoteIdent(live)} ALLOW_CONNECTIONS true`).catch(() => undefined);
                throw failure('RestoreFailed', `cannot swap the restored copy in: ${(err as Error).message}${left.length ? `; sessions this role may not end are still connected: ${left.join(', ')}` : ''}; the live database is unchanged and open again, the restored copy is ${restored}`);
              }
              await new Promise((r) => setTimeout(r, 250));
            }
          }
        }
        await admin.query(`ALTER DATABASE ${quoteIdent(restored)} RENAME TO ${quoteIdent(live)}`);
        log.info('backup restored into the live database', { database: live, backupId: input.backupId, keptAside: aside });
        return { database: input.database, backupId: input.backupId, bytes, sha256, durationMs: Date.now() - started, keptAside: aside, checks, alreadyRestored: false };
      } catch (err) {
        throw classify(err, `restoring ${input.backupId} into ${live}`);
      } finally {
        hb.stop();
        await admin.end().catch(() => undefined);
      }
    },
  };
}

export type DatabaseRestoreActivities = ReturnType<typeof createDatabaseRestoreActivities>;
