import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError, WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { Client as PgClient } from 'pg';
import { ConnectedClient, connectClient } from '../../src/cli/client';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { readSecret } from '../../src/config/secrets';
import { createLogger } from '../../src/observability/logger';
import { renderDrillMarkdown, type DrillReport } from '../../src/reports/drill';
import { controlNode, patchPatroniConfig, patroniCluster, startDcs, stopDcs, waitForPatroniHealthy } from '../../src/sandbox/patroni';
import { PATRONI_DATABASE_KEY, StackState, startStack, stopStack } from '../../src/sandbox/stack';
import type { DrDrillResult } from '../../src/workflows/drDrill';
import { decideUpdate, gatesQuery } from '../../src/workflows/lib/gate';
import { signedDecision } from '../../src/cli/sign';
import { RunbookWorker } from '../../src/worker';
import { waitFor, operator } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-patroni-drill-'));
chmodSync(dir, 0o755);
let stack: StackState;
let loaded: LoadedConfig;
let worker: RunbookWorker;
let c: ConnectedClient;
let password: string;

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 's3', 'patroni'] });
  loaded = loadConfig(stack.configFile);
  password = readSecret(loaded.config.environments.sandbox.databases[PATRONI_DATABASE_KEY].password, loaded.baseDir);
  worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  await worker.start();
  await worker.waitUntilReady();
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
});

after(async () => {
  await c?.close();
  await worker?.shutdown();
  if (stack) await stopStack(stack);
  if (!process.env.RUNBOOK_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
});

const patroni = () => stack.patroni!;
/** The leader an unplanned failover drill took down (no switch-back), for the runbooks that run after it. */
let formerLeader: string | undefined;
const secretsDir = () => join(stack.dir, 'secrets');

async function leader(): Promise<{ name: string; timeline: number }> {
  const l = (await patroniCluster(patroni())).members.find((m) => m.role === 'leader' && m.state === 'running');
  assert.ok(l, 'a running leader');
  return { name: l.name, timeline: l.timeline ?? 0 };
}

/** A query through HAProxy's write port, as any client of the cluster runs it. */
async function viaHaproxy<T extends Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> {
  const pg = new PgClient({ host: patroni().haproxy.host, port: patroni().haproxy.writePort, user: 'postgres', password, database: 'app', connectionTimeoutMillis: 5_000 });
  pg.on('error', () => undefined);
  await pg.connect();
  try {
    return (await pg.query<T>(text, params)).rows;
  } finally {
    await pg.end();
  }
}

function controlActions(): string[] {
  return readFileSync(patroni().controlLog, 'utf8').trim().split('\n').filter(Boolean).map((l) => l.split(' ').slice(1).join(' '));
}

async function startDrill(args: Record<string, unknown>): Promise<WorkflowHandle> {
  return c.client.workflow.start('drDrill', {
    taskQueue: 'critical-queue',
    workflowId: `patroni-drill-${Date.now()}`,
    args: [{ environment: 'sandbox', database: PATRONI_DATABASE_KEY, mode: 'failover', ...args }],
  });
}

async function gateOpen(handle: WorkflowHandle): Promise<void> {
  await waitFor(
    'the approval gate to open',
    async () => {
      if ((await handle.describe()).status.name !== 'RUNNING') await handle.result().then(() => assert.fail('the drill ended before its gate'), (err: Error) => assert.fail(`the drill ended before its gate: ${(err.cause as Error | undefined)?.message ?? err.message}`));
      return (await handle.query(gatesQuery)).some((g) => g.outcome === 'waiting');
    },
    60_000,
    200,
  );
}

async function approve(handle: WorkflowHandle): Promise<void> {
  await gateOpen(handle);
  await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', operator(stack))] });
}

async function drillFailure(handle: WorkflowHandle): Promise<{ failure: ApplicationFailure; report: DrillReport }> {
  const err = await handle.result().then(() => assert.fail('the drill passed'), (e: unknown) => e);
  assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure, String(err));
  return { failure: err.cause, report: err.cause.details?.[0] as DrillReport };
}

const renderedReport = (r: DrillReport) => renderDrillMarkdown(r);

/** After a drill, every member runs again and streams from the leader. */
async function healthy(): Promise<void> {
  await waitForPatroniHealthy(patroni(), 120_000);
}

describe('DR drills on a Patroni cluster behind HAProxy', () => {
  test('the DCS down at preflight: the drill refuses and nothing changes', async () => {
    const before = await leader();
    const actionsBefore = controlActions().length;
    await stopDcs(patroni());
    try {
      // Members notice the DCS is gone within a loop and its retries.
      await waitFor('the members to lose the DCS', async () => (await patroniCluster(patroni()).then(() => false, () => true)), 60_000, 500);
      const handle = await startDrill({});
      const { failure } = await drillFailure(handle);
      assert.equal(failure.type, 'DrillPreflightFailed');
      assert.match(failure.message, /preflight failed, nothing was changed: .*the DCS is not reachable/);
    } finally {
      await startDcs(patroni());
    }
    await healthy();
    assert.deepEqual(await leader(), before, 'the same leader on the same timeline');
    assert.equal(controlActions().length, actionsBefore, 'no node was killed or started');
  });

  test('a planned switchover through Patroni under a write load loses no acknowledged row; the report splits the RTO', async () => {
    const before = await leader();
    const handle = await startDrill({ mode: 'switchover', writeLoad: { rate: 40, warmupSeconds: 2 }, targets: { rpoMs: 0 } });
    await approve(handle);
    const result: DrDrillResult = await handle.result();
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.equal(result.driver, 'patroni');
    assert.equal(result.primaryBefore, before.name);
    assert.notEqual(result.primaryAfter, before.name);
    const w = result.rpo!.writes!;
    assert.ok(w.acknowledgedBeforeFault > 0, 'commits were acknowledged before the switchover');
    assert.ok(w.acknowledged > w.acknowledgedBeforeFault, 'and after it, through HAProxy');
    assert.equal(w.lost, 0);
    assert.equal(result.rpo!.lostRows, 0);
    assert.equal(result.rpo!.met, true);
    const split = result.rto!.split!;
    assert.equal(split.detectionMs + split.promotionMs + split.endpointMs + split.firstWriteMs, result.rto!.ms);
    assert.ok(result.plan!.some((p) => p.includes('/switchover')), result.plan!.join('; '));
    assert.deepEqual(controlActions().filter((a) => a.startsWith('kill')), [], 'a switchover kills nothing');
    await healthy();
    assert.equal((await leader()).name, result.primaryAfter);
    // Every acknowledged row is on the new leader.
    const [{ n }] = await viaHaproxy<{ n: string }>('SELECT count(*)::text AS n FROM runbook_drill_writes WHERE drill_id = $1', [result.drillId]);
    assert.ok(Number(n) >= w.acknowledged);
  });

  test('an unplanned failover: the leader is killed hard, Patroni detects it and elects a new leader, writes resume through HAProxy; the old leader rejoins and streams', async () => {
    const before = await leader();
    const handle = await startDrill({ writeLoad: { rate: 40, warmupSeconds: 2 } });
    await approve(handle);
    const result: DrDrillResult = await handle.result();
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.equal(result.primaryBefore, before.name);
    assert.notEqual(result.primaryAfter, before.name);
    formerLeader = before.name;
    // Detection is Patroni's own: the drill killed the leader and only watched.
    const split = result.rto!.split!;
    assert.ok(split.detectionMs > 0);
    assert.equal(split.detectionMs + split.promotionMs + split.endpointMs + split.firstWriteMs, result.rto!.ms);
    assert.equal(result.rto!.detectionBoundMs, (patroni().settings.ttl + patroni().settings.loopWait) * 1000);
    assert.deepEqual({ ttl: result.settings!.ttl, loopWait: result.settings!.loopWait, retryTimeout: result.settings!.retryTimeout, sync: result.settings!.synchronousMode }, { ttl: 10, loopWait: 1, retryTimeout: 4, sync: false });
    const fault = result.timeline.steps.find((s) => s.name === 'fault: the primary dies hard')!;
    assert.equal(fault.evidence.acted, true);
    assert.equal(result.rto!.clockStartedAt, fault.evidence.clockStartedAt);
    assert.ok(result.rpo!.writes!.acknowledged > result.rpo!.writes!.acknowledgedBeforeFault, 'writes resumed after the failover');
    assert.equal(result.rpo!.synchronousMode, false);
    // The old leader was killed once and started once; it streams from the new leader on its timeline.
    assert.deepEqual(controlActions().slice(-2), [`kill ${before.name}`, `start ${before.name}`]);
    assert.deepEqual(result.failback, { method: 'patroni rejoin', streaming: true });
    await healthy();
    const after = await leader();
    assert.equal(after.name, result.primaryAfter);
    assert.equal(after.timeline, before.timeline + 1, 'one promotion: one new timeline');
    const [reached] = await viaHaproxy<{ addr: string }>('SELECT host(inet_server_addr()) AS addr');
    assert.equal(reached.addr, patroni().nodes.find((n) => n.name === after.name)!.host);
  });

  test('after a failover without switch-back, a backup and a restore test reach the new leader through HAProxy', async () => {
    const now = await leader();
    assert.ok(formerLeader && now.name !== formerLeader, `the leader before the failover (${formerLeader}) no longer leads`);
    const backup = await c.client.workflow.execute('backupDatabase', { taskQueue: 'batch-queue', workflowId: `patroni-backup-${Date.now()}`, args: [{ environment: 'sandbox', database: PATRONI_DATABASE_KEY }] });
    assert.ok((backup as { bytes: number }).bytes > 0);
    const verify = (await c.client.workflow.execute('verifyBackup', { taskQueue: 'batch-queue', workflowId: `patroni-verify-${Date.now()}`, args: [{ environment: 'sandbox', database: PATRONI_DATABASE_KEY }] })) as { passed: boolean; reasons: string[] };
    assert.equal(verify.passed, true, verify.reasons.join('; '));
  });

  test('synchronous mode: a hard failover under a write load loses no acknowledged row', async () => {
    await patchPatroniConfig(patroni(), secretsDir(), { synchronous_mode: true });
    try {
      await waitFor('a synchronous standby', async () => (await patroniCluster(patroni())).members.some((m) => m.role === 'sync_standby'), 60_000, 500);
      const handle = await startDrill({ writeLoad: { rate: 40, warmupSeconds: 2 }, targets: { rpoMs: 0 } });
      await approve(handle);
      const result: DrDrillResult = await handle.result();
      assert.equal(result.passed, true, result.reasons.join('; '));
      assert.equal(result.rpo!.synchronousMode, true);
      assert.ok(result.rpo!.writes!.acknowledgedBeforeFault > 0);
      assert.equal(result.rpo!.writes!.lost, 0);
      assert.equal(result.rpo!.met, true);
    } finally {
      await patchPatroniConfig(patroni(), secretsDir(), { synchronous_mode: false });
    }
    await healthy();
  });

  test('asynchronous, with the replicas\' WAL receipt stalled: the failover loses acknowledged rows, a 0-loss target ends DrillTargetsMissed with the report, and the old leader is rewound to stream again', async () => {
    await waitFor('no synchronous standby', async () => !(await patroniCluster(patroni())).members.some((m) => m.role === 'sync_standby'), 60_000, 500);
    const before = await leader();
    const handle = await startDrill({ writeLoad: { rate: 40, warmupSeconds: 3 }, targets: { rpoMs: 0 } });
    await gateOpen(handle);
    // Past preflight: the leader's WAL senders stop, so the replicas receive nothing more while the
    // leader keeps acknowledging commits (asynchronous replication waits for no standby).
    const stalled = await controlNode(patroni(), 'stall-wal', before.name);
    assert.equal(stalled.walsenders, 2);
    await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', operator(stack))] });
    const { failure, report } = await drillFailure(handle);
    assert.equal(failure.type, 'DrillTargetsMissed');
    const w = report.rpo!.writes!;
    assert.ok(w.lost > 0, `acknowledged rows were lost (${JSON.stringify(w)})`);
    assert.match(failure.message, new RegExp(`RPO target 0: ${report.rpo!.lostRows} acknowledged writes were lost \\(asynchronous replication\\)`));
    assert.ok(report.rpo!.lostRows! >= w.lost);
    assert.equal(report.rpo!.met, false);
    assert.ok(report.rpo!.lostBytes > 0, 'WAL written after the fork is lost');
    assert.ok(report.rpo!.ms >= 0 && w.firstLostAt && w.lastLostAt);
    assert.equal((report as DrillReport & { reportKeys: string[] }).reportKeys.length, 3, 'the report is written');
    // The rows the ack log says were acknowledged are really missing on the new leader.
    const missing = await viaHaproxy<{ seq: string }>('SELECT seq::text AS seq FROM runbook_drill_writes WHERE drill_id = $1 AND seq = ANY($2::bigint[])', [report.drillId, w.lostSample]);
    assert.deepEqual(missing, []);
    assert.ok(existsSync(w.log));
    // The old leader had diverged; Patroni rewound it and it streams from the new leader.
    assert.deepEqual(report.failback, { method: 'patroni rejoin', streaming: true });
    await healthy();
  });

  test('pg_rewind not allowed and the old leader diverged: its data directory is kept aside, named in the report, before Patroni clones a fresh replica', async () => {
    await patchPatroniConfig(patroni(), secretsDir(), { postgresql: { use_pg_rewind: false } });
    try {
      const before = await leader();
      const mark = controlActions().length;
      const handle = await startDrill({ writeLoad: { rate: 40, warmupSeconds: 2 } });
      await gateOpen(handle);
      await controlNode(patroni(), 'stall-wal', before.name);
      await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', operator(stack))] });
      const result: DrDrillResult = await handle.result();
      assert.equal(result.passed, true, result.reasons.join('; '));
      assert.ok(result.rpo!.writes!.lost > 0, 'the old leader holds acknowledged commits the new one lacks');
      const failback = result.failback as { method: string; streaming: boolean; keptAside?: { path: string; lastLsn?: string; timeline?: number } };
      assert.equal(failback.method, 'patroni clone');
      const node = patroni().nodes.find((n) => n.name === before.name)!;
      assert.equal(failback.keptAside?.path, `${node.dataDir}.kept-${result.drillId}`);
      assert.match(failback.keptAside!.lastLsn!, /^[0-9A-F]+\/[0-9A-F]+$/);
      assert.ok(failback.keptAside!.timeline! >= 1);
      // Nothing was deleted: the kept directory is a whole cluster, and a fresh copy runs beside it.
      assert.ok(existsSync(join(failback.keptAside!.path, 'PG_VERSION')));
      assert.ok(existsSync(join(node.dataDir, 'PG_VERSION')));
      assert.match(renderedReport(result), new RegExp(`the old data directory was kept at ${failback.keptAside!.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      // Killed by the fault, started, found not streaming, stopped, kept aside, started to clone: nothing deleted.
      assert.deepEqual(controlActions().slice(mark), ['stall-wal', 'kill', 'start', 'kill', 'keep-aside', 'start'].map((a) => `${a} ${before.name}`));
    } finally {
      await patchPatroniConfig(patroni(), secretsDir(), { postgresql: { use_pg_rewind: true } });
    }
    await healthy();
  });
});
