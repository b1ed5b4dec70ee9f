import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { WorkflowFailedError, WorkflowHandle } from '@temporalio/client';
import { Client as PgClient } from 'pg';
import { parse, stringify } from 'yaml';
import { connectClient, ConnectedClient } from '../../src/cli/client';
import { decideRelease, startRelease } from '../../src/cli/release';
import { runPlan } from '../../src/cli/plan';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import type { ReleaseReport } from '../../src/reports/release';
import { seedSampleDatabase } from '../../src/sandbox/seed';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { freePort } from '../../src/system/process';
import { gatesQuery } from '../../src/workflows/lib/gate';
import { timelineQuery } from '../../src/workflows/lib/timeline';
import { ReleaseResult, releaseStatusQuery } from '../../src/workflows/release';
import { httpStatus, operator, runCli, startCli, waitFor, superuserPassword } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-release-test-'));
chmodSync(dir, 0o755);
let stack: StackState;
let loaded: LoadedConfig;
let configFile: string;
let c: ConnectedClient;
let apps: k8s.AppsV1Api;
let core: k8s.CoreV1Api;
let batch: k8s.BatchV1Api;
let dbPassword: string;
const workers: ReturnType<typeof startCli>[] = [];

const psql = (sql: string) => ['psql', '-v', 'ON_ERROR_STOP=1', '-c', sql];

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 's3', 'kubernetes'] });
  const doc = parse(readFileSync(stack.configFile, 'utf8'));
  const env = doc.environments.sandbox;
  env.releases = {
    // A schema change with its way back: a failed release runs the down Job.
    shop: {
      database: 'main',
      container: 'app',
      migration: { command: psql("ALTER TABLE orders ADD COLUMN discount numeric; INSERT INTO release_log(note) VALUES ('shop up')"), timeout: '2m' },
      down: { command: psql("ALTER TABLE orders DROP COLUMN discount; INSERT INTO release_log(note) VALUES ('shop down')"), timeout: '2m' },
      onFailure: 'down-migration',
    },
    // A data migration with no way back but the backup: a failed release restores it, after a signed approval.
    cart: {
      database: 'main',
      container: 'app',
      migration: { command: psql("UPDATE customers SET name = 'migrated'; ALTER TABLE orders ADD COLUMN cart_id bigint"), timeout: '2m' },
      onFailure: 'restore',
      restoreTest: true,
    },
    // A slow migration, to kill the worker in the middle of it.
    web: {
      database: 'main',
      container: 'app',
      migration: { command: ['sh', '-c', "echo migrating web; psql -v ON_ERROR_STOP=1 -c \"SELECT pg_sleep(12); INSERT INTO release_log(note) VALUES ('web up')\""], timeout: '2m' },
      onFailure: 'forward-fix',
    },
  };
  doc.schedules = [];
  configFile = join(stack.dir, 'release.yaml');
  writeFileSync(configFile, stringify(doc));
  loaded = loadConfig(configFile);
  dbPassword = superuserPassword(stack);
  const pg = await db();
  try {
    await seedSampleDatabase(pg, { rows: 500 });
    await pg.query('CREATE TABLE release_log (id serial PRIMARY KEY, note text NOT NULL, at timestamptz NOT NULL DEFAULT now())');
  } finally {
    await pg.end();
  }
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(stack.kubernetes!.kubeconfig);
  apps = kc.makeApiClient(k8s.AppsV1Api);
  core = kc.makeApiClient(k8s.CoreV1Api);
  batch = kc.makeApiClient(k8s.BatchV1Api);
  // The application's database credentials, as a Secret its pods (and its migration Jobs) read.
  await core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'app-db' }, stringData: { password: dbPassword } } });
  await startWorker();
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
});

after(async () => {
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
  await c?.close();
  if (stack) await stopStack(stack);
  if (!process.env.RUNBOOK_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
});

async function db(): Promise<PgClient> {
  const pg = new PgClient({ host: stack.postgres!.host, port: stack.postgres!.port, user: stack.postgres!.superuser, password: dbPassword, database: 'app' });
  await pg.connect();
  return pg;
}

async function query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
  const pg = await db();
  try {
    return (await pg.query(sql, params)).rows as T[];
  } finally {
    await pg.end();
  }
}

const columns = async (table: string) => (await query<{ column_name: string }>("SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY 1", [table])).map((r) => r.column_name);

async function startWorker(): Promise<ReturnType<typeof startCli>> {
  const port = await freePort();
  const w = startCli(['--config', configFile, 'worker', '--http-port', String(port)]);
  workers.push(w);
  await waitFor('worker ready', async () => (await httpStatus(`http://127.0.0.1:${port}/ready`)).status === 200, 180_000, 250);
  return w;
}

/** The application: its container reaches PostgreSQL through the environment, the password from the Secret. */
async function createApp(name: string, image: string): Promise<void> {
  await apps.createNamespacedDeployment({
    namespace: 'default',
    body: {
      metadata: { name, labels: { app: name } },
      spec: {
        replicas: 2,
        // A release whose pods never become ready is found out in seconds, not minutes.
        progressDeadlineSeconds: 6,
        selector: { matchLabels: { app: name } },
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
        template: {
          metadata: { labels: { app: name } },
          spec: {
            containers: [
              {
                name: 'app',
                image,
                env: [
                  { name: 'PGHOST', value: stack.postgres!.host },
                  { name: 'PGPORT', value: String(stack.postgres!.port) },
                  { name: 'PGUSER', value: stack.postgres!.superuser },
                  { name: 'PGDATABASE', value: 'app' },
                  { name: 'PGPASSWORD', valueFrom: { secretKeyRef: { name: 'app-db', key: 'password' } } },
                ],
              },
            ],
          },
        },
      },
    },
  });
  await waitFor(`${name} available`, async () => (await apps.readNamespacedDeployment({ name, namespace: 'default' })).status?.availableReplicas === 2, 60_000, 250);
}

const image = async (name: string) => (await apps.readNamespacedDeployment({ name, namespace: 'default' })).spec?.template.spec?.containers[0].image;
const requester = () => operator(stack);
const reviewer = () => operator(stack, 'sandbox-reviewer');

async function atGate(handle: WorkflowHandle, name: RegExp): Promise<void> {
  await waitFor(`gate ${name}`, async () => (await handle.query(gatesQuery)).some((g) => g.outcome === 'waiting' && name.test(g.name)), 120_000, 250);
}

function failedReport(err: unknown): ReleaseReport & { reportKeys: string[] } {
  assert.ok(err instanceof WorkflowFailedError, `expected a failed release, got ${String(err)}`);
  return (err.cause as { details?: unknown[] }).details?.[0] as ReleaseReport & { reportKeys: string[] };
}

describe('release: backup, migration, canary, compensation in one run', () => {
  test('new pods that fail readiness after the migration: the Deployment is rolled back and the down-migration Job runs, the schema back as it was', async () => {
    await createApp('shop', 'registry.sandbox.test/shop:1.0');
    assert.deepEqual(await columns('orders'), ['amount', 'customer_id', 'id', 'note', 'padding', 'placed_at'], 'the schema before the release');

    // Its plan first: the backup, the approval, the migration Job as it would be created, the rollout; nothing happens.
    const world = async () => ({
      deployments: (await apps.listNamespacedDeployment({ namespace: 'default' })).items.map((d) => [d.metadata?.name, d.metadata?.generation, d.spec?.template.spec?.containers[0].image]),
      jobs: (await batch.listNamespacedJob({ namespace: 'default' })).items.map((j) => j.metadata?.name),
      columns: await columns('orders'),
      log: await query('SELECT * FROM release_log').catch(() => 'no release_log'),
    });
    const before = await world();
    const plan = await runPlan(c, 'release', { environment: 'sandbox', deployment: 'shop', image: 'registry.sandbox.test/shop:2.0-bad', steps: [{ setWeight: 50 }, { pause: { durationSeconds: 1 } }], healthTimeoutSeconds: 60 });
    assert.equal(plan.ok, true, plan.problems.join('; '));
    assert.deepEqual(plan.steps.filter((st) => !st.name.startsWith('notify')).map((st) => st.name), ['preflight', 'backup', 'restore test', 'approval', 'migrate', 'rollout', 'watch window', 'write report']);
    const planned = plan.steps.flatMap((st) => st.planned);
    assert.ok(planned.some((x) => x.kind === 'gate' && /sandbox-reviewer/.test(x.what)), JSON.stringify(planned.map((x) => x.what)));
    const job = planned.find((x) => x.by === 'startJob');
    assert.ok(job && JSON.stringify(job.detail).includes('registry.sandbox.test/shop:2.0-bad') && JSON.stringify(job.detail).includes('ALTER TABLE'), JSON.stringify(job?.detail));
    assert.deepEqual(plan.children.map((ch) => [ch.runbook, ch.ok]), [['backupDatabase', true], ['rollout', true]]);
    assert.deepEqual(await world(), before, 'the plan changed nothing');

    const { handle } = await startRelease(c, { environment: 'sandbox', deployment: 'shop', image: 'registry.sandbox.test/shop:2.0-bad', steps: [{ setWeight: 50 }, { pause: { durationSeconds: 1 } }], healthTimeoutSeconds: 60 }, requester());
    await atGate(handle, /^release registry.sandbox.test\/shop:2.0-bad to shop, migrating main$/);
    // The requester may not approve their own release (four-eyes): the reviewer does.
    await assert.rejects(decideRelease(c, handle, 'approve', requester()), /four-eyes: sandbox-operator requested this run and may not approve it/);
    await decideRelease(c, handle, 'approve', reviewer(), 'schema change reviewed');
    // The migration ran for real: the column exists while the canary is tried.
    await waitFor('the migration applied', async () => (await columns('orders')).includes('discount'), 60_000, 250);
    const report = await handle.result().then(() => assert.fail('the release should have failed'), failedReport);

    assert.equal(report.outcome, 'rolled back');
    assert.match(report.reason ?? '', /the rollout ended rolled back: .*(progress deadline|keep restarting)/);
    assert.equal(await image('shop'), 'registry.sandbox.test/shop:1.0');
    await assert.rejects(apps.readNamespacedDeployment({ name: 'shop-canary', namespace: 'default' }));
    assert.deepEqual(await columns('orders'), ['amount', 'customer_id', 'id', 'note', 'padding', 'placed_at'], 'the down-migration took the column away again');
    assert.deepEqual((await query<{ note: string }>('SELECT note FROM release_log ORDER BY id')).map((r) => r.note), ['shop up', 'shop down']);

    // One timeline, every part linked: backup, migration with its log, the rollout and its rollback, the down Job.
    assert.match(report.backup!.backupId, /^\d{8}T\d{6}Z-/);
    assert.equal(report.approval?.by, 'sandbox-reviewer');
    assert.equal(report.migration?.succeeded, true);
    assert.equal(report.migration?.exitCode, 0);
    assert.match(report.migration!.logTail, /ALTER TABLE\s+INSERT 0 1/);
    assert.equal(report.migration?.logSource, 'termination message');
    assert.equal(report.rollout?.workflowId, 'rollout-sandbox-shop');
    assert.equal(report.rollout?.outcome, 'rolled back');
    assert.equal(report.compensation?.rollback?.by, 'the rollout');
    assert.match(report.compensation!.rollback!.workflowId, /^rollout-sandbox-shop-rollback-/);
    assert.equal(report.compensation?.downMigration?.succeeded, true);
    assert.match(report.compensation!.downMigration!.logTail, /ALTER TABLE/);
    assert.equal(report.compensation?.database, 'migrated back');
    assert.deepEqual(
      report.steps.filter((s) => !s.name.startsWith('notify')).map((s) => [s.name, s.outcome]),
      [
        ['preflight', 'succeeded'],
        ['backup', 'succeeded'],
        ['restore test', 'skipped'],
        ['approval', 'succeeded'],
        ['migrate', 'succeeded'],
        ['rollout', 'failed'],
        ['compensate: down-migration', 'succeeded'],
      ],
    );
    // The two Jobs really ran in the cluster and are kept for the record.
    const jobs = await batch.listNamespacedJob({ namespace: 'default', labelSelector: `runbook.dev/release=${report.releaseId}` });
    assert.deepEqual(jobs.items.map((j) => [j.metadata?.labels?.['runbook.dev/job'], j.status?.succeeded]).sort(), [['down-migration', 1], ['migration', 1]]);
    assert.ok(report.reportKeys.some((k) => k.endsWith(`releases/${report.releaseId}/report.md`)));
    assert.ok(report.reportKeys.some((k) => k.endsWith(`releases/${report.releaseId}/report.html`)), 'and its page');
  });

  test('with the restore policy, the database is back to the pre-release backup after a signed approval, the discarded state kept aside', async () => {
    await createApp('cart', 'registry.sandbox.test/cart:1.0');
    const before = await query<{ n: string; names: string }>("SELECT count(*)::text AS n, string_agg(name, ',' ORDER BY id) AS names FROM customers");
    const { handle } = await startRelease(c, { environment: 'sandbox', deployment: 'cart', image: 'registry.sandbox.test/cart:2.0-bad', steps: [{ setWeight: 50 }], healthTimeoutSeconds: 60 }, requester());
    await atGate(handle, /^release /);
    await decideRelease(c, handle, 'approve', reviewer());
    await atGate(handle, /^restore main to backup \S+, discarding writes since$/);
    // Written after the backup: the restore discards it (and keeps it in the database put aside).
    await query("INSERT INTO release_log(note) VALUES ('written during the release')");
    assert.deepEqual(await columns('orders').then((c) => c.includes('cart_id')), true, 'migrated while the restore waits for approval');
    const tl = await handle.query(timelineQuery);
    assert.equal(tl.steps.find((s) => s.name === 'restore test')?.outcome, 'succeeded', 'the fresh backup was restore-tested before the migration');
    await decideRelease(c, handle, 'approve', reviewer(), 'restore: writes since the backup are discarded');
    const report = await handle.result().then(() => assert.fail('the release should have failed'), failedReport);

    assert.equal(report.outcome, 'rolled back');
    assert.equal(report.compensation?.database, 'restored from the backup');
    assert.equal(report.compensation?.restore?.gate.by, 'sandbox-reviewer');
    assert.match(report.compensation!.restore!.keptAside!, /^app_before_[a-z0-9]{6}$/);
    assert.equal(await image('cart'), 'registry.sandbox.test/cart:1.0');
    assert.deepEqual(await query<{ n: string; names: string }>("SELECT count(*)::text AS n, string_agg(name, ',' ORDER BY id) AS names FROM customers"), before, 'customers as they were before the migration');
    assert.ok(!(await columns('orders')).includes('cart_id'), 'the new column is gone');
    assert.deepEqual((await query<{ note: string }>('SELECT note FROM release_log ORDER BY id')).map((r) => r.note), ['shop up', 'shop down'], 'the write made after the backup is discarded');
    const aside = await query<{ datname: string; datallowconn: boolean }>('SELECT datname, datallowconn FROM pg_database WHERE datname = $1', [report.compensation!.restore!.keptAside]);
    assert.deepEqual(aside, [{ datname: report.compensation!.restore!.keptAside, datallowconn: false }], 'the database as it was is kept aside, closed');
  });

  test('a release whose worker is killed during the migration Job resumes without running the Job twice', async () => {
    await createApp('web', 'registry.sandbox.test/web:1.0');
    const env = { RUNBOOK_SIGNING_KEY: requester().keyFile };
    const start = await runCli(['--config', configFile, 'release', 'start', 'web', '--image', 'registry.sandbox.test/web:1.1', '--steps', '50,pause:1s'], { env });
    assert.equal(start.code, 0, start.stderr);
    assert.equal(start.stdout.trim(), 'release-sandbox-web');
    const handle = c.client.workflow.getHandle('release-sandbox-web');
    await atGate(handle, /^release /);
    const approve = await runCli(['--config', configFile, 'release', 'approve', 'web', '--comment', 'go'], { env: { RUNBOOK_SIGNING_KEY: reviewer().keyFile } });
    assert.equal(approve.code, 0, approve.stderr);
    // The Job's command is running (its pod Running), the worker waits for it: kill the worker there.
    await waitFor('the migration pod running', async () => {
      const pods = await core.listNamespacedPod({ namespace: 'default', labelSelector: 'runbook.dev/job=migration' });
      return pods.items.some((p) => p.metadata?.labels?.['batch.kubernetes.io/job-name']?.startsWith('web-migrate-') && p.status?.phase === 'Running');
    }, 90_000, 100);
    // The status query answers at once (the CLI's start-up could outlast the migration on a loaded machine).
    assert.equal((await handle.query(releaseStatusQuery)).phase, 'migration');
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
    await startWorker();

    const r = (await handle.result()) as ReleaseResult;
    assert.equal(r.outcome, 'released');
    assert.equal(await image('web'), 'registry.sandbox.test/web:1.1');
    assert.equal((await query("SELECT count(*)::int AS n FROM release_log WHERE note = 'web up'"))[0].n, 1, 'the migration ran once');
    const jobs = await batch.listNamespacedJob({ namespace: 'default', labelSelector: `runbook.dev/release=${r.releaseId}` });
    assert.equal(jobs.items.length, 1);
    const pods = await core.listNamespacedPod({ namespace: 'default', labelSelector: `batch.kubernetes.io/job-name=${jobs.items[0].metadata!.name}` });
    assert.equal(pods.items.length, 1, 'one pod: the Job was not retried');
    const runs = readFileSync(join(stack.kubernetes!.logDir, 'job-runner.log'), 'utf8').split('\n').filter((l) => l.includes(`running default/${pods.items[0].metadata!.name}`));
    assert.equal(runs.length, 1, 'the command ran once');
    assert.match(r.migration!.logTail, /migrating web/);
    const scheduled: Record<string, number> = {};
    for (const e of (await handle.fetchHistory()).events ?? []) {
      const type = e.activityTaskScheduledEventAttributes?.activityType?.name;
      if (type) scheduled[type] = (scheduled[type] ?? 0) + 1;
    }
    assert.equal(scheduled.startJob, 1);
    assert.equal(scheduled.waitForJob, 1);
    const shown = await runCli(['--config', configFile, 'release', 'status', 'web']);
    assert.equal(shown.code, 0, shown.stdout + shown.stderr);
    assert.match(shown.stdout, /phase done: released/);
    assert.match(shown.stdout, /migration\s+Job web-migrate-\S+: succeeded/);
    // The same, for scripts: the workflow's state and its status as JSON, exit 0 for a release that succeeded.
    const json = await runCli(['--config', configFile, '--json', 'release', 'status', 'web']);
    assert.equal(json.code, 0, json.stdout + json.stderr);
    const parsed = JSON.parse(json.stdout) as { ok: boolean; workflowId: string; state: string; status: { phase: string; outcome: string } };
    assert.deepEqual([parsed.ok, parsed.workflowId, parsed.state, parsed.status.phase, parsed.status.outcome], [true, 'release-sandbox-web', 'COMPLETED', 'done', 'released']);
  });

  test('bad release input and config are refused, naming the field', async () => {
    const cases: [string[], RegExp][] = [
      [['release', 'start', 'shop'], /required option '--image <image>' not specified/],
      [['release', 'start', 'shop', '--image', 'no-tag'], /image: expected an image reference with a tag or digest/],
      [['release', 'start', 'Shop!', '--image', 'r/shop:2'], /DEPLOYMENT: expected a Deployment name/],
      [['release', 'start', 'shop', '--image', 'r/shop:2', '--steps', '50,compare'], /steps\[1\]\.compare: an empty comparison uses the rollout's comparison, but none is given/],
      [['release', 'status', 'nothing'], /no release of nothing in environment sandbox/],
    ];
    for (const [args, says] of cases) {
      const r = await runCli(['--config', configFile, ...args], { env: { RUNBOOK_SIGNING_KEY: requester().keyFile } });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, says);
    }
    const doc = parse(readFileSync(configFile, 'utf8'));
    doc.environments.sandbox.releases.shop.onFailure = 'down-migration';
    delete doc.environments.sandbox.releases.shop.down;
    doc.environments.sandbox.releases.cart.database = 'nosuch';
    const bad = join(stack.dir, 'bad-release.yaml');
    writeFileSync(bad, stringify(doc));
    const check = await runCli(['config', 'check', '--no-secrets', bad]);
    assert.equal(check.code, 2);
    assert.match(check.stderr, /releases\.shop\.down: onFailure: down-migration needs the down Job/);
    assert.match(check.stderr, /releases\.cart\.database: names database 'nosuch', which is not defined under databases/);
    // A release of a Deployment the config has no release for stops before anything changes.
    const { handle } = await startRelease(c, { environment: 'sandbox', deployment: 'nothing', image: 'r/nothing:1' }, requester());
    await assert.rejects(handle.result(), (err: Error & { cause?: Error }) => /has no releases\.nothing/.test(err.cause?.message ?? ''));
  });
});
