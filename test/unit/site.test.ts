import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chartSpecs, missedDueTimes, renderCharts, SiteEnvironment } from '../../src/reports/site';

const at = (s: string) => new Date(`2026-12-01T${s}Z`);

test('a due time counts as run when a run was scheduled for it or started before the next one; one older than the grace without a run is missed', () => {
  const due = [at('10:00:00'), at('10:01:00'), at('10:02:00'), at('10:03:00')];
  const actions = [
    { scheduledAt: at('10:00:00'), takenAt: at('10:00:00.400') },
    // A late start (the worker was down) still covers its due time.
    { scheduledAt: at('10:01:30'), takenAt: at('10:01:30') },
  ];
  const r = missedDueTimes(due, actions, at('10:03:30'), 60_000);
  assert.equal(r.due, 3, 'the 10:03 due time is within its grace');
  assert.deepEqual(r.missed, [at('10:02:00').toISOString()]);
  assert.deepEqual(missedDueTimes([], [], at('10:00:00'), 1_000), { due: 0, missed: [] });
});

test('one chart point per run, with the target as a rule, and the SVG marked for the page', async () => {
  const env: SiteEnvironment = {
    name: 'prod',
    drills: [
      { id: 'd1', workflowId: 'w1', at: '2026-03-01T10:00:00Z', passed: true, database: 'main', mode: 'failover', rtoMs: 12_000, rtoTargetMs: 30_000, rpoMs: 0, rpoTargetMs: 5_000, signedBy: [], reasons: [] },
      { id: 'd2', workflowId: 'w2', at: '2026-06-01T10:00:00Z', passed: false, database: 'main', mode: 'failover', rtoMs: 45_000, rtoTargetMs: 30_000, rpoMs: 1_000, rpoTargetMs: 5_000, signedBy: [], reasons: ['RTO missed'] },
    ],
    restoreTests: [],
    audits: [],
    backups: [],
    schedules: [],
    decisions: [],
    problems: [],
    links: { namespace: 'default' },
  };
  const specs = chartSpecs(env);
  assert.deepEqual(Object.keys(specs).sort(), ['rpo', 'rto']);
  const svg = (await renderCharts({ rto: specs.rto })).rto;
  assert.match(svg, /^<svg role="img" aria-label="Drill RTO \(s\), target dashed" data-chart="rto" /);
  assert.equal((svg.match(/<g class="mark-symbol role-mark[^"]*"[^>]*>(.*?)<\/g>/)?.[1].match(/<path/g) ?? []).length, 2, 'two points');
  assert.match(svg, /mark-rule/);
});
