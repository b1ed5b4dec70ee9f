import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DEFAULT_TUNING, resolveQueues, resolveTuning } from '../../src/worker';

describe('worker tuning', () => {
  test("defaults are the checklist's production values", () => {
    const t = resolveTuning({}, {});
    assert.equal(t.maxConcurrentActivityTaskExecutions, 100);
    assert.equal(t.maxConcurrentLocalActivityExecutions, 100);
    assert.equal(t.maxConcurrentWorkflowTaskPolls, 100);
    assert.equal(t.maxCachedWorkflows, 1000);
    assert.equal(t.shutdownGraceTimeMs, 30_000);
  });

  test('config overrides defaults, and environment variables override config', () => {
    const t = resolveTuning({ maxCachedWorkflows: 500, shutdownGraceTime: 60_000 }, { RUNBOOK_MAX_CACHED_WORKFLOWS: '250', RUNBOOK_MAX_CONCURRENT_ACTIVITIES: '20' });
    assert.equal(t.maxCachedWorkflows, 250);
    assert.equal(t.maxConcurrentActivityTaskExecutions, 20);
    assert.equal(t.shutdownGraceTimeMs, 60_000);
    assert.equal(resolveTuning({}, { RUNBOOK_SHUTDOWN_GRACE_TIME: '5s' }).shutdownGraceTimeMs, 5_000);
    assert.equal(t.maxConcurrentLocalActivityExecutions, DEFAULT_TUNING.maxConcurrentLocalActivityExecutions);
  });

  const bad: [Record<string, string>, RegExp][] = [
    [{ RUNBOOK_MAX_CONCURRENT_ACTIVITIES: 'lots' }, /RUNBOOK_MAX_CONCURRENT_ACTIVITIES: expected a whole number >= 1, found "lots"/],
    [{ RUNBOOK_MAX_CONCURRENT_ACTIVITIES: '0' }, /RUNBOOK_MAX_CONCURRENT_ACTIVITIES: expected a whole number >= 1/],
    [{ RUNBOOK_MAX_CACHED_WORKFLOWS: '-1' }, /RUNBOOK_MAX_CACHED_WORKFLOWS: expected a whole number >= 0/],
    [{ RUNBOOK_SHUTDOWN_GRACE_TIME: '30' }, /RUNBOOK_SHUTDOWN_GRACE_TIME: expected a duration/],
    [{ RUNBOOK_MAX_CONCURRENT_WORKFLOW_TASK_POLLS: '200' }, /maxConcurrentWorkflowTaskPolls \(200\) cannot exceed maxConcurrentWorkflowTaskExecutions \(100\)/],
  ];
  for (const [env, says] of bad) {
    test(`refuses ${JSON.stringify(env)}`, () => assert.throws(() => resolveTuning({}, env), says));
  }
});

describe('task queue selection', () => {
  test('explicit list, else config, else all three; unknown names refused', () => {
    assert.deepEqual(resolveQueues(undefined, { taskQueues: undefined } as never), ['critical', 'standard', 'batch']);
    assert.deepEqual(resolveQueues(['batch'], { taskQueues: ['critical'] } as never), ['batch']);
    assert.deepEqual(resolveQueues(undefined, { taskQueues: ['critical'] } as never), ['critical']);
    assert.throws(() => resolveQueues(['urgent'], {} as never), /unknown queue 'urgent'; expected some of critical, standard, batch/);
  });
});
