import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { ListBucketsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { WorkflowFailedError, WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { defineSignal } from '@temporalio/workflow';
import { Client as PgClient } from 'pg';
import { parse, stringify } from 'yaml';
import { connectPg, listTables, tableStats } from '../../src/activities/pg';
import { ConnectedClient, connectClient } from '../../src/cli/client';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { findBinary, freePort } from '../../src/system/process';
import { seedSampleDatabase } from '../../src/sandbox/seed';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { RUNBOOK_DEFAULT_QUEUE } from '../../src/workflows/catalog';
import { decideUpdate, gatesQuery, GateRecord } from '../../src/workflows/lib/gate';
import { signedDecision } from '../../src/cli/sign';
import { CLI_CASES, CliCase, CONFIG_CASES, configWith, fieldOf, GATE_CASES, WORKFLOW_CASES, WorkflowCase } from '../fixtures/bad-input/corpus';
import { CliResult, httpStatus, runCli, startCli, waitFor, operator, superuserPassword } from '../helpers';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'runbook-bad-input-'));
chmodSync(dir, 0o755);
let stack: StackState;
let loaded: LoadedConfig;
let c: ConnectedClient;
let worker: ReturnType<typeof startCli>;
let workerHttp: string;
let gated: WorkflowHandle;
let baseline: SystemsState;
const password = () => superuserPassword(stack);

/** Runs jobs at most `limit` at a time (the CLI is a node process each; two cores are shared with the stack). */
function pool<T>(limit: number): (job: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (job) => {
    if (running >= limit) await new Promise<void>((r) => waiting.push(r));
    running++;
    try {
      return await job();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}

interface SystemsState {
  databases: string[];
  roles: string[];
  tables: string[];
  buckets: string[];
  objects: string[];
  zone: string[];
  schedules: string[];
}

/** Everything the corpus could have changed: databases, roles and sample data, the bucket, the DNS zone, Temporal schedules. */
async function systemsState(): Promise<SystemsState> {
  const server = { host: stack.postgres!.host, port: stack.postgres!.port, user: 'postgres', password: password() };
  const admin = await connectPg(server, 'postgres', 'bad-input-test');
  const app = await connectPg(server, 'app', 'bad-input-test');
  const s3 = new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey } });
  try {
    const databases = (await admin.query<{ datname: string }>('SELECT datname FROM pg_database ORDER BY 1')).rows.map((r) => r.datname);
    const roles = (await admin.query<{ rolname: string }>('SELECT rolname FROM pg_roles ORDER BY 1')).rows.map((r) => r.rolname);
    const tables: string[] = [];
    for (const t of await listTables(app)) {
      const s = await tableStats(app, t);
      tables.push(`${s.schema}.${s.name} rows=${s.rows} checksum=${s.checksum}`);
    }
    const buckets = ((await s3.send(new ListBucketsCommand({}))).Buckets ?? []).map((b) => b.Name!).sort();
    const objects: string[] = [];
    for (const bucket of buckets) {
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
      for (const o of listed.Contents ?? []) objects.push(`${bucket}/${o.Key} ${o.ETag} ${o.Size}`);
    }
    // A zone transfer signed with the update key: every record and the SOA serial, which any update bumps.
    const dns = stack.dns!;
    const axfr = await run(findBinary('dig', { hint: 'Install bind9-dnsutils (scripts/bootstrap does).' }), [
      `@${dns.host}`, '-p', String(dns.port), '-y', `hmac-sha256:${dns.tsigKeyName}:${dns.tsigSecret}`, dns.zone, 'AXFR', '+nocmd', '+nostats', '+nocomments',
    ]);
    const zone = axfr.stdout.split('\n').filter((l) => l.trim() && !l.startsWith(';') && !/\sTSIG\s/.test(l)).map((l) => l.replace(/\s+/g, ' ').trim()).sort();
    const schedules: string[] = [];
    for await (const s of c.client.schedule.list()) schedules.push(s.scheduleId);
    return { databases, roles, tables, buckets, objects, zone: [...new Set(zone)], schedules: schedules.sort() };
  } finally {
    s3.destroy();
    await Promise.all([admin.end(), app.end()]);
  }
}

// Config files need nothing running: their checks through the CLI start while the stack comes up.
const cliPool = pool<CliResult>(3);
const configChecks = new Map<string, Promise<CliResult>>();
function startConfigChecks(): void {
  CONFIG_CASES.forEach((k, i) => {
    const file = join(dir, `config-${i}.yaml`);
    writeFileSync(file, configWith(k));
    const result = cliPool(() => runCli(['config', 'check', file, '--no-secrets']));
    result.catch(() => undefined);
    configChecks.set(k.name, result);
  });
}

before(async () => {
  startConfigChecks();
  // Without WAL archiving: every object of every bucket is compared, and archiving adds segments on its own.
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 'replica', 's3', 'dns'] });
  loaded = loadConfig(stack.configFile);
  const seed = new PgClient({ host: stack.postgres!.host, port: stack.postgres!.port, user: 'postgres', password: password(), database: 'app' });
  await seed.connect();
  await seedSampleDatabase(seed, { rows: 2_000 });
  await seed.end();

  const httpPort = await freePort();
  workerHttp = `http://127.0.0.1:${httpPort}`;
  worker = startCli(['--config', stack.configFile, 'worker', '--http-port', String(httpPort)], { env: { RUNBOOK_SHUTDOWN_GRACE_TIME: '2s' } });
  await waitFor('the worker to be ready', async () => (await httpStatus(`${workerHttp}/ready`)).status === 200, 180_000, 250);
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);

  // The drill every signal and update case is sent to, waiting at its approval gate.
  gated = await c.client.workflow.start('drDrill', {
    taskQueue: loaded.config.environments.sandbox.temporal.taskQueues.critical,
    workflowId: `bad-input-gated-drill-${Date.now()}`,
    args: [{ environment: 'sandbox', database: 'main', mode: 'failover', approvalTimeoutSeconds: 3600 }],
  });
  await waitFor('the approval gate to open', async () => (await gated.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 60_000, 100);
  baseline = await systemsState();
  // The command-line and workflow cases run side by side; the gate cases, which watch the drill's state, one by one later.
  startCliCases();
  startWorkflowCases();
});

after(async () => {
  await gated?.terminate('bad-input suite finished').catch(() => undefined);
  await c?.close();
  if (worker && worker.child.exitCode === null) {
    worker.child.kill('SIGTERM');
    await worker.exited;
  }
  if (stack) await stopStack(stack);
  if (!process.env.RUNBOOK_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
});

describe('bad config files are refused by runbook config check: exit 2, the field named, no stack trace', () => {
  for (const k of CONFIG_CASES) {
    test(`${fieldOf(k)}: ${k.name}`, async () => {
      const res = await configChecks.get(k.name)!;
      assert.equal(res.code, 2, `exit code (stdout ${res.stdout.slice(0, 500)}, stderr ${res.stderr.slice(0, 500)})`);
      const line = res.stderr.split('\n').find((l) => l.includes(`: ${fieldOf(k)}: `));
      assert.ok(line, `stderr names ${fieldOf(k)}: ${res.stderr.slice(0, 1000)}`);
      assert.match(line, k.says);
      assert.match(line, /config-\d+\.yaml:\d+: /, 'the file and line are named');
      assert.doesNotMatch(res.stderr, /\n\s+at /, 'no stack trace');
      assert.equal(res.stdout, '');
    });
  }
});

const cliResults = new Map<string, Promise<CliResult>>();
function startCliCases(): void {
  const bad = parse(readFileSync(stack.configFile, 'utf8'));
  bad.schedules[0].input.database = 'main; DROP DATABASE app';
  const badScheduleConfig = join(dir, 'bad-schedule.yaml');
  writeFileSync(badScheduleConfig, stringify(bad));
  const argsOf = (k: CliCase) => k.args.map((a) => a.replace('{config}', stack.configFile).replace('{gated}', gated.workflowId).replace('{badScheduleConfig}', badScheduleConfig));
  for (const k of CLI_CASES) {
    const result = cliPool(() => runCli(argsOf(k)));
    result.catch(() => undefined);
    cliResults.set(k.name, result);
  }
}

describe('bad command-line arguments are refused: exit 2, the option named, no stack trace, nothing started', () => {
  for (const k of CLI_CASES) {
    test(`${k.field}: ${k.name}`, async () => {
      const res = await cliResults.get(k.name)!;
      assert.equal(res.code, k.exitCode, `exit code (stdout ${res.stdout.slice(0, 500)}, stderr ${res.stderr.slice(0, 500)})`);
      assert.ok(res.stderr.includes(k.field), `stderr names ${k.field}: ${res.stderr.slice(0, 1000)}`);
      if (k.says) assert.match(res.stderr, k.says);
      assert.doesNotMatch(res.stderr, /\n\s+at /, 'no stack trace');
      assert.ok(res.stderr.length < 5_000, `the message stays readable (${res.stderr.length} characters)`);
    });
  }
});

/** The ApplicationFailure at the root of a failed run (the workflow's own, or an activity's). */
function rootApplicationFailure(err: unknown): ApplicationFailure | undefined {
  let found: ApplicationFailure | undefined;
  for (let e: unknown = err; e instanceof Error; e = (e as Error & { cause?: unknown }).cause) if (e instanceof ApplicationFailure) found = e;
  return found;
}

const workflowOutcomes = new Map<string, Promise<{ handle: WorkflowHandle; err: unknown }>>();
function startWorkflowCases(): void {
  const queues = loaded.config.environments.sandbox.temporal.taskQueues;
  WORKFLOW_CASES.forEach((k: WorkflowCase, i) => {
    const outcome = (async () => {
      const handle = await c.client.workflow.start(k.runbook, { taskQueue: queues[RUNBOOK_DEFAULT_QUEUE[k.runbook]], workflowId: `bad-input-${i}-${Date.now()}`, args: [k.input] });
      const err = await handle.result().then(() => undefined, (e: unknown) => e);
      return { handle, err };
    })();
    outcome.catch(() => undefined);
    workflowOutcomes.set(k.name, outcome);
  });
}

/** Activities that read and change nothing: the only ones a refused input may have reached. */
const READ_ONLY_ACTIVITIES = new Set(['smokeCheck', 'describeGatePolicy', 'describeDrillTarget', 'describeTargetPolicy', 'preflightBackupTarget', 'listBackups', 'describeDeployment', 'planLoadTest']);

describe('bad workflow inputs fail the run at once on the real worker: InvalidInput, non-retryable, the field named', () => {
  for (const k of WORKFLOW_CASES) {
    test(`${k.runbook} ${k.field}: ${k.name}`, async () => {
      const { handle, err } = await workflowOutcomes.get(k.name)!;
      assert.ok(err instanceof WorkflowFailedError, `the run failed (got ${String(err)})`);
      const failure = rootApplicationFailure(err);
      assert.ok(failure, `an ApplicationFailure at the root: ${String(err)}`);
      assert.equal(failure.type, 'InvalidInput', failure.message);
      assert.equal(failure.nonRetryable, true);
      assert.ok(failure.message.includes(k.field), `the message names ${k.field}: ${failure.message.slice(0, 500)}`);
      assert.ok(failure.message.length < 2_000, `the message stays readable (${failure.message.length} characters)`);
      // Ended on its first attempt: no workflow task failed (and retried), no activity ran twice.
      const events = (await handle.fetchHistory()).events ?? [];
      assert.equal(events.filter((e) => e.workflowTaskFailedEventAttributes).length, 0, 'no failed workflow task');
      assert.ok(events.filter((e) => e.activityTaskStartedEventAttributes).every((e) => (e.activityTaskStartedEventAttributes!.attempt ?? 1) === 1), 'no activity retried');
      // Only reads ran before the refusal: the gate policy and the target's description, never a change.
      const ran = events.filter((e) => e.activityTaskScheduledEventAttributes).map((e) => e.activityTaskScheduledEventAttributes!.activityType?.name ?? '');
      assert.ok(ran.length <= 2 && ran.every((name) => READ_ONLY_ACTIVITIES.has(name)), `only read-only activities ran: ${ran.join(', ')}`);
    });
  }
});

describe('bad decisions and aborts sent to a drill waiting at its gate change nothing', () => {
  const decideSignal = defineSignal<[unknown]>('decide');
  const abortSignal = defineSignal<[unknown]>('abort');
  const gate = async (): Promise<GateRecord> => (await gated.query(gatesQuery))[0];

  for (const k of GATE_CASES) {
    test(`${k.via} ${k.handler}, ${k.field}: ${k.name}`, async () => {
      const before = await gate();
      assert.equal(before.outcome, 'waiting');
      if (k.via === 'update') {
        await assert.rejects(gated.executeUpdate(decideUpdate, { args: [k.payload as never] }), (err: Error) => {
          const text = `${err.message} ${(err.cause as Error | undefined)?.message ?? ''}`;
          assert.ok(text.includes(k.field), `the refusal names ${k.field}: ${text.slice(0, 500)}`);
          return true;
        });
      } else {
        await gated.signal(k.handler === 'decide' ? decideSignal : abortSignal, k.payload);
        const ignored = await waitFor('the signal to be recorded as ignored', async () => {
          const g = await gate();
          return g.ignored.length === before.ignored.length + 1 && g.ignored[g.ignored.length - 1];
        });
        assert.equal(ignored.signal, k.handler);
        assert.ok(ignored.problem?.includes(k.field), `the record names ${k.field}: ${ignored.problem}`);
        assert.ok(ignored.by.length <= 128);
      }
      const now = await gate();
      assert.equal(now.outcome, 'waiting', 'the gate is still open');
      assert.equal(now.by, undefined);
      assert.equal((await gated.describe()).status.name, 'RUNNING');
    });
  }

  test('afterwards: the drill is still at its gate, nothing accepted, every bad signal kept as evidence', async () => {
    const g = await gate();
    assert.equal(g.outcome, 'waiting');
    assert.equal(g.ignored.length, GATE_CASES.filter((k) => k.via === 'signal').length);
    const events = (await gated.fetchHistory()).events ?? [];
    assert.equal(events.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes).length, 0, 'no update was accepted');
    assert.equal(events.filter((e) => e.workflowTaskFailedEventAttributes).length, 0, 'no signal handler failed a workflow task');
    const activities = events.filter((e) => e.activityTaskScheduledEventAttributes).map((e) => e.activityTaskScheduledEventAttributes!.activityType!.name).sort();
    assert.deepEqual(activities, ['describeCluster', 'describeDrillTarget', 'describeGatePolicy', 'describeGatePolicy', 'locateServiceEndpoint', 'planDrillFault'], 'only the policy and preflight reads ran');
  });
});

describe('after the whole corpus', () => {
  test('nothing changed: databases, roles, sample data, S3 objects, the DNS zone, schedules', async () => {
    const now = await systemsState();
    assert.deepEqual(now, baseline);
    assert.ok(baseline.tables.some((t) => t.startsWith('public.orders rows=2000 ')), 'the sample data is part of the comparison');
    assert.ok(baseline.zone.some((r) => /^db\.sandbox\.test\. \d+ IN A /.test(r)), 'the service record is part of the comparison');
  });

  test('the worker is still running and healthy, and a normal smoke run completes on it', async () => {
    assert.equal(worker.child.exitCode, null, `the worker exited: ${worker.output.stderr.slice(-2000)}`);
    assert.equal((await httpStatus(`${workerHttp}/health`)).status, 200);
    assert.equal((await httpStatus(`${workerHttp}/ready`)).status, 200);
    const res = await runCli(['--json', '--config', stack.configFile, 'smoke']);
    assert.equal(res.code, 0, res.stderr);
    const outcome = JSON.parse(res.stdout);
    assert.equal(outcome.ok, true);
    assert.equal(outcome.result.worker.pid, worker.child.pid, 'answered by the worker that took the corpus');
  });

  test('the gated drill still takes a valid decision and ends unchanged', async () => {
    const g = await gated.executeUpdate(decideUpdate, { args: [await signedDecision(c, gated, 'drDrill', 'reject', operator(stack), 'bad-input corpus done')] });
    assert.equal(g.outcome, 'rejected');
    const err = await gated.result().then(() => undefined, (e: unknown) => e);
    assert.equal(rootApplicationFailure(err)?.type, 'DrillNotApproved');
  });
});
