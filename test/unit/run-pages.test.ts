import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderRunPage, workflowUrl } from '../../src/reports/html';
import { renderRestoreReportHtml, RestoreReport } from '../../src/activities/reports';
import type { StepRecord } from '../../src/workflows/lib/timeline';

const step = (name: string, outcome: StepRecord['outcome'], evidence: Record<string, unknown> = {}, error?: string): StepRecord =>
  ({ name, outcome, startedAt: '2026-12-01T10:00:00.000Z', endedAt: '2026-12-01T10:00:01.500Z', durationMs: 1500, evidence, error }) as StepRecord;

test('a run page: verdict and summary first, reasons, steps with their evidence folded, the runs linked to the Temporal UI', () => {
  const html = renderRunPage(
    {
      kind: 'DR drill',
      title: 'sandbox / main <failover>',
      verdict: 'FAILED',
      ok: false,
      summary: [['RTO', '12.0 s (target 30.0 s: met)']],
      reasons: ['RPO missed: 3 rows lost'],
      steps: [step('preflight', 'succeeded', { primary: 'pg-a' }), step('fault', 'failed', {}, 'pg_ctl said <no>')],
      runs: [{ label: 'this drill', workflowId: 'drill-1' }, { label: 'restore test', workflowId: 'verify/1', runId: 'r-9' }],
    },
    { temporalUi: 'http://127.0.0.1:8233/', namespace: 'default' },
  );
  assert.match(html, /<title>DR drill: sandbox \/ main &lt;failover&gt;<\/title>/);
  assert.match(html, /<span class="verdict bad">FAILED<\/span>/);
  assert.ok(html.indexOf('class="summary"') < html.indexOf('<h2>Why</h2>') && html.indexOf('<h2>Why</h2>') < html.indexOf('class="steps"'), 'summary, then why, then steps');
  assert.match(html, /<li>RPO missed: 3 rows lost<\/li>/);
  assert.match(html, /<details><summary>evidence<\/summary><pre>\{\n {2}&quot;primary&quot;: &quot;pg-a&quot;\n\}<\/pre><\/details>/);
  assert.match(html, /<p class="error">pg_ctl said &lt;no&gt;<\/p>/);
  assert.equal((html.match(/<details>/g) ?? []).length, 1, 'a step without evidence has nothing to fold');
  assert.ok(html.includes('<a href="http://127.0.0.1:8233/namespaces/default/workflows/drill-1"><code>drill-1</code></a>'));
  assert.ok(html.includes('<a href="http://127.0.0.1:8233/namespaces/default/workflows/verify%2F1/r-9/history">'));
  assert.doesNotMatch(html, /<script/);
});

test('without a configured Temporal UI the runs are named, not linked, and the page says why', () => {
  const html = renderRunPage({ kind: 'Release', title: 'x', verdict: 'RELEASED', ok: true, summary: [], runs: [{ label: 'this release', workflowId: 'release-1' }] });
  assert.ok(html.includes('<li>this release: <code>release-1</code></li>'));
  assert.match(html, /notifications\.temporalUiUrl/);
  assert.equal(workflowUrl(undefined, 'a'), undefined);
  assert.equal(workflowUrl({ namespace: 'prod ns', temporalUi: 'https://t.example.com' }, 'a b'), 'https://t.example.com/namespaces/prod%20ns/workflows/a%20b');
});

test("a restore test's page shows its recovery point, RPO and every check, failed ones marked", () => {
  const report: RestoreReport = {
    testId: 'rt-1',
    workflowId: 'verify-1',
    environment: 'sandbox',
    database: 'main',
    passed: false,
    reasons: ['row counts differ for public.orders'],
    selection: 'newest',
    backupId: 'b-1',
    backupEndedAt: '2026-12-01T09:00:00.000Z',
    backupAgeMs: 3_600_000,
    rpo: { limitMs: 86_400_000, newestBackupAgeMs: 3_600_000, met: true },
    restore: { bytes: 1024, durationMs: 2000, mode: 'pg_restore', jobs: 2 },
    checks: [
      { name: 'tables present', passed: true, detail: '12 of 12' },
      { name: 'row counts', passed: false, detail: 'public.orders: 10 != 11' },
    ],
    scratchDatabase: 'restore_test_1',
    scratchDropped: true,
    startedAt: '2026-12-01T10:00:00.000Z',
    endedAt: '2026-12-01T10:01:00.000Z',
  };
  const html = renderRestoreReportHtml(report);
  assert.match(html, /<span class="verdict bad">FAILED<\/span>/);
  assert.match(html, /<th>Recovery point<\/th><td>b-1 \(newest\)/);
  assert.match(html, /<tr class="fail"><td>row counts<\/td>/);
  assert.match(html, /<tr class="pass"><td>tables present<\/td>/);
  assert.match(html, /<li>row counts differ for public.orders<\/li>/);
});
