import assert from 'node:assert/strict';
import { signedDecision } from '../../src/cli/sign';
import { ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Resolver } from 'node:dns/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, ListPartsCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Client as PgClient } from 'pg';
import { parse, stringify } from 'yaml';
import type { BackupManifest } from '../../src/activities/backups';
import { ConnectedClient, connectClient } from '../../src/cli/client';
import { loadConfig } from '../../src/config/load';
import { freePort } from '../../src/system/process';
import { ensureDatabase, initCluster, PostgresClusterInfo, startPostgres, stopPostgres } from '../../src/sandbox/postgres';
import { seedSampleDatabase } from '../../src/sandbox/seed';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import type { BackupDatabaseResult } from '../../src/workflows/backupDatabase';
import type { DrDrillResult } from '../../src/workflows/drDrill';
import { decideUpdate, gatesQuery } from '../../src/workflows/lib/gate';
import type { SmokeTestResult } from '../../src/workflows/smokeTest';
import type { VerifyBackupResult } from '../../src/workflows/verifyBackup';
import { HistoryEvent, HistoryWatch } from '../history-watch';
import { httpStatus, RUNBOOK_BIN, waitFor, operator } from '../helpers';

/*
 * Crash survival: each runbook runs once while its worker process group is killed with SIGKILL at
 * every step boundary (when the step's activity is scheduled) and in the middle of the longest
 * activity; a new worker process is started each time. The outcome is judged from the systems the
 * runbooks act on: objects and unfinished uploads in S3, databases and WAL timelines in PostgreSQL,
 * the record and SOA serial in DNS. The drill runs on the stack's PostgreSQL pair; the backup runbooks
 * on a cluster of their own (with a sample database big enough to interrupt a dump and a restore).
 * Each chain of crashes has its own environment, task queues and worker processes, so the three run
 * side by side and a kill in one never touches another.
 */


const dir = mkdtempSync(join(tmpdir(), 'runbook-crash-suite-'));
chmodSync(dir, 0o755);
const BUCKET = 'runbook-backups';
let stack: StackState;
let backupPg: PostgresClusterInfo;
let configFile: string;
let c: ConnectedClient;
let s3: S3Client;
let admin: PgClient;
let password: string;
const workers: RunningWorker[] = [];
/** Crash points tried, per runbook, with what the kill interrupted. */
const figures: { runbook: string; point: string; interrupted: string }[] = [];

interface RunningWorker {
  child: ChildProcess;
  exited: Promise<unknown>;
  output: () => string;
}

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack') });
  password = readFileSync(join(stack.dir, 'secrets', 'postgres-password'), 'utf8').trim();
  const pgDir = join(dir, 'pg-backups');
  const { dataDir, socketDir } = await initCluster({ dir: pgDir, password });
  backupPg = await startPostgres({ dir: pgDir, name: 'pg-backups', host: '127.0.0.4', password, dataDir, socketDir });
  await ensureDatabase(backupPg, 'app');
  admin = new PgClient({ host: backupPg.host, port: backupPg.port, user: 'postgres', password, database: 'app' });
  await admin.connect();
  // Random padding barely compresses: a dump of several 8 MB parts, long enough to be interrupted.
  await seedSampleDatabase(admin, { rows: 60_000, padBytes: 1_000, randomPadding: true });
  // Every CREATE and DROP DATABASE goes to the server log, where the scratch databases are counted.
  await admin.query("ALTER SYSTEM SET log_statement = 'ddl'");
  await admin.query('SELECT pg_reload_conf()');
  configFile = writeConfig();
  const loaded = loadConfig(configFile);
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
  s3 = new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey } });
});

after(async () => {
  for (const w of workers) killGroup(w);
  await Promise.all(workers.map((w) => w.exited));
  await c?.close();
  await admin?.end().catch(() => undefined);
  s3?.destroy();
  if (backupPg) await stopPostgres(backupPg);
  if (stack) await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
  if (figures.length) {
    console.log(`crash points tried: ${figures.length}`);
    for (const f of figures) console.log(`  ${f.runbook} / ${f.point}: ${f.interrupted}`);
  }
});

/**
 * The stack's config plus two environments on the backup cluster, each with task queues of its own:
 * `backups` (database key main) and `restores` (key copy, the same database: its backups go under another prefix).
 */
function writeConfig(): string {
  const config = parse(readFileSync(stack.configFile, 'utf8')) as { environments: Record<string, Record<string, unknown>>; worker: Record<string, unknown>; schedules?: unknown };
  const sandbox = config.environments.sandbox;
  const backups = sandbox.backups as Record<string, unknown>;
  for (const [name, key] of [['backups', 'main'], ['restores', 'copy']]) {
    config.environments[name] = {
      temporal: { address: stack.temporal!.address, taskQueues: { critical: `${name}-critical`, standard: `${name}-standard`, batch: `${name}-batch` } },
      // Restored onto the backup cluster itself (an explicit choice), where the suite counts the scratch databases.
      databases: { [key]: { host: backupPg.host, port: backupPg.port, database: 'app', user: 'postgres', password: 'file:secrets/postgres-password', restoreTest: { into: 'sourceServer' } } },
      backups: { ...backups, prefix: 'crash/', retention: { keepLast: 2 } },
      targets: { rpo: '1h' },
    };
  }
  config.worker = { ...config.worker, logLevel: 'warn' };
  delete config.schedules;
  const file = join(stack.dir, 'crash-suite.yaml');
  writeFileSync(file, stringify(config));
  return file;
}

/** `runbook worker` in a process group of its own, so SIGKILL takes its children (pg_dump, pg_restore, nsupdate) too. */
async function startWorker(environment: string): Promise<RunningWorker> {
  const port = await freePort();
  const child = spawn(RUNBOOK_BIN, ['--config', configFile, '--env', environment, 'worker', '--http-port', String(port)], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (d: Buffer) => (output = (output + d.toString()).slice(-8_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const w: RunningWorker = { child, exited, output: () => output };
  workers.push(w);
  await waitFor('worker ready', async () => {
    if (child.exitCode !== null) throw new Error(`worker exited: ${output}`);
    return (await httpStatus(`http://127.0.0.1:${port}/ready`)).status === 200;
  }, 180_000, 200);
  return w;
}

function killGroup(w: RunningWorker): void {
  if (w.child.exitCode !== null || w.child.signalCode !== null) return;
  try {
    process.kill(-w.child.pid!, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

/** What a kill at `activityType`'s scheduling interrupted, read from the finished run's history. */
function interrupted(history: HistoryEvent[], activityType: string): { text: string; attempt: number } {
  const scheduled = history.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activityType);
  const started = history.find((e) => Number(e.activityTaskStartedEventAttributes?.scheduledEventId ?? -1) === Number(scheduled?.eventId));
  const attempt = started?.activityTaskStartedEventAttributes?.attempt ?? 0;
  return { text: attempt > 1 ? `the activity in flight; it ran again (attempt ${attempt})` : 'a workflow task (the activity finished first or had not started)', attempt };
}

/** Kills the chain's worker when `trigger` resolves, records the crash point and starts a new worker. */
async function crash(chain: { worker: RunningWorker; environment: string; runbook: string; points: string[] }, point: string, trigger: () => Promise<unknown>): Promise<void> {
  await trigger();
  killGroup(chain.worker);
  await chain.worker.exited;
  chain.points.push(point);
  chain.worker = await startWorker(chain.environment);
}

async function s3Keys(prefix: string): Promise<string[]> {
  const res = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (res.Contents ?? []).map((o) => o.Key!).sort();
}

async function unfinishedUploads(prefix: string): Promise<string[]> {
  const res = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: prefix }));
  return (res.Uploads ?? []).map((u) => `${u.Key} ${u.UploadId}`);
}

async function getObject(key: string): Promise<Buffer> {
  const res = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await res.Body!.transformToByteArray());
}

/** A backup from long ago, as the runbook writes them, for retention to act on. */
async function plantOldBackup(backupId: string, endedAt: string): Promise<void> {
  const base = `crash/main/${backupId}/`;
  const dump = Buffer.from(`PGDMP planted ${backupId}`);
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${base}dump.pgcustom`, Body: dump }));
  const manifest = { formatVersion: 1, backupId, environment: 'backups', database: 'main', databaseName: 'app', server: { host: backupPg.host, port: backupPg.port, version: '15' }, format: 'pg_dump custom', dumpKey: `${base}dump.pgcustom`, startedAt: endedAt, endedAt, bytes: dump.length, sha256: createHash('sha256').update(dump).digest('hex'), tables: [] };
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${base}manifest.json`, Body: JSON.stringify(manifest) }));
}

async function pgOn<T>(host: string, port: number, fn: (pg: PgClient) => Promise<T>): Promise<T> {
  const pg = new PgClient({ host, port, user: 'postgres', password, database: 'app' });
  await pg.connect();
  try {
    return await fn(pg);
  } finally {
    await pg.end();
  }
}

/** The WAL timeline a node is on: each promotion starts a new one. */
const walTimeline = (host: string) =>
  pgOn(host, stack.postgres!.port, async (pg) => parseInt((await pg.query<{ f: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS f')).rows[0].f.slice(0, 8), 16));
const inRecovery = (host: string) => pgOn(host, stack.postgres!.port, async (pg) => (await pg.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0].r);

async function dnsAnswer(): Promise<{ serial: number; address: string[] }> {
  const r = new Resolver({ timeout: 1_000, tries: 2 });
  r.setServers([`${stack.dns!.host}:${stack.dns!.port}`]);
  return { serial: (await r.resolveSoa('sandbox.test')).serial, address: await r.resolve4('db.sandbox.test') };
}

/** CREATE / DROP DATABASE statements for one scratch database, in the order the server logged them. */
function scratchDdl(name: string): string[] {
  return readFileSync(backupPg.logFile, 'utf8')
    .split('\n')
    .filter((l) => l.includes(`DATABASE "${name}"`) || l.includes(`DATABASE IF EXISTS "${name}"`))
    .map((l) => (/CREATE DATABASE/.test(l) ? 'create' : 'drop'));
}

const uniqueId = (name: string) => `${name}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;

describe('every runbook survives its worker being killed at each step', { concurrency: 3 }, () => {
  test('backupDatabase killed at preflight, at the dump start, mid-upload and at retention: one complete backup, no unfinished upload, retention applied once', async () => {
    await plantOldBackup('20200101T000000Z-aaaaaa', '2020-01-01T00:00:00.000Z');
    await plantOldBackup('20200102T000000Z-bbbbbb', '2020-01-02T00:00:00.000Z');
    const chain = { worker: await startWorker('backups'), environment: 'backups', runbook: 'backupDatabase', points: [] as string[] };
    // A smoke test holding its activity is running when the first kill comes: it must survive it too.
    const smoke = await c.client.workflow.start('smokeTest', { taskQueue: 'backups-standard', workflowId: uniqueId('crash-smoke'), args: [{ environment: 'backups', holdSeconds: 3 }] });
    await waitFor('the smoke check running', async () => (await smoke.describe()).raw.pendingActivities?.some((a) => Number(a.state) === 2), 30_000, 50);
    const handle = await c.client.workflow.start('backupDatabase', { taskQueue: 'backups-batch', workflowId: uniqueId('crash-backup'), args: [{ environment: 'backups', database: 'main' }] });
    const watch = new HistoryWatch(c.client, handle);
    try {
      await crash(chain, 'preflight (and the smoke check mid-hold)', () => watch.waitScheduled('preflightBackupTarget'));
      await crash(chain, 'dump to S3: start', () => watch.waitScheduled('takeBackup'));
      await crash(chain, 'dump to S3: mid-upload', () =>
        waitFor('a multipart upload with a part stored', async () => {
          const uploads = (await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: 'crash/main/2' }))).Uploads ?? [];
          for (const u of uploads.filter((x) => x.Key?.endsWith('/dump.pgcustom') && !x.Key.includes('2020010'))) {
            const parts = await s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: u.Key, UploadId: u.UploadId }));
            if ((parts.Parts ?? []).length >= 1) return true;
          }
          return false;
        }, 120_000, 50),
      );
      await crash(chain, 'apply retention', () => watch.waitScheduled('applyRetention'));
      const result: BackupDatabaseResult = await handle.result();
      const smokeResult: SmokeTestResult = await smoke.result();
      const backupId = result.backupId;

      // Judged from S3: exactly one complete backup of this run, the older planted one kept, the oldest deleted.
      const base = `crash/main/${backupId}/`;
      assert.deepEqual(await s3Keys('crash/main/'), [
        '20200102T000000Z-bbbbbb/dump.pgcustom',
        '20200102T000000Z-bbbbbb/manifest.json',
        `${backupId}/dump.pgcustom`,
        `${backupId}/manifest.json`,
      ].map((k) => `crash/main/${k}`).sort());
      assert.deepEqual(await unfinishedUploads('crash/main/'), [], 'no multipart upload left unfinished');
      const manifest = JSON.parse((await getObject(`${base}manifest.json`)).toString()) as BackupManifest;
      const dump = await getObject(`${base}dump.pgcustom`);
      assert.ok(dump.length > 16 * 1024 * 1024, `the dump spans several upload parts (${dump.length} bytes)`);
      assert.equal(dump.length, manifest.bytes);
      assert.equal(createHash('sha256').update(dump).digest('hex'), manifest.sha256, 'the stored dump is the one the manifest describes');
      assert.equal(manifest.tables.find((t) => t.name === 'orders')?.rows, 60_000);
      // The workflow's own word agrees with the systems.
      assert.equal(result.sha256, manifest.sha256);
      assert.deepEqual(result.retention.deleted, ['20200101T000000Z-aaaaaa']);
      assert.deepEqual(result.timeline.steps.map((s) => `${s.name}:${s.outcome}`), ['preflight:succeeded', 'dump to S3:succeeded', 'apply retention:succeeded']);
      assert.ok(smokeResult.passed);
      assert.ok((smokeResult.timeline.steps[0].evidence.attempt as number) >= 2, 'the smoke check was cut off by the kill and ran again');

      await watch.close();
      const history = (await handle.fetchHistory()).events ?? [];
      const dumpRun = interrupted(history, 'takeBackup');
      assert.ok(dumpRun.attempt >= 2, 'the dump killed mid-upload ran again');
      figures.push({ runbook: 'smokeTest', point: 'mid-hold', interrupted: `the activity in flight; it ran again (attempt ${smokeResult.timeline.steps[0].evidence.attempt})` });
      for (const [point, type] of [['preflight', 'preflightBackupTarget'], ['dump start + mid-upload', 'takeBackup'], ['apply retention', 'applyRetention']]) {
        figures.push({ runbook: 'backupDatabase', point, interrupted: interrupted(history, type).text });
      }
      assert.equal(chain.points.length, 4);
    } finally {
      await watch.close();
      killGroup(chain.worker);
    }
  });

  test('verifyBackup killed at preflight, at the restore start, mid-restore, at validation, at the drop and at the report: passes, every scratch database dropped, one report', async () => {
    const chain = { worker: await startWorker('restores'), environment: 'restores', runbook: 'verifyBackup', points: [] as string[] };
    const backup: BackupDatabaseResult = await c.client.workflow.execute('backupDatabase', { taskQueue: 'restores-batch', workflowId: uniqueId('crash-verify-backup'), args: [{ environment: 'restores', database: 'copy' }] });
    const backupId = backup.backupId;
    const handle = await c.client.workflow.start('verifyBackup', { taskQueue: 'restores-batch', workflowId: uniqueId('crash-verify'), args: [{ environment: 'restores', database: 'copy', selection: { mode: 'key', backupId } }] });
    const watch = new HistoryWatch(c.client, handle);
    try {
      await crash(chain, 'preflight', () => watch.waitScheduled('preflightBackupTarget'));
      await crash(chain, 'restore: start', () => watch.waitScheduled('restoreIntoScratchDatabase'));
      await crash(chain, 'restore: mid-restore', () =>
        waitFor('a restore half done', async () => {
          const r = await admin.query<{ size: string }>(
            `SELECT pg_database_size(d.datname)::text AS size FROM pg_database d
              WHERE d.datname LIKE 'restore_test_%' AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname AND a.application_name = 'runbook-restore')`,
          );
          return r.rows.some((x) => Number(x.size) > 20 * 1024 * 1024);
        }, 120_000, 50),
      );
      await crash(chain, 'validate restored data', () => watch.waitScheduled('validateRestoredDatabase'));
      await crash(chain, 'drop scratch database', () => watch.waitScheduled('dropScratchDatabase'));
      await crash(chain, 'write report', () => watch.waitScheduled('writeRestoreReport'));
      const result: VerifyBackupResult = await handle.result();

      assert.equal(result.passed, true, result.reasons.join('; '));
      assert.ok(result.checks.every((x) => x.passed));
      // Judged from PostgreSQL: no scratch database is left; each one created was dropped afterwards.
      const left = await admin.query("SELECT datname FROM pg_database WHERE datname LIKE 'restore_test_%'");
      assert.deepEqual(left.rows, []);
      assert.deepEqual(await unfinishedUploads('crash/copy/'), []);
      await watch.close();
      const history = (await handle.fetchHistory()).events ?? [];
      const restore = interrupted(history, 'restoreIntoScratchDatabase');
      assert.ok(restore.attempt >= 2, 'the restore killed mid-way ran again');
      const ddl = scratchDdl(result.scratchDatabase);
      const creates = ddl.filter((x) => x === 'create').length;
      assert.ok(creates >= 1 && creates <= restore.attempt, `one scratch database per restore attempt at most (${creates} created, ${restore.attempt} attempts)`);
      assert.equal(ddl[ddl.length - 1], 'drop', `the last statement on ${result.scratchDatabase} drops it: ${ddl.join(', ')}`);
      // Judged from S3: one report (JSON, Markdown and HTML) for this test, next to the backup.
      const reports = await s3Keys(`crash/copy/${backupId}/restore-tests/`);
      assert.deepEqual(reports, [`crash/copy/${backupId}/restore-tests/${result.testId}.html`, `crash/copy/${backupId}/restore-tests/${result.testId}.json`, `crash/copy/${backupId}/restore-tests/${result.testId}.md`]);
      const stored = JSON.parse((await getObject(reports[1])).toString()) as { passed: boolean; scratchDropped: boolean };
      assert.equal(stored.passed, true);
      assert.equal(stored.scratchDropped, true);
      const steps = result.timeline.steps.map((s) => s.name);
      assert.deepEqual(steps, ['preflight', 'select recovery point', 'check RPO', 'restore into scratch database', 'validate restored data', 'drop scratch database', 'write report']);
      for (const [point, type] of [['preflight', 'preflightBackupTarget'], ['restore start + mid-restore', 'restoreIntoScratchDatabase'], ['validate restored data', 'validateRestoredDatabase'], ['drop scratch database', 'dropScratchDatabase'], ['write report', 'writeRestoreReport']]) {
        figures.push({ runbook: 'verifyBackup', point, interrupted: interrupted(history, type).text });
      }
      figures.push({ runbook: 'verifyBackup', point: 'side effects', interrupted: `scratch database created ${creates}x (restore attempts ${restore.attempt}), dropped last, none left` });
      assert.equal(chain.points.length, 6);
    } finally {
      await watch.close();
      killGroup(chain.worker);
    }
  });

  test('drDrill killed at every step from preflight to the report: one promotion, one DNS update, the old primary a replica again', async () => {
    const chain = { worker: await startWorker('sandbox'), environment: 'sandbox', runbook: 'drDrill', points: [] as string[] };
    const timelineBefore = await walTimeline('127.0.0.2');
    const dnsBefore = await dnsAnswer();
    assert.deepEqual(dnsBefore.address, ['127.0.0.2']);
    const handle = await c.client.workflow.start('drDrill', {
      taskQueue: 'critical-queue',
      workflowId: uniqueId('crash-drill'),
      args: [{ environment: 'sandbox', database: 'main', mode: 'failover', failback: true }],
    });
    const watch = new HistoryWatch(c.client, handle);
    try {
      await crash(chain, 'preflight', () => watch.waitScheduled('describeDrillTarget'));
      await crash(chain, 'approval gate (waiting)', () => waitFor('the gate', async () => (await handle.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 120_000, 100));
      // The new worker replays the run up to the gate and takes the decision.
      await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', operator(stack))] });
      for (const [point, type] of [
        ['write marker', 'writeDrillMarker'],
        ['fault: the primary dies hard', 'injectFault'],
        ['new primary: detected and writable', 'awaitNewPrimary'],
        ['switch the service endpoint', 'switchServiceEndpoint'],
        ['verify through the service endpoint', 'verifyThroughServiceEndpoint'],
        ['failback: rejoin the old primary as a replica', 'rejoinFormerPrimary'],
        ['write report', 'writeDrillReport'],
      ]) {
        await crash(chain, point, () => watch.waitScheduled(type));
      }
      const result: DrDrillResult = await handle.result();
      assert.equal(result.passed, true, result.reasons.join('; '));
      // Rejoined means serving reads, not only streaming: the old primary answers at once (no "not yet accepting connections").
      const failback = result.timeline.steps.find((s) => s.name.startsWith('failback'));
      assert.equal(typeof (failback?.evidence.detail as { consistentAfterMs?: unknown } | undefined)?.consistentAfterMs, 'number', JSON.stringify(failback?.evidence));

      // Judged from PostgreSQL: exactly one promotion (one new WAL timeline), the old primary streams from the new one.
      assert.equal(await walTimeline('127.0.0.3'), timelineBefore + 1, 'exactly one promotion: one new WAL timeline');
      assert.equal(await inRecovery('127.0.0.3'), false, 'pg-b is the writable primary');
      assert.equal(await inRecovery('127.0.0.2'), true, 'pg-a is a replica again');
      const streaming = await pgOn('127.0.0.3', stack.postgres!.port, async (pg) => (await pg.query("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")).rows);
      assert.deepEqual(streaming, [{ application_name: 'pg-a' }]);
      const markers = await pgOn('127.0.0.3', stack.postgres!.port, async (pg) =>
        (await pg.query<{ drill_id: string; kind: string }>('SELECT drill_id, kind FROM runbook_drill_markers WHERE drill_id LIKE $1 ORDER BY kind', [`${result.drillId}%`])).rows,
      );
      assert.deepEqual(markers.map((m) => m.kind), ['marker', 'verify'], 'one marker and one verification write');
      // Judged from DNS: the service name points at the new primary after exactly one update.
      const dnsAfter = await dnsAnswer();
      assert.deepEqual(dnsAfter.address, ['127.0.0.3']);
      assert.equal(dnsAfter.serial, dnsBefore.serial + 1, 'exactly one DNS update');
      // Judged from S3: the report, once.
      assert.deepEqual(await s3Keys(`sandbox/drills/${result.drillId}/`), ['html', 'json', 'md'].map((x) => `sandbox/drills/${result.drillId}/report.${x}`));
      // The workflow's own word agrees.
      const steps = result.timeline.steps.map((s) => s.name);
      assert.equal(new Set(steps).size, steps.length, `each step once: ${steps.join(', ')}`);
      assert.ok(result.timeline.steps.every((s) => s.outcome === 'succeeded'), steps.join(', '));
      assert.equal(result.primaryAfter, 'pg-b');
      assert.equal(chain.points.length, 9);

      await watch.close();
      const history = (await handle.fetchHistory()).events ?? [];
      const types: [string, string][] = [
        ['preflight', 'describeDrillTarget'],
        ['write marker', 'writeDrillMarker'],
        ['fault', 'injectFault'],
        ['new primary: detected and writable', 'awaitNewPrimary'],
        ['switch the service endpoint', 'switchServiceEndpoint'],
        ['verify', 'verifyThroughServiceEndpoint'],
        ['failback', 'rejoinFormerPrimary'],
        ['write report', 'writeDrillReport'],
      ];
      figures.push({ runbook: 'drDrill', point: 'approval gate', interrupted: 'waiting at the gate; the new worker replayed the run and took the approval' });
      for (const [point, type] of types) figures.push({ runbook: 'drDrill', point, interrupted: interrupted(history, type).text });
      figures.push({ runbook: 'drDrill', point: 'side effects', interrupted: `WAL timeline ${timelineBefore} -> ${timelineBefore + 1}, SOA serial ${dnsBefore.serial} -> ${dnsAfter.serial}, markers ${markers.length}` });
    } finally {
      await watch.close();
      killGroup(chain.worker);
    }
  });
});
