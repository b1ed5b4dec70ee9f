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
  startedAt: string;
  endedAt: string;
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
    `- Restore: ${r.restore ? `${r.restore.bytes} bytes in ${duration(r.restore.durationMs)} (${r.restore.mode}, ${r.restore.jobs} job${r.restore.jobs === 1 ? '' : 's'})` : 'not run'}`,
    `- Scratch database \`${r.scratchDatabase}\`: ${r.scratchDropped ? 'dropped' : 'NOT dropped'}`,
  ];
  if (r.reasons.length) lines.push('', '## Why it failed', '', ...r.reasons.map((x) => `- ${x}`));
  lines.push('', '## Checks', '', '| check | result | detail |', '| --- | --- | --- |');
  for (const c of r.checks) lines.push(`| ${cell(c.name)} | ${c.passed ? 'pass' : '**FAIL**'} | ${cell(c.detail)} |`);
  return `${lines.join('\n')}\n`;
}
