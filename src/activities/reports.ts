import { esc, renderRunPage, ReportLinks } from '../reports/html';
/** What a restore test found, as written next to the backup (JSON) and rendered for people (Markdown). */
export interface RestoreReport {
  testId: string;
  workflowId: string;
  environment: string;
  database: string;
  passed: boolean;
  /** Why the test failed, one line per reason (empty when passed). */
  reasons: string[];
  selection: string;
  backupId?: string;
  backupEndedAt?: string;
  backupAgeMs?: number;
  rpo: { limitMs?: number; newestBackupAgeMs?: number; met: boolean | null };
  restore?: { bytes: number; durationMs: number; mode: string; jobs: number };
  checks: { name: string; passed: boolean; detail: string }[];
  scratchDatabase: string;
  scratchDropped: boolean;
  /** Where the scratch database lived: a scratch instance the worker started (its name), or a server. */
  scratchInstance?: string;
  /** pgBackRest databases: the recovery point, the target, replay and the repository's state. */
  method?: 'dump' | 'pgbackrest';
  pitr?: PitrReport;
  startedAt: string;
  endedAt: string;
}

export interface PitrReport {
  stanza: string;
  backup?: { label: string; type: string; startedAt: string; stoppedAt: string; databaseBytes: number; repoBytes: number };
  target?: { type: 'immediate' | 'time' | 'end'; time?: string; description: string };
  restoreMs?: number;
  replayMs?: number;
  walReplayedBytes?: number;
  segmentsRestored?: number;
  replayFrom?: string;
  replayTo?: string;
  stoppedBecause?: string;
  lastTransactionAt?: string;
  /** The recoverable window when the test ran. */
  window?: { from?: string; until?: string; reason?: string };
  /** What a loss of the primary right now would lose: the newest segment archived and when. */
  rpoAchievable?: { newestArchivedWal: string | null; archivedAt: string | null; unarchivedWal: boolean; exposureMs?: number };
  archive?: { min?: string; max?: string; scannedSegments?: number; missing: string[] };
  checks?: { check: string; verify?: string };
}

function duration(ms: number | undefined): string {
  if (ms === undefined) return '-';
  if (ms < 1_000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1_000).toFixed(1)} s`;
  if (ms < 2 * 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function renderRestoreReportMarkdown(r: RestoreReport): string {
  const lines = [
    `# Restore test ${r.passed ? 'PASSED' : 'FAILED'}: ${r.environment} / ${r.database}`,
    '',
    `- Test: \`${r.testId}\` (workflow \`${r.workflowId}\`), ${r.startedAt} to ${r.endedAt}`,
    `- Recovery point: ${r.backupId ? `\`${r.backupId}\` (${r.selection}), taken ${r.backupEndedAt}, age ${duration(r.backupAgeMs)}` : `none (${r.selection})`}`,
    `- RPO: ${r.rpo.limitMs === undefined ? 'no target set' : `newest backup ${duration(r.rpo.newestBackupAgeMs)} old, target ${duration(r.rpo.limitMs)}: ${r.rpo.met ? 'met' : 'VIOLATED'}`}`,
  ];
  if (r.pitr) {
    const p = r.pitr;
    lines.push(
      `- Stanza \`${p.stanza}\`, backup ${p.backup ? `\`${p.backup.label}\` (${p.backup.type}, ended ${p.backup.stoppedAt})` : 'none'}`,
      `- Target: ${p.target?.description ?? 'none'}`,
      `- Restore ${duration(p.restoreMs)}, replay ${duration(p.replayMs)}${p.walReplayedBytes !== undefined ? `, ${(p.walReplayedBytes / 1_048_576).toFixed(1)} MB of WAL (${p.segmentsRestored ?? 0} segments from the archive, ${p.replayFrom} to ${p.replayTo})` : ''}`,
      `- Recovery ended: ${p.stoppedBecause ?? '-'}${p.lastTransactionAt ? `; last transaction ${p.lastTransactionAt}` : ''}`,
      `- Recoverable window: ${p.window?.from && p.window.until ? `${p.window.from} to ${p.window.until}` : (p.window?.reason ?? '-')}`,
      `- RPO achievable now: ${p.rpoAchievable ? `newest archived WAL ${p.rpoAchievable.newestArchivedWal ?? 'none'} at ${p.rpoAchievable.archivedAt ?? '-'}${p.rpoAchievable.exposureMs !== undefined ? ` (${duration(p.rpoAchievable.exposureMs)} of writes at risk)` : ''}` : '-'}`,
      `- WAL archive: ${p.archive ? `${p.archive.min ?? '-'} to ${p.archive.max ?? '-'}, ${p.archive.scannedSegments ?? 0} segments checked, ${p.archive.missing.length ? `MISSING ${p.archive.missing.join(', ')}` : 'none missing'}` : '-'}`,
      `- Scratch instance \`${r.scratchInstance ?? '-'}\`: ${r.scratchDropped ? 'removed' : 'NOT removed'}`,
    );
  } else {
    lines.push(
      `- Restore: ${r.restore ? `${r.restore.bytes} bytes in ${duration(r.restore.durationMs)} (${r.restore.mode}, ${r.restore.jobs} job${r.restore.jobs === 1 ? '' : 's'})` : 'not run'}`,
      `- Scratch database \`${r.scratchDatabase}\`${r.scratchInstance ? ` in scratch instance \`${r.scratchInstance}\`` : ''}: ${r.scratchDropped ? 'dropped' : 'NOT dropped'}`,
    );
  }
  if (r.reasons.length) lines.push('', '## Why it failed', '', ...r.reasons.map((x) => `- ${x}`));
  lines.push('', '## Checks', '', '| check | result | detail |', '| --- | --- | --- |');
  for (const c of r.checks) lines.push(`| ${cell(c.name)} | ${c.passed ? 'pass' : '**FAIL**'} | ${cell(c.detail)} |`);
  return `${lines.join('\n')}\n`;
}

/** The restore test's page: the verdict, the recovery point and its age against the RPO, the restore, every check. */
export function renderRestoreReportHtml(r: RestoreReport, links?: ReportLinks): string {
  const summary: [string, string][] = [
    ['Environment / database', `${r.environment} / ${r.database}`],
    ['Started / ended', `${r.startedAt} to ${r.endedAt}`],
    ['Recovery point', r.backupId ? `${r.backupId} (${r.selection}), taken ${r.backupEndedAt}, age ${duration(r.backupAgeMs)}` : `none (${r.selection})`],
    ['RPO', r.rpo.limitMs === undefined ? 'no target set' : `newest backup ${duration(r.rpo.newestBackupAgeMs)} old, target ${duration(r.rpo.limitMs)}: ${r.rpo.met ? 'met' : 'VIOLATED'}`],
  ];
  const p = r.pitr;
  if (p) {
    summary.push(
      ['Stanza / backup', `${p.stanza} / ${p.backup ? `${p.backup.label} (${p.backup.type}, ended ${p.backup.stoppedAt})` : 'none'}`],
      ['Target', p.target?.description ?? 'none'],
      ['Restore and replay', `restore ${duration(p.restoreMs)}, replay ${duration(p.replayMs)}${p.walReplayedBytes !== undefined ? `, ${(p.walReplayedBytes / 1_048_576).toFixed(1)} MB of WAL` : ''}`],
      ['Recovery ended', `${p.stoppedBecause ?? '-'}${p.lastTransactionAt ? `; last transaction ${p.lastTransactionAt}` : ''}`],
      ['WAL archive', p.archive ? `${p.archive.min ?? '-'} to ${p.archive.max ?? '-'}, ${p.archive.missing.length ? `MISSING ${p.archive.missing.join(', ')}` : 'none missing'}` : '-'],
      ['Scratch instance', `${r.scratchInstance ?? '-'}: ${r.scratchDropped ? 'removed' : 'NOT removed'}`],
    );
  } else {
    summary.push(
      ['Restore', r.restore ? `${r.restore.bytes} bytes in ${duration(r.restore.durationMs)} (${r.restore.mode}, ${r.restore.jobs} job${r.restore.jobs === 1 ? '' : 's'})` : 'not run'],
      ['Scratch database', `${r.scratchDatabase}${r.scratchInstance ? ` in scratch instance ${r.scratchInstance}` : ''}: ${r.scratchDropped ? 'dropped' : 'NOT dropped'}`],
    );
  }
  const checks = `<table class="checks"><thead><tr><th>check</th><th>result</th><th>detail</th></tr></thead><tbody>${r.checks
    .map((c) => `<tr class="${c.passed ? 'pass' : 'fail'}"><td>${esc(c.name)}</td><td style="font-weight:bold;color:${c.passed ? '#2e7d32' : '#c62828'}">${c.passed ? 'pass' : 'FAIL'}</td><td>${esc(c.detail)}</td></tr>`)
    .join('')}</tbody></table>`;
  return renderRunPage(
    { kind: 'Restore test', title: `${r.environment} / ${r.database} ${r.testId}`, verdict: r.passed ? 'PASSED' : 'FAILED', ok: r.passed, summary, reasons: r.reasons, sections: [{ title: 'Checks', html: checks }], runs: [{ label: 'this restore test', workflowId: r.workflowId }] },
    links,
  );
}
