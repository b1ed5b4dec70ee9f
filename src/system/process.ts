import { spawn, execFileSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, dirname, join } from 'node:path';

/** Raised when a program the local stack needs is not installed; names the program and the fix. */
export class MissingBinaryError extends Error {
  constructor(
    readonly binary: string,
    readonly hint: string,
  ) {
    super(`required program '${binary}' was not found. ${hint}`);
    this.name = 'MissingBinaryError';
  }
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Finds a program: an explicit path from an environment variable wins, then well-known directories,
 * then PATH. Throws MissingBinaryError naming the program and how to install it.
 */
export function findBinary(name: string, opts: { envVar?: string; dirs?: string[]; pythonScripts?: boolean; hint: string }): string {
  const fromEnv = opts.envVar ? process.env[opts.envVar] : undefined;
  if (fromEnv) {
    if (isExecutable(fromEnv)) return fromEnv;
    throw new MissingBinaryError(name, `${opts.envVar}=${fromEnv} is not an executable file. ${opts.hint}`);
  }
  const pathDirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const dir of [...(opts.dirs ?? []), ...pathDirs, ...(opts.pythonScripts ? pythonScriptsDir() : [])]) {
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  throw new MissingBinaryError(name, opts.hint);
}

/** What any child program may need from this process: where programs are, the locale, the time zone. */
const BASE_CHILD_VARIABLES = ['PATH', 'LANG', 'LANGUAGE', 'LC_ALL', 'LC_CTYPE', 'LC_MESSAGES', 'TZ'] as const;

/**
 * The environment of a child program: PATH, the locale and the time zone of this process, the other
 * variables named in `inherit`, and the values given. Never the whole environment: a worker's holds
 * every secret its config references (database passwords, cloud keys, payload keys), and a child
 * (or a core dump of it, or /proc/<pid>/environ) has no business with them.
 */
export function childEnv(values: Record<string, string | undefined> = {}, inherit: readonly string[] = []): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of [...BASE_CHILD_VARIABLES, ...inherit]) if (process.env[name] !== undefined) env[name] = process.env[name];
  for (const [name, value] of Object.entries(values)) if (value !== undefined) env[name] = value;
  return env;
}

let scriptsDir: string | null | undefined;

/** Where pip puts console scripts (temporal, moto_server), for machines where that is not on PATH. */
export function pythonScriptsDir(): string[] {
  if (scriptsDir === undefined) {
    try {
      scriptsDir = execFileSync('python3', ['-c', "import sysconfig; print(sysconfig.get_path('scripts'))"], { encoding: 'utf8', env: childEnv({}, ['HOME', 'PYENV_ROOT', 'PYENV_VERSION', 'VIRTUAL_ENV']) }).trim() || null;
    } catch {
      scriptsDir = null;
    }
  }
  return scriptsDir ? [scriptsDir] : [];
}

/** Asks the kernel for a free TCP port on the given loopback address. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen({ host, port: 0 }, () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not determine a free port'));
      });
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Last lines of a log file, for error messages that say why a service did not come up. */
export function tailFile(path: string, lines = 15): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export interface SpawnedService {
  name: string;
  pid: number;
  logFile: string;
}

/**
 * Processes started by this module, so an unexpected exit of the owning process (an uncaught error,
 * Ctrl-C) still takes them down. `stack up` detaches on purpose and removes its services from here.
 */
const owned = new Map<number, string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pid of owned.keys()) signalGroup(pid, 'SIGKILL');
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      for (const pid of owned.keys()) signalGroup(pid, 'SIGKILL');
      process.exit(130);
    });
  }
}

/** Registers a process started by someone else (pg_ctl's postmaster) for clean-up on an unexpected exit. */
export function adopt(pid: number, name: string): void {
  installExitHook();
  owned.set(pid, name);
}

export function disown(pid: number): void {
  owned.delete(pid);
}

export interface SpawnOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Run as this user (needed for PostgreSQL, which refuses to run as root). */
  uid?: number;
  gid?: number;
}

/**
 * Starts a long-running service in its own process group with stdout and stderr appended to a log
 * file. Its own group lets stop() take down any children it forks (the pyenv shim, postgres backends).
 */
export function spawnService(name: string, command: string, args: string[], logFile: string, opts: SpawnOptions = {}): SpawnedService {
  mkdirSync(dirname(logFile), { recursive: true });
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      uid: opts.uid,
      gid: opts.gid,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    if (child.pid === undefined) throw new Error(`could not start ${name} (${command})`);
    child.unref();
    installExitHook();
    owned.set(child.pid, name);
    return { name, pid: child.pid, logFile };
  } finally {
    closeSync(fd);
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  }
}

/**
 * Stops a service's whole process group: the polite signal first, SIGKILL after the timeout. Resolves
 * once no process of the group is left (the leader may exit before its children do).
 */
export async function stopService(pid: number, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<void> {
  signalGroup(pid, signal);
  const deadline = Date.now() + timeoutMs;
  while (groupAlive(pid) && Date.now() < deadline) await sleep(50);
  if (groupAlive(pid)) {
    signalGroup(pid, 'SIGKILL');
    const killDeadline = Date.now() + 5_000;
    while (groupAlive(pid) && Date.now() < killDeadline) await sleep(50);
  }
  owned.delete(pid);
}

/**
 * Whether a single process runs (it need not lead a process group: Patroni's postmaster does not).
 * A zombie does not count: killed processes may wait a while to be reaped by whoever adopted them.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Polls until check() returns true; on timeout the error carries the service log's tail. */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  opts: { timeoutMs: number; pid?: number; logFile?: string; intervalMs?: number },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (opts.pid !== undefined && !groupAlive(opts.pid)) {
      throw new Error(`${what}: the process exited during start-up.\n${opts.logFile ? tailFile(opts.logFile) : ''}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not ready after ${opts.timeoutMs} ms.\n${opts.logFile ? tailFile(opts.logFile) : ''}`);
    }
    await sleep(opts.intervalMs ?? 100);
  }
}

/** uid/gid of a system user, or undefined when it does not exist. */
export function systemUser(name: string): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    return undefined;
  }
}
