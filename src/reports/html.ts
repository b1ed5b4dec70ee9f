/**
 * One HTML page per run (drill, restore test, audit, go-live, release): the verdict and the facts that
 * matter first, then why it failed, then the steps as a table with each step's evidence folded under
 * it, and links to the run and its related runs in the Temporal UI. Self-contained (inline style, no
 * script), so it opens from S3, a file or an email attachment alike.
 */
import type { StepRecord } from '../workflows/lib/timeline';

/** Where the Temporal UI is, so pages link each run (from the environment's notifications.temporalUiUrl). */
export interface ReportLinks {
  temporalUi?: string;
  namespace: string;
}

export interface RunPage {
  /** e.g. "DR drill". */
  kind: string;
  title: string;
  /** The verdict word shown big (PASSED, FAILED, READY, live, rolled back ...) and whether it is good news. */
  verdict: string;
  ok: boolean;
  /** The facts that matter, in order. */
  summary: [string, string][];
  reasons?: string[];
  /** Extra sections after the summary (HTML the caller built and escaped: a chart, a table). */
  sections?: { title: string; html: string }[];
  steps?: StepRecord[];
  /** The run itself first, then related runs (children, the backup tested, the audit of a go-live). */
  runs?: { label: string; workflowId: string; runId?: string }[];
}

/** Whether a report object has what a run page needs (a workflow id and a step list). */
export function isRunReport(x: unknown): boolean {
  const r = x as { workflowId?: unknown; steps?: unknown } | null;
  return typeof r === 'object' && r !== null && typeof r.workflowId === 'string' && Array.isArray(r.steps);
}

export const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');

const secs = (ms: number | undefined) => (ms === undefined ? '-' : ms < 10_000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`);

/** The Temporal UI's page of a workflow run, or undefined without a configured UI. */
export function workflowUrl(links: ReportLinks | undefined, workflowId: string, runId?: string): string | undefined {
  if (!links?.temporalUi) return undefined;
  const base = links.temporalUi.replace(/\/+$/, '');
  return `${base}/namespaces/${encodeURIComponent(links.namespace)}/workflows/${encodeURIComponent(workflowId)}${runId ? `/${encodeURIComponent(runId)}/history` : ''}`;
}

const OUTCOME_COLORS: Record<string, string> = { succeeded: '#2e7d32', failed: '#c62828', cancelled: '#757575', skipped: '#9e9e9e', running: '#1565c0' };

function stepsTable(steps: StepRecord[]): string {
  const rows = steps.map((s, i) => {
    const evidence = s.evidence && Object.keys(s.evidence).length ? `<details><summary>evidence</summary><pre>${esc(JSON.stringify(s.evidence, null, 2))}</pre></details>` : '';
    const error = s.error ? `<p class="error">${esc(s.error)}</p>` : '';
    return (
      `<tr class="step ${esc(s.outcome)}"><td>${i + 1}</td><td>${esc(s.name)}${error}${evidence}</td><td>${esc(s.startedAt)}</td>` +
      `<td class="num">${secs(s.durationMs)}</td><td class="outcome" style="color:${OUTCOME_COLORS[s.outcome] ?? '#333'}">${esc(s.outcome)}</td></tr>`
    );
  });
  return `<table class="steps"><thead><tr><th>#</th><th>step</th><th>started</th><th>duration</th><th>outcome</th></tr></thead><tbody>\n${rows.join('\n')}\n</tbody></table>`;
}

function runLinks(page: RunPage, links: ReportLinks | undefined): string {
  if (!page.runs?.length) return '';
  const items = page.runs.map((r) => {
    const url = workflowUrl(links, r.workflowId, r.runId);
    const id = `<code>${esc(r.workflowId)}</code>`;
    return `<li>${esc(r.label)}: ${url ? `<a href="${esc(url)}">${id}</a>` : id}</li>`;
  });
  const note = links?.temporalUi ? '' : '<p class="note">No Temporal UI is configured (notifications.temporalUiUrl), so the runs are named, not linked.</p>';
  return `<h2>Runs</h2><ul class="runs">${items.join('')}</ul>${note}`;
}

const STYLE = [
  'body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}',
  'h1 .verdict{padding:.1em .4em;border-radius:4px;color:#fff}',
  '.ok{background:#2e7d32}.bad{background:#c62828}',
  'table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #ddd;padding:4px 6px;vertical-align:top;text-align:left}',
  'table.summary th{width:16em;background:#fafafa}td.num{text-align:right;white-space:nowrap}td.outcome{font-weight:bold}',
  'pre{white-space:pre-wrap;font-size:11px;background:#f5f5f5;padding:.5em;margin:.3em 0}',
  '.error{color:#c62828;margin:.2em 0}.reasons li{color:#c62828}.note{color:#666;font-size:90%}',
].join('');

/** The whole page. `links` turns run ids into Temporal UI links. */
export function renderRunPage(page: RunPage, links?: ReportLinks): string {
  const summary = `<table class="summary"><tbody>${page.summary.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</tbody></table>`;
  const reasons = page.reasons?.length ? `<h2>Why</h2><ul class="reasons">${page.reasons.map((r) => `<li>${esc(r)}</li>`).join('')}</ul>` : '';
  const sections = (page.sections ?? []).map((s) => `<h2>${esc(s.title)}</h2>${s.html}`).join('\n');
  const steps = page.steps?.length ? `<h2>Steps</h2>${stepsTable(page.steps)}` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${esc(page.kind)}: ${esc(page.title)}</title>
<style>${STYLE}</style></head>
<body>
<h1>${esc(page.kind)}: ${esc(page.title)} <span class="verdict ${page.ok ? 'ok' : 'bad'}">${esc(page.verdict)}</span></h1>
${summary}
${reasons}
${sections}
${steps}
${runLinks(page, links)}
</body></html>
`;
}
