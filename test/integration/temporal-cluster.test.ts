/**
 * The sandbox's production-shaped Temporal cluster (runbook stack up --with-temporal-cluster): its start
 * and stop, the runbook worker and CLI on it over mTLS, the readiness audit against it and against the
 * dev server beside it, its configuration backup and restore test, and the loss of one frontend.
 * One stack for the whole file; the tests run in order and the last one stops it.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { decideGate } from '../../src/cli/sign';
import type { LoadTestResult } from '../../src/workflows/loadTest';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, describe, test } from 'node:test';
import { Connection, WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { Client as PgClient } from 'pg';
import { createS3Client, ObjectStore } from '../../src/activities/s3';
import { ConnectedClient, connectClient, startRunbook } from '../../src/cli/client';
import { runBackup, runVerify } from '../../src/cli/backup';
import { awaitDrill, decideDrill, startDrill, waitForOpenGate } from '../../src/cli/drill';
import { runSmokeTest } from '../../src/cli/smoke';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import type { AuditItemResult } from '../../src/reports/audit';
import type { TemporalConfigRestoreReport } from '../../src/reports/temporalConfig';
import { readStackState, stackStatus, StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { describeTemporalCluster } from '../../src/sandbox/temporalCluster';
import { groupAlive, stopService } from '../../src/system/process';
import type { BackupTemporalConfigResult } from '../../src/workflows/backupTemporalConfig';
import type { ReadinessAuditResult } from '../../src/workflows/readinessAudit';
import type { VerifyTemporalConfigResult } from '../../src/workflows/verifyTemporalConfig';
import { RunbookWorker } from '../../src/worker';
import { operator, processesInGroup, runCli, startCli, waitFor, superuserPassword } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-cluster-test-'));
chmodSync(dir, 0o755);
const stackDir = join(dir, 'stack');
const COMPONENTS = ['temporal', 'postgres', 'replica', 's3', 'dns', 'temporal-cluster'] as const;
let stack: StackState | undefined;
let loaded: LoadedConfig;
let sandbox: ConnectedClient;
let ops: ConnectedClient;
const workers: RunbookWorker[] = [];
const deployed: ReturnType<typeof startCli>[] = [];
const starts: number[] = [];

after(async () => {
  await sandbox?.close().catch(() => undefined);
  await ops?.close().catch(() => undefined);
  for (const w of workers) await w.shutdown().catch(() => undefined);
  for (const d of deployed) if (d.child.exitCode === null) d.child.kill('SIGKILL');
  if (stack) await stopStack(stack).catch(() => undefined);
  if (!process.env.RUNBOOK_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
});

const cluster = () => stack!.temporalCluster!;

/** True while something accepts TCP connections on the address. */
function listening(address: string): Promise<boolean> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const s = tcpConnect(Number(address.slice(i + 1)), address.slice(0, i));
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Every process of the cluster is gone and none of its addresses answers. */
async function assertNothingLeft(s: StackState): Promise<void> {
  const c = s.temporalCluster!;
  for (const pid of [...c.processes.map((p) => p.pid), c.haproxy.pid, c.postgres.pid, c.postgresReplica.pid]) {
    assert.deepEqual(processesInGroup(pid), [], `process group ${pid} is empty`);
  }
  for (const address of [c.address, ...c.processes.map((p) => p.grpcAddress), `${c.postgres.host}:${c.postgres.port}`, `${c.postgresReplica.host}:${c.postgresReplica.port}`]) {
    assert.equal(await listening(address), false, `${address} no longer answers`);
  }
  assert.equal(readStackState(s.dir), undefined, 'the state file is removed');
}

async function startAndTime(): Promise<StackState> {
  const s = await startStack({ dir: stackDir, components: [...COMPONENTS] });
  starts.push(s.temporalCluster!.startMs);
  return s;
}

const itemOf = (r: ReadinessAuditResult, id: string): AuditItemResult => {
  const found = r.sections.flatMap((s) => s.items).find((i) => i.id === id);
  assert.ok(found, `item ${id} in the report`);
  return found;
};

async function audit(c: ConnectedClient, environment: string): Promise<ReadinessAuditResult> {
  const { handle } = await startRunbook(c, 'readinessAudit', [{ environment, checkTimeoutSeconds: 8 }], {});
  return (await handle.result()) as ReadinessAuditResult;
}

describe('the Temporal cluster in the sandbox', () => {
  test('starts, stops leaving nothing behind, and starts again from the same directory', async () => {
    stack = await startAndTime();
    const first = stack;
    const c = cluster();
    assert.deepEqual(
      c.processes.map((p) => p.role).sort(),
      ['frontend', 'frontend', 'history', 'history', 'matching', 'matching', 'worker', 'worker'],
      'two of each role (frontend, history, matching, internal worker), each its own process',
    );
    assert.equal(new Set(c.processes.map((p) => p.pid)).size, 8);
    const ring = await describeTemporalCluster(c.address, { ca: c.pki.ca, cert: c.pki.admin });
    assert.equal(ring.historyShardCount, 512);
    assert.match(ring.persistenceStore, /^postgres/);
    assert.deepEqual(ring.rings.frontend, c.processes.filter((p) => p.role === 'frontend').map((p) => p.grpcAddress).sort());
    const status = await stackStatus(first);
    assert.ok(status.find((x) => x.component === 'temporal-cluster')?.running, 'stack status: the cluster is whole');

    const stopping = Date.now();
    await stopStack(first);
    process.stdout.write(`# cluster stop: ${((Date.now() - stopping) / 1000).toFixed(1)} s\n`);
    stack = undefined;
    await assertNothingLeft(first);

    stack = await startAndTime();
    loaded = loadConfig(stack.configFile);
    const again = await describeTemporalCluster(cluster().address, { ca: cluster().pki.ca, cert: cluster().pki.admin });
    assert.equal(again.clusterId, ring.clusterId, 'the same cluster, from its database, after the restart');
    process.stdout.write(`# cluster start: ${starts.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(', ')}\n`);
  });

  test('the runbook worker and the CLI work through the load balancer over mTLS; a client without a certificate is refused', async () => {
    const env = loaded.config.environments.sandbox;
    assert.equal(env.temporal.address, cluster().address);
    assert.ok(env.temporal.tls?.clientCert, 'the sandbox environment connects with a client certificate');

    // A deployed worker: the CLI's worker process, over mTLS.
    const worker = startCli(['--config', stack!.configFile, 'worker', '--http-port', '0'], { cwd: stack!.dir });
    deployed.push(worker);
    sandbox = await connectClient(loaded, 'sandbox', env);
    await waitFor('the deployed worker polling', async () => {
      const d = await sandbox.client.workflowService.describeTaskQueue({ namespace: 'default', taskQueue: { name: env.temporal.taskQueues.standard }, taskQueueType: 1 });
      return (d.pollers ?? []).length > 0;
    }, 180_000, 250);

    const smoke = await runCli(['--config', stack!.configFile, '--json', 'smoke'], { cwd: stack!.dir });
    assert.equal(smoke.code, 0, smoke.stderr);
    assert.equal(JSON.parse(smoke.stdout).ok, true);

    // A DR drill of the application's database, run on the cluster (whose own database is another pair).
    // Signed by the operator who starts it, approved by the reviewer (four eyes, as the sandbox's policy asks).
    const { handle, workflowId } = await startDrill(sandbox, { database: 'main', mode: 'failover', failback: true, approvalTimeoutSeconds: 300, signer: operator(stack!) });
    await waitForOpenGate(handle);
    await decideDrill(sandbox, workflowId, 'approve', operator(stack!, 'sandbox-reviewer'), 'cluster test');
    const drill = await awaitDrill(handle, workflowId, false);
    assert.equal(drill.ok, true, drill.error);
    assert.equal(drill.report?.passed, true);

    // Without a client certificate: the TLS handshake succeeds as far as the client can tell, then the server refuses.
    const [host, port] = cluster().address.split(':');
    const refused = await new Promise<string>((resolve) => {
      const s = tlsConnect({ host, port: Number(port), ca: readFileSync(cluster().pki.ca), servername: cluster().serverName, ALPNProtocols: ['h2'] });
      s.once('secureConnect', () => s.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')));
      s.once('data', () => resolve('answered'));
      s.once('error', (err: NodeJS.ErrnoException) => resolve(`refused: ${err.code ?? err.message}`));
      s.once('close', () => resolve('refused: closed'));
    });
    assert.match(refused, /^refused/);
    const anonymous = await Connection.connect({ address: cluster().address, tls: { serverNameOverride: cluster().serverName, serverRootCACertificate: readFileSync(cluster().pki.ca) }, connectTimeout: 5_000 }).then(
      async (conn) => {
        await conn.close();
        return 'connected';
      },
      (err: Error) => err.message,
    );
    assert.notEqual(anonymous, 'connected');
  });

  test('the audit against the cluster passes the Temporal items; against the dev server the same items fail or are unknown, with the reason', async () => {
    // The auditing workers: one per environment, in this process (the deployed CLI worker also serves sandbox).
    for (const environment of ['sandbox', 'ops']) {
      const w = new RunbookWorker({ loaded, environment, httpPort: 0, logger: createLogger('warn') });
      workers.push(w);
      await w.start();
      await w.waitUntilReady(180_000);
    }
    ops = await connectClient(loaded, 'ops', loaded.config.environments.ops);
    const [onCluster, onDev] = await Promise.all([audit(sandbox, 'sandbox'), audit(ops, 'ops')]);

    const passing = ['temporal-version', 'persistence-database', 'db-read-replicas', 'history-shards', 'tls-enabled', 'mtls-configured', 'mtls-enforced', 'tls-certificates', 'min-tls-version', 'client-auth', 'namespace-retention', 'archival-object-storage', 'high-availability', 'visibility-elasticsearch', 'worker-assignment'];
    for (const id of passing) assert.equal(itemOf(onCluster, id).status, 'pass', `${id} on the cluster: ${itemOf(onCluster, id).summary}`);
    assert.match(itemOf(onCluster, 'visibility-elasticsearch').summary, /SQL advanced visibility on PostgreSQL .*temporal_visibility/);
    assert.match(itemOf(onCluster, 'persistence-database').summary, /PostgreSQL 15\.\d+ at 127\.0\.0\.4:\d+\/temporal, schema 1\.\d+, holding this cluster \(512 shards\)/);
    assert.match(itemOf(onCluster, 'db-read-replicas').summary, /Temporal's database temporal has a streaming replica at 127\.0\.0\.5/);
    assert.match(itemOf(onCluster, 'high-availability').summary, /frontend 2, history 2, matching 2, worker 2/);
    assert.match(itemOf(onCluster, 'tls-enabled').summary, /all 8 service hosts; membership gossip over TLS/);
    const pollers = (itemOf(onCluster, 'worker-assignment').evidence.checkQueuePollers as { queues: Record<string, { workflowPollers: string[] }>; auditingWorker: string });
    assert.ok(!pollers.queues.standard.workflowPollers.includes(pollers.auditingWorker), 'the auditing worker does not count itself');
    // What the audit still cannot prove here, named with the reason: no backups yet, no Kubernetes, no monitoring.
    const blocking = new Map(onCluster.blocking.map((b) => [b.id, b.summary]));
    for (const id of ['temporal-version', 'persistence-database', 'tls-enabled', 'mtls-configured', 'mtls-enforced', 'tls-certificates', 'min-tls-version', 'client-auth', 'smoke-tests', 'dr-drills-quarterly']) {
      assert.ok(!blocking.has(id), `${id} does not block: ${blocking.get(id)}`);
    }
    assert.match(blocking.get('backup-strategy') ?? '', /temporal: no complete backup; main: no complete backup/);
    assert.match(blocking.get('no-hardcoded-secrets') ?? '', /no kubernetes: section for environment sandbox/);
    assert.equal(itemOf(onCluster, 'prometheus-configured').status, 'unknown');
    assert.equal(itemOf(onCluster, 'configuration-backups').status, 'fail');
    assert.match(itemOf(onCluster, 'configuration-backups').summary, /no completed verifyTemporalConfig run found/);

    const reasons: Record<string, RegExp> = {
      'persistence-database': /persistence store 'sqlite' is not PostgreSQL/,
      'db-read-replicas': /no temporal.cluster.persistenceDatabase for environment ops/,
      'history-shards': /^1 history shard;/,
      'tls-enabled': /connects to Temporal without TLS/,
      'mtls-configured': /connects to Temporal without TLS/,
      'tls-certificates': /connects to Temporal without TLS/,
      'namespace-retention': /retention 1 days is outside 7-90 days/,
      'archival-object-storage': /history archival is disabled for namespace default/,
      'high-availability': /too few hosts for high availability: frontend 1 \(at least 2\)/,
      'visibility-elasticsearch': /visibility store 'sqlite' is neither Elasticsearch nor SQL advanced visibility/,
      'worker-assignment': /no deployed worker polls: critical, standard, batch/,
    };
    for (const [id, reason] of Object.entries(reasons)) {
      const item = itemOf(onDev, id);
      assert.ok(item.status === 'fail' || item.status === 'unknown', `${id} on the dev server: ${item.status}`);
      assert.match(item.summary, reason, id);
    }
    assert.equal(itemOf(onDev, 'db-read-replicas').status, 'unknown');
  });

  test('a configuration backup of a namespace with schedules and custom search attributes restores to an equal result; a changed retention in the backup is detected', async () => {
    const c = sandbox.client;
    await sandbox.connection.operatorService.addSearchAttributes({ namespace: 'default', searchAttributes: { CustomerTier: 2, OrderCount: 3 } });
    await c.schedule.create({
      scheduleId: 'nightly-report',
      spec: { calendars: [{ hour: 2, minute: 30, dayOfWeek: ['MONDAY', 'THURSDAY'] }], timezone: 'Europe/Berlin', jitter: '5m' },
      action: { type: 'startWorkflow', workflowType: 'smokeTest', taskQueue: 'standard-queue', args: [{ environment: 'sandbox', queue: 'standard' }] },
      policies: { overlap: 'BUFFER_ONE', catchupWindow: '10m' },
      state: { paused: true, note: 'paused for the migration' },
      memo: { owner: 'platform' },
    });
    await c.schedule.create({ scheduleId: 'hourly-ping', spec: { intervals: [{ every: '1h', offset: '7m' }] }, action: { type: 'startWorkflow', workflowType: 'smokeTest', taskQueue: 'standard-queue', args: [{ environment: 'sandbox' }] } });

    const b = await runCli(['--config', stack!.configFile, '--json', 'temporal-config', 'backup'], { cwd: stack!.dir });
    assert.equal(b.code, 0, b.stderr + b.stdout);
    const backup = JSON.parse(b.stdout).result as BackupTemporalConfigResult;
    assert.ok(backup.schedules >= 2 && backup.searchAttributes >= 5, JSON.stringify(backup));

    const v = await runCli(['--config', stack!.configFile, '--json', 'temporal-config', 'verify'], { cwd: stack!.dir });
    const passed = JSON.parse(v.stdout) as { ok: boolean; result: VerifyTemporalConfigResult };
    assert.equal(v.code, 0, v.stdout);
    assert.equal(passed.result.passed, true);
    assert.deepEqual(passed.result.restoredDifferences, []);
    assert.deepEqual(passed.result.liveDifferences, []);
    assert.ok(passed.result.scratchNamespaces.every((s) => s.deleted), 'the scratch namespaces are deleted');
    for (const s of passed.result.scratchNamespaces) {
      await assert.rejects(sandbox.connection.workflowService.describeNamespace({ namespace: s.scratchNamespace }), `${s.scratchNamespace} is gone`);
    }

    // Someone changes the retention in the stored backup: the restore test's comparison finds it.
    const backups = loaded.config.environments.sandbox.backups!;
    const store = new ObjectStore(createS3Client(loaded, backups), backups.bucket);
    const docKey = `${backups.prefix}temporal-config/${backup.backupId}/config.json`;
    const doc = JSON.parse(await store.getText(docKey));
    const ns = doc.namespaces.find((n: { name: string }) => n.name === 'default');
    ns.retentionSeconds = 45 * 86_400;
    await store.putText(docKey, `${JSON.stringify(doc, null, 2)}\n`, 'application/json');
    const changed = await startRunbook(sandbox, 'verifyTemporalConfig', [{ environment: 'sandbox', backupId: backup.backupId }], {});
    const err = await changed.handle.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure && err.cause.type === 'ConfigRestoreTestFailed', String(err));
    const report = (err.cause as ApplicationFailure).details![0] as TemporalConfigRestoreReport;
    assert.deepEqual(report.liveDifferences.map((d) => d.path), ['default.retentionSeconds']);
    assert.equal(report.liveDifferences[0].expected, 45 * 86_400);
    assert.equal(report.liveDifferences[0].found, 30 * 86_400);
    assert.deepEqual(report.restoredDifferences, [], 'the changed backup itself restored faithfully');
    assert.equal(report.integrity?.sha256Matches, false, 'and it no longer matches its manifest');
    assert.ok(report.scratchNamespaces.every((s) => s.deleted));
    assert.ok(existsSync(stack!.configFile));
  });

  test("Temporal's own database is backed up and restore-tested like the app's; a backup from before a schema upgrade fails the schema check", async () => {
    const backup = await runBackup(sandbox, 'temporal', false);
    assert.equal(backup.ok, true, backup.error);
    const verified = await runVerify(sandbox, 'temporal', { mode: 'latest' }, false);
    assert.equal(verified.ok, true, verified.error);
    const schema = verified.result!.checks.find((c) => c.name === 'Temporal schema version');
    assert.equal(schema?.passed, true);
    assert.match(schema!.detail, /^schema 1\.\d+, as the running server's database$/);

    // The servers' schema moves on after the backup (as update-schema does in an upgrade): the old backup no longer matches.
    const db = loaded.config.environments.sandbox.databases.temporal;
    const pg = new PgClient({ host: db.host, port: db.port, user: stack!.temporalCluster!.postgres.superuser, password: superuserPassword(stack!, 'temporal-postgres-password'), database: db.database });
    await pg.connect();
    const { rows } = await pg.query<{ curr_version: string }>("SELECT curr_version FROM schema_version WHERE db_name = 'temporal'");
    // The runbooks read this database as plain roles: the audit's checks role and the backup role.
    const logins = await pg.query<{ rolname: string; rolsuper: boolean }>('SELECT rolname, rolsuper FROM pg_roles WHERE rolname = ANY($1) ORDER BY 1', [[db.user, db.roles.backup!.user, db.roles.checks!.user]]);
    assert.deepEqual(logins.rows, [{ rolname: 'runbook_backup', rolsuper: false }, { rolname: 'runbook_checks', rolsuper: false }]);
    try {
      await pg.query("UPDATE schema_version SET curr_version = '1.99' WHERE db_name = 'temporal'");
      const stale = await runVerify(sandbox, 'temporal', { mode: 'latest' }, false);
      assert.equal(stale.ok, false);
      const check = stale.result!.checks.find((c) => c.name === 'Temporal schema version');
      assert.equal(check?.passed, false);
      assert.equal(check?.detail, `restored schema ${rows[0].curr_version}, the running server's database has 1.99`);
      assert.equal(stale.result!.scratchDropped, true);
    } finally {
      await pg.query('UPDATE schema_version SET curr_version = $1 WHERE db_name = $2', [rows[0].curr_version, 'temporal']);
      await pg.end();
    }
  });

  test("a load test whose approved fault freezes the cluster's persistence database for 3 s: the backlog drains after it, every start completes or fails visibly, and the verdict says which", async () => {
    // An environment of its own (its own task queues) on the same cluster, with the loadTest block.
    const doc = parse(readFileSync(stack!.configFile, 'utf8'));
    const lab = JSON.parse(JSON.stringify(doc.environments.sandbox));
    lab.temporal.taskQueues = { critical: 'lab-critical', standard: 'lab-standard', batch: 'lab-batch' };
    const pg = cluster().postgres.pid;
    lab.loadTest = {
      scenario: 'noop',
      baselineRate: 4,
      peakMultiplier: 2,
      phaseDuration: '5s',
      // The postmaster first (no new backends), then every backend (each is a session of its own).
      failure: { mode: 'command', target: `the cluster's persistence database (PostgreSQL postmaster ${pg} and its backends) frozen`, outage: '3s', inject: ['sh', '-c', `kill -STOP ${pg}; pkill -STOP -P ${pg}`], recover: ['sh', '-c', `pkill -CONT -P ${pg}; kill -CONT ${pg}`] },
      sla: { p99StartToComplete: '5s', maxErrorRate: 0, drainWithin: '10s' },
    };
    doc.environments = { ...doc.environments, lab };
    doc.schedules = [];
    const file = join(stack!.dir, 'loadlab.yaml');
    writeFileSync(file, stringify(doc), { mode: 0o600 });
    const labLoaded = loadConfig(file);
    const batch = new RunbookWorker({ loaded: labLoaded, environment: 'lab', queues: ['batch'], httpPort: 0, logger: createLogger('warn') });
    const generator = new RunbookWorker({ loaded: labLoaded, environment: 'lab', queues: [], loadGenerator: true, httpPort: 0, logger: createLogger('warn') });
    workers.push(batch, generator);
    await Promise.all([batch.start(), generator.start()]);
    await Promise.all([batch.waitUntilReady(), generator.waitUntilReady()]);
    const c = await connectClient(labLoaded, 'lab', labLoaded.config.environments.lab);
    try {
      const { handle } = await startRunbook(c, 'loadTest', [{ environment: 'lab' }], {});
      await waitForOpenGate(handle, 60_000);
      await decideGate(c, handle, 'loadTest', 'approve', operator(stack!, 'sandbox-reviewer'), 'cluster load test');
      const result = (await handle.result()) as LoadTestResult;
      const failure = result.phases.find((p) => p.phase === 'failure')!;
      assert.equal(result.approval?.by, 'sandbox-reviewer');
      assert.equal(failure.figures.fault?.recoverError, undefined);
      assert.ok(failure.figures.fault!.downMs >= 3_000);
      // Nothing is left hanging: every workflow started completed or failed visibly, with its error.
      assert.equal(failure.figures.unfinished, 0);
      assert.equal(failure.figures.completed + failure.figures.failed, failure.figures.started);
      assert.equal(failure.figures.errors.reduce((n, e) => n + e.count, 0), failure.figures.failed);
      assert.ok(failure.figures.backlog! > 0);
      assert.ok(typeof failure.figures.drainMs === 'number', `the backlog drained: ${failure.figures.drainMs}`);
      assert.ok(failure.figures.startToCompleteMs.max >= 2_000, `workflows waited for the database: max ${failure.figures.startToCompleteMs.max} ms`);
      // A stalled database can make the frontend refuse a start (seen: "Namespace not found"): the run then fails, saying so.
      for (const p of result.phases.filter((x) => x.phase !== 'failure')) assert.equal(p.verdict.held, true, `${p.phase}: ${JSON.stringify(p.verdict)}`);
      assert.equal(result.passed, failure.figures.failed === 0 && failure.figures.drainMs! <= 10_000, result.reasons.join('; '));
      if (failure.figures.failed > 0) assert.match(result.reasons.join('\n'), new RegExp(`failure phase: ${failure.figures.failed} failed and 0 unfinished of ${failure.figures.started}; nothing may be lost`));
      process.stdout.write(`# cluster load test: database frozen ${failure.figures.fault!.downMs} ms, backlog ${failure.figures.backlog} drained in ${failure.figures.drainMs} ms, failure-phase p99 ${failure.figures.startToCompleteMs.p99} ms, ${failure.figures.failed} failed ${JSON.stringify(failure.figures.errors)}\n`);
    } finally {
      await c.close();
    }
  });

  test('one frontend killed: the load balancer keeps clients working, and the audit reports the loss', async () => {
    const victim = cluster().processes.find((p) => p.role === 'frontend')!;
    await stopService(victim.pid, 'SIGKILL', 5_000);
    assert.equal(groupAlive(victim.pid), false);

    // A new connection (the CLI) and the long-lived ones (this client, the deployed worker) keep working through the survivor.
    const smoke = await runCli(['--config', stack!.configFile, '--json', 'smoke', '--queue', 'critical'], { cwd: stack!.dir });
    assert.equal(smoke.code, 0, smoke.stderr);
    const again = await runSmokeTest(sandbox, { queue: 'batch' });
    assert.equal(again.ok, true, again.error);
    await waitFor('the ring to drop the killed frontend', async () => {
      const d = await describeTemporalCluster(cluster().address, { ca: cluster().pki.ca, cert: cluster().pki.admin });
      return !d.rings.frontend.includes(victim.grpcAddress);
    }, 60_000, 500);
    const r = await audit(sandbox, 'sandbox');
    const ha = itemOf(r, 'high-availability');
    assert.equal(ha.status, 'fail');
    assert.match(ha.summary, /frontend 1 \(at least 2\)/);
    const status = await stackStatus(stack!);
    assert.equal(status.find((x) => x.component === 'temporal-cluster')?.running, false, 'stack status reports the cluster incomplete');
  });

  test('stack down stops it again, leaving nothing', async () => {
    await sandbox?.close();
    await ops?.close();
    for (const w of workers.splice(0)) await w.shutdown();
    for (const d of deployed) {
      d.child.kill('SIGTERM');
      await d.exited;
    }
    const s = stack!;
    const down = await runCli(['stack', 'down', '--dir', s.dir], { cwd: dir });
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /temporal-cluster/);
    stack = undefined;
    await assertNothingLeft(s);
  });
});
