/**
 * The sandbox plays the database host's administrator for pgBackRest: a host configuration file
 * (what archive_command and stanza-create read: the S3 repository on the sandbox S3 server's TLS
 * endpoint, its keys, the sandbox CA), WAL archiving turned on in the primary's configuration, and
 * the stanza created. The runbook itself never reads this file: its activities get the same
 * repository from the runbook config, with the keys by reference.
 */
import { appendFileSync, chmodSync, chownSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findPgBackRest, pgbackrestError, runPgBackRest } from '../system/pgbackrest';
import { postgresOwner } from '../system/postgres';
import type { S3ServerInfo } from './s3';

export const SANDBOX_PGBACKREST_BUCKET = 'runbook-pgbackrest';
export const SANDBOX_STANZA = 'app';
export const SANDBOX_REPO_PATH = '/sandbox';

export interface SandboxPgBackRest {
  stanza: string;
  bucket: string;
  repoPath: string;
  /** The database host's pgBackRest configuration (readable by the postgres user only: it holds the S3 keys). */
  hostConfig: string;
  /** The sandbox CA, where the postgres user can read it. */
  caFile: string;
  endpoint: string;
  port: number;
  lockDir: string;
}

function own(path: string, mode: number): void {
  const user = postgresOwner();
  if (user) chownSync(path, user.uid, user.gid);
  chmodSync(path, mode);
}

/**
 * Writes the host configuration under `dir` (a directory the postgres user can reach). No pg1-path:
 * archive_command passes the data directory it runs in, so a replica promoted after a failover
 * archives from its own directory with the same configuration.
 */
export function writeHostConfig(dir: string, s3: S3ServerInfo, opts: { stanza?: string; bucket?: string; repoPath?: string } = {}): SandboxPgBackRest {
  if (!s3.tls) throw new Error('pgBackRest needs the S3 server\'s TLS endpoint (pgBackRest 2.45 speaks S3 only over HTTPS)');
  findPgBackRest();
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  own(dir, 0o755);
  const caFile = join(dir, 'sandbox-ca.pem');
  copyFileSync(s3.tls.caFile, caFile);
  own(caFile, 0o644);
  const lockDir = join(dir, 'lock');
  mkdirSync(lockDir, { recursive: true });
  own(lockDir, 0o700);
  const cfg: SandboxPgBackRest = {
    stanza: opts.stanza ?? SANDBOX_STANZA,
    bucket: opts.bucket ?? SANDBOX_PGBACKREST_BUCKET,
    repoPath: opts.repoPath ?? SANDBOX_REPO_PATH,
    hostConfig: join(dir, 'pgbackrest.conf'),
    caFile,
    endpoint: s3.tls.host,
    port: s3.tls.port,
    lockDir,
  };
  writeFileSync(
    cfg.hostConfig,
    [
      '# The sandbox database host\'s pgBackRest configuration, written by the sandbox (src/sandbox/pgbackrest.ts).',
      '[global]',
      'repo1-type=s3',
      `repo1-path=${cfg.repoPath}`,
      `repo1-s3-bucket=${cfg.bucket}`,
      `repo1-s3-endpoint=${cfg.endpoint}`,
      `repo1-storage-port=${cfg.port}`,
      `repo1-s3-region=${s3.region}`,
      'repo1-s3-uri-style=path',
      `repo1-storage-ca-file=${caFile}`,
      `repo1-s3-key=${s3.accessKeyId}`,
      `repo1-s3-key-secret=${s3.secretAccessKey}`,
      'repo1-bundle=y',
      'compress-type=lz4',
      `lock-path=${lockDir}`,
      'log-level-file=off',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  own(cfg.hostConfig, 0o600);
  return cfg;
}

/**
 * The archive_command that pushes a WAL segment into the stanza. PostgreSQL runs it in the node's data
 * directory, through the shell, so `$PWD` is the data directory of whichever node is primary.
 */
export function archiveCommand(cfg: SandboxPgBackRest): string {
  return `pgbackrest --config=${cfg.hostConfig} --stanza=${cfg.stanza} --pg1-path="$PWD" archive-push %p`;
}

/** postgresql.conf lines that archive every WAL segment into the stanza, from whichever node is primary. */
export function archiveSettings(cfg: SandboxPgBackRest): string {
  return ['', '# WAL archiving into the sandbox pgBackRest stanza', 'archive_mode = on', `archive_command = '${archiveCommand(cfg)}'`, "archive_timeout = '60s'", ''].join('\n');
}

export function enableArchiving(dataDir: string, cfg: SandboxPgBackRest): void {
  const conf = join(dataDir, 'postgresql.conf');
  if (!readFileSync(conf, 'utf8').includes('# WAL archiving into the sandbox pgBackRest stanza')) appendFileSync(conf, archiveSettings(cfg));
}

/** stanza-create as the database host's administrator would run it (idempotent). */
export async function createStanza(cfg: SandboxPgBackRest, primary: { dataDir: string; port: number; socketDir: string }): Promise<void> {
  const run = await runPgBackRest([`--config=${cfg.hostConfig}`, `--stanza=${cfg.stanza}`, `--pg1-path=${primary.dataDir}`, `--pg1-port=${primary.port}`, `--pg1-socket-path=${primary.socketDir}`, 'stanza-create'], {
    env: { PATH: process.env.PATH },
    runAs: postgresOwner(),
  });
  if (run.code !== 0) throw new Error(`pgbackrest stanza-create failed: ${pgbackrestError(run).message}`);
}
