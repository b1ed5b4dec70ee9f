import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, writeFileSync, appendFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findBinary, freePort, spawnService, stopService, systemUser, waitUntil } from './process';

const execFileAsync = promisify(execFile);

const PG_BIN_DIRS = ['/usr/lib/postgresql/15/bin'];
const PG_HINT = 'Install PostgreSQL 15 (scripts/bootstrap does: apt-get install postgresql-15), or set PG_BIN to its bin directory.';

export function findPgBinary(name: 'initdb' | 'postgres' | 'pg_ctl' | 'pg_isready' | 'pg_basebackup' | 'pg_dump' | 'pg_restore' | 'psql'): string {
  const dirs = process.env.PG_BIN ? [process.env.PG_BIN, ...PG_BIN_DIRS] : PG_BIN_DIRS;
  return findBinary(name, { dirs, hint: PG_HINT });
}

/** PostgreSQL refuses to run as root; when we are root the cluster belongs to the postgres user. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const user = systemUser('postgres');
  if (!user) throw new Error("running as root, but there is no 'postgres' system user to own the cluster (install postgresql-15)");
  return user;
}

function ownDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const user = runAs();
  if (user) chownSync(path, user.uid, user.gid);
  chmodSync(path, 0o700);
}

/**
 * Where a cluster can live. As root the cluster runs as the postgres user, which cannot enter a
 * directory below a private one (a 0700 home or temp directory); then the cluster goes to a fresh
 * directory under the system temp directory instead, and the caller records where.
 */
export function reachableClusterDir(preferred: string): string {
  const user = runAs();
  if (!user) return preferred;
  mkdirSync(preferred, { recursive: true, mode: 0o755 });
  try {
    execFileSync('test', ['-x', preferred], { uid: user.uid, gid: user.gid, stdio: 'ignore' });
    return preferred;
  } catch {
    const dir = mkdtempSync(join(tmpdir(), 'runbook-pg-'));
    chmodSync(dir, 0o755);
    return dir;
  }
}

export interface PostgresClusterOptions {
  /** Directory for this cluster: data/, socket/, log and password file go under it. */
  dir: string;
  host?: string;
  port?: number;
  superuser?: string;
  password: string;
}

export interface PostgresClusterInfo {
  pid: number;
  host: string;
  port: number;
  dataDir: string;
  socketDir: string;
  superuser: string;
  logFile: string;
}

/** initdb a throwaway cluster that accepts password logins and replication from loopback. */
export async function initCluster(opts: PostgresClusterOptions): Promise<{ dataDir: string; socketDir: string }> {
  const dataDir = join(opts.dir, 'data');
  const socketDir = join(opts.dir, 'socket');
  mkdirSync(opts.dir, { recursive: true, mode: 0o755 });
  chmodSync(opts.dir, 0o755);
  ownDir(socketDir);
  if (existsSync(join(dataDir, 'PG_VERSION'))) return { dataDir, socketDir };
  ownDir(dataDir);
  const pwFile = join(opts.dir, '.initdb-pw');
  writeFileSync(pwFile, `${opts.password}\n`, { mode: 0o600 });
  const user = runAs();
  if (user) chownSync(pwFile, user.uid, user.gid);
  try {
    await execFileAsync(
      findPgBinary('initdb'),
      ['-D', dataDir, '-U', opts.superuser ?? 'postgres', '--pwfile', pwFile, '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync'],
      { uid: user?.uid, gid: user?.gid, cwd: opts.dir },
    );
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`initdb failed for ${dataDir}: ${e.stderr || e.message}`);
  } finally {
    writeFileSync(pwFile, '');
  }
  appendFileSync(
    join(dataDir, 'pg_hba.conf'),
    '\n# runbook sandbox: password logins and streaming replication from loopback only\n' +
      'host all all 127.0.0.0/8 scram-sha-256\n' +
      'host replication all 127.0.0.0/8 scram-sha-256\n',
  );
  return { dataDir, socketDir };
}

/** Starts postgres in the foreground of its own process group, so stopping the group leaves nothing behind. */
export async function startPostgres(opts: PostgresClusterOptions & { dataDir: string; socketDir: string }): Promise<PostgresClusterInfo> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? (await freePort(host));
  const logFile = join(opts.dir, 'postgres.log');
  const user = runAs();
  const settings: Record<string, string> = {
    listen_addresses: host,
    port: String(port),
    unix_socket_directories: opts.socketDir,
    wal_level: 'replica',
    max_wal_senders: '5',
    hot_standby: 'on',
    // A sandbox on a shared machine: durability against OS crashes buys nothing here.
    fsync: 'off',
    full_page_writes: 'off',
    shared_buffers: '32MB',
    max_connections: '50',
  };
  const args = ['-D', opts.dataDir, ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
  // The log file must be writable by the postgres user.
  writeFileSync(logFile, '', { flag: 'a' });
  if (user) chownSync(logFile, user.uid, user.gid);
  const service = spawnService(`postgres ${host}:${port}`, findPgBinary('postgres'), args, logFile, { uid: user?.uid, gid: user?.gid, cwd: opts.dir });
  const isready = findPgBinary('pg_isready');
  try {
    await waitUntil(
      `PostgreSQL on ${host}:${port}`,
      async () => {
        await execFileAsync(isready, ['-h', host, '-p', String(port), '-U', opts.superuser ?? 'postgres', '-t', '1']);
        return true;
      },
      { timeoutMs: 30_000, pid: service.pid, logFile },
    );
  } catch (err) {
    await stopService(service.pid);
    throw err;
  }
  return { pid: service.pid, host, port, dataDir: opts.dataDir, socketDir: opts.socketDir, superuser: opts.superuser ?? 'postgres', logFile };
}

/** SIGINT is PostgreSQL's "fast" shutdown: clients are disconnected, the cluster shuts down cleanly. */
export function stopPostgres(pid: number): Promise<void> {
  return stopService(pid, 'SIGINT', 20_000);
}

/** Creates a database if it does not exist, over the Unix socket (trust auth: only the cluster owner reaches it). */
export async function ensureDatabase(info: PostgresClusterInfo, database: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(database)) throw new Error(`database name '${database}' is not a plain lower-case identifier`);
  const user = runAs();
  const psql = (sql: string) =>
    execFileAsync(findPgBinary('psql'), ['-h', info.socketDir, '-p', String(info.port), '-U', info.superuser, '-d', 'postgres', '-tAc', sql], { uid: user?.uid, gid: user?.gid, cwd: '/' });
  const { stdout } = await psql(`SELECT 1 FROM pg_database WHERE datname = '${database}'`);
  if (stdout.trim() !== '1') await psql(`CREATE DATABASE "${database}"`);
}
