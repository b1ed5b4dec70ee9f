/**
 * runbook report site: the DR-posture site, from the reports and the evidence log in each
 * environment's bucket (so a year of history outlives the namespace's retention) and from the
 * schedules on the Temporal server. runbook report serve: the site, read-only, on localhost.
 */
import { createReadStream, existsSync, mkdirSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, resolve, sep } from 'node:path';
import type { Command } from 'commander';
import { msToTs, tsToMs } from '@temporalio/common';
import { createS3Client, ObjectStore } from '../activities/s3';
import type { BackupManifest } from '../activities/backups';
import type { RestoreReport } from '../activities/reports';
import type { EnvironmentConfig } from '../config/schema';
import type { LoadedConfig } from '../config/load';
import { evidencePrefix, readChain } from '../evidence/log';
import type { ReadinessReport } from '../reports/audit';
import type { DrillReport } from '../reports/drill';
import { changesFrom, chartSpecs, missedDueTimes, renderCharts, renderSite, SiteData, SiteEnvironment, SiteSchedule, SiteUnreportedRun } from '../reports/site';
import { connectClient, RUNBOOK_TARGET_KEY } from './client';
import { decisionRows } from './evidence';
import { GlobalOptions, loadCliConfig, printJson, shown, UsageError } from './common';

const KEEP_RUN_PAGE = /^[a-z0-9-]{1,100}$/;

/** Reads one environment's history from its bucket and its Temporal server; what cannot be read becomes a listed problem. */
export async function gatherEnvironment(loaded: LoadedConfig, name: string, env: EnvironmentConfig, opts: { since?: number; outDir: string; now?: Date }): Promise<SiteEnvironment> {
  const now = opts.now ?? new Date();
  const site: SiteEnvironment = { name, drills: [], restoreTests: [], audits: [], backups: [], schedules: [], decisions: [], changes: [], unreported: [], problems: [], links: { temporalUi: env.notifications?.temporalUiUrl, namespace: env.temporal.namespace } };
  const inWindow = (at: string | undefined) => at !== undefined && (opts.since === undefined || Date.parse(at) >= opts.since);
  if (!env.backups) {
    site.problems.push(`environment ${name} has no backups: section, so no reports are kept to read`);
  } else {
    const store = new ObjectStore(createS3Client(loaded, env.backups), env.backups.bucket);
    const prefix = env.backups.prefix;
    try {
      const keys = (await store.list(prefix)).map((o) => o.key);
      const has = new Set(keys);
      /** Copies a run's own page beside the site, so the link works wherever the site is opened. */
      const keepPage = async (htmlKey: string, kind: string, id: string): Promise<string | undefined> => {
        if (!has.has(htmlKey) || !KEEP_RUN_PAGE.test(id)) return undefined;
        const rel = `runs/${kind}-${id}.html`;
        mkdirSync(join(opts.outDir, 'runs'), { recursive: true });
        writeFileSync(join(opts.outDir, rel), await store.getText(htmlKey));
        return rel;
      };
      for (const key of keys.filter((k) => k.startsWith(`${prefix}drills/`) && k.endsWith('/report.json'))) {
        const r = await store.getJson<DrillReport>(key);
        if (r.environment !== name || !inWindow(r.startedAt)) continue;
        site.drills.push({
          id: r.drillId,
          workflowId: r.workflowId,
          at: r.startedAt,
          passed: r.passed,
          database: r.database,
          mode: r.mode,
          rtoMs: r.rto?.ms,
          rtoTargetMs: r.rto?.targetMs,
          rpoMs: r.rpo?.ms,
          rpoTargetMs: r.rpo?.targetMs,
          approvedBy: r.approval?.by,
          signedBy: (r.approval?.approvals ?? []).map((a) => `${a.principal} (${a.fingerprint})`),
          reasons: r.reasons,
          page: await keepPage(key.replace(/\.json$/, '.html'), 'drill', r.drillId),
        });
      }
      for (const key of keys.filter((k) => k.startsWith(`${prefix}audits/`) && k.endsWith('/report.json'))) {
        const r = await store.getJson<ReadinessReport>(key);
        if (r.environment !== name || !inWindow(r.endedAt)) continue;
        site.audits.push({ id: r.auditId, workflowId: r.workflowId, at: r.endedAt, passed: r.ready, score: r.score, ready: r.ready, blocking: r.blocking.length, page: await keepPage(key.replace(/\.json$/, '.html'), 'audit', r.auditId) });
      }
      for (const key of keys.filter((k) => /\/restore-tests\/[a-z0-9-]+\.json$/.test(k) && !k.includes('/temporal-config/'))) {
        const r = await store.getJson<RestoreReport>(key);
        if (r.environment !== name || typeof r.database !== 'string' || !Array.isArray(r.checks) || !inWindow(r.startedAt)) continue;
        site.restoreTests.push({
          id: r.testId,
          workflowId: r.workflowId,
          at: r.startedAt,
          passed: r.passed,
          database: r.database,
          durationMs: r.restore?.durationMs ?? r.pitr?.restoreMs,
          bytes: r.restore?.bytes,
          backupId: r.backupId,
          reasons: r.reasons,
          page: await keepPage(key.replace(/\.json$/, '.html'), 'restore-test', r.testId),
        });
      }
      for (const database of Object.keys(env.databases)) {
        const manifests = keys.filter((k) => k.startsWith(`${prefix}${database}/`) && /^[^/]+\/manifest\.json$/.test(k.slice(`${prefix}${database}/`.length)));
        const found: BackupManifest[] = [];
        for (const key of manifests) found.push(await store.getJson<BackupManifest>(key));
        found.sort((a, b) => Date.parse(a.endedAt) - Date.parse(b.endedAt));
        found.forEach((m, i) => {
          if (!inWindow(m.endedAt)) return;
          site.backups.push({ database, backupId: m.backupId, at: m.endedAt, bytes: m.bytes, gapMs: i > 0 ? Date.parse(m.endedAt) - Date.parse(found[i - 1].endedAt) : undefined });
        });
      }
      site.backups.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
      const records = (await readChain(store, evidencePrefix(prefix, name))).map((x) => x.record);
      site.decisions = decisionRows(records)
        .filter((d) => inWindow(d.at))
        .map((d) => ({ at: d.at, runbook: d.runbook, workflowId: d.workflowId, act: d.act, gate: d.gate, principal: d.principal, fingerprint: d.fingerprint, verified: d.verified, problem: d.problem, outcome: d.outcome }));
      site.changes = changesFrom(site.decisions, records.filter((r) => r.kind === 'outcome' && inWindow(r.at)));
    } catch (err) {
      site.problems.push(`the bucket ${env.backups.bucket} (${prefix}) could not be read: ${(err as Error).message}`);
    } finally {
      store.s3.destroy();
    }
  }
  for (const list of [site.drills, site.audits, site.restoreTests]) list.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  site.schedules = await scheduleStates(loaded, name, env, now, opts.since).catch((err: Error) => {
    site.problems.push(`the schedules could not be read from Temporal ${env.temporal.address}: ${err.message}`);
    return [];
  });
  const reported = new Set([...site.drills, ...site.restoreTests, ...site.audits].map((r) => r.workflowId));
  site.unreported = await unsuccessfulRuns(loaded, name, env, opts.since)
    .then((runs) => runs.filter((r) => !reported.has(r.workflowId)))
    .catch((err: Error) => {
      site.problems.push(`the runs could not be listed from Temporal ${env.temporal.address}: ${err.message}`);
      return [];
    });
  return site;
}

/**
 * Runs of the environment that failed, timed out, were terminated or cancelled, from visibility (so
 * within the namespace's retention): those that died before writing a report are seen nowhere else.
 */
async function unsuccessfulRuns(loaded: LoadedConfig, name: string, env: EnvironmentConfig, since?: number): Promise<SiteUnreportedRun[]> {
  const c = await connectClient(loaded, name, env);
  try {
    const statuses = ['Failed', 'TimedOut', 'Terminated', 'Canceled'].map((st) => `ExecutionStatus = '${st}'`).join(' OR ');
    const window = since === undefined ? '' : ` AND CloseTime >= '${new Date(since).toISOString()}'`;
    const out: SiteUnreportedRun[] = [];
    for await (const w of c.client.workflow.list({ query: `RunbookEnvironment = '${name}' AND (${statuses})${window}`, pageSize: 200 })) {
      if (out.length >= 500) break;
      out.push({ runbook: w.type, workflowId: w.workflowId, status: w.status.name, at: (w.closeTime ?? w.startTime).toISOString(), target: w.typedSearchAttributes.get(RUNBOOK_TARGET_KEY) });
    }
    return out.sort((a, b) => a.at.localeCompare(b.at));
  } finally {
    await c.close();
  }
}

/** Each configured schedule of the environment: on the server?, paused?, its last and next run, and the due runs that did not happen. */
async function scheduleStates(loaded: LoadedConfig, name: string, env: EnvironmentConfig, now: Date, since?: number): Promise<SiteSchedule[]> {
  const configured = loaded.config.schedules.filter((s) => s.environment === name);
  if (configured.length === 0) return [];
  const c = await connectClient(loaded, name, env);
  try {
    const out: SiteSchedule[] = [];
    for (const s of configured) {
      const d = await c.client.schedule
        .getHandle(s.id)
        .describe()
        .catch((err: Error) => {
          if (/not found/i.test(err.message) || err.name === 'ScheduleNotFoundError') return undefined;
          throw err;
        });
      if (!d) {
        out.push({ scheduleId: s.id, runbook: s.runbook, paused: s.paused, onServer: false, missed: [], due: 0 });
        continue;
      }
      // The due times since the schedule exists (at most a year back, or since --since), as the server computes them.
      const from = Math.max(d.info.createdAt.getTime(), since ?? 0, now.getTime() - 366 * 86_400_000);
      const matching = (await c.connection.workflowService.listScheduleMatchingTimes({
        namespace: c.namespace,
        scheduleId: s.id,
        startTime: msToTs(from),
        endTime: msToTs(now.getTime()),
      })) as { startTime?: Parameters<typeof tsToMs>[0][] | null };
      // The server keeps the schedule's last 10 actions: once it holds that many, a due time before the
      // oldest of them cannot be judged from it and is left out (not counted as missed).
      const recent = d.info.recentActions;
      const judgedFrom = recent.length >= 10 ? recent[0].scheduledAt.getTime() - 1_000 : -Infinity;
      const due = (matching.startTime ?? []).map((t) => new Date(tsToMs(t))).filter((t) => t.getTime() >= judgedFrom);
      const next = d.info.nextActionTimes[0];
      const period = due.length >= 2 ? due[due.length - 1].getTime() - due[due.length - 2].getTime() : next && due.length ? next.getTime() - due[due.length - 1].getTime() : 3_600_000;
      // A run is expected within its jitter and a grace of a period (at most 10 minutes) after its time.
      const grace = Math.min(600_000, Math.max(2_000, period)) + (s.jitter ?? 0);
      const actions = d.info.recentActions.map((a) => ({ scheduledAt: a.scheduledAt, takenAt: a.takenAt }));
      const { due: dueCount, missed } = missedDueTimes(due, actions, now, grace);
      const last = d.info.recentActions[d.info.recentActions.length - 1];
      out.push({
        scheduleId: s.id,
        runbook: s.runbook,
        paused: d.state.paused,
        onServer: true,
        lastRun: last ? { at: last.takenAt.toISOString(), workflowId: last.action.workflow.workflowId } : undefined,
        nextRun: d.state.paused ? undefined : next?.toISOString(),
        missed,
        due: dueCount,
      });
    }
    return out;
  } finally {
    await c.close();
  }
}

/** Gathers every selected environment, draws the charts, writes index.html and data.json. */
export async function buildSite(loaded: LoadedConfig, opts: { environments: string[]; since?: string; outDir: string; now?: Date }): Promise<{ data: SiteData; files: string[] }> {
  const since = opts.since === undefined ? undefined : Date.parse(opts.since);
  mkdirSync(opts.outDir, { recursive: true });
  const data: SiteData = { generatedAt: (opts.now ?? new Date()).toISOString(), since: opts.since, environments: [] };
  for (const name of opts.environments) data.environments.push(await gatherEnvironment(loaded, name, loaded.config.environments[name], { since, outDir: opts.outDir, now: opts.now }));
  const charts: Record<string, Record<string, string>> = {};
  for (const e of data.environments) charts[e.name] = await renderCharts(chartSpecs(e));
  writeFileSync(join(opts.outDir, 'index.html'), renderSite(data, charts));
  writeFileSync(join(opts.outDir, 'data.json'), `${JSON.stringify(data, null, 2)}\n`);
  const pages = data.environments.flatMap((e) => [...e.drills, ...e.audits, ...e.restoreTests].map((r) => r.page).filter((p): p is string => p !== undefined));
  return { data, files: ['index.html', 'data.json', ...pages] };
}

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.json': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png' };

/** Serves a directory read-only: GET and HEAD of files under it, nothing else. */
export function serveDirectory(dir: string, host: string, port: number): Promise<{ url: string; close(): Promise<void> }> {
  const root = realpathSync(dir);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end('read-only\n');
      return;
    }
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      res.writeHead(400).end('bad path\n');
      return;
    }
    let file = resolve(root, `.${path}`);
    if (existsSync(file) && statSync(file).isDirectory()) file = join(file, 'index.html');
    if ((file !== root && !file.startsWith(root + sep)) || !existsSync(file) || !statSync(file).isFile() || !realpathSync(file).startsWith(root + sep)) {
      res.writeHead(404).end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'x-content-type-options': 'nosniff', 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:" });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  return new Promise((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const a = server.address() as { port: number };
      resolveListen({ url: `http://${host}:${a.port}/`, close: () => new Promise<void>((r) => server.close(() => r())) });
    });
  });
}

export function registerReport(program: Command, globals: () => GlobalOptions): void {
  const report = program.command('report').description('the DR-posture site: drills, restore tests, backups, readiness, schedules and signed decisions');
  report
    .command('site')
    .description('write a static, self-contained site (index.html, data.json, each run\'s page) from the reports and evidence in the bucket and the schedules on the server')
    .option('--since <date>', 'only runs at or after this date (2026-01-01 or an ISO time)')
    .option('--out <dir>', 'where to write it', 'dr-site')
    .action(async (opts: { since?: string; out: string }) => {
      const g = globals();
      if (opts.since !== undefined && !Number.isFinite(Date.parse(opts.since))) throw new UsageError(`--since: expected a date such as 2026-01-01, found ${shown(opts.since)}`);
      const loaded = loadCliConfig(g);
      const names = Object.keys(loaded.config.environments);
      if (g.env !== undefined && !names.includes(g.env)) throw new UsageError(`--env: unknown environment '${g.env}'; defined: ${names.join(', ')}`);
      const { data, files } = await buildSite(loaded, { environments: g.env ? [g.env] : names, since: opts.since, outDir: opts.out });
      if (g.json) return printJson({ ok: true, out: resolve(opts.out), files, data });
      for (const e of data.environments) {
        const failed = [...e.drills, ...e.restoreTests].filter((r) => !r.passed).length;
        const missed = e.schedules.filter((s) => s.missed.length > 0 || !s.onServer).length;
        process.stdout.write(`${e.name}: ${e.drills.length} drill(s), ${e.restoreTests.length} restore test(s), ${e.backups.length} backup(s), ${e.audits.length} audit(s), ${e.schedules.length} schedule(s), ${e.changes.length} change(s), ${e.decisions.length} signed decision(s); ${failed} failed run(s), ${missed} schedule(s) missing runs${e.problems.length ? `; problems: ${e.problems.join('; ')}` : ''}\n`);
      }
      process.stdout.write(`wrote ${resolve(opts.out, 'index.html')} (${files.length} files)\n`);
    });
  report
    .command('serve')
    .description('serve a written site read-only on localhost')
    .option('--dir <dir>', 'the site to serve', 'dr-site')
    .option('--port <port>', 'port (0: any free one)', '8099')
    .action(async (opts: { dir: string; port: string }) => {
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port: expected a port number from 0 to 65535, found ${shown(opts.port)}`);
      if (!existsSync(join(opts.dir, 'index.html'))) throw new UsageError(`--dir: ${resolve(opts.dir)} holds no index.html; write the site first with: runbook report site --out ${opts.dir}`);
      const s = await serveDirectory(opts.dir, '127.0.0.1', port);
      process.stdout.write(`serving ${resolve(opts.dir)} read-only at ${s.url} (Ctrl-C stops)\n`);
      await new Promise<void>((r) => process.once('SIGINT', () => void s.close().then(r)));
    });
}
