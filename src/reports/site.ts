/**
 * The DR-posture site: per environment, the drills with RTO and RPO against target, the restore
 * tests, backup age, the readiness score, the schedules and whether each due run happened, and the
 * changes to production with their verified approvers, the signed decisions, each run linked to its own page and to the Temporal UI. Built from data the CLI
 * gathers (src/cli/report.ts); charts are SVG drawn by Vega-Lite, inlined, so the site is static and
 * self-contained.
 */
import { esc, workflowUrl, ReportLinks } from './html';

export interface SiteRun {
  id: string;
  workflowId: string;
  at: string;
  passed: boolean;
  /** The run's own page, relative to the site (copied beside it), when it has one. */
  page?: string;
}

export interface SiteDrill extends SiteRun {
  database: string;
  mode: string;
  rtoMs?: number;
  rtoTargetMs?: number;
  rpoMs?: number;
  rpoTargetMs?: number;
  approvedBy?: string;
  signedBy: string[];
  reasons: string[];
}

export interface SiteRestoreTest extends SiteRun {
  database: string;
  durationMs?: number;
  bytes?: number;
  backupId?: string;
  reasons: string[];
}

export interface SiteAudit extends SiteRun {
  score: number;
  ready: boolean;
  blocking: number;
}

export interface SiteBackup {
  database: string;
  backupId: string;
  at: string;
  bytes?: number;
  /** Time since the database's previous backup: how old the newest backup had become. */
  gapMs?: number;
}

export interface SiteSchedule {
  scheduleId: string;
  runbook: string;
  paused: boolean;
  /** On the server at all (a configured schedule that was never applied is itself a finding). */
  onServer: boolean;
  lastRun?: { at: string; workflowId: string };
  nextRun?: string;
  /** Due times in the window that passed with no run started for them. */
  missed: string[];
  due: number;
}

export interface SiteDecision {
  at: string;
  runbook: string;
  workflowId: string;
  act: string;
  gate: string;
  principal: string;
  fingerprint: string;
  verified: boolean;
  problem?: string;
  outcome?: string;
}

/** A change to production (a rollout, a release, a go-live, a promotion) with the people who let it happen. */
export interface SiteChange {
  runbook: string;
  workflowId: string;
  /** When its first signed act or its outcome was recorded. */
  at: string;
  outcome?: string;
  summary?: string;
  requestedBy?: string;
  /** Verified approvals (principal and key fingerprint), in order. */
  approvedBy: string[];
  /** Signed acts of this run whose signature does not verify against the record. */
  unverified: number;
}

/** A run that failed, timed out or was stopped, as visibility lists it, with no report of its own on the site. */
export interface SiteUnreportedRun {
  runbook: string;
  workflowId: string;
  status: string;
  at: string;
  target?: string;
}

/** The runbooks whose runs change what serves production: listed with their approvers on the site. */
export const CHANGE_RUNBOOKS = ['rollout', 'release', 'goLive', 'promotion'];

const SUCCESS = new Set(['succeeded']);

/**
 * The changes of an environment from its evidence log: every run of a change runbook that left a
 * signed act or an outcome, with the requester, the verified approvals and how it ended.
 */
export function changesFrom(decisions: SiteDecision[], outcomes: { runbook: string; workflowId: string; at: string; outcome?: string; summary?: string }[]): SiteChange[] {
  const byRun = new Map<string, SiteChange>();
  const of = (runbook: string, workflowId: string, at: string) => {
    let c = byRun.get(workflowId);
    if (!c) {
      c = { runbook, workflowId, at, approvedBy: [], unverified: 0 };
      byRun.set(workflowId, c);
    }
    if (at < c.at) c.at = at;
    return c;
  };
  for (const d of decisions.filter((x) => CHANGE_RUNBOOKS.includes(x.runbook))) {
    const c = of(d.runbook, d.workflowId, d.at);
    if (!d.verified) c.unverified++;
    else if (d.act === 'start') c.requestedBy = `${d.principal} (${d.fingerprint})`;
    else if (d.act === 'approve' || d.act === 'promote') c.approvedBy.push(`${d.principal} (${d.fingerprint})`);
  }
  for (const o of outcomes.filter((x) => CHANGE_RUNBOOKS.includes(x.runbook))) Object.assign(of(o.runbook, o.workflowId, o.at), { outcome: o.outcome, summary: o.summary });
  return [...byRun.values()].sort((a, b) => a.at.localeCompare(b.at));
}

export interface SiteEnvironment {
  name: string;
  drills: SiteDrill[];
  restoreTests: SiteRestoreTest[];
  audits: SiteAudit[];
  backups: SiteBackup[];
  schedules: SiteSchedule[];
  decisions: SiteDecision[];
  changes: SiteChange[];
  unreported: SiteUnreportedRun[];
  /** What could not be read (a bucket, the schedules), said on the page rather than left out silently. */
  problems: string[];
  links: ReportLinks;
}

export interface SiteData {
  generatedAt: string;
  since?: string;
  environments: SiteEnvironment[];
}

type VegaLiteSpec = Record<string, unknown>;

const seconds = (ms: number | undefined) => (ms === undefined ? null : Number((ms / 1000).toFixed(3)));

/** The charts of one environment as Vega-Lite specs (one mark per run), by id. */
export function chartSpecs(env: SiteEnvironment): Record<string, VegaLiteSpec> {
  const base = (title: string, values: unknown[], y: string, yTitle: string, target?: number | null): VegaLiteSpec => ({
    title,
    width: 640,
    height: 180,
    data: { values },
    layer: [
      {
        mark: { type: 'line', point: { filled: true, size: 70 }, color: '#607d8b' },
        encoding: {
          x: { field: 'at', type: 'temporal', title: null },
          y: { field: y, type: 'quantitative', title: yTitle },
          color: { field: 'result', type: 'nominal', scale: { domain: ['passed', 'failed'], range: ['#2e7d32', '#c62828'] }, legend: { title: null } },
          tooltip: [{ field: 'id' }, { field: 'at', type: 'temporal', timeUnit: 'yearmonthdatehoursminutes' }, { field: y, title: yTitle }, { field: 'result' }],
        },
      },
      ...(target !== undefined && target !== null ? [{ data: { values: [{ target }] }, mark: { type: 'rule', strokeDash: [6, 4], color: '#c62828' }, encoding: { y: { field: 'target', type: 'quantitative' } } }] : []),
    ],
  });
  const result = (r: SiteRun) => (r.passed ? 'passed' : 'failed');
  const specs: Record<string, VegaLiteSpec> = {};
  const rto = env.drills.filter((d) => d.rtoMs !== undefined);
  if (rto.length) specs.rto = base('Drill RTO (s), target dashed', rto.map((d) => ({ id: d.id, at: d.at, rto: seconds(d.rtoMs), result: result(d) })), 'rto', 'RTO (s)', seconds(rto[rto.length - 1].rtoTargetMs));
  const rpo = env.drills.filter((d) => d.rpoMs !== undefined);
  if (rpo.length) specs.rpo = base('Drill RPO (s), target dashed', rpo.map((d) => ({ id: d.id, at: d.at, rpo: seconds(d.rpoMs), result: result(d) })), 'rpo', 'RPO (s)', seconds(rpo[rpo.length - 1].rpoTargetMs));
  const restores = env.restoreTests.filter((t) => t.durationMs !== undefined);
  if (restores.length) specs.restores = base('Restore test duration (s)', restores.map((t) => ({ id: t.id, at: t.at, duration: seconds(t.durationMs), result: result(t) })), 'duration', 'restore (s)');
  const gaps = env.backups.filter((b) => b.gapMs !== undefined);
  if (gaps.length) specs.backups = base('Backup age when the next backup was taken (h)', gaps.map((b) => ({ id: b.backupId, at: b.at, age: Number((b.gapMs! / 3_600_000).toFixed(3)), result: 'passed' })), 'age', 'age (h)');
  if (env.audits.length) specs.audits = base('Readiness score (%)', env.audits.map((a) => ({ id: a.id, at: a.at, score: Math.round(a.score * 100), result: a.ready ? 'passed' : 'failed' })), 'score', 'score (%)');
  return specs;
}

/** Draws Vega-Lite specs as SVG (Vega's own renderer, without a browser or a canvas). */
export async function renderCharts(specs: Record<string, VegaLiteSpec>): Promise<Record<string, string>> {
  // Vega is published as ES modules with top-level await: loaded with import(), on first use.
  const vega = await import('vega');
  const vl = await import('vega-lite');
  const out: Record<string, string> = {};
  for (const [id, spec] of Object.entries(specs)) {
    const compiled = vl.compile(spec as never).spec;
    const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
    out[id] = (await view.toSVG()).replace('<svg ', `<svg role="img" aria-label="${esc(String(spec.title ?? id))}" data-chart="${esc(id)}" `);
    view.finalize();
  }
  return out;
}

const STYLE = [
  'body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}',
  'table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}td,th{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}',
  'tr.failed td.verdict,tr.missed td.verdict,.red{color:#c62828;font-weight:bold}tr.passed td.verdict,.green{color:#2e7d32;font-weight:bold}',
  '.problems li{color:#c62828}nav a{margin-right:1em}.chart{margin:.5em 0}',
].join('');

const dur = (ms: number | undefined) => (ms === undefined ? '-' : ms < 10_000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`);
const day = (iso: string) => iso.replace('T', ' ').slice(0, 16);

function runCell(r: SiteRun, links: ReportLinks): string {
  const ui = workflowUrl(links, r.workflowId);
  const page = r.page ? `<a class="page" href="${esc(r.page)}">report</a>` : '';
  return `${page}${page && ui ? ' · ' : ''}${ui ? `<a class="ui" href="${esc(ui)}">Temporal UI</a>` : ''}${!page && !ui ? `<code>${esc(r.workflowId)}</code>` : ''}`;
}

function table(headers: string[], rows: string[]): string {
  return `<table><thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('\n') || `<tr><td colspan="${headers.length}">none</td></tr>`}</tbody></table>`;
}

function environmentSection(env: SiteEnvironment, charts: Record<string, string>): string {
  const chart = (id: string) => (charts[id] ? `<div class="chart">${charts[id]}</div>` : '');
  const target = (ms: number | undefined, limit: number | undefined) => `${dur(ms)}${limit !== undefined ? ` / ${dur(limit)}` : ''}`;
  const drills = env.drills.map(
    (d) =>
      `<tr class="${d.passed ? 'passed' : 'failed'}" data-run="${esc(d.id)}"><td>${esc(day(d.at))}</td><td>${esc(d.database)} (${esc(d.mode)})</td><td class="verdict">${d.passed ? 'passed' : 'FAILED'}</td>` +
      `<td>${target(d.rtoMs, d.rtoTargetMs)}</td><td>${target(d.rpoMs, d.rpoTargetMs)}</td><td>${esc(d.signedBy.join(', ') || d.approvedBy || '-')}</td><td>${esc(d.reasons.join('; '))}</td><td>${runCell(d, env.links)}</td></tr>`,
  );
  const restores = env.restoreTests.map(
    (t) =>
      `<tr class="${t.passed ? 'passed' : 'failed'}" data-run="${esc(t.id)}"><td>${esc(day(t.at))}</td><td>${esc(t.database)}</td><td class="verdict">${t.passed ? 'passed' : 'FAILED'}</td><td>${dur(t.durationMs)}</td>` +
      `<td>${t.bytes === undefined ? '-' : `${(t.bytes / 1_048_576).toFixed(1)} MB`}</td><td>${esc(t.backupId ?? '-')}</td><td>${esc(t.reasons.join('; '))}</td><td>${runCell(t, env.links)}</td></tr>`,
  );
  const audits = env.audits.map(
    (a) => `<tr class="${a.ready ? 'passed' : 'failed'}" data-run="${esc(a.id)}"><td>${esc(day(a.at))}</td><td class="verdict">${a.ready ? 'ready' : 'NOT READY'}</td><td>${Math.round(a.score * 100)}%</td><td>${a.blocking}</td><td>${runCell(a, env.links)}</td></tr>`,
  );
  const schedules = env.schedules.map((s) => {
    const bad = s.missed.length > 0 || !s.onServer;
    const state = !s.onServer ? 'NOT ON THE SERVER' : s.missed.length ? `MISSED ${s.missed.length} of ${s.due} due run(s): ${s.missed.map(day).join(', ')}` : s.due ? `every due run started (${s.due})` : 'nothing due yet';
    return `<tr class="${bad ? 'missed' : 'passed'}" data-schedule="${esc(s.scheduleId)}"><td><code>${esc(s.scheduleId)}</code></td><td>${esc(s.runbook)}</td><td>${s.paused ? 'paused' : 'active'}</td><td>${s.lastRun ? esc(day(s.lastRun.at)) : '-'}</td><td>${s.nextRun ? esc(day(s.nextRun)) : '-'}</td><td class="verdict">${esc(state)}</td></tr>`;
  });
  const decisions = env.decisions.map(
    (d) =>
      `<tr class="${d.verified ? 'passed' : 'failed'}"><td>${esc(day(d.at))}</td><td>${esc(d.runbook)}</td><td>${esc(d.gate ? `${d.act} (${d.gate})` : d.act)}</td><td>${esc(d.principal)}</td><td><code>${esc(d.fingerprint)}</code></td><td class="verdict">${d.verified ? 'verified' : `NOT VERIFIED: ${esc(d.problem ?? '')}`}</td><td>${esc(d.outcome ?? '-')}</td><td>${runCell({ id: '', workflowId: d.workflowId, at: d.at, passed: d.verified }, env.links)}</td></tr>`,
  );
  const changes = env.changes.map((c) => {
    const ok = c.outcome !== undefined && SUCCESS.has(c.outcome) && c.unverified === 0;
    const state = c.outcome === undefined ? 'no outcome recorded (running, or ended before its log)' : `${c.outcome}${c.summary && c.summary !== c.outcome ? `: ${c.summary}` : ''}`;
    return (
      `<tr class="${ok ? 'passed' : 'failed'}" data-change="${esc(c.workflowId)}"><td>${esc(day(c.at))}</td><td>${esc(c.runbook)}</td><td class="verdict">${esc(state)}</td><td>${esc(c.requestedBy ?? 'unsigned or scheduled')}</td>` +
      `<td>${esc(c.approvedBy.join(', ') || '-')}${c.unverified ? ` <span class="red">${c.unverified} act(s) NOT VERIFIED</span>` : ''}</td><td>${runCell({ id: '', workflowId: c.workflowId, at: c.at, passed: ok }, env.links)}</td></tr>`
    );
  });
  const unreported = env.unreported.map(
    (r) =>
      `<tr class="failed" data-unreported="${esc(r.workflowId)}"><td>${esc(day(r.at))}</td><td>${esc(r.runbook)}</td><td>${esc(r.target ?? '-')}</td><td class="verdict">${esc(r.status.toLowerCase().replace('timed_out', 'timed out'))}</td><td>${runCell({ id: '', workflowId: r.workflowId, at: r.at, passed: false }, env.links)}</td></tr>`,
  );
  const problems = env.problems.length ? `<ul class="problems">${env.problems.map((p) => `<li>${esc(p)}</li>`).join('')}</ul>` : '';
  return `<section id="env-${esc(env.name)}"><h2>${esc(env.name)}</h2>${problems}
<h3>DR drills</h3>${chart('rto')}${chart('rpo')}${table(['when', 'database', 'result', 'RTO / target', 'RPO / target', 'approved by', 'why it failed', 'run'], drills)}
<h3>Restore tests</h3>${chart('restores')}${table(['when', 'database', 'result', 'restore', 'size', 'backup', 'why it failed', 'run'], restores)}
<h3>Backups</h3>${chart('backups')}<p>${env.backups.length} backup(s)${env.backups.length ? `, the newest ${esc(day(env.backups[env.backups.length - 1].at))}` : ''}.</p>
<h3>Readiness</h3>${chart('audits')}${table(['when', 'verdict', 'score', 'critical items not proved', 'run'], audits)}
<h3>Schedules</h3>${table(['schedule', 'runbook', 'state', 'last run', 'next run', 'due runs'], schedules)}
<h3>Runs that failed without a report</h3><p>Failed, timed out, terminated or cancelled runs that left no report above, from Temporal visibility (within the namespace's retention).</p>${table(['closed', 'runbook', 'target', 'status', 'run'], unreported)}
<h3>Changes: rollouts, releases, go-lives, promotions</h3>${table(['when', 'runbook', 'outcome', 'requested by', 'approved by (verified)', 'run'], changes)}
<h3>Signed decisions</h3>${table(['when', 'runbook', 'act', 'by', 'key', 'signature', 'outcome', 'run'], decisions)}
</section>`;
}

/** The site's index page. `charts` holds each environment's SVG charts by chart id. */
export function renderSite(data: SiteData, charts: Record<string, Record<string, string>>): string {
  const nav = data.environments.map((e) => `<a href="#env-${esc(e.name)}">${esc(e.name)}</a>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>DR posture</title><style>${STYLE}</style></head>
<body><h1>DR posture</h1>
<p>Generated ${esc(data.generatedAt)}${data.since ? `, runs since ${esc(data.since)}` : ''}. The same data is in <a href="data.json">data.json</a>.</p>
<nav>${nav}</nav>
${data.environments.map((e) => environmentSection(e, charts[e.name] ?? {})).join('\n')}
</body></html>
`;
}

/**
 * Which due times of a schedule passed without a run: each due time at least `graceMs` old must have a
 * run scheduled for it (within a second) or started after it and before the next due time.
 */
export function missedDueTimes(due: Date[], actions: { scheduledAt: Date; takenAt: Date }[], now: Date, graceMs: number): { due: number; missed: string[] } {
  const past = due.filter((t) => t.getTime() <= now.getTime() - graceMs).sort((a, b) => a.getTime() - b.getTime());
  const missed: string[] = [];
  past.forEach((t, i) => {
    const next = past[i + 1]?.getTime() ?? Infinity;
    const ran = actions.some((a) => Math.abs(a.scheduledAt.getTime() - t.getTime()) <= 1_000 || (a.takenAt.getTime() >= t.getTime() && a.takenAt.getTime() < next));
    if (!ran) missed.push(t.toISOString());
  });
  return { due: past.length, missed };
}
