/**
 * Scratch PostgreSQL instances for restore tests: a data directory of its own under a scratch root,
 * a free port, a socket directory only its owner can enter, and nothing shared with the servers the
 * backups came from. Each instance has a deterministic directory name (from the restore test's id)
 * and a marker file, so a retry after a worker crash, or the test's clean-up step, finds and removes
 * what an earlier attempt left running. Every creation and removal is appended to a ledger in the
 * scratch root: the record of which instances existed and when.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { appendFileSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MissingBinaryError, sleep } from './process';
import { postgresOwner } from './postgres';

const execFileAsync = promisify(execFile);

export const SCRATCH_NAME = /^restore-test-[a-z0-9]{4,40}$/;
const MARKER = 'runbook-scratch.json';
export const LEDGER = '.runbook-scratch-ledger';

export interface ScratchMarker {
  name: string;
  database: string;
  workflowId?: string;
  createdAt: string;
  port: number;
  pgMajor: string;
  kind: 'physical' | 'dump';
  /** The process that created it (a worker), with its start time (pids are reused), and the activity attempt. */
  creator: Creator & { attempt?: number };
}

export interface Creator {
  pid: number;
  /** The process's start time in clock ticks since boot (/proc/<pid>/stat, field 22). */
  startTicks?: string;
}

function startTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** This process, as a scratch instance's marker records its creator. */
export function thisCreator(): Creator {
  return { pid: process.pid, startTicks: startTicks(process.pid) };
}

/** True while the process that created an instance is still the same running process. */
export function creatorAlive(c: Creator): boolean {
  if (!processAlive(c.pid)) return false;
  return c.startTicks === undefined || startTicks(c.pid) === c.startTicks;
}

export interface ScratchInstance {
  name: string;
  dir: string;
  dataDir: string;
  socketDir: string;
  logFile: string;
  port: number;
  binDir: string;
}

/** PostgreSQL server binaries of one major version: PG_BIN when it is that version, else the distribution's directory. */
export function pgBinDirFor(major: string): string {
  const candidates = [process.env.PG_BIN, `/usr/lib/postgresql/${major}/bin`].filter((d): d is string => !!d);
  for (const dir of candidates) {
    const postgres = join(dir, 'postgres');
    if (!existsSync(postgres)) continue;
    try {
      const version = execFileSync(postgres, ['--version'], { encoding: 'utf8' });
      if (new RegExp(`\\(PostgreSQL\\) ${major}(\\.|\\s|$)`).test(version)) return dir;
    } catch {
      /* not runnable: try the next */
    }
  }
  throw new MissingBinaryError(
    `postgres ${major}`,
    `A restore test of a PostgreSQL ${major} backup starts a scratch PostgreSQL ${major} server: install its server binaries (apt-get install postgresql-${major}; scripts/bootstrap installs 15) or set PG_BIN to their directory.`,
  );
}

export function scratchPaths(root: string, name: string): Omit<ScratchInstance, 'port' | 'binDir'> {
  if (!SCRATCH_NAME.test(name)) throw new Error(`scratch instance name '${name}' must match ${SCRATCH_NAME}`);
  const dir = join(root, name);
  return { name, dir, dataDir: join(dir, 'data'), socketDir: join(dir, 'socket'), logFile: join(dir, 'postgres.log') };
}

function owner(): { uid: number; gid: number } | undefined {
  return postgresOwner();
}

function chownToOwner(path: string): void {
  const o = owner();
  if (o) chownSync(path, o.uid, o.gid);
}

/** Appends one line to the scratch root's ledger (kept under 1 MB: older lines are dropped). */
function ledger(root: string, event: string): void {
  const file = join(root, LEDGER);
  try {
    if (existsSync(file) && statSync(file).size > 1024 * 1024) {
      const text = readFileSync(file, 'utf8');
      writeFileSync(file, text.slice(text.length / 2).replace(/^[^\n]*\n/, ''));
    }
    appendFileSync(file, `${new Date().toISOString()} ${event}\n`);
  } catch {
    /* the ledger is a record, never a reason to fail a restore test */
  }
}

export function readLedger(root: string): { at: string; event: string; name: string; detail: string }[] {
  const file = join(root, LEDGER);
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [at, event, name, ...rest] = l.split(' ');
      return { at, event, name, detail: rest.join(' ') };
    });
}

/** The scratch root, created readable by the server's user (which must reach the instance directories below it). */
export function ensureScratchRoot(root: string): void {
  mkdirSync(root, { recursive: true, mode: 0o755 });
  const o = owner();
  if (o) {
    try {
      execFileSync('test', ['-x', root], { uid: o.uid, gid: o.gid, stdio: 'ignore' });
    } catch {
      throw new Error(`the scratch directory ${root} is not reachable by the postgres user (a parent directory is private); choose restoreTest.scratchDir elsewhere, e.g. /var/tmp/runbook-scratch`);
    }
  }
}

export function freeBytes(root: string): number {
  const s = statfsSync(root);
  return Number(s.bavail) * Number(s.bsize);
}

function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function scratchRunning(dataDir: string): number | undefined {
  const pid = postmasterPid(dataDir);
  return pid !== undefined && processAlive(pid) ? pid : undefined;
}

/**
 * Stops an instance hard: its data is thrown away, so nothing needs a clean shutdown. SIGQUIT is
 * PostgreSQL's immediate shutdown; the postmaster takes its children with it.
 */
export async function stopScratch(dataDir: string): Promise<boolean> {
  const pid = scratchRunning(dataDir);
  if (pid === undefined) return false;
  try {
    process.kill(pid, 'SIGQUIT');
  } catch {
    return false;
  }
  const deadline = Date.now() + 15_000;
  while (processAlive(pid) && Date.now() < deadline) await sleep(50);
  if (processAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    while (processAlive(pid)) await sleep(50);
  }
  return true;
}

export function readMarker(root: string, name: string): ScratchMarker | undefined {
  try {
    return JSON.parse(readFileSync(join(scratchPaths(root, name).dir, MARKER), 'utf8')) as ScratchMarker;
  } catch {
    return undefined;
  }
}

/**
 * Removes an instance and its directory: stops its server if one runs, then deletes everything.
 * Only directories with the scratch name pattern are touched. Removing one that does not exist is a no-op.
 */
export async function removeScratch(root: string, name: string): Promise<{ existed: boolean; wasRunning: boolean }> {
  const p = scratchPaths(root, name);
  if (!existsSync(p.dir)) return { existed: false, wasRunning: false };
  const wasRunning = await stopScratch(p.dataDir);
  rmSync(p.dir, { recursive: true, force: true });
  ledger(root, `remove ${name} running=${wasRunning}`);
  return { existed: true, wasRunning };
}

/**
 * A fresh, empty instance directory for `name`: whatever an earlier attempt left there (a running
 * server, a half-restored data directory) is stopped and removed first, so at most one instance of a
 * restore test ever exists.
 */
export async function prepareScratch(root: string, marker: Omit<ScratchMarker, 'createdAt'>): Promise<{ paths: Omit<ScratchInstance, 'port' | 'binDir'>; leftover: boolean; swept: string[] }> {
  ensureScratchRoot(root);
  const leftover = await removeScratch(root, marker.name);
  const swept = await sweepScratch(root);
  const paths = scratchPaths(root, marker.name);
  mkdirSync(paths.dir, { mode: 0o700 });
  chownToOwner(paths.dir);
  mkdirSync(paths.socketDir, { mode: 0o700 });
  chownToOwner(paths.socketDir);
  writeFileSync(join(paths.dir, MARKER), `${JSON.stringify({ ...marker, createdAt: new Date().toISOString() }, null, 2)}\n`);
  writeFileSync(paths.logFile, '');
  chownToOwner(paths.logFile);
  ledger(root, `create ${marker.name} kind=${marker.kind} port=${marker.port} pid=${marker.creator.pid} attempt=${marker.creator.attempt ?? '-'}${leftover.existed ? ' replaced-leftover' : ''}`);
  return { paths, leftover: leftover.existed, swept };
}

/**
 * Removes instances whose creator is gone: a worker that died mid-restore leaves its instance behind
 * (possibly still running, in a session of its own). The retry of the same test removes it by name;
 * this catches the ones whose retry ran elsewhere. A directory younger than a minute is left alone:
 * its creator may not have written the marker yet.
 */
export async function sweepScratch(root: string): Promise<string[]> {
  const swept: string[] = [];
  let names: string[];
  try {
    names = readdirSync(root).filter((n) => SCRATCH_NAME.test(n));
  } catch {
    return swept;
  }
  for (const name of names) {
    const dir = join(root, name);
    let marker: ScratchMarker | undefined;
    try {
      if (Date.now() - statSync(dir).mtimeMs < 60_000) continue;
      marker = readMarker(root, name);
    } catch {
      continue;
    }
    if (marker && creatorAlive(marker.creator)) continue;
    await removeScratch(root, name);
    ledger(root, `sweep ${name} creator=${marker ? marker.creator.pid : 'unknown'}`);
    swept.push(name);
  }
  return swept;
}

/** initdb for a dump restore: trust over the instance's own socket only, the given superuser name. */
export async function initScratch(inst: ScratchInstance, superuser: string): Promise<void> {
  const o = owner();
  mkdirSync(inst.dataDir, { mode: 0o700 });
  chownToOwner(inst.dataDir);
  try {
    await execFileAsync(join(inst.binDir, 'initdb'), ['-D', inst.dataDir, '-U', superuser, '--auth-local=trust', '--auth-host=reject', '-E', 'UTF8', '--locale=C', '--no-sync'], {
      uid: o?.uid,
      gid: o?.gid,
      cwd: '/',
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`initdb of the scratch instance ${inst.name} failed: ${(e.stderr || e.message).trim()}`);
  }
}

/**
 * Starts the instance's postmaster in a session of its own (it must not die with the process that
 * started it, or a crash would leave half a restore; the retry or the clean-up step stops it by its
 * data directory). Settings given here override the data directory's configuration files: a restored
 * production configuration must not make the scratch instance listen on production's address and
 * port, archive into production's repository, or ask for production's memory.
 */
export function startScratch(inst: ScratchInstance, settings: Record<string, string>, env: NodeJS.ProcessEnv): number {
  const o = owner();
  const hba = join(inst.dir, 'scratch_hba.conf');
  const ident = join(inst.dir, 'scratch_ident.conf');
  // Only the instance's owner can enter the socket directory, so trust over the socket is the owner's alone.
  writeFileSync(hba, 'local all all trust\nhost all all 0.0.0.0/0 reject\nhost all all ::/0 reject\n');
  writeFileSync(ident, '');
  chownToOwner(hba);
  chownToOwner(ident);
  // A data directory restored from a host whose configuration lives elsewhere (Debian's /etc/postgresql) has none.
  const conf = join(inst.dataDir, 'postgresql.conf');
  if (!existsSync(conf)) {
    writeFileSync(conf, '# written for a scratch restore-test instance\n');
    chownToOwner(conf);
  }
  const all: Record<string, string> = {
    port: String(inst.port),
    listen_addresses: '127.0.0.1',
    unix_socket_directories: inst.socketDir,
    hba_file: hba,
    ident_file: ident,
    cluster_name: inst.name,
    archive_mode: 'off',
    archive_command: '',
    ssl: 'off',
    huge_pages: 'off',
    logging_collector: 'off',
    log_destination: 'stderr',
    ...settings,
  };
  const args = ['-D', inst.dataDir, ...Object.entries(all).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
  const fd = openSync(inst.logFile, 'a');
  try {
    const child = spawn(join(inst.binDir, 'postgres'), args, { env, uid: o?.uid, gid: o?.gid, cwd: '/', detached: true, stdio: ['ignore', fd, fd] });
    if (child.pid === undefined) throw new Error(`could not start the scratch instance ${inst.name}`);
    child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

export function scratchLog(inst: { logFile: string }, maxBytes = 2 * 1024 * 1024): string {
  try {
    const text = readFileSync(inst.logFile, 'utf8');
    return text.length > maxBytes ? text.slice(-maxBytes) : text;
  } catch {
    return '';
  }
}

/**
 * Waits until an instance started by startScratch accepts connections (after recovery, if it has any
 * to do): its log says so. Fails early, with the server's own words, if the process exits.
 */
export async function waitForScratch(inst: { logFile: string; name: string }, pid: number, timeoutMs: number, onWait?: () => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = scratchLog(inst);
    if (/database system is ready to accept connections/.test(text)) return;
    if (!processAlive(pid)) {
      const lines = text.split('\n').filter((l) => /(FATAL|PANIC|ERROR):/.test(l)).slice(-4).join('; ');
      throw new Error(`the scratch instance ${inst.name} exited while starting: ${lines || 'no error in its log'}`);
    }
    if (Date.now() > deadline) throw new Error(`the scratch instance ${inst.name} did not accept connections within ${timeoutMs} ms`);
    onWait?.();
    await sleep(100);
  }
}
