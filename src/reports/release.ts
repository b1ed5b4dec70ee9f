import type { ContainerImage } from '../activities/kubernetes';
import type { JobOutcome } from '../activities/jobs';
import type { GateRecord } from '../workflows/lib/gate';
import type { StepRecord } from '../workflows/lib/timeline';
import { esc, renderRunPage, ReportLinks } from './html';

interface Linked {
  workflowId: string;
  runId: string;
}

/** What a release did, stage by stage, with links to every child run and the compensation it ran. */
export interface ReleaseReport {
  releaseId: string;
  workflowId: string;
  environment: string;
  deployment: string;
  database: string;
  image: string;
  requestedBy?: string;
  /** released: migrated, rolled out and watched; otherwise where it stopped and what was undone. */
  outcome: 'released' | 'blocked' | 'not approved' | 'rolled back' | 'aborted' | 'failed';
  passed: boolean;
  reason?: string;
  policy: 'down-migration' | 'restore' | 'forward-fix';
  backup?: Linked & { backupId: string; bytes: number; sha256: string; manifestKey: string };
  restoreTest?: Linked & { passed: boolean; reason?: string };
  approval?: GateRecord;
  migration?: JobOutcome & { command: string[] };
  rollout?: Linked & { outcome: string; reason?: string; revision: number; previousRevision?: number; previousImages: ContainerImage[]; finalImages: ContainerImage[] };
  watch?: { passed: boolean; reason?: string; measurements: number; of: number; intervalSeconds: number };
  /** Everything undone after a failure, in order: the Deployment, then the database by the policy. */
  compensation?: {
    rollback?: Linked & { changed?: boolean; verified?: boolean | null; images?: ContainerImage[]; error?: string; by: 'the rollout' | 'the release' };
    downMigration?: JobOutcome & { command: string[] };
    restore?: { gate: GateRecord; backupId: string; keptAside?: string; checks?: number; durationMs?: number; error?: string };
    forwardFix?: { gate: GateRecord };
    database: 'migrated back' | 'restored from the backup' | 'left migrated' | 'untouched';
  };
  startedAt: string;
  endedAt: string;
  steps: StepRecord[];
}

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const run = (l: Linked) => `\`${l.workflowId}\` (run \`${l.runId}\`)`;
const images = (list: ContainerImage[]) => list.map((c) => `${c.name}=${c.image}`).join(', ');
const job = (j: JobOutcome & { command: string[] }) => `Job \`${j.name}\`${j.pod ? ` (pod \`${j.pod}\`)` : ''}: ${j.succeeded ? 'succeeded' : `**failed**${j.reason ? `: ${cell(j.reason)}` : ''}`}${j.exitCode !== undefined ? `, exit ${j.exitCode}` : ''}; \`${cell(j.command.join(' '))}\``;

export function renderReleaseMarkdown(r: ReleaseReport): string {
  const lines = [
    `# Release ${r.passed ? 'RELEASED' : r.outcome.toUpperCase()}: ${r.environment} / ${r.deployment} → ${r.image}`,
    '',
    `- Release: \`${r.releaseId}\` (workflow \`${r.workflowId}\`), ${r.startedAt} to ${r.endedAt}${r.requestedBy ? `, requested by ${r.requestedBy}` : ''}`,
    `- Database: \`${r.database}\`, policy on failure: ${r.policy}`,
  ];
  if (r.reason) lines.push(`- Stopped: ${r.reason}`);
  lines.push('', '## Runs', '', '| stage | run | result |', '| --- | --- | --- |');
  if (r.backup) lines.push(`| backup | ${run(r.backup)} | \`${r.backup.backupId}\`, ${r.backup.bytes} bytes, sha256 ${r.backup.sha256.slice(0, 12)}…, manifest \`${r.backup.manifestKey}\` |`);
  if (r.restoreTest) lines.push(`| restore test | ${run(r.restoreTest)} | ${r.restoreTest.passed ? 'passed' : `**failed**: ${cell(r.restoreTest.reason ?? '')}`} |`);
  if (r.approval) lines.push(`| approval | \`${r.workflowId}\` | ${r.approval.outcome}${r.approval.by ? ` by ${cell(r.approval.by)}` : ''}${r.approval.fingerprint ? ` (key ${r.approval.fingerprint})` : ''}${r.approval.closedAt ? ` at ${r.approval.closedAt}` : ''} |`);
  if (r.migration) lines.push(`| migration | \`${r.workflowId}\` | ${job(r.migration)} |`);
  if (r.rollout) lines.push(`| rollout | ${run(r.rollout)} | ${r.rollout.outcome}${r.rollout.reason ? `: ${cell(r.rollout.reason)}` : ''}; ${images(r.rollout.previousImages)} → ${images(r.rollout.finalImages)} |`);
  if (r.watch) lines.push(`| watch window | \`${r.workflowId}\` | ${r.watch.passed ? 'quiet' : `**alert**: ${cell(r.watch.reason ?? '')}`} (${r.watch.measurements} of ${r.watch.of}) |`);
  const c = r.compensation;
  if (c) {
    lines.push('', '## Compensation', '', `The database was ${c.database}.`, '');
    if (c.rollback) lines.push(`- Deployment rolled back by ${c.rollback.by}: ${run(c.rollback)}: ${c.rollback.error ? `**failed**: ${cell(c.rollback.error)}` : `${images(c.rollback.images ?? [])}, verified: ${c.rollback.verified ?? 'no analysis'}`}`);
    if (c.downMigration) lines.push(`- Down-migration: ${job(c.downMigration)}`);
    if (c.restore) lines.push(`- Restore of backup \`${c.restore.backupId}\` into the live database: gate ${c.restore.gate.outcome}${c.restore.gate.by ? ` by ${c.restore.gate.by} (key ${c.restore.gate.fingerprint})` : ''}${c.restore.keptAside ? `; the database as it was is kept as \`${c.restore.keptAside}\`` : ''}${c.restore.error ? `; **failed**: ${cell(c.restore.error)}` : ''}`);
    if (c.forwardFix) lines.push(`- Forward fix: gate ${c.forwardFix.gate.outcome}${c.forwardFix.gate.by ? ` by ${c.forwardFix.gate.by}` : ''}${c.forwardFix.gate.reason ? `: ${cell(c.forwardFix.gate.reason)}` : ''}`);
  }
  const logs: [string, (JobOutcome & { command: string[] }) | undefined][] = [
    ['migration', r.migration],
    ['down-migration', c?.downMigration],
  ];
  for (const [name, j] of logs) {
    if (!j) continue;
    if (!j.logTail) continue;
    lines.push('', `## ${name} log (last lines, from the ${j.logSource})`, '', '```', j.logTail, '```');
  }
  lines.push('', '## Steps', '', '| step | outcome | duration |', '| --- | --- | --- |');
  for (const s of r.steps) lines.push(`| ${cell(s.name)} | ${s.outcome}${s.error ? `: ${cell(s.error)}` : ''} | ${s.durationMs ?? 0} ms |`);
  return `${lines.join('\n')}\n`;
}

const jobText = (j: JobOutcome & { command: string[] }) => `Job ${j.name}${j.pod ? ` (pod ${j.pod})` : ''}: ${j.succeeded ? 'succeeded' : `failed${j.reason ? `: ${j.reason}` : ''}`}${j.exitCode !== undefined ? `, exit ${j.exitCode}` : ''}; ${j.command.join(' ')}`;

/** The release's page: the verdict, backup, restore test, approval, migration with its log, rollout, watch and compensation. */
export function renderReleaseHtml(r: ReleaseReport, links?: ReportLinks): string {
  const summary: [string, string][] = [
    ['Environment / Deployment', `${r.environment} / ${r.deployment}`],
    ['Image', r.image],
    ['Database / policy on failure', `${r.database} / ${r.policy}`],
    ['Started / ended', `${r.startedAt} to ${r.endedAt}`],
  ];
  if (r.requestedBy) summary.push(['Requested by', r.requestedBy]);
  if (r.backup) summary.push(['Backup', `${r.backup.backupId}, ${r.backup.bytes} bytes, sha256 ${r.backup.sha256}, manifest ${r.backup.manifestKey}`]);
  if (r.restoreTest) summary.push(['Restore test', r.restoreTest.passed ? 'passed' : `failed: ${r.restoreTest.reason ?? ''}`]);
  if (r.approval) summary.push(['Approval', `${r.approval.outcome}${r.approval.by ? ` by ${r.approval.by}` : ''}${r.approval.fingerprint ? ` (key ${r.approval.fingerprint})` : ''}${r.approval.closedAt ? ` at ${r.approval.closedAt}` : ''}`]);
  if (r.migration) summary.push(['Migration', jobText(r.migration)]);
  if (r.rollout) summary.push(['Rollout', `${r.rollout.outcome}${r.rollout.reason ? `: ${r.rollout.reason}` : ''}; ${images(r.rollout.previousImages)} → ${images(r.rollout.finalImages)}`]);
  if (r.watch) summary.push(['Watch window', `${r.watch.passed ? 'quiet' : `alert: ${r.watch.reason ?? ''}`} (${r.watch.measurements} of ${r.watch.of})`]);
  const c = r.compensation;
  if (c) {
    summary.push(['Database after compensation', c.database]);
    if (c.rollback) summary.push([`Rolled back by ${c.rollback.by}`, c.rollback.error ? `failed: ${c.rollback.error}` : `${images(c.rollback.images ?? [])}, verified: ${c.rollback.verified ?? 'no analysis'}`]);
    if (c.downMigration) summary.push(['Down-migration', jobText(c.downMigration)]);
    if (c.restore) summary.push(['Restore of the backup', `${c.restore.backupId}: gate ${c.restore.gate.outcome}${c.restore.gate.by ? ` by ${c.restore.gate.by}` : ''}${c.restore.keptAside ? `; the database as it was kept as ${c.restore.keptAside}` : ''}${c.restore.error ? `; failed: ${c.restore.error}` : ''}`]);
    if (c.forwardFix) summary.push(['Forward fix', `gate ${c.forwardFix.gate.outcome}${c.forwardFix.gate.by ? ` by ${c.forwardFix.gate.by}` : ''}`]);
  }
  const sections = (
    [
      ['Migration log', r.migration],
      ['Down-migration log', c?.downMigration],
    ] as [string, (JobOutcome & { command: string[] }) | undefined][]
  )
    .filter(([, j]) => j?.logTail)
    .map(([title, j]) => ({ title: `${title} (last lines, from the ${j!.logSource})`, html: `<pre>${esc(j!.logTail!)}</pre>` }));
  const runs: { label: string; workflowId: string; runId?: string }[] = [{ label: 'this release', workflowId: r.workflowId }];
  if (r.backup) runs.push({ label: 'backup', workflowId: r.backup.workflowId, runId: r.backup.runId });
  if (r.restoreTest) runs.push({ label: 'restore test', workflowId: r.restoreTest.workflowId, runId: r.restoreTest.runId });
  if (r.rollout) runs.push({ label: 'rollout', workflowId: r.rollout.workflowId, runId: r.rollout.runId });
  if (c?.rollback) runs.push({ label: 'rollback', workflowId: c.rollback.workflowId, runId: c.rollback.runId });
  return renderRunPage(
    { kind: 'Release', title: `${r.environment} / ${r.deployment} → ${r.image}`, verdict: r.passed ? 'RELEASED' : r.outcome.toUpperCase(), ok: r.passed, summary, reasons: r.reason ? [r.reason] : [], sections, steps: r.steps, runs },
    links,
  );
}
