import type { Attestation } from '../checklist/attestation';
import { esc, renderRunPage, ReportLinks } from './html';
import type { ItemStatus, Severity } from '../checklist/catalog';

/** One checklist item as the audit found it. */
export interface AuditItemResult {
  id: string;
  section: string;
  subsection: string;
  title: string;
  text: string;
  severity: Severity;
  proof: 'automated' | 'runbook' | 'attested';
  status: ItemStatus;
  summary: string;
  evidence: Record<string, unknown>;
}

export type StatusCounts = Record<ItemStatus, number>;

export interface AuditSection {
  name: string;
  /** Items that pass or are attested, as a fraction of the section's items. */
  score: number;
  counts: StatusCounts;
  items: AuditItemResult[];
}

/** Everything a readiness audit found; rendered as JSON, Markdown and an HTML page. */
export interface ReadinessReport {
  auditId: string;
  workflowId: string;
  environment: string;
  startedAt: string;
  endedAt: string;
  score: number;
  counts: StatusCounts;
  /** Every critical item passes or is attested. */
  ready: boolean;
  /** Critical items that neither pass nor are attested. */
  blocking: { id: string; status: ItemStatus; summary: string }[];
  sections: AuditSection[];
  /** Attestations that count in this audit (recorded now or earlier and not expired). */
  attestations: Attestation[];
  /** Attestations sent as signals and refused, with the reason. */
  refusedAttestations: { by: string; item: string; at: string; problem: string }[];
  /** How the items stand by kind of proof (absent in reports of audits started before it existed). */
  coverage?: Coverage;
  /** This audit's score after the previous audits' of the environment, oldest first, read from the reports kept in S3. */
  trend?: TrendPoint[];
}

export interface Coverage {
  /** Items a check proved (an automated item that passes). */
  byChecks: number;
  /** Items a recent enough runbook run proved. */
  byRunbookRuns: number;
  attested: number;
  failing: number;
  unknown: number;
  total: number;
}

export interface TrendPoint {
  auditId: string;
  endedAt: string;
  score: number;
  ready: boolean;
}

export function coverageOf(items: Pick<AuditItemResult, 'proof' | 'status'>[]): Coverage {
  const n = (f: (i: Pick<AuditItemResult, 'proof' | 'status'>) => boolean) => items.filter(f).length;
  return {
    byChecks: n((i) => i.status === 'pass' && i.proof === 'automated'),
    byRunbookRuns: n((i) => i.status === 'pass' && i.proof === 'runbook'),
    attested: n((i) => i.status === 'attested'),
    failing: n((i) => i.status === 'fail'),
    unknown: n((i) => i.status === 'unknown'),
    total: items.length,
  };
}

export const coverageText = (c: Coverage) => `proved by checks ${c.byChecks}, by runbook runs ${c.byRunbookRuns}, attested ${c.attested}; failing ${c.failing}, unknown ${c.unknown} (of ${c.total} items)`;
export const trendText = (t: TrendPoint[]) => `${t.map((p) => `${Math.round(p.score * 100)}%`).join(' -> ')} (the last ${t.length} audit${t.length === 1 ? '' : 's'}, oldest first)`;

export const emptyCounts = (): StatusCounts => ({ pass: 0, fail: 0, attested: 0, unknown: 0 });

export function scoreOf(items: { status: ItemStatus }[]): { score: number; counts: StatusCounts } {
  const counts = emptyCounts();
  for (const i of items) counts[i.status]++;
  return { counts, score: items.length ? Number(((counts.pass + counts.attested) / items.length).toFixed(4)) : 0 };
}

const pct = (x: number) => `${Math.round(x * 100)}%`;
const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const STATUS_TEXT: Record<ItemStatus, string> = { pass: 'pass', fail: '**FAIL**', attested: 'attested', unknown: 'unknown' };
const countsText = (c: StatusCounts) => `pass ${c.pass}, fail ${c.fail}, attested ${c.attested}, unknown ${c.unknown}`;

export function renderAuditMarkdown(r: ReadinessReport): string {
  const lines = [
    `# Readiness audit: ${r.environment} ${r.ready ? 'READY' : 'NOT READY'} (score ${pct(r.score)})`,
    '',
    `- Audit \`${r.auditId}\` (workflow \`${r.workflowId}\`), ${r.startedAt} to ${r.endedAt}`,
    `- Items: ${countsText(r.counts)}`,
    ...(r.coverage ? [`- Coverage: ${coverageText(r.coverage)}`] : []),
    ...(r.trend?.length ? [`- Score trend: ${trendText(r.trend)}`] : []),
  ];
  if (r.blocking.length) lines.push('', '## Critical items not proved', '', ...r.blocking.map((b) => `- \`${b.id}\` (${b.status}): ${b.summary}`));
  lines.push('', '## Sections', '', '| section | score | pass | fail | attested | unknown |', '| --- | --- | --- | --- | --- | --- |');
  for (const s of r.sections) lines.push(`| ${cell(s.name)} | ${pct(s.score)} | ${s.counts.pass} | ${s.counts.fail} | ${s.counts.attested} | ${s.counts.unknown} |`);
  for (const s of r.sections) {
    lines.push('', `## ${s.name} (${pct(s.score)})`, '', '| item | subsection | severity | proof | status | finding |', '| --- | --- | --- | --- | --- | --- |');
    for (const i of s.items) lines.push(`| ${cell(i.title)} \`${i.id}\` | ${cell(i.subsection)} | ${i.severity} | ${i.proof} | ${STATUS_TEXT[i.status]} | ${cell(i.summary)} |`);
  }
  if (r.attestations.length) {
    lines.push('', '## Attestations', '', '| item | by | at | expires | comment |', '| --- | --- | --- | --- | --- |');
    for (const a of r.attestations) lines.push(`| \`${a.item}\` | ${cell(a.by)} | ${a.at} | ${a.expiresAt} | ${cell(a.comment)} |`);
  }
  if (r.refusedAttestations.length) lines.push('', '## Refused attestations', '', ...r.refusedAttestations.map((x) => `- ${cell(x.by)} for \`${cell(x.item)}\` at ${x.at}: ${cell(x.problem)}`));
  return `${lines.join('\n')}\n`;
}

const COLORS: Record<ItemStatus, string> = { pass: '#2e7d32', attested: '#1565c0', fail: '#c62828', unknown: '#9e9e9e' };

export function renderAuditHtml(r: ReadinessReport, links?: ReportLinks): string {
  const bar = (s: AuditSection) => {
    const total = s.items.length || 1;
    let x = 0;
    const parts = (['pass', 'attested', 'fail', 'unknown'] as ItemStatus[]).map((k) => {
      const w = (s.counts[k] / total) * 300;
      const rect = `<rect x="${x.toFixed(1)}" y="0" width="${w.toFixed(1)}" height="14" fill="${COLORS[k]}"><title>${k}: ${s.counts[k]}</title></rect>`;
      x += w;
      return rect;
    });
    return `<svg xmlns="http://www.w3.org/2000/svg" width="300" height="14" role="img" aria-label="${esc(`${s.name}: ${countsText(s.counts)}`)}">${parts.join('')}</svg>`;
  };
  const sections = r.sections
    .map((s) => {
      const items = s.items
        .map(
          (i) =>
            `<tr><td>${esc(i.title)}<br><code>${esc(i.id)}</code></td><td>${esc(i.subsection)}</td><td>${i.severity}</td><td>${i.proof}</td>` +
            `<td style="color:${COLORS[i.status]};font-weight:bold">${i.status}</td><td>${esc(i.summary)}<details><summary>evidence</summary><pre>${esc(JSON.stringify(i.evidence, null, 2))}</pre></details></td></tr>`,
        )
        .join('\n');
      return { title: `${s.name} — ${pct(s.score)}`, html: `${bar(s)}<table><tr><th>item</th><th>subsection</th><th>severity</th><th>proof</th><th>status</th><th>finding</th></tr>\n${items}</table>` };
    });
  const summary: [string, string][] = [
    ['Environment', r.environment],
    ['Score', pct(r.score)],
    ['Items', countsText(r.counts)],
    ['Started / ended', `${r.startedAt} to ${r.endedAt}`],
  ];
  if (r.coverage) summary.push(['Coverage', coverageText(r.coverage)]);
  if (r.trend?.length) summary.push(['Score trend', trendText(r.trend)]);
  if (r.attestations.length) summary.push(['Attestations', r.attestations.map((a) => `${a.item} by ${a.by} (expires ${a.expiresAt})`).join('; ')]);
  if (r.refusedAttestations.length) summary.push(['Refused attestations', r.refusedAttestations.map((x) => `${x.by} for ${x.item}: ${x.problem}`).join('; ')]);
  return renderRunPage(
    {
      kind: 'Readiness audit',
      title: `${r.environment} ${r.auditId}`,
      verdict: r.ready ? 'READY' : 'NOT READY',
      ok: r.ready,
      summary,
      reasons: r.blocking.map((b) => `critical item not proved: ${b.id} (${b.status}): ${b.summary}`),
      sections,
      runs: [{ label: 'this audit', workflowId: r.workflowId }],
    },
    links,
  );
}
