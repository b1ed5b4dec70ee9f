/**
 * Running PostgreSQL nodes on this machine with the distribution's tools (initdb, pg_ctl, pg_rewind,
 * pg_basebackup): used by the local topology driver and by scratch instances, and by the sandbox.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, writeFileSync, appendFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { adopt, childEnv, disown, findBinary, processAlive, stopService, systemUser, tailFile, waitUntil } from './process';

const execFileAsync = promisify(execFile);

const PG_BIN_DIRS = ['/usr/lib/postgresql/15/bin'];
const PG_HINT = 'Install PostgreSQL 15 (scripts/bootstrap does: apt-get install postgresql-15), or set PG_BIN to its bin directory.';

export function findPgBinary(name: 'initdb' | 'postgres' | 'pg_ctl' | 'pg_controldata' | 'pg_isready' | 'pg_basebackup' | 'pg_dump' | 'pg_dumpall' | 'pg_restore' | 'pg_rewind' | 'psql'): string {
  const dirs = process.env.PG_BIN ? [process.env.PG_BIN, ...PG_BIN_DIRS] : PG_BIN_DIRS;
  return findBinary(name, { dirs, hint: PG_HINT });
}

/** PostgreSQL refuses to run as root; when we are root the cluster belongs to the postgres user. */
export function postgresOwner(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const user = systemUser('postgres');
  if (!user) throw new Error("running as root, but there is no 'postgres' system user to own the cluster (install postgresql-15)");
  return user;
}

export function ownDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const user = postgresOwner();
  if (user) chownSync(path, user.uid, user.gid);
  chmodSync(path, 0o700);
}

/**
 * Where a cluster can live. As root the cluster runs as the postgres user, which cannot enter a
 * directory below a private one (a 0700 home or temp directory); then the cluster goes to a fresh
 * directory under the system temp directory instead, and the caller records where.
 */
export function reachableClusterDir(preferred: string): string {
  const user = postgresOwner();
  if (!user) return preferred;
  mkdirSync(preferred, { recursive: true, mode: 0o755 });
  try {
    execFileSync('test', ['-x', preferred], { uid: user.uid, gid: user.gid, stdio: 'ignore', env: childEnv() });
    return preferred;
  } catch {
    const dir = mkdtempSync(join(tmpdir(), 'runbook-pg-'));
    chmodSync(dir, 0o755);
    return dir;
  }
}

export interface PostgresClusterOptions {
  /** Node name (cluster_name), as the drill topology calls it. */
  name?: string;
  /** Directory for this cluster: data/, socket/, log and password file go under it. */
  dir: string;
  host?: string;
  port?: number;
  superuser?: string;
  password: string;
}

/** A running PostgreSQL node (the sandbox's pair, or a scratch instance). */
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
  const user = postgresOwner();
  if (user) chownSync(pwFile, user.uid, user.gid);
  try {
    await execFileAsync(
      findPgBinary('initdb'),
      ['-D', dataDir, '-U', opts.superuser ?? 'postgres', '--pwfile', pwFile, '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync'],
      { uid: user?.uid, gid: user?.gid, cwd: opts.dir, env: childEnv() },
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

/** Settings that differ between the nodes of a pair; kept in node.conf so a base backup does not carry the primary's over. */
function writeNodeConf(dataDir: string, name: string, host: string, port: number, socketDir: string): void {
  // cluster_name is also the name a replica reports to its primary (pg_stat_replication.application_name):
  // on loopback every connection comes from 127.0.0.1, so addresses cannot tell replicas apart.
  writeFileSync(join(dataDir, 'node.conf'), `listen_addresses = '${host}'\nport = ${port}\nunix_socket_directories = '${socketDir}'\ncluster_name = '${name}'\n`);
  const user = postgresOwner();
  if (user) chownSync(join(dataDir, 'node.conf'), user.uid, user.gid);
}

function pgCtl(args: string[], env?: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string }> {
  const user = postgresOwner();
  return execFileAsync(findPgBinary('pg_ctl'), args, { uid: user?.uid, gid: user?.gid, cwd: '/', env: env ?? childEnv() });
}

function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** True when a postmaster is running for this data directory. */
export function nodeRunning(dataDir: string): boolean {
  const pid = postmasterPid(dataDir);
  return pid !== undefined && processAlive(pid);
}

/**
 * Starts a node with pg_ctl; the postmaster runs in its own session, so it outlives the process that
 * started it (the worker may promote and restart nodes during a drill). Unless told otherwise it is
 * registered for clean-up on an unexpected exit of this process.
 */
export async function startNode(
  node: { name: string; host: string; port: number; dataDir: string; socketDir: string; logFile: string },
  opts: { adopt?: boolean } = {},
): Promise<number> {
  writeNodeConf(node.dataDir, node.name, node.host, node.port, node.socketDir);
  writeFileSync(node.logFile, '', { flag: 'a' });
  const user = postgresOwner();
  if (user) chownSync(node.logFile, user.uid, user.gid);
  if (!nodeRunning(node.dataDir)) {
    try {
      await pgCtl(['start', '-w', '-t', '60', '-D', node.dataDir, '-l', node.logFile]);
    } catch (err) {
      throw new Error(`PostgreSQL ${node.name} on ${node.host}:${node.port} did not start: ${(err as { stderr?: string }).stderr ?? ''}\n${tailFile(node.logFile)}`);
    }
  }
  const pid = postmasterPid(node.dataDir);
  if (pid === undefined) throw new Error(`PostgreSQL ${node.name}: no postmaster.pid after start`);
  // The sandbox's own start-up adopts the node; a worker acting on the topology must not (its exit
  // would take the database down with it).
  if (opts.adopt !== false) adopt(pid, `postgres ${node.name}`);
  const isready = findPgBinary('pg_isready');
  await waitUntil(
    `PostgreSQL ${node.name} on ${node.host}:${node.port}`,
    async () => {
      await execFileAsync(isready, ['-h', node.host, '-p', String(node.port), '-t', '1'], { env: childEnv() });
      return true;
    },
    { timeoutMs: 30_000, pid, logFile: node.logFile },
  );
  return pid;
}

/** Stops a node: fast (clients disconnected, clean shutdown) or immediate (as if the machine died). */
export async function stopNode(dataDir: string, mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
  const pid = postmasterPid(dataDir);
  if (pid === undefined || !processAlive(pid)) return;
  try {
    await pgCtl(['stop', '-w', '-t', '60', '-m', mode, '-D', dataDir]);
  } catch {
    await stopService(pid, 'SIGQUIT', 10_000);
  }
  disown(pid);
}

/** The socket directory and log file the sandbox keeps beside a node's data directory. */
export function nodeFiles(dataDir: string): { socketDir: string; logFile: string } {
  const base = dirname(dataDir);
  return { socketDir: join(base, 'socket'), logFile: join(base, 'postgres.log') };
}

export interface PgSource {
  host: string;
  port: number;
  user: string;
  password: string;
}

function sourceConnstr(source: PgSource): string {
  return `host=${source.host} port=${source.port} user=${source.user} dbname=postgres`;
}

/** A libpq connection-string value, quoted. */
const conninfoValue = (v: string) => `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/**
 * Points a standby at its primary, with the password in postgresql.auto.conf (readable by the
 * postgres user only) rather than on any command line.
 */
export function writePrimaryConninfo(dataDir: string, name: string, source: PgSource): void {
  const file = join(dataDir, 'postgresql.auto.conf');
  const conninfo = `host=${source.host} port=${source.port} user=${source.user} password=${conninfoValue(source.password)} application_name=${name}`;
  const kept = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => !/^\s*primary_conninfo\s*=/.test(l) && l !== '');
  // postgresql.conf strings treat backslashes as escapes and double single quotes.
  const confString = conninfo.replace(/\\/g, '\\\\').replace(/'/g, "''");
  writeFileSync(file, `${[...kept, `primary_conninfo = '${confString}'`].join('\n')}\n`);
  writeFileSync(join(dataDir, 'standby.signal'), '');
  const user = postgresOwner();
  if (user) {
    chownSync(file, user.uid, user.gid);
    chownSync(join(dataDir, 'standby.signal'), user.uid, user.gid);
  }
}

/**
 * Turns a stopped former primary into a replica of the source with pg_rewind (which runs crash
 * recovery first when the node was stopped hard), then standby.signal and primary_conninfo.
 */
export async function rewindNode(dataDir: string, name: string, source: PgSource): Promise<void> {
  const user = postgresOwner();
  try {
    await execFileAsync(findPgBinary('pg_rewind'), ['--target-pgdata', dataDir, '--source-server', sourceConnstr(source), '--no-sync'], {
      uid: user?.uid,
      gid: user?.gid,
      cwd: '/',
      env: childEnv({ PGPASSWORD: source.password, PGAPPNAME: 'runbook-rejoin' }, ['PGSSLMODE', 'PGSSLROOTCERT', 'PGSSLCERT', 'PGSSLKEY']),
    });
  } catch (err) {
    throw new Error(`pg_rewind of ${dataDir} failed: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim().split('\n').slice(-3).join(' ')}`);
  }
  writePrimaryConninfo(dataDir, name, source);
}

/** What pg_controldata says about a stopped node: its last checkpoint and the timeline it was on. */
export async function controlData(dataDir: string): Promise<{ state?: string; checkpointLsn?: string; timeline?: number }> {
  const user = postgresOwner();
  const { stdout } = await execFileAsync(findPgBinary('pg_controldata'), [dataDir], { uid: user?.uid, gid: user?.gid, cwd: '/', env: { ...process.env, LC_ALL: 'C' } });
  const field = (name: string) => stdout.split('\n').find((l) => l.startsWith(`${name}:`))?.slice(name.length + 1).trim();
  const tli = field("Latest checkpoint's TimeLineID");
  return { state: field('Database cluster state'), checkpointLsn: field('Latest checkpoint location'), timeline: tli === undefined ? undefined : Number(tli) };
}

/**
 * Renames a stopped node's data directory out of the way (dataDir.kept-SUFFIX) instead of deleting
 * it: a former primary's directory may hold the only copy of commits that never reached a replica.
 * Returns where it went with its last checkpoint LSN and timeline; a directory already gone is left.
 * When dataDir.kept-SUFFIX exists already (an earlier attempt kept one), the next is numbered (.2, .3).
 */
export async function keepDataDirAside(dataDir: string, suffix: string): Promise<{ path: string; lastLsn?: string; timeline?: number } | undefined> {
  if (!existsSync(join(dataDir, 'PG_VERSION'))) return undefined;
  if (nodeRunning(dataDir)) throw new Error(`PostgreSQL still runs on ${dataDir}: it must be stopped before its data directory is kept aside`);
  // A kept directory is never overwritten: a retried rejoin that keeps a second copy numbers it.
  let path = `${dataDir}.kept-${suffix}`;
  for (let i = 2; existsSync(path); i++) path = `${dataDir}.kept-${suffix}.${i}`;
  const ctl = await controlData(dataDir).catch(() => ({ checkpointLsn: undefined, timeline: undefined }));
  renameSync(dataDir, path);
  return { path, lastLsn: ctl.checkpointLsn, timeline: ctl.timeline };
}

/** The LSN at which the primary's current timeline began, from its timeline history file (undefined on timeline 1). */
export function timelineSwitchPoint(dataDir: string, timeline: number): string | undefined {
  const file = join(dataDir, 'pg_wal', `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`);
  if (!existsSync(file)) return undefined;
  const last = readFileSync(file, 'utf8').split('\n').filter((l) => /^\d+\t/.test(l)).pop();
  return last?.split('\t')[1];
}

/** Newest timeline with a history file in a data directory (1 when there is none). */
export function newestTimeline(dataDir: string): number {
  let newest = 1;
  for (const f of readdirSync(join(dataDir, 'pg_wal'))) {
    const m = /^([0-9A-F]{8})\.history$/.exec(f);
    if (m) newest = Math.max(newest, parseInt(m[1], 16));
  }
  return newest;
}

/**
 * Makes a fresh base backup of the source into an empty data directory, as a replica (when rewind is
 * impossible). It never deletes: an old data directory must have been kept aside first.
 */
export async function rebuildNode(dataDir: string, name: string, source: PgSource): Promise<void> {
  const user = postgresOwner();
  if (existsSync(join(dataDir, 'PG_VERSION'))) throw new Error(`${dataDir} still holds a cluster: keep it aside (keepDataDirAside) before making a fresh copy`);
  if (existsSync(dataDir) && readdirSync(dataDir).length > 0) renameSync(dataDir, `${dataDir}.partial-${Date.now()}`);
  ownDir(dataDir);
  try {
    await execFileAsync(findPgBinary('pg_basebackup'), ['-h', source.host, '-p', String(source.port), '-U', source.user, '-D', dataDir, '-X', 'stream', '-c', 'fast', '--no-sync'], {
      uid: user?.uid,
      gid: user?.gid,
      cwd: '/',
      env: childEnv({ PGPASSWORD: source.password, PGAPPNAME: 'runbook-rejoin' }, ['PGSSLMODE', 'PGSSLROOTCERT', 'PGSSLCERT', 'PGSSLKEY']),
    });
  } catch (err) {
    throw new Error(`pg_basebackup into ${dataDir} failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`);
  }
  writePrimaryConninfo(dataDir, name, source);
}
