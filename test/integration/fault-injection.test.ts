import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { copyFileSync, chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Resolver } from 'node:dns/promises';
import { createServer, Server, Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateBucketCommand, GetObjectCommand, ListMultipartUploadsCommand, ListPartsCommand, S3Client } from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import { WorkflowFailedError, WorkflowHandle } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';
import { Client as PgClient } from 'pg';
import { parse, stringify } from 'yaml';
import type { BackupManifest } from '../../src/activities/backups';
import { ConnectedClient, connectClient } from '../../src/cli/client';
import { loadConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { freePort } from '../../src/system/process';
import { S3ServerInfo, startS3Server, stopS3Server } from '../../src/sandbox/s3';
import { seedSampleDatabase } from '../../src/sandbox/seed';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import type { BackupDatabaseResult } from '../../src/workflows/backupDatabase';
import type { DrDrillResult } from '../../src/workflows/drDrill';
import { decideUpdate, gatesQuery } from '../../src/workflows/lib/gate';
import type { VerifyBackupResult } from '../../src/workflows/verifyBackup';
import { signedDecision } from '../../src/cli/sign';
import { RunbookWorker } from '../../src/worker';
import { waitFor, operator } from '../helpers';

/*
 * Activity fault injection against the real servers made to misbehave: the S3 endpoint answering 5xx
 * or not listening at all (a relay in front of the moto server, so the server keeps its buckets), a
 * restore's PostgreSQL connections terminated, the DNS server frozen (SIGSTOP: queries time out) during
 * the drill's switch; and permanent errors: a wrong S3 secret (a second moto server that checks
 * signatures), a wrong database password, a wrong TSIG key. Transient faults are retried and the run
 * succeeds; permanent ones fail at the first attempt with their named type.
 */

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

const dir = mkdtempSync(join(tmpdir(), 'runbook-fault-injection-'));
chmodSync(dir, 0o755);
const BUCKET = 'runbook-backups';
let stack: StackState;
let authS3: S3ServerInfo;
let relay: S3Relay;
let worker: RunbookWorker;
let wrongS3Worker: RunbookWorker;
let c: ConnectedClient;
let s3: S3Client;
let admin: PgClient;
let password: string;
const faults: string[] = [];

/**
 * A TCP relay in front of the S3 server: forwards, answers every request with 503 SlowDown, or stops
 * listening (in-flight connections reset, new ones refused) and listens again on the same port.
 */
class S3Relay {
  mode: 'forward' | 'slowdown' = 'forward';
  port = 0;
  private server?: Server;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly target: { host: string; port: number }) {}

  async listen(): Promise<void> {
    this.port ||= await freePort();
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.port, '127.0.0.1', () => resolve());
    });
  }

  private accept(client: Socket): void {
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    client.on('error', () => undefined);
    if (this.mode === 'slowdown') {
      const body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>';
      client.once('data', () => client.end(`HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`));
      return;
    }
    const upstream = connect(this.target.port, this.target.host);
    this.sockets.add(upstream);
    upstream.on('close', () => this.sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  }

  /** Stops listening and resets every connection: the server is gone. */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
    for (const s of this.sockets) s.resetAndDestroy();
    await closed;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }
}

type SourceData = string | ArrayBuffer | ArrayBufferView;
const bytes = (d: SourceData): string | Buffer => (typeof d === 'string' ? d : d instanceof ArrayBuffer ? Buffer.from(d) : Buffer.from(d.buffer, d.byteOffset, d.byteLength));

/** The hash the request signer needs, from node:crypto. */
class Sha256 {
  private readonly h: { update(d: string | Buffer): unknown; digest(): Buffer };
  constructor(secret?: SourceData) {
    this.h = secret ? createHmac('sha256', bytes(secret)) : createHash('sha256');
  }
  update(data: SourceData): void {
    this.h.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.h.digest());
  }
}

/**
 * A moto server that checks credentials: its first three requests (unauthenticated) create an IAM
 * user, its access key and a policy; from then on every request must be signed with that key.
 */
async function startCheckingS3(): Promise<{ info: S3ServerInfo; accessKeyId: string; secretAccessKey: string }> {
  process.env.INITIAL_NO_AUTH_ACTION_COUNT = '3';
  let info: S3ServerInfo;
  try {
    info = await startS3Server({ dir: join(dir, 's3-auth') });
  } finally {
    delete process.env.INITIAL_NO_AUTH_ACTION_COUNT;
  }
  const url = new URL(info.endpoint);
  const signer = new SignatureV4({ service: 'iam', region: 'us-east-1', credentials: { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'bootstrap' }, sha256: Sha256 });
  const iam = async (params: Record<string, string>) => {
    const body = new URLSearchParams({ ...params, Version: '2010-05-08' }).toString();
    const req = await signer.sign({ method: 'POST', protocol: 'http:', hostname: url.hostname, port: Number(url.port), path: '/', headers: { host: url.host, 'content-type': 'application/x-www-form-urlencoded' }, body });
    const res = await fetch(`${info.endpoint}/`, { method: 'POST', headers: req.headers as Record<string, string>, body });
    const text = await res.text();
    if (!res.ok) throw new Error(`IAM ${params.Action}: ${text}`);
    return text;
  };
  await iam({ Action: 'CreateUser', UserName: 'runbook-backup' });
  const key = await iam({ Action: 'CreateAccessKey', UserName: 'runbook-backup' });
  await iam({ Action: 'PutUserPolicy', UserName: 'runbook-backup', PolicyName: 'backups', PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: '*' }] }) });
  const accessKeyId = /<AccessKeyId>(.*?)</.exec(key)![1];
  const secretAccessKey = /<SecretAccessKey>(.*?)</.exec(key)![1];
  const good = new S3Client({ endpoint: info.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } });
  try {
    await good.send(new CreateBucketCommand({ Bucket: BUCKET }));
  } finally {
    good.destroy();
  }
  return { info, accessKeyId, secretAccessKey };
}

/** The sandbox environment with S3 behind the relay and its own copies of the secrets the tests swap; `wrongs3` signs with a wrong secret. */
function writeConfig(checking: { endpoint: string; accessKeyId: string }): string {
  const config = parse(readFileSync(stack.configFile, 'utf8')) as { environments: Record<string, Record<string, Record<string, unknown>>>; worker: Record<string, unknown>; schedules?: unknown };
  const secrets = join(stack.dir, 'secrets');
  // The runbooks' own logins (no superuser): the owner restores onto the source server, the backup role dumps.
  copyFileSync(join(secrets, 'pg-app_owner-password'), join(secrets, 'fault-postgres-password'));
  copyFileSync(join(secrets, 'pg-runbook_backup-password'), join(secrets, 'fault-backup-password'));
  copyFileSync(join(secrets, 'tsig.key'), join(secrets, 'fault-tsig.key'));
  writeFileSync(join(secrets, 'wrong-s3-access-key-id'), `${checking.accessKeyId}\n`, { mode: 0o600 });
  writeFileSync(join(secrets, 'wrong-s3-secret'), `${randomBytes(30).toString('base64')}\n`, { mode: 0o600 });
  const sandbox = config.environments.sandbox;
  (sandbox.databases.main as Record<string, unknown>).password = 'file:secrets/fault-postgres-password';
  ((sandbox.databases.main as { roles: Record<string, { password: string }> }).roles.backup).password = 'file:secrets/fault-backup-password';
  // The restore-connection fault terminates the restore's session on the source server: restore there.
  (sandbox.databases.main as Record<string, unknown>).restoreTest = { into: 'sourceServer' };
  (sandbox.dns.tsig as Record<string, unknown>).secret = 'file:secrets/fault-tsig.key';
  sandbox.backups = { ...sandbox.backups, endpoint: relay.endpoint, prefix: 'fault/' };
  config.environments.wrongs3 = {
    temporal: { address: stack.temporal!.address, taskQueues: { critical: 'wrongs3-critical', standard: 'wrongs3-standard', batch: 'wrongs3-batch' } },
    databases: { main: { host: stack.postgres!.host, port: stack.postgres!.port, database: 'app', user: 'app_owner', password: 'file:secrets/fault-postgres-password' } },
    backups: { ...sandbox.backups, endpoint: checking.endpoint, accessKeyId: 'file:secrets/wrong-s3-access-key-id', secretAccessKey: 'file:secrets/wrong-s3-secret' },
  };
  config.worker = { ...config.worker, logLevel: 'error' };
  delete config.schedules;
  const file = join(stack.dir, 'fault-injection.yaml');
  writeFileSync(file, stringify(config));
  return file;
}

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack') });
  const target = new URL(stack.s3!.endpoint);
  relay = new S3Relay({ host: target.hostname, port: Number(target.port) });
  await relay.listen();
  const checking = await startCheckingS3();
  authS3 = checking.info;
  const file = writeConfig({ endpoint: checking.info.endpoint, accessKeyId: checking.accessKeyId });
  password = readFileSync(join(stack.dir, 'secrets', 'postgres-password'), 'utf8').trim();
  admin = new PgClient({ host: stack.postgres!.host, port: stack.postgres!.port, user: 'postgres', password, database: 'app' });
  // The drills stop this node; an idle client whose server goes away emits 'error'.
  admin.on('error', () => undefined);
  await admin.connect();
  // A dump of two or three 8 MB parts, and a restore long enough to interrupt.
  await seedSampleDatabase(admin, { rows: 30_000, padBytes: 1_000, randomPadding: true });
  const loaded = loadConfig(file);
  const logger = createLogger('error');
  worker = new RunbookWorker({ loaded, environment: 'sandbox', httpPort: 0, logger });
  wrongS3Worker = new RunbookWorker({ loaded, environment: 'wrongs3', httpPort: 0, logger });
  await Promise.all([worker.start(), wrongS3Worker.start()]);
  await Promise.all([worker.waitUntilReady(120_000), wrongS3Worker.waitUntilReady(120_000)]);
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
  s3 = new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey } });
});

after(async () => {
  await c?.close();
  await Promise.all([worker?.shutdown(), wrongS3Worker?.shutdown()]);
  await admin?.end().catch(() => undefined);
  s3?.destroy();
  await relay?.stop();
  if (authS3) await stopS3Server(authS3.pid);
  if (stack?.dns) process.kill(-stack.dns.pid, 'SIGCONT');
  if (stack) await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
  if (faults.length) {
    console.log(`faults injected: ${faults.length}`);
    for (const f of faults) console.log(`  ${f}`);
  }
});

const uniqueId = (name: string) => `${name}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;

async function history(handle: WorkflowHandle): Promise<HistoryEvent[]> {
  return (await handle.fetchHistory()).events ?? [];
}

/** Attempts of an activity as the history records them: the attempt that ended it and the failure of the one before. */
function attempts(events: HistoryEvent[], activityType: string, nth = 0) {
  const scheduled = events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activityType)[nth];
  assert.ok(scheduled, `${activityType} was scheduled`);
  const started = events.find((e) => Number(e.activityTaskStartedEventAttributes?.scheduledEventId ?? -1) === Number(scheduled.eventId));
  const failed = events.find((e) => Number(e.activityTaskFailedEventAttributes?.scheduledEventId ?? -1) === Number(scheduled.eventId));
  const completed = events.find((e) => Number(e.activityTaskCompletedEventAttributes?.scheduledEventId ?? -1) === Number(scheduled.eventId));
  const attr = started?.activityTaskStartedEventAttributes;
  const end = failed ?? completed;
  const ms = (e?: HistoryEvent | null) => Number(e?.eventTime?.seconds ?? 0) * 1000 + Math.floor((e?.eventTime?.nanos ?? 0) / 1e6);
  return {
    attempt: attr?.attempt ?? 0,
    previousFailureType: attr?.lastFailure?.applicationFailureInfo?.type ?? attr?.lastFailure?.cause?.applicationFailureInfo?.type ?? undefined,
    previousFailure: attr?.lastFailure?.message ?? undefined,
    failureType: failed?.activityTaskFailedEventAttributes?.failure?.applicationFailureInfo?.type ?? undefined,
    nonRetryable: failed?.activityTaskFailedEventAttributes?.failure?.applicationFailureInfo?.nonRetryable ?? undefined,
    completed: Boolean(completed),
    elapsedMs: ms(end) - ms(scheduled),
  };
}

async function waitScheduled(handle: WorkflowHandle, activityType: string): Promise<void> {
  await waitFor(`${activityType} scheduled`, async () => (await history(handle)).some((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activityType), 120_000, 25);
}

/** Waits until a multipart upload under the prefix has stored a part: the dump is mid-upload. */
async function midUpload(prefix: string): Promise<void> {
  await waitFor('a multipart upload with a part stored', async () => {
    for (const u of (await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: prefix }))).Uploads ?? []) {
      if (((await s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: u.Key, UploadId: u.UploadId }))).Parts ?? []).length >= 1) return true;
    }
    return false;
  }, 120_000, 25);
}

/** Judged from S3: the backup's dump is the one its manifest describes, and nothing is left half-uploaded. */
async function assertCompleteBackup(result: BackupDatabaseResult): Promise<void> {
  const get = async (key: string) => Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToByteArray());
  const manifest = JSON.parse((await get(result.manifestKey)).toString()) as BackupManifest;
  const dump = await get(manifest.dumpKey);
  assert.ok(dump.length > 8 * 1024 * 1024, `a multipart dump (${dump.length} bytes)`);
  assert.equal(createHash('sha256').update(dump).digest('hex'), manifest.sha256);
  assert.equal(result.sha256, manifest.sha256);
  assert.deepEqual((await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: 'fault/' }))).Uploads ?? [], [], 'no unfinished multipart upload');
}

async function failureOf(run: Promise<unknown>): Promise<{ workflow: ApplicationFailure; activity?: ApplicationFailure }> {
  const err = await run.then(() => assert.fail('the run succeeded'), (e: unknown) => e);
  assert.ok(err instanceof WorkflowFailedError, String(err));
  const cause = err.cause;
  if (cause instanceof ActivityFailure) {
    assert.ok(cause.cause instanceof ApplicationFailure, String(cause.cause));
    return { workflow: cause.cause, activity: cause.cause };
  }
  assert.ok(cause instanceof ApplicationFailure, String(cause));
  return { workflow: cause };
}

async function dnsAnswer(): Promise<{ serial: number; address: string[] }> {
  const r = new Resolver({ timeout: 1_000, tries: 3 });
  r.setServers([`${stack.dns!.host}:${stack.dns!.port}`]);
  return { serial: (await r.resolveSoa('sandbox.test')).serial, address: await r.resolve4('db.sandbox.test') };
}

async function approveDrill(handle: WorkflowHandle): Promise<void> {
  await waitFor('the gate', async () => (await handle.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 60_000, 100);
  await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', operator(stack))] });
}

describe('transient faults are retried with backoff and the run succeeds', () => {
  test('S3 answers 503 SlowDown in the middle of a backup upload: the dump is retried (ServerUnreachable) and one complete backup is written, no upload left unfinished', async () => {
    const handle = await c.client.workflow.start('backupDatabase', { taskQueue: 'batch-queue', workflowId: uniqueId('fault-s3-503'), args: [{ environment: 'sandbox', database: 'main' }] });
    await midUpload('fault/main/');
    relay.mode = 'slowdown';
    await waitFor('the failed attempt', async () => ((await handle.describe()).raw.pendingActivities ?? []).some((a) => (a.attempt ?? 0) >= 2 || a.lastFailure), 60_000, 100);
    relay.mode = 'forward';
    const result: BackupDatabaseResult = await handle.result();
    const a = attempts(await history(handle), 'takeBackup');
    assert.ok(a.attempt >= 2, `the dump ran again (attempt ${a.attempt})`);
    assert.equal(a.previousFailureType, 'ServerUnreachable', a.previousFailure);
    await assertCompleteBackup(result);
    faults.push(`S3 503 mid-upload: takeBackup attempt ${a.attempt}, previous failure ${a.previousFailureType}; backup complete, 0 unfinished uploads`);
  });

  test('the S3 endpoint stops listening mid-upload (connections reset, then refused) and comes back on the same port: the dump is retried and completes', async () => {
    const handle = await c.client.workflow.start('backupDatabase', { taskQueue: 'batch-queue', workflowId: uniqueId('fault-s3-down'), args: [{ environment: 'sandbox', database: 'main' }] });
    await midUpload('fault/main/');
    await relay.stop();
    try {
      await waitFor('the failed attempt', async () => ((await handle.describe()).raw.pendingActivities ?? []).some((a) => (a.attempt ?? 0) >= 2 || a.lastFailure), 60_000, 100);
    } finally {
      await relay.listen();
    }
    const result: BackupDatabaseResult = await handle.result();
    const a = attempts(await history(handle), 'takeBackup');
    assert.ok(a.attempt >= 2, `the dump ran again (attempt ${a.attempt})`);
    assert.ok(['ServerUnreachable', 'ConnectionLost'].includes(a.previousFailureType ?? ''), `${a.previousFailureType}: ${a.previousFailure}`);
    await assertCompleteBackup(result);
    faults.push(`S3 endpoint down mid-upload: takeBackup attempt ${a.attempt}, previous failure ${a.previousFailureType}; backup complete, 0 unfinished uploads`);
  });

  test("a restore's PostgreSQL connection is terminated mid-restore: the restore is retried (RestoreFailed, not a corrupt backup) and the test passes", async () => {
    const handle = await c.client.workflow.start('verifyBackup', { taskQueue: 'batch-queue', workflowId: uniqueId('fault-pg-terminate'), args: [{ environment: 'sandbox', database: 'main' }] });
    await waitFor('a restore half done, then terminated', async () => {
      const r = await admin.query<{ ok: boolean }>(
        `SELECT pg_terminate_backend(a.pid) AS ok FROM pg_stat_activity a
          WHERE a.application_name = 'runbook-restore' AND a.datname LIKE 'restore_test_%' AND pg_database_size(a.datname) > 8 * 1024 * 1024`,
      );
      return r.rows.some((x) => x.ok);
    }, 120_000, 25);
    const result: VerifyBackupResult = await handle.result();
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.equal(result.scratchDropped, true);
    const a = attempts(await history(handle), 'restoreIntoScratchDatabase');
    assert.ok(a.attempt >= 2, `the restore ran again (attempt ${a.attempt})`);
    assert.equal(a.previousFailureType, 'RestoreFailed', a.previousFailure);
    assert.deepEqual((await admin.query("SELECT datname FROM pg_database WHERE datname LIKE 'restore_test_%'")).rows, []);
    faults.push(`restore connection terminated: restoreIntoScratchDatabase attempt ${a.attempt}, previous failure ${a.previousFailureType}; test passed, scratch database dropped`);
  });

  test("the DNS server is frozen (queries time out) during the drill's DNS switch and resumes: the switch is retried and the drill passes with one DNS update", async () => {
    const before = await dnsAnswer();
    const handle = await c.client.workflow.start('drDrill', { taskQueue: 'critical-queue', workflowId: uniqueId('fault-dns-frozen'), args: [{ environment: 'sandbox', database: 'main', mode: 'failover', failback: true }] });
    await approveDrill(handle);
    await waitScheduled(handle, 'awaitNewPrimary');
    process.kill(-stack.dns!.pid, 'SIGSTOP');
    try {
      await waitFor('a failed DNS switch', async () => ((await handle.describe()).raw.pendingActivities ?? []).some((p) => p.activityType?.name === 'switchServiceEndpoint' && (p.attempt ?? 0) >= 2), 60_000, 100);
    } finally {
      process.kill(-stack.dns!.pid, 'SIGCONT');
    }
    const result: DrDrillResult = await handle.result();
    assert.equal(result.passed, true, result.reasons.join('; '));
    const a = attempts(await history(handle), 'switchServiceEndpoint');
    assert.ok(a.attempt >= 2, `the switch ran again (attempt ${a.attempt})`);
    assert.equal(a.previousFailureType, 'ServerUnreachable', a.previousFailure);
    const after = await dnsAnswer();
    assert.deepEqual(after.address, ['127.0.0.3']);
    assert.equal(after.serial, before.serial + 1, 'exactly one DNS update');
    faults.push(`DNS server frozen during the switch: switchServiceEndpoint attempt ${a.attempt}, previous failure ${a.previousFailureType}; drill passed, SOA serial +1`);
  });
});

describe('permanent faults fail fast as non-retryable with their type, at the first attempt', () => {
  test('a wrong S3 secret: PermissionDenied at preflight, one attempt, nothing written', async () => {
    const handle = await c.client.workflow.start('backupDatabase', { taskQueue: 'wrongs3-batch', workflowId: uniqueId('fault-s3-secret'), args: [{ environment: 'wrongs3', database: 'main' }] });
    const { activity } = await failureOf(handle.result());
    assert.equal(activity?.type, 'PermissionDenied');
    assert.equal(activity?.nonRetryable, true);
    assert.match(activity!.message, /access to bucket runbook-backups is denied/);
    const a = attempts(await history(handle), 'preflightBackupTarget');
    assert.equal(a.attempt, 1);
    assert.equal(a.failureType, 'PermissionDenied');
    faults.push(`wrong S3 secret: ${a.failureType} (non-retryable ${a.nonRetryable}) at attempt ${a.attempt}, ${a.elapsedMs} ms after scheduling`);
  });

  test('a wrong database password: AuthenticationFailed at preflight, one attempt', async () => {
    const file = join(stack.dir, 'secrets', 'fault-backup-password');
    const good = readFileSync(file, 'utf8');
    writeFileSync(file, `${randomBytes(12).toString('base64url')}\n`);
    try {
      const handle = await c.client.workflow.start('backupDatabase', { taskQueue: 'batch-queue', workflowId: uniqueId('fault-pg-password'), args: [{ environment: 'sandbox', database: 'main' }] });
      const { activity } = await failureOf(handle.result());
      assert.equal(activity?.type, 'AuthenticationFailed');
      assert.equal(activity?.nonRetryable, true);
      assert.match(activity!.message, /password authentication failed for user "runbook_backup"/);
      const a = attempts(await history(handle), 'preflightBackupTarget');
      assert.equal(a.attempt, 1);
      assert.equal(a.failureType, 'AuthenticationFailed');
      faults.push(`wrong database password: ${a.failureType} (non-retryable ${a.nonRetryable}) at attempt ${a.attempt}, ${a.elapsedMs} ms after scheduling`);
    } finally {
      writeFileSync(file, good);
    }
  });

  test('a wrong TSIG key: the DNS switch fails with PermissionDenied at its first attempt, the drill fails after its compensation, and the zone is unchanged', async () => {
    const file = join(stack.dir, 'secrets', 'fault-tsig.key');
    const good = readFileSync(file, 'utf8');
    const before = await dnsAnswer();
    writeFileSync(file, `${randomBytes(32).toString('base64')}\n`);
    try {
      const handle = await c.client.workflow.start('drDrill', { taskQueue: 'critical-queue', workflowId: uniqueId('fault-tsig'), args: [{ environment: 'sandbox', database: 'main', mode: 'failover', failback: false }] });
      await approveDrill(handle);
      const { workflow } = await failureOf(handle.result());
      assert.equal(workflow.type, 'DrillFailed');
      assert.match(workflow.message, /step 'switch the service endpoint' failed: .*refused the update/);
      const events = await history(handle);
      const a = attempts(events, 'switchServiceEndpoint');
      assert.equal(a.attempt, 1);
      assert.equal(a.failureType, 'PermissionDenied');
      assert.equal(a.nonRetryable, true);
      const after = await dnsAnswer();
      assert.equal(after.serial, before.serial, 'no update was accepted');
      faults.push(`wrong TSIG key: ${a.failureType} (non-retryable ${a.nonRetryable}) at attempt ${a.attempt}, ${a.elapsedMs} ms after scheduling; drill ${workflow.type}, SOA serial unchanged`);
    } finally {
      writeFileSync(file, good);
    }
  });
});
