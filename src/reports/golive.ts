import type { ContainerImage } from '../activities/kubernetes';
import type { StatusCounts } from './audit';
import type { GateRecord } from '../workflows/lib/gate';
import type { StepRecord } from '../workflows/lib/timeline';
import { esc, renderRunPage, ReportLinks } from './html';

interface Linked {
  workflowId: string;
  runId: string;
}

/** What a go-live did, stage by stage, with links (workflow and run ids) to every child run. */
export interface GoLiveReport {
  goLiveId: string;
  workflowId: string;
  environment: string;
  deployment: string;
  image: string;
  requestedBy?: string;
  /** live: rolled out and watched without an alert; otherwise where it stopped. */
  outcome: 'live' | 'blocked' | 'not approved' | 'rolled back' | 'aborted' | 'failed';
  passed: boolean;
  reason?: string;
  audit?: Linked & {
    auditId: string;
    ready: boolean;
    score: number;
    counts: StatusCounts;
    /** Critical items neither proved nor waived: any one stops go-live. */
    blocking: { id: string; status: string; summary: string }[];
    waived: { id: string; status: string; summary: string; by: string; fingerprint: string; reason: string; signedAt: string }[];
    /** Acts refused during the go-live (unsigned, bad or unknown keys, ...), with why. */
    refusedActs: { by: string; at: string; signal?: string; problem: string }[];
    refusedWaivers: { item: string; by: string; problem: string }[];
    reportKeys: string[];
  };
  smoke: (Linked & { queue: string; roundTripMs: number; worker: { host: string; pid: number; taskQueue: string } })[];
  approval?: GateRecord;
  rollout?: Linked & { outcome: string; reason?: string; revision: number; previousImages: ContainerImage[]; finalImages: ContainerImage[]; approvals: { name: string; outcome: string; by?: string; fingerprint?: string; at?: string }[] };
  watch?: { passed: boolean; reason?: string; measurements: number; of: number; intervalSeconds: number; failures: Record<string, number>; errors: Record<string, number>; last: { name: string; phase: string; detail: string }[] };
  rollback?: Linked & { changed?: boolean; verified?: boolean | null; images?: ContainerImage[]; error?: string };
  startedAt: string;
  endedAt: string;
  steps: StepRecord[];
}

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const run = (l: Linked) => `\`${l.workflowId}\` (run \`${l.runId}\`)`;
const images = (list: ContainerImage[]) => list.map((c) => `${c.name}=${c.image}`).join(', ');

export function renderGoLiveMarkdown(r: GoLiveReport): string {
  const lines = [
    `# Go-live ${r.passed ? 'LIVE' : r.outcome.toUpperCase()}: ${r.environment} / ${r.deployment} → ${r.image}`,
    '',
    `- Go-live: \`${r.goLiveId}\` (workflow \`${r.workflowId}\`), ${r.startedAt} to ${r.endedAt}${r.requestedBy ? `, requested by ${r.requestedBy}` : ''}`,
  ];
  if (r.reason) lines.push(`- Stopped: ${r.reason}`);
  lines.push('', '## Runs', '', '| stage | run | result |', '| --- | --- | --- |');
  if (r.audit) lines.push(`| readiness audit | ${run(r.audit)} | ${r.audit.blocking.length === 0 ? 'gate passed' : `**${r.audit.blocking.length} critical item(s) not proved**`}, score ${(r.audit.score * 100).toFixed(0)}%, report ${r.audit.reportKeys.map((k) => `\`${k}\``).join(', ') || 'not kept'} |`);
  for (const s of r.smoke) lines.push(`| smoke test on ${cell(s.queue)} | ${run(s)} | passed in ${s.roundTripMs} ms on ${cell(s.worker.host)}:${s.worker.pid} |`);
  if (r.approval) lines.push(`| approval | \`${r.workflowId}\` | ${r.approval.outcome}${r.approval.by ? ` by ${cell(r.approval.by)}` : ''}${r.approval.closedAt ? ` at ${r.approval.closedAt}` : ''}${r.approval.reason ? `: ${cell(r.approval.reason)}` : ''} |`);
  if (r.rollout) lines.push(`| rollout | ${run(r.rollout)} | ${r.rollout.outcome}${r.rollout.reason ? `: ${cell(r.rollout.reason)}` : ''}; ${images(r.rollout.previousImages)} → ${images(r.rollout.finalImages)} (revision ${r.rollout.revision}) |`);
  if (r.watch) lines.push(`| watch window | \`${r.workflowId}\` | ${r.watch.passed ? 'quiet' : `**alert**: ${cell(r.watch.reason ?? '')}`} (${r.watch.measurements} of ${r.watch.of} measurements, every ${r.watch.intervalSeconds} s) |`);
  if (r.rollback) lines.push(`| rollback | ${run(r.rollback)} | ${r.rollback.error ? `**failed**: ${cell(r.rollback.error)}` : `${r.rollback.changed ? 'reverted' : 'already reverted'} to ${images(r.rollback.images ?? [])}, verified: ${r.rollback.verified ?? 'no analysis'}`} |`);
  if (r.audit && (r.audit.blocking.length || r.audit.waived.length || r.audit.refusedWaivers.length || r.audit.refusedActs?.length)) {
    lines.push('', '## Audit gate', '');
    for (const b of r.audit.blocking) lines.push(`- **${b.id}** ${b.status}: ${b.summary}`);
    for (const w of r.audit.waived) lines.push(`- ${w.id} ${w.status}, **waived by ${w.by}** (key ${w.fingerprint}, signed ${w.signedAt}): ${w.reason} (audit: ${w.summary})`);
    for (const a of r.audit.refusedActs ?? []) lines.push(`- refused act claimed by ${a.by} at ${a.at}: ${a.problem}`);
    for (const w of r.audit.refusedWaivers) lines.push(`- waiver of ${w.item} by ${w.by} not applied: ${w.problem}`);
  }
  if (r.rollout?.approvals.length) {
    lines.push('', '## Rollout approvals', '');
    for (const g of r.rollout.approvals) lines.push(`- ${g.name}: ${g.outcome}${g.by ? ` by ${g.by}` : ''}${g.at ? ` at ${g.at}` : ''}`);
  }
  lines.push('', '## Steps', '', '| step | outcome | duration |', '| --- | --- | --- |');
  for (const s of r.steps) lines.push(`| ${cell(s.name)} | ${s.outcome}${s.error ? `: ${cell(s.error)}` : ''} | ${s.durationMs ?? 0} ms |`);
  return `${lines.join('\n')}\n`;
}

/** The go-live's page: the verdict, each stage's result, the audit gate with its waivers, and links to every child run. */
export function renderGoLiveHtml(r: GoLiveReport, links?: ReportLinks): string {
  const summary: [string, string][] = [
    ['Environment / Deployment', `${r.environment} / ${r.deployment}`],
    ['Image', r.image],
    ['Started / ended', `${r.startedAt} to ${r.endedAt}`],
  ];
  if (r.requestedBy) summary.push(['Requested by', r.requestedBy]);
  if (r.audit) summary.push(['Readiness audit', `${r.audit.blocking.length === 0 ? 'gate passed' : `${r.audit.blocking.length} critical item(s) not proved`}, score ${(r.audit.score * 100).toFixed(0)}%`]);
  for (const w of r.audit?.waived ?? []) summary.push(['Waived', `${w.id} (${w.status}) by ${w.by}, key ${w.fingerprint}, signed ${w.signedAt}: ${w.reason}`]);
  for (const s of r.smoke) summary.push([`Smoke test on ${s.queue}`, `passed in ${s.roundTripMs} ms on ${s.worker.host}:${s.worker.pid}`]);
  if (r.approval) summary.push(['Approval', `${r.approval.outcome}${r.approval.by ? ` by ${r.approval.by}` : ''}${r.approval.closedAt ? ` at ${r.approval.closedAt}` : ''}${r.approval.reason ? `: ${r.approval.reason}` : ''}`]);
  if (r.rollout) summary.push(['Rollout', `${r.rollout.outcome}${r.rollout.reason ? `: ${r.rollout.reason}` : ''}; ${images(r.rollout.previousImages)} → ${images(r.rollout.finalImages)} (revision ${r.rollout.revision})`]);
  for (const g of r.rollout?.approvals ?? []) summary.push([`Rollout ${g.name}`, `${g.outcome}${g.by ? ` by ${g.by}` : ''}${g.at ? ` at ${g.at}` : ''}`]);
  if (r.watch) summary.push(['Watch window', `${r.watch.passed ? 'quiet' : `alert: ${r.watch.reason ?? ''}`} (${r.watch.measurements} of ${r.watch.of} measurements, every ${r.watch.intervalSeconds} s)`]);
  if (r.rollback) summary.push(['Rollback', r.rollback.error ? `failed: ${r.rollback.error}` : `${r.rollback.changed ? 'reverted' : 'already reverted'} to ${images(r.rollback.images ?? [])}, verified: ${r.rollback.verified ?? 'no analysis'}`]);
  const refused = [...(r.audit?.refusedActs ?? []).map((a) => `refused act claimed by ${a.by} at ${a.at}: ${a.problem}`), ...(r.audit?.refusedWaivers ?? []).map((w) => `waiver of ${w.item} by ${w.by} not applied: ${w.problem}`)];
  const runs: { label: string; workflowId: string; runId?: string }[] = [{ label: 'this go-live', workflowId: r.workflowId }];
  if (r.audit) runs.push({ label: 'readiness audit', workflowId: r.audit.workflowId, runId: r.audit.runId });
  for (const s of r.smoke) runs.push({ label: `smoke test on ${s.queue}`, workflowId: s.workflowId, runId: s.runId });
  if (r.rollout) runs.push({ label: 'rollout', workflowId: r.rollout.workflowId, runId: r.rollout.runId });
  if (r.rollback) runs.push({ label: 'rollback', workflowId: r.rollback.workflowId, runId: r.rollback.runId });
  return renderRunPage(
    {
      kind: 'Go-live',
      title: `${r.environment} / ${r.deployment} → ${r.image}`,
      verdict: r.passed ? 'LIVE' : r.outcome.toUpperCase(),
      ok: r.passed,
      summary,
      reasons: [...(r.reason ? [r.reason] : []), ...(r.audit?.blocking ?? []).map((b) => `critical item not proved: ${b.id} (${b.status}): ${b.summary}`)],
      sections: refused.length ? [{ title: 'Refused', html: `<ul>${refused.map((x) => `<li>${esc(x)}</li>`).join('')}</ul>` }] : [],
      steps: r.steps,
      runs,
    },
    links,
  );
}
