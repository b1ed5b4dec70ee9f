import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { Client as PgClient } from 'pg';
import { parse, stringify } from 'yaml';
import type { RestoreReport } from '../../src/activities/reports';
import { ConnectedClient, connectClient } from '../../src/cli/client';
import { loadConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { SANDBOX_PGBACKREST_BUCKET } from '../../src/sandbox/pgbackrest';
import { seedSampleDatabase } from '../../src/sandbox/seed';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { createCa } from '../../src/sandbox/tls';
import { parseInfo, pgbackrestEnv, runPgBackRest } from '../../src/system/pgbackrest';
import { postgresOwner } from '../../src/system/postgres';
import type { PhysicalBackupDatabaseResult } from '../../src/workflows/backupDatabase';
import type { RestoreCanaryResult } from '../../src/workflows/restoreCanary';
import type { VerifyBackupResult } from '../../src/workflows/verifyBackup';
import { RunbookWorker } from '../../src/worker';
import { waitFor } from '../helpers';

/*
 * pgBackRest backups and point-in-time restore tests against the real programs: PostgreSQL 15 archiving
 * WAL through pgBackRest 2.45 into a stanza on the moto S3 server's TLS endpoint (certificate from the
 * sandbox CA, verified), backups taken and restored by the runbooks, scratch instances started from
 * the restored data directories, and the restore canary written by its own runbook.
 */

const dir = mkdtempSync(join(tmpdir(), 'runbook-pgbackrest-test-'));
chmodSync(dir, 0o755);
const scratchDir = join(dir, 'scratch');
let stack: StackState;
let configFile: string;
let worker: RunbookWorker;
let c: ConnectedClient;
let s3: S3Client;
let admin: PgClient;
let password: string;

/** The stack's config, with the pgBackRest database under several keys that differ in their restore-test limits. */
function writeConfig(): string {
  const config = parse(readFileSync(stack.configFile, 'utf8')) as { environments: { sandbox: Record<string, any> }; worker: Record<string, unknown>; schedules?: unknown };
  const env = config.environments.sandbox;
  const pitr = env.databases.pitr;
  const restoreTest = { scratchDir, maxBackupAge: '1h', verifyRepository: false, assertions: [{ name: 'orders were restored', sql: 'SELECT count(*) = 3000 FROM orders' }] };
  env.databases = {
    main: { ...env.databases.main, restoreTest: { scratchDir } },
    pitr: { ...pitr, restoreTest },
    verified: { ...pitr, restoreTest: { ...restoreTest, verifyRepository: true } },
    stale: { ...pitr, restoreTest: { ...restoreTest, maxBackupAge: '1s' } },
  };
  env.targets = { rpo: '1h', rto: '30m' };
  config.worker = { ...config.worker, logLevel: 'warn' };
  delete config.schedules;
  const file = join(stack.dir, 'pgbackrest-test.yaml');
  writeFileSync(file, stringify(config));
  return file;
}

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 's3', 'pgbackrest'] });
  password = readFileSync(join(stack.dir, 'secrets', 'postgres-password'), 'utf8').trim();
  admin = new PgClient({ host: stack.postgres!.host, port: stack.postgres!.port, user: 'postgres', password, database: 'app' });
  await admin.connect();
  await seedSampleDatabase(admin, { rows: 3_000 });
  configFile = writeConfig();
  const loaded = loadConfig(configFile);
  worker = new RunbookWorker({ loaded, environment: 'sandbox', httpPort: 0, logger: createLogger('warn') });
  await worker.start();
  await worker.waitUntilReady();
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
  s3 = new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey } });
});

after(async () => {
  await c?.close();
  await worker?.shutdown();
  await admin?.end().catch(() => undefined);
  s3?.destroy();
  if (stack) await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
});

const id = (name: string) => `${name}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;

/** The repository settings the runbook config gives, for pgBackRest run by the test itself. */
function repoEnv(overrides: { caFile?: string } = {}): NodeJS.ProcessEnv {
  const b = stack.pgbackrest!;
  return pgbackrestEnv({
    stanza: b.stanza,
    lockDir: join(dir, 'test-locks'),
    repo: { bucket: b.bucket, path: b.repoPath, endpoint: b.endpoint, port: b.port, region: 'us-east-1', uriStyle: 'path', caFile: overrides.caFile ?? b.caFile, accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey },
  });
}

async function repositoryInfo() {
  const run = await runPgBackRest(['info', '--output=json'], { env: repoEnv(), runAs: postgresOwner() });
  assert.equal(run.code, 0, run.stderr);
  return parseInfo(run.stdout, stack.pgbackrest!.stanza);
}

async function backup(type: 'full' | 'diff' | 'incr', database = 'pitr'): Promise<PhysicalBackupDatabaseResult> {
  return c.client.workflow.execute('backupDatabase', { taskQueue: 'batch-queue', workflowId: id('backup'), args: [{ environment: 'sandbox', database, type }] });
}

async function canaryRow(): Promise<RestoreCanaryResult> {
  return c.client.workflow.execute('restoreCanary', { taskQueue: 'standard-queue', workflowId: id('canary'), args: [{ environment: 'sandbox', database: 'pitr' }] });
}

async function verify(args: Record<string, unknown>): Promise<VerifyBackupResult> {
  return c.client.workflow.execute('verifyBackup', { taskQueue: 'batch-queue', workflowId: id('verify'), args: [{ environment: 'sandbox', ...args }] });
}

export async function verifyFails(args: Record<string, unknown>): Promise<{ failure: ApplicationFailure; report?: RestoreReport }> {
  const err = await verify(args).then(
    () => assert.fail('the restore test passed'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof WorkflowFailedError, String(err));
  assert.ok(err.cause instanceof ApplicationFailure, String(err.cause));
  return { failure: err.cause, report: err.cause.details?.[0] as RestoreReport | undefined };
}

/** Makes the segment holding everything written so far complete, and waits until the archiver has pushed it. */
async function archiveNow(): Promise<void> {
  const r = await admin.query<{ f: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS f');
  await waitFor('the switched segment archived', async () => {
    const a = await admin.query<{ w: string | null }>('SELECT last_archived_wal AS w FROM pg_stat_archiver');
    return a.rows[0].w !== null && a.rows[0].w >= r.rows[0].f;
  }, 60_000, 100);
}

function scratchLeftovers(): string[] {
  if (!existsSync(scratchDir)) return [];
  return readdirSync(scratchDir).filter((n) => n.startsWith('restore-test-'));
}

describe('pgBackRest backups and point-in-time restore tests', () => {
  test('the sandbox primary archives WAL into the stanza over the S3 TLS endpoint, whose certificate is verified against the sandbox CA', async () => {
    await archiveNow();
    const info = await repositoryInfo();
    assert.equal(info.status.message, 'no valid backups', 'the stanza exists; no backup was taken yet');
    assert.match(info.archive?.max ?? '', /^[0-9A-F]{24}$/);
    // The endpoint is HTTPS only, and a client that trusts another CA is refused: the certificate is really checked.
    const otherCa = await createCa(join(dir, 'other-ca'), 'not-the-sandbox-ca');
    chmodSync(join(dir, 'other-ca'), 0o755);
    chmodSync(otherCa.cert, 0o644);
    const refused = await runPgBackRest(['repo-ls', '--io-timeout=5'], { env: repoEnv({ caFile: otherCa.cert }), runAs: postgresOwner() });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /unable to verify certificate presented by 'localhost:\d+'/);
    const objects = await s3.send(new ListObjectsV2Command({ Bucket: SANDBOX_PGBACKREST_BUCKET, Prefix: `sandbox/archive/${stack.pgbackrest!.stanza}/` }));
    assert.ok((objects.Contents ?? []).some((o) => o.Key!.includes(info.archive!.max)), 'the newest archived segment is an object in the bucket');
  });

  test('backupDatabase takes full, incremental and differential backups of the primary, records each backup set, and expires by retention', async () => {
    await canaryRow();
    const full = await backup('full');
    assert.equal(full.method, 'pgbackrest');
    assert.equal(full.type, 'full');
    assert.match(full.label, /^\d{8}-\d{6}F$/);
    assert.equal(full.node, 'pg-a');
    assert.ok(full.databaseBytes > 10_000_000);
    const step = full.timeline.steps.find((s) => s.name === 'pgBackRest full backup')!;
    assert.equal(step.evidence.label, full.label);
    assert.match(String(step.evidence.walStart), /^[0-9A-F]{24}$/);
    await admin.query("INSERT INTO customers (id, name, created_at) VALUES (900001, 'after the full backup', now())");
    const incr = await backup('incr');
    assert.equal(incr.type, 'incr');
    assert.equal(incr.prior, full.label);
    assert.deepEqual(incr.reference, [full.label]);
    assert.ok(incr.bytes < full.bytes, 'an incremental backup stores only what changed');
    const diff = await backup('diff');
    assert.equal(diff.type, 'diff');
    assert.equal(diff.prior, full.label, 'a differential backup is based on the full one');
    const labels = (await repositoryInfo()).backups.map((b) => b.label);
    assert.deepEqual(labels.slice(-3), [full.label, incr.label, diff.label]);
    assert.deepEqual(full.timeline.steps.map((s) => `${s.name}:${s.outcome}`), ['preflight:succeeded', 'pgBackRest full backup:succeeded', 'apply retention:succeeded']);
  });

  test('a restore test to a moment between two canary rows restores exactly the rows written before it, and removes its scratch instance', async () => {
    const first = await canaryRow();
    await new Promise((r) => setTimeout(r, 1_500));
    const target = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 1_500));
    const second = await canaryRow();
    await archiveNow();
    const result = await verify({ database: 'pitr', selection: { mode: 'time', at: target } });
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.equal(result.pitr!.target!.time, target);
    const canary = result.checks.find((x) => x.name === 'restore canary')!;
    assert.equal(canary.passed, true, canary.detail);
    assert.ok(Date.parse(first.row.writtenAt) < Date.parse(target) && Date.parse(second.row.writtenAt) > Date.parse(target));
    assert.ok(result.checks.find((x) => x.name === 'assertion: orders were restored')!.passed);
    assert.ok(result.pitr!.walReplayedBytes! > 0);
    assert.match(result.pitr!.stoppedBecause!, /recovery stopping before commit/);
    assert.deepEqual(scratchLeftovers(), []);
    assert.deepEqual(result.timeline.steps.map((s) => s.name), ['preflight', 'read repository', 'select recovery point', 'check repository', 'restore into scratch instance', 'validate restored data', 'remove scratch instance', 'write report']);
  });
});
