import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { percentiles } from '../../src/bench/stats';
import { startTemporalDevServer, stopTemporalDevServer, TemporalDevServerInfo } from '../../src/sandbox/temporal';
import { runCli } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-bench-test-'));
let temporal: TemporalDevServerInfo;
let config: string;

before(async () => {
  temporal = await startTemporalDevServer({ dir });
  config = join(dir, 'runbook.yaml');
  writeFileSync(config, `version: 1\nenvironments:\n  ci:\n    temporal: { address: "${temporal.address}" }\n`);
});

after(async () => {
  await stopTemporalDevServer(temporal.pid);
  rmSync(dir, { recursive: true, force: true });
});

describe('runbook bench', () => {
  test('a short noop run against the dev server reports every workflow completed, its figures and no errors, on a queue of its own', async () => {
    const r = await runCli(['--config', config, '--json', 'bench', '--scenario', 'noop', '--workflow-count', '25', '--concurrent-count', '5'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.ok, true);
    assert.equal(report.scenario, 'noop');
    assert.equal(report.address, temporal.address);
    assert.match(report.taskQueue, /^runbook-bench-[0-9a-f]{8}$/);
    assert.deepEqual(report.requested, { workflowCount: 25, concurrentCount: 5 });
    assert.equal(report.started, 25);
    assert.equal(report.completed, 25);
    assert.equal(report.failed, 0);
    assert.equal(report.unfinished, 0);
    assert.deepEqual(report.errors, { count: 0, messages: [] });
    assert.equal(report.latencyMs.startToComplete.count, 25);
    for (const key of ['p50', 'p90', 'p95', 'p99', 'max', 'mean']) assert.equal(typeof report.latencyMs.startToComplete[key], 'number', key);
    assert.ok(report.latencyMs.startToComplete.p50 <= report.latencyMs.startToComplete.p99);
    assert.equal(report.latencyMs.activityScheduleToStart.count, 0, 'noop runs no activity');
    assert.ok(report.latencyMs.workflowTaskScheduleToStart.count >= 20, 'one workflow task per sampled history');
    assert.ok(report.throughput.workflowsPerSecond > 0);
    assert.equal(report.throughput.activitiesPerSecond, 0);
    assert.ok(report.worker.rssPeakBytes >= report.worker.rssStartBytes);
    assert.ok(report.worker.cpuSeconds > 0);
    assert.equal(report.machine.cores > 0, true);
    assert.match(r.stderr, /bench noop: 25\/25 completed/, 'the progress line on stderr');
  });

  test('activity-chain counts five activities per workflow and their schedule-to-start latencies', async () => {
    const r = await runCli(['--config', config, '--json', 'bench', '--scenario', 'activity-chain', '--workflow-count', '6', '--concurrent-count', '3'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.completed, 6);
    assert.equal(report.activities, 30);
    assert.equal(report.latencyMs.activityScheduleToStart.count, 30);
  });

  const bad: [string[], RegExp][] = [
    [['--scenario', 'checkout'], /--scenario: expected one of noop, activity-chain, order-processing, found "checkout"/],
    [['--workflow-count', '0'], /--workflow-count: expected a whole number from 1/],
    [['--concurrent-count', 'many'], /--concurrent-count: expected a whole number/],
    [['--duration', 'forever'], /--duration: expected seconds or a duration/],
  ];
  for (const [args, message] of bad) {
    test(`bench ${args.join(' ')} is refused with exit 2 before anything starts`, async () => {
      const r = await runCli(['--config', config, 'bench', ...args], { timeoutMs: 30_000 });
      assert.equal(r.code, 2);
      assert.match(r.stderr, message);
    });
  }

  test('percentiles are nearest-rank over the sample', () => {
    const p = percentiles(Array.from({ length: 100 }, (_, i) => i + 1));
    assert.deepEqual({ p50: p.p50, p90: p.p90, p99: p.p99, max: p.max, count: p.count }, { p50: 50, p90: 90, p99: 99, max: 100, count: 100 });
    assert.equal(percentiles([]).count, 0);
  });
});
