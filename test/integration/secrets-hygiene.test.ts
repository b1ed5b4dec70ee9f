import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ChangeResourceRecordSetsCommand, CreateHostedZoneCommand, Route53Client } from '@aws-sdk/client-route-53';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import * as k8s from '@kubernetes/client-node';
import type { Payload } from '@temporalio/common';
import { Client as PgClient } from 'pg';
import { parse, stringify } from 'yaml';
import { ConnectedClient, connectClient, failureMessage } from '../../src/cli/client';
import { waitForOpenGate } from '../../src/cli/drill';
import { rolloutStatusQuery } from '../../src/workflows/rollout';
import { encryptionCodecFor, isSdkPatchMarkerData } from '../../src/codec';
import { loadConfig } from '../../src/config/load';
import { seedSampleDatabase } from '../../src/sandbox/seed';
import { createSampleDeployment } from '../../src/sandbox/kubernetes';
import { deliveredMail, SmtpServerInfo, startSmtpServer, stopSmtpServer } from '../../src/sandbox/smtp';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { createCa, issueCert, TlsFront } from '../../src/sandbox/tls';
import { findPgBinary } from '../../src/system/postgres';
import { findBinary } from '../../src/system/process';
import { CliResult, jsonLines, runCli, startCli, waitFor, superuserPassword } from '../helpers';

/**
 * Secrets reach the processes only through env: and file: references. After real runs of every kind
 * that touches them — a smoke test, a backup, a restore test, a backup refused for a wrong password,
 * a DR drill switching DNS with a TSIG-signed update, a second drill switching it through Route 53, a
 * gated canary rollout, a go-live stopped at its audit gate, notifications to a webhook, Slack and SMTP,
 * decoding through the codec server — none of the planted secrets may be found in the workers' log
 * lines (at debug level), the CLI's output, the codec server's output, /metrics, the notifications
 * delivered, any object in S3, any history (raw, and with every payload decrypted), or the environment
 * of any program the worker or the CLI started.
 */
const dir = mkdtempSync(join(tmpdir(), 'runbook-hygiene-test-'));
chmodSync(dir, 0o755);
let stack: StackState;
let front: TlsFront;
let smtp: SmtpServerInfo;
let receiver: Server;
let c: ConnectedClient;
let configFile: string;
/** Planted secrets by the variable that carries them. */
const secrets: Record<string, string> = {};
/** Secrets held in files (private keys): each line of their body. */
const fileSecrets: { name: string; lines: string[] }[] = [];
/** A variable of the worker's environment that no config references: no child may see it. */
const SENTINEL = { name: 'RUNBOOK_HYGIENE_UNRELATED', value: `unrelated-${randomBytes(12).toString('hex')}` };
const env: Record<string, string> = {};
const outputs: { what: string; text: string }[] = [];
const received: { path: string; headers: string; body: string }[] = [];
const childEnvDir = join(dir, 'child-env');
const workers: { name: string; proc: ReturnType<typeof startCli>; httpUrl: string }[] = [];
const ids: Record<string, string> = {};

/** Wrappers that record the environment a program was started with (its /proc/<pid>/environ), then become the program. */
function writeWrappers(binDir: string): void {
  mkdirSync(binDir, { recursive: true, mode: 0o755 });
  mkdirSync(childEnvDir, { recursive: true });
  // pg_ctl, pg_rewind and pg_basebackup run as the postgres user.
  chmodSync(childEnvDir, 0o777);
  const real: Record<string, string> = {
    pg_dump: findPgBinary('pg_dump'),
    pg_restore: findPgBinary('pg_restore'),
    pg_ctl: findPgBinary('pg_ctl'),
    pg_rewind: findPgBinary('pg_rewind'),
    pg_basebackup: findPgBinary('pg_basebackup'),
    pg_isready: findPgBinary('pg_isready'),
    nsupdate: findBinary('nsupdate', { hint: 'install bind9-dnsutils' }),
    'ssh-keygen': findBinary('ssh-keygen', { hint: 'install openssh-client' }),
  };
  for (const [name, path] of Object.entries(real)) {
    const file = join(binDir, name);
    writeFileSync(file, `#!/bin/sh\n/bin/cat /proc/$$/environ > '${childEnvDir}/${name}.'$$ 2>/dev/null\nexec '${path}' "$@"\n`);
    chmodSync(file, 0o755);
  }
}

function listenReceiver(): Promise<number> {
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: JSON.stringify(req.headers), body });
      res.end('ok');
    });
  });
  return new Promise((resolve) => receiver.listen(0, '127.0.0.1', () => resolve((receiver.address() as AddressInfo).port)));
}

const pemBody = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length >= 40 && !l.startsWith('-----'));

async function startWorker(name: string, args: string[]): Promise<void> {
  const proc = startCli(['--config', configFile, ...args, 'worker', '--http-port', '0'], { env });
  const httpUrl = await waitFor(`the ${name} worker to poll`, async () => {
    if (proc.child.exitCode !== null) throw new Error(`the ${name} worker exited: ${proc.output.stderr}`);
    const lines = jsonLines(proc.output.stdout);
    return lines.some((l) => l.msg === 'worker polling') ? (lines.find((l) => l.msg === 'worker started')?.httpUrl as string | undefined) : undefined;
  }, 300_000, 250);
  workers.push({ name, proc, httpUrl });
}

const cli = async (args: string[], timeoutMs = 300_000): Promise<CliResult> => {
  let r = await runCli(['--config', configFile, ...args], { env, timeoutMs });
  // The CLI gives up connecting after 5 s; on a machine loaded by other suites the TLS handshake can take
  // longer. Nothing was started then, so the command is run again (its output is checked all the same).
  for (let i = 0; i < 2 && /cannot connect to Temporal/.test(r.stderr); i++) {
    outputs.push({ what: `runbook ${args.join(' ')} (stderr, not connected)`, text: r.stderr });
    r = await runCli(['--config', configFile, ...args], { env, timeoutMs });
  }
  outputs.push({ what: `runbook ${args.join(' ')} (stdout)`, text: r.stdout }, { what: `runbook ${args.join(' ')} (stderr)`, text: r.stderr });
  return r;
};
const ok = (r: CliResult, what: string) => assert.equal(r.code, 0, `${what}: ${r.stderr}\n${r.stdout}`);

/** A drill from the command line: started by the operator, approved by the reviewer, reported. */
async function drill(environment: string, extra: string[] = []): Promise<string> {
  const started = await cli(['--env', environment, 'drill', 'start', '--mode', 'switchover', ...extra]);
  ok(started, 'drill start');
  const id = started.stdout.trim();
  await waitForOpenGate(c.client.workflow.getHandle(id), 180_000);
  ok(await cli(['--env', environment, 'drill', 'approve', id, '--key', join(stack.dir, 'keys', 'sandbox-reviewer'), '--reason', 'hygiene']), 'drill approve');
  const report = await cli(['--env', environment, 'drill', 'report', id]);
  ok(report, 'drill report');
  assert.match(report.stdout, new RegExp(`DR drill passed: ${environment}/main switchover`));
  return id;
}

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 'replica', 's3', 'dns', 'kubernetes'] });
  const receiverPort = await listenReceiver();
  smtp = await startSmtpServer({ dir: join(dir, 'smtp') });

  // Temporal behind TLS with a client certificate and an API key, as Temporal Cloud is reached.
  const [host, port] = stack.temporal!.address.split(':');
  const pki = join(dir, 'pki');
  const ca = await createCa(pki);
  const serverCert = await issueCert(pki, ca, 'frontend', { usage: 'server', dnsNames: ['temporal.sandbox.test'], ips: ['127.0.0.1'] });
  const clientCert = await issueCert(pki, ca, 'hygiene-worker', { usage: 'client' });
  front = new TlsFront({ ca: ca.cert, serverCert, upstream: { host, port: Number(port) } });
  const tls = await front.listen();

  const stackSecret = (name: string) => readFileSync(join(stack.dir, 'secrets', name), 'utf8').trim();
  Object.assign(secrets, {
    // The logins the sandbox gives the runbooks: the owner and one role per purpose (no superuser).
    RUNBOOK_HYGIENE_PG_PASSWORD: stackSecret('pg-app_owner-password'),
    RUNBOOK_HYGIENE_PG_BACKUP_PASSWORD: stackSecret('pg-runbook_backup-password'),
    RUNBOOK_HYGIENE_PG_DRILL_PASSWORD: stackSecret('pg-runbook_drill-password'),
    RUNBOOK_HYGIENE_PG_CHECKS_PASSWORD: stackSecret('pg-runbook_checks-password'),
    RUNBOOK_HYGIENE_PG_CANARY_PASSWORD: stackSecret('pg-runbook_canary-password'),
    RUNBOOK_HYGIENE_WRONG_PASSWORD: `wrong-${randomBytes(12).toString('hex')}`,
    // The S3 and Route 53 server takes any credentials, so distinctive ones are planted.
    RUNBOOK_HYGIENE_S3_KEY_ID: `HYGIENE${randomBytes(8).toString('hex').toUpperCase()}`,
    RUNBOOK_HYGIENE_S3_SECRET: randomBytes(30).toString('base64'),
    RUNBOOK_HYGIENE_R53_KEY_ID: `ROUTE${randomBytes(8).toString('hex').toUpperCase()}`,
    RUNBOOK_HYGIENE_R53_SECRET: randomBytes(30).toString('base64'),
    // The name server checks this one: it is the stack's real TSIG key.
    RUNBOOK_HYGIENE_TSIG: stackSecret('tsig.key'),
    RUNBOOK_HYGIENE_CODEC_KEY: randomBytes(32).toString('base64'),
    RUNBOOK_HYGIENE_CODEC_TOKEN: randomBytes(24).toString('hex'),
    RUNBOOK_HYGIENE_API_KEY: `tmprl-${randomBytes(20).toString('hex')}`,
    RUNBOOK_HYGIENE_WEBHOOK_SECRET: `whsec-${randomBytes(16).toString('hex')}`,
    RUNBOOK_HYGIENE_SLACK_URL: `http://127.0.0.1:${receiverPort}/services/T0HYGIENE/B0HYGIENE/${randomBytes(12).toString('hex')}`,
    RUNBOOK_HYGIENE_SMTP_PASSWORD: `smtp-${randomBytes(12).toString('hex')}`,
  });
  fileSecrets.push(
    { name: 'signing key of sandbox-operator', lines: pemBody(join(stack.dir, 'keys', 'sandbox-operator')) },
    { name: 'signing key of sandbox-reviewer', lines: pemBody(join(stack.dir, 'keys', 'sandbox-reviewer')) },
    { name: 'Temporal client TLS key', lines: pemBody(clientCert.key) },
  );
  for (const f of fileSecrets) assert.ok(f.lines.length > 0, `${f.name} has a body`);

  const wrappers = join(dir, 'bin');
  writeWrappers(wrappers);
  Object.assign(env, secrets, { [SENTINEL.name]: SENTINEL.value, PG_BIN: wrappers, PATH: `${wrappers}:${process.env.PATH}` });
  // The test's own client reads the same references.
  Object.assign(process.env, secrets);

  const doc = parse(readFileSync(stack.configFile, 'utf8'));
  const sandbox = doc.environments.sandbox;
  sandbox.temporal = {
    address: `127.0.0.1:${tls.port}`,
    namespace: 'default',
    apiKey: 'env:RUNBOOK_HYGIENE_API_KEY',
    tls: { serverCa: `file:${ca.cert}`, clientCert: `file:${clientCert.cert}`, clientKey: `file:${clientCert.key}`, serverName: 'temporal.sandbox.test' },
    encryption: { activeKey: 'k1', keys: [{ id: 'k1', key: 'env:RUNBOOK_HYGIENE_CODEC_KEY' }], codecServer: { tokens: [{ name: 'sre-cli', token: 'env:RUNBOOK_HYGIENE_CODEC_TOKEN' }] } },
  };
  const main = sandbox.databases.main;
  main.password = 'env:RUNBOOK_HYGIENE_PG_PASSWORD';
  for (const purpose of ['backup', 'drill', 'checks', 'canary']) main.roles[purpose].password = `env:RUNBOOK_HYGIENE_PG_${purpose.toUpperCase()}_PASSWORD`;
  // The primary's own address: the sandbox's main database is found through its topology, without a host.
  const primary = { host: stack.postgres!.host, port: stack.postgres!.port };
  sandbox.databases.locked = { ...primary, database: 'app', user: 'postgres', password: 'env:RUNBOOK_HYGIENE_WRONG_PASSWORD' };
  Object.assign(sandbox.backups, { prefix: 'hygiene/', accessKeyId: 'env:RUNBOOK_HYGIENE_S3_KEY_ID', secretAccessKey: 'env:RUNBOOK_HYGIENE_S3_SECRET' });
  sandbox.dns.tsig.secret = 'env:RUNBOOK_HYGIENE_TSIG';
  sandbox.kubernetes.deployments = ['shop'];
  sandbox.notifications = {
    channels: [
      { type: 'webhook', name: 'hook', url: `http://127.0.0.1:${receiverPort}/hook`, secret: 'env:RUNBOOK_HYGIENE_WEBHOOK_SECRET' },
      { type: 'slack', name: 'chat', url: 'env:RUNBOOK_HYGIENE_SLACK_URL' },
      { type: 'email', name: 'mail', host: smtp.host, port: smtp.port, username: 'runbook', password: 'env:RUNBOOK_HYGIENE_SMTP_PASSWORD', from: 'runbook@sandbox.test', to: ['oncall@sandbox.test'] },
    ],
    gates: ['hook', 'chat', 'mail'],
    failures: ['hook', 'chat', 'mail'],
  };
  // The same databases and server through Route 53: its own task queues, so each worker takes its own runs.
  const cloud = structuredClone(sandbox);
  cloud.temporal.taskQueues = { critical: 'cloud-critical', standard: 'cloud-standard', batch: 'cloud-batch' };
  delete cloud.databases.locked;
  delete cloud.kubernetes;
  delete cloud.notifications;
  cloud.backups.prefix = 'hygiene-cloud/';
  cloud.dns = {
    provider: 'route53',
    zone: sandbox.dns.zone,
    records: { db: { name: 'db', ttl: 30 } },
    route53: { endpoint: stack.s3!.endpoint, region: 'us-east-1', accessKeyId: 'env:RUNBOOK_HYGIENE_R53_KEY_ID', secretAccessKey: 'env:RUNBOOK_HYGIENE_R53_SECRET' },
  };
  doc.environments = { sandbox, cloud };
  doc.schedules = [];
  doc.worker = { ...doc.worker, logLevel: 'debug' };
  configFile = join(stack.dir, 'hygiene.yaml');
  writeFileSync(configFile, stringify(doc));

  const admin = new PgClient({ host: stack.postgres!.host, port: stack.postgres!.port, user: 'postgres', password: superuserPassword(stack), database: 'app' });
  await admin.connect();
  await seedSampleDatabase(admin, { rows: 300 });
  await admin.end();
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(stack.kubernetes!.kubeconfig);
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  await createSampleDeployment(apps, { name: 'shop', image: 'registry.sandbox.test/shop:1.0', replicas: 2 });
  await waitFor('shop available', async () => ((await apps.readNamespacedDeployment({ name: 'shop', namespace: 'default' })).status?.availableReplicas ?? 0) === 2, 120_000, 250);

  await Promise.all([startWorker('sandbox', ['--env', 'sandbox']), startWorker('cloud', ['--env', 'cloud'])]);
  // The test's own client: waits for gates and reads histories (the operator's commands go through the CLI).
  const loaded = loadConfig(configFile);
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);

  ok(await cli(['smoke']), 'smoke');
  ok(await cli(['backup', 'run', '--database', 'main']), 'backup');
  ok(await cli(['backup', 'verify', '--database', 'main', '--latest']), 'restore test');
  const refused = await cli(['--json', 'backup', 'run', '--database', 'locked']);
  assert.equal(refused.code, 1);
  assert.match(refused.stdout, /AuthenticationFailed|password authentication failed/);

  // A drill through the TSIG-signed RFC 2136 path.
  ids.drill = await drill('sandbox');

  // A gated canary rollout: the gate is announced on every channel, the reviewer approves.
  ok(await cli(['rollout', 'start', 'shop', '--image', 'registry.sandbox.test/shop:1.1', '--steps', '50,pause', '--health-timeout', '2m']), 'rollout start');
  const rollout = c.client.workflow.getHandle('rollout-sandbox-shop');
  await waitFor('the rollout gate', async () => {
    const { status } = await rollout.describe();
    if (status.name !== 'RUNNING') throw new Error(`the rollout ended ${status.name}: ${await rollout.result().then(JSON.stringify, (e: Error) => failureMessage(e))}`);
    return (await rollout.query(rolloutStatusQuery)).phase === 'paused';
  }, 180_000, 250);
  ok(await cli(['rollout', 'approve', 'shop', '--key', join(stack.dir, 'keys', 'sandbox-reviewer'), '--comment', 'hygiene']), 'rollout approve');
  const watched = await cli(['rollout', 'status', 'shop', '--watch']);
  ok(watched, 'rollout status --watch');
  assert.match(watched.stdout, /promoted/);

  // A go-live, stopped at its audit gate (nothing has proved on-call, the drills of a quarter, ...); its failure is announced.
  const analysis = join(dir, 'analysis.yaml');
  writeFileSync(analysis, stringify({ intervalSeconds: 1, count: 1, http: [{ name: 'health', url: `http://127.0.0.1:${receiverPort}/healthz`, expectStatus: 200 }] }));
  const golive = await cli(['golive', 'start', 'shop', '--image', 'registry.sandbox.test/shop:1.2', '--analysis', analysis, '--watch', '3s', '--watch-interval', '1s', '--check-timeout', '5', '--certificate-min-days', '1', '--wait']);
  assert.equal(golive.code, 1, golive.stderr);
  assert.match(golive.stdout + golive.stderr, /audit gate/);

  // The second drill switches the service name through Route 53 (the S3 server answers its API too).
  const r53 = new Route53Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', credentials: { accessKeyId: secrets.RUNBOOK_HYGIENE_R53_KEY_ID, secretAccessKey: secrets.RUNBOOK_HYGIENE_R53_SECRET } });
  try {
    const zone = await r53.send(new CreateHostedZoneCommand({ Name: `${sandbox.dns.zone}.`, CallerReference: randomBytes(8).toString('hex') }));
    // Where the first drill left the service name: the same primary, now named through Route 53.
    const resolver = new Resolver();
    resolver.setServers([sandbox.dns.server]);
    const [primary] = await resolver.resolve4(`db.${sandbox.dns.zone}`);
    await r53.send(new ChangeResourceRecordSetsCommand({ HostedZoneId: zone.HostedZone!.Id!.replace('/hostedzone/', ''), ChangeBatch: { Changes: [{ Action: 'UPSERT', ResourceRecordSet: { Name: `db.${sandbox.dns.zone}.`, Type: 'A', TTL: 30, ResourceRecords: [{ Value: primary }] } }] } }));
  } finally {
    r53.destroy();
  }
  // The first drill's failback already rejoined a former primary (pg_rewind): this one leaves the roles switched.
  ids.cloudDrill = await drill('cloud', ['--no-failback']);

  // The codec server decodes a stored payload for the CLI's token; its output is checked like the rest.
  const codecServer = startCli(['--config', configFile, 'codec-server', '--port', '0'], { env });
  try {
    const url = await waitFor('the codec server', async () => jsonLines(codecServer.output.stdout).find((l) => l.msg === 'codec server listening')?.url as string | undefined, 180_000, 250);
    const { history } = await c.connection.workflowService.getWorkflowExecutionHistory({ namespace: c.namespace, execution: { workflowId: ids.drill } });
    const [payload] = payloadsIn(history);
    const res = await fetch(`${url}/decode`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secrets.RUNBOOK_HYGIENE_CODEC_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ payloads: [{ metadata: Object.fromEntries(Object.entries(payload.metadata!).map(([k, v]) => [k, Buffer.from(v).toString('base64')])), data: Buffer.from(payload.data!).toString('base64') }] }),
    });
    assert.equal(res.status, 200);
    outputs.push({ what: 'codec server answer', text: await res.text() });
  } finally {
    codecServer.child.kill('SIGTERM');
    await codecServer.exited;
    outputs.push({ what: 'codec server stdout', text: codecServer.output.stdout }, { what: 'codec server stderr', text: codecServer.output.stderr });
  }
  for (const w of workers) outputs.push({ what: `${w.name} worker /metrics`, text: await (await fetch(`${w.httpUrl}/metrics`)).text() });
});

after(async () => {
  await c?.close();
  for (const w of workers) {
    if (w.proc.child.exitCode === null) {
      w.proc.child.kill('SIGTERM');
      await w.proc.exited;
    }
  }
  await front?.close();
  receiver?.close();
  if (smtp) await stopSmtpServer(smtp.pid);
  if (stack) await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
});

/** The planted secrets found in a text: each as written and base64-encoded, and each line of the private keys. */
function findSecrets(text: string): string[] {
  const found: string[] = [];
  for (const [name, value] of Object.entries(secrets)) {
    if (text.includes(value) || text.includes(Buffer.from(value).toString('base64'))) found.push(name);
  }
  for (const f of fileSecrets) if (f.lines.some((l) => text.includes(l))) found.push(f.name);
  if (text.includes(SENTINEL.value)) found.push(SENTINEL.name);
  return found;
}

function byteAndStringLeaves(value: unknown, out: string[] = []): string[] {
  if (value instanceof Uint8Array) out.push(Buffer.from(value).toString('latin1'));
  else if (typeof value === 'string') out.push(value);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) byteAndStringLeaves(v, out);
  return out;
}

/** Every payload of a history but the search attributes (which the server indexes, so they are never encrypted), with where it is. */
function payloadsIn(value: unknown, path = 'history', out: Payload[] = [], paths: string[] = []): Payload[] & { paths?: string[] } {
  if (!value || typeof value !== 'object' || value instanceof Uint8Array) return Object.assign(out, { paths });
  const metadata = (value as Payload).metadata;
  if (metadata && typeof metadata === 'object' && 'encoding' in metadata) {
    out.push(value as Payload);
    paths.push(path);
  } else for (const [k, v] of Object.entries(value)) if (k !== 'searchAttributes') payloadsIn(v, `${path}.${k}`, out, paths);
  return Object.assign(out, { paths });
}

describe('no secret leaves its reference', () => {
  test('the workers\' logs (debug level) hold none of the planted secrets', async () => {
    for (const w of workers) {
      w.proc.child.kill('SIGTERM');
      const exit = await w.proc.exited;
      assert.equal(exit.code, 0, w.proc.output.stderr);
    }
    const lines = workers.flatMap((w) => `${w.proc.output.stdout}\n${w.proc.output.stderr}`.split('\n').filter(Boolean).map((line) => ({ worker: w.name, line })));
    // The runs above were logged, at debug level, including the refused backup's error.
    assert.ok(lines.length > 100, `only ${lines.length} log lines`);
    assert.ok(lines.some((l) => l.line.includes('"level":"debug"')), 'debug lines are among them');
    const logged = jsonLines(workers.find((w) => w.name === 'sandbox')!.proc.output.stdout);
    assert.ok(logged.some((l) => /password authentication failed|AuthenticationFailed/.test(JSON.stringify(l))), 'the refused backup was logged');
    for (const type of ['drDrill', 'rollout', 'goLive', 'readinessAudit']) assert.ok(logged.some((l) => l.workflowType === type), `${type} logged`);
    assert.ok(jsonLines(workers.find((w) => w.name === 'cloud')!.proc.output.stdout).some((l) => l.workflowType === 'drDrill'), 'the Route 53 drill logged');
    for (const { worker, line } of lines) assert.deepEqual(findSecrets(line), [], `${worker} worker log: ${line.slice(0, 300)}`);
  });

  test('the CLI\'s output, the codec server\'s output and /metrics hold none of them', () => {
    assert.ok(outputs.length >= 30, `${outputs.length} outputs`);
    for (const { what, text } of outputs) assert.deepEqual(findSecrets(text), [], what);
  });

  test('the notifications delivered (webhook, Slack, email) hold none of them', () => {
    const hooks = received.filter((r) => r.path === '/hook');
    const slack = received.filter((r) => r.path.startsWith('/services/'));
    const mails = deliveredMail(smtp);
    assert.ok(hooks.length >= 2 && slack.length >= 2 && mails.length >= 2, `${hooks.length} webhook, ${slack.length} Slack, ${mails.length} email deliveries`);
    assert.ok(hooks.some((h) => /"runbook":"goLive"/.test(h.body)), 'the stopped go-live was announced');
    for (const r of hooks) assert.deepEqual(findSecrets(`${r.headers}\n${r.body}`), [], `webhook ${r.body.slice(0, 200)}`);
    for (const r of slack) assert.deepEqual(findSecrets(`${r.headers}\n${r.body}`), [], `Slack ${r.body.slice(0, 200)}`);
    for (const m of mails) assert.deepEqual(findSecrets(m), [], `email ${m.slice(0, 200)}`);
  });

  test('the objects the runbooks wrote to S3 (dumps, manifests, restore-test, drill and go-live reports, the evidence log) hold none of them', async () => {
    const s3 = new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: secrets.RUNBOOK_HYGIENE_S3_KEY_ID, secretAccessKey: secrets.RUNBOOK_HYGIENE_S3_SECRET } });
    try {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'runbook-backups', ContinuationToken: token }));
        keys.push(...(listed.Contents ?? []).map((o) => o.Key!));
        token = listed.NextContinuationToken;
      } while (token);
      for (const expected of [/^hygiene\/main\/.*\/restore-tests\/.*\.json$/, /^hygiene\/drills\/.*\.html$/, /^hygiene-cloud\/drills\/.*\.json$/, /^hygiene\/golive\/.*report\.json$/]) {
        assert.ok(keys.some((k) => expected.test(k)), `no object like ${expected} among ${keys.join(', ')}`);
      }
      for (const key of keys) {
        const body = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: 'runbook-backups', Key: key }))).Body!.transformToByteArray());
        assert.deepEqual(findSecrets(body.toString('latin1')), [], key);
      }
    } finally {
      s3.destroy();
    }
  });

  test('every history, raw and with every payload decrypted, holds none of them', async () => {
    const loaded = loadConfig(configFile);
    const codec = encryptionCodecFor(loaded, 'sandbox', loaded.config.environments.sandbox.temporal)!;
    const types = new Set<string>();
    let decrypted = 0;
    for await (const w of c.client.workflow.list()) {
      types.add(w.type);
      const { history } = await c.connection.workflowService.getWorkflowExecutionHistory({ namespace: c.namespace, execution: { workflowId: w.workflowId, runId: w.runId } });
      // Every one is encrypted but the SDK core's own patch-marker data: the codec requires it, and says where one is not.
      const all = payloadsIn(history);
      const payloads = Object.assign(
        all.filter((p, i) => !(/markerRecordedEventAttributes\.details\.patch-data\./.test(all.paths![i]) && isSdkPatchMarkerData(p))),
        { paths: all.paths!.filter((path, i) => !(/markerRecordedEventAttributes\.details\.patch-data\./.test(path) && isSdkPatchMarkerData(all[i]))) },
      );
      const decoded = await Promise.all(payloads.map((p, i) => codec.decode([p]).then(([d]) => d, (err: Error) => assert.fail(`${w.type} ${w.workflowId} ${payloads.paths![i]}: ${err.message}`))));
      decrypted += decoded.length;
      for (const text of [...byteAndStringLeaves(history), ...byteAndStringLeaves(decoded)]) assert.deepEqual(findSecrets(text), [], `${w.type} ${w.workflowId}`);
    }
    for (const type of ['smokeTest', 'backupDatabase', 'verifyBackup', 'drDrill', 'rollout', 'goLive', 'readinessAudit']) assert.ok(types.has(type), `a ${type} history was read`);
    assert.ok(decrypted > 200, `only ${decrypted} payloads`);
  });

  test('the programs the worker and the CLI started got only what they need: no planted secret, no variable of the worker\'s own', () => {
    const allowed = new Set(['PATH', 'LANG', 'LANGUAGE', 'LC_ALL', 'LC_CTYPE', 'LC_MESSAGES', 'TZ', 'HOME', 'SSH_AUTH_SOCK', 'PGPASSWORD', 'PGAPPNAME', 'PGCONNECT_TIMEOUT', 'PGSSLMODE', 'PGSSLROOTCERT', 'PGSSLCERT', 'PGSSLKEY', 'PGSSLCRL', 'PGSSLCRLDIR', 'PGSSLMINPROTOCOLVERSION']);
    const seen = new Set<string>();
    for (const file of readdirSync(childEnvDir)) {
      const tool = file.replace(/\.\d+$/, '');
      seen.add(tool);
      const vars = Object.fromEntries(
        readFileSync(join(childEnvDir, file), 'utf8')
          .split('\0')
          .filter(Boolean)
          .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
      );
      const extra = Object.keys(vars).filter((k) => !allowed.has(k));
      assert.deepEqual(extra, [], `${tool} got variables it does not need`);
      // A PostgreSQL tool gets the password of the server it connects to, in PGPASSWORD, and nothing else secret.
      const { PGPASSWORD, ...rest } = vars;
      if (PGPASSWORD !== undefined) {
        assert.ok(tool.startsWith('pg_'), `${tool} got a PGPASSWORD`);
        // A configured database's password, or that of a scratch instance the worker started for a restore
        // test (generated for it, no secret of the config): never any other planted secret.
        const configured = Object.entries(secrets).filter(([k]) => /^RUNBOOK_HYGIENE_(PG_\w*PASSWORD|WRONG_PASSWORD)$/.test(k)).map(([, v]) => v);
        const planted = Object.values(secrets).filter((v) => !configured.includes(v));
        assert.ok(configured.includes(PGPASSWORD) || ((tool.startsWith('pg_restore') || tool.startsWith('pg_dumpall')) && !planted.includes(PGPASSWORD)), `${tool}: PGPASSWORD is a configured database password or a scratch instance's own`);
      }
      assert.deepEqual(findSecrets(Object.entries(rest).map(([k, v]) => `${k}=${v}`).join('\n')), [], `${tool}'s environment`);
    }
    for (const tool of ['pg_dump', 'pg_restore', 'pg_ctl', 'nsupdate', 'ssh-keygen']) assert.ok(seen.has(tool), `${tool} ran (seen: ${[...seen].join(', ')})`);
    assert.ok(seen.has('pg_rewind') || seen.has('pg_basebackup'), 'a former primary rejoined');
  });
});
