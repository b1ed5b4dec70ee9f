import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { parse, stringify } from 'yaml';
import { ConnectedClient, connectClient, startRunbook } from '../../src/cli/client';
import { signedDecision } from '../../src/cli/sign';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import type { BackupDatabaseResult } from '../../src/workflows/backupDatabase';
import type { DrDrillResult } from '../../src/workflows/drDrill';
import { decideUpdate, gatesQuery } from '../../src/workflows/lib/gate';
import { timelineQuery } from '../../src/workflows/lib/timeline';
import { RunbookWorker } from '../../src/worker';
import { operator, waitFor } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-exclusive-test-'));
chmodSync(dir, 0o755);
let stack: StackState;
let loaded: LoadedConfig;
let worker: RunbookWorker;
let c: ConnectedClient;
let s3: S3Client;

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack') });
  // Backups refuse a busy database at once; drills wait for it (up to a minute).
  const doc = parse(readFileSync(stack.configFile, 'utf8'));
  const policies = (doc.environments.sandbox.policies ??= {});
  policies.backupDatabase = { ...policies.backupDatabase, onBusyTarget: 'refuse' };
  policies.drDrill = { ...policies.drDrill, onBusyTarget: 'wait', busyTargetWait: '60s' };
  doc.schedules = [];
  const file = join(stack.dir, 'exclusive.yaml');
  writeFileSync(file, stringify(doc));
  loaded = loadConfig(file);
  worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('error') });
  await worker.start();
  await worker.waitUntilReady(120_000);
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
  s3 = new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey } });
});

after(async () => {
  s3?.destroy();
  await c?.close();
  await worker?.shutdown();
  await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
});

async function manifests(): Promise<string[]> {
  const r = await s3.send(new ListObjectsV2Command({ Bucket: 'runbook-backups' }));
  return (r.Contents ?? []).map((o) => o.Key!).filter((k) => k.endsWith('/manifest.json')).sort();
}

function failureOf(err: unknown): ApplicationFailure | undefined {
  return err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure ? err.cause : undefined;
}

describe('one mutating run per target', () => {
  test('a drill approved while its database is held waits before its first change; a backup meanwhile is refused naming the holder and writes nothing', async () => {
    // Someone holds main (a maintenance hold by hand).
    const hold = await c.client.workflow.start('targetGuard', { taskQueue: 'batch-queue', workflowId: 'target-sandbox-database-main', args: [{ environment: 'sandbox', kind: 'database', target: 'main' }] });
    const { handle: drill } = await startRunbook(c, 'drDrill', [{ environment: 'sandbox', database: 'main', mode: 'switchover', approvalTimeoutSeconds: 600 }], {});
    await waitFor('the drill gate', async () => (await drill.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 60_000, 200);
    await drill.executeUpdate(decideUpdate, { args: [await signedDecision(c, drill, 'drDrill', 'approve', operator(stack), 'exclusive test')] });
    // The drill's policy waits: it sits in its first changing step without having changed anything.
    await waitFor('the drill waiting for main', async () => (await drill.query(timelineQuery)).steps.some((s) => s.name === 'write marker' && s.outcome === 'running'), 60_000, 100);

    const before = await manifests();
    const { handle: backup } = await startRunbook(c, 'backupDatabase', [{ environment: 'sandbox', database: 'main' }], {});
    const refused = await backup.result().then(() => undefined, (err: unknown) => failureOf(err));
    assert.equal(refused?.type, 'TargetBusy', 'a backup of a held database is refused (its policy refuses at once)');
    assert.match(refused!.message, /database main is busy: targetGuard \(started by hand\) target-sandbox-database-main/);
    assert.match(refused!.message, /changed nothing/);
    assert.deepEqual(await manifests(), before, 'no backup was written');
    assert.ok(!(await backup.query(timelineQuery)).steps.some((s) => s.name === 'dump to S3'), 'the dump never started');
    assert.equal((await drill.query(timelineQuery)).steps.find((s) => s.name === 'write marker')?.outcome, 'running', 'the drill still waits');

    await hold.signal('release');
    const released = Date.parse((await hold.result().then(() => hold.describe())).closeTime!.toISOString());
    const report: DrDrillResult = await drill.result();
    assert.equal(report.passed, true, report.reasons?.join('; '));
    const marker = report.timeline.steps.find((s) => s.name === 'write marker')!;
    assert.equal(marker.evidence.target, 'database main held (own)');
    assert.ok(Date.parse(marker.endedAt!) >= released, 'the marker was written after the hold was released');
  });

  test('a backup and a drill of one database started together never act at once: the backup finishes first, or is refused naming the drill', async () => {
    const { handle: drill } = await startRunbook(c, 'drDrill', [{ environment: 'sandbox', database: 'main', mode: 'switchover', approvalTimeoutSeconds: 600 }], {});
    await waitFor('the drill gate', async () => (await drill.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 60_000, 200);
    await drill.executeUpdate(decideUpdate, { args: [await signedDecision(c, drill, 'drDrill', 'approve', operator(stack), 'exclusive test')] });
    const { handle: backup } = await startRunbook(c, 'backupDatabase', [{ environment: 'sandbox', database: 'main' }], {});
    const backupOutcome = await backup.result().then((r: BackupDatabaseResult) => ({ ok: r }), (err: unknown) => ({ err: failureOf(err) }));
    const report: DrDrillResult = await drill.result();
    assert.equal(report.passed, true, report.reasons?.join('; '));
    const marker = report.timeline.steps.find((s) => s.name === 'write marker')!;
    const drillEnd = Date.parse(report.endedAt);
    if ('ok' in backupOutcome) {
      const dump = (await backup.query(timelineQuery)).steps.find((s) => s.name === 'dump to S3')!;
      const backupEnd = Date.parse((await backup.describe()).closeTime!.toISOString());
      // The backup went first: the drill's first change came after the backup closed.
      assert.ok(Date.parse(marker.endedAt!) >= backupEnd || Date.parse(dump.startedAt) >= drillEnd, `overlap: dump ${dump.startedAt}-${dump.endedAt}, drill marker ${marker.endedAt}, backup closed ${new Date(backupEnd).toISOString()}`);
    } else {
      assert.equal(backupOutcome.err?.type, 'TargetBusy');
      assert.match(backupOutcome.err!.message, new RegExp(`database main is busy: drDrill ${drill.workflowId}`));
    }
  });

  test('a database held by hand refuses a backup until it is released; the next backup takes it and gives it back when it ends', async () => {
    const guard = await c.client.workflow.start('targetGuard', { taskQueue: 'batch-queue', workflowId: 'target-sandbox-database-main', args: [{ environment: 'sandbox', kind: 'database', target: 'main' }] });
    const { handle: refused } = await startRunbook(c, 'backupDatabase', [{ environment: 'sandbox', database: 'main' }], {});
    const failure = await refused.result().then(() => undefined, (err: unknown) => failureOf(err));
    assert.equal(failure?.type, 'TargetBusy');
    assert.match(failure!.message, /started by hand/);
    await guard.signal('release');
    await guard.result();
    const { handle: ok } = await startRunbook(c, 'backupDatabase', [{ environment: 'sandbox', database: 'main' }], {});
    await ok.result();
    const preflight = (await ok.query(timelineQuery)).steps.find((s) => s.name === 'preflight')!;
    assert.equal(preflight.evidence.target, 'database main held (own)');
    // Its guard was terminated with it: the target is free again.
    const held = await c.client.workflow.getHandle('target-sandbox-database-main').describe();
    assert.equal(held.status.name, 'TERMINATED', 'the backup\'s guard ended when the backup closed');
  });

  test('inside a change freeze that names backupDatabase, a backup (a runbook without gates) is refused before it changes anything', async () => {
    const doc = parse(readFileSync(loaded.file, 'utf8'));
    doc.environments.sandbox.freezes = [{ name: 'year-end', from: new Date(Date.now() - 3_600_000).toISOString(), to: new Date(Date.now() + 3_600_000).toISOString(), action: 'refuse', runbooks: ['backupDatabase', 'rollback'] }];
    const file = join(stack.dir, 'exclusive-freeze.yaml');
    writeFileSync(file, stringify(doc));
    await worker.shutdown();
    loaded = loadConfig(file);
    worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('error') });
    await worker.start();
    await worker.waitUntilReady();
    const before = await manifests();
    const { handle } = await startRunbook(c, 'backupDatabase', [{ environment: 'sandbox', database: 'main' }], {});
    const failure = await handle.result().then(() => undefined, (err: unknown) => failureOf(err));
    assert.equal(failure?.type, 'StartRefused');
    assert.match(failure!.message, /change freeze 'year-end' \(until [^)]+\) names backupDatabase/);
    assert.deepEqual(await manifests(), before);
  });
});
