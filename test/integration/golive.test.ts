import assert from 'node:assert/strict';
import { primaryLocator, reachServer } from '../../src/activities/primary';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { WorkflowFailedError, WorkflowHandle, WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { Client as PgClient } from 'pg';
import { parse, stringify } from 'yaml';
import { createS3Client, ObjectStore } from '../../src/activities/s3';
import { runBackup, runVerify } from '../../src/cli/backup';
import { ConnectedClient, connectClient, startRunbook } from '../../src/cli/client';
import { runPlan } from '../../src/cli/plan';
import { awaitDrill, startDrill, waitForOpenGate } from '../../src/cli/drill';
import { runSmokeTest } from '../../src/cli/smoke';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import type { GoLiveReport } from '../../src/reports/golive';
import { seedSampleDatabase } from '../../src/sandbox/seed';
import { createSampleDeployment } from '../../src/sandbox/kubernetes';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { GoLiveInput, GoLiveResult, goLiveStatusQuery } from '../../src/workflows/goLive';
import { decideUpdate } from '../../src/workflows/lib/gate';
import { ATTESTATION_GATE, attestUpdate, auditStatusQuery, closeAttestationsSignal, ReadinessAuditResult } from '../../src/workflows/readinessAudit';
import { signAct, Signer, signedDecision } from '../../src/cli/sign';
import { waive } from '../../src/cli/golive';
import { generateKey } from '../../src/identity/signer';
import type { RollbackResult } from '../../src/workflows/rollback';
import { rolloutStatusQuery } from '../../src/workflows/rollout';
import { RunbookWorker } from '../../src/worker';
import { runCli, waitFor, operator } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-golive-test-'));
chmodSync(dir, 0o755);
let stack: StackState;
let config: string;
let loaded: LoadedConfig;
let worker: RunbookWorker;
let c: ConnectedClient;
let apps: k8s.AppsV1Api;
let store: ObjectStore;
let app: Server;
let healthUrl: string;
/** The stand-in application's health endpoint, which the watch window measures. */
const appState = { healthy: true };

async function createDeployment(name: string, image: string, replicas = 2): Promise<void> {
  await createSampleDeployment(apps, { name, image, replicas });
  await available(name, replicas, image);
}

async function available(name: string, replicas: number, image: string): Promise<void> {
  await waitFor(`${name} available on ${image}`, async () => {
    const d = await apps.readNamespacedDeployment({ name, namespace: 'default' });
    return d.spec?.template.spec?.containers[0].image === image && (d.status?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) && (d.status?.availableReplicas ?? 0) === replicas && (d.status?.updatedReplicas ?? 0) === replicas;
  }, 60_000, 250);
}

async function deployment(name: string): Promise<k8s.V1Deployment | undefined> {
  return apps.readNamespacedDeployment({ name, namespace: 'default' }).catch(() => undefined);
}

before(async () => {
  // The production-shaped Temporal cluster (mTLS through its load balancer) that the checklist is about.
  stack = await startStack({ dir: join(dir, 'stack'), components: ['postgres', 'replica', 's3', 'dns', 'kubernetes', 'temporal-cluster'] });
  const doc = parse(readFileSync(stack.configFile, 'utf8'));
  const env = doc.environments.sandbox;
  env.kubernetes.deployments = ['shop', 'cart', 'legacy'];
  env.approvers = { default: ['sandbox-operator'], goLive: ['alice'], rollout: ['alice', 'bob'], readinessAudit: ['auditor'] };
  // Each person signs with a key of their own, listed in the allowed signers beside the sandbox operators'.
  env.policies = {};
  for (const who of ['alice', 'bob', 'auditor'] as const) {
    keys[who] = { keyFile: join(dir, who), principal: who };
    appendFileSync(join(stack.dir, 'keys', 'allowed_signers'), `${who} ${(await generateKey(keys[who].keyFile, who)).split(' ').slice(0, 2).join(' ')}\n`);
  }
  doc.schedules = [];
  config = join(stack.dir, 'golive.yaml');
  writeFileSync(config, stringify(doc));
  loaded = loadConfig(config);

  const db = loaded.config.environments.sandbox.databases.main;
  const pg = new PgClient({ ...(await reachServer(primaryLocator(loaded.baseDir, db, db.user, db.password))), database: db.database });
  await pg.connect();
  await seedSampleDatabase(pg, { rows: 200 });
  await pg.end();

  const kc = new k8s.KubeConfig();
  kc.loadFromFile(stack.kubernetes!.kubeconfig);
  apps = kc.makeApiClient(k8s.AppsV1Api);
  await Promise.all([createDeployment('shop', 'registry.sandbox.test/shop:1.0'), createDeployment('cart', 'registry.sandbox.test/cart:1.0'), createDeployment('legacy', 'registry.sandbox.test/legacy:1.0')]);

  app = createServer((req, res) => {
    res.statusCode = req.url === '/healthz' ? (appState.healthy ? 200 : 503) : 404;
    res.end(appState.healthy ? 'ok' : 'unhealthy');
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  healthUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}/healthz`;

  worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  await worker.start();
  await worker.waitUntilReady(180_000);
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
  const backups = loaded.config.environments.sandbox.backups!;
  store = new ObjectStore(createS3Client(loaded, backups), backups.bucket);
});

after(async () => {
  await c?.close();
  await worker?.shutdown();
  app?.close();
  if (stack) await stopStack(stack);
  if (!process.env.RUNBOOK_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
});

const WAIVER_REASON = "Temporal's own database is backed up by the platform team's pgBackRest; its restore tests run from the ops environment";
/** Temporal's persistence database is a databases: entry like the app's: without a backup of it, both backup items block. */
const WAIVERS = [
  { item: 'backup-strategy', reason: WAIVER_REASON },
  { item: 'database-backups', reason: WAIVER_REASON },
];
const keys = {} as Record<'alice' | 'bob' | 'auditor', Signer>;

function goLiveInput(deployment: string, image: string, extra: Partial<GoLiveInput> = {}): GoLiveInput {
  return {
    environment: 'sandbox',
    deployment,
    image,
    steps: [{ setWeight: 50 }, { pause: {} }],
    watch: { durationSeconds: 3, intervalSeconds: 1, analysis: { http: [{ name: 'health', url: healthUrl, expectStatus: 200 }], pods: { maxRestarts: 0 } } },
    audit: { certificateMinDays: 1, checkTimeoutSeconds: 5 },
    ...extra,
  };
}

async function startGoLive(input: GoLiveInput): Promise<WorkflowHandle> {
  const { handle } = await startRunbook(c, 'goLive', [input], { workflowId: `golive-sandbox-${input.deployment}`, target: input.deployment });
  return handle;
}

/** The failure a go-live ended with: its type and the report it carries. */
async function stopped(handle: WorkflowHandle): Promise<{ type: string; message: string; report: GoLiveReport & { reportKeys: string[] } }> {
  try {
    await handle.result();
  } catch (err) {
    assert.ok(err instanceof WorkflowFailedError, String(err));
    const cause = err.cause as ApplicationFailure;
    return { type: cause.type ?? '', message: cause.message, report: cause.details?.[0] as GoLiveReport & { reportKeys: string[] } };
  }
  throw new Error('the go-live completed; expected it to stop');
}

async function runId(workflowId: string): Promise<string> {
  return (await c.client.workflow.getHandle(workflowId).describe()).runId;
}

async function completedInVisibility(runbook: string, workflowId: string): Promise<void> {
  await waitFor(`${runbook} ${workflowId} completed in visibility`, async () => {
    for await (const w of c.client.workflow.list({ query: `WorkflowId = '${workflowId}' AND ExecutionStatus = 'Completed' AND RunbookEnvironment = 'sandbox'` })) return w.workflowId;
    return undefined;
  }, 30_000, 250);
}

describe('go-live', () => {
  test('a go-live plan runs the audit for real and says the go-live would stop at the audit gate, naming the items, and changes nothing', async () => {
    const before = await deployment('shop');
    const reportsBefore = (await store.list('sandbox/')).map((o) => o.key).sort();
    const p = await runPlan(c, 'goLive', goLiveInput('shop', 'registry.sandbox.test/shop:1.1'));
    assert.equal(p.ok, false);
    assert.match(p.problems.join('; '), /stopped at the audit gate, nothing was changed.*dr-drills-quarterly/);
    const audit = p.children.find((ch) => ch.runbook === 'readinessAudit');
    assert.ok(audit && audit.ok && audit.steps.length > 0, JSON.stringify(p.children.map((ch) => [ch.runbook, ch.ok, ch.problems])));
    assert.ok(audit.steps.flatMap((st) => st.planned).some((x) => x.by === 'writeAuditReport' && /\/audits\/.+\/report\.json/.test(x.what)));
    const after = await deployment('shop');
    assert.equal(after?.metadata?.generation, before?.metadata?.generation);
    assert.equal(await deployment('shop-canary'), undefined);
    assert.deepEqual((await store.list('sandbox/')).map((o) => o.key).sort(), reportsBefore, 'no report or evidence was written');
  });

  test('go-live stops at the audit gate when critical items fail, naming each with the reason, and changes nothing', async () => {
    const before = await deployment('shop');
    const handle = await startGoLive(goLiveInput('shop', 'registry.sandbox.test/shop:1.1'));
    const { type, message, report } = await stopped(handle);
    assert.equal(type, 'GoLiveBlocked');
    assert.match(message, /stopped at the audit gate, nothing was changed/);
    const blocking = report.audit!.blocking.map((b) => b.id).sort();
    // No backup, restore test, drill, smoke test or rollback has run yet, and nobody is on call.
    assert.deepEqual(blocking, ['backup-strategy', 'backup-verification', 'database-backups', 'dr-drills-quarterly', 'on-call-rotation', 'rollback-tested', 'smoke-tests']);
    for (const id of blocking) assert.match(message, new RegExp(`${id} \\((fail|unknown): `), id);
    assert.match(message, /dr-drills-quarterly \(fail: no completed drDrill run found\)/);
    assert.match(message, /backup-strategy \(fail: [^)]*temporal: no complete backup/);
    // The cluster proves the Temporal items: PostgreSQL persistence, TLS and mTLS everywhere.
    for (const id of ['persistence-database', 'tls-enabled', 'mtls-configured', 'mtls-enforced', 'tls-certificates']) assert.ok(!blocking.includes(id), id);

    // Nothing changed: no rollout was started, no smoke test or approval happened, the Deployment is as it was.
    const status = await handle.query(goLiveStatusQuery);
    assert.equal(status.phase, 'done');
    assert.equal(status.outcome, 'blocked');
    assert.deepEqual(status.children.smoke, []);
    assert.equal(status.children.rollout, undefined);
    assert.deepEqual(status.approvals, []);
    await assert.rejects(c.client.workflow.getHandle('rollout-sandbox-shop').describe(), WorkflowNotFoundError);
    const after = await deployment('shop');
    assert.equal(after?.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/shop:1.0');
    assert.equal(after?.metadata?.generation, before?.metadata?.generation);
    assert.equal(await deployment('shop-canary'), undefined);

    // The audit it ran is linked, and the report is kept next to the other reports.
    assert.equal(report.audit!.runId, await runId(report.audit!.workflowId));
    assert.deepEqual(report.reportKeys, [`sandbox/golive/${report.goLiveId}/report.json`, `sandbox/golive/${report.goLiveId}/report.md`, `sandbox/golive/${report.goLiveId}/report.html`]);
    const page = await store.getText(report.reportKeys[2]);
    assert.match(page, /<span class="verdict bad">BLOCKED<\/span>/);
    assert.ok(page.includes(`<code>${report.audit!.workflowId}</code>`), 'the audit run is named on the page');
    const kept = await store.getJson<GoLiveReport>(report.reportKeys[0]);
    assert.equal(kept.outcome, 'blocked');
    const cli = await runCli(['--config', config, 'golive', 'status', 'shop']);
    assert.equal(cli.code, 1, cli.stderr);
    assert.match(cli.stdout, /phase done: blocked/);
    assert.match(cli.stdout, /not proved: dr-drills-quarterly \(fail\)/);
    const bad = await runCli(['--config', config, 'golive', 'start', 'shop', '--image', 'registry.sandbox.test/shop:1.1', '--analysis', join(dir, 'no-such-file.yaml')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--analysis: cannot read/);
  });

  test('with every critical item proved (runs, an attestation given while the audit waits) or waived with a reason, go-live completes end to end: smoke tests, approval, gated rollout, watch window, report linking the child runs', async () => {
    // The runbook runs the checklist asks for, each for real on the sandbox.
    const backup = await runBackup(c, 'main', false);
    assert.ok(backup.ok, backup.error);
    const verify = await runVerify(c, 'main', { mode: 'latest' }, false);
    assert.ok(verify.ok, verify.error);
    const drill = await startDrill(c, { database: 'main', mode: 'failover', failback: true, signer: operator(stack) });
    await waitForOpenGate(drill.handle);
    await drill.handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, drill.handle, 'drDrill', 'approve', operator(stack), 'go-live prerequisite')] });
    const drilled = await awaitDrill(drill.handle, drill.workflowId, false);
    assert.ok(drilled.ok, drilled.error);
    const smoke = await runSmokeTest(c, { queue: 'standard' });
    assert.ok(smoke.ok, smoke.error);
    await apps.patchNamespacedDeployment({ name: 'legacy', namespace: 'default', body: [{ op: 'replace', path: '/spec/template/spec/containers/0/image', value: 'registry.sandbox.test/legacy:1.1' }] }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch));
    await available('legacy', 2, 'registry.sandbox.test/legacy:1.1');
    // A rollback verified by its analysis proves rollback-tested; a newer one without an analysis does not.
    const rolledBack = await startRunbook(c, 'rollback', [{ environment: 'sandbox', deployment: 'legacy', reason: 'rollback drill', analysis: { count: 1, pods: { maxRestarts: 0, minReadyRatio: 1 } } }], { target: 'legacy' });
    const verifiedRollback = (await rolledBack.handle.result()) as RollbackResult;
    assert.deepEqual([verifiedRollback.changed, verifiedRollback.verified], [true, true]);
    const unverified = await startRunbook(c, 'rollback', [{ environment: 'sandbox', deployment: 'legacy', reason: 'no analysis' }], { target: 'legacy' });
    assert.deepEqual([((await unverified.handle.result()) as RollbackResult).changed, ((await unverified.handle.result()) as RollbackResult).verified], [true, null]);
    for (const [runbook, id] of [['verifyBackup', verify.workflowId], ['drDrill', drill.workflowId], ['smokeTest', smoke.workflowId], ['rollback', rolledBack.workflowId], ['rollback', unverified.workflowId]]) await completedInVisibility(runbook, id);

    const handle = await startGoLive(goLiveInput('shop', 'registry.sandbox.test/shop:1.1', { audit: { certificateMinDays: 1, checkTimeoutSeconds: 5, waitForAttestationsSeconds: 120 }, waiverWaitSeconds: 300 }));
    for (const w of WAIVERS) await waive(c, handle, keys.alice, w);
    // The audit waits for attestations: the on-call rota is vouched for while go-live waits at its gate.
    const auditId = await waitFor('the audit child', async () => (await handle.query(goLiveStatusQuery)).children.audit?.workflowId, 30_000, 200);
    const audit = c.client.workflow.getHandle(auditId);
    await waitFor('the audit to accept attestations', async () => (await audit.query(auditStatusQuery)).phase === 'waiting for attestations', 60_000, 200);
    assert.match((await handle.query(goLiveStatusQuery)).waitingFor ?? '', new RegExp(`runbook audit --attest ITEM --comment TEXT --workflow ${auditId}`));
    await audit.executeUpdate(attestUpdate, { args: [await signAct(c, keys.auditor, { runbook: 'readinessAudit', workflowId: auditId, runId: (await audit.describe()).runId, gate: ATTESTATION_GATE, act: 'attest', item: 'on-call-rotation', reason: 'rota for the launch weeks staffed in the pager tool' })] });
    await audit.signal(closeAttestationsSignal, { by: 'auditor' });

    // The go-live approval: refused at once for someone else, given through the CLI by an approver.
    await waitFor('the go-live approval gate', async () => (await handle.query(goLiveStatusQuery)).approvals.some((g) => g.outcome === 'waiting'), 60_000, 200);
    await assert.rejects(handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'goLive', 'approve', keys.bob)] }), (err) => err instanceof WorkflowUpdateFailedError && /bob \(key SHA256:\S+\) may not approve here; allowed: alice/.test(String((err.cause as Error).message)));
    const approve = await runCli(['--config', config, 'golive', 'approve', 'shop', '--key', keys.alice.keyFile, '--comment', 'launch window open']);
    assert.equal(approve.code, 0, approve.stderr);
    assert.match(approve.stdout, /approved by alice/);

    // The rollout is a child under the CLI's rollout id: its pause is approved the usual way.
    await waitFor('the rollout to wait at its pause', async () => {
      const s = await c.client.workflow.getHandle('rollout-sandbox-shop').query(rolloutStatusQuery);
      return s.approvals.some((g) => g.outcome === 'waiting');
    }, 90_000, 200);
    assert.equal((await deployment('shop-canary'))?.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/shop:1.1');
    const promote = await runCli(['--config', config, 'rollout', 'approve', 'shop', '--key', keys.bob.keyFile, '--comment', 'canary healthy']);
    assert.equal(promote.code, 0, promote.stderr);

    const r = (await handle.result()) as GoLiveResult;
    assert.equal(r.outcome, 'live');
    assert.equal(r.passed, true);
    const shop = await deployment('shop');
    assert.equal(shop?.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/shop:1.1');
    assert.equal(shop?.status?.availableReplicas, 2);
    assert.equal(await deployment('shop-canary'), undefined);

    // The audit gate: everything critical proved, the backups of Temporal's own database waived by alice with the reason.
    assert.deepEqual(r.audit!.blocking, []);
    assert.deepEqual(r.audit!.waived.map((w) => [w.id, w.by, w.reason]), [['backup-strategy', 'alice', WAIVER_REASON], ['database-backups', 'alice', WAIVER_REASON]]);
    const auditResult = (await audit.result()) as ReadinessAuditResult;
    const item = (id: string) => auditResult.sections.flatMap((s) => s.items).find((i) => i.id === id)!;
    assert.equal(item('on-call-rotation').status, 'attested');
    assert.equal(item('dr-drills-quarterly').status, 'pass');
    assert.equal(item('rollback-tested').status, 'pass');
    assert.equal((item('rollback-tested').evidence.lastRun as { workflowId: string }).workflowId, rolledBack.workflowId, 'the verified rollback, not the newer unverified one');
    assert.match(item('rollback-tested').summary, /of legacy, changed and verified,/);
    assert.equal(item('persistence-database').status, 'pass');
    assert.equal(item('database-backups').status, 'fail', 'a waiver does not make the audit say it passes');
    assert.deepEqual(auditResult.blocking.map((b) => b.id), ['backup-strategy', 'database-backups']);

    // Smoke tests on each queue, the approval, the rollout and a quiet watch window.
    assert.deepEqual(r.smoke.map((s) => s.queue), ['critical-queue', 'standard-queue', 'batch-queue']);
    assert.equal(r.approval?.by, 'alice');
    assert.equal(r.approval?.reason, 'launch window open');
    assert.equal(r.rollout?.workflowId, 'rollout-sandbox-shop');
    assert.equal(r.rollout?.outcome, 'promoted');
    assert.deepEqual(r.rollout?.approvals.map((g) => [g.outcome, g.by]), [['approved', 'bob']]);
    assert.deepEqual([r.watch?.passed, r.watch?.measurements, r.watch?.of], [true, 3, 3]);
    assert.equal(r.rollback, undefined);
    assert.deepEqual(r.timeline.steps.map((s) => [s.name, s.outcome]), [
      ['preflight', 'succeeded'],
      ['audit gate', 'succeeded'],
      ['smoke test', 'succeeded'],
      ['approval', 'succeeded'],
      ['rollout', 'succeeded'],
      ['watch window', 'succeeded'],
      ['write report', 'succeeded'],
    ]);

    // The report in S3 links every child run by workflow and run id.
    assert.deepEqual(r.reportKeys, [`sandbox/golive/${r.goLiveId}/report.json`, `sandbox/golive/${r.goLiveId}/report.md`, `sandbox/golive/${r.goLiveId}/report.html`]);
    const kept = await store.getJson<GoLiveReport>(r.reportKeys[0]);
    assert.equal(kept.outcome, 'live');
    for (const child of [kept.audit!, kept.rollout!, ...kept.smoke]) assert.equal(child.runId, await runId(child.workflowId), child.workflowId);
    const md = await (await store.s3.send(new (await import('@aws-sdk/client-s3')).GetObjectCommand({ Bucket: store.bucket, Key: r.reportKeys[1] }))).Body!.transformToString();
    assert.match(md, /^# Go-live LIVE: sandbox \/ shop/);
    assert.ok(md.includes(`| rollout | \`rollout-sandbox-shop\` (run \`${kept.rollout!.runId}\`) | promoted`));
    assert.match(md, /database-backups fail, \*\*waived by alice\*\* \(key SHA256:\S+, signed \S+\): Temporal's own database is backed up by the platform team's pgBackRest/);
    // The smoke tests it ran count as runs of their own runbook.
    await completedInVisibility('smokeTest', kept.smoke[0].workflowId);
  });

  test('an alert condition during the watch window rolls the Deployment back through the rollback runbook and fails go-live with the reason', async () => {
    appState.healthy = true;
    const handle = await startGoLive(goLiveInput('cart', 'registry.sandbox.test/cart:1.1', {
      steps: [{ setWeight: 50 }, { pause: { durationSeconds: 1 } }],
      watch: { durationSeconds: 60, intervalSeconds: 1, analysis: { http: [{ name: 'health', url: healthUrl, expectStatus: 200 }] } },
      waiverWaitSeconds: 300,
    }));
    for (const w of WAIVERS) await waive(c, handle, keys.alice, w);
    await waitFor('the go-live approval gate', async () => (await handle.query(goLiveStatusQuery)).approvals.some((g) => g.outcome === 'waiting'), 60_000, 200);
    await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'goLive', 'approve', keys.alice)] });
    await waitFor('two quiet measurements', async () => ((await handle.query(goLiveStatusQuery)).watch?.measurements ?? 0) >= 2, 90_000, 100);
    assert.equal((await deployment('cart'))?.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/cart:1.1');
    // The breach; once the old version is back, the service is healthy again.
    appState.healthy = false;
    await waitFor('rolling back', async () => (await handle.query(goLiveStatusQuery)).phase === 'rolling back', 30_000, 50);
    appState.healthy = true;

    const { type, message, report } = await stopped(handle);
    assert.equal(type, 'GoLiveRolledBack');
    assert.match(message, /the watch window saw the alert condition hold: analysis 'watch window': health failed 1 time\(s\).*cart was rolled back to registry\.sandbox\.test\/cart:1\.0/);
    assert.equal(report.outcome, 'rolled back');
    assert.equal(report.rollout?.outcome, 'promoted');
    assert.equal(report.watch?.passed, false);
    assert.equal(report.rollback?.workflowId, `${report.goLiveId}-rollback`);
    assert.equal(report.rollback?.runId, await runId(report.rollback!.workflowId));
    assert.equal(report.rollback?.changed, true);
    assert.equal(report.rollback?.verified, true);
    const cart = await deployment('cart');
    assert.equal(cart?.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/cart:1.0');
    assert.equal(cart?.status?.availableReplicas, 2);
    assert.equal(await deployment('cart-canary'), undefined);
    const kept = await store.getJson<GoLiveReport>(report.reportKeys[0]);
    assert.equal(kept.rollback?.workflowId, report.rollback?.workflowId);
  });
});
