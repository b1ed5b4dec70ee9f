import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
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
import { runPgBackRest } from '../../src/system/pgbackrest';
import { sandboxRepoEnv, sandboxRepositoryInfo } from '../pgbackrest-repo';
import { freePort } from '../../src/system/process';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { findPgBinary } from '../../src/system/postgres';
import { postgresOwner, stopNode } from '../../src/system/postgres';
import { readLedger } from '../../src/system/scratch';
import type { PhysicalBackupDatabaseResult } from '../../src/workflows/backupDatabase';
import type { RestoreCanaryResult } from '../../src/workflows/restoreCanary';
import type { VerifyBackupResult } from '../../src/workflows/verifyBackup';
import { RunbookWorker } from '../../src/worker';
import { httpStatus, RUNBOOK_BIN, runCli, waitFor } from '../helpers';

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
    tight: { ...pitr, restoreTest: { ...restoreTest, maxArchiveBacklog: 2 } },
  };
  env.targets = { rpo: '1h', rto: '30m' };
  // The same databases served by worker processes of their own, on queues of their own, for the kill test.
  (config.environments as Record<string, unknown>).crashy = {
    ...env,
    temporal: { ...env.temporal, taskQueues: { critical: 'crashy-critical', standard: 'crashy-standard', batch: 'crashy-batch' } },
  };
  config.worker = { ...config.worker, logLevel: 'warn' };
  delete config.schedules;
  const file = join(stack.dir, 'pgbackrest-test.yaml');
  writeFileSync(file, stringify(config));
  return file;
}

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 'replica', 's3', 'pgbackrest'] });
  password = readFileSync(join(stack.dir, 'secrets', 'postgres-password'), 'utf8').trim();
  admin = new PgClient({ host: stack.postgres!.host, port: stack.postgres!.port, user: 'postgres', password, database: 'app' });
  // The failover test stops this node; an idle client whose server goes away emits 'error'.
  admin.on('error', () => undefined);
  await admin.connect();
  await seedSampleDatabase(admin, { rows: 3_000 });
  configFile = writeConfig();
  const loaded = loadConfig(configFile);
  worker = new RunbookWorker({ loaded, environment: 'sandbox', httpPort: 0, logger: createLogger('warn') });
  await worker.start();
  await worker.waitUntilReady(180_000);
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
  s3 = new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey } });
});

const workers: ChildProcess[] = [];

after(async () => {
  for (const w of workers) killGroup(w);
  await c?.close();
  await worker?.shutdown();
  await admin?.end().catch(() => undefined);
  s3?.destroy();
  if (stack) await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
});

const id = (name: string) => `${name}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;

const repoEnv = (overrides: { caFile?: string } = {}) => sandboxRepoEnv(stack.pgbackrest!, stack.s3!, join(dir, 'test-locks'), overrides);
const repositoryInfo = () => sandboxRepositoryInfo(stack.pgbackrest!, stack.s3!, join(dir, 'test-locks'));

async function backup(type: 'full' | 'diff' | 'incr', database = 'pitr'): Promise<PhysicalBackupDatabaseResult> {
  return c.client.workflow.execute('backupDatabase', { taskQueue: 'batch-queue', workflowId: id('backup'), args: [{ environment: 'sandbox', database, type }] });
}

async function canaryRow(): Promise<RestoreCanaryResult> {
  return c.client.workflow.execute('restoreCanary', { taskQueue: 'standard-queue', workflowId: id('canary'), args: [{ environment: 'sandbox', database: 'pitr' }] });
}

async function verify(args: Record<string, unknown>): Promise<VerifyBackupResult> {
  return c.client.workflow.execute('verifyBackup', { taskQueue: 'batch-queue', workflowId: id('verify'), args: [{ environment: 'sandbox', ...args }] });
}

async function verifyFails(args: Record<string, unknown>): Promise<{ failure: ApplicationFailure; report?: RestoreReport }> {
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

/** `runbook worker` in a process group of its own, so SIGKILL takes its children (pgbackrest) with it. */
async function startWorkerProcess(environment: string): Promise<ChildProcess> {
  const port = await freePort();
  const child = spawn(RUNBOOK_BIN, ['--config', configFile, '--env', environment, 'worker', '--http-port', String(port)], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output = (output + d).slice(-4_000)));
  child.stderr!.on('data', (d) => (output = (output + d).slice(-4_000)));
  workers.push(child);
  await waitFor('worker ready', async () => {
    if (child.exitCode !== null) throw new Error(`worker exited: ${output}`);
    return (await httpStatus(`http://127.0.0.1:${port}/ready`)).status === 200;
  }, 180_000, 200);
  return child;
}

function killGroup(w: ChildProcess): void {
  if (w.exitCode !== null || w.signalCode !== null) return;
  try {
    process.kill(-w.pid!, 'SIGKILL');
  } catch {
    /* gone */
  }
}

/** PostgreSQL processes whose command line names a data directory under the scratch directory. */
function scratchServers(): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes('postgres') && cmd.includes(scratchDir)) found.push(`${entry} ${cmd.slice(0, 120)}`);
    } catch {
      /* gone */
    }
  }
  return found;
}

/** Writes WAL and switches segments `n` times, each switched segment archived. */
async function switchSegments(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await admin.query("INSERT INTO customers (id, name, created_at) VALUES ((SELECT max(id) + 1 FROM customers), 'wal', now())");
    await admin.query('SELECT pg_switch_wal()');
  }
  await archiveNow();
}

async function bucketObjects(prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const res = await s3.send(new ListObjectsV2Command({ Bucket: SANDBOX_PGBACKREST_BUCKET, Prefix: prefix, ContinuationToken: token }));
    keys.push(...(res.Contents ?? []).map((o) => o.Key!));
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

async function reportKeys(): Promise<string[]> {
  const res = await s3.send(new ListObjectsV2Command({ Bucket: 'runbook-backups', Prefix: 'sandbox/' }));
  return (res.Contents ?? []).map((o) => o.Key!).filter((k) => k.includes('/pgbackrest/restore-tests/'));
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
  test('a restore test of the latest backup replays every archived segment, and every canary row in the archive is restored', async () => {
    await canaryRow();
    await archiveNow();
    const result = await verify({ database: 'pitr' });
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.equal(result.pitr!.target!.type, 'end');
    const end = result.checks.find((x) => x.name === 'replay reached the end of the archive')!;
    assert.equal(end.passed, true, end.detail);
    assert.ok(result.checks.find((x) => x.name === 'restore canary')!.passed);
    assert.deepEqual(scratchLeftovers(), []);
  });

  test('runbook backup list shows the backup sets and the recoverable window; verify --random-time --within picks a moment inside it and passes', async () => {
    const list = await runCli(['--config', configFile, 'backup', 'list', '--database', 'pitr']);
    assert.equal(list.code, 0, list.stderr);
    const info = await repositoryInfo();
    for (const b of info.backups) assert.ok(list.stdout.includes(b.label), `${b.label} listed`);
    const window = /recoverable window: (\S+) to (\S+)/.exec(list.stdout);
    assert.ok(window, list.stdout);
    const json = JSON.parse((await runCli(['--config', configFile, '--json', 'backup', 'list', '--database', 'pitr'])).stdout);
    assert.equal(json.window.from, window[1]);
    assert.equal(json.window.until, window[2]);

    const run = await runCli(['--config', configFile, '--json', 'backup', 'verify', '--database', 'pitr', '--random-time', '--within', '1h'], { timeoutMs: 300_000 });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const report = JSON.parse(run.stdout).result as RestoreReport;
    assert.equal(report.pitr!.target!.type, 'time');
    const at = Date.parse(report.pitr!.target!.time!);
    assert.ok(at >= Date.parse(window[1]) && at <= Date.now(), `${report.pitr!.target!.time} lies in the window`);
    assert.ok(report.checks.find((x) => x.name === 'restore canary')!.passed);
  });

  test('bad input is refused before anything runs: a time outside the window, an unknown label, a dump id or a point in time for the wrong kind of database', async () => {
    const reportsBefore = await reportKeys();
    const ledgerBefore = readLedger(scratchDir).length;
    const oldest = (await repositoryInfo()).backups[0];
    const before = new Date(Date.parse(oldest.stoppedAt) - 3_600_000).toISOString();
    const cases: { args: Record<string, unknown>; says: RegExp }[] = [
      { args: { database: 'pitr', selection: { mode: 'time', at: before } }, says: /selection\.at: \S+ is outside the window this repository can restore to: \S+ to \S+/ },
      { args: { database: 'pitr', selection: { mode: 'label', label: '20200101-000000F' } }, says: /selection\.label: backup 20200101-000000F is not in the repository of stanza app/ },
      { args: { database: 'pitr', selection: { mode: 'key', backupId: '20200101T000000Z-abcdef' } }, says: /is a dump's backup id; pitr is backed up with pgBackRest/ },
      { args: { database: 'main', selection: { mode: 'time', at: before } }, says: /selection\.mode: time needs a pgBackRest database/ },
      { args: { database: 'pitr', selection: { mode: 'time', at: '2099-01-01T00:00:00Z' } }, says: /selection\.at: "2099-01-01T00:00:00Z" is in the future/ },
      { args: { database: 'pitr', selection: { mode: 'time', at: 'yesterday' } }, says: /selection\.at: expected a time with its zone/ },
    ];
    for (const bad of cases) {
      const { failure } = await verifyFails(bad.args);
      assert.equal(failure.type, 'InvalidInput', failure.message);
      assert.match(failure.message, bad.says);
    }
    const cli: { args: string[]; says: RegExp }[] = [
      { args: ['--database', 'pitr', '--at', before], says: /--at: \S+ is outside the window pitr can be restored to/ },
      { args: ['--database', 'pitr', '--label', '20200101-000000F'], says: /--label: backup 20200101-000000F is not in the repository/ },
      { args: ['--database', 'main', '--random-time'], says: /main is backed up with pg_dump: --label, --at and --random-time need a pgBackRest database/ },
    ];
    for (const bad of cli) {
      const res = await runCli(['--config', configFile, 'backup', 'verify', ...bad.args]);
      assert.equal(res.code, 2, res.stdout + res.stderr);
      assert.match(res.stderr, bad.says);
    }
    assert.deepEqual(await reportKeys(), reportsBefore, 'no report written');
    assert.equal(readLedger(scratchDir).length, ledgerBefore, 'no scratch instance created');
  });

  test('retention: two more full backups expire the oldest full backup with the backups based on it', async () => {
    const before = (await repositoryInfo()).backups;
    const firstFull = before.find((b) => b.type === 'full')!;
    const dependants = before.filter((b) => b.reference.includes(firstFull.label)).map((b) => b.label);
    await backup('full');
    const last = await backup('full');
    assert.deepEqual([...last.retention.deleted].sort(), [firstFull.label, ...dependants].sort());
    const after = (await repositoryInfo()).backups;
    assert.equal(after.filter((b) => b.type === 'full').length, 2);
    assert.ok(!after.some((b) => b.label === firstFull.label));
  });

  test('a newest backup older than the RPO fails the restore test before anything is restored, naming its age and the target', async () => {
    const ledgerBefore = readLedger(scratchDir).length;
    const { failure, report } = await verifyFails({ database: 'stale' });
    assert.equal(failure.type, 'RestoreTestFailed');
    assert.match(failure.message, /RPO violated: the newest backup \(\d{8}-\d{6}F\S*\) is \d+[smh] old, the target is 1s/);
    assert.equal(report!.rpo.met, false);
    assert.equal(report!.pitr!.restoreMs, undefined, 'nothing was restored');
    assert.equal(readLedger(scratchDir).length, ledgerBefore, 'no scratch instance was created');
  });

  test('an archive-push backlog fails the restore test with the reason, before restoring', async () => {
    await admin.query("ALTER SYSTEM SET archive_command = '/bin/false'");
    await admin.query('SELECT pg_reload_conf()');
    try {
      for (let i = 0; i < 4; i++) {
        await admin.query("INSERT INTO customers (id, name, created_at) VALUES ((SELECT max(id) + 1 FROM customers), 'backlog', now())");
        await admin.query('SELECT pg_switch_wal()');
      }
      await waitFor('the archiver to fail', async () => (await admin.query('SELECT last_failed_time > coalesce(last_archived_time, now() - interval \'1 day\') AS f FROM pg_stat_archiver')).rows[0].f, 30_000, 200);
      const { failure, report } = await verifyFails({ database: 'tight' });
      assert.match(failure.message, /archive-push backlog on pg-a: \d+ completed WAL segments wait to be archived \(limit 2\)/);
      assert.match(failure.message, /WAL archiving is failing on pg-a/);
      assert.equal(report!.pitr!.restoreMs, undefined, 'nothing was restored');
    } finally {
      await admin.query('ALTER SYSTEM RESET archive_command');
      await admin.query('SELECT pg_reload_conf()');
    }
    // The archiver pushes the backlog, in order, before the segment this switch completes.
    await archiveNow();
  });

  test('a corrupted backup file fails the restore test: pgbackrest verify names the backup, and without verify the restore itself fails; no scratch instance or directory is left', async () => {
    const full = await backup('full');
    await canaryRow();
    await archiveNow();
    // One data file of the new full backup, with bytes flipped in the middle (its size unchanged).
    const files = (await bucketObjects(`sandbox/backup/${stack.pgbackrest!.stanza}/${full.label}/`)).filter((k) => /\/pg_data\/base\/\d+\//.test(k) || /bundle\/\d+$/.test(k));
    assert.ok(files.length > 0, 'the backup has data files');
    const key = files[0];
    const body = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: SANDBOX_PGBACKREST_BUCKET, Key: key }))).Body!.transformToByteArray());
    for (let i = 0; i < 32; i++) body[Math.floor(body.length / 2) + i] ^= 0xff;
    await s3.send(new PutObjectCommand({ Bucket: SANDBOX_PGBACKREST_BUCKET, Key: key, Body: body }));

    const verified = await verifyFails({ database: 'verified', selection: { mode: 'label', label: full.label } });
    assert.match(verified.failure.message, new RegExp(`pgbackrest verify: backup ${full.label} is invalid`));
    assert.equal(verified.report!.pitr!.restoreMs, undefined, 'verify stopped it before restoring');

    const restored = await verifyFails({ database: 'pitr', selection: { mode: 'label', label: full.label } });
    assert.match(restored.failure.message, new RegExp(`restore failed: .*${full.label}`));
    assert.equal(restored.report!.checks.find((x) => x.name === 'restore and replay completed')!.passed, false);
    assert.equal(restored.report!.scratchDropped, true);
    assert.deepEqual(scratchLeftovers(), []);
    assert.deepEqual(scratchServers(), []);
  });

  test('a WAL segment deleted from the repository fails a restore test across it, naming the segment; no scratch instance or directory is left', async () => {
    const base = await backup('full');
    await canaryRow();
    await switchSegments(3);
    const info = await repositoryInfo();
    const first = parseInt(base.walStop.slice(16), 16);
    const victim = `${base.walStop.slice(0, 16)}${(first + 2).toString(16).toUpperCase().padStart(8, '0')}`;
    assert.ok(victim <= info.archive!.max, `${victim} is archived (newest ${info.archive!.max})`);
    const object = (await bucketObjects(`sandbox/archive/${stack.pgbackrest!.stanza}/`)).find((k) => k.split('/').pop()!.startsWith(victim))!;
    assert.ok(object, `the segment ${victim} is an object`);
    await s3.send(new DeleteObjectCommand({ Bucket: SANDBOX_PGBACKREST_BUCKET, Key: object }));
    const { failure, report } = await verifyFails({ database: 'pitr', selection: { mode: 'label', label: base.label } });
    assert.match(failure.message, new RegExp(`gap in the WAL archive: segment ${victim} missing`));
    assert.deepEqual(report!.pitr!.archive!.missing, [victim]);
    assert.deepEqual(scratchLeftovers(), []);
    assert.deepEqual(scratchServers(), []);
    // A backup taken after the gap restores again: the archive is continuous from its start.
    await backup('full');
    await canaryRow();
    await archiveNow();
    const healed = await verify({ database: 'pitr' });
    assert.equal(healed.passed, true, healed.reasons.join('; '));
  });

  test('the restore canary survives its worker SIGKILLed while it writes: one row for the run, the one its result names', async () => {
    let worker = await startWorkerProcess('crashy');
    const handle = await c.client.workflow.start('restoreCanary', { taskQueue: 'crashy-standard', workflowId: id('canary-kill'), args: [{ environment: 'crashy', database: 'pitr' }] });
    try {
      await waitFor('the canary activity running on the worker', async () => (await handle.describe()).raw.pendingActivities?.some((a) => String(a.state) === 'PENDING_ACTIVITY_STATE_STARTED' || a.state === 2), 60_000, 10);
      killGroup(worker);
      worker = await startWorkerProcess('crashy');
      const result: RestoreCanaryResult = await handle.result();
      const rows = (await admin.query<{ id: string }>('SELECT id FROM runbook_restore_canary WHERE workflow_id = $1', [handle.workflowId])).rows.map((r) => Number(r.id));
      assert.deepEqual(rows, [result.row.id], 'exactly one canary row for the run, and it is the one reported');
    } finally {
      killGroup(worker);
    }
  });

  test('the worker SIGKILLed while its scratch instance replays WAL: the retry removes the survivor and finishes; one scratch instance at a time, none left', async () => {
    await backup('full');
    await canaryRow();
    // Enough WAL after the backup that replay takes a while: each segment is fetched through archive-get.
    await switchSegments(25);
    await canaryRow();
    await archiveNow();
    let worker = await startWorkerProcess('crashy');
    const handle = await c.client.workflow.start('verifyBackup', { taskQueue: 'crashy-batch', workflowId: id('verify-kill'), args: [{ environment: 'crashy', database: 'pitr' }] });
    try {
      const running = await waitFor('a scratch instance replaying WAL', async () => {
        for (const name of scratchLeftovers()) {
          const pid = join(scratchDir, name, 'data', 'postmaster.pid');
          if (existsSync(pid) && /restored log file/.test(readFileSync(join(scratchDir, name, 'postgres.log'), 'utf8'))) return name;
        }
        return undefined;
      }, 240_000, 50);
      killGroup(worker);
      assert.ok(scratchServers().length > 0, 'the scratch instance outlived its worker');
      worker = await startWorkerProcess('crashy');
      const result: VerifyBackupResult = await handle.result();
      assert.equal(result.passed, true, result.reasons.join('; '));
      assert.equal(result.scratchInstance, running);
      const events = readLedger(scratchDir).filter((e) => e.name === running && (e.event === 'create' || e.event === 'remove')).map((e) => `${e.event}${e.detail.includes('replaced-leftover') ? '+replaced' : ''}${e.detail.includes('running=true') ? '+running' : ''}`);
      // Creations and removals alternate: never two instances of the test at once, the last one removed.
      for (let i = 0; i < events.length; i++) assert.equal(events[i].split('+')[0], i % 2 === 0 ? 'create' : 'remove', events.join(', '));
      assert.equal(events[events.length - 1].split('+')[0], 'remove');
      assert.ok(events.includes('remove+running'), `the survivor was found running and stopped: ${events.join(', ')}`);
      assert.ok(events.includes('create+replaced'), events.join(', '));
      const history = (await handle.fetchHistory()).events ?? [];
      const scheduled = history.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'restorePhysicalBackup');
      const started = history.find((e) => Number(e.activityTaskStartedEventAttributes?.scheduledEventId ?? -1) === Number(scheduled?.eventId));
      assert.ok((started?.activityTaskStartedEventAttributes?.attempt ?? 0) >= 2, 'the restore ran again after the kill');
      assert.deepEqual(scratchLeftovers(), []);
      assert.deepEqual(scratchServers(), []);
    } finally {
      killGroup(worker);
    }
  });
  // Last: it fails the sandbox primary over to the replica.
  test('after a failover, archiving, backups and the canary follow the new primary, and a restore test to a moment before the switch replays across the timeline history', async () => {
    const before = await canaryRow();
    await new Promise((r) => setTimeout(r, 1_500));
    const target = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 1_500));
    await canaryRow();
    await archiveNow();
    const baseBefore = (await repositoryInfo()).backups.pop()!;
    // pg-a stops cleanly (archiving what it has), pg-b is promoted: timeline 2, archived by pg-b with the same archive_command.
    await stopNode(stack.postgres!.dataDir, 'fast');
    const owner = postgresOwner();
    await promisify(execFile)(findPgBinary('pg_ctl'), ['promote', '-w', '-D', stack.postgresReplica!.dataDir], { uid: owner?.uid, gid: owner?.gid, cwd: '/' });
    await admin.end().catch(() => undefined);
    admin = new PgClient({ host: stack.postgresReplica!.host, port: stack.postgresReplica!.port, user: 'postgres', password, database: 'app' });
    admin.on('error', () => undefined);
    await admin.connect();
    const after = await canaryRow();
    assert.equal(after.node, 'pg-b', 'the canary is written on the new primary');
    await archiveNow();
    const archived = await repositoryInfo();
    assert.match(archived.archive!.max, /^00000002/, 'the new primary archives timeline 2');
    const full = await backup('full');
    assert.equal(full.node, 'pg-b', 'the backup is taken from the new primary');
    assert.ok(before.row.id < after.row.id);

    const result = await verify({ database: 'pitr', selection: { mode: 'time', at: target } });
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.equal(result.pitr!.backup!.label, baseBefore.label, 'restored from the backup taken before the failover');
    assert.ok(result.checks.find((x) => x.name === 'WAL archive continuous')!.passed);
    assert.match(result.pitr!.archive!.max!, /^00000002/, 'the scan reached timeline 2 through its history');
    assert.deepEqual(scratchLeftovers(), []);
  });
});
