import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, IncomingHttpHeaders, Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import { parse, stringify } from 'yaml';
import { ConnectedClient, connectClient, startRunbook } from '../../src/cli/client';
import { signedDecision } from '../../src/cli/sign';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import type { NotificationEvent } from '../../src/identity/policy';
import { createLogger } from '../../src/observability/logger';
import { deliveredMail, SmtpServerInfo, startSmtpServer, stopSmtpServer } from '../../src/sandbox/smtp';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { freePort } from '../../src/system/process';
import type { DrDrillResult } from '../../src/workflows/drDrill';
import { decideUpdate, gatesQuery } from '../../src/workflows/lib/gate';
import { RunbookWorker } from '../../src/worker';
import { operator, waitFor } from '../helpers';

// Notifications reach a real local HTTP receiver (generic webhook with an HMAC header, and a
// Slack-compatible incoming webhook) and a real SMTP server (aiosmtpd) started as a process.
const dir = mkdtempSync(join(tmpdir(), 'runbook-notify-test-'));
chmodSync(dir, 0o755);
const SECRET = 'hmac-secret-for-the-test-receiver';
let stack: StackState;
let smtp: SmtpServerInfo;
let loaded: LoadedConfig;
let worker: RunbookWorker;
let c: ConnectedClient;
let receiver: Server;
let receiverPort: number;
const received: { path: string; headers: IncomingHttpHeaders; body: string }[] = [];

function listen(port: number): Promise<Server> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: req.headers, body });
      res.end('ok');
    });
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 'replica', 'dns'] });
  smtp = await startSmtpServer({ dir: join(dir, 'smtp') });
  receiverPort = await freePort();
  receiver = await listen(receiverPort);
  writeFileSync(join(stack.dir, 'secrets', 'hook-secret'), SECRET);
  writeFileSync(join(stack.dir, 'secrets', 'slack-url'), `http://127.0.0.1:${receiverPort}/slack/T000/B000/xyz`);
  const doc = parse(readFileSync(stack.configFile, 'utf8'));
  doc.environments.sandbox.notifications = {
    channels: [
      { type: 'webhook', name: 'hook', url: `http://127.0.0.1:${receiverPort}/hook`, secret: 'file:secrets/hook-secret' },
      { type: 'slack', name: 'team', url: 'file:secrets/slack-url' },
      { type: 'email', name: 'oncall', host: smtp.host, port: smtp.port, from: 'runbook@sandbox.test', to: ['oncall@sandbox.test'] },
    ],
    gates: ['hook', 'team'],
    failures: ['hook', 'oncall'],
    reminderEvery: '2s',
    escalation: { after: '3s', channels: ['oncall'] },
    temporalUiUrl: 'http://127.0.0.1:8233',
  };
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
  receiver?.close();
  if (smtp) await stopSmtpServer(smtp.pid);
  if (stack) await stopStack(stack);
  if (!process.env.RUNBOOK_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
});

/** Mail bodies as people read them (the SMTP client sends quoted-printable). */
const mails = () => deliveredMail(smtp).map((m) => m.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_x, h: string) => String.fromCharCode(parseInt(h, 16))));

async function drillAtGate(): Promise<WorkflowHandle> {
  const { handle } = await startRunbook(c, 'drDrill', [{ environment: 'sandbox', database: 'main', mode: 'failover', approvalTimeoutSeconds: 600 }], {});
  await waitFor('the approval gate', async () => (await handle.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 60_000);
  return handle;
}

const events = (path: string, workflowId: string) =>
  received.filter((r) => r.path === path).map((r) => ({ ...r, event: JSON.parse(r.body) as NotificationEvent & { text: string; approveCommand?: string } })).filter((r) => r.event.workflowId === workflowId || r.body.includes(workflowId));

describe('notifications', () => {
  test('a waiting gate is announced on the webhook (HMAC checked) and Slack with the approve command and the UI link, reminded, escalated by email; its decision and the failed run are announced too', async () => {
    const drill = await drillAtGate();
    const id = drill.workflowId;
    const opened = await waitFor('the webhook to hear of the gate', async () => events('/hook', id).find((e) => e.event.kind === 'gate opened'), 30_000);
    const mac = createHmac('sha256', SECRET).update(opened.body).digest('hex');
    assert.equal(opened.headers['x-runbook-signature'], `sha256=${mac}`);
    assert.equal(opened.event.gate?.name, 'start the drill');
    assert.equal(opened.event.approveCommand, `runbook --env sandbox drill approve ${id} --key YOUR_KEY`);
    const slack = await waitFor('Slack', async () => received.find((r) => r.path.startsWith('/slack/') && r.body.includes(id)), 30_000);
    const text = (JSON.parse(slack.body) as { text: string }).text;
    assert.match(text, new RegExp(`approve with: runbook --env sandbox drill approve ${id} --key YOUR_KEY`));
    assert.match(text, new RegExp(`Temporal UI: http://127.0.0.1:8233/namespaces/default/workflows/${id}/`));
    await waitFor('a reminder', async () => events('/hook', id).some((e) => e.event.kind === 'gate reminder'), 30_000, 200);
    const escalation = await waitFor('the escalation email', async () => mails().find((m) => m.includes(id) && m.includes('nobody decided within 3 s')), 30_000, 200);
    assert.match(escalation, /To: oncall@sandbox.test/);
    assert.match(escalation, new RegExp(`approve with: runbook --env sandbox drill approve ${id}`));

    await drill.executeUpdate(decideUpdate, { args: [await signedDecision(c, drill, 'drDrill', 'reject', operator(stack), 'not this week')] });
    await drill.result().catch(() => undefined);
    const decided = events('/hook', id).find((e) => e.event.kind === 'gate decided');
    assert.match(decided?.event.summary ?? '', /gate 'start the drill' rejected by sandbox-operator/);
    assert.ok(events('/hook', id).some((e) => e.event.kind === 'run failed'), 'the failure channel heard of the failed run');
    assert.ok(mails().some((m) => m.includes(id) && /run failed|failed:/.test(m)), 'and by email');
  });

  test('with the receiver down the drill still completes, and each failed delivery is on the timeline and in the metric', async () => {
    await new Promise<void>((r) => receiver.close(() => r()));
    try {
      const drill = await drillAtGate();
      await drill.executeUpdate(decideUpdate, { args: [await signedDecision(c, drill, 'drDrill', 'approve', operator(stack), 'go')] });
      const result: DrDrillResult = await drill.result();
      assert.equal(result.passed, true, result.reasons.join('; '));
      const failed = result.timeline.steps.filter((s) => s.name.startsWith('notify ') && s.outcome === 'failed');
      assert.ok(failed.some((s) => s.name === 'notify hook: gate opened'), failed.map((s) => s.name).join(', '));
      assert.ok(failed.some((s) => s.name === 'notify team: gate decided'));
      assert.match(String(failed[0].evidence.error), /ECONNREFUSED|fetch failed|connect/);
      assert.match(await worker.metrics.registry.metrics(), /runbook_notification_failures_total\{environment="sandbox",channel="hook"\} [1-9]/);
    } finally {
      receiver = await listen(receiverPort);
    }
  });
});
