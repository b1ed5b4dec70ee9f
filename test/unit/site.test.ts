import assert from 'node:assert/strict';
import { test } from 'node:test';
import { changesFrom, chartSpecs, missedDueTimes, renderCharts, SiteEnvironment } from '../../src/reports/site';

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
    changes: [],
    unreported: [],
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

test('changes: each rollout, release, go-live or promotion once, with its signed requester, verified approvers and outcome; an unverified act marks it', () => {
  const d = (at: string, runbook: string, workflowId: string, act: string, principal: string, verified = true) => ({ at, runbook, workflowId, act, gate: act === 'start' ? 'start' : 'g1', principal, fingerprint: `SHA256:${principal}`, verified });
  const changes = changesFrom(
    [
      d('2026-03-01T10:00:05Z', 'rollout', 'r1', 'approve', 'bob'),
      d('2026-03-01T10:00:00Z', 'rollout', 'r1', 'start', 'alice'),
      d('2026-03-02T10:00:00Z', 'release', 'rel1', 'approve', 'mallory', false),
      d('2026-03-03T10:00:00Z', 'drDrill', 'dr1', 'approve', 'bob'),
    ],
    [
      { runbook: 'rollout', workflowId: 'r1', at: '2026-03-01T10:05:00Z', outcome: 'succeeded' },
      { runbook: 'goLive', workflowId: 'g1', at: '2026-03-04T10:00:00Z', outcome: 'failed', summary: 'stopped at the audit gate' },
    ],
  );
  assert.deepEqual(
    changes.map((c) => [c.runbook, c.workflowId, c.at, c.requestedBy, c.approvedBy, c.unverified, c.outcome]),
    [
      ['rollout', 'r1', '2026-03-01T10:00:00Z', 'alice (SHA256:alice)', ['bob (SHA256:bob)'], 0, 'succeeded'],
      ['release', 'rel1', '2026-03-02T10:00:00Z', undefined, [], 1, undefined],
      ['goLive', 'g1', '2026-03-04T10:00:00Z', undefined, [], 0, 'failed'],
    ],
  );
});
