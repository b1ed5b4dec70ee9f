import { execFile } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findPgBinary, ownDir, postgresOwner, startNode, stopNode, writePrimaryConninfo, PostgresClusterInfo, PostgresClusterOptions } from '../system/postgres';
import { freePort, groupAlive, stopService } from '../system/process';

export { initCluster, nodeRunning, reachableClusterDir } from '../system/postgres';
export type { PostgresClusterInfo, PostgresClusterOptions } from '../system/postgres';

const execFileAsync = promisify(execFile);

const COMMON_SETTINGS = `
# runbook sandbox
include_if_exists = 'node.conf'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
wal_log_hints = on            # pg_rewind needs it to turn an old primary into a replica
full_page_writes = on         # pg_rewind needs it too
fsync = off                   # a sandbox on a shared machine: no durability against OS crashes needed
synchronous_commit = on
shared_buffers = 32MB
max_connections = 50
wal_keep_size = 256MB
`;

/** The port a node ran on before (its node.conf), so a restart keeps it. */
function previousPort(dataDir: string): number | undefined {
  try {
    const m = /^port = (\d+)$/m.exec(readFileSync(join(dataDir, 'node.conf'), 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export async function startPostgres(opts: PostgresClusterOptions & { dataDir: string; socketDir: string }): Promise<PostgresClusterInfo> {
  const host = opts.host ?? '127.0.0.1';
  // A restarted stack keeps its port: a replica's primary_conninfo (written by a failback) names it.
  const port = opts.port ?? previousPort(opts.dataDir) ?? (await freePort(host));
  const conf = join(opts.dataDir, 'postgresql.conf');
  if (!readFileSync(conf, 'utf8').includes('# runbook sandbox')) appendFileSync(conf, COMMON_SETTINGS);
  const logFile = join(opts.dir, 'postgres.log');
  const pid = await startNode({ name: opts.name ?? 'pg-a', host, port, dataDir: opts.dataDir, socketDir: opts.socketDir, logFile });
  return { pid, host, port, dataDir: opts.dataDir, socketDir: opts.socketDir, superuser: opts.superuser ?? 'postgres', logFile };
}

/** A streaming replica of the primary on another loopback address, made with pg_basebackup -R. */
export async function startReplica(primary: PostgresClusterInfo, opts: { dir: string; host: string; password: string; name?: string }): Promise<PostgresClusterInfo> {
  const dataDir = join(opts.dir, 'data');
  const socketDir = join(opts.dir, 'socket');
  mkdirSync(opts.dir, { recursive: true, mode: 0o755 });
  chmodSync(opts.dir, 0o755);
  ownDir(socketDir);
  const user = postgresOwner();
  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    ownDir(dataDir);
    try {
      await execFileAsync(
        findPgBinary('pg_basebackup'),
        ['-h', primary.host, '-p', String(primary.port), '-U', primary.superuser, '-D', dataDir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync'],
        { uid: user?.uid, gid: user?.gid, cwd: '/', env: { ...process.env, PGPASSWORD: opts.password } },
      );
    } catch (err) {
      throw new Error(`pg_basebackup from ${primary.host}:${primary.port} failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`);
    }
  } else if (existsSync(join(dataDir, 'standby.signal'))) {
    // A restart from the same directory: the primary came up on a new port, so point the standby at it again.
    writePrimaryConninfo(dataDir, opts.name ?? 'pg-b', { host: primary.host, port: primary.port, user: primary.superuser, password: opts.password });
  }
  const logFile = join(opts.dir, 'postgres.log');
  const pid = await startNode({ name: opts.name ?? 'pg-b', host: opts.host, port: primary.port, dataDir, socketDir, logFile });
  return { pid, host: opts.host, port: primary.port, dataDir, socketDir, superuser: primary.superuser, logFile };
}

/** Fast shutdown of a node, by its data directory (its postmaster may have been restarted since it was recorded). */
export async function stopPostgres(info: { pid: number; dataDir: string }): Promise<void> {
  await stopNode(info.dataDir, 'fast');
  if (groupAlive(info.pid)) await stopService(info.pid, 'SIGINT', 20_000);
}

/** Creates a database if it does not exist, over the Unix socket (trust auth: only the cluster owner reaches it). */
export async function ensureDatabase(info: PostgresClusterInfo, database: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(database)) throw new Error(`database name '${database}' is not a plain lower-case identifier`);
  const user = postgresOwner();
  const psql = (sql: string) =>
    execFileAsync(findPgBinary('psql'), ['-h', info.socketDir, '-p', String(info.port), '-U', info.superuser, '-d', 'postgres', '-tAc', sql], { uid: user?.uid, gid: user?.gid, cwd: '/' });
  const { stdout } = await psql(`SELECT 1 FROM pg_database WHERE datname = '${database}'`);
  if (stdout.trim() !== '1') await psql(`CREATE DATABASE "${database}"`);
}

