import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { Client } from '@temporalio/client';
import { defaultFailureConverter, defaultPayloadConverter, Payload } from '@temporalio/common';
import type { temporal as proto } from '@temporalio/proto';
import { readProgress } from '../../src/cli/progress';
import { ConnectedClient, connectClient, failureMessage, RUNBOOK_ENVIRONMENT_KEY, RUNBOOK_NAME_KEY, startRunbook } from '../../src/cli/client';
import { ENCRYPTED_ENCODING, EncryptionCodec, encryptionCodecFor, KEY_ID_METADATA, PlaintextPayloadError } from '../../src/codec';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { findTemporalCli, startTemporalDevServer, stopTemporalDevServer, TemporalDevServerInfo } from '../../src/sandbox/temporal';
import { timelineQuery } from '../../src/workflows/lib/timeline';
import type { SmokeTestResult } from '../../src/workflows/smokeTest';
import { RunbookWorker } from '../../src/worker';
import { jsonLines, runCli, startCli, waitFor } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-encryption-test-'));
// Markers that must never be readable on the server: the environment (runbook input and result),
// the timeline's step name (result and query answers) and a memo.
const ENVIRONMENT = `vault-${randomBytes(3).toString('hex')}`;
const STEP_NAME = 'execute activity round trip';
const MEMO_MARKER = `ticket-${randomBytes(6).toString('hex')}`;
const TOKEN = randomBytes(24).toString('hex');
const keyA = randomBytes(32);
const keyB = randomBytes(32);
const keyEnv = { RUNBOOK_TEST_KEY_A: keyA.toString('base64'), RUNBOOK_TEST_KEY_B: keyB.toString('hex') };
const UI_ORIGIN = 'https://temporal-ui.example.test';
const OTHER_ENVIRONMENT = `elsewhere-${randomBytes(3).toString('hex')}`;

let temporal: TemporalDevServerInfo;
let worker: RunbookWorker;
let c: ConnectedClient;
let loaded: LoadedConfig;
let codec: EncryptionCodec;
let plain: Client;
let workflowId: string;
let result: SmokeTestResult;

function writeConfig(name: string, activeKey: string, keys: string): string {
  const file = join(dir, name);
  writeFileSync(
    file,
    `version: 1
defaultEnvironment: ${ENVIRONMENT}
environments:
  ${ENVIRONMENT}:
    temporal:
      address: "${temporal.address}"
      encryption:
        activeKey: ${activeKey}
        keys: [${keys}]
        codecServer:
          tokens: [{ name: web-ui, token: file:codec-token }]
          allowedOrigins: ["${UI_ORIGIN}"]
  # Another environment on the same server and keys: its runs reach this worker, which refuses them.
  ${OTHER_ENVIRONMENT}:
    temporal:
      address: "${temporal.address}"
      encryption:
        activeKey: ${activeKey}
        keys: [${keys}]
`,
  );
  return file;
}

before(async () => {
  Object.assign(process.env, keyEnv);
  writeFileSync(join(dir, 'codec-token'), `${TOKEN}\n`);
  temporal = await startTemporalDevServer({ dir });
  loaded = loadConfig(writeConfig('runbook.yaml', 'a', '{ id: a, key: env:RUNBOOK_TEST_KEY_A }'));
  worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  await worker.start();
  await worker.waitUntilReady(240_000);
  c = await connectClient(loaded, ENVIRONMENT, loaded.config.environments[ENVIRONMENT]);
  codec = encryptionCodecFor(loaded, ENVIRONMENT, loaded.config.environments[ENVIRONMENT].temporal)!;
  // The same server seen by anyone without the keys: the SDK's default data converter.
  plain = new Client({ connection: c.connection, namespace: c.namespace });

  workflowId = `encrypted-smoke-${randomBytes(4).toString('hex')}`;
  const { handle } = await startRunbook(c, 'smokeTest', [{ environment: ENVIRONMENT }], { workflowId });
  result = (await handle.result()) as SmokeTestResult;
});

after(async () => {
  await c?.close();
  await worker?.shutdown();
  await stopTemporalDevServer(temporal.pid);
  rmSync(dir, { recursive: true, force: true });
});

/** Every string and byte field of a history, except search attributes, which the server must read to index them. */
function leaves(value: unknown, path: string, out: { path: string; text: string }[] = []): { path: string; text: string }[] {
  if (value instanceof Uint8Array) out.push({ path, text: Buffer.from(value).toString('latin1') });
  else if (typeof value === 'string') out.push({ path, text: value });
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) if (k !== 'searchAttributes') leaves(v, `${path}.${k}`, out);
  }
  return out;
}

/** Every Payload in a history (an object with metadata.encoding), except search attributes. */
function payloadsOf(value: unknown, path: string, out: { path: string; payload: Payload }[] = []): { path: string; payload: Payload }[] {
  if (!value || typeof value !== 'object' || value instanceof Uint8Array) return out;
  const metadata = (value as Payload).metadata;
  if (metadata && typeof metadata === 'object' && 'encoding' in metadata) out.push({ path, payload: value as Payload });
  else for (const [k, v] of Object.entries(value)) if (k !== 'searchAttributes') payloadsOf(v, `${path}.${k}`, out);
  return out;
}

async function rawHistory(id: string) {
  const res = await c.connection.workflowService.getWorkflowExecutionHistory({ namespace: c.namespace, execution: { workflowId: id } });
  return res.history!;
}

const asJson = (p: Payload) => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  data: Buffer.from(p.data ?? []).toString('base64'),
});

describe('payload encryption against a real Temporal server', () => {
  test('the runbook ran, and the client with the keys reads its result and its timeline query', async () => {
    assert.equal(result.passed, true);
    assert.equal(result.environment, ENVIRONMENT);
    assert.equal(result.timeline.steps[0].name, STEP_NAME);
    const timeline = await c.client.workflow.getHandle(workflowId).query(timelineQuery);
    assert.equal(timeline.steps[0].name, STEP_NAME);
    assert.equal(timeline.outcome, 'succeeded');
  });

  test("the server's stored history holds no plaintext: every payload is encrypted under the active key, and no marker appears anywhere", async () => {
    const history = await rawHistory(workflowId);
    const payloads = payloadsOf(history, 'history');
    // Input, the activity's input and result, the workflow result at the least.
    assert.ok(payloads.length >= 4, `only ${payloads.length} payloads found`);
    for (const { path, payload } of payloads) {
      assert.equal(Buffer.from(payload.metadata!.encoding).toString(), ENCRYPTED_ENCODING, `${path} is not encrypted`);
      assert.equal(Buffer.from(payload.metadata![KEY_ID_METADATA]).toString(), 'a', path);
    }
    // The activity's nonce is only known by decrypting the history with the keys.
    const scheduled = history.events!.find((e) => e.activityTaskScheduledEventAttributes)!.activityTaskScheduledEventAttributes!;
    const [activityInput] = await codec.decode(scheduled.input!.payloads!);
    const nonce = (defaultPayloadConverter.fromPayload(activityInput) as { nonce: string }).nonce;
    assert.match(nonce, /^[0-9a-f-]{36}$/);
    const markers = [ENVIRONMENT, STEP_NAME, nonce, '"passed":true', 'json/plain'];
    for (const { path, text } of leaves(history, 'history')) {
      for (const marker of markers) assert.ok(!text.includes(marker), `${path} contains plaintext "${marker}"`);
    }
  });

  test('a client without the keys cannot read the result or a query answer; the raw query answer is ciphertext', async () => {
    const handle = plain.workflow.getHandle(workflowId);
    await assert.rejects(handle.result(), /binary\/encrypted/);
    await assert.rejects(handle.query(timelineQuery), /binary\/encrypted/);
    const raw = await c.connection.workflowService.queryWorkflow({ namespace: c.namespace, execution: { workflowId }, query: { queryType: 'timeline' } });
    const [answer] = raw.queryResult!.payloads!;
    assert.equal(Buffer.from(answer.metadata!.encoding!).toString(), ENCRYPTED_ENCODING);
    assert.ok(!Buffer.from(answer.data!).toString('latin1').includes(STEP_NAME));
  });

  test("a running step's progress (its activity's heartbeat details) is encrypted on the server and decoded by the CLI's progress line", async () => {
    const id = `enc-progress-${randomBytes(4).toString('hex')}`;
    const { handle } = await startRunbook(c, 'smokeTest', [{ environment: ENVIRONMENT, holdSeconds: 20 }], { workflowId: id });
    try {
      let seen: Awaited<ReturnType<typeof readProgress>> | undefined;
      await waitFor('a heartbeat with details', async () => {
        seen = await readProgress(handle);
        return typeof seen.details?.heartbeats === 'number';
      }, 30_000, 250);
      assert.equal(seen!.step, STEP_NAME);
      assert.equal(typeof seen!.details!.remainingMs, 'number');
      // What the server holds is ciphertext.
      const raw = await c.connection.workflowService.describeWorkflowExecution({ namespace: c.namespace, execution: { workflowId: id } });
      const [detail] = raw.pendingActivities![0].heartbeatDetails!.payloads!;
      assert.equal(Buffer.from(detail.metadata!.encoding!).toString(), ENCRYPTED_ENCODING);
      assert.ok(!Buffer.from(detail.data!).toString('latin1').includes('remainingMs'));
      // A client without the keys gets no details (and no error): the progress line shows the step alone.
      const blind = await readProgress(plain.workflow.getHandle(id));
      assert.equal(blind.details, undefined);
    } finally {
      await handle.terminate('progress seen').catch(() => undefined);
    }
  });

  test('a memo is encrypted too; search attributes stay readable so runs can still be found', async () => {
    const id = `encrypted-memo-${randomBytes(4).toString('hex')}`;
    const handle = await c.client.workflow.start('smokeTest', { taskQueue: 'standard-queue', workflowId: id, args: [{ environment: ENVIRONMENT }], memo: { ticket: MEMO_MARKER } });
    await handle.result();
    assert.deepEqual((await handle.describe()).memo, { ticket: MEMO_MARKER });
    const raw = await c.connection.workflowService.describeWorkflowExecution({ namespace: c.namespace, execution: { workflowId: id } });
    const memo = raw.workflowExecutionInfo!.memo!.fields!.ticket;
    assert.equal(Buffer.from(memo.metadata!.encoding!).toString(), ENCRYPTED_ENCODING);
    assert.ok(!Buffer.from(memo.data!).toString('latin1').includes(MEMO_MARKER));
    const described = await c.client.workflow.getHandle(workflowId).describe();
    assert.equal(described.typedSearchAttributes.get(RUNBOOK_ENVIRONMENT_KEY), ENVIRONMENT);
    assert.equal(described.typedSearchAttributes.get(RUNBOOK_NAME_KEY), 'smokeTest');
  });

  test("a failed run's failure messages and stack traces are encrypted in the stored history, and the CLI shows the message decoded", async () => {
    // A smoke test for another environment reaches this worker, whose first activity refuses it (InvalidInput).
    const cli = await runCli(['--config', join(dir, 'runbook.yaml'), '--env', OTHER_ENVIRONMENT, '--json', 'smoke', '--timeout', '120'], { env: keyEnv, timeoutMs: 300_000 });
    assert.equal(cli.code, 1, cli.stderr);
    const outcome = JSON.parse(cli.stdout) as { ok: boolean; workflowId: string; error: string };
    assert.equal(outcome.ok, false);
    assert.match(outcome.error, new RegExp(`this worker acts on environment '${ENVIRONMENT}', not '${OTHER_ENVIRONMENT}'`));

    const history = await rawHistory(outcome.workflowId);
    const failures: { path: string; failure: proto.api.failure.v1.IFailure }[] = [];
    const collect = (value: unknown, path: string) => {
      if (!value || typeof value !== 'object' || value instanceof Uint8Array) return;
      for (const [k, v] of Object.entries(value)) {
        if ((k === 'failure' || k === 'cause') && v && typeof v === 'object') failures.push({ path: `${path}.${k}`, failure: v as proto.api.failure.v1.IFailure });
        collect(v, `${path}.${k}`);
      }
    };
    collect(history, 'history');
    // The workflow's failure (an activity failure) and its application failure cause, and the activity's own failure.
    assert.ok(failures.length >= 3, `only ${failures.length} failures in the history`);
    for (const { path, failure } of failures) {
      assert.equal(failure.message, 'Encoded failure', `${path} keeps its message`);
      assert.equal(failure.stackTrace ?? '', '', `${path} keeps its stack trace`);
      assert.equal(Buffer.from(failure.encodedAttributes!.metadata!.encoding!).toString(), ENCRYPTED_ENCODING, `${path}: attributes not encrypted`);
    }
    for (const { path, text } of leaves(history, 'history')) {
      // (The environment's name is in the workflow id, which the server must read: only the message and stack are checked.)
      for (const marker of ['this worker acts on environment', '.ts:', '    at ']) assert.ok(!text.includes(marker), `${path} contains plaintext "${marker}"`);
    }
    // With the keys, the message and the stack trace come back.
    const activityFailed = history.events!.find((e) => e.activityTaskFailedEventAttributes)!.activityTaskFailedEventAttributes!.failure!;
    const [attributes] = await codec.decode([activityFailed.encodedAttributes!]);
    const decoded = defaultPayloadConverter.fromPayload(attributes) as { message: string; stack_trace: string };
    assert.match(decoded.message, /this worker acts on environment/);
    assert.match(decoded.stack_trace, /errors\.ts/);
    await assert.rejects(c.client.workflow.getHandle(outcome.workflowId).result(), (err: Error) => /this worker acts on environment/.test(failureMessage(err)));
  });

  test('requireEncryption (the default): a run started with plaintext input by a client without the keys is refused by the worker, and nothing runs', async () => {
    const id = `plaintext-start-${randomBytes(4).toString('hex')}`;
    const handle = await plain.workflow.start('smokeTest', { taskQueue: 'standard-queue', workflowId: id, args: [{ environment: ENVIRONMENT }], memo: { injected: 'plaintext' } });
    try {
      const refused = await waitFor(
        'the worker to refuse the plaintext input',
        async () => (await rawHistory(id)).events!.find((e) => e.workflowTaskFailedEventAttributes)?.workflowTaskFailedEventAttributes?.failure ?? undefined,
        180_000,
        250,
      );
      const failure = refused.encodedAttributes ? defaultFailureConverter.failureToError({ ...refused, encodedAttributes: (await codec.decode([refused.encodedAttributes]))[0] }, defaultPayloadConverter) : defaultFailureConverter.failureToError(refused, defaultPayloadConverter);
      assert.match(failureMessage(failure) + failure.message, /refused a payload that is not encrypted \('json\/plain'\).*requireEncryption/);
      const events = (await rawHistory(id)).events!;
      assert.ok(!events.some((e) => e.activityTaskScheduledEventAttributes), 'no activity was scheduled');
      // A client of the environment refuses to read the plaintext memo as well.
      await assert.rejects(c.client.workflow.getHandle(id).describe(), (err: Error) => err instanceof PlaintextPayloadError && /requireEncryption/.test(err.message));
    } finally {
      await handle.terminate('test: plaintext run refused').catch(() => undefined);
    }
  });

  test('after rotating to key B (A still listed), old histories decode, new runs are encrypted under B; without A the old run fails naming key a', async () => {
    const rotated = loadConfig(writeConfig('rotated.yaml', 'b', '{ id: a, key: env:RUNBOOK_TEST_KEY_A }, { id: b, key: env:RUNBOOK_TEST_KEY_B }'));
    const env = rotated.config.environments[ENVIRONMENT];
    const rotatedWorker = new RunbookWorker({ loaded: rotated, httpPort: 0, logger: createLogger('warn') });
    await worker.shutdown();
    await rotatedWorker.start();
    try {
      await rotatedWorker.waitUntilReady(240_000);
      const rc = await connectClient(rotated, ENVIRONMENT, env);
      try {
        assert.equal(((await rc.client.workflow.getHandle(workflowId).result()) as SmokeTestResult).environment, ENVIRONMENT);
        const id = `encrypted-rotated-${randomBytes(4).toString('hex')}`;
        const { handle } = await startRunbook(rc, 'smokeTest', [{ environment: ENVIRONMENT }], { workflowId: id });
        assert.equal(((await handle.result()) as SmokeTestResult).passed, true);
        const keyIds = new Set(payloadsOf(await rawHistory(id), 'history').map(({ payload }) => Buffer.from(payload.metadata![KEY_ID_METADATA]).toString()));
        assert.deepEqual([...keyIds], ['b']);
      } finally {
        await rc.close();
      }
      const onlyB = loadConfig(writeConfig('only-b.yaml', 'b', '{ id: b, key: env:RUNBOOK_TEST_KEY_B }'));
      const bc = await connectClient(onlyB, ENVIRONMENT, onlyB.config.environments[ENVIRONMENT]);
      try {
        await assert.rejects(bc.client.workflow.getHandle(workflowId).result(), /encrypted with key 'a', which is not among this environment's keys \(b\)/);
      } finally {
        await bc.close();
      }
    } finally {
      await rotatedWorker.shutdown();
    }
  });
});

describe('runbook codec-server', () => {
  let server: ReturnType<typeof startCli>;
  let url: string;
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), signal: AbortSignal.timeout(5_000) });
  const auth = { authorization: `Bearer ${TOKEN}` };
  let encryptedResult: Payload[];

  before(async () => {
    const config = join(dir, 'runbook.yaml');
    server = startCli(['--config', config, '--env', ENVIRONMENT, 'codec-server', '--port', '0'], { env: keyEnv });
    url = await waitFor(
      'the codec server to listen',
      async () => jsonLines(server.output.stdout).find((l) => l.msg === 'codec server listening')?.url as string | undefined,
      180_000,
    );
    const completed = (await rawHistory(workflowId)).events!.find((e) => e.workflowExecutionCompletedEventAttributes)!;
    encryptedResult = completed.workflowExecutionCompletedEventAttributes!.result!.payloads!;
  });

  after(async () => {
    server?.child.kill('SIGTERM');
    const exited = await server?.exited;
    assert.equal(exited?.code, 0, server?.output.stderr);
    // The audit log names who decoded; it never holds the token or what was decoded.
    for (const text of [server.output.stdout, server.output.stderr]) {
      assert.ok(!text.includes(TOKEN));
      assert.ok(!text.includes(STEP_NAME));
    }
    assert.ok(jsonLines(server.output.stdout).some((l) => l.msg === 'codec request' && l.user === 'web-ui' && l.action === 'decode'));
  });

  test('with the token, /decode turns the stored result back into the runbook result (X-Namespace and /{namespace}/decode both accepted)', async () => {
    for (const [path, headers] of [['/decode', { ...auth, 'x-namespace': 'default' }], ['/default/decode', auth]] as const) {
      const res = await post(path, { payloads: encryptedResult.map(asJson) }, headers);
      assert.equal(res.status, 200, await res.clone().text());
      const body = (await res.json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
      const decoded: Payload = { metadata: Object.fromEntries(Object.entries(body.payloads[0].metadata).map(([k, v]) => [k, Buffer.from(v, 'base64')])), data: Buffer.from(body.payloads[0].data, 'base64') };
      assert.equal(Buffer.from(decoded.metadata!.encoding!).toString(), 'json/plain');
      assert.equal((defaultPayloadConverter.fromPayload(decoded) as SmokeTestResult).environment, ENVIRONMENT);
    }
  });

  test('/encode encrypts under the active key, and /decode reverses it', async () => {
    const original = asJson(defaultPayloadConverter.toPayload({ signal: 'approve' }));
    const enc = (await (await post('/encode', { payloads: [original] }, auth)).json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
    assert.equal(Buffer.from(enc.payloads[0].metadata.encoding, 'base64').toString(), ENCRYPTED_ENCODING);
    assert.equal(Buffer.from(enc.payloads[0].metadata[KEY_ID_METADATA], 'base64').toString(), 'a');
    const dec = (await (await post('/decode', enc, auth)).json()) as { payloads: unknown[] };
    assert.deepEqual(dec.payloads[0], original);
  });

  const refusals: { name: string; headers: Record<string, string>; path?: string; status: number; says: RegExp }[] = [
    { name: 'no Authorization header', headers: {}, status: 401, says: /authorization required/ },
    { name: 'a token that is not configured', headers: { authorization: `Bearer ${randomBytes(24).toString('hex')}` }, status: 403, says: /not allowed/ },
    { name: 'basic instead of bearer auth', headers: { authorization: `Basic ${Buffer.from(`web-ui:${TOKEN}`).toString('base64')}` }, status: 401, says: /bearer token/ },
    { name: 'another namespace in X-Namespace', headers: { ...auth, 'x-namespace': 'payments' }, status: 403, says: /namespace default only, not payments/ },
    { name: 'another namespace in the path', headers: auth, path: '/payments/decode', status: 403, says: /namespace default only/ },
    { name: 'a browser origin not listed', headers: { ...auth, origin: 'https://evil.example.test' }, status: 403, says: /origin https:\/\/evil.example.test is not allowed/ },
  ];
  for (const r of refusals) {
    test(`refused: ${r.name} (${r.status}), and nothing is decoded`, async () => {
      const res = await post(r.path ?? '/decode', { payloads: encryptedResult.map(asJson) }, r.headers);
      const body = await res.text();
      assert.equal(res.status, r.status, body);
      assert.match(body, r.says);
      assert.ok(!body.includes(ENVIRONMENT));
      if (r.status === 401) assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
    });
  }

  test('the Web UI origin gets CORS: the preflight needs no token, the answer names the origin', async () => {
    const pre = await fetch(`${url}/decode`, { method: 'OPTIONS', headers: { origin: UI_ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,x-namespace' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), UI_ORIGIN);
    assert.match(pre.headers.get('access-control-allow-headers') ?? '', /authorization.*x-namespace/);
    const res = await post('/decode', { payloads: encryptedResult.map(asJson) }, { ...auth, origin: UI_ORIGIN, 'x-namespace': 'default' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), UI_ORIGIN);
    const unauthorised = await post('/decode', { payloads: [] }, { origin: UI_ORIGIN });
    assert.equal(unauthorised.status, 401);
  });

  test('malformed requests are refused with the reason', async () => {
    assert.equal((await fetch(`${url}/decode`)).status, 405);
    assert.equal((await post('/metrics', {}, auth)).status, 404);
    const notJson = await fetch(`${url}/decode`, { method: 'POST', headers: auth, body: 'payloads please' });
    assert.equal(notJson.status, 400);
    const badBase64 = await post('/decode', { payloads: [{ metadata: { encoding: '***' }, data: '' }] }, auth);
    assert.equal(badBase64.status, 400);
    assert.match(await badBase64.text(), /payloads\[0\]\.metadata\.encoding: expected base64/);
  });

  test('the Temporal CLI decodes the history through --codec-endpoint with the token, and sees only ciphertext without it', async () => {
    const run = promisify(execFile);
    const show = async (extra: string[]) => {
      const { stdout } = await run(findTemporalCli(), ['workflow', 'show', '--workflow-id', workflowId, '--address', temporal.address, '--output', 'json', ...extra], { maxBuffer: 16 * 1024 * 1024 });
      const events = (JSON.parse(stdout) as { events: { workflowExecutionCompletedEventAttributes?: { result: { payloads: { metadata: Record<string, string>; data: string }[] } } }[] }).events;
      const [p] = events.find((e) => e.workflowExecutionCompletedEventAttributes)!.workflowExecutionCompletedEventAttributes!.result.payloads;
      return { encoding: Buffer.from(p.metadata.encoding, 'base64').toString(), data: Buffer.from(p.data, 'base64').toString('latin1') };
    };
    const decoded = await show(['--codec-endpoint', url, '--codec-auth', `Bearer ${TOKEN}`]);
    assert.equal(decoded.encoding, 'json/plain');
    assert.equal((JSON.parse(decoded.data) as SmokeTestResult).timeline.steps[0].name, STEP_NAME);
    const stored = await show([]);
    assert.equal(stored.encoding, ENCRYPTED_ENCODING);
    assert.ok(!stored.data.includes(STEP_NAME));
  });
});
