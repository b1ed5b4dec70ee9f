/**
 * Point-in-time restore benchmark: the verifyBackup runbook's PITR restore test against the manual
 * path on the same machine in the same run. The manual path is what an operator does by hand:
 * `pgbackrest restore --type=time`, start PostgreSQL on the restored directory, wait for recovery to
 * reach the target and promote, then the same checks (the restore canary's rows, the same SQL
 * assertion) with psql, stop and remove. The runbook adds its repository checks (info, the source's
 * archiver, pgbackrest check, the WAL continuity scan), the report, and Temporal's orchestration.
 *
 * The data set is backed up once (full), then WAL is written after the backup and the target lies
 * between two canary rows after it, so both paths replay the same WAL. Rounds are interleaved, each
 * after a CHECKPOINT. Profiles: smoke (3,000 rows, 4 MB of WAL, one round: the script runs), quick
 * (200,000 rows, about 200 MB, 64 MB of WAL, two rounds), full (1,000,000 rows, about 1 GB, 256 MB of
 * WAL, three rounds); BENCH_ROWS, BENCH_PAD_BYTES, BENCH_WAL_MB and BENCH_ROUNDS override them.
 *
 *   npm run bench:pitr [-- --full | --smoke] [--out DIR]
 *
 * Writes bench/results/pitr-<profile>.json (the README's PITR block is made from it). Not a test:
 * nothing here asserts.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { freemem, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client as PgClient } from 'pg';
import { parse, stringify } from 'yaml';
import { connectClient } from '../src/cli/client';
import { loadConfig } from '../src/config/load';
import { createLogger } from '../src/observability/logger';
import { seedSampleDatabase } from '../src/sandbox/seed';
import { startStack, stopStack } from '../src/sandbox/stack';
import { pgbackrestEnv, runPgBackRest } from '../src/system/pgbackrest';
import { freePort, sleep } from '../src/system/process';
import { postgresOwner } from '../src/system/postgres';
import { ensureScratchRoot, pgBinDirFor, prepareScratch, removeScratch, scratchLog, startScratch, thisCreator, waitForScratch } from '../src/system/scratch';
import type { PhysicalBackupDatabaseResult } from '../src/workflows/backupDatabase';
import type { VerifyBackupResult } from '../src/workflows/verifyBackup';
import { RunbookWorker } from '../src/worker';
import { beginBench, parseBenchArgs, ratio, runMain, summarize } from './lib/report';

const run = promisify(execFile);
const args = parseBenchArgs();
const PROFILE_PARAMS = { smoke: { rows: 3_000, walMb: 4, rounds: 1 }, quick: { rows: 200_000, walMb: 64, rounds: 2 }, full: { rows: 1_000_000, walMb: 256, rounds: 3 } } as const;
const rows = Number(process.env.BENCH_ROWS ?? PROFILE_PARAMS[args.profile].rows);
const padBytes = Number(process.env.BENCH_PAD_BYTES ?? 960);
const walMb = Number(process.env.BENCH_WAL_MB ?? PROFILE_PARAMS[args.profile].walMb);
const rounds = Number(process.env.BENCH_ROUNDS ?? PROFILE_PARAMS[args.profile].rounds);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const mb = (n: number) => `${(n / 1_048_576).toFixed(0)} MB`;

async function main(): Promise<void> {
  const record = beginBench('pitr', args);
  console.log(`memory: ${mb(totalmem())}, ${mb(freemem())} free`);
  const dir = mkdtempSync(join(tmpdir(), 'runbook-bench-pitr-'));
  chmodSync(dir, 0o755);
  const scratchDir = join(dir, 'scratch');
  const stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 's3', 'pgbackrest'] });
  let worker: RunbookWorker | undefined;
  try {
    // The stack's pgBackRest database, without `pgbackrest verify` (it reads the whole repository and is not part of the manual path).
    const config = parse(readFileSync(stack.configFile, 'utf8'));
    const assertion = { name: 'orders were restored', sql: `SELECT count(*) = ${rows} FROM orders` };
    config.environments.sandbox.databases.pitr.restoreTest = { scratchDir, maxBackupAge: '1d', verifyRepository: false, assertions: [assertion] };
    config.environments.sandbox.targets = { rpo: '1h' };
    delete config.schedules;
    const configFile = join(stack.dir, 'bench.yaml');
    writeFileSync(configFile, stringify(config));
    const loaded = loadConfig(configFile);
    const password = readFileSync(join(stack.dir, 'secrets', 'postgres-password'), 'utf8').trim();
    const pg = new PgClient({ host: stack.postgres!.host, port: stack.postgres!.port, user: 'postgres', password, database: 'app' });
    await pg.connect();
    let t = Date.now();
    await seedSampleDatabase(pg, { rows, padBytes, randomPadding: true });
    const size = Number((await pg.query<{ n: string }>('SELECT pg_database_size(current_database())::text AS n')).rows[0].n);
    console.log(`data set: ${rows} orders of ~${padBytes} bytes, database ${mb(size)}, generated in ${seconds(Date.now() - t)}`);

    worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
    await worker.start();
    await worker.waitUntilReady(300_000);
    const c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
    const canary = () => c.client.workflow.execute('restoreCanary', { taskQueue: 'standard-queue', workflowId: `bench-canary-${Date.now()}`, args: [{ environment: 'sandbox', database: 'pitr' }] });
    const archiveNow = async () => {
      const f = (await pg.query<{ f: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS f')).rows[0].f;
      for (;;) {
        const w = (await pg.query<{ w: string | null }>('SELECT last_archived_wal AS w FROM pg_stat_archiver')).rows[0].w;
        if (w && w >= f) return;
        await sleep(200);
      }
    };

    await canary();
    t = Date.now();
    const backup: PhysicalBackupDatabaseResult = await c.client.workflow.execute('backupDatabase', { taskQueue: 'batch-queue', workflowId: `bench-backup-${Date.now()}`, args: [{ environment: 'sandbox', database: 'pitr', type: 'full' }] });
    const backupMs = Date.now() - t;
    console.log(`backup: full backup ${backup.label} of ${mb(backup.databaseBytes)}, ${mb(backup.bytes)} in the repository (lz4, bundled), in ${seconds(Date.now() - t)}`);

    // WAL after the backup, which both paths replay: updates of random rows' padding.
    t = Date.now();
    const lsn0 = (await pg.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l;
    for (;;) {
      await pg.query(`UPDATE orders SET note = md5(random()::text) WHERE id IN (SELECT (random() * ${rows})::int + 1 FROM generate_series(1, 20000))`);
      const written = Number((await pg.query<{ b: string }>(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '${lsn0}')::text AS b`)).rows[0].b);
      if (written >= walMb * 1_048_576) break;
    }
    await canary();
    await sleep(1_500);
    const target = new Date().toISOString();
    await sleep(1_500);
    await canary();
    await archiveNow();
    console.log(`WAL after the backup: ${walMb} MB written and archived in ${seconds(Date.now() - t)}; target ${target}`);

    const runbook = async () => {
      const r: VerifyBackupResult = await c.client.workflow.execute('verifyBackup', { taskQueue: 'batch-queue', workflowId: `bench-verify-${Date.now()}`, args: [{ environment: 'sandbox', database: 'pitr', selection: { mode: 'time', at: target } }] });
      if (!r.passed) throw new Error(`restore test failed: ${r.reasons.join('; ')}`);
      const step = (name: string) => r.timeline.steps.find((s) => s.name === name)?.durationMs ?? 0;
      return {
        total: Date.parse(r.endedAt) - Date.parse(r.startedAt),
        restore: r.pitr!.restoreMs!,
        replay: r.pitr!.replayMs!,
        checks: step('read repository') + step('check repository'),
        validate: step('validate restored data'),
        remove: step('remove scratch instance'),
        wal: r.pitr!.walReplayedBytes ?? 0,
      };
    };

    // The manual path, with the same repository settings and the same scratch instance settings.
    const b = stack.pgbackrest!;
    const env = pgbackrestEnv({
      stanza: b.stanza,
      lockDir: join(dir, 'manual-locks'),
      repo: { bucket: b.bucket, path: b.repoPath, endpoint: b.endpoint, port: b.port, region: 'us-east-1', uriStyle: 'path', caFile: b.caFile, accessKeyId: stack.s3!.accessKeyId, secretAccessKey: stack.s3!.secretAccessKey },
      processMax: 2,
    });
    const manual = async (round: number) => {
      ensureScratchRoot(scratchDir);
      const name = `restore-test-manual${round}`;
      const port = await freePort('127.0.0.1');
      const { paths } = await prepareScratch(scratchDir, { name, database: 'pitr', port, pgMajor: '15', kind: 'physical', creator: thisCreator() });
      const inst = { ...paths, port, binDir: pgBinDirFor('15') };
      const start = Date.now();
      const restore = await runPgBackRest(['restore', `--set=${backup.label}`, '--type=time', `--target=${target.replace('T', ' ').replace('Z', '+00')}`, '--target-action=promote', '--archive-mode=off'], {
        env: { ...env, PGBACKREST_PG1_PATH: inst.dataDir },
        runAs: postgresOwner(),
      });
      if (restore.code !== 0) throw new Error(`pgbackrest restore: ${restore.stderr}`);
      const restored = Date.now();
      const pid = startScratch(inst, { shared_buffers: '128MB', restore_command: 'pgbackrest archive-get %f "%p"' }, { ...env, PGBACKREST_PG1_PATH: inst.dataDir });
      await waitForScratch(inst, pid, 3_600_000);
      const replayed = Date.now();
      // The same checks by hand: the canary rows on both sides, and the assertion.
      const psql = (host: string, p: number, sql: string, pw?: string) =>
        run(join(inst.binDir, 'psql'), ['-h', host, '-p', String(p), '-U', 'postgres', '-d', 'app', '-tAc', sql], { env: { ...process.env, PGPASSWORD: pw ?? '' } }).then((x) => x.stdout.trim());
      const restoredRows = await psql(inst.socketDir, port, 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM runbook_restore_canary');
      const expectedRows = await psql(stack.postgres!.host, stack.postgres!.port, `SELECT string_agg(id::text, ',' ORDER BY id) FROM runbook_restore_canary WHERE written_at < '${target}'`, password);
      if (restoredRows !== expectedRows) throw new Error(`manual check: canary ${restoredRows} != ${expectedRows}`);
      if ((await psql(inst.socketDir, port, assertion.sql)) !== 't') throw new Error('manual check: assertion failed');
      const checked = Date.now();
      // Read before the removal takes the directory (and its log) away.
      const stoppedAtTarget = /recovery stopping before commit/.test(scratchLog(inst));
      await removeScratch(scratchDir, name);
      const end = Date.now();
      if (!stoppedAtTarget) throw new Error('manual: the scratch instance\'s log does not say recovery stopped before a commit after the target');
      return { total: end - start, restore: restored - start, replay: replayed - restored, checks: checked - replayed, remove: end - checked };
    };

    const runs: Awaited<ReturnType<typeof runbook>>[] = [];
    const manuals: Awaited<ReturnType<typeof manual>>[] = [];
    for (let round = 1; round <= rounds; round++) {
      await pg.query('CHECKPOINT');
      const r = await runbook();
      await pg.query('CHECKPOINT');
      const m = await manual(round);
      console.log(
        `round ${round}: runbook ${seconds(r.total)} (repository checks ${seconds(r.checks)}, restore ${seconds(r.restore)}, replay ${seconds(r.replay)} of ${mb(r.wal)}, validation ${seconds(r.validate)}, removal ${seconds(r.remove)}); ` +
          `manual ${seconds(m.total)} (restore ${seconds(m.restore)}, start and replay ${seconds(m.replay)}, checks ${seconds(m.checks)}, removal ${seconds(m.remove)})`,
      );
      runs.push(r);
      manuals.push(m);
    }
    await c.close();
    await pg.end();
    const sec = (xs: number[]) => summarize(xs.map((x) => x / 1000), 1);
    const figures = {
      databaseMb: Math.round(size / 1_048_576),
      repositoryMb: Math.round(backup.bytes / 1_048_576),
      backupSeconds: Number((backupMs / 1000).toFixed(1)),
      walMb,
      runbook: {
        total: sec(runs.map((r) => r.total)),
        checks: sec(runs.map((r) => r.checks)),
        restore: sec(runs.map((r) => r.restore)),
        replay: sec(runs.map((r) => r.replay)),
        validate: sec(runs.map((r) => r.validate)),
        remove: sec(runs.map((r) => r.remove)),
        walReplayedMb: summarize(runs.map((r) => r.wal / 1_048_576), 0),
      },
      manual: {
        total: sec(manuals.map((m) => m.total)),
        restore: sec(manuals.map((m) => m.restore)),
        replay: sec(manuals.map((m) => m.replay)),
        checks: sec(manuals.map((m) => m.checks)),
        remove: sec(manuals.map((m) => m.remove)),
      },
    };
    const ratios = [
      ratio('runbook / by hand', figures.runbook.total.median, figures.manual.total.median, 'the runbook\'s PITR restore test (repository checks, restore, replay, checks, removal, report) against pgbackrest restore + start + recovery + the same checks by hand, medians'),
      ratio('restore + replay, runbook / by hand', figures.runbook.restore.median + figures.runbook.replay.median, figures.manual.restore.median + figures.manual.replay.median, 'the restore and the WAL replay alone, medians'),
    ];
    // A figure that is not a number would be written as null and break the README block: name it instead.
    const notFinite = (v: unknown, path: string): string[] =>
      typeof v === 'number' ? (Number.isFinite(v) ? [] : [path]) : v && typeof v === 'object' ? Object.entries(v).flatMap(([k, x]) => notFinite(x, `${path}.${k}`)) : [];
    const bad = notFinite({ figures, ratios }, 'result');
    if (bad.length) throw new Error(`not a number: ${bad.join(', ')}; rounds: ${JSON.stringify({ runs, manuals })}`);
    record.finish({ rows, padBytes, walMb, rounds }, figures, ratios);
  } finally {
    await worker?.shutdown().catch(() => undefined);
    await stopStack(stack);
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain(main);
