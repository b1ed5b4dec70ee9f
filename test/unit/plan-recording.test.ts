import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Activities } from '../../src/activities';
import type { EnvironmentConfig } from '../../src/config/schema';
import { renderPlanMarkdown, renderPlanText, RunbookPlan } from '../../src/cli/plan';
import { ACTIVITY_EFFECTS } from '../../src/plan/effects';
import { PLANNERS } from '../../src/plan/planners';
import { createPlanActivities } from '../../src/plan/recording';
import { isPlanEnvelope, isPlanQueue, planQueue, planQueueFor } from '../../src/plan/types';

/** Stand-ins for the real activities, each one recognisable. */
function realActivities(): Activities {
  return Object.fromEntries(Object.keys(ACTIVITY_EFFECTS).map((name) => [name, async () => `real ${name}`])) as unknown as Activities;
}

describe('plan workers', () => {
  test('register every read-only activity as it is and no activity that changes or follows a change', () => {
    const real = realActivities();
    const planned = createPlanActivities({ environment: 'e', env: {} as EnvironmentConfig, real, planners: PLANNERS });
    const names = Object.keys(ACTIVITY_EFFECTS) as (keyof Activities)[];
    assert.deepEqual(Object.keys(planned).sort(), [...names].sort());
    const changing = names.filter((n) => ACTIVITY_EFFECTS[n] !== 'reads');
    assert.ok(changing.length >= 50, `${changing.length} changing activities`);
    for (const n of names) {
      if (ACTIVITY_EFFECTS[n] === 'reads') assert.equal(planned[n], real[n] as unknown, `${n} is read-only and runs as it is`);
      else assert.notEqual(planned[n], real[n] as unknown, `${n} changes something: a plan worker must not register it`);
    }
  });

  test('a changing activity without a planner stops the plan where the real run would call it, naming it', async () => {
    const planned = createPlanActivities({ environment: 'e', env: {} as EnvironmentConfig, real: realActivities(), planners: {} });
    await assert.rejects(planned.takeBackup({} as never), (err: Error & { type?: string; nonRetryable?: boolean }) => {
      assert.equal(err.type, 'PlanIncomplete');
      assert.equal(err.nonRetryable, true);
      assert.match(err.message, /the plan stops here: the real run would call takeBackup, which changes something/);
      return true;
    });
  });

  test('plan queues are the runbook queues with a suffix, and only recording envelopes are unwrapped', () => {
    assert.equal(planQueue('critical-queue'), 'critical-queue-plan');
    assert.equal(planQueue('critical-queue-plan'), 'critical-queue-plan');
    assert.equal(isPlanQueue('critical-queue'), false);
    assert.equal(planQueueFor({ critical: 'prod-critical' }), 'prod-critical-plan');
    assert.equal(isPlanEnvelope({ runbookPlan: 1, result: 1, planned: [] }), true);
    assert.equal(isPlanEnvelope({ result: 1, planned: [] }), false);
    assert.equal(isPlanEnvelope(null), false);
  });
});

describe('plan output', () => {
  const plan: RunbookPlan = {
    runbook: 'drDrill',
    environment: 'prod',
    workflowId: 'plan-drDrill-prod-x',
    ok: false,
    problems: ['preflight failed, nothing was changed: replica pg-b lags'],
    plannedAt: '2026-12-02T00:00:00.000Z',
    children: [],
    steps: [
      { name: 'preflight', outcome: 'failed', planned: [], found: { candidate: 'pg-b', driver: 'local' }, error: 'replica pg-b lags' },
      { name: 'switch the service endpoint', outcome: 'succeeded', planned: [{ kind: 'change', by: 'switchServiceEndpoint', what: 'DNS A record db: 10.0.0.1 → 10.0.0.2', detail: { from: ['10.0.0.1'], to: '10.0.0.2' } }], found: {} },
    ],
  };

  test('as text: numbered steps, each change, what was read, the failing step and the problems', () => {
    const text = renderPlanText(plan);
    assert.match(text, /^PLAN of drDrill in prod: the real run would stop \(plan run plan-drDrill-prod-x; nothing was changed\)/);
    assert.match(text, /^1\. preflight {2}-- would FAIL: replica pg-b lags$/m);
    assert.match(text, /reads {5}candidate: pg-b/);
    assert.match(text, /reads {5}driver=local/);
    assert.match(text, /^2\. switch the service endpoint\n {5}change {4}DNS A record db: 10\.0\.0\.1 → 10\.0\.0\.2$/m);
    assert.match(text, /^PROBLEM: preflight failed/m);
  });

  test('as a manual procedure: a checkbox per change with its detail, checks first, the stop said at the top', () => {
    const md = renderPlanMarkdown(plan);
    assert.match(md, /^# Manual procedure: drDrill in prod$/m);
    assert.match(md, /\*\*The real run would stop:\*\* preflight failed/);
    assert.match(md, /^## 2\. switch the service endpoint$/m);
    assert.match(md, /^- \[ \] do: DNS A record db: 10\.0\.0\.1 → 10\.0\.0\.2$/m);
    assert.match(md, /"to": "10\.0\.0\.2"/);
    assert.match(md, /^- check: candidate: pg-b$/m);
  });
});
