import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { REQUIREMENT_TESTS } from '../../src/activities/visibility';
import { CHECKLIST, RUN_REQUIREMENTS, runProofKey, runProofsInUse } from '../../src/checklist/catalog';
import { describeProof } from '../../src/cli/checklist';

type Phase = 'baseline' | 'peak' | 'failure' | 'recovery';

/** A load test's result as the runbook returns it, every phase held unless told otherwise. */
function loadResult(change: { held?: Partial<Record<Phase, boolean>>; peakRate?: number; failed?: number; nothingLost?: boolean; recoverError?: string; drainMs?: number | null; drainWithinMs?: number; passed?: boolean } = {}) {
  const rate: Record<Phase, number> = { baseline: 5, peak: change.peakRate ?? 10, failure: 5, recovery: 5 };
  const phases = (['baseline', 'peak', 'failure', 'recovery'] as Phase[]).map((phase) => ({
    phase,
    figures: {
      targetRate: rate[phase],
      failed: phase === 'failure' ? (change.failed ?? 0) : 0,
      ...(phase === 'failure' ? { fault: { target: 'the matching service', ...(change.recoverError ? { recoverError: change.recoverError } : {}) }, drainMs: change.drainMs === undefined ? 1_200 : change.drainMs, backlog: 12 } : {}),
    },
    verdict: { held: change.held?.[phase] ?? phase !== 'failure', nothingLost: phase === 'failure' ? (change.nothingLost ?? true) : true },
  }));
  return { runbook: 'loadTest', passed: change.passed ?? true, plan: { sla: { p99StartToCompleteMs: 5_000, maxErrorRate: 0, ...(change.drainWithinMs !== undefined ? { drainWithinMs: change.drainWithinMs } : {}) } }, phases };
}

const proves = (requirement: keyof typeof REQUIREMENT_TESTS, result: Record<string, unknown>) => REQUIREMENT_TESTS[requirement](result) !== undefined;

describe('what a run must show to prove an item', () => {
  test('a load test whose phases all held proves every load item', () => {
    for (const r of ['loadBaselineHeld', 'loadPeakHeld', 'loadFaultSurvived', 'loadRecovered', 'loadPassed'] as const) assert.equal(proves(r, loadResult()), true, r);
    assert.deepEqual(REQUIREMENT_TESTS.loadPeakHeld(loadResult({ peakRate: 15 })), { peakRate: 15, baselineRate: 5, peakOverBaseline: 3 });
  });

  test('a peak phase that broke its SLA, or ran below 2x the baseline, does not prove peak-load-tested; the baseline still proves load-baseline', () => {
    const broken = loadResult({ held: { peak: false }, passed: false });
    assert.equal(proves('loadPeakHeld', broken), false);
    assert.equal(proves('loadPassed', broken), false);
    assert.equal(proves('loadBaselineHeld', broken), true);
    assert.equal(proves('loadPeakHeld', loadResult({ peakRate: 9 })), false, '1.8x the baseline is not peak load');
    assert.equal(proves('loadBaselineHeld', loadResult({ held: { baseline: false } })), false);
  });

  test('a failure phase that lost or failed a workflow, or whose fault may still be in place, does not prove stress-failure-tested', () => {
    assert.equal(proves('loadFaultSurvived', loadResult({ failed: 1 })), false);
    assert.equal(proves('loadFaultSurvived', loadResult({ nothingLost: false })), false);
    assert.equal(proves('loadFaultSurvived', loadResult({ recoverError: 'the recover command failed (3)' })), false);
  });

  test('a backlog that never drained or drained slower than sla.drainWithin, or a recovery phase that broke its SLA, does not prove overload-recovery-tested', () => {
    assert.equal(proves('loadRecovered', loadResult({ drainMs: null })), false);
    assert.equal(proves('loadRecovered', loadResult({ drainMs: 6_000, drainWithinMs: 5_000 })), false);
    assert.equal(proves('loadRecovered', loadResult({ drainMs: 4_000, drainWithinMs: 5_000 })), true);
    assert.equal(proves('loadRecovered', loadResult({ held: { recovery: false } })), false);
  });

  test('a result without the fields asked for proves nothing (a run of another shape, a half-written result)', () => {
    for (const r of Object.keys(REQUIREMENT_TESTS) as (keyof typeof REQUIREMENT_TESTS)[]) {
      assert.equal(proves(r, {}), false, r);
      assert.equal(proves(r, { phases: 'none', passed: 'yes' }), false, r);
    }
  });

  test('a rollback proves rollback-tested only when it changed a listed Deployment and was verified', () => {
    const ok = { deployment: 'web', changed: true, verified: true };
    assert.deepEqual(REQUIREMENT_TESTS.verifiedChange(ok, ['web']), { deployment: 'web' });
    assert.equal(REQUIREMENT_TESTS.verifiedChange(ok, ['api']), undefined);
    assert.equal(REQUIREMENT_TESTS.verifiedChange({ ...ok, changed: false }), undefined);
    assert.equal(REQUIREMENT_TESTS.verifiedChange({ ...ok, verified: null }), undefined);
  });

  test('the catalog asks each (runbook, requirement) once; every requirement it names is judged and described', () => {
    const asked = runProofsInUse();
    assert.equal(new Set(asked.map((p) => p.key)).size, asked.length);
    for (const item of CHECKLIST) {
      if (item.proof.kind !== 'runbook') continue;
      assert.ok(asked.some((p) => p.key === runProofKey(item.proof as { runbook: string })), item.id);
      if (item.proof.requires) {
        assert.ok(REQUIREMENT_TESTS[item.proof.requires], item.id);
        assert.ok(describeProof(item.proof).endsWith(RUN_REQUIREMENTS[item.proof.requires]), item.id);
      }
    }
    // The seven load items are proved by load tests, none by a bare completed run.
    const load = CHECKLIST.filter((i) => i.proof.kind === 'runbook' && i.proof.runbook === 'loadTest');
    assert.deepEqual(load.map((i) => i.id).sort(), ['concurrency-tested', 'load-baseline', 'overload-recovery-tested', 'peak-load-tested', 'performance-validated', 'stress-failure-tested', 'worker-concurrency-limits']);
    assert.ok(load.every((i) => i.proof.kind === 'runbook' && i.proof.requires));
  });
});
