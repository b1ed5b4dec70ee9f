import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client as PgClient } from 'pg';
import { parse, stringify } from 'yaml';
import { ConnectedClient, connectClient } from '../../src/cli/client';
import { loadConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { controlNode, patroniCluster, PATRONI_STANZA, waitForPatroniHealthy } from '../../src/sandbox/patroni';
import { seedSampleDatabase } from '../../src/sandbox/seed';
import { PATRONI_PITR_DATABASE_KEY, StackState, startStack, stopStack } from '../../src/sandbox/stack';
import type { PhysicalBackupDatabaseResult } from '../../src/workflows/backupDatabase';
import type { RestoreCanaryResult } from '../../src/workflows/restoreCanary';
import type { VerifyBackupResult } from '../../src/workflows/verifyBackup';
import { RunbookWorker } from '../../src/worker';
import { waitFor } from '../helpers';
import { sandboxRepositoryInfo } from '../pgbackrest-repo';

/*
 * WAL archiving on the Patroni cluster: every member carries the same archive_command (pgBackRest into
 * the cluster's own stanza on the sandbox S3 server's TLS endpoint), PostgreSQL runs it on the leader
 * only, so after a failover the new leader archives on the next timeline. Backups follow the leader,
 * and a point-in-time restore test from a backup taken before the failover replays across the timeline
 * switch to a moment after it.
 */

const dir = mkdtempSync(join(tmpdir(), 'runbook-patroni-pgbackrest-test-'));
chmodSync(dir, 0o755);
const scratchDir = join(dir, 'scratch');
const DB = PATRONI_PITR_DATABASE_KEY;
let stack: StackState;
let worker: RunbookWorker;
let c: ConnectedClient;
let password: string;

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 's3', 'patroni', 'pgbackrest'] });
  password = readFileSync(join(stack.dir, 'secrets', stack.patroni!.secrets.postgresPassword), 'utf8').trim();
  await sql(async (pg) => seedSampleDatabase(pg, { rows: 2_000 }));
  const config = parse(readFileSync(stack.configFile, 'utf8'));
  const env = config.environments.sandbox;
  env.databases[DB].restoreTest = { ...env.databases[DB].restoreTest, scratchDir, assertions: [{ name: 'orders were restored', sql: 'SELECT count(*) = 2000 FROM orders' }] };
  delete config.schedules;
  const file = join(stack.dir, 'patroni-pgbackrest.yaml');
  writeFileSync(file, stringify(config));
  const loaded = loadConfig(file);
  worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  await worker.start();
  await worker.waitUntilReady(180_000);
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
});

after(async () => {
  await c?.close();
  await worker?.shutdown();
  if (stack) await stopStack(stack);
  if (!process.env.RUNBOOK_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
});

const id = (name: string) => `${name}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;

/** A session through HAProxy's write port: whichever member leads. */
async function sql<T>(fn: (pg: PgClient) => Promise<T>): Promise<T> {
  const p = stack.patroni!;
  const pg = new PgClient({ host: p.haproxy.host, port: p.haproxy.writePort, user: 'postgres', password, database: p.database, connectionTimeoutMillis: 5_000 });
  pg.on('error', () => undefined);
  await pg.connect();
  try {
    return await fn(pg);
  } finally {
    await pg.end().catch(() => undefined);
  }
}

async function leader(): Promise<{ name: string; timeline: number }> {
  const l = (await patroniCluster(stack.patroni!)).members.find((m) => m.role === 'leader' && m.state === 'running');
  assert.ok(l, 'a running leader');
  return { name: l.name, timeline: l.timeline ?? 0 };
}

/** Switches the leader to a new WAL segment and waits until the leader has archived it. */
async function archiveNow(): Promise<string> {
  const segment = await sql(async (pg) => (await pg.query<{ f: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS f')).rows[0].f);
  await waitFor('the switched segment archived', async () => {
    const w = await sql(async (pg) => (await pg.query<{ w: string | null }>('SELECT last_archived_wal AS w FROM pg_stat_archiver')).rows[0].w);
    return w !== null && w >= segment;
  }, 90_000, 200);
  return segment;
}

/** The cluster's stanza as pgBackRest reports it, read with the repository settings of the runbook config. */
const repositoryInfo = () => sandboxRepositoryInfo(stack.patroni!.pgbackrest!, stack.s3!, join(dir, 'test-locks'));

const canaryRow = (): Promise<RestoreCanaryResult> => c.client.workflow.execute('restoreCanary', { taskQueue: 'standard-queue', workflowId: id('canary'), args: [{ environment: 'sandbox', database: DB }] });
const backup = (type: 'full' | 'incr'): Promise<PhysicalBackupDatabaseResult> => c.client.workflow.execute('backupDatabase', { taskQueue: 'batch-queue', workflowId: id('backup'), args: [{ environment: 'sandbox', database: DB, type }] });

describe('pgBackRest on the Patroni cluster', () => {
  test('the leader archives WAL into the cluster\'s stanza; after a failover the new leader archives the next timeline, backups follow it, and a restore test replays across the switch', async () => {
    assert.equal(stack.patroni!.pgbackrest!.stanza, PATRONI_STANZA);
    const first = await leader();
    const segment = await archiveNow();
    assert.equal((await repositoryInfo()).archive?.max, segment, 'the leader\'s newest segment is in the repository');
    const before = await canaryRow();
    assert.equal(before.node, first.name, 'the canary is written on the leader');
    const full = await backup('full');
    assert.equal(full.node, first.name, 'the backup is taken on the leader');

    // The leader dies hard; Patroni elects another member, which archives with the same command.
    await controlNode(stack.patroni!, 'kill', first.name);
    const second = await waitFor('a new leader', async () => {
      // Promoted, not only elected: Patroni shows the new timeline once the promotion is done.
      const l = (await patroniCluster(stack.patroni!)).members.find((m) => m.role === 'leader' && m.state === 'running' && m.name !== first.name && (m.timeline ?? 0) > first.timeline);
      return l && { name: l.name, timeline: l.timeline ?? 0 };
    }, 120_000, 250);
    assert.equal(second.timeline, first.timeline + 1);
    await controlNode(stack.patroni!, 'start', first.name);
    await waitForPatroniHealthy(stack.patroni!, 120_000);

    const after1 = await canaryRow();
    assert.equal(after1.node, second.name, 'the canary follows the leader');
    await new Promise((r) => setTimeout(r, 1_500));
    const target = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 1_500));
    const after2 = await canaryRow();
    const archived = await archiveNow();
    assert.equal(parseInt(archived.slice(0, 8), 16), second.timeline, `the new leader archives its timeline (${archived})`);
    assert.equal((await repositoryInfo()).archive?.max, archived);
    const incr = await backup('incr');
    assert.equal(incr.node, second.name, 'the backup after the failover is taken on the new leader');

    // From the backup before the failover, across the timeline switch, to a moment after it.
    const result: VerifyBackupResult = await c.client.workflow.execute('verifyBackup', { taskQueue: 'batch-queue', workflowId: id('verify'), args: [{ environment: 'sandbox', database: DB, selection: { mode: 'time', at: target } }] });
    assert.equal(result.passed, true, result.reasons.join('; '));
    assert.equal(result.pitr!.backup!.label, full.label, 'restored from the backup taken before the failover');
    const canary = result.checks.find((x) => x.name === 'restore canary')!;
    assert.equal(canary.passed, true, canary.detail);
    assert.ok(before.row.id < after1.row.id && after1.row.id < after2.row.id);
    assert.ok(Date.parse(after1.row.writtenAt) < Date.parse(target) && Date.parse(after2.row.writtenAt) > Date.parse(target));
    assert.ok(result.checks.find((x) => x.name === 'WAL archive continuous')!.passed);
    assert.ok(result.checks.find((x) => x.name === 'assertion: orders were restored')!.passed);
    assert.deepEqual(existsSync(scratchDir) ? readdirSync(scratchDir).filter((n) => n.startsWith('restore-test-')) : [], [], 'no scratch instance left');
  });
});
