import type { Command } from 'commander';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TemporalConfigRestoreReport } from '../reports/temporalConfig';
import type { BackupTemporalConfigResult } from '../workflows/backupTemporalConfig';
import type { VerifyTemporalConfigResult } from '../workflows/verifyTemporalConfig';
import type { RunOutcome } from './backup';
import { ConnectedClient, failureMessage, startRunbook } from './client';
import { cliEnvironment, GlobalOptions, loadCliConfig, printJson, runAndReport, shown, UsageError } from './common';
import { waitWithProgress } from './progress';

function checkBackups(c: ConnectedClient): void {
  if (!c.env.backups) throw new UsageError(`environment ${c.environment} has no backups: section; add the bucket configuration backups go to`);
}

export async function runConfigBackup(c: ConnectedClient, showProgress: boolean): Promise<RunOutcome<BackupTemporalConfigResult>> {
  checkBackups(c);
  const { handle, workflowId } = await startRunbook(c, 'backupTemporalConfig', [{ environment: c.environment }], {});
  if (showProgress) process.stderr.write(`configuration backup started: workflow ${workflowId}\n`);
  try {
    return { ok: true, workflowId, result: await waitWithProgress<BackupTemporalConfigResult>(handle, showProgress) };
  } catch (err) {
    return { ok: false, workflowId, error: failureMessage(err) };
  }
}

export async function runConfigVerify(c: ConnectedClient, backupId: string | undefined, showProgress: boolean): Promise<RunOutcome<TemporalConfigRestoreReport>> {
  checkBackups(c);
  const { handle, workflowId } = await startRunbook(c, 'verifyTemporalConfig', [{ environment: c.environment, ...(backupId ? { backupId } : {}) }], {});
  if (showProgress) process.stderr.write(`configuration restore test started: workflow ${workflowId}\n`);
  try {
    return { ok: true, workflowId, result: await waitWithProgress<VerifyTemporalConfigResult>(handle, showProgress) };
  } catch (err) {
    const cause = err instanceof WorkflowFailedError ? err.cause : undefined;
    const report = cause instanceof ApplicationFailure && cause.type === 'ConfigRestoreTestFailed' ? (cause.details?.[0] as TemporalConfigRestoreReport) : undefined;
    return { ok: false, workflowId, result: report, error: failureMessage(err) };
  }
}

export function describeConfigBackup(o: RunOutcome<BackupTemporalConfigResult>): string {
  if (!o.ok || !o.result) return `configuration backup FAILED (workflow ${o.workflowId}): ${o.error}`;
  const r = o.result;
  return [
    `configuration backup ${r.backupId} written: ${r.namespaces} namespaces, ${r.schedules} schedules, ${r.searchAttributes} custom search attributes, ${r.bytes} bytes`,
    `  manifest ${r.manifestKey} (sha256 ${r.sha256.slice(0, 16)}…)`,
  ].join('\n');
}

export function describeConfigVerify(o: RunOutcome<TemporalConfigRestoreReport>): string {
  const r = o.result;
  if (!r) return `configuration restore test FAILED (workflow ${o.workflowId}): ${o.error}`;
  const lines = [
    `configuration restore test ${r.passed ? 'passed' : 'FAILED'} (workflow ${o.workflowId})`,
    `  backup ${r.backupId ?? 'none'}${r.backupTakenAt ? ` taken ${r.backupTakenAt}` : ''}`,
    `  integrity: ${r.integrity ? (r.integrity.sha256Matches ? 'sha256 matches the manifest' : 'sha256 does NOT match the manifest') : 'not checked'}`,
  ];
  for (const s of r.scratchNamespaces) lines.push(`  ${s.namespace} restored as ${s.scratchNamespace} (${s.schedules ?? '-'} schedules): ${s.deleted ? 'deleted' : 'NOT deleted'}`);
  for (const d of r.restoredDifferences) lines.push(`  restored differs: ${d.path}: backup ${JSON.stringify(d.expected)}, restored ${JSON.stringify(d.found)}`);
  for (const d of r.liveDifferences) lines.push(`  live differs: ${d.path}: backup ${JSON.stringify(d.expected)}, live ${JSON.stringify(d.found)}`);
  for (const reason of r.reasons) lines.push(`  reason: ${reason}`);
  return lines.join('\n');
}

export function registerTemporalConfig(program: Command, globals: () => GlobalOptions): void {
  const group = program.command('temporal-config').description("backups of Temporal's own configuration (namespaces, search attributes, schedules, dynamic config, schema versions) and their restore tests");

  group
    .command('backup')
    .description('back up the configuration now (the backupTemporalConfig runbook)')
    .action(async () => {
      await runAndReport(globals(), (c, progress) => runConfigBackup(c, progress), describeConfigBackup);
    });

  group
    .command('verify')
    .description('restore test: apply a backup to scratch namespaces, compare with the backup and the live cluster, delete them (exit 0 only if equal)')
    .option('--backup <backupId>', 'a specific backup (default: the newest)')
    .action(async (opts: { backup?: string }) => {
      if (opts.backup !== undefined && !/^\d{8}T\d{6}Z-[a-z0-9]{4,16}$/.test(opts.backup)) throw new UsageError(`--backup: expected a backup id such as 20261125T020000Z-a1b2c3, found ${shown(opts.backup)}`);
      await runAndReport(globals(), (c, progress) => runConfigVerify(c, opts.backup, progress), describeConfigVerify);
    });

  group
    .command('list')
    .description('the complete configuration backups, newest first')
    .action(async () => {
      const g = globals();
      const loaded = loadCliConfig(g);
      const { name, env } = cliEnvironment(loaded, g);
      if (!env.backups) throw new UsageError(`environment ${name} has no backups: section`);
      const { createActivities } = await import('../activities');
      const backups = await createActivities(loaded, name).listTemporalConfigBackups();
      if (g.json) return printJson({ ok: true, environment: name, backups });
      if (backups.length === 0) return void process.stdout.write(`no configuration backups in ${name}\n`);
      for (const b of backups) process.stdout.write(`${b.backupId}  ${b.takenAt}  ${String(b.bytes).padStart(8)} bytes\n`);
    });
}
