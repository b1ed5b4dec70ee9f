/**
 * Records workflow histories of every runbook (a happy path and a failure path each) into
 * test/histories/, for the replay test that keeps in-flight runs safe from incompatible changes.
 *
 *   node --import tsx scripts/record-histories.ts
 *
 * Re-record only for an intentional, patched() change; see README "Changing a runbook safely".
 */
import type { WorkflowHandle } from '@temporalio/client';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client as PgClient } from 'pg';
import { connectClient } from '../src/cli/client';
import { loadConfig } from '../src/config/load';
import { readSecret } from '../src/config/secrets';
import { createLogger } from '../src/observability/logger';
import { seedSampleDatabase } from '../src/sandbox/seed';
import { startStack, stopStack } from '../src/sandbox/stack';
import { findTemporalCli } from '../src/sandbox/temporal';
import { decideUpdate } from '../src/workflows/lib/gate';
import { waitForOpenGate } from '../src/cli/drill';
import { RunbookWorker } from '../src/worker';

const repoRoot = join(__dirname, '..');
const out = join(repoRoot, 'test', 'histories');

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'runbook-record-'));
  chmodSync(dir, 0o755);
  const stack = await startStack({ dir });
  const loaded = loadConfig(stack.configFile);
  const worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  try {
    const db = loaded.config.environments.sandbox.databases.main;
    const pg = new PgClient({ host: db.host, port: db.port, user: db.user, password: readSecret(db.password, loaded.baseDir), database: db.database });
    await pg.connect();
    await seedSampleDatabase(pg, { rows: 2_000 });
    await pg.end();
    await worker.start();
    await worker.waitUntilReady();
    const c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
    mkdirSync(out, { recursive: true });
    const save = async (name: string, handle: WorkflowHandle) => {
      await handle.result().catch(() => undefined);
      // The Temporal CLI writes the history JSON format every Temporal tool reads.
      const json = execFileSync(findTemporalCli(), ['workflow', 'show', '--address', stack.temporal!.address, '--workflow-id', handle.workflowId, '--output', 'json'], { encoding: 'utf8' });
      // Failure stack traces carry this checkout's absolute path; keep histories machine-independent.
      writeFileSync(join(out, `${name}.json`), json.split(repoRoot).join('.'));
      console.log(`recorded ${name}`);
    };
    const start = (type: string, queue: string, input: Record<string, unknown>) =>
      c.client.workflow.start(type, { taskQueue: queue, workflowId: `record-${type}-${Date.now()}`, args: [{ environment: 'sandbox', ...input }] });
    const approve = async (h: WorkflowHandle, decision: 'approve' | 'reject') => {
      await waitForOpenGate(h);
      await h.executeUpdate(decideUpdate, { args: [{ decision, by: 'sandbox-operator' }] });
    };

    await save('smokeTest-passed', await start('smokeTest', 'standard-queue', {}));
    await save('smokeTest-invalid-input', await start('smokeTest', 'standard-queue', { holdSeconds: -1 }));
    await save('backupDatabase-passed', await start('backupDatabase', 'batch-queue', { database: 'main' }));
    await save('backupDatabase-unknown-database', await start('backupDatabase', 'batch-queue', { database: 'nosuch' }));
    await save('verifyBackup-passed', await start('verifyBackup', 'batch-queue', { database: 'main' }));
    await save('verifyBackup-no-such-backup', await start('verifyBackup', 'batch-queue', { database: 'main', selection: { mode: 'key', backupId: '20200101T000000Z-abcdef' } }));
    const rejected = await start('drDrill', 'critical-queue', { database: 'main', mode: 'failover' });
    await approve(rejected, 'reject');
    await save('drDrill-rejected', rejected);
    const drill = await start('drDrill', 'critical-queue', { database: 'main', mode: 'failover' });
    await approve(drill, 'approve');
    await save('drDrill-failover-passed', drill);
    await c.close();
  } finally {
    await worker.shutdown().catch(() => undefined);
    await stopStack(stack);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
