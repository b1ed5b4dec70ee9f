import type { Command } from 'commander';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { RestoreReport } from '../activities/reports';
import { parseDuration } from '../config/duration';
import type { LoadedConfig } from '../config/load';
import type { EnvironmentConfig } from '../config/schema';
import type { RepositoryOverview } from '../activities/pgbackrest';
import type { BackupDatabaseResult, PhysicalBackupDatabaseResult } from '../workflows/backupDatabase';
import { PGBACKREST_LABEL, RecoveryPointSelection, validateVerifyBackupInput, VerifyBackupResult } from '../workflows/verifyBackup';
import { ConnectedClient, failureMessage, startRunbook } from './client';
import { checkPlanFlags, MARKDOWN_HELP, PLAN_FLAG, PLAN_HELP, planCommand } from './plan';
import { cliEnvironment, GlobalOptions, loadCliConfig, printJson, runAndReport, shown, UsageError } from './common';
import { waitWithProgress } from './progress';

export interface RunOutcome<T> {
  ok: boolean;
  workflowId: string;
  result?: T;
  error?: string;
}

function checkDatabase(c: ConnectedClient, database: string): void {
  if (!(database in c.env.databases)) {
    throw new UsageError(`--database: ${shown(database)} is not configured for environment ${c.environment}; configured: ${Object.keys(c.env.databases).join(', ') || 'none'}`);
  }
  if (!c.env.backups) throw new UsageError(`environment ${c.environment} has no backups: section; add the bucket to back up to`);
}

function checkBackupType(c: ConnectedClient, database: string, type: string | undefined): void {
  checkDatabase(c, database);
  const method = c.env.databases[database].backups.method;
  if (type !== undefined && method !== 'pgbackrest') throw new UsageError(`--type: ${database} is backed up with pg_dump (backups.method: dump); --type applies to pgBackRest databases`);
}

export async function runBackup(
  c: ConnectedClient,
  database: string,
  showProgress: boolean,
  type?: 'full' | 'diff' | 'incr',
): Promise<RunOutcome<BackupDatabaseResult | PhysicalBackupDatabaseResult>> {
  checkBackupType(c, database, type);
  const { handle, workflowId } = await startRunbook(c, 'backupDatabase', [{ environment: c.environment, database, ...(type ? { type } : {}) }], {});
  if (showProgress) process.stderr.write(`backup of ${database} started: workflow ${workflowId}\n`);
  try {
    return { ok: true, workflowId, result: await waitWithProgress<BackupDatabaseResult | PhysicalBackupDatabaseResult>(handle, showProgress) };
  } catch (err) {
    return { ok: false, workflowId, error: failureMessage(err) };
  }
}

export async function runVerify(c: ConnectedClient, database: string, selection: RecoveryPointSelection, showProgress: boolean): Promise<RunOutcome<RestoreReport>> {
  checkDatabase(c, database);
  const { handle, workflowId } = await startRunbook(c, 'verifyBackup', [{ environment: c.environment, database, selection }], {});
  if (showProgress) process.stderr.write(`restore test of ${database} started: workflow ${workflowId}\n`);
  try {
    return { ok: true, workflowId, result: await waitWithProgress<VerifyBackupResult>(handle, showProgress) };
  } catch (err) {
    // A failed test carries its report; any other failure is an error without one.
    const cause = err instanceof WorkflowFailedError ? err.cause : undefined;
    const report = cause instanceof ApplicationFailure && cause.type === 'RestoreTestFailed' ? (cause.details?.[0] as RestoreReport) : undefined;
    return { ok: false, workflowId, result: report, error: failureMessage(err) };
  }
}

const mb = (n: number) => `${(n / 1_048_576).toFixed(1)} MB`;

export function describeBackup(o: RunOutcome<BackupDatabaseResult | PhysicalBackupDatabaseResult>): string {
  if (!o.ok || !o.result) return `backup FAILED (workflow ${o.workflowId}): ${o.error}`;
  const r = o.result;
  if ('method' in r && r.method === 'pgbackrest') {
    return [
      `${r.type} backup ${r.label} of ${r.database} written from ${r.node}: ${mb(r.bytes)} in the repository (backup set ${mb(r.repoBytes)}, database ${mb(r.databaseBytes)})`,
      `  ${r.startedAt} to ${r.stoppedAt}, WAL ${r.walStart} to ${r.walStop}${r.prior ? `, based on ${r.prior}` : ''}`,
      `  retention: kept ${r.retention.kept.length}, expired ${r.retention.deleted.length ? r.retention.deleted.join(', ') : 'none'}`,
    ].join('\n');
  }
  const d = r as BackupDatabaseResult;
  return [
    `backup ${d.backupId} of ${d.database} written: ${mb(d.bytes)}, ${d.tableCount} tables, sha256 ${d.sha256.slice(0, 16)}…`,
    `  manifest ${d.manifestKey}`,
    `  retention: kept ${d.retention.kept.length}, deleted ${d.retention.deleted.length ? d.retention.deleted.join(', ') : 'none'}`,
  ].join('\n');
}

export function describeVerify(o: RunOutcome<RestoreReport>): string {
  const r = o.result;
  if (!r) return `restore test FAILED (workflow ${o.workflowId}): ${o.error}`;
  const lines = [
    `restore test ${r.passed ? 'passed' : 'FAILED'} for ${r.database} (workflow ${o.workflowId})`,
    `  recovery point ${r.backupId ?? 'none'} (${r.selection})${r.backupAgeMs !== undefined ? `, ${Math.round(r.backupAgeMs / 1000)} s old` : ''}`,
    `  RPO: ${r.rpo.met === null ? 'no target' : r.rpo.met ? 'met' : 'VIOLATED'}`,
  ];
  const p = r.pitr;
  if (p) {
    const seconds = (ms?: number) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`);
    lines.push(
      `  target: ${p.target?.description ?? 'none'}`,
      p.restoreMs !== undefined
        ? `  restored in ${seconds(p.restoreMs)}, WAL replayed in ${seconds(p.replayMs)} (${mb(p.walReplayedBytes ?? 0)}, ${p.segmentsRestored ?? 0} segments): ${p.stoppedBecause}`
        : '  not restored',
      `  recoverable window: ${p.window?.from && p.window.until ? `${p.window.from} to ${p.window.until}` : (p.window?.reason ?? '-')}`,
      `  RPO achievable now: newest archived WAL ${p.rpoAchievable?.newestArchivedWal ?? 'none'} at ${p.rpoAchievable?.archivedAt ?? '-'}`,
      `  scratch instance ${r.scratchInstance ?? '-'}: ${r.scratchDropped ? 'removed' : 'NOT removed'}`,
    );
  } else {
    lines.push(
      r.restore ? `  restored ${mb(r.restore.bytes)} in ${(r.restore.durationMs / 1000).toFixed(1)} s (${r.restore.mode})` : '  not restored',
      `  scratch database ${r.scratchDatabase}${r.scratchInstance ? ` in scratch instance ${r.scratchInstance}` : ''}: ${r.scratchDropped ? 'dropped' : 'NOT dropped'}`,
    );
  }
  for (const c of r.checks) lines.push(`  [${c.passed ? 'ok  ' : 'FAIL'}] ${c.name}: ${c.detail}`);
  for (const reason of r.reasons) lines.push(`  reason: ${reason}`);
  return lines.join('\n');
}

export function registerBackup(program: Command, globals: () => GlobalOptions): void {
  const backup = program.command('backup').description('database backups to S3 and restore tests');

  backup
    .command('run')
    .description('take a backup now: pg_dump streamed to S3 with a manifest, or a pgBackRest backup; then retention')
    .option('--database <key>', 'database key from the config', 'main')
    .option('--type <type>', 'pgBackRest databases: full, diff or incr (default incr)')
    .option(PLAN_FLAG, PLAN_HELP)
    .option('--markdown', MARKDOWN_HELP)
    .action(async (opts: { database: string; type?: string; plan?: boolean; markdown?: boolean }) => {
      if (opts.type !== undefined && !['full', 'diff', 'incr'].includes(opts.type)) throw new UsageError(`--type: expected full, diff or incr, found ${shown(opts.type)}`);
      checkPlanFlags(opts);
      if (opts.plan) {
        return planCommand(globals(), 'backupDatabase', opts, (c) => {
          checkBackupType(c, opts.database, opts.type);
          return { environment: c.environment, database: opts.database, ...(opts.type ? { type: opts.type } : {}) };
        });
      }
      await runAndReport(globals(), (c, progress) => runBackup(c, opts.database, progress, opts.type as 'full' | 'diff' | 'incr' | undefined), describeBackup);
    });

  backup
    .command('verify')
    .description('restore test: restore a backup into a scratch database or instance and prove it (exit 0 only if it passed)')
    .option('--database <key>', 'database key from the config', 'main')
    .option('--latest', 'the newest backup (pgBackRest: and every archived WAL segment after it) (default)')
    .option('--random', 'a random backup within restoreTest.randomWindow')
    .option('--key <backupId>', 'a dump by its backup id')
    .option('--label <label>', 'a pgBackRest backup by its label')
    .option('--at <time>', 'pgBackRest: a point in time, with its zone (2026-11-25T03:00:00Z)')
    .option('--random-time', 'pgBackRest: a random point in time the WAL covers')
    .option('--within <duration>', 'with --random-time: how far back (default restoreTest.randomWindow), e.g. 7d')
    .option(PLAN_FLAG, PLAN_HELP)
    .option('--markdown', MARKDOWN_HELP)
    .action(async (opts: { database: string; latest?: boolean; random?: boolean; key?: string; label?: string; at?: string; randomTime?: boolean; within?: string; plan?: boolean; markdown?: boolean }) => {
      checkPlanFlags(opts);
      const chosen = [opts.latest, opts.random, opts.key !== undefined, opts.label !== undefined, opts.at !== undefined, opts.randomTime].filter(Boolean).length;
      if (chosen > 1) throw new UsageError('choose one of --latest, --random, --key, --label, --at, --random-time');
      if (opts.key !== undefined && !/^\d{8}T\d{6}Z-[a-z0-9]{4,16}$/.test(opts.key)) throw new UsageError(`--key: expected a backup id such as 20261125T030000Z-a1b2c3, found ${shown(opts.key)}`);
      if (opts.label !== undefined && !PGBACKREST_LABEL.test(opts.label)) throw new UsageError(`--label: expected a pgBackRest backup label such as 20261125-030000F, found ${shown(opts.label)}`);
      if (opts.within !== undefined && !opts.randomTime) throw new UsageError('--within goes with --random-time');
      if (opts.within !== undefined && parseDuration(opts.within) === undefined) throw new UsageError(`--within: expected a duration such as 7d or 36h, found ${shown(opts.within)}`);
      const selection: RecoveryPointSelection = opts.key
        ? { mode: 'key', backupId: opts.key }
        : opts.label
          ? { mode: 'label', label: opts.label }
          : opts.at !== undefined
            ? { mode: 'time', at: opts.at }
            : opts.randomTime
              ? { mode: 'randomTime', ...(opts.within ? { within: opts.within } : {}) }
              : opts.random
                ? { mode: 'random' }
                : { mode: 'latest' };
      try {
        validateVerifyBackupInput({ environment: 'x', database: 'x', selection });
      } catch (err) {
        throw new UsageError(((err as Error).message.replace(/^invalid verifyBackup input: /, '').replace(/selection\.at/, '--at').replace(/selection\.within/, '--within')));
      }
      const g = globals();
      const loaded = loadCliConfig(g);
      await refuseUnreachable(loaded, cliEnvironment(loaded, g), opts.database, selection);
      if (opts.plan) {
        return planCommand(g, 'verifyBackup', opts, (c) => {
          checkDatabase(c, opts.database);
          return { environment: c.environment, database: opts.database, selection };
        });
      }
      await runAndReport(g, (c, progress) => runVerify(c, opts.database, selection, progress), describeVerify);
    });

  backup
    .command('list')
    .description('the complete backups of a database, newest first; pgBackRest databases: the backup sets and the recoverable window')
    .option('--database <key>', 'database key from the config', 'main')
    .action(async (opts: { database: string }) => {
      const g = globals();
      const loaded = loadCliConfig(g);
      const { name, env } = cliEnvironment(loaded, g);
      if (!env.backups) throw new UsageError(`environment ${name} has no backups: section`);
      if (!(opts.database in env.databases)) throw new UsageError(`--database: ${shown(opts.database)} is not configured for environment ${name}; configured: ${Object.keys(env.databases).join(', ')}`);
      // Loaded on use: the activities pull in every client library (Kubernetes, AWS), which most commands never need.
      const { createActivities } = await import('../activities');
      if (env.databases[opts.database].backups.method === 'pgbackrest') {
        const repo = await createActivities(loaded, name).inspectPhysicalRepository({ database: opts.database });
        if (g.json) return printJson({ ok: true, environment: name, method: 'pgbackrest', ...repo });
        return void process.stdout.write(describeRepository(repo));
      }
      const backups = await createActivities(loaded, name).listBackups({ database: opts.database });
      if (g.json) return printJson({ ok: true, environment: name, database: opts.database, backups });
      if (backups.length === 0) return void process.stdout.write(`no backups of ${opts.database} in ${name}\n`);
      for (const b of backups) process.stdout.write(`${b.backupId}  ${b.endedAt}  ${mb(b.bytes).padStart(10)}  ${b.tableCount} tables\n`);
    });
}

export function describeRepository(r: RepositoryOverview): string {
  const lines = [`stanza ${r.stanza} (${r.database}): ${r.status}, PostgreSQL ${r.pgVersion ?? '?'}`];
  const backups = [...r.backups].reverse();
  if (backups.length === 0) lines.push('  no backups');
  for (const b of backups) {
    lines.push(`  ${b.label.padEnd(34)} ${b.type.padEnd(4)} ${b.stoppedAt}  ${mb(b.repoDeltaBytes).padStart(10)} (set ${mb(b.repoBytes)}, database ${mb(b.databaseBytes)})  WAL ${b.walStart}..${b.walStop}${b.error ? '  ERROR' : ''}`);
  }
  lines.push(
    `recoverable window: ${r.window.from && r.window.until ? `${r.window.from} to ${r.window.until}` : `none (${r.window.reason})`}`,
    `WAL archive: ${r.archive ? `${r.archive.min} to ${r.archive.max}` : 'empty'}; newest archived ${r.archiver.lastArchivedWal ?? 'none'} at ${r.archiver.lastArchivedAt ?? '-'} on ${r.archiver.node}` +
      `${r.archiver.backlogSegments ? `, ${r.archiver.backlogSegments} segments waiting` : ''}${r.archiver.failing ? `, FAILING since ${r.archiver.lastFailedAt}` : ''}`,
    `restore canary: ${r.canary.rows} rows${r.canary.newestCovered ? `, newest in the archive ${r.canary.newestCovered.writtenAt}` : ''}`,
  );
  return `${lines.join('\n')}\n`;
}

/**
 * Refuses, before a run starts, a choice the repository cannot satisfy: a point-in-time selection of a
 * dump database, an unknown label, a time outside the recoverable window.
 */
async function refuseUnreachable(loaded: LoadedConfig, { name, env }: { name: string; env: EnvironmentConfig }, database: string, selection: RecoveryPointSelection): Promise<void> {
  if (!(database in env.databases)) throw new UsageError(`--database: ${shown(database)} is not configured for environment ${name}; configured: ${Object.keys(env.databases).join(', ') || 'none'}`);
  if (!env.backups) throw new UsageError(`environment ${name} has no backups: section; add the bucket to back up to`);
  const method = env.databases[database].backups.method;
  const physicalOnly = selection.mode === 'label' || selection.mode === 'time' || selection.mode === 'randomTime';
  if (method !== 'pgbackrest') {
    if (physicalOnly) throw new UsageError(`${database} is backed up with pg_dump: --label, --at and --random-time need a pgBackRest database (backups.method: pgbackrest)`);
    return;
  }
  if (selection.mode === 'key') throw new UsageError(`--key: ${database} is backed up with pgBackRest; choose a backup with --label (runbook backup list --database ${database})`);
  if (selection.mode !== 'label' && selection.mode !== 'time') return;
  const { createActivities } = await import('../activities');
  const repo = await createActivities(loaded, name).inspectPhysicalRepository({ database });
  if (selection.mode === 'label' && !repo.backups.some((b) => b.label === selection.label && !b.error)) {
    throw new UsageError(`--label: backup ${selection.label} is not in the repository of stanza ${repo.stanza}; it holds ${repo.backups.map((b) => b.label).join(', ') || 'no backup'}`);
  }
  if (selection.mode === 'time') {
    const at = Date.parse(selection.at);
    const { from, until, reason } = repo.window;
    if (!from || !until || at < Date.parse(from) || at > Date.parse(until)) {
      throw new UsageError(`--at: ${new Date(at).toISOString()} is outside the window ${database} can be restored to: ${from && until ? `${from} to ${until}` : `none (${reason})`}`);
    }
  }
}
