import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Resolver } from 'node:dns/promises';
import { after, describe, test } from 'node:test';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Client as PgClient } from 'pg';
import { ConnectedClient, connectClient } from '../../src/cli/client';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { readSecret } from '../../src/config/secrets';
import { createLogger } from '../../src/observability/logger';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import type { BackupManifest } from '../../src/activities/backups';
import type { DrDrillResult } from '../../src/workflows/drDrill';
import { decideUpdate, gatesQuery } from '../../src/workflows/lib/gate';
import { signedDecision } from '../../src/cli/sign';
import { RunbookWorker } from '../../src/worker';
import { waitFor, operator } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-follow-primary-'));
chmodSync(dir, 0o755);
let stack: StackState | undefined;
let worker: RunbookWorker | undefined;
let c: ConnectedClient | undefined;

after(async () => {
  await c?.close();
  await worker?.shutdown();
  if (stack) await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
});

async function up(): Promise<{ loaded: LoadedConfig; client: ConnectedClient }> {
  stack = await startStack({ dir: join(dir, 'stack') });
  const loaded = loadConfig(stack.configFile);
  worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  await worker.start();
  await worker.waitUntilReady();
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
  return { loaded, client: c };
}

async function down(): Promise<void> {
  await c?.close();
  await worker?.shutdown();
  await stopStack(stack!);
  c = undefined;
  worker = undefined;
  stack = undefined;
}

async function serviceAddress(): Promise<string[]> {
  const r = new Resolver({ timeout: 1_000, tries: 1 });
  r.setServers([`${stack!.dns!.host}:${stack!.dns!.port}`]);
  return r.resolve4('db.sandbox.test');
}

async function inRecovery(loaded: LoadedConfig, host: string): Promise<boolean> {
  const db = loaded.config.environments.sandbox.databases.main;
  const pg = new PgClient({ host, port: stack!.postgres!.port, user: db.user, password: readSecret(db.password, loaded.baseDir), database: db.database, connectionTimeoutMillis: 5_000 });
  await pg.connect();
  try {
    return (await pg.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec')).rows[0].rec;
  } finally {
    await pg.end();
  }
}

/** A backup and a restore test, as the nightly schedules run them; returns the server the backup read from. */
async function backupAndRestoreTest(loaded: LoadedConfig, client: ConnectedClient): Promise<string> {
  const backup = (await client.client.workflow.execute('backupDatabase', { taskQueue: 'batch-queue', workflowId: `follow-backup-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main' }] })) as { manifestKey: string };
  const verify = (await client.client.workflow.execute('verifyBackup', { taskQueue: 'batch-queue', workflowId: `follow-verify-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main' }] })) as { passed: boolean; reasons: string[] };
  assert.equal(verify.passed, true, verify.reasons.join('; '));
  const b = loaded.config.environments.sandbox.backups!;
  const s3 = new S3Client({ endpoint: b.endpoint, region: b.region, forcePathStyle: true, credentials: { accessKeyId: readSecret(b.accessKeyId!, loaded.baseDir), secretAccessKey: readSecret(b.secretAccessKey!, loaded.baseDir) } });
  try {
    const manifest = JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: b.bucket, Key: backup.manifestKey }))).Body!.transformToString()) as BackupManifest;
    return manifest.server.host;
  } finally {
    s3.destroy();
  }
}

describe('the runbooks follow the primary', () => {
  test('after a failover drill without switch-back, backups, restore tests and the next drill reach the new primary; and again after the stack is restarted', async () => {
    let { loaded, client } = await up();
    // The sandbox config names no node as the database's address: the runbooks find the primary.
    assert.equal(loaded.config.environments.sandbox.databases.main.host, undefined);
    assert.equal(await backupAndRestoreTest(loaded, client), '127.0.0.2');

    const drill = await client.client.workflow.start('drDrill', { taskQueue: 'critical-queue', workflowId: `follow-drill-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main', mode: 'failover' }] });
    await waitFor('the gate', async () => (await drill.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 60_000, 200);
    await drill.executeUpdate(decideUpdate, { args: [await signedDecision(client, drill, 'drDrill', 'approve', operator(stack!))] });
    const result: DrDrillResult = await drill.result();
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.equal(result.primaryAfter, 'pg-b');
    assert.equal(await inRecovery(loaded, '127.0.0.2'), true, 'the former primary is a replica now');

    // The restore test writes (it creates and drops a scratch database): it must reach the new primary.
    assert.equal(await backupAndRestoreTest(loaded, client), '127.0.0.3');

    await down();
    ({ loaded, client } = await up());
    assert.deepEqual(await serviceAddress(), ['127.0.0.3'], 'the restarted stack points the service name at the current primary');
    await waitFor('the replica to stream again', async () => !(await inRecovery(loaded, '127.0.0.3')) && (await inRecovery(loaded, '127.0.0.2')), 30_000, 500);
    assert.equal(await backupAndRestoreTest(loaded, client), '127.0.0.3');

    // The next drill's preflight finds the cluster healthy as it is now, and waits at its gate.
    const next = await client.client.workflow.start('drDrill', { taskQueue: 'critical-queue', workflowId: `follow-next-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main', mode: 'failover' }] });
    await waitFor('the next drill at its gate', async () => (await next.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 60_000, 200);
    await next.executeUpdate(decideUpdate, { args: [await signedDecision(client, next, 'drDrill', 'reject', operator(stack!), 'checked preflight only')] });
    await next.result().catch(() => undefined);
  });
});
