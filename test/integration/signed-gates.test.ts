import assert from 'node:assert/strict';
import { appendFileSync, chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { WorkflowFailedError, WorkflowHandle, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { parse, stringify } from 'yaml';
import { abortRun, startDrill } from '../../src/cli/drill';
import { ConnectedClient, connectClient, startRunbook } from '../../src/cli/client';
import { waive } from '../../src/cli/golive';
import { openGate, signAct, Signer, signedDecision } from '../../src/cli/sign';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { generateKey } from '../../src/identity/signer';
import { statementText } from '../../src/identity/statement';
import { createLogger } from '../../src/observability/logger';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import type { DrDrillResult } from '../../src/workflows/drDrill';
import type { GoLiveReport } from '../../src/reports/golive';
import { abortSignal, abortRunUpdate, decideUpdate, gatesQuery, signedActsQuery } from '../../src/workflows/lib/gate';
import { ATTESTATION_GATE, attestUpdate, ReadinessAuditResult } from '../../src/workflows/readinessAudit';
import { RunbookWorker } from '../../src/worker';
import { operator, runCli, waitFor } from '../helpers';

// One sandbox for every scenario: drills under a 2-of-3 four-eyes policy with an extra abort list, and
// a key that is on no list at all. Every signature is made by OpenSSH's ssh-keygen from real key files.
const dir = mkdtempSync(join(tmpdir(), 'runbook-signed-gates-test-'));
chmodSync(dir, 0o755);
let stack: StackState;
let loaded: LoadedConfig;
let worker: RunbookWorker;
let c: ConnectedClient;
let signersFile: string;
let op: Signer;
let reviewer: Signer;
const carol: Signer = { keyFile: join(dir, 'carol'), principal: 'carol' };
const dave: Signer = { keyFile: join(dir, 'dave'), principal: 'dave' };
const mallory: Signer = { keyFile: join(dir, 'mallory'), principal: 'mallory' };
let carolLine: string;

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 'replica', 's3', 'dns'] });
  op = operator(stack);
  reviewer = operator(stack, 'sandbox-reviewer');
  signersFile = join(stack.dir, 'keys', 'allowed_signers');
  carolLine = `carol ${(await generateKey(carol.keyFile, 'carol')).split(' ').slice(0, 2).join(' ')}\n`;
  appendFileSync(signersFile, carolLine);
  appendFileSync(signersFile, `dave ${(await generateKey(dave.keyFile, 'dave')).split(' ').slice(0, 2).join(' ')}\n`);
  await generateKey(mallory.keyFile, 'mallory');
  const doc = parse(readFileSync(stack.configFile, 'utf8'));
  doc.environments.sandbox.approvers = { default: ['sandbox-operator', 'sandbox-reviewer', 'carol'] };
  doc.environments.sandbox.policies = { default: { fourEyes: true }, drDrill: { approvals: 2, fourEyes: true, abort: ['dave'] } };
  writeFileSync(stack.configFile, stringify(doc));
  loaded = loadConfig(stack.configFile);
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

/** A drill started without a signed request, as a schedule starts one: its gate needs the full count. */
async function unsignedDrill(): Promise<WorkflowHandle> {
  const { handle } = await startRunbook(c, 'drDrill', [{ environment: 'sandbox', database: 'main', mode: 'failover', approvalTimeoutSeconds: 600 }], {});
  await waitFor('the approval gate', async () => (await handle.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 60_000);
  return handle;
}

function refused(pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof WorkflowUpdateFailedError, `expected a refused update, got ${String(err)}`);
    assert.match(String((err.cause as Error | undefined)?.message), pattern);
    return true;
  };
}

async function failureOf(handle: WorkflowHandle): Promise<ApplicationFailure> {
  const err = await handle.result().then(() => assert.fail('the run succeeded'), (e: unknown) => e);
  assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure, String(err));
  return err.cause;
}

describe('signed decisions at the gates', () => {
  test('refused at once and the run unchanged: a typed name, an unlisted key, a tampered reason, an old statement, a replay to another run or act; a 2-of-3 gate stays open after one approval, counts a principal once, and passes after a second', async () => {
    const drill = await unsignedDrill();
    const other = await unsignedDrill();
    const { runId, gate } = await openGate(drill);
    assert.equal(gate.required, 2);
    const decide = (h: WorkflowHandle, args: unknown) => h.executeUpdate(decideUpdate, { args: [args as never] });

    await assert.rejects(decide(drill, { decision: 'approve', by: 'sandbox-operator' }), refused(/statement: expected the signed statement text/));
    await assert.rejects(decide(drill, await signedDecision(c, drill, 'drDrill', 'approve', mallory)), refused(/key SHA256:\S+ is not in the allowed signers/));
    const good = await signedDecision(c, drill, 'drDrill', 'approve', op, 'quarterly drill');
    await assert.rejects(decide(drill, { ...good, statement: good.statement.replace('quarterly drill', 'anything') }), refused(/bad signature: the signature does not match the statement/));
    const old = await signAct(c, op, { runbook: 'drDrill', workflowId: drill.workflowId, runId, gate: gate.id, act: 'approve' });
    const stale = JSON.parse(old.statement);
    stale.at = new Date(Date.now() - 3_600_000).toISOString();
    // Re-signed with the old time: a valid signature over a statement that is too old.
    const { signStatement } = await import('../../src/identity/signer');
    await assert.rejects(decide(drill, await signStatement(stale, op.keyFile)), refused(/more than 900 s ago; sign a new one/));
    await assert.rejects(decide(other, good), refused(/statement is for workflow .*, not/));
    await assert.rejects(drill.executeUpdate(abortRunUpdate, { args: [good] }), refused(/for gate "g1-start-the-drill", not "run"/));
    assert.equal((await drill.query(gatesQuery))[0].outcome, 'waiting');

    const first = await decide(drill, good);
    assert.equal(first.outcome, 'waiting', 'one of two approvals');
    assert.deepEqual(first.approvals.map((a) => a.principal), ['sandbox-operator']);
    await assert.rejects(decide(drill, good), refused(/already used in this run/));
    await assert.rejects(decide(drill, await signedDecision(c, drill, 'drDrill', 'approve', op)), refused(/sandbox-operator has already approved gate 'start the drill'; it needs 2 distinct people/));
    assert.equal((await drill.query(gatesQuery))[0].approvals.length, 1);

    const second = await decide(drill, await signedDecision(c, drill, 'drDrill', 'approve', reviewer, 'second pair of eyes'));
    assert.equal(second.outcome, 'approved');
    const result: DrDrillResult = await drill.result();
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.deepEqual(result.approval!.approvals.map((a) => a.principal), ['sandbox-operator', 'sandbox-reviewer']);
    assert.ok(result.approval!.approvals.every((a) => /^SHA256:[A-Za-z0-9+/]{43}$/.test(a.fingerprint)));
    assert.match(result.timeline.steps.find((s) => s.name === 'approval gate')!.evidence.approvals!.toString(), /sandbox-operator \(SHA256:/);
    // Refusals by the validator come back to the sender at once and leave no event in the history.
    assert.deepEqual(result.approval!.ignored, []);
    await other.executeUpdate(decideUpdate, { args: [await signedDecision(c, other, 'drDrill', 'reject', carol, 'cleanup')] });
    assert.equal((await failureOf(other)).type, 'DrillNotApproved');
    const metrics = await worker.metrics.registry.metrics();
    assert.match(metrics, /runbook_signed_acts_total\{runbook="drDrill",environment="sandbox",act="approve",principal="sandbox-reviewer"\} 1/);
  });

  test('four-eyes: the signed requester cannot approve their own drill; another approver can decide', async () => {
    const { handle } = await startDrill(c, { database: 'main', mode: 'failover', failback: true, approvalTimeoutSeconds: 600, signer: op, reason: 'requested for the test' });
    await waitFor('the approval gate', async () => (await handle.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 60_000);
    const acts = await handle.query(signedActsQuery);
    assert.equal(acts.startedBy, 'signed request');
    assert.equal(acts.requester?.principal, 'sandbox-operator');
    await assert.rejects(handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', op)] }), refused(/four-eyes: sandbox-operator requested this run and may not approve it/));
    await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'reject', reviewer, 'not now')] });
    const f = await failureOf(handle);
    assert.match(f.message, /rejected by sandbox-reviewer at the approval gate; nothing was changed/);
  });

  test('a start with a bad signature is refused before anything runs', async () => {
    const { handle } = await startRunbook(c, 'drDrill', [{ environment: 'sandbox', database: 'main', mode: 'failover', start: { statement: statementText({ v: 1, namespace: 'default', environment: 'sandbox', runbook: 'drDrill', workflowId: 'x', runId: '', gate: 'start', act: 'start', by: 'sandbox-operator', reason: '', at: new Date().toISOString() }), signature: 'forged' } }], {});
    const f = await failureOf(handle);
    assert.equal(f.type, 'StartRefused');
    assert.match(f.message, /refused before anything ran: bad signature: expected an armored SSH signature/);
    const history = await handle.fetchHistory();
    const activities = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes).map((e) => e.activityTaskScheduledEventAttributes!.activityType!.name);
    assert.deepEqual(activities, ['describeGatePolicy', 'appendEvidence'], 'nothing but reading the policy and recording the refused run in the evidence log');
  });

  test('an unsigned or unlisted abort is ignored and recorded; a signed abort by someone on the abort list ends the drill unchanged', async () => {
    const drill = await unsignedDrill();
    await drill.signal(abortSignal, { by: 'mallory', reason: 'typed' } as never);
    await drill.signal(abortSignal, await signAct(c, mallory, { runbook: 'drDrill', workflowId: drill.workflowId, runId: (await drill.describe()).runId, gate: 'run', act: 'abort' }));
    await assert.rejects(abortRun(c, 'drDrill', drill.workflowId, mallory, 'let me'), /abort refused: key SHA256:\S+ is not in the allowed signers/);
    await waitFor('both refused signals on record', async () => (await drill.query(gatesQuery))[0].ignored.length >= 2 || undefined);
    const ignored = (await drill.query(gatesQuery))[0].ignored;
    assert.match(ignored[0].problem, /statement: expected the signed statement text/);
    assert.match(ignored[1].problem, /not in the allowed signers/);
    assert.equal((await drill.query(gatesQuery))[0].outcome, 'waiting');
    assert.match(await worker.metrics.registry.metrics(), /runbook_signed_acts_refused_total\{runbook="drDrill",environment="sandbox",kind="abort"\} 2/);
    const act = await abortRun(c, 'drDrill', drill.workflowId, dave, 'maintenance window cancelled');
    assert.equal(act.principal, 'dave');
    const f = await failureOf(drill);
    assert.equal(f.type, 'DrillNotApproved');
    assert.match(f.message, /aborted by dave/);
  });

  test('a key removed from the allowed signers while the gate is open can no longer decide it', async () => {
    const drill = await unsignedDrill();
    const byCarol = await signedDecision(c, drill, 'drDrill', 'approve', carol);
    writeFileSync(signersFile, readFileSync(signersFile, 'utf8').replace(carolLine, ''));
    try {
      await assert.rejects(drill.executeUpdate(decideUpdate, { args: [byCarol] }), refused(/is not in the allowed signers/));
      const gate = (await drill.query(gatesQuery))[0];
      assert.equal(gate.outcome, 'waiting');
      assert.equal(gate.approvals.length, 0);
    } finally {
      appendFileSync(signersFile, carolLine);
    }
    await drill.executeUpdate(decideUpdate, { args: [await signedDecision(c, drill, 'drDrill', 'reject', reviewer)] });
    await failureOf(drill);
  });
});

describe('signed attestations and waivers', () => {
  const s3 = () => new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey } });
  const audit = async (wait = 0) => (await startRunbook(c, 'readinessAudit', [{ environment: 'sandbox', checkTimeoutSeconds: 2, waitForAttestationsSeconds: wait }], {})).handle;

  test('a stored attestation counts while its signature verifies; tampered with in S3 or written without a signature, the next audit refuses it and says why', async () => {
    const first = await audit(120);
    await waitFor('the audit to take attestations', async () => {
      const sign = await signAct(c, op, { runbook: 'readinessAudit', workflowId: first.workflowId, runId: (await first.describe()).runId, gate: ATTESTATION_GATE, act: 'attest', item: 'on-call-rotation', reason: 'rota staffed', validForDays: 7 });
      return first.executeUpdate(attestUpdate, { args: [sign] }).then((a) => a, () => undefined);
    }, 60_000, 500);
    await first.signal('closeAttestations', {});
    await first.result();
    const again: ReadinessAuditResult = await (await audit()).result();
    const item = (id: string) => again.sections.flatMap((s) => s.items).find((i) => i.id === id)!;
    assert.equal(item('on-call-rotation').status, 'attested');
    assert.match(item('on-call-rotation').summary, /attested by sandbox-operator/);

    const client = s3();
    try {
      const key = 'sandbox/attestations/on-call-rotation.json';
      const stored = JSON.parse(await (await client.send(new GetObjectCommand({ Bucket: 'runbook-backups', Key: key }))).Body!.transformToString());
      stored.statement = stored.statement.replace('"validForDays":7', '"validForDays":30');
      await client.send(new PutObjectCommand({ Bucket: 'runbook-backups', Key: key, Body: JSON.stringify(stored) }));
      await client.send(new PutObjectCommand({ Bucket: 'runbook-backups', Key: 'sandbox/attestations/communication-plan.json', Body: JSON.stringify({ item: 'communication-plan', by: 'sandbox-operator', comment: 'trust me', at: new Date().toISOString(), expiresAt: '2099-01-01T00:00:00Z', workflowId: 'x' }) }));
    } finally {
      client.destroy();
    }
    const third: ReadinessAuditResult = await (await audit()).result();
    const third_ = (id: string) => third.sections.flatMap((s) => s.items).find((i) => i.id === id)!;
    assert.equal(third_('on-call-rotation').status, 'unknown');
    assert.equal(third_('communication-plan').status, 'unknown');
    const why = Object.fromEntries(third.refusedAttestations.map((r) => [r.item, r.problem]));
    assert.match(why['on-call-rotation'], /stored attestation refused: bad signature: the signature does not match the statement/);
    assert.match(why['communication-plan'], /stored attestation refused: unsigned/);
  });

  test('a waiver without a valid signature does not open the go-live audit gate', async () => {
    const { handle } = await startRunbook(c, 'goLive', [{ environment: 'sandbox', deployment: 'web', image: 'registry.sandbox.test/web:9', watch: { durationSeconds: 1, intervalSeconds: 1, analysis: { pods: { maxRestarts: 0 } } }, audit: { checkTimeoutSeconds: 2 }, waiverWaitSeconds: 20 }], { workflowId: `golive-sandbox-web-${Date.now()}` });
    await assert.rejects(handle.executeUpdate('waive', { args: [{ item: 'persistence-database', by: 'sandbox-operator', reason: 'typed' }] }), refused(/expected a checklist item id|statement/));
    await assert.rejects(waive(c, handle, mallory, { item: 'persistence-database', reason: 'trust me' }), /waiver of persistence-database refused: key SHA256:\S+ is not in the allowed signers/);
    const f = await failureOf(handle);
    assert.equal(f.type, 'GoLiveBlocked');
    const report = f.details?.[0] as GoLiveReport;
    assert.ok(report.audit!.blocking.some((b) => b.id === 'persistence-database'));
    assert.deepEqual(report.audit!.waived, []);
  });
});

describe('the evidence log', () => {
  test('every signed decision and run outcome is in the hash-chained log in S3: runbook decisions lists them verified, runbook evidence verify passes, and a record changed in the bucket breaks the chain', async () => {
    const cli = (args: string[]) => runCli(['--config', stack.configFile, ...args]);
    const listed = await cli(['--json', 'decisions', '--runbook', 'drDrill']);
    assert.equal(listed.code, 0, listed.stderr);
    const rows = JSON.parse(listed.stdout).decisions as { act: string; principal: string; fingerprint: string; verified: boolean; outcome?: string; statement: string }[];
    const approvals = rows.filter((r) => r.act === 'approve');
    assert.ok(approvals.some((r) => r.principal === 'sandbox-reviewer' && r.verified && /^SHA256:/.test(r.fingerprint) && /succeeded/.test(r.outcome ?? '')), JSON.stringify(approvals.slice(0, 3)));
    assert.ok(rows.some((r) => r.act === 'abort' && r.principal === 'dave' && /aborted/.test(r.outcome ?? '')));
    assert.ok(rows.some((r) => r.act === 'start' && r.principal === 'sandbox-operator'));
    assert.ok(rows.every((r) => r.verified));
    const csv = await cli(['decisions', '--csv', '--since', '2000-01-01']);
    assert.match(csv.stdout.split('\n')[0], /^at,runbook,workflowId,runId,gate,act,principal,fingerprint,verified,reason,outcome,statement$/);
    const intact = await cli(['evidence', 'verify']);
    assert.equal(intact.code, 0, intact.stdout + intact.stderr);
    assert.match(intact.stdout, /evidence log of sandbox intact: \d+ record\(s\) chained/);

    const client = new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey } });
    try {
      const key = 'sandbox/evidence/sandbox/000000000002.json';
      const record = JSON.parse(await (await client.send(new GetObjectCommand({ Bucket: 'runbook-backups', Key: key }))).Body!.transformToString());
      record.principal = 'mallory';
      await client.send(new PutObjectCommand({ Bucket: 'runbook-backups', Key: key, Body: JSON.stringify(record) }));
    } finally {
      client.destroy();
    }
    const broken = await cli(['evidence', 'verify']);
    assert.equal(broken.code, 1);
    assert.match(broken.stdout, /000000000002\.json: its content does not match its hash \(changed after it was written\)/);
  });
});
