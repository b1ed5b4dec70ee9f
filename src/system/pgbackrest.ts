/**
 * Running the pgBackRest command (the distribution's package) and reading what it says: options as
 * PGBACKREST_* environment variables (so secrets never reach a command line and no configuration file
 * of the machine is read), `info --output=json`, `verify` text, `repo-ls --output=json`, and the WAL
 * arithmetic needed to judge an archive (segment names, LSNs, timelines). Used by the pgBackRest
 * activities and by the sandbox, which plays the database host.
 */
import { spawn } from 'node:child_process';
import { findBinary } from './process';

export const PGBACKREST_HINT = 'Install pgBackRest (scripts/bootstrap does: apt-get install pgbackrest), or put it on PATH.';

export function findPgBackRest(): string {
  return findBinary('pgbackrest', { envVar: 'PGBACKREST_PATH', dirs: ['/usr/bin'], hint: PGBACKREST_HINT });
}

/** The S3 repository, as pgBackRest's repo1-* options. */
export interface PgBackRestRepo {
  bucket: string;
  /** repo1-path: the repository's root inside the bucket. */
  path: string;
  /** Host name the TLS certificate is checked against (pgBackRest 2.45 speaks S3 over HTTPS only). */
  endpoint: string;
  port: number;
  region: string;
  uriStyle: 'path' | 'host';
  caFile?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  cipherPass?: string;
}

/** Where pgBackRest finds the database cluster: its own data directory, or a database host's pgBackRest TLS server. */
export interface PgBackRestPg {
  dataDir: string;
  port: number;
  socketDir?: string;
  user?: string;
  tls?: { host: string; port: number; caFile: string; certFile: string; keyFile: string };
}

export interface PgBackRestOptions {
  stanza: string;
  repo: PgBackRestRepo;
  pg?: PgBackRestPg;
  /** Directory for pgBackRest's lock files (one per stanza and command type). */
  lockDir: string;
  processMax?: number;
  compressType?: string;
  bundle?: boolean;
  retention?: { full?: number; diff?: number };
}

/**
 * The whole configuration as environment variables. PGBACKREST_CONFIG=/dev/null keeps any
 * /etc/pgbackrest configuration of the machine out: what runs is what the runbook config says.
 */
export function pgbackrestEnv(o: PgBackRestOptions, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: Record<string, string | undefined> = {
    PGBACKREST_CONFIG: '/dev/null',
    PGBACKREST_STANZA: o.stanza,
    PGBACKREST_LOCK_PATH: o.lockDir,
    PGBACKREST_LOG_LEVEL_FILE: 'off',
    PGBACKREST_REPO1_TYPE: 's3',
    PGBACKREST_REPO1_PATH: o.repo.path,
    PGBACKREST_REPO1_S3_BUCKET: o.repo.bucket,
    PGBACKREST_REPO1_S3_ENDPOINT: o.repo.endpoint,
    PGBACKREST_REPO1_STORAGE_PORT: String(o.repo.port),
    PGBACKREST_REPO1_S3_REGION: o.repo.region,
    PGBACKREST_REPO1_S3_URI_STYLE: o.repo.uriStyle,
    PGBACKREST_REPO1_STORAGE_CA_FILE: o.repo.caFile,
    PGBACKREST_PROCESS_MAX: o.processMax ? String(o.processMax) : undefined,
    PGBACKREST_COMPRESS_TYPE: o.compressType,
    PGBACKREST_REPO1_BUNDLE: o.bundle ? 'y' : undefined,
    PGBACKREST_REPO1_RETENTION_FULL: o.retention?.full ? String(o.retention.full) : undefined,
    PGBACKREST_REPO1_RETENTION_DIFF: o.retention?.diff ? String(o.retention.diff) : undefined,
  };
  if (o.repo.accessKeyId && o.repo.secretAccessKey) {
    env.PGBACKREST_REPO1_S3_KEY = o.repo.accessKeyId;
    env.PGBACKREST_REPO1_S3_KEY_SECRET = o.repo.secretAccessKey;
  } else {
    // No keys in the config: the instance or pod role (AWS's credential endpoints).
    env.PGBACKREST_REPO1_S3_KEY_TYPE = 'auto';
  }
  if (o.repo.cipherPass) {
    env.PGBACKREST_REPO1_CIPHER_TYPE = 'aes-256-cbc';
    env.PGBACKREST_REPO1_CIPHER_PASS = o.repo.cipherPass;
  }
  if (o.pg) {
    env.PGBACKREST_PG1_PATH = o.pg.dataDir;
    env.PGBACKREST_PG1_PORT = String(o.pg.port);
    env.PGBACKREST_PG1_SOCKET_PATH = o.pg.socketDir;
    env.PGBACKREST_PG1_USER = o.pg.user;
    if (o.pg.tls) {
      env.PGBACKREST_PG1_HOST = o.pg.tls.host;
      env.PGBACKREST_PG1_HOST_TYPE = 'tls';
      env.PGBACKREST_PG1_HOST_PORT = String(o.pg.tls.port);
      env.PGBACKREST_PG1_HOST_CA_FILE = o.pg.tls.caFile;
      env.PGBACKREST_PG1_HOST_CERT_FILE = o.pg.tls.certFile;
      env.PGBACKREST_PG1_HOST_KEY_FILE = o.pg.tls.keyFile;
    }
  }
  const out: NodeJS.ProcessEnv = {};
  // Only what is needed to run: PATH, locale and time zone from the worker, nothing else of its environment.
  for (const k of ['PATH', 'LANG', 'LC_ALL', 'TZ', 'HOME']) if (process.env[k] !== undefined) out[k] = process.env[k];
  for (const [k, v] of Object.entries({ ...env, ...extra })) if (v !== undefined && v !== '') out[k] = v;
  return out;
}

export interface PgBackRestRun {
  code: number;
  stdout: string;
  /** The last lines of stderr (errors and warnings), for messages. */
  stderr: string;
  durationMs: number;
}

/**
 * Runs one pgBackRest command to its end. `onLine` sees stdout line by line (progress at
 * log-level-console=detail); an abort signal stops the process group politely, then hard.
 */
export function runPgBackRest(
  args: string[],
  opts: { env: NodeJS.ProcessEnv; runAs?: { uid: number; gid: number }; signal?: AbortSignal; onLine?: (line: string) => void; cwd?: string },
): Promise<PgBackRestRun> {
  const started = Date.now();
  return new Promise((resolve) => {
    let child;
    try {
      child = spawn(findPgBackRest(), args, { env: opts.env, uid: opts.runAs?.uid, gid: opts.runAs?.gid, cwd: opts.cwd ?? '/', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      resolve({ code: -1, stdout: '', stderr: (err as Error).message, durationMs: 0 });
      return;
    }
    let stdout = '';
    let stderr = '';
    let partial = '';
    child.stdout.on('data', (d: Buffer) => {
      const text = d.toString();
      // Big outputs (info of a long history) are kept whole; progress lines are handed on as they come.
      stdout += text;
      if (stdout.length > 64 * 1024 * 1024) stdout = stdout.slice(-32 * 1024 * 1024);
      if (opts.onLine) {
        const lines = (partial + text).split('\n');
        partial = lines.pop() ?? '';
        for (const l of lines) opts.onLine(l);
      }
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-16_000);
    });
    const onAbort = () => {
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => {
      stderr += err.message;
    });
    child.on('close', (code) => {
      opts.signal?.removeEventListener('abort', onAbort);
      resolve({ code: code ?? -1, stdout, stderr: stderr.trim(), durationMs: Date.now() - started });
    });
  });
}

/** pgBackRest's own error line: "ERROR: [055]: unable to load info file ..." */
export function pgbackrestError(run: PgBackRestRun): { code?: number; message: string } {
  const text = `${run.stderr}\n${run.stdout}`;
  const m = /ERROR: \[(\d+)\]: ([^\n]*(?:\n {7}[^\n]*)*)/.exec(text);
  if (m) return { code: Number(m[1]), message: m[2].replace(/\n\s+/g, ' ').trim() };
  return { message: text.trim().split('\n').slice(-4).join(' ') || `exit code ${run.code}` };
}

// ---------------------------------------------------------------------------------------------------
// info --output=json

export interface PhysicalBackup {
  label: string;
  type: 'full' | 'diff' | 'incr';
  prior: string | null;
  reference: string[];
  startedAt: string;
  stoppedAt: string;
  lsnStart: string;
  lsnStop: string;
  walStart: string;
  walStop: string;
  /** The database's size at backup time (what a restore writes), and this backup's share of it. */
  databaseBytes: number;
  deltaBytes: number;
  /** What the backup set and this backup take in the repository (compressed). */
  repoBytes: number;
  repoDeltaBytes: number;
  annotation: Record<string, string>;
  error: boolean;
  pgVersion: string;
}

export interface RepositoryInfo {
  stanza: string;
  status: { code: number; message: string };
  /** The archive of the current database (newest archive id): first and last WAL segment present. */
  archive?: { id: string; min: string; max: string };
  pgVersion?: string;
  systemId?: string;
  backups: PhysicalBackup[];
}

interface RawInfo {
  name: string;
  status: { code: number; message: string };
  archive?: { id: string; min: string | null; max: string | null; database: { id: number } }[];
  db?: { id: number; version: string; 'system-id': number | string }[];
  backup?: {
    label: string;
    type: 'full' | 'diff' | 'incr';
    prior: string | null;
    reference: string[] | null;
    timestamp: { start: number; stop: number };
    lsn?: { start: string; stop: string };
    archive: { start: string; stop: string };
    info: { size: number; delta: number; repository: { size: number; delta: number } };
    annotation?: Record<string, string>;
    error?: boolean;
    database: { id: number };
  }[];
}

export function parseInfo(json: string, stanza: string): RepositoryInfo {
  let parsed: RawInfo[];
  try {
    // system-id exceeds 2^53: keep it as text.
    parsed = JSON.parse(json.replace(/"system-id":\s*(\d+)/g, '"system-id":"$1"')) as RawInfo[];
  } catch {
    throw new Error(`pgBackRest info did not print JSON: ${json.slice(0, 200)}`);
  }
  const raw = parsed.find((s) => s.name === stanza);
  if (!raw) return { stanza, status: { code: 1, message: 'missing stanza path' }, backups: [] };
  const dbs = raw.db ?? [];
  const current = dbs.reduce<(typeof dbs)[number] | undefined>((a, b) => (!a || b.id > a.id ? b : a), undefined);
  const archive = (raw.archive ?? []).filter((a) => a.database.id === current?.id && a.min && a.max).pop();
  const version = (id: number) => dbs.find((d) => d.id === id)?.version ?? '';
  return {
    stanza,
    status: raw.status,
    archive: archive ? { id: archive.id, min: archive.min!, max: archive.max! } : undefined,
    pgVersion: current?.version,
    systemId: current ? String(current['system-id']) : undefined,
    backups: (raw.backup ?? []).map((b) => ({
      label: b.label,
      type: b.type,
      prior: b.prior,
      reference: b.reference ?? [],
      startedAt: new Date(b.timestamp.start * 1000).toISOString(),
      stoppedAt: new Date(b.timestamp.stop * 1000).toISOString(),
      lsnStart: b.lsn?.start ?? '',
      lsnStop: b.lsn?.stop ?? '',
      walStart: b.archive.start,
      walStop: b.archive.stop,
      databaseBytes: b.info.size,
      deltaBytes: b.info.delta,
      repoBytes: b.info.repository.size,
      repoDeltaBytes: b.info.repository.delta,
      annotation: b.annotation ?? {},
      error: b.error === true,
      pgVersion: version(b.database.id),
    })),
  };
}

// ---------------------------------------------------------------------------------------------------
// verify --output=text: pgBackRest 2.45 can exit 0 while reporting errors (pgbackrest#2502), so the text decides.

export interface VerifyResult {
  ok: boolean;
  status: string;
  problems: string[];
  backupsChecked: number;
  walChecked: number;
}

export function parseVerify(text: string): VerifyResult {
  const status = /^status: (\S+)/m.exec(text)?.[1] ?? 'unknown';
  const problems: string[] = [];
  let backupsChecked = 0;
  let walChecked = 0;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i].trim();
    const counts = /^missing: (\d+), checksum invalid: (\d+), size invalid: (\d+), other: (\d+)/.exec(lines[i + 1]?.trim() ?? '');
    const describe = (what: string) => {
      if (!counts) return;
      const [, missing, checksum, size, other] = counts.map(Number);
      const bad = [missing && `${missing} missing`, checksum && `${checksum} with an invalid checksum`, size && `${size} with an invalid size`, other && `${other} other errors`].filter(Boolean);
      if (bad.length) problems.push(`${what}: ${bad.join(', ')}`);
    };
    let m: RegExpExecArray | null;
    if ((m = /^archiveId: (\S+), total WAL checked: (\d+), total valid WAL: (\d+)/.exec(l))) {
      walChecked += Number(m[2]);
      describe(`WAL archive ${m[1]} (${m[3]} of ${m[2]} segments valid)`);
    } else if ((m = /^backup: (\S+), status: (\S+), total files checked: (\d+), total valid files: (\d+)/.exec(l))) {
      backupsChecked++;
      if (m[2] !== 'valid') problems.push(`backup ${m[1]} is ${m[2]} (${m[4]} of ${m[3]} files valid)`);
      describe(`backup ${m[1]}`);
    }
  }
  if (status !== 'ok' && problems.length === 0) problems.push(`pgBackRest verify reported status ${status}`);
  return { ok: status === 'ok' && problems.length === 0, status, problems, backupsChecked, walChecked };
}

// ---------------------------------------------------------------------------------------------------
// WAL arithmetic: segment names are TTTTTTTTXXXXXXXXYYYYYYYY (timeline, then the segment number split
// at 4 GB boundaries), so the number of segments per "XXXXXXXX" depends on the segment size.

export const DEFAULT_WAL_SEGMENT_BYTES = 16 * 1024 * 1024;

export function parseLsn(lsn: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn);
  if (!m) throw new Error(`'${lsn}' is not an LSN`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(n: bigint): string {
  return `${(n >> 32n).toString(16).toUpperCase()}/${(n & 0xffffffffn).toString(16).toUpperCase()}`;
}

const hex8 = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');

export function segmentsPerId(segmentBytes: number): bigint {
  return 0x100000000n / BigInt(segmentBytes);
}

/** The segment number (not name) that holds an LSN. */
export function segmentOfLsn(lsn: string | bigint, segmentBytes: number): bigint {
  return (typeof lsn === 'bigint' ? lsn : parseLsn(lsn)) / BigInt(segmentBytes);
}

export function segmentName(timeline: number, segno: bigint, segmentBytes: number): string {
  const per = segmentsPerId(segmentBytes);
  return `${hex8(timeline)}${hex8(segno / per)}${hex8(segno % per)}`;
}

export function parseSegmentName(name: string, segmentBytes: number): { timeline: number; segno: bigint } {
  const m = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})/.exec(name);
  if (!m) throw new Error(`'${name}' is not a WAL segment name`);
  return { timeline: parseInt(m[1], 16), segno: BigInt(`0x${m[2]}`) * segmentsPerId(segmentBytes) + BigInt(`0x${m[3]}`) };
}

/** A timeline history file: each line "parentTLI<TAB>switchpoint<TAB>reason". */
export function parseHistory(text: string): { timeline: number; switchLsn: string }[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [tli, lsn] = l.split(/\s+/);
      return { timeline: Number(tli), switchLsn: lsn };
    })
    .filter((x) => Number.isInteger(x.timeline) && /\//.test(x.switchLsn));
}

/**
 * The segments a recovery reads from `fromSegno` to `toSegno` on timeline `target`, whose history
 * says where each ancestor timeline ended: a segment belongs to the newest timeline that had begun
 * by then (a switch segment is read from the new timeline).
 */
export function requiredSegments(fromSegno: bigint, toSegno: bigint, target: number, history: { timeline: number; switchLsn: string }[], segmentBytes: number): string[] {
  const starts = history.map((h, i) => ({ timeline: history[i + 1]?.timeline ?? target, fromSegno: segmentOfLsn(h.switchLsn, segmentBytes) }));
  const out: string[] = [];
  for (let s = fromSegno; s <= toSegno; s++) {
    let tli = history[0]?.timeline ?? target;
    for (const st of starts) if (s >= st.fromSegno) tli = st.timeline;
    out.push(segmentName(tli, s, segmentBytes));
  }
  return out;
}
