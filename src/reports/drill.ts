import type { StepRecord } from '../workflows/lib/timeline';
import type { GateRecord } from '../workflows/lib/gate';
import type { FailoverSettings, KeptDataDirectory } from '../topology/types';
import type { LostWrites } from '../activities/writeLoad';
import { esc, renderRunPage, ReportLinks } from './html';

/** The write load's outcome: commits acknowledged during the drill and those the failover lost. */
export type DrillWrites = LostWrites & { rate: number; writerError: string | null };

/** Everything a DR drill found; rendered as JSON, Markdown and an HTML page with a timeline chart. */
export interface DrillReport {
  drillId: string;
  workflowId: string;
  environment: string;
  database: string;
  mode: 'failover' | 'switchover';
  passed: boolean;
  reasons: string[];
  /** Which topology driver ran (local, patroni) and how clients reach the primary. */
  driver?: string;
  serviceEndpoint?: string;
  /** The fault and promotion as planned, shown to the approver. */
  plan?: string[];
  /** The settings that bound the failover (Patroni: ttl, loop_wait, retry_timeout, synchronous mode, maximum lag). */
  settings?: FailoverSettings;
  primaryBefore?: string;
  primaryAfter?: string;
  approval?: GateRecord;
  rto?: {
    ms: number;
    targetMs?: number;
    met: boolean | null;
    /** When the clock started: once, as the fault was ordered. */
    clockStartedAt?: string;
    faultAt?: string;
    /** fault -> new leader seen; -> it commits; -> the service endpoint reaches it; -> a write through it commits. */
    split?: { detectionMs: number; promotionMs: number; endpointMs: number; firstWriteMs: number };
    /** The most detection can take by the cluster's settings (Patroni: ttl + loop_wait). */
    detectionBoundMs?: number;
  };
  rpo?: {
    markerPresent: boolean;
    lostBytes: number;
    ms: number;
    targetMs?: number;
    met: boolean | null;
    /** Synchronous replication was on (commits waited for a standby) or not. */
    synchronousMode?: boolean;
    /** Acknowledged rows missing on the new primary (write load rows and the marker). */
    lostRows?: number;
    writes?: DrillWrites;
  };
  failback?: { method: string; streaming: boolean; keptAside?: KeptDataDirectory } | { skipped: string };
  compensation: { name: string; ok: boolean; error?: string }[];
  steps: StepRecord[];
  startedAt: string;
  endedAt: string;
}

const secs = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`);
const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function renderDrillMarkdown(r: DrillReport): string {
  const lines = [
    `# DR drill ${r.passed ? 'PASSED' : 'FAILED'}: ${r.environment} / ${r.database} (${r.mode})`,
    '',
    `- Drill \`${r.drillId}\` (workflow \`${r.workflowId}\`), ${r.startedAt} to ${r.endedAt}`,
    `- Primary before: ${r.primaryBefore ?? '-'}; after: ${r.primaryAfter ?? '-'}`,
    `- Approval: ${r.approval ? `${r.approval.outcome}${r.approval.by ? ` by ${r.approval.by}` : ''}${r.approval.reason ? ` (${r.approval.reason})` : ''} at ${r.approval.closedAt ?? '-'}` : 'not reached'}`,
    ...(r.approval?.approvals ?? []).map((a) => `  - signed ${a.act} by ${a.principal}, key ${a.fingerprint}, signed ${a.signedAt}${a.reason ? `: ${a.reason}` : ''}`),
    `- Driver: ${r.driver ?? 'local'}; service endpoint: ${r.serviceEndpoint ?? '-'}`,
    ...(r.plan?.length ? [`- Plan: ${r.plan.join('; ')}`] : []),
    `- RTO: ${r.rto ? `${secs(r.rto.ms)} (target ${secs(r.rto.targetMs)}): ${r.rto.met === null ? 'no target' : r.rto.met ? 'met' : 'MISSED'}` : 'not measured'}`,
    ...(r.rto?.split
      ? [`  - detection ${secs(r.rto.split.detectionMs)}${r.rto.detectionBoundMs !== undefined ? ` (bound by ttl + loop_wait: ${secs(r.rto.detectionBoundMs)})` : ''}, promotion ${secs(r.rto.split.promotionMs)}, endpoint switch ${secs(r.rto.split.endpointMs)}, first verified write ${secs(r.rto.split.firstWriteMs)}`]
      : []),
    ...(r.settings ? [`  - settings: ${settingsText(r.settings)}`] : []),
    `- RPO: ${r.rpo ? `${r.rpo.markerPresent ? 'marker row present, ' : 'marker row LOST, '}${r.rpo.lostRows ?? (r.rpo.markerPresent ? 0 : 1)} acknowledged rows lost, ${r.rpo.lostBytes} bytes of WAL lost, ${secs(r.rpo.ms)} (target ${secs(r.rpo.targetMs)}): ${r.rpo.met === null ? 'no target' : r.rpo.met ? 'met' : 'MISSED'}; ${r.rpo.synchronousMode ? 'synchronous' : 'asynchronous'} replication` : 'not measured'}`,
    ...(r.rpo?.writes
      ? [`  - write load ${r.rpo.writes.rate}/s: ${r.rpo.writes.acknowledged} commits acknowledged (${r.rpo.writes.acknowledgedBeforeFault} before the fault), ${r.rpo.writes.lost} lost${r.rpo.writes.firstLostAt ? ` (acknowledged ${r.rpo.writes.firstLostAt} to ${r.rpo.writes.lastLostAt})` : ''}; log ${r.rpo.writes.log}`]
      : []),
    `- Failback: ${!r.failback ? '-' : 'skipped' in r.failback ? `skipped (${r.failback.skipped})` : `${r.failback.method}, replica streaming: ${r.failback.streaming}${r.failback.keptAside ? `; the old data directory was kept at ${r.failback.keptAside.path} (last checkpoint ${r.failback.keptAside.lastLsn ?? '?'}, timeline ${r.failback.keptAside.timeline ?? '?'})` : ''}`}`,
  ];
  if (r.compensation.length) lines.push(`- Compensation: ${r.compensation.map((c) => `${c.name}: ${c.ok ? 'done' : `FAILED (${c.error})`}`).join('; ')}`);
  if (r.reasons.length) lines.push('', '## Why it failed', '', ...r.reasons.map((x) => `- ${x}`));
  lines.push('', '## Timeline', '', '| step | start | duration | outcome | evidence |', '| --- | --- | --- | --- | --- |');
  for (const s of r.steps) {
    lines.push(`| ${cell(s.name)} | ${s.startedAt} | ${secs(s.durationMs)} | ${s.outcome} | ${cell(JSON.stringify(s.evidence))}${s.error ? ` error: ${cell(s.error)}` : ''} |`);
  }
  return `${lines.join('\n')}\n`;
}

function settingsText(s: FailoverSettings): string {
  const parts = [`synchronous_mode ${s.synchronousMode ? 'on' : 'off'}`];
  if (s.ttl !== undefined) parts.unshift(`ttl ${s.ttl} s`, `loop_wait ${s.loopWait} s`, `retry_timeout ${s.retryTimeout} s`);
  if (s.maximumLagOnFailover !== undefined) parts.push(`maximum_lag_on_failover ${s.maximumLagOnFailover} B`);
  if (s.failsafeMode !== undefined) parts.push(`failsafe_mode ${s.failsafeMode ? 'on' : 'off'}`);
  return parts.join(', ');
}

const COLORS: Record<string, string> = { succeeded: '#2e7d32', failed: '#c62828', cancelled: '#757575', skipped: '#bdbdbd', running: '#1565c0' };

/** A horizontal bar per step on a shared time axis, drawn as SVG. */
export function renderTimelineSvg(steps: StepRecord[]): string {
  const start = Math.min(...steps.map((s) => Date.parse(s.startedAt)));
  const end = Math.max(...steps.map((s) => Date.parse(s.endedAt ?? s.startedAt)), start + 1);
  const width = 900;
  const label = 260;
  const row = 24;
  const scale = (t: number) => label + ((t - start) / (end - start)) * (width - label - 20);
  const bars = steps.map((s, i) => {
    const x = scale(Date.parse(s.startedAt));
    const w = Math.max(2, scale(Date.parse(s.endedAt ?? s.startedAt)) - x);
    const y = 10 + i * row;
    return (
      `<text x="4" y="${y + 14}" font-size="12">${esc(s.name)}</text>` +
      `<rect x="${x.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="16" fill="${COLORS[s.outcome] ?? '#999'}"><title>${esc(`${s.name}: ${s.outcome}, ${secs(s.durationMs)}`)}</title></rect>`
    );
  });
  const height = 30 + steps.length * row;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img" aria-label="drill timeline">` +
    bars.join('') +
    `<text x="${label}" y="${height - 4}" font-size="11">0 s</text><text x="${width - 60}" y="${height - 4}" font-size="11">${secs(end - start)}</text></svg>`
  );
}

/** The drill's page: verdict, RTO and RPO against target, approval, failback, the timeline chart, each step's evidence. */
export function renderDrillHtml(r: DrillReport, links?: ReportLinks): string {
  const target = (ms: number | undefined, met: boolean | null | undefined) => `target ${secs(ms)}: ${met === null || met === undefined ? 'no target' : met ? 'met' : 'MISSED'}`;
  const summary: [string, string][] = [
    ['Environment / database', `${r.environment} / ${r.database}`],
    ['Mode', r.mode],
    ['Started / ended', `${r.startedAt} to ${r.endedAt}`],
    ['RTO', r.rto ? `${secs(r.rto.ms)} (${target(r.rto.targetMs, r.rto.met)})` : 'not measured'],
  ];
  if (r.rto?.split) summary.push(['RTO split', `detection ${secs(r.rto.split.detectionMs)}${r.rto.detectionBoundMs !== undefined ? ` (bound ${secs(r.rto.detectionBoundMs)})` : ''}, promotion ${secs(r.rto.split.promotionMs)}, endpoint switch ${secs(r.rto.split.endpointMs)}, first verified write ${secs(r.rto.split.firstWriteMs)}`]);
  summary.push(['RPO', r.rpo ? `${secs(r.rpo.ms)}, ${r.rpo.lostRows ?? (r.rpo.markerPresent ? 0 : 1)} acknowledged rows and ${r.rpo.lostBytes} WAL bytes lost (${target(r.rpo.targetMs, r.rpo.met)}); ${r.rpo.synchronousMode ? 'synchronous' : 'asynchronous'} replication` : 'not measured']);
  if (r.rpo?.writes) summary.push(['Write load', `${r.rpo.writes.rate}/s: ${r.rpo.writes.acknowledged} commits acknowledged, ${r.rpo.writes.lost} lost`]);
  summary.push(['Approval', r.approval ? `${r.approval.outcome}${r.approval.by ? ` by ${r.approval.by}` : ''}${r.approval.closedAt ? ` at ${r.approval.closedAt}` : ''}${r.approval.reason ? `: ${r.approval.reason}` : ''}` : 'not reached']);
  for (const a of r.approval?.approvals ?? []) summary.push(['Signed', `${a.act} by ${a.principal}, key ${a.fingerprint}, signed ${a.signedAt}${a.reason ? `: ${a.reason}` : ''}`]);
  summary.push(['Primary before / after', `${r.primaryBefore ?? '-'} / ${r.primaryAfter ?? '-'}`], ['Driver / service endpoint', `${r.driver ?? 'local'} / ${r.serviceEndpoint ?? '-'}`]);
  if (r.settings) summary.push(['Failover settings', settingsText(r.settings)]);
  if (r.plan?.length) summary.push(['Plan', r.plan.join('; ')]);
  summary.push([
    'Failback',
    !r.failback ? '-' : 'skipped' in r.failback ? `skipped (${r.failback.skipped})` : `${r.failback.method}, replica streaming: ${r.failback.streaming}${r.failback.keptAside ? `; old data directory kept at ${r.failback.keptAside.path}` : ''}`,
  ]);
  if (r.compensation.length) summary.push(['Compensation', r.compensation.map((c) => `${c.name}: ${c.ok ? 'done' : `FAILED (${c.error})`}`).join('; ')]);
  return renderRunPage(
    {
      kind: 'DR drill',
      title: `${r.environment} / ${r.database} (${r.mode}) ${r.drillId}`,
      verdict: r.passed ? 'PASSED' : 'FAILED',
      ok: r.passed,
      summary,
      reasons: r.reasons,
      sections: r.steps.length ? [{ title: 'Timeline', html: renderTimelineSvg(r.steps) }] : [],
      steps: r.steps,
      runs: [{ label: 'this drill', workflowId: r.workflowId }],
    },
    links,
  );
}
