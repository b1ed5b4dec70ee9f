import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowHandle } from '@temporalio/client';
import { parse, stringify } from 'yaml';
import { ConnectedClient, connectClient, searchAttributesFor, startRunbook } from '../../src/cli/client';
import { buildSite, serveDirectory } from '../../src/cli/report';
import { applySchedules } from '../../src/cli/schedule';
import { signedDecision } from '../../src/cli/sign';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { desiredSchedules } from '../../src/schedules/plan';
import type { SiteData } from '../../src/reports/site';
import { decideUpdate, gatesQuery } from '../../src/workflows/lib/gate';
import { RunbookWorker } from '../../src/worker';
import { Browser, keepPage } from '../browser';
import { operator, runCli, waitFor } from '../helpers';

/*
 * The DR-posture site built from a sandbox with real runs: two drills (one missing its RTO target),
 * three backups of two databases, two restore tests (one failing its RPO), two audits, signed
 * decisions, and schedules: one running every minute, one paused (its due runs are missed), one
 * configured but never applied. The site is opened in headless Chromium.
 */

const dir = mkdtempSync(join(tmpdir(), 'runbook-report-site-'));
chmodSync(dir, 0o755);
let stack: StackState;
let loaded: LoadedConfig;
let worker: RunbookWorker;
let c: ConnectedClient;
let scheduledAt = 0;

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack') });
  // A second database on the same server whose restore tests must find a backup younger than 1 s: they fail their RPO.
  const doc = parse(readFileSync(stack.configFile, 'utf8'));
  const main = doc.environments.sandbox.databases.main;
  const primary = main.topology.nodes[0];
  const { topology: _t, dnsRecord: _d, ...rest } = main;
  doc.environments.sandbox.databases.copy = { ...rest, host: primary.host, port: primary.port, restoreTest: { ...(main.restoreTest ?? {}), maxBackupAge: '1s' } };
  doc.schedules = [
    { id: 'site-every-minute', runbook: 'smokeTest', environment: 'sandbox', cron: '* * * * *', input: {} },
    { id: 'site-paused', runbook: 'smokeTest', environment: 'sandbox', cron: '* * * * *', input: {}, paused: true },
    { id: 'site-never-applied', runbook: 'backupDatabase', environment: 'sandbox', cron: '0 2 * * *', input: { database: 'main' } },
  ];
  writeFileSync(stack.configFile, stringify(doc));
  loaded = loadConfig(stack.configFile);
  worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  await worker.start();
  await worker.waitUntilReady();
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
  // Applied first, so a minute's due time has passed by the time the site is built.
  await applySchedules(c, desiredSchedules(loaded, {}, 'sandbox').filter((d) => d.scheduleId !== 'site-never-applied'), false);
  scheduledAt = Date.now();
});

after(async () => {
  for (const id of ['site-every-minute', 'site-paused']) await c?.client.schedule.getHandle(id).delete().catch(() => undefined);
  await c?.close();
  await worker?.shutdown();
  await stopStack(stack);
  if (!process.env.RUNBOOK_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
});

async function drill(args: Record<string, unknown>): Promise<void> {
  const handle: WorkflowHandle = await c.client.workflow.start('drDrill', { taskQueue: 'critical-queue', workflowId: `site-drill-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main', mode: 'failover', ...args }] });
  await waitFor('the approval gate', async () => (await handle.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 30_000, 100);
  await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', operator(stack), 'site test drill')] });
  await handle.result().catch(() => undefined);
}

describe('runbook report site', () => {
  let data: SiteData;
  const out = join(dir, 'site');

  test('from real runs: drills with RTO and RPO against target, restore tests, backups, audits, schedules with their missed runs, signed decisions', async () => {
    const run = (runbook: Parameters<typeof startRunbook>[1], input: Record<string, unknown>) => startRunbook(c, runbook, [{ environment: 'sandbox', ...input }], {}).then(({ handle }) => handle.result().catch((e: unknown) => e));
    await run('backupDatabase', { database: 'main' });
    await run('verifyBackup', { database: 'main' });
    await run('backupDatabase', { database: 'main' });
    await run('backupDatabase', { database: 'copy' });
    await new Promise((r) => setTimeout(r, 1_500));
    await run('verifyBackup', { database: 'copy' });
    await drill({});
    await drill({ targets: { rtoMs: 1 } });
    await run('readinessAudit', {});
    await run('readinessAudit', {});
    // Two runs that leave no report: a backup of a database the worker does not know, and a drill terminated at its gate.
    await run('backupDatabase', { database: 'nosuchdb' });
    const stopped = await c.client.workflow.start('drDrill', { taskQueue: 'critical-queue', workflowId: `site-drill-terminated-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main', mode: 'failover' }], typedSearchAttributes: await searchAttributesFor(c, 'drDrill', 'main') });
    await waitFor('its approval gate', async () => (await stopped.query(gatesQuery)).some((g) => g.outcome === 'waiting'), 30_000, 100);
    await stopped.terminate('site test: a run that dies without a report');
    // The paused schedule's first due time must be a minute (its grace) old.
    const firstDue = Math.ceil((scheduledAt + 1) / 60_000) * 60_000;
    await waitFor('a missed due time past its grace', async () => Date.now() > firstDue + 62_000, 150_000, 1_000);

    ({ data } = await buildSite(loaded, { environments: ['sandbox'], outDir: out }));
    const env = data.environments[0];
    assert.deepEqual(env.problems, []);
    assert.deepEqual(env.drills.map((d) => d.passed), [true, false]);
    assert.ok(env.drills.every((d) => d.rtoMs !== undefined && d.signedBy[0]?.startsWith('sandbox-operator')), JSON.stringify(env.drills));
    assert.equal(env.drills[1].rtoTargetMs, 1);
    assert.deepEqual(env.restoreTests.map((t) => [t.database, t.passed]), [['main', true], ['copy', false]]);
    assert.match(env.restoreTests[1].reasons.join(' '), /RPO|older|age/i);
    assert.equal(env.backups.length, 3);
    assert.equal(env.backups.filter((b) => b.gapMs !== undefined).length, 1, 'one database has two backups');
    assert.equal(env.audits.length, 2);
    // Visibility adds what no report shows; runs with a report (the failed restore test, the drill that missed its RTO) are not repeated.
    assert.deepEqual(env.unreported.map((r) => [r.runbook, r.status, r.target]).sort(), [['backupDatabase', 'FAILED', 'nosuchdb'], ['drDrill', 'TERMINATED', 'main']]);
    assert.equal(env.unreported.find((r) => r.runbook === 'drDrill')?.workflowId, stopped.workflowId);
    assert.ok(env.decisions.filter((d) => d.runbook === 'drDrill' && d.verified).length >= 2, JSON.stringify(env.decisions));
    const s = Object.fromEntries(env.schedules.map((x) => [x.scheduleId, x]));
    assert.equal(s['site-never-applied'].onServer, false);
    assert.ok(s['site-paused'].paused && s['site-paused'].missed.length >= 1, JSON.stringify(s['site-paused']));
    assert.ok(s['site-every-minute'].due >= 1 && s['site-every-minute'].missed.length === 0, JSON.stringify(s['site-every-minute']));
    for (const r of [...env.drills, ...env.restoreTests, ...env.audits]) assert.ok(r.page && existsSync(join(out, r.page)), `the page of ${r.id} is kept beside the site`);
    assert.deepEqual(JSON.parse(readFileSync(join(out, 'data.json'), 'utf8')), JSON.parse(JSON.stringify(data)));
  });

  test('opened in Chromium: no console errors, one chart point per run, failed runs and missed schedules marked, every link resolves', async () => {
    const env = data.environments[0];
    const browser = await Browser.launch();
    try {
      const tab = await browser.open(`file://${join(out, 'index.html')}`);
      assert.deepEqual(tab.errors, []);
      const points = (chart: string) => tab.evaluate<number>(`document.querySelectorAll('svg[data-chart="${chart}"] .mark-symbol.role-mark path').length`);
      assert.equal(await points('rto'), env.drills.length);
      assert.equal(await points('rpo'), env.drills.length);
      assert.equal(await points('restores'), env.restoreTests.length);
      assert.equal(await points('audits'), env.audits.length);
      assert.equal(await points('backups'), 1);
      const failed = await tab.evaluate<string[]>('[...document.querySelectorAll("tr.failed[data-run]")].map((tr) => tr.dataset.run)');
      for (const r of [...env.drills, ...env.restoreTests].filter((x) => !x.passed)) assert.ok(failed.includes(r.id), `${r.id} is marked failed`);
      const missed = await tab.evaluate<string[]>('[...document.querySelectorAll("tr.missed")].map((tr) => tr.dataset.schedule)');
      assert.deepEqual(missed.sort(), ['site-never-applied', 'site-paused']);
      assert.equal(await tab.evaluate<string>('getComputedStyle(document.querySelector("tr.missed td.verdict")).color'), 'rgb(198, 40, 40)');
      const pages = await tab.evaluate<string[]>('[...document.querySelectorAll("a.page")].map((a) => a.href)');
      assert.equal(pages.length, env.drills.length + env.restoreTests.length + env.audits.length);
      for (const href of pages) {
        const page = await browser.open(href);
        assert.deepEqual(page.errors, [], href);
        assert.ok(await page.evaluate<boolean>('document.querySelector("h1 .verdict") !== null'), href);
      }
      await tab.screenshot('dr-site');
      keepPage('dr-site', readFileSync(join(out, 'index.html'), 'utf8'));
    } finally {
      await browser.close();
    }
  });

  test('runbook report serve serves it read-only on localhost; the command refuses a directory without a site', async () => {
    const served = await serveDirectory(out, '127.0.0.1', 0);
    try {
      const index = await fetch(served.url);
      assert.equal(index.status, 200);
      assert.match(await index.text(), /<h1>DR posture<\/h1>/);
      assert.equal((await fetch(`${served.url}data.json`)).headers.get('content-type'), 'application/json');
      assert.equal((await fetch(served.url, { method: 'POST', body: 'x' })).status, 405);
      assert.equal((await fetch(`${served.url}..%2f..%2fetc%2fpasswd`)).status, 404);
      assert.equal((await fetch(`${served.url}runs/nothing.html`)).status, 404);
    } finally {
      await served.close();
    }
    const r = await runCli(['--config', stack.configFile, 'report', 'serve', '--dir', dirname(out)]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--dir: .* holds no index\.html; write the site first with: runbook report site/);
    const bad = await runCli(['--config', stack.configFile, 'report', 'site', '--since', 'last tuesday']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--since: expected a date such as 2026-01-01, found "last tuesday"/);
  });
});
