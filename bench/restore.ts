/**
 * Restore-test benchmark: the verifyBackup runbook against the manual path on the same machine, in
 * the same run, interleaved over several rounds (the order rotates every round, each run after a
 * CHECKPOINT), medians with their spread:
 *   - the runbook, streamed (restoreTest.jobs 1, the default: S3 straight into pg_restore) and
 *     parallel (jobs 2: spooled to disk, pg_restore -j 2), each a whole restore test: selection,
 *     restore, validation of every table against the manifest, dropping the scratch database, report;
 *   - by hand: CREATE DATABASE, download the dump to a file, pg_restore the file (the same options),
 *     then the same validation queries (each table's row count and checksum), then DROP DATABASE.
 * Compared: the restore phase (the runbook's restore activity: scratch database, transfer, pg_restore,
 * sha256 check; by hand: create, download, pg_restore), and the whole restore test against the
 * manual restore plus validation.
 *
 *   npm run bench:restore [-- --full | --smoke] [--out DIR]      # ~120 MB database (full: ~1.1 GB)
 */
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { execFile } from 'node:child_process';
import { chmodSync, createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { Client as PgClient } from 'pg';
import type { BackupManifest } from '../src/activities/backups';
import { listTables, tableStats } from '../src/activities/pg';
import { connectClient } from '../src/cli/client';
import { LoadedConfig, loadConfig } from '../src/config/load';
import { readSecret } from '../src/config/secrets';
import { createLogger } from '../src/observability/logger';
import { seedSampleDatabase } from '../src/sandbox/seed';
import { SANDBOX_BUCKET, startStack, stopStack } from '../src/sandbox/stack';
import { findPgBinary } from '../src/system/postgres';
import { RunbookWorker } from '../src/worker';
import type { BackupDatabaseResult } from '../src/workflows/backupDatabase';
import type { VerifyBackupResult } from '../src/workflows/verifyBackup';
import { beginBench, formatSummary, parseBenchArgs, processTreeCpuMs, Profile, ratio, runMain, summarize, Summary, toolVersion } from './lib/report';

const run = promisify(execFile);
const PROFILES: Record<Profile, { rows: number; padBytes: number; rounds: number; parallel: boolean }> = {
  smoke: { rows: 2_000, padBytes: 100, rounds: 1, parallel: false },
  quick: { rows: 100_000, padBytes: 960, rounds: 3, parallel: true },
  full: { rows: 1_000_000, padBytes: 960, rounds: 5, parallel: true },
};
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const mb = (n: number) => Math.round(n / 1_048_576);

/** The same environment with its own task queues and restore jobs, so two worker variants run side by side. */
function variantConfig(loaded: LoadedConfig, jobs: number, queuePrefix: string): LoadedConfig {
  const copy = structuredClone(loaded);
  const env = copy.config.environments.sandbox;
  env.databases.main.restoreTest.jobs = jobs;
  env.temporal.taskQueues = { critical: `${queuePrefix}-critical`, standard: `${queuePrefix}-standard`, batch: `${queuePrefix}-batch` };
  return copy;
}

interface RunbookRound {
  /** The restore activity: scratch database, transfer and pg_restore, sha256 check. */
  restoreMs: number;
  /** The whole restore test, from the client's start to its result. */
  wholeMs: number;
  /** CPU of every process involved (PostgreSQL, S3 server, Temporal, worker, pg_restore) during the whole test. */
  wholeCpuMs: number;
  /** The part of it PostgreSQL used (the server's processes: COPY, index builds, constraint checks, validation queries). */
  wholePostgresCpuMs: number;
  /** WAL the server wrote during the whole test. */
  walBytes: number;
  phasesMs: Record<string, number>;
}

interface ManualRound {
  createMs: number;
  downloadMs: number;
  pgRestoreMs: number;
  restoreMs: number;
  validationMs: number;
  dropMs: number;
  wholeMs: number;
  restoreCpuMs: number;
  wholeCpuMs: number;
  wholePostgresCpuMs: number;
  walBytes: number;
}

async function main(): Promise<void> {
  const args = parseBenchArgs();
  const p = PROFILES[args.profile];
  const bench = beginBench('restore', args);
  const dir = mkdtempSync(join(tmpdir(), 'runbook-bench-restore-'));
  chmodSync(dir, 0o755);
  const stack = await startStack({ dir, components: ['temporal', 'postgres', 's3'] });
  const workers: RunbookWorker[] = [];
  try {
    const loaded = loadConfig(stack.configFile);
    const db = loaded.config.environments.sandbox.databases.main;
    const password = readSecret(db.password, loaded.baseDir);
    // A single node without a replica: the config gives its fixed address.
    const pg = new PgClient({ host: db.host!, port: db.port, user: db.user, password, database: db.database });
    pg.on('error', (err) => console.error(`bench connection: ${err.message}`));
    await pg.connect();
    // The benchmark's own housekeeping (a CHECKPOINT before each variant) needs the sandbox's superuser; the runbooks never do.
    const admin = new PgClient({ host: db.host!, port: db.port, user: stack.postgres!.superuser, password: readFileSync(join(stack.dir, 'secrets', 'postgres-password'), 'utf8').trim(), database: db.database });
    admin.on('error', (err) => console.error(`bench admin connection: ${err.message}`));
    await admin.connect();
    let t = Date.now();
    await seedSampleDatabase(pg, { rows: p.rows, padBytes: p.padBytes, randomPadding: true });
    const seedMs = Date.now() - t;
    const databaseBytes = Number((await pg.query<{ n: string }>('SELECT pg_database_size(current_database())::text AS n')).rows[0].n);
    console.log(`data set: ${p.rows} orders of ~${p.padBytes} bytes, database ${mb(databaseBytes)} MB, generated in ${seconds(seedMs)}`);

    const logger = createLogger('warn');
    const variants = [
      { key: 'streamed', jobs: 1, queue: 'bench-streamed' },
      ...(p.parallel ? [{ key: 'parallel', jobs: 2, queue: 'bench-parallel' }] : []),
    ];
    for (const v of variants) workers.push(new RunbookWorker({ loaded: variantConfig(loaded, v.jobs, v.queue), httpPort: 0, logger }));
    await Promise.all(workers.map((w) => w.start()));
    // Bundling the runbooks takes long on a busy machine.
    await Promise.all(workers.map((w) => w.waitUntilReady(10 * 60_000)));
    const c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);

    t = Date.now();
    const backup: BackupDatabaseResult = await c.client.workflow.execute('backupDatabase', {
      taskQueue: 'bench-streamed-batch',
      workflowId: `bench-backup-${Date.now()}`,
      args: [{ environment: 'sandbox', database: 'main' }],
    });
    const backupMs = Date.now() - t;
    console.log(`backup: dump of ${mb(backup.bytes)} MB streamed to S3 in ${seconds(backupMs)}`);

    const s3 = new S3Client({ endpoint: stack.s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey } });
    const base = `${loaded.config.environments.sandbox.backups!.prefix ?? ''}main/${backup.backupId}/`;
    const manifestText = await (await s3.send(new GetObjectCommand({ Bucket: SANDBOX_BUCKET, Key: `${base}manifest.json` }))).Body!.transformToString();
    const manifest = JSON.parse(manifestText) as BackupManifest;
    const file = join(dir, 'manual.pgcustom');
    const manualDb = 'manual_restore';
    const restoreArgs = ['-h', db.host!, '-p', String(db.port), '-U', db.user, '-d', manualDb, '--no-owner', '--no-privileges', '--exit-on-error', file];

    // Everything the benchmark started is under this process, except PostgreSQL, which pg_ctl detaches.
    const cpuRoots = [process.pid, stack.postgres!.pid];
    const cpuNow = () => processTreeCpuMs(cpuRoots);
    const pgCpuNow = () => processTreeCpuMs([stack.postgres!.pid]);
    // WAL the server wrote meanwhile: the restore's rows, unless the scratch tables are unlogged.
    const walLsn = async () => (await pg.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn;
    const walBytesSince = async (from: string) => Number((await pg.query<{ n: string }>('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::text AS n', [from])).rows[0].n);
    const runbook = async (queue: string): Promise<RunbookRound> => {
      const cpu0 = cpuNow();
      const pg0 = pgCpuNow();
      const wal0 = await walLsn();
      const begun = Date.now();
      const result: VerifyBackupResult = await c.client.workflow.execute('verifyBackup', { taskQueue: `${queue}-batch`, workflowId: `bench-verify-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main' }] });
      const wholeMs = Date.now() - begun;
      const wholeCpuMs = cpuNow() - cpu0;
      const wholePostgresCpuMs = pgCpuNow() - pg0;
      if (!result.passed) throw new Error(`restore test failed: ${result.reasons.join('; ')}`);
      const phasesMs = (result.timeline.steps.find((x) => x.name === 'restore into scratch database')?.evidence.phasesMs ?? {}) as Record<string, number>;
      return { restoreMs: result.restore!.durationMs, wholeMs, wholeCpuMs, wholePostgresCpuMs, walBytes: await walBytesSince(wal0), phasesMs };
    };
    // What an operator types: create the database, fetch the dump, pg_restore it, run the validation queries, drop it.
    const manual = async (): Promise<ManualRound> => {
      const cpu0 = cpuNow();
      const pg0 = pgCpuNow();
      const wal0 = await walLsn();
      const begun = Date.now();
      await pg.query(`CREATE DATABASE ${manualDb}`);
      const created = Date.now();
      const obj = await s3.send(new GetObjectCommand({ Bucket: SANDBOX_BUCKET, Key: manifest.dumpKey }));
      await pipeline(obj.Body as Readable, createWriteStream(file));
      const downloaded = Date.now();
      await run(findPgBinary('pg_restore'), restoreArgs, { env: { ...process.env, PGPASSWORD: password } });
      const restored = Date.now();
      const restoreCpuMs = cpuNow() - cpu0;
      const check = new PgClient({ host: db.host!, port: db.port, user: db.user, password, database: manualDb });
      await check.connect();
      try {
        for (const table of await listTables(check)) {
          const found = await tableStats(check, table);
          const expected = manifest.tables.find((x) => x.schema === table.schema && x.name === table.name);
          if (!expected || expected.rows !== found.rows || expected.checksum !== found.checksum) throw new Error(`manual restore: ${table.schema}.${table.name} does not match the manifest`);
        }
      } finally {
        await check.end();
      }
      const validated = Date.now();
      await pg.query(`DROP DATABASE ${manualDb}`);
      rmSync(file);
      const dropped = Date.now();
      return {
        createMs: created - begun,
        downloadMs: downloaded - created,
        pgRestoreMs: restored - downloaded,
        restoreMs: restored - begun,
        validationMs: validated - restored,
        dropMs: dropped - validated,
        wholeMs: dropped - begun,
        restoreCpuMs,
        wholeCpuMs: cpuNow() - cpu0,
        wholePostgresCpuMs: pgCpuNow() - pg0,
        walBytes: await walBytesSince(wal0),
      };
    };

    const runs: { streamed: RunbookRound[]; parallel: RunbookRound[]; manual: ManualRound[] } = { streamed: [], parallel: [], manual: [] };
    const steps: { key: 'streamed' | 'parallel' | 'manual'; go: () => Promise<void> }[] = [
      ...variants.map((v) => ({ key: v.key as 'streamed' | 'parallel', go: async () => void runs[v.key as 'streamed' | 'parallel'].push(await runbook(v.queue)) })),
      { key: 'manual' as const, go: async () => void runs.manual.push(await manual()) },
    ];
    for (let round = 0; round < p.rounds; round++) {
      for (let i = 0; i < steps.length; i++) {
        await admin.query('CHECKPOINT');
        await steps[(i + round) % steps.length].go();
      }
      const s = runs.streamed.at(-1)!;
      const m = runs.manual.at(-1)!;
      const par = runs.parallel.at(-1);
      console.log(
        `round ${round + 1}: restore phase: runbook streamed ${seconds(s.restoreMs)} ${JSON.stringify(s.phasesMs)}${par ? `, parallel ${seconds(par.restoreMs)}` : ''}; ` +
          `by hand ${seconds(m.restoreMs)} (create ${seconds(m.createMs)} + download ${seconds(m.downloadMs)} + pg_restore ${seconds(m.pgRestoreMs)}). ` +
          `Whole test: runbook streamed ${seconds(s.wholeMs)}; by hand ${seconds(m.wholeMs)} (validation ${seconds(m.validationMs)}, drop ${seconds(m.dropMs)}). ` +
          `CPU of all processes for the whole test: runbook streamed ${seconds(s.wholeCpuMs)} (PostgreSQL ${seconds(s.wholePostgresCpuMs)})${par ? `, parallel ${seconds(par.wholeCpuMs)}` : ''}, ` +
          `by hand ${seconds(m.wholeCpuMs)} (PostgreSQL ${seconds(m.wholePostgresCpuMs)}; the restore alone ${seconds(m.restoreCpuMs)}). ` +
          `WAL written: runbook streamed ${mb(s.walBytes)} MB, by hand ${mb(m.walBytes)} MB`,
      );
    }
    s3.destroy();
    await c.close();
    await pg.end();
    await admin.end();

    const sum = (xs: number[]) => summarize(xs.map((x) => x / 1000));
    const phaseNames = [...new Set(runs.streamed.flatMap((r) => Object.keys(r.phasesMs)))];
    const figures = {
      databaseMb: mb(databaseBytes),
      dumpMb: mb(backup.bytes),
      seedSeconds: Math.round(seedMs / 100) / 10,
      backupSeconds: Math.round(backupMs / 100) / 10,
      runbookStreamed: {
        restoreSeconds: sum(runs.streamed.map((r) => r.restoreMs)),
        wholeSeconds: sum(runs.streamed.map((r) => r.wholeMs)),
        wholeCpuSeconds: sum(runs.streamed.map((r) => r.wholeCpuMs)),
        wholePostgresCpuSeconds: sum(runs.streamed.map((r) => r.wholePostgresCpuMs)),
        walMb: summarize(runs.streamed.map((r) => r.walBytes / 1_048_576), 0),
        phasesSeconds: Object.fromEntries(phaseNames.map((k) => [k, sum(runs.streamed.map((r) => r.phasesMs[k] ?? 0))])) as Record<string, Summary>,
      },
      runbookParallel: runs.parallel.length
        ? { restoreSeconds: sum(runs.parallel.map((r) => r.restoreMs)), wholeSeconds: sum(runs.parallel.map((r) => r.wholeMs)), wholeCpuSeconds: sum(runs.parallel.map((r) => r.wholeCpuMs)) }
        : undefined,
      manual: {
        restoreSeconds: sum(runs.manual.map((r) => r.restoreMs)),
        createSeconds: sum(runs.manual.map((r) => r.createMs)),
        downloadSeconds: sum(runs.manual.map((r) => r.downloadMs)),
        pgRestoreSeconds: sum(runs.manual.map((r) => r.pgRestoreMs)),
        validationSeconds: sum(runs.manual.map((r) => r.validationMs)),
        dropSeconds: sum(runs.manual.map((r) => r.dropMs)),
        wholeSeconds: sum(runs.manual.map((r) => r.wholeMs)),
        restoreCpuSeconds: sum(runs.manual.map((r) => r.restoreCpuMs)),
        wholeCpuSeconds: sum(runs.manual.map((r) => r.wholeCpuMs)),
        wholePostgresCpuSeconds: sum(runs.manual.map((r) => r.wholePostgresCpuMs)),
        walMb: summarize(runs.manual.map((r) => r.walBytes / 1_048_576), 0),
      },
    };
    const f = figures;
    console.log(`medians of ${p.rounds} rounds (lowest-highest):`);
    console.log(`  restore phase: runbook streamed ${formatSummary(f.runbookStreamed.restoreSeconds, 's')}${f.runbookParallel ? `, runbook parallel ${formatSummary(f.runbookParallel.restoreSeconds, 's')}` : ''}, by hand ${formatSummary(f.manual.restoreSeconds, 's')}`);
    console.log(`  whole restore test: runbook streamed ${formatSummary(f.runbookStreamed.wholeSeconds, 's')}; by hand, restore + validation + drop ${formatSummary(f.manual.wholeSeconds, 's')}`);
    console.log(
      `  CPU of all processes, whole test: runbook streamed ${formatSummary(f.runbookStreamed.wholeCpuSeconds, 's')} (PostgreSQL ${formatSummary(f.runbookStreamed.wholePostgresCpuSeconds, 's')}); ` +
        `by hand ${formatSummary(f.manual.wholeCpuSeconds, 's')} (PostgreSQL ${formatSummary(f.manual.wholePostgresCpuSeconds, 's')})`,
    );
    console.log(`  WAL written during the whole test: runbook streamed ${formatSummary(f.runbookStreamed.walMb, 'MB', 0)}; by hand ${formatSummary(f.manual.walMb, 'MB', 0)}`);
    const m = (s: Summary) => s.median;
    const ratios = [
      ratio('restore streamed/manual', m(f.runbookStreamed.restoreSeconds), m(f.manual.restoreSeconds), "the runbook's streamed restore phase / create, download and pg_restore by hand (goal: at most 0.85)"),
      ...(f.runbookParallel ? [ratio('restore parallel/manual', m(f.runbookParallel.restoreSeconds), m(f.manual.restoreSeconds), "the runbook's parallel restore phase (2 jobs) / by hand")] : []),
      ratio('whole test/manual with validation', m(f.runbookStreamed.wholeSeconds), m(f.manual.wholeSeconds), 'the whole restore test (streamed) / the manual restore plus the same validation queries and the drop, by hand (goal: at most 1.1)'),
      ratio('WAL runbook/manual', m(f.runbookStreamed.walMb), m(f.manual.walMb), 'WAL written during the whole restore test (streamed, unlogged scratch tables) / by hand'),
      ratio('whole test CPU/manual CPU', m(f.runbookStreamed.wholeCpuSeconds), m(f.manual.wholeCpuSeconds), 'CPU of every process involved: the whole restore test (streamed) / the same work by hand'),
    ];
    const psql = toolVersion(findPgBinary('pg_restore'));
    bench.finish({ rows: p.rows, padBytes: p.padBytes, rounds: p.rounds }, figures, ratios, { pg_restore: psql });
  } finally {
    await Promise.all(workers.map((w) => w.shutdown().catch(() => undefined)));
    await stopStack(stack);
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain(main);
