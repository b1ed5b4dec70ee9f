import type { Command } from 'commander';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { RestoreReport } from '../activities/reports';
import type { BackupDatabaseResult } from '../workflows/backupDatabase';
import type { RecoveryPointSelection, VerifyBackupResult } from '../workflows/verifyBackup';
import { ConnectedClient, failureMessage, startRunbook } from './client';
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

export async function runBackup(c: ConnectedClient, database: string, showProgress: boolean): Promise<RunOutcome<BackupDatabaseResult>> {
  checkDatabase(c, database);
  const { handle, workflowId } = await startRunbook(c, 'backupDatabase', [{ environment: c.environment, database }], {});
  if (showProgress) process.stderr.write(`backup of ${database} started: workflow ${workflowId}\n`);
  try {
    return { ok: true, workflowId, result: await waitWithProgress<BackupDatabaseResult>(handle, showProgress) };
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

export function describeBackup(o: RunOutcome<BackupDatabaseResult>): string {
  if (!o.ok || !o.result) return `backup FAILED (workflow ${o.workflowId}): ${o.error}`;
  const r = o.result;
  return [
    `backup ${r.backupId} of ${r.database} written: ${mb(r.bytes)}, ${r.tableCount} tables, sha256 ${r.sha256.slice(0, 16)}…`,
    `  manifest ${r.manifestKey}`,
    `  retention: kept ${r.retention.kept.length}, deleted ${r.retention.deleted.length ? r.retention.deleted.join(', ') : 'none'}`,
  ].join('\n');
}

export function describeVerify(o: RunOutcome<RestoreReport>): string {
  const r = o.result;
  if (!r) return `restore test FAILED (workflow ${o.workflowId}): ${o.error}`;
  const lines = [
    `restore test ${r.passed ? 'passed' : 'FAILED'} for ${r.database} (workflow ${o.workflowId})`,
    `  recovery point ${r.backupId ?? 'none'} (${r.selection})${r.backupAgeMs !== undefined ? `, ${Math.round(r.backupAgeMs / 1000)} s old` : ''}`,
    `  RPO: ${r.rpo.met === null ? 'no target' : r.rpo.met ? 'met' : 'VIOLATED'}`,
    r.restore ? `  restored ${mb(r.restore.bytes)} in ${(r.restore.durationMs / 1000).toFixed(1)} s (${r.restore.mode})` : '  not restored',
    `  scratch database ${r.scratchDatabase}: ${r.scratchDropped ? 'dropped' : 'NOT dropped'}`,
  ];
  for (const c of r.checks) lines.push(`  [${c.passed ? 'ok  ' : 'FAIL'}] ${c.name}: ${c.detail}`);
  for (const reason of r.reasons) lines.push(`  reason: ${reason}`);
  return lines.join('\n');
}

export function registerBackup(program: Command, globals: () => GlobalOptions): void {
  const backup = program.command('backup').description('database backups to S3 and restore tests');

  backup
    .command('run')
    .description('take a backup now: pg_dump streamed to S3 with a manifest, then retention')
    .option('--database <key>', 'database key from the config', 'main')
    .action(async (opts: { database: string }) => {
      await runAndReport(globals(), (c, progress) => runBackup(c, opts.database, progress), describeBackup);
    });

  backup
    .command('verify')
    .description('restore test: restore a backup into a scratch database and compare it with its manifest (exit 0 only if it passed)')
    .option('--database <key>', 'database key from the config', 'main')
    .option('--latest', 'the newest backup (default)')
    .option('--random', 'a random backup within restoreTest.randomWindow')
    .option('--key <backupId>', 'a specific backup')
    .action(async (opts: { database: string; latest?: boolean; random?: boolean; key?: string }) => {
      const chosen = [opts.latest, opts.random, opts.key !== undefined].filter(Boolean).length;
      if (chosen > 1) throw new UsageError('choose one of --latest, --random, --key');
      if (opts.key !== undefined && !/^\d{8}T\d{6}Z-[a-z0-9]{4,16}$/.test(opts.key)) throw new UsageError(`--key: expected a backup id such as 20261125T030000Z-a1b2c3, found ${shown(opts.key)}`);
      const selection: RecoveryPointSelection = opts.key ? { mode: 'key', backupId: opts.key } : opts.random ? { mode: 'random' } : { mode: 'latest' };
      await runAndReport(globals(), (c, progress) => runVerify(c, opts.database, selection, progress), describeVerify);
    });

  backup
    .command('list')
    .description('list the complete backups of a database, newest first')
    .option('--database <key>', 'database key from the config', 'main')
    .action(async (opts: { database: string }) => {
      const g = globals();
      const loaded = loadCliConfig(g);
      const { name, env } = cliEnvironment(loaded, g);
      if (!env.backups) throw new UsageError(`environment ${name} has no backups: section`);
      if (!(opts.database in env.databases)) throw new UsageError(`--database: ${shown(opts.database)} is not configured for environment ${name}; configured: ${Object.keys(env.databases).join(', ')}`);
      // Loaded on use: the activities pull in every client library (Kubernetes, AWS), which most commands never need.
      const { createActivities } = await import('../activities');
      const backups = await createActivities(loaded, name).listBackups({ database: opts.database });
      if (g.json) return printJson({ ok: true, environment: name, database: opts.database, backups });
      if (backups.length === 0) return void process.stdout.write(`no backups of ${opts.database} in ${name}\n`);
      for (const b of backups) process.stdout.write(`${b.backupId}  ${b.endedAt}  ${mb(b.bytes).padStart(10)}  ${b.tableCount} tables\n`);
    });
}
