import assert from 'node:assert/strict';
import type { SandboxPgBackRest } from '../src/sandbox/pgbackrest';
import type { S3ServerInfo } from '../src/sandbox/s3';
import { parseInfo, pgbackrestEnv, runPgBackRest } from '../src/system/pgbackrest';
import { postgresOwner } from '../src/system/postgres';

/** The repository settings a runbook config gives for a sandbox stanza, for pgBackRest run by a test itself. */
export function sandboxRepoEnv(b: SandboxPgBackRest, s3: S3ServerInfo, lockDir: string, overrides: { caFile?: string } = {}): NodeJS.ProcessEnv {
  return pgbackrestEnv({
    stanza: b.stanza,
    lockDir,
    repo: { bucket: b.bucket, path: b.repoPath, endpoint: b.endpoint, port: b.port, region: 'us-east-1', uriStyle: 'path', caFile: overrides.caFile ?? b.caFile, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
}

/** The stanza as `pgbackrest info` reports it (its backups and archive range). */
export async function sandboxRepositoryInfo(b: SandboxPgBackRest, s3: S3ServerInfo, lockDir: string) {
  const run = await runPgBackRest(['info', '--output=json'], { env: sandboxRepoEnv(b, s3, lockDir), runAs: postgresOwner() });
  assert.equal(run.code, 0, run.stderr);
  return parseInfo(run.stdout, b.stanza);
}
