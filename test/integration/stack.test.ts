import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { loadConfig } from '../../src/config/load';
import { readSecret } from '../../src/config/secrets';
import { MissingBinaryError } from '../../src/system/process';
import { findPgBinary } from '../../src/system/postgres';
import { stackPids, startStack, stopStack, StackState } from '../../src/sandbox/stack';
import { temporalAnswers } from '../../src/sandbox/temporal';
import { processesInGroup, waitFor, superuserPassword } from '../helpers';

const run = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'runbook-stack-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function resolveA(state: StackState, name: string): Promise<string[]> {
  const resolver = new Resolver({ timeout: 1_000, tries: 1 });
  resolver.setServers([`${state.dns!.host}:${state.dns!.port}`]);
  return resolver.resolve4(name);
}

async function nsupdate(state: StackState, script: string, key?: string): Promise<{ ok: boolean; output: string }> {
  const args = key ? ['-y', `hmac-sha256:${state.dns!.tsigKeyName}:${key}`] : [];
  const child = execFile('nsupdate', args);
  const done = new Promise<{ ok: boolean; output: string }>((resolve) => {
    let output = '';
    child.stdout?.on('data', (d) => (output += d));
    child.stderr?.on('data', (d) => (output += d));
    child.on('close', (code) => resolve({ ok: code === 0, output }));
  });
  child.stdin!.end(`server ${state.dns!.host} ${state.dns!.port}\nzone ${state.dns!.zone}\n${script}\nsend\n`);
  return done;
}

async function psql(state: StackState, password: string, sql: string): Promise<string> {
  const pg = state.postgres!;
  const { stdout } = await run(findPgBinary('psql'), ['-h', pg.host, '-p', String(pg.port), '-U', pg.superuser, '-d', pg.database, '-tAc', sql], {
    env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '5' },
  });
  return stdout.trim();
}

describe('the local sandbox stack', () => {
  test('starts and stops cleanly twice in a row, each component real and reachable, with no processes left over', async () => {
    for (let round = 1; round <= 2; round++) {
      const state = await startStack({ dir: join(root, `round-${round}`) });
      const pids = stackPids(state);
      try {
        // Temporal, the PostgreSQL pair, the S3 server and its TLS endpoint, BIND.
        assert.equal(pids.length, 6);
        assert.ok(await temporalAnswers(state.temporal!.address), 'Temporal answers');

        // Everything is reached through the config file the stack wrote, with its secret references.
        const loaded = loadConfig(state.configFile);
        const env = loaded.config.environments.sandbox;
        const dbPassword = superuserPassword(state);
        assert.equal(await psql(state, dbPassword, 'SELECT current_database()'), 'app');
        // The replica streams from the primary on its own loopback address and is read-only.
        assert.equal(state.postgresReplica!.host, '127.0.0.3');
        await waitFor('streaming replication', async () => (await psql(state, dbPassword, 'SELECT state FROM pg_stat_replication')) === 'streaming');
        const { stdout: inRecovery } = await run(findPgBinary('psql'), ['-h', '127.0.0.3', '-p', String(state.postgresReplica!.port), '-U', 'postgres', '-d', 'app', '-tAc', 'SELECT pg_is_in_recovery()'], {
          env: { ...process.env, PGPASSWORD: dbPassword },
        });
        assert.equal(inRecovery.trim(), 't');
        await assert.rejects(psql(state, 'wrong-password', 'SELECT 1'), /password authentication failed/);

        const backups = env.backups!;
        const s3 = new S3Client({
          endpoint: backups.endpoint,
          region: backups.region,
          forcePathStyle: backups.forcePathStyle,
          credentials: { accessKeyId: readSecret(backups.accessKeyId!, loaded.baseDir), secretAccessKey: readSecret(backups.secretAccessKey!, loaded.baseDir) },
        });
        await s3.send(new CreateBucketCommand({ Bucket: backups.bucket }));
        await s3.send(new PutObjectCommand({ Bucket: backups.bucket, Key: `${backups.prefix}probe.txt`, Body: `round ${round}` }));
        const got = await s3.send(new GetObjectCommand({ Bucket: backups.bucket, Key: `${backups.prefix}probe.txt` }));
        assert.equal(await got.Body!.transformToString(), `round ${round}`);
        s3.destroy();

        // The service name points at the primary; only TSIG-signed dynamic updates may change it.
        assert.deepEqual(await resolveA(state, 'db.sandbox.test'), ['127.0.0.2']);
        const unsigned = await nsupdate(state, 'update delete db.sandbox.test A\nupdate add db.sandbox.test 30 A 127.0.0.9');
        assert.equal(unsigned.ok, false);
        assert.match(unsigned.output, /REFUSED/);
        assert.deepEqual(await resolveA(state, 'db.sandbox.test'), ['127.0.0.2']);
        const tsig = readSecret(env.dns!.tsig!.secret, loaded.baseDir);
        const signed = await nsupdate(state, 'update delete db.sandbox.test A\nupdate add db.sandbox.test 30 A 127.0.0.3', tsig);
        assert.equal(signed.ok, true, signed.output);
        assert.deepEqual(await resolveA(state, 'db.sandbox.test'), ['127.0.0.3']);
      } finally {
        await stopStack(state);
      }
      for (const pid of pids) assert.deepEqual(processesInGroup(pid), [], `process group ${pid} is empty after stop`);
    }
  });

  test('a missing program is named with the fix, and the components that did start are stopped again', async () => {
    const saved = process.env.TEMPORAL_CLI_PATH;
    process.env.TEMPORAL_CLI_PATH = '/nonexistent/temporal';
    const before = new Set(childGroups());
    try {
      await assert.rejects(startStack({ dir: join(root, 'missing') }), (err: unknown) => {
        assert.ok(err instanceof MissingBinaryError);
        assert.equal(err.binary, 'temporal');
        assert.match(err.message, /TEMPORAL_CLI_PATH=\/nonexistent\/temporal is not an executable file.*scripts\/bootstrap/);
        return true;
      });
    } finally {
      if (saved === undefined) delete process.env.TEMPORAL_CLI_PATH;
      else process.env.TEMPORAL_CLI_PATH = saved;
    }
    const leftover = childGroups().filter((g) => !before.has(g));
    assert.deepEqual(leftover, [], 'no service from the failed start is still running');
  });
});

/** Process groups led by processes whose command line mentions this test's directory or were started by it. */
function childGroups(): string[] {
  const { readdirSync, readFileSync } = require('node:fs') as typeof import('node:fs');
  const groups: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmd.includes(root)) groups.push(`${entry} ${cmd.replace(/\0/g, ' ').slice(0, 80)}`);
    } catch {
      /* gone */
    }
  }
  return groups;
}
