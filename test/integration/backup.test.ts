import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { Client as PgClient } from 'pg';
import type { BackupManifest } from '../../src/activities/backups';
import type { RestoreReport } from '../../src/activities/reports';
import { createCheckActivities } from '../../src/activities/checks';
import { createS3Client, ObjectStore } from '../../src/activities/s3';
import { ConnectedClient, connectClient } from '../../src/cli/client';
import { temporalConnectionSettings } from '../../src/config/connection';
import { loadConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { seedSampleDatabase } from '../../src/sandbox/seed';
import { readLedger } from '../../src/system/scratch';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import type { BackupDatabaseResult } from '../../src/workflows/backupDatabase';
import { timelineQuery } from '../../src/workflows/lib/timeline';
import type { VerifyBackupResult } from '../../src/workflows/verifyBackup';
import { RunbookWorker } from '../../src/worker';
import { waitFor, superuserPassword } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-backup-test-'));
chmodSync(dir, 0o755);
const scratchDir = join(dir, 'scratch');
let stack: StackState;
let worker: RunbookWorker;
let brokenWorker: RunbookWorker;
let c: ConnectedClient;
let s3: S3Client;
let admin: PgClient;
let password: string;

/** An assertion on the restored copy: every table of the sample schemas has this persistence (u: unlogged, p: logged). */
const persistence = (p: 'u' | 'p') =>
  `SELECT bool_and(c.relpersistence = '${p}') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname IN ('public', 'billing')`;

/**
 * The stack's own database under several keys: `main` (RPO 1h), `strict` (RPO 1 s, for the stale-backup
 * case), `onsource` (restored onto the source server, the explicit choice), `big` (a database of its
 * own, large enough for several upload parts, backed up with its roles) and `limited` (restored onto the
 * source server by `restorer`, a user that is not a superuser). Restore tests run in scratch instances
 * under the test's directory unless the key says otherwise; S3's part limit is lowered to 4.
 */
function writeConfig(): string {
  const pg = stack.postgres!;
  const file = join(stack.dir, 'backup-test.yaml');
  writeFileSync(join(stack.dir, 'secrets', 'restorer-password'), `${RESTORER_PASSWORD}\n`, { mode: 0o600 });
  const db = (extra: string, database = 'app') =>
    `{ host: ${pg.host}, port: ${pg.port}, database: ${database}, user: postgres, password: file:secrets/postgres-password${extra} }`;
  writeFileSync(
    file,
    `version: 1
environments:
  sandbox:
    temporal: { address: "${stack.temporal!.address}" }
    databases:
      main: ${db(`, restoreTest: { scratchDir: ${scratchDir}, assertions: [ { name: every order has a customer, sql: "SELECT NOT EXISTS (SELECT 1 FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE c.id IS NULL)" }, { name: invoices in 2026, sql: "SELECT min(issued_on) >= date '2026-01-01' FROM billing.invoices" }, { name: scratch tables are unlogged, sql: "${persistence('u')}" }, { name: nothing of the restore left in the copy, sql: "SELECT NOT EXISTS (SELECT 1 FROM pg_event_trigger) AND NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'runbook_scratch_unlogged')" } ] }`)}
      strict: ${db(`, restoreTest: { scratchDir: ${scratchDir}, maxBackupAge: 1s }`)}
      onsource: ${db(', restoreTest: { into: sourceServer }')}
      big: ${db(`, backups: { globals: true }, restoreTest: { scratchDir: ${scratchDir} }`, 'bigapp')}
      offline: { host: 127.0.0.1, port: 1, database: app, user: postgres, password: file:secrets/postgres-password }
      limited: ${db(`, restoreTest: { into: sourceServer, user: restorer, password: file:secrets/restorer-password, assertions: [ { name: scratch tables are logged, sql: "${persistence('p')}" } ] }`)}
    backups:
      bucket: runbook-backups
      prefix: test/
      endpoint: ${stack.s3!.endpoint}
      forcePathStyle: true
      accessKeyId: file:secrets/s3-access-key-id
      secretAccessKey: file:secrets/s3-secret-access-key
      retention: { keepLast: 2 }
      multipart: { maxParts: 4 }
    targets: { rpo: 1h }
  broken:
    temporal:
      address: "${stack.temporal!.address}"
      taskQueues: { critical: broken-critical, standard: broken-standard, batch: broken-batch }
    databases:
      main: ${db('')}
    backups:
      bucket: no-such-bucket
      endpoint: ${stack.s3!.endpoint}
      forcePathStyle: true
      accessKeyId: file:secrets/s3-access-key-id
      secretAccessKey: file:secrets/s3-secret-access-key
`,
  );
  return file;
}

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 's3'] });
  const file = writeConfig();
  const loaded = loadConfig(file);
  password = superuserPassword(stack);
  admin = new PgClient({ host: stack.postgres!.host, port: stack.postgres!.port, user: 'postgres', password, database: 'app' });
  await admin.connect();
  await admin.query(`CREATE ROLE restorer LOGIN CREATEDB PASSWORD '${RESTORER_PASSWORD}'`);
  // Padding makes the restore take long enough to interrupt it.
  await seedSampleDatabase(admin, { rows: 100_000, padBytes: 256 });
  // Every CREATE and DROP DATABASE goes to the server log: a restore test must leave none on the source.
  await admin.query("ALTER SYSTEM SET log_statement = 'ddl'");
  await admin.query('SELECT pg_reload_conf()');
  const logger = createLogger('warn');
  worker = new RunbookWorker({ loaded, environment: 'sandbox', httpPort: 0, logger });
  brokenWorker = new RunbookWorker({ loaded, environment: 'broken', httpPort: 0, logger });
  await Promise.all([worker.start(), brokenWorker.start()]);
  await Promise.all([worker.waitUntilReady(180_000), brokenWorker.waitUntilReady(180_000)]);
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
  s3 = new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey } });
});

after(async () => {
  await c?.close();
  await Promise.all([worker?.shutdown(), brokenWorker?.shutdown()]);
  await admin?.end();
  s3?.destroy();
  await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
});

/** Scratch instance directories left in the scratch directory. */
function scratchInstances(): string[] {
  return existsSync(scratchDir) ? readdirSync(scratchDir).filter((n) => n.startsWith('restore-test-')) : [];
}

/** CREATE DATABASE statements for scratch databases the source server logged. */
function scratchDatabasesCreatedOnSource(): string[] {
  return readFileSync(stack.postgres!.logFile, 'utf8').split('\n').filter((l) => /CREATE DATABASE "restore_test_/.test(l));
}

async function scratchDatabases(): Promise<string[]> {
  const res = await admin.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE 'restore_test_%'");
  return res.rows.map((r) => r.datname);
}

async function getObject(key: string): Promise<Buffer> {
  const res = await s3.send(new GetObjectCommand({ Bucket: 'runbook-backups', Key: key }));
  return Buffer.from(await res.Body!.transformToByteArray());
}

const RESTORER_PASSWORD = 'restorer-test-password';
const id = (name: string) => `${name}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;

async function backup(database = 'main', environment = 'sandbox', taskQueue = 'batch-queue'): Promise<BackupDatabaseResult> {
  return c.client.workflow.execute('backupDatabase', { taskQueue, workflowId: id('backup'), args: [{ environment, database }] });
}

async function verifyFails(args: Record<string, unknown>): Promise<{ failure: ApplicationFailure; report?: RestoreReport; workflowId: string }> {
  const workflowId = id('verify');
  const err = await c.client.workflow.execute('verifyBackup', { taskQueue: 'batch-queue', workflowId, args: [args] }).then(
    () => assert.fail('the restore test passed'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof WorkflowFailedError, String(err));
  assert.ok(err.cause instanceof ApplicationFailure, String(err.cause));
  return { failure: err.cause, report: err.cause.details?.[0] as RestoreReport | undefined, workflowId };
}

describe('backups and restore tests', () => {
  test('a backup then a restore test of the generated database passes: counts and checksums match, the report is written, the scratch database is gone', async () => {
    const b = await backup();
    assert.equal(b.tableCount, 4);
    assert.ok(b.bytes > 100_000);
    const manifest = JSON.parse((await getObject(b.manifestKey)).toString()) as BackupManifest;
    assert.equal(manifest.tables.find((t) => t.name === 'orders')!.rows, 100_000);
    assert.equal(manifest.tables.find((t) => t.schema === 'billing')!.rows, 2_000);
    assert.match(manifest.server.version, /^15\./);
    const dump = await getObject(manifest.dumpKey);
    assert.equal(dump.length, manifest.bytes);
    assert.equal(dump.subarray(0, 5).toString(), 'PGDMP', 'a pg_dump custom-format archive');

    const result: VerifyBackupResult = await c.client.workflow.execute('verifyBackup', {
      taskQueue: 'batch-queue',
      workflowId: id('verify'),
      args: [{ environment: 'sandbox', database: 'main' }],
    });
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.equal(result.backupId, b.backupId);
    assert.equal(result.rpo.met, true);
    assert.equal(result.scratchDropped, true);
    const names = result.checks.map((x) => x.name);
    for (const expected of ['restore completed', 'schema present', 'table public.orders', 'table public.customers', 'table public.attachments', 'table billing.invoices', 'assertion: every order has a customer', 'assertion: invoices in 2026', 'assertion: scratch tables are unlogged', 'assertion: nothing of the restore left in the copy']) {
      assert.ok(names.includes(expected), `check ${expected} reported`);
    }
    assert.ok(result.checks.every((x) => x.passed));
    // The assertions above include: the scratch tables were unlogged, and the trigger that made them so is gone.
    assert.deepEqual(result.timeline.steps.find((s) => s.name === 'restore into scratch database')!.evidence.unloggedTables, { enabled: true });
    assert.equal(result.restore!.bytes, manifest.bytes);
    const base = `test/main/${b.backupId}/restore-tests/${result.testId}`;
    const stored = JSON.parse((await getObject(`${base}.json`)).toString()) as RestoreReport;
    assert.equal(stored.passed, true);
    assert.match((await getObject(`${base}.md`)).toString(), /^# Restore test PASSED: sandbox \/ main/);
    const page = (await getObject(`${base}.html`)).toString();
    assert.match(page, /<span class="verdict ok">PASSED<\/span>/);
    assert.equal((page.match(/<tr class="pass">/g) ?? []).length, result.checks.length, 'every check a row on the page');
    assert.deepEqual(await scratchDatabases(), []);
    assert.deepEqual(result.timeline.steps.map((s) => s.name), ['preflight', 'select recovery point', 'check RPO', 'restore into scratch database', 'validate restored data', 'drop scratch database', 'write report']);
    // Restored in a scratch instance the worker started and removed, never on the production server.
    assert.equal(result.scratchInstance, `restore-test-${result.testId}`);
    assert.deepEqual(readLedger(scratchDir).filter((e) => e.name === result.scratchInstance).map((e) => e.event), ['create', 'remove']);
    assert.deepEqual(scratchInstances(), []);
    assert.deepEqual(scratchDatabasesCreatedOnSource(), [], 'no scratch database was ever created on the source server');
    assert.equal(manifest.upload!.parts, 1, 'a small dump is one part');
  });

  test('restored onto the source server by a user that is not a superuser, the scratch tables stay logged, the evidence says why, and the restore test still passes', async () => {
    await backup('limited');
    const result: VerifyBackupResult = await c.client.workflow.execute('verifyBackup', {
      taskQueue: 'batch-queue',
      workflowId: id('verify-limited'),
      args: [{ environment: 'sandbox', database: 'limited' }],
    });
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.equal(result.checks.find((x) => x.name === 'assertion: scratch tables are logged')?.passed, true);
    const restore = result.timeline.steps.find((s) => s.name === 'restore into scratch database')!;
    const unlogged = restore.evidence.unloggedTables as { enabled: boolean; reason?: string };
    assert.equal(unlogged.enabled, false);
    assert.match(unlogged.reason!, /the restore user restorer may not create event triggers/);
    assert.deepEqual(await scratchDatabases(), []);
  });

  test('a corrupted dump object fails the test with a checksum reason, and the scratch database is dropped', async () => {
    const b = await backup();
    const manifest = JSON.parse((await getObject(b.manifestKey)).toString()) as BackupManifest;
    const dump = await getObject(manifest.dumpKey);
    for (let i = 0; i < 64; i++) dump[Math.floor(dump.length / 2) + i] ^= 0xff;
    await s3.send(new PutObjectCommand({ Bucket: 'runbook-backups', Key: manifest.dumpKey, Body: dump }));
    const { failure, report } = await verifyFails({ environment: 'sandbox', database: 'main', selection: { mode: 'key', backupId: b.backupId } });
    assert.equal(failure.type, 'RestoreTestFailed');
    assert.match(failure.message, /is corrupt: sha256 [0-9a-f]{64} .* does not match the manifest's/);
    assert.equal(report!.passed, false);
    assert.equal(report!.checks.find((x) => x.name === 'restore completed')!.passed, false);
    assert.equal(report!.scratchDropped, true);
    assert.deepEqual(await scratchDatabases(), []);
    assert.deepEqual(scratchInstances(), []);
  });

  test('a backup older than the RPO target fails the test with the RPO reason, and the restore is still run and reported', async () => {
    await backup('strict');
    await new Promise((r) => setTimeout(r, 1_500));
    const { failure, report } = await verifyFails({ environment: 'sandbox', database: 'strict' });
    assert.match(failure.message, /RPO violated: the newest backup \(\S+\) is \d+s old, the target is 1s/);
    assert.equal(report!.rpo.met, false);
    assert.equal(report!.checks.find((x) => x.name === 'restore completed')!.passed, true, 'the restore still ran');
    assert.ok(report!.checks.filter((x) => x.name.startsWith('table ')).every((x) => x.passed));
    assert.deepEqual(await scratchDatabases(), []);
  });

  test('restoring onto the source server when chosen: killing the restore connection mid-restore retries or fails cleanly; no scratch database is left', async () => {
    await backup('onsource');
    const handle = await c.client.workflow.start('verifyBackup', { taskQueue: 'batch-queue', workflowId: id('verify-kill'), args: [{ environment: 'sandbox', database: 'onsource' }] });
    const killed = await waitFor(
      'a restore connection to kill',
      async () => {
        const res = await admin.query("SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'runbook-restore'");
        return res.rows.some((r) => r.ok) ? true : undefined;
      },
      60_000,
      20,
    );
    assert.equal(killed, true);
    const outcome = await handle.result().then(
      (r: VerifyBackupResult) => ({ passed: r.passed, attempts: 'retried' }),
      (e: unknown) => ({ passed: false, attempts: String(e) }),
    );
    const timeline = await handle.query(timelineQuery);
    const drop = timeline.steps.find((s) => s.name === 'drop scratch database');
    assert.equal(drop?.outcome, 'succeeded', JSON.stringify(outcome));
    if (outcome.passed) {
      // It passed only because the restore was retried after the kill: the history shows a later attempt.
      const events = (await handle.fetchHistory()).events ?? [];
      const scheduled = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'restoreIntoScratchDatabase');
      const started = events.find((e) => Number(e.activityTaskStartedEventAttributes?.scheduledEventId ?? -1) === Number(scheduled?.eventId));
      assert.ok((started?.activityTaskStartedEventAttributes?.attempt ?? 0) >= 2, 'the restore activity ran again after its connection was killed');
    } else {
      assert.equal(timeline.steps.find((s) => s.name === 'restore into scratch database')?.outcome, 'failed');
    }
    assert.deepEqual(await scratchDatabases(), []);
  });

  test('cancelling a running restore test stops and removes its scratch instance', async () => {
    const handle = await c.client.workflow.start('verifyBackup', { taskQueue: 'batch-queue', workflowId: id('verify-cancel'), args: [{ environment: 'sandbox', database: 'main' }] });
    await waitFor(
      'the scratch instance to be restoring',
      async () => scratchInstances().some((n) => /ready to accept connections/.test(readFileSync(join(scratchDir, n, 'postgres.log'), 'utf8'))),
      120_000,
      20,
    );
    await handle.cancel();
    await assert.rejects(handle.result(), (e: unknown) => e instanceof WorkflowFailedError && /cancel/i.test(String(e.cause?.name) + e.cause?.message));
    const timeline = await handle.query(timelineQuery);
    assert.equal(timeline.outcome, 'cancelled');
    assert.equal(timeline.steps.find((s) => s.name === 'drop scratch database')?.outcome, 'succeeded');
    assert.deepEqual(await scratchDatabases(), []);
    assert.deepEqual(scratchInstances(), []);
  });

  test('a dump larger than fixed 8 MiB parts allow under a lowered part limit is uploaded in larger parts, and restores with its roles, owners and privileges', async () => {
    await admin.query('CREATE ROLE big_owner NOLOGIN');
    await admin.query('CREATE ROLE app_reader NOLOGIN');
    await admin.query('CREATE DATABASE bigapp');
    const big = new PgClient({ host: stack.postgres!.host, port: stack.postgres!.port, user: 'postgres', password, database: 'bigapp' });
    await big.connect();
    try {
      // Random padding barely compresses: a dump of about 40 MB, more than 4 parts of 8 MiB.
      await seedSampleDatabase(big, { rows: 100_000, padBytes: 700, randomPadding: true });
      await big.query('ALTER TABLE orders OWNER TO big_owner');
      await big.query('GRANT SELECT ON customers TO app_reader');
    } finally {
      await big.end();
    }
    const b = await backup('big');
    const manifest = JSON.parse((await getObject(b.manifestKey)).toString()) as BackupManifest;
    assert.ok(manifest.bytes > 4 * 8 * 1024 * 1024, `the dump (${manifest.bytes} bytes) needs more than 4 parts of 8 MiB`);
    assert.ok(manifest.upload!.parts <= 4, `${manifest.upload!.parts} parts within the limit of 4`);
    assert.ok(manifest.upload!.partBytes[0] > 8 * 1024 * 1024, 'parts larger than 8 MiB');
    const etag = (await s3.send(new GetObjectCommand({ Bucket: 'runbook-backups', Key: manifest.dumpKey }))).ETag!;
    assert.match(etag, new RegExp(`-${manifest.upload!.parts}"$`), 'S3 stored it as that many parts');
    assert.equal(manifest.globals!.rolePasswords, true);
    assert.match((await getObject(manifest.globals!.key)).toString(), /CREATE ROLE app_reader;/);
    assert.equal(manifest.ownership!.find((o) => o.name === 'orders')!.owner, 'big_owner');

    const result: VerifyBackupResult = await c.client.workflow.execute('verifyBackup', { taskQueue: 'batch-queue', workflowId: id('verify'), args: [{ environment: 'sandbox', database: 'big' }] });
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.equal(result.restore!.bytes, manifest.bytes);
    const owners = result.checks.find((x) => x.name === 'owners and privileges')!;
    assert.equal(owners.passed, true, owners.detail);
    assert.ok(result.checks.find((x) => x.name === 'roles and globals restored')!.passed);
    assert.deepEqual(scratchInstances(), []);
  });

  test('a table that differs from its manifest fails the restore test by itself, while the dump\'s sha256 is intact', async () => {
    const b = await backup();
    const manifest = JSON.parse((await getObject(b.manifestKey)).toString()) as BackupManifest;
    // The manifest says one order more than the dump holds: as if a write was lost between snapshot and dump.
    const orders = manifest.tables.find((t) => t.name === 'orders')!;
    orders.rows += 1;
    await s3.send(new PutObjectCommand({ Bucket: 'runbook-backups', Key: b.manifestKey, Body: JSON.stringify(manifest) }));
    const { failure, report } = await verifyFails({ environment: 'sandbox', database: 'main', selection: { mode: 'key', backupId: b.backupId } });
    assert.equal(failure.type, 'RestoreTestFailed');
    const failed = report!.checks.filter((x) => !x.passed);
    assert.deepEqual(failed.map((x) => x.name), ['table public.orders']);
    assert.match(failed[0].detail, new RegExp(`expected ${orders.rows} rows .* found ${orders.rows - 1} rows`));
    assert.equal(report!.checks.find((x) => x.name === 'restore completed')!.passed, true, 'the sha256 matched');
    assert.deepEqual(scratchInstances(), []);
  });

  test("database-backups' restore-test check is scoped to each database: main's passed test proves main only; strict's failed test and offline's missing one fail them", async () => {
    // A fresh backup of main and its restore test (retention removes older backups with their reports).
    await backup();
    const verified: VerifyBackupResult = await c.client.workflow.execute('verifyBackup', { taskQueue: 'batch-queue', workflowId: id('verify'), args: [{ environment: 'sandbox', database: 'main' }] });
    assert.equal(verified.passed, true, verified.reasons.join('; '));
    const l = loadConfig(join(stack.dir, 'backup-test.yaml'));
    const env = l.config.environments.sandbox;
    const checks = createCheckActivities({
      environment: 'sandbox',
      env,
      baseDir: l.baseDir,
      temporal: async () => c.client,
      temporalSettings: () => temporalConnectionSettings(l, env.temporal),
      store: new ObjectStore(createS3Client(l, env.backups!), env.backups!.bucket),
    });
    const r = await checks.checkRestoreTested({});
    assert.equal(r.status, 'fail');
    const newest = r.evidence.newest as Record<string, { workflowId: string; ageHours: number } | null>;
    assert.equal(newest.main?.workflowId, verified.workflowId, 'main: its own passed restore test');
    assert.ok(newest.main!.ageHours < 1);
    assert.doesNotMatch(r.summary, /\bmain:/, 'main is proved');
    assert.equal(newest.strict, null);
    assert.match(r.summary, /strict: no passed restore test of this database \(the newest \d+ failed\)/);
    assert.equal(newest.offline, null);
    assert.match(r.summary, /offline: no passed restore test of this database; run verifyBackup for it/);
    // The same reports under another environment's name prove nothing there.
    const other = createCheckActivities({ environment: 'broken', env: { ...env, databases: { main: env.databases.main } }, baseDir: l.baseDir, temporal: async () => c.client, temporalSettings: () => temporalConnectionSettings(l, env.temporal), store: new ObjectStore(createS3Client(l, env.backups!), env.backups!.bucket) });
    const elsewhere = await other.checkRestoreTested({});
    assert.equal(elsewhere.status, 'fail');
    assert.match(elsewhere.summary, /main: no passed restore test of this database/);
  });

  test('retention keeps the newest two backups and never the only good one', async () => {
    const b = await backup();
    assert.equal(b.retention.kept.length, 2);
    assert.equal(b.retention.kept[0], b.backupId);
    const listing = await c.client.workflow.execute('backupDatabase', { taskQueue: 'batch-queue', workflowId: id('backup'), args: [{ environment: 'sandbox', database: 'main' }] });
    assert.equal(listing.retention.kept.length, 2);
    assert.ok(listing.retention.deleted.includes(b.retention.kept[1]), 'the oldest kept one went next');
  });

  // A restore test that ran records its failure in a report; nothing else may change.
  const badInputs: { name: string; run: () => Promise<unknown>; says: RegExp; reportWritten?: boolean }[] = [
    { name: 'an unknown database key', run: () => backup('nosuch'), says: /database 'nosuch' is not configured for environment sandbox; configured: main, strict, onsource, big, offline, limited/ },
    { name: 'a missing bucket', run: () => backup('main', 'broken', 'broken-batch'), says: /bucket no-such-bucket does not exist \(check backups\.bucket/ },
    { name: 'an unreachable database server', run: () => backup('offline'), says: /connecting to 127\.0\.0\.1:1\/app as postgres: connect ECONNREFUSED/ },
    { name: 'a path in a backup key', run: () => verifyFails({ environment: 'sandbox', database: 'main', selection: { mode: 'key', backupId: '../../etc' } }).then((r) => { throw r.failure; }), says: /selection\.backupId: expected a backup id/ },
    { name: 'a backup key that does not exist', run: () => verifyFails({ environment: 'sandbox', database: 'main', selection: { mode: 'key', backupId: '20200101T000000Z-abcdef' } }).then((r) => { throw r.failure; }), says: /backup 20200101T000000Z-abcdef not found/, reportWritten: true },
    { name: 'SQL in the database key', run: () => backup('main; DROP DATABASE app'), says: /database: expected a database key/ },
  ];
  for (const bad of badInputs) {
    test(`bad input is refused with a clear error and touches nothing: ${bad.name}`, async () => {
      const objectsBefore = await countObjects();
      const err = await bad.run().then(() => assert.fail('accepted'), (e: unknown) => e);
      const text = `${String(err)} ${String((err as { cause?: unknown }).cause)} ${String(((err as { cause?: { cause?: unknown } }).cause)?.cause)}`;
      assert.match(text, bad.says);
      assert.equal(await countObjects(), objectsBefore + (bad.reportWritten ? 3 : 0), 'no backup object was written or removed (but the report: JSON, Markdown, HTML)');
      assert.deepEqual(await scratchDatabases(), []);
    });
  }
});

async function countObjects(): Promise<number> {
  const { ListObjectsV2Command } = await import('@aws-sdk/client-s3');
  let n = 0;
  let token: string | undefined;
  do {
    const res = await s3.send(new ListObjectsV2Command({ Bucket: 'runbook-backups', ContinuationToken: token }));
    n += res.KeyCount ?? 0;
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
  } while (token);
  return n;
}
