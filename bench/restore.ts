/**
 * Restore-test benchmark: the verifyBackup runbook's streamed restore against the manual path on the
 * same machine in the same run (download the dump to disk, then pg_restore the file).
 *
 *   npm run bench:restore                       # about 1 GB of table data
 *   BENCH_ROWS=200000 npm run bench:restore     # a smaller run
 *
 * Prints the machine, the data set, each time and the ratios. Not a test: nothing here asserts.
 */
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { execFile } from 'node:child_process';
import { createWriteStream, mkdtempSync, chmodSync, rmSync, statSync } from 'node:fs';
import { cpus, freemem, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { Client as PgClient } from 'pg';
import { connectClient } from '../src/cli/client';
import { loadConfig } from '../src/config/load';
import { readSecret } from '../src/config/secrets';
import { createLogger } from '../src/observability/logger';
import { findPgBinary } from '../src/sandbox/postgres';
import { seedSampleDatabase } from '../src/sandbox/seed';
import { startStack, stopStack } from '../src/sandbox/stack';
import type { BackupDatabaseResult } from '../src/workflows/backupDatabase';
import type { VerifyBackupResult } from '../src/workflows/verifyBackup';
import { RunbookWorker } from '../src/worker';

const run = promisify(execFile);
const rows = Number(process.env.BENCH_ROWS ?? 1_000_000);
const padBytes = Number(process.env.BENCH_PAD_BYTES ?? 960);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const mb = (n: number) => `${(n / 1_048_576).toFixed(0)} MB`;

async function main(): Promise<void> {
  console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model}), ${mb(totalmem())} memory, ${mb(freemem())} free, node ${process.version}`);
  const dir = mkdtempSync(join(tmpdir(), 'runbook-bench-'));
  chmodSync(dir, 0o755);
  const stack = await startStack({ dir, components: ['temporal', 'postgres', 's3'] });
  let worker: RunbookWorker | undefined;
  try {
    const loaded = loadConfig(stack.configFile);
    const db = loaded.config.environments.sandbox.databases.main;
    const password = readSecret(db.password, loaded.baseDir);
    const pg = new PgClient({ host: db.host, port: db.port, user: db.user, password, database: db.database });
    await pg.connect();
    let t = Date.now();
    await seedSampleDatabase(pg, { rows, padBytes, randomPadding: true });
    const size = Number((await pg.query<{ n: string }>('SELECT pg_database_size(current_database())::text AS n')).rows[0].n);
    console.log(`data set: ${rows} orders of ~${padBytes} bytes, database ${mb(size)}, generated in ${seconds(Date.now() - t)}`);

    worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
    await worker.start();
    await worker.waitUntilReady();
    const c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
    t = Date.now();
    const backup: BackupDatabaseResult = await c.client.workflow.execute('backupDatabase', { taskQueue: 'batch-queue', workflowId: `bench-backup-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main' }] });
    console.log(`backup: dump ${mb(backup.bytes)} streamed to S3 in ${seconds(Date.now() - t)}`);

    // The runbook: restore streamed from S3 into pg_restore, then validation of every table.
    t = Date.now();
    const verify: VerifyBackupResult = await c.client.workflow.execute('verifyBackup', { taskQueue: 'batch-queue', workflowId: `bench-verify-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main' }] });
    const runbookTotal = Date.now() - t;
    const runbookRestore = verify.restore!.durationMs;
    if (!verify.passed) throw new Error(`restore test failed: ${verify.reasons.join('; ')}`);
    await c.close();

    // By hand: download the object to disk, then pg_restore the file into a fresh database.
    const s3 = new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey } });
    const file = join(dir, 'manual.pgcustom');
    t = Date.now();
    const obj = await s3.send(new GetObjectCommand({ Bucket: 'runbook-backups', Key: `sandbox/main/${backup.backupId}/dump.pgcustom` }));
    await pipeline(obj.Body as Readable, createWriteStream(file));
    const download = Date.now() - t;
    s3.destroy();
    await pg.query('CREATE DATABASE manual_restore');
    t = Date.now();
    await run(findPgBinary('pg_restore'), ['-h', db.host, '-p', String(db.port), '-U', db.user, '-d', 'manual_restore', '--no-owner', '--no-privileges', '--exit-on-error', file], {
      env: { ...process.env, PGPASSWORD: password },
    });
    const manualRestore = Date.now() - t;
    await pg.query('DROP DATABASE manual_restore');
    await pg.end();
    const manualTotal = download + manualRestore;

    console.log(`dump file: ${mb(statSync(file).size)}`);
    console.log(`runbook restore (streamed S3 -> pg_restore, sha256 on the way): ${seconds(runbookRestore)}`);
    console.log(`manual (download ${seconds(download)} + pg_restore ${seconds(manualRestore)}):        ${seconds(manualTotal)}`);
    console.log(`ratio manual / runbook restore: ${(manualTotal / runbookRestore).toFixed(2)}x (above 1: the runbook is faster)`);
    console.log(`runbook total incl. selection, validation of every table and cleanup: ${seconds(runbookTotal)} (${(runbookTotal / manualTotal).toFixed(2)}x the manual restore, which validates nothing)`);
  } finally {
    await worker?.shutdown().catch(() => undefined);
    await stopStack(stack);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
