import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Resolver } from 'node:dns/promises';
import { Client as PgClient } from 'pg';
import { ConnectedClient, connectClient } from '../../src/cli/client';
import type { RunbookPlan } from '../../src/cli/plan';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import type { DrDrillResult } from '../../src/workflows/drDrill';
import { decideUpdate, gatesQuery } from '../../src/workflows/lib/gate';
import { signedDecision } from '../../src/cli/sign';
import { RunbookWorker } from '../../src/worker';
import { operator, runCli, superuserPassword, waitFor } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-plan-test-'));
chmodSync(dir, 0o755);
let stack: StackState;
let loaded: LoadedConfig;
let worker: RunbookWorker;
let c: ConnectedClient;
let password: string;

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 'replica', 's3', 'dns'] });
  loaded = loadConfig(stack.configFile);
  password = superuserPassword(stack);
  worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  await worker.start();
  await worker.waitUntilReady();
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
  // The sandbox's schedules exist on the server, so a plan that touched them would show.
  const applied = await runCli(['--config', stack.configFile, 'schedule', 'apply'], { timeoutMs: 120_000 });
  assert.equal(applied.code, 0, applied.stderr);
});

after(async () => {
  await c?.close();
  await worker?.shutdown();
  await stopStack(stack);
  if (!process.env.RUNBOOK_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
});

const nodes = () => {
  const t = loaded.config.environments.sandbox.databases.main.topology!;
  return t.driver === 'local' ? t.nodes : [];
};

async function sql<T extends Record<string, unknown>>(host: string, text: string): Promise<T[]> {
  const pg = new PgClient({ host, port: stack.postgres!.port, user: 'postgres', password, database: 'app', connectionTimeoutMillis: 3_000 });
  await pg.connect();
  try {
    return (await pg.query<T>(text)).rows;
  } finally {
    await pg.end();
  }
}

/**
 * What a plan must leave as it found it: each node's role and timeline, the drill tables, the service
 * name's record, every object in the bucket, and the runs visibility lists for the environment.
 */
async function world(): Promise<Record<string, unknown>> {
  const roles: Record<string, unknown> = {};
  for (const n of nodes()) {
    const [r] = await sql<{ rec: boolean; tl: string; tables: string }>(
      n.host,
      `SELECT pg_is_in_recovery() AS rec, (SELECT timeline_id::text FROM pg_control_checkpoint()) AS tl, (SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relname LIKE 'runbook_drill%' AND relkind = 'r') AS tables`,
    );
    roles[n.name] = r;
  }
  const resolver = new Resolver({ timeout: 1_000, tries: 1 });
  resolver.setServers([`${stack.dns!.host}:${stack.dns!.port}`]);
  const backups = loaded.config.environments.sandbox.backups!;
  const s3 = new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey } });
  const objects = ((await s3.send(new ListObjectsV2Command({ Bucket: backups.bucket }))).Contents ?? []).map((o) => `${o.Key} ${o.ETag}`).sort();
  s3.destroy();
  const runs: string[] = [];
  for await (const w of c.client.workflow.list({ query: `RunbookEnvironment = 'sandbox'` })) runs.push(`${w.workflowId} ${w.status.name}`);
  const schedules: string[] = [];
  for await (const sc of c.client.schedule.list()) schedules.push(`${sc.scheduleId} ${sc.state.paused ? 'paused' : 'active'} ${sc.action?.type === 'startWorkflow' ? sc.action.workflowType : ''}`);
  return { roles, dns: await resolver.resolve4('db.sandbox.test'), objects, runs: runs.sort(), schedules: schedules.sort() };
}

async function plan(args: string[]): Promise<{ code: number | null; plan?: RunbookPlan; stdout: string; stderr: string }> {
  const r = await runCli(['--config', stack.configFile, '--json', ...args], { timeoutMs: 180_000 });
  let parsed: RunbookPlan | undefined;
  try {
    parsed = JSON.parse(r.stdout) as RunbookPlan;
  } catch {
    parsed = undefined;
  }
  return { code: r.code, plan: parsed, stdout: r.stdout, stderr: r.stderr };
}

const planned = (p: RunbookPlan, step: string) => p.steps.find((s) => s.name === step)?.planned.map((x) => x.what) ?? [];

describe('plan mode', () => {
  test('a drill plan changes nothing, names the node stopped, the DNS record switched and the gate; the real drill then runs the same steps', async () => {
    const before = await world();
    assert.ok((before.schedules as string[]).length >= 2, JSON.stringify(before.schedules));
    const primary = nodes().find((n) => (before.roles as Record<string, { rec: boolean }>)[n.name].rec === false)!;
    const replica = nodes().find((n) => n.name !== primary.name)!;

    const r = await plan(['drill', 'start', '--plan']);
    assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
    const p = r.plan!;
    assert.equal(p.ok, true, p.problems.join('; '));
    assert.match(p.workflowId, /^plan-drDrill-sandbox-/);
    assert.deepEqual(await world(), before, 'the plan changed nothing');

    assert.ok(planned(p, 'approval gate').some((w) => /waits at gate 'start the drill' for 1 signed approval from .*sandbox-reviewer/.test(w)), JSON.stringify(planned(p, 'approval gate')));
    assert.ok(planned(p, 'write marker').some((w) => w.includes(`on ${primary.name}`)), JSON.stringify(planned(p, 'write marker')));
    assert.ok(planned(p, 'fault: the primary dies hard').some((w) => w.includes(`stop ${primary.name} hard`) && w.includes('pg_ctl stop -m immediate')), JSON.stringify(planned(p, 'fault: the primary dies hard')));
    assert.ok(planned(p, 'fault: the primary dies hard').some((w) => /^from here on, if a step fails or the run is aborted: restore a writable primary and point the service endpoint at it$/.test(w)), 'the compensation, from the fault on');
    const dns = p.steps.find((s) => s.name === 'switch the service endpoint')!.planned.find((x) => x.by === 'switchServiceEndpoint')!;
    assert.deepEqual(dns.detail, { record: 'db.sandbox.test', type: 'A', from: [primary.host], to: replica.host, provider: 'rfc2136' });
    assert.ok(planned(p, 'failback: rejoin the old primary as a replica').some((w) => w.includes(`makes ${primary.name} a replica of ${replica.name}`)));
    assert.ok(planned(p, 'write report').some((w) => /writes s3:\/\/.*\/drills\/drill-[0-9a-f]+\/report\.json/.test(w)));

    // The same plan as a manual procedure: every change a checkbox, the record in a code block.
    const md = await runCli(['--config', stack.configFile, 'drill', 'start', '--plan', '--markdown'], { timeoutMs: 180_000 });
    assert.equal(md.code, 0, md.stderr);
    assert.match(md.stdout, /^# Manual procedure: drDrill in sandbox/m);
    assert.match(md.stdout, /- \[ \] do: stop node-a hard|- \[ \] do: stop \S+ hard/);
    assert.match(md.stdout, /"record": "db.sandbox.test"/);
    assert.deepEqual(await world(), before, 'the Markdown plan changed nothing either');

    // The real drill: its steps are the plan's.
    const handle = await c.client.workflow.start('drDrill', { taskQueue: 'critical-queue', workflowId: `drill-after-plan-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main', mode: 'failover' }] });
    await waitFor('the approval gate to open', async () => (await handle.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 30_000, 100);
    await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', operator(stack, 'sandbox-reviewer'), 'after the plan')] });
    const result: DrDrillResult = await handle.result();
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.deepEqual(result.timeline.steps.map((s) => s.name), p.steps.map((s) => s.name));
  });

  test('backup and restore-test plans change nothing and name the dump, the keys and the scratch database; the real backup runs the plan\'s steps', async () => {
    // A backup to restore-test: taken for real first.
    const first = await c.client.workflow.execute('backupDatabase', { taskQueue: 'batch-queue', workflowId: `backup-before-plan-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main' }] });
    assert.ok(first);
    const before = await world();

    const b = await plan(['backup', 'run', '--plan']);
    assert.equal(b.code, 0, `${b.stderr}\n${b.stdout}`);
    const bp = b.plan!;
    assert.equal(bp.ok, true, bp.problems.join('; '));
    const changes = bp.steps.flatMap((s) => s.planned.map((x) => x.what));
    assert.ok(changes.some((w) => /pg_dump/.test(w)), JSON.stringify(changes));
    assert.ok(changes.some((w) => /s3:\/\/[^ ]+\/manifest\.json|manifest/.test(w)), JSON.stringify(changes));

    const v = await plan(['backup', 'verify', '--plan']);
    assert.equal(v.code, 0, `${v.stderr}\n${v.stdout}`);
    const vp = v.plan!;
    assert.equal(vp.ok, true, vp.problems.join('; '));
    const restore = vp.steps.flatMap((s) => s.planned.map((x) => x.what));
    assert.ok(restore.some((w) => /pg_restore/.test(w)), JSON.stringify(restore));
    assert.ok(restore.some((w) => /scratch/i.test(w)), JSON.stringify(restore));
    assert.deepEqual(await world(), before, 'neither plan changed anything');

    const real = await c.client.workflow.execute('backupDatabase', { taskQueue: 'batch-queue', workflowId: `backup-after-plan-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main' }] });
    assert.deepEqual((real as { timeline: { steps: { name: string }[] } }).timeline.steps.map((s) => s.name), bp.steps.map((s) => s.name));
  });

  test('a drill plan that preflight refuses exits 1 with the problem listed, and changes nothing', async () => {
    const before = await world();
    const r = await plan(['drill', 'start', '--plan', '--require-restore-test-within', '1']);
    assert.equal(r.code, 1, r.stderr);
    const p = r.plan!;
    assert.equal(p.ok, false);
    assert.match(p.problems.join('\n'), /preflight failed, nothing was changed: no restore test of database main passed within 1 days/);
    assert.equal(p.steps[0].outcome, 'failed');
    assert.deepEqual(await world(), before);
    const text = await runCli(['--config', stack.configFile, 'drill', 'start', '--plan', '--require-restore-test-within', '1'], { timeoutMs: 180_000 });
    assert.equal(text.code, 1);
    assert.match(text.stdout, /PLAN of drDrill in sandbox: the real run would stop/);
    assert.match(text.stdout, /PROBLEM: .*no restore test of database main passed within 1 days/);
  });
});
