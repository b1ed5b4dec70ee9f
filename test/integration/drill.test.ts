import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { WorkflowFailedError, WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { Client as PgClient } from 'pg';
import { Resolver } from 'node:dns/promises';
import { ConnectedClient, connectClient, RUNBOOK_ENVIRONMENT_KEY, RUNBOOK_NAME_KEY, RUNBOOK_TARGET_KEY, startRunbook } from '../../src/cli/client';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { nodeFiles, startNode, stopNode } from '../../src/system/postgres';
import { createTopologyDriver } from '../../src/topology';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import type { DrillReport } from '../../src/reports/drill';
import type { DrDrillResult } from '../../src/workflows/drDrill';
import { abortSignal, decideUpdate, gatesQuery } from '../../src/workflows/lib/gate';
import { timelineQuery } from '../../src/workflows/lib/timeline';
import { signAct, signedDecision } from '../../src/cli/sign';
import { RunbookWorker } from '../../src/worker';
import { Browser, keepPage } from '../browser';
import { waitFor, operator, superuserPassword } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-drill-test-'));
chmodSync(dir, 0o755);
let stack: StackState;
let loaded: LoadedConfig;
let worker: RunbookWorker;
let c: ConnectedClient;
let password: string;

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack') });
  loaded = loadConfig(stack.configFile);
  password = superuserPassword(stack);
  worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  await worker.start();
  await worker.waitUntilReady();
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
});

after(async () => {
  await c?.close();
  await worker?.shutdown();
  await stopStack(stack);
  if (!process.env.RUNBOOK_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
});

const nodes = () => {
  const t = loaded.config.environments.sandbox.databases.main.topology!;
  assert.equal(t.driver, 'local');
  return t.driver === 'local' ? t.nodes : [];
};

async function serviceAddress(): Promise<string[]> {
  const r = new Resolver({ timeout: 1_000, tries: 1 });
  r.setServers([`${stack.dns!.host}:${stack.dns!.port}`]);
  return r.resolve4('db.sandbox.test');
}

async function sql<T extends Record<string, unknown>>(host: string, text: string): Promise<T[]> {
  const pg = new PgClient({ host, port: stack.postgres!.port, user: 'postgres', password, database: 'app', connectionTimeoutMillis: 3_000 });
  await pg.connect();
  try {
    return (await pg.query<T>(text)).rows;
  } finally {
    await pg.end();
  }
}

/** Which node is primary and whether the other streams from it, judged from the servers themselves. */
async function topology(): Promise<{ primary: string; replicaStreaming: boolean }> {
  for (const n of nodes()) {
    const rows = await sql<{ rec: boolean }>(n.host, 'SELECT pg_is_in_recovery() AS rec').catch(() => undefined);
    if (rows && !rows[0].rec) {
      const other = nodes().find((x) => x.name !== n.name)!;
      const reps = await sql<{ name: string; state: string }>(n.host, 'SELECT application_name AS name, state FROM pg_stat_replication');
      return { primary: n.host, replicaStreaming: reps.some((r) => r.name === other.name && r.state === 'streaming') };
    }
  }
  throw new Error('no primary');
}

async function markerCount(host: string, drillId: string): Promise<number> {
  const rows = await sql<{ n: string }>(host, `SELECT count(*)::text AS n FROM pg_tables WHERE tablename = 'runbook_drill_markers'`);
  if (rows[0].n === '0') return 0;
  return Number((await sql<{ n: string }>(host, `SELECT count(*)::text AS n FROM runbook_drill_markers WHERE drill_id LIKE '${drillId.replace(/[^a-z0-9-]/g, '')}%'`))[0].n);
}

async function startDrill(args: Record<string, unknown> = {}): Promise<WorkflowHandle> {
  return c.client.workflow.start('drDrill', {
    taskQueue: 'critical-queue',
    workflowId: `drill-test-${Date.now()}`,
    args: [{ environment: 'sandbox', database: 'main', mode: 'failover', ...args }],
  });
}

async function gateOpen(handle: WorkflowHandle): Promise<void> {
  await waitFor('the approval gate to open', async () => (await handle.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 30_000, 100);
}

async function drillFailure(handle: WorkflowHandle): Promise<{ failure: ApplicationFailure; report: DrillReport }> {
  const err = await handle.result().then(() => assert.fail('the drill passed'), (e: unknown) => e);
  assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure, String(err));
  return { failure: err.cause, report: err.cause.details?.[0] as DrillReport };
}

describe('the DR drill', () => {
  test('a drill rejected at the gate changes nothing: same primary, same DNS, no marker row', async () => {
    const before = await topology();
    const handle = await startDrill();
    await gateOpen(handle);
    const gate = await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'reject', operator(stack), 'not today')] });
    assert.equal(gate.outcome, 'rejected');
    const { failure, report } = await drillFailure(handle);
    assert.equal(failure.type, 'DrillNotApproved');
    assert.match(failure.message, /rejected by sandbox-operator at the approval gate; nothing was changed/);
    assert.deepEqual(await topology(), before);
    assert.deepEqual(await serviceAddress(), [before.primary]);
    assert.equal(await markerCount(before.primary, report.drillId), 0);
  });

  test('a drill that requires a recent restore test of its database fails preflight without one (another database\'s does not count), unchanged, and passes it after one', async () => {
    const before = await topology();
    await c.client.workflow.execute('backupDatabase', { taskQueue: 'batch-queue', workflowId: `drill-test-backup-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main' }] });
    // A restore test that passed, but is recorded for another database: it proves nothing about main.
    const other = await c.client.workflow.start('verifyBackup', {
      taskQueue: 'batch-queue',
      workflowId: `drill-test-other-verify-${Date.now()}`,
      args: [{ environment: 'sandbox', database: 'main' }],
      typedSearchAttributes: [
        { key: RUNBOOK_NAME_KEY, value: 'verifyBackup' },
        { key: RUNBOOK_ENVIRONMENT_KEY, value: 'sandbox' },
        { key: RUNBOOK_TARGET_KEY, value: 'orders' },
      ],
    });
    await other.result();
    await waitFor('the other restore test in visibility', async () => {
      for await (const w of c.client.workflow.list({ query: `WorkflowId = '${other.workflowId}' AND ExecutionStatus = 'Completed'` })) return w.workflowId;
      return undefined;
    });
    const refused = await startDrill({ requireRestoreTestWithinDays: 7 });
    const { failure } = await drillFailure(refused);
    assert.equal(failure.type, 'DrillPreflightFailed');
    assert.match(failure.message, /preflight failed, nothing was changed: no restore test of database main passed within 7 days$/);
    assert.deepEqual(await topology(), before);

    const { handle: verify } = await startRunbook(c, 'verifyBackup', [{ environment: 'sandbox', database: 'main' }], {});
    await verify.result();
    await waitFor('the restore test in visibility', async () => {
      for await (const w of c.client.workflow.list({ query: `WorkflowId = '${verify.workflowId}' AND ExecutionStatus = 'Completed'` })) return w.workflowId;
      return undefined;
    });
    const accepted = await startDrill({ requireRestoreTestWithinDays: 7 });
    await gateOpen(accepted);
    const preflight = (await accepted.query(timelineQuery)).steps.find((s) => s.name === 'preflight')!;
    assert.equal((preflight.evidence.lastRestoreTest as { workflowId: string }).workflowId, verify.workflowId);
    assert.equal((preflight.evidence.lastRestoreTest as { target: string }).target, 'main');
    await accepted.executeUpdate(decideUpdate, { args: [await signedDecision(c, accepted, 'drDrill', 'reject', operator(stack))] });
    await drillFailure(accepted);
  });

  test('a typed name without a signature is refused by the update validator and the drill keeps waiting; a signed abort then ends it unchanged; a timeout does too', async () => {
    const before = await topology();
    const handle = await startDrill();
    await gateOpen(handle);
    await assert.rejects(handle.executeUpdate(decideUpdate, { args: [{ decision: 'approve', by: 'sandbox-operator' } as never] }), (err: Error) =>
      /statement: expected the signed statement text/.test(`${err.message} ${(err.cause as Error | undefined)?.message}`),
    );
    assert.equal((await handle.query(gatesQuery))[0].outcome, 'waiting');
    await handle.signal(abortSignal, await signAct(c, operator(stack), { runbook: 'drDrill', workflowId: handle.workflowId, runId: (await handle.describe()).runId, gate: 'run', act: 'abort', reason: 'changed my mind' }));
    const { failure } = await drillFailure(handle);
    assert.equal(failure.type, 'DrillNotApproved');
    assert.match(failure.message, /aborted by sandbox-operator/);

    const timedOut = await startDrill({ approvalTimeoutSeconds: 2 });
    const t = await drillFailure(timedOut);
    assert.match(t.failure.message, /the drill was timed out at the approval gate; nothing was changed/);
    assert.deepEqual(await topology(), before);
    assert.deepEqual(await serviceAddress(), [before.primary]);
  });

  test('a full failover drill with failback passes with measured RTO and RPO; afterwards: primary plus streaming replica, DNS at the primary', async () => {
    const before = await topology();
    const handle = await startDrill();
    await gateOpen(handle);
    await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', operator(stack), 'quarterly drill')] });
    const result: DrDrillResult = await handle.result();
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.ok(result.rto!.ms > 0 && result.rto!.ms < 30 * 60_000, `RTO ${result.rto!.ms} ms`);
    assert.equal(result.rto!.met, true);
    assert.equal(result.rpo!.markerPresent, true);
    assert.equal(result.rpo!.met, true);
    assert.equal(result.approval!.by, 'sandbox-operator');
    const after = await topology();
    assert.notEqual(after.primary, before.primary, 'the former replica is the primary now');
    assert.equal(after.replicaStreaming, true, 'the former primary streams from it');
    assert.deepEqual(await serviceAddress(), [after.primary]);
    assert.equal(await markerCount(after.primary, result.drillId), 2, 'marker and verification rows');
    assert.equal(result.reportKeys.length, 3);
    const s3 = new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey } });
    const html = await (await s3.send(new GetObjectCommand({ Bucket: 'runbook-backups', Key: result.reportKeys[2] }))).Body!.transformToString();
    s3.destroy();
    assert.match(html, /<svg[^>]*aria-label="drill timeline"/);
    // A real page: the verdict and RTO first, then a table of the steps, each step's evidence folded under it, then the run.
    assert.match(html, /<h1>DR drill: .*<span class="verdict ok">PASSED<\/span><\/h1>/);
    assert.ok(html.indexOf('<table class="summary">') < html.indexOf('<table class="steps">'), 'summary before steps');
    assert.match(html, /<th>RTO<\/th><td>\d+\.\d+ s \(/);
    for (const s of result.timeline.steps.filter((x) => x.name !== 'write report')) assert.ok(html.includes(`<td>${s.name}`) || html.includes(`<td>${s.name.replace(/&/g, '&amp;')}`), `step ${s.name} in the table`);
    assert.ok((html.match(/<details><summary>evidence<\/summary>/g) ?? []).length >= 5, 'evidence folded under the steps');
    assert.ok(html.includes(`<code>${result.workflowId}</code>`), 'the run is named');
    assert.doesNotMatch(html, /<pre>#/, 'no Markdown pasted into the page');
    const browser = await Browser.launch();
    try {
      const tab = await browser.open(keepPage('drill-report', html).url);
      assert.deepEqual(tab.errors, [], 'the page renders without console errors');
      assert.equal(await tab.evaluate<string>('document.querySelector("h1 .verdict").textContent'), 'PASSED');
      const rows = await tab.evaluate<string[]>('[...document.querySelectorAll("table.steps tbody tr td:nth-child(2)")].map((td) => td.firstChild.textContent)');
      assert.deepEqual(rows, result.timeline.steps.map((s) => s.name).slice(0, rows.length), 'the steps in order');
      assert.ok(rows.length >= result.timeline.steps.length - 1);
      // Evidence is folded: hidden until its summary is clicked.
      const shown = () => tab.evaluate<[boolean, boolean]>('[document.querySelector("table.steps details").open, document.querySelector("table.steps details pre").checkVisibility()]');
      assert.deepEqual(await shown(), [false, false]);
      await tab.evaluate('document.querySelector("table.steps details summary").click()');
      assert.deepEqual(await shown(), [true, true]);
      assert.equal(await tab.evaluate<number>('document.querySelectorAll("svg[aria-label=\'drill timeline\'] rect").length'), rows.length);
      await tab.screenshot('drill-report');
    } finally {
      await browser.close();
    }
    const metrics = await worker.metrics.registry.metrics();
    assert.match(metrics, /^runbook_drills_total\{environment="sandbox",passed="true"\} [1-9]\d*$/m);
    assert.deepEqual(
      result.timeline.steps.map((s) => s.name),
      ['preflight', 'approval gate', 'write marker', 'fault: the primary dies hard', 'new primary: detected and writable', 'switch the service endpoint', 'verify through the service endpoint', 'measure RTO and RPO', 'failback: rejoin the old primary as a replica', 'write report'],
    );
  });

  test('a fault in the promote step (the replica is unreachable) triggers compensation: a writable primary exists and DNS points at it', async () => {
    const before = await topology();
    const replicaNode = nodes().find((n) => n.host !== before.primary)!;
    const handle = await startDrill({ failback: false });
    await gateOpen(handle);
    await stopNode(replicaNode.dataDir, 'immediate');
    try {
      await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', operator(stack))] });
      const { failure, report } = await drillFailure(handle);
      assert.equal(failure.type, 'DrillFailed');
      assert.match(failure.message, /step 'new primary: detected and writable' failed: connecting to 127\.0\.0\.\d:\d+\/app as runbook_drill: connect ECONNREFUSED/);
      assert.deepEqual(report.compensation.map((x) => x.ok), [true]);
      const now = await topology();
      assert.equal(now.primary, before.primary, 'the former primary was restarted as the writable primary');
      await sql(now.primary, "INSERT INTO runbook_drill_markers (drill_id, kind) VALUES ('after-compensation', 'probe')");
      assert.deepEqual(await serviceAddress(), [now.primary]);
    } finally {
      await startNode({ name: replicaNode.name, host: replicaNode.host, port: replicaNode.port, dataDir: replicaNode.dataDir, ...nodeFiles(replicaNode.dataDir) });
    }
    await waitFor('the replica to stream again', async () => (await topology()).replicaStreaming, 30_000, 200);
  });

  test('a switchover drill loses nothing (RPO 0), and with switchBack the original primary leads again afterwards', async () => {
    const before = await topology();
    const handle = await startDrill({ mode: 'switchover', switchBack: true });
    await gateOpen(handle);
    await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', operator(stack))] });
    const result: DrDrillResult = await handle.result();
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.equal(result.rpo!.markerPresent, true);
    assert.equal(result.rpo!.lostBytes, 0);
    assert.equal(result.rpo!.ms, 0);
    assert.ok(result.timeline.steps.find((s) => s.name === 'fault: planned switchover')?.evidence.replayedLsn);
    assert.equal(result.primaryAfter, result.primaryBefore);
    const after = await topology();
    assert.equal(after.primary, before.primary, 'the original primary leads again');
    assert.equal(after.replicaStreaming, true);
    assert.deepEqual(await serviceAddress(), [before.primary]);
    assert.ok(result.timeline.steps.filter((s) => s.name.startsWith('switch back:')).every((s) => s.outcome === 'succeeded'));
  });

  test('a former primary that cannot be rewound (it ran without wal_log_hints or checksums) keeps its data directory aside, named in the report, and a fresh copy streams', async () => {
    const before = await topology();
    const old = nodes().find((n) => n.host === before.primary)!;
    // Many clusters run like this: without data checksums or wal_log_hints, pg_rewind refuses.
    await sql(old.host, 'ALTER SYSTEM SET wal_log_hints = off');
    await stopNode(old.dataDir, 'fast');
    await startNode({ name: old.name, host: old.host, port: old.port, dataDir: old.dataDir, ...nodeFiles(old.dataDir) });
    await waitFor('the replica to stream again', async () => (await topology()).replicaStreaming, 30_000, 200);
    const handle = await startDrill();
    await gateOpen(handle);
    await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', operator(stack))] });
    const result: DrDrillResult = await handle.result();
    assert.equal(result.passed, true, result.reasons.join('; '));
    const failback = result.failback as { method: string; keptAside?: { path: string; lastLsn?: string; timeline?: number } };
    assert.equal(failback.method, 'base backup');
    assert.equal(failback.keptAside?.path, `${old.dataDir}.kept-${result.drillId}`);
    assert.match(failback.keptAside!.lastLsn!, /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.equal(typeof failback.keptAside!.timeline, 'number');
    // Nothing was deleted: the old cluster is whole where the report says, and a fresh copy streams.
    assert.ok(existsSync(join(failback.keptAside!.path, 'PG_VERSION')));
    assert.match(readFileSync(join(failback.keptAside!.path, 'postgresql.auto.conf'), 'utf8'), /wal_log_hints = 'off'/);
    const rejoin = result.timeline.steps.find((s) => s.name === 'failback: rejoin the old primary as a replica')!;
    assert.match(String((rejoin.evidence.detail as { rewindError?: string }).rewindError), /wal_log_hints/);
    const after = await topology();
    assert.equal(after.replicaStreaming, true);
    assert.notEqual(after.primary, old.host);
  });

  test('a replica that streams but does not replay the primary\'s new commits is not counted as rejoined: the rejoin restarts it until it follows', async () => {
    const before = await topology();
    assert.equal(before.replicaStreaming, true);
    const primary = nodes().find((n) => n.host === before.primary)!;
    const replica = nodes().find((n) => n.host !== before.primary)!;
    // Connected and streaming, but replay stopped: it would pass "streams" and "serves reads".
    await sql(replica.host, 'SELECT pg_wal_replay_pause()');
    const pausedBefore = await sql(replica.host, "SELECT pg_get_wal_replay_pause_state() AS state, inet_server_addr()::text AS addr");
    const driver = createTopologyDriver(loaded.config.environments.sandbox.databases.main, loaded.baseDir)!;
    const seen: Record<string, unknown>[] = [];
    const r = await driver.rejoin({ member: replica.name, primary: primary.name, keepAsideSuffix: `test-${Date.now()}`, progress: (d) => seen.push(d) });
    assert.notEqual(r.method, 'already a replica', `a paused replica is not taken as rejoined: ${JSON.stringify(r)} ${JSON.stringify(pausedBefore)}`);
    assert.ok(seen.some((d) => d.waitingForReplay === replica.name), 'it waited for the new commit to be replayed');
    assert.equal(typeof r.detail?.replayedNewCommitAfterMs, 'number');
    const [{ paused }] = await sql<{ paused: boolean }>(replica.host, 'SELECT pg_is_wal_replay_paused() AS paused');
    assert.equal(paused, false);
    assert.equal((await topology()).replicaStreaming, true);
  });

  test('two rejoins of the same node at once (a retry while the attempt the server gave up on still runs) take turns: the second waits, then finds a replica that follows', async () => {
    const before = await topology();
    const primary = nodes().find((n) => n.host === before.primary)!;
    const replica = nodes().find((n) => n.host !== before.primary)!;
    // Paused replay makes the first rejoin restart the node, so the two would overlap without the lock.
    await sql(replica.host, 'SELECT pg_wal_replay_pause()');
    const driver = createTopologyDriver(loaded.config.environments.sandbox.databases.main, loaded.baseDir)!;
    const order: string[] = [];
    const rejoin = (who: string) => {
      const seen: Record<string, unknown>[] = [];
      return driver
        .rejoin({ member: replica.name, primary: primary.name, keepAsideSuffix: `test-${who}-${Date.now()}`, progress: (d) => seen.push(d) })
        .then((r) => {
          order.push(who);
          return { r, seen };
        });
    };
    const [first, second] = await Promise.all([rejoin('first'), rejoin('second')]);
    assert.deepEqual(order, ['first', 'second'], 'the second finished after the first');
    assert.notEqual(first.r.method, 'already a replica', JSON.stringify(first.r));
    assert.ok(second.seen.some((d) => d.waitingForEarlierRejoin === replica.dataDir), 'the second waited for the first');
    assert.equal(second.r.method, 'already a replica', JSON.stringify(second.r));
    assert.equal(typeof second.r.detail?.replayedNewCommitAfterMs, 'number');
    assert.equal(existsSync(join(dirname(replica.dataDir), `.${basename(replica.dataDir)}.rejoin.lock`)), false, 'the lock is released');
    assert.equal((await topology()).replicaStreaming, true);
  });
});
