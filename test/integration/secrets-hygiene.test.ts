import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import type { Payload } from '@temporalio/common';
import { Client as PgClient } from 'pg';
import { ConnectedClient, connectClient } from '../../src/cli/client';
import { encryptionCodecFor } from '../../src/codec';
import { loadConfig } from '../../src/config/load';
import { seedSampleDatabase } from '../../src/sandbox/seed';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { CliResult, jsonLines, runCli, startCli, waitFor } from '../helpers';

/**
 * Secrets reach the worker only through env: references. After real runs (a smoke test, a backup,
 * a restore test, a backup refused for a wrong password), none of them may be found in the worker's
 * log lines (at debug level), the CLI's output, /metrics, any object the runbooks wrote to S3
 * (manifests, restore-test reports) or any payload of any history, decrypted.
 */
const dir = mkdtempSync(join(tmpdir(), 'runbook-hygiene-test-'));
chmodSync(dir, 0o755);
let stack: StackState;
let c: ConnectedClient;
let configFile: string;
const secrets: Record<string, string> = {};
const env: Record<string, string> = {};
const outputs: { what: string; text: string }[] = [];
let worker: ReturnType<typeof startCli>;

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 's3'] });
  const pg = stack.postgres!;
  secrets.RUNBOOK_HYGIENE_PG_PASSWORD = readFileSync(join(stack.dir, 'secrets', 'postgres-password'), 'utf8').trim();
  // The S3 server takes any credentials, so distinctive ones are planted (the sandbox's own are the word "sandbox").
  secrets.RUNBOOK_HYGIENE_S3_KEY_ID = `HYGIENE${randomBytes(8).toString('hex').toUpperCase()}`;
  secrets.RUNBOOK_HYGIENE_S3_SECRET = randomBytes(30).toString('base64');
  secrets.RUNBOOK_HYGIENE_WRONG_PASSWORD = `wrong-${randomBytes(12).toString('hex')}`;
  secrets.RUNBOOK_HYGIENE_CODEC_KEY = randomBytes(32).toString('base64');
  Object.assign(env, secrets);
  Object.assign(process.env, secrets);
  configFile = join(dir, 'runbook.yaml');
  const db = (password: string) => `{ host: ${pg.host}, port: ${pg.port}, database: app, user: postgres, password: env:${password} }`;
  writeFileSync(
    configFile,
    `version: 1
defaultEnvironment: sandbox
environments:
  sandbox:
    temporal:
      address: "${stack.temporal!.address}"
      encryption: { activeKey: k1, keys: [{ id: k1, key: env:RUNBOOK_HYGIENE_CODEC_KEY }] }
    databases:
      main: ${db('RUNBOOK_HYGIENE_PG_PASSWORD')}
      locked: ${db('RUNBOOK_HYGIENE_WRONG_PASSWORD')}
    backups:
      bucket: runbook-backups
      prefix: hygiene/
      endpoint: ${stack.s3!.endpoint}
      forcePathStyle: true
      accessKeyId: env:RUNBOOK_HYGIENE_S3_KEY_ID
      secretAccessKey: env:RUNBOOK_HYGIENE_S3_SECRET
worker:
  logLevel: debug
`,
  );
  const admin = new PgClient({ host: pg.host, port: pg.port, user: 'postgres', password: secrets.RUNBOOK_HYGIENE_PG_PASSWORD, database: 'app' });
  await admin.connect();
  await seedSampleDatabase(admin, { rows: 500 });
  await admin.end();

  worker = startCli(['--config', configFile, 'worker', '--http-port', '0'], { env });
  const httpUrl = await waitFor('the worker to poll', async () => {
    const lines = jsonLines(worker.output.stdout);
    return lines.some((l) => l.msg === 'worker polling') ? (lines.find((l) => l.msg === 'worker started')?.httpUrl as string | undefined) : undefined;
  }, 60_000);

  const cli = async (what: string, args: string[]): Promise<CliResult> => {
    const r = await runCli(['--config', configFile, ...args], { env, timeoutMs: 180_000 });
    outputs.push({ what: `runbook ${args.join(' ')} (stdout)`, text: r.stdout }, { what: `runbook ${args.join(' ')} (stderr)`, text: r.stderr });
    return r;
  };
  assert.equal((await cli('smoke', ['smoke'])).code, 0);
  assert.equal((await cli('backup', ['backup', 'run', '--database', 'main'])).code, 0);
  assert.equal((await cli('verify', ['backup', 'verify', '--database', 'main', '--latest'])).code, 0);
  const refused = await cli('backup with a wrong password', ['--json', 'backup', 'run', '--database', 'locked']);
  assert.equal(refused.code, 1);
  assert.match(refused.stdout, /AuthenticationFailed|password authentication failed/);
  outputs.push({ what: 'worker /metrics', text: await (await fetch(`${httpUrl}/metrics`)).text() });
  c = await connectClient(loadConfig(configFile), 'sandbox', loadConfig(configFile).config.environments.sandbox);
});

after(async () => {
  await c?.close();
  if (worker && worker.child.exitCode === null) {
    worker.child.kill('SIGTERM');
    await worker.exited;
  }
  await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
});

/** Each secret as written, and base64-encoded (as it would be inside Basic auth or a JSON bytes field). */
function findSecrets(text: string): string[] {
  const found: string[] = [];
  for (const [name, value] of Object.entries(secrets)) {
    if (text.includes(value) || text.includes(Buffer.from(value).toString('base64'))) found.push(name);
  }
  return found;
}

function byteAndStringLeaves(value: unknown, out: string[] = []): string[] {
  if (value instanceof Uint8Array) out.push(Buffer.from(value).toString('latin1'));
  else if (typeof value === 'string') out.push(value);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) byteAndStringLeaves(v, out);
  return out;
}

function payloadsIn(value: unknown, out: Payload[] = []): Payload[] {
  if (!value || typeof value !== 'object' || value instanceof Uint8Array) return out;
  const metadata = (value as Payload).metadata;
  if (metadata && typeof metadata === 'object' && 'encoding' in metadata) out.push(value as Payload);
  else for (const v of Object.values(value)) payloadsIn(v, out);
  return out;
}

describe('no secret leaves its reference', () => {
  test('the worker logs (debug level) hold none of the planted secrets', async () => {
    worker.child.kill('SIGTERM');
    const exit = await worker.exited;
    assert.equal(exit.code, 0, worker.output.stderr);
    const lines = worker.output.stdout.split('\n').concat(worker.output.stderr.split('\n')).filter(Boolean);
    // The runs above were logged: the check is over real lines, including the refused backup's error.
    assert.ok(lines.length > 20, `only ${lines.length} log lines`);
    assert.ok(jsonLines(worker.output.stdout).some((l) => /password authentication failed|AuthenticationFailed/.test(JSON.stringify(l))), 'the refused backup was logged');
    for (const [i, line] of lines.entries()) assert.deepEqual(findSecrets(line), [], `worker log line ${i + 1}: ${line.slice(0, 300)}`);
  });

  test('the CLI output and /metrics hold none of them', () => {
    assert.ok(outputs.length >= 9);
    for (const { what, text } of outputs) assert.deepEqual(findSecrets(text), [], what);
  });

  test('the objects the runbooks wrote to S3 (manifests, restore-test reports, dumps) hold none of them', async () => {
    const s3 = new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: secrets.RUNBOOK_HYGIENE_S3_KEY_ID, secretAccessKey: secrets.RUNBOOK_HYGIENE_S3_SECRET } });
    try {
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'runbook-backups', Prefix: 'hygiene/' }));
      const keys = (listed.Contents ?? []).map((o) => o.Key!);
      assert.ok(keys.some((k) => /restore-tests\/.*\.json$/.test(k)) && keys.some((k) => /restore-tests\/.*\.md$/.test(k)), `no restore-test report among ${keys.join(', ')}`);
      for (const key of keys) {
        const body = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: 'runbook-backups', Key: key }))).Body!.transformToByteArray());
        assert.deepEqual(findSecrets(body.toString('latin1')), [], key);
      }
    } finally {
      s3.destroy();
    }
  });

  test('every history, raw and with every payload decrypted, holds none of them', async () => {
    const codec = encryptionCodecFor(loadConfig(configFile), 'sandbox', loadConfig(configFile).config.environments.sandbox.temporal)!;
    const types = new Set<string>();
    let decrypted = 0;
    for await (const w of c.client.workflow.list()) {
      types.add(w.type);
      const { history } = await c.connection.workflowService.getWorkflowExecutionHistory({ namespace: c.namespace, execution: { workflowId: w.workflowId, runId: w.runId } });
      const decoded = await codec.decode(payloadsIn(history));
      decrypted += decoded.length;
      for (const text of [...byteAndStringLeaves(history), ...byteAndStringLeaves(decoded)]) assert.deepEqual(findSecrets(text), [], `${w.type} ${w.workflowId}`);
    }
    assert.deepEqual([...types].sort(), ['backupDatabase', 'smokeTest', 'verifyBackup']);
    assert.ok(decrypted > 20, `only ${decrypted} payloads`);
  });
});
