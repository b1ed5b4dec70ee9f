/** The configuration restore test's report: pure data and rendering, used by the workflow and the CLI. */

export interface ConfigDifferenceView {
  path: string;
  expected: unknown;
  found: unknown;
}

export interface TemporalConfigRestoreReport {
  testId: string;
  workflowId: string;
  environment: string;
  backupId?: string;
  backupTakenAt?: string;
  backupAgeMs?: number;
  maxBackupAgeMs?: number;
  passed: boolean;
  reasons: string[];
  /** The backup document's sha256 against its manifest. */
  integrity: { sha256Matches: boolean; expectedSha256: string; foundSha256: string } | null;
  scratchNamespaces: { namespace: string; scratchNamespace: string; schedules?: number; searchAttributes?: number; deleted: boolean }[];
  /** The scratch copy against the backup: was the backup restored faithfully? */
  restoredDifferences: ConfigDifferenceView[];
  /** The backup against the live cluster: does it still describe it? */
  liveDifferences: ConfigDifferenceView[];
  startedAt: string;
  endedAt: string;
}

const show = (v: unknown) => {
  const text = JSON.stringify(v);
  return text === undefined ? 'nothing' : text.length > 160 ? `${text.slice(0, 157)}...` : text;
};

export function renderTemporalConfigReportMarkdown(r: TemporalConfigRestoreReport): string {
  const lines = [
    `# Temporal configuration restore test ${r.testId}: ${r.passed ? 'PASSED' : 'FAILED'}`,
    '',
    `- environment: ${r.environment}`,
    `- workflow: ${r.workflowId}`,
    `- backup: ${r.backupId ?? '(none)'}${r.backupTakenAt ? ` taken ${r.backupTakenAt}` : ''}`,
    `- integrity: ${r.integrity ? (r.integrity.sha256Matches ? 'sha256 matches the manifest' : `sha256 ${r.integrity.foundSha256} does not match the manifest's ${r.integrity.expectedSha256}`) : 'not checked'}`,
    `- started ${r.startedAt}, ended ${r.endedAt}`,
    '',
  ];
  if (r.reasons.length) lines.push('## Why it failed', '', ...r.reasons.map((x) => `- ${x}`), '');
  lines.push('## Scratch namespaces', '', '| namespace | restored as | schedules | search attributes | deleted |', '| --- | --- | --- | --- | --- |');
  for (const s of r.scratchNamespaces) lines.push(`| ${s.namespace} | ${s.scratchNamespace} | ${s.schedules ?? '-'} | ${s.searchAttributes ?? '-'} | ${s.deleted ? 'yes' : 'no'} |`);
  const table = (title: string, diffs: ConfigDifferenceView[]) => {
    lines.push('', `## ${title}`, '');
    if (diffs.length === 0) lines.push('equal');
    else {
      lines.push('| path | expected | found |', '| --- | --- | --- |');
      for (const d of diffs) lines.push(`| ${d.path} | ${show(d.expected)} | ${show(d.found)} |`);
    }
  };
  table('Restored copy against the backup', r.restoredDifferences);
  table('Backup against the live cluster', r.liveDifferences);
  return `${lines.join('\n')}\n`;
}
