/**
 * Restore-test benchmark: the verifyBackup runbook's restore against the manual path on the same
 * machine in the same run (download the dump to disk, then pg_restore the file). Two runbook
 * variants: streamed (restoreTest.jobs = 1: S3 straight into pg_restore) and parallel (jobs = 2:
 * spooled to disk, pg_restore -j 2). Each variant runs BENCH_ROUNDS times, interleaved, after a
 * CHECKPOINT, so no variant gets a warmer cache or a quieter disk; the best round of each is compared.
 *
 *   npm run bench:restore                       # about 1 GB of table data
 *   BENCH_ROWS=200000 npm run bench:restore     # a smaller run
 *
 * Prints the machine, the data set, each time and the ratios. Not a test: nothing here asserts.
 */
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { execFile } from 'node:child_process';
import { chmodSync, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { cpus, freemem, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { Client as PgClient } from 'pg';
import { connectClient } from '../src/cli/client';
import { LoadedConfig, loadConfig } from '../src/config/load';
import { readSecret } from '../src/config/secrets';
import { createLogger } from '../src/observability/logger';
import { findPgBinary } from '../src/system/postgres';
import { seedSampleDatabase } from '../src/sandbox/seed';
import { startStack, stopStack } from '../src/sandbox/stack';
import type { BackupDatabaseResult } from '../src/workflows/backupDatabase';
import type { VerifyBackupResult } from '../src/workflows/verifyBackup';
import { RunbookWorker } from '../src/worker';

const run = promisify(execFile);
const rows = Number(process.env.BENCH_ROWS ?? 1_000_000);
const padBytes = Number(process.env.BENCH_PAD_BYTES ?? 960);
const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const mb = (n: number) => `${(n / 1_048_576).toFixed(0)} MB`;

/** The same environment with its own task queues and restore jobs, so two worker variants run side by side. */
function variant(loaded: LoadedConfig, jobs: number, queuePrefix: string): LoadedConfig {
  const copy = structuredClone(loaded);
  const env = copy.config.environments.sandbox;
  env.databases.main.restoreTest.jobs = jobs;
  env.temporal.taskQueues = { critical: `${queuePrefix}-critical`, standard: `${queuePrefix}-standard`, batch: `${queuePrefix}-batch` };
  return copy;
}

async function main(): Promise<void> {
  console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model}), ${mb(totalmem())} memory, ${mb(freemem())} free, node ${process.version}`);
  const dir = mkdtempSync(join(tmpdir(), 'runbook-bench-'));
  chmodSync(dir, 0o755);
  const stack = await startStack({ dir, components: ['temporal', 'postgres', 's3'] });
  const workers: RunbookWorker[] = [];
  try {
    const loaded = loadConfig(stack.configFile);
    const db = loaded.config.environments.sandbox.databases.main;
    const password = readSecret(db.password, loaded.baseDir);
    // A single node without a replica: the config gives its fixed address.
    const pg = new PgClient({ host: db.host!, port: db.port, user: db.user, password, database: db.database });
    await pg.connect();
    let t = Date.now();
    await seedSampleDatabase(pg, { rows, padBytes, randomPadding: true });
    const size = Number((await pg.query<{ n: string }>('SELECT pg_database_size(current_database())::text AS n')).rows[0].n);
    console.log(`data set: ${rows} orders of ~${padBytes} bytes, database ${mb(size)}, generated in ${seconds(Date.now() - t)}`);

    const logger = createLogger('warn');
    const streamed = variant(loaded, 1, 'bench-streamed');
    const parallel = variant(loaded, 2, 'bench-parallel');
    for (const config of [streamed, parallel]) workers.push(new RunbookWorker({ loaded: config, httpPort: 0, logger }));
    await Promise.all(workers.map((w) => w.start()));
    await Promise.all(workers.map((w) => w.waitUntilReady()));
    const c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);

    t = Date.now();
    const backup: BackupDatabaseResult = await c.client.workflow.execute('backupDatabase', {
      taskQueue: 'bench-streamed-batch',
      workflowId: `bench-backup-${Date.now()}`,
      args: [{ environment: 'sandbox', database: 'main' }],
    });
    console.log(`backup: dump of ${mb(backup.bytes)} streamed to S3 in ${seconds(Date.now() - t)}`);

    const s3 = new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey } });
    const file = join(dir, 'manual.pgcustom');
    const restoreArgs = ['-h', db.host!, '-p', String(db.port), '-U', db.user, '-d', 'manual_restore', '--no-owner', '--no-privileges', '--exit-on-error', file];

    const runbookRestore = async (taskQueue: string) => {
      const result: VerifyBackupResult = await c.client.workflow.execute('verifyBackup', { taskQueue, workflowId: `bench-verify-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main' }] });
      if (!result.passed) throw new Error(`restore test failed: ${result.reasons.join('; ')}`);
      return { restore: result.restore!.durationMs, total: Date.parse(result.endedAt) - Date.parse(result.startedAt), phases: result.timeline.steps.find((x) => x.name === 'restore into scratch database')?.evidence.phasesMs };
    };
    const manualRestore = async () => {
      await pg.query('CREATE DATABASE manual_restore');
      const start = Date.now();
      const obj = await s3.send(new GetObjectCommand({ Bucket: 'runbook-backups', Key: `sandbox/main/${backup.backupId}/dump.pgcustom` }));
      await pipeline(obj.Body as Readable, createWriteStream(file));
      const download = Date.now() - start;
      await run(findPgBinary('pg_restore'), restoreArgs, { env: { ...process.env, PGPASSWORD: password } });
      const total = Date.now() - start;
      await pg.query('DROP DATABASE manual_restore');
      rmSync(file);
      return { restore: total, download, pgRestore: total - download };
    };

    const best = { streamed: Infinity, parallel: Infinity, manual: Infinity, streamedTotal: Infinity };
    for (let round = 1; round <= rounds; round++) {
      await pg.query('CHECKPOINT');
      const s = await runbookRestore('bench-streamed-batch');
      await pg.query('CHECKPOINT');
      const p = await runbookRestore('bench-parallel-batch');
      await pg.query('CHECKPOINT');
      const m = await manualRestore();
      console.log(
        `round ${round}: runbook streamed ${seconds(s.restore)} ${JSON.stringify(s.phases)}; runbook parallel ${seconds(p.restore)} ${JSON.stringify(p.phases)}; ` +
          `manual ${seconds(m.restore)} (download ${seconds(m.download)} + pg_restore ${seconds(m.pgRestore)}); runbook streamed end to end incl. validation ${seconds(s.total)}`,
      );
      best.streamed = Math.min(best.streamed, s.restore);
      best.parallel = Math.min(best.parallel, p.restore);
      best.manual = Math.min(best.manual, m.restore);
      best.streamedTotal = Math.min(best.streamedTotal, s.total);
    }
    s3.destroy();
    await c.close();
    await pg.end();
    console.log(`best of ${rounds}: runbook streamed ${seconds(best.streamed)}, runbook parallel (2 jobs) ${seconds(best.parallel)}, manual download + pg_restore ${seconds(best.manual)}`);
    console.log(`ratio manual / runbook streamed: ${(best.manual / best.streamed).toFixed(2)}x; manual / runbook parallel: ${(best.manual / best.parallel).toFixed(2)}x (above 1: the runbook is faster)`);
    console.log(`the whole restore test (selection, restore, validation of every table, drop, report) took ${seconds(best.streamedTotal)}: ${(best.streamedTotal / best.manual).toFixed(2)}x the manual restore, which validates nothing`);
  } finally {
    await Promise.all(workers.map((w) => w.shutdown().catch(() => undefined)));
    await stopStack(stack);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
