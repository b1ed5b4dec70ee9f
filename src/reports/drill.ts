import type { StepRecord } from '../workflows/lib/timeline';
import type { GateRecord } from '../workflows/lib/gate';

/** Everything a DR drill found; rendered as JSON, Markdown and an HTML page with a timeline chart. */
export interface DrillReport {
  drillId: string;
  workflowId: string;
  environment: string;
  database: string;
  mode: 'failover' | 'switchover';
  passed: boolean;
  reasons: string[];
  primaryBefore?: string;
  primaryAfter?: string;
  approval?: GateRecord;
  rto?: { ms: number; targetMs?: number; met: boolean | null };
  rpo?: { markerPresent: boolean; lostBytes: number; ms: number; targetMs?: number; met: boolean | null };
  failback?: { method: string; streaming: boolean } | { skipped: string };
  compensation: { name: string; ok: boolean; error?: string }[];
  steps: StepRecord[];
  startedAt: string;
  endedAt: string;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
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
    `- RTO: ${r.rto ? `${secs(r.rto.ms)} (target ${secs(r.rto.targetMs)}): ${r.rto.met === null ? 'no target' : r.rto.met ? 'met' : 'MISSED'}` : 'not measured'}`,
    `- RPO: ${r.rpo ? `${r.rpo.markerPresent ? 'marker row present, ' : 'marker row LOST, '}${r.rpo.lostBytes} bytes of WAL lost, ${secs(r.rpo.ms)} (target ${secs(r.rpo.targetMs)}): ${r.rpo.met === null ? 'no target' : r.rpo.met ? 'met' : 'MISSED'}` : 'not measured'}`,
    `- Failback: ${!r.failback ? '-' : 'skipped' in r.failback ? `skipped (${r.failback.skipped})` : `${r.failback.method}, replica streaming: ${r.failback.streaming}`}`,
  ];
  if (r.compensation.length) lines.push(`- Compensation: ${r.compensation.map((c) => `${c.name}: ${c.ok ? 'done' : `FAILED (${c.error})`}`).join('; ')}`);
  if (r.reasons.length) lines.push('', '## Why it failed', '', ...r.reasons.map((x) => `- ${x}`));
  lines.push('', '## Timeline', '', '| step | start | duration | outcome | evidence |', '| --- | --- | --- | --- | --- |');
  for (const s of r.steps) {
    lines.push(`| ${cell(s.name)} | ${s.startedAt} | ${secs(s.durationMs)} | ${s.outcome} | ${cell(JSON.stringify(s.evidence))}${s.error ? ` error: ${cell(s.error)}` : ''} |`);
  }
  return `${lines.join('\n')}\n`;
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

export function renderDrillHtml(r: DrillReport): string {
  const md = renderDrillMarkdown(r);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DR drill ${esc(r.drillId)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}pre{white-space:pre-wrap;background:#f5f5f5;padding:1em}</style></head>
<body><h1>DR drill ${r.passed ? 'passed' : 'FAILED'}: ${esc(r.environment)} / ${esc(r.database)} (${r.mode})</h1>
<p>RTO ${secs(r.rto?.ms)} (target ${secs(r.rto?.targetMs)}) · RPO ${secs(r.rpo?.ms)} (target ${secs(r.rpo?.targetMs)}) · approved by ${esc(r.approval?.by ?? '-')}</p>
${r.steps.length ? renderTimelineSvg(r.steps) : ''}
<pre>${esc(md)}</pre>
</body></html>
`;
}
