import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig, parseConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { startTemporalDevServer, stopTemporalDevServer, TemporalDevServerInfo } from '../../src/sandbox/temporal';
import type { LoadTestResult } from '../../src/workflows/loadTest';
import { RunbookWorker } from '../../src/worker';
import { runCli } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-loadtest-test-'));
let temporal: TemporalDevServerInfo;
let worker: RunbookWorker;
let config: string;

// Phases of a few seconds: noop workflows at 5/s, a peak at 10/s, the bench worker stopped for 7 s of
// the 8 s failure phase, so the failure phase's p99 is about 7 s against a 5 s SLA by construction, while
// the other phases stay far below 5 s even on a busy two-core machine.
const loadTestBlock = `
    loadTest:
      scenario: noop
      baselineRate: 5
      peakMultiplier: 2
      phaseDuration: 8s
      failure: { mode: workers-stopped, outage: 7s }
      sla: { p99StartToComplete: 5s, maxErrorRate: 0 }`;

before(async () => {
  temporal = await startTemporalDevServer({ dir });
  config = join(dir, 'runbook.yaml');
  writeFileSync(config, `version: 1\nenvironments:\n  ci:\n    temporal: { address: "${temporal.address}" }${loadTestBlock}\n`);
  worker = new RunbookWorker({ loaded: loadConfig(config), queues: ['batch'], httpPort: 0, logger: createLogger('warn') });
  await worker.start();
  await worker.waitUntilReady();
});

after(async () => {
  await worker?.shutdown();
  await stopTemporalDevServer(temporal.pid);
  rmSync(dir, { recursive: true, force: true });
});

describe('the loadTest runbook', () => {
  test('baseline and peak hold the SLA, stopped workers violate it without losing a workflow, recovery restores it', async () => {
    const r = await runCli(['--config', config, '--json', 'loadtest', '--wait'], { timeoutMs: 120_000 });
    const outcome = JSON.parse(r.stdout) as { ok: boolean; result: LoadTestResult };
    const result = outcome.result;
    assert.equal(r.code, 0, `${r.stderr}\n${JSON.stringify(result?.phases.map((p) => [p.phase, p.figures.startToCompleteMs, p.verdict]))}`);
    assert.equal(outcome.ok, true);
    assert.equal(result.passed, true);
    assert.deepEqual(result.reasons, []);
    assert.match(result.taskQueue, /^runbook-loadtest-[0-9a-f]{8}$/);
    assert.deepEqual(result.plan.sla, { p99StartToCompleteMs: 5_000, maxErrorRate: 0 });
    assert.deepEqual(result.phases.map((p) => p.phase), ['baseline', 'peak', 'failure', 'recovery']);
    const [baseline, peak, failure, recovery] = result.phases;
    assert.deepEqual([baseline, peak, failure, recovery].map((p) => p.figures.targetRate), [5, 10, 5, 5]);
    for (const p of result.phases) {
      // Paced starts over 8 s: about rate x 8 workflows, each completed, none failed or lost.
      const expected = p.figures.targetRate * 8;
      assert.ok(p.figures.started >= expected - 2 && p.figures.started <= expected + 1, `${p.phase}: ${p.figures.started} started, expected about ${expected}`);
      assert.equal(p.figures.completed, p.figures.started, p.phase);
      assert.equal(p.figures.failed, 0, p.phase);
      assert.equal(p.verdict.nothingLost, true, p.phase);
      assert.equal(p.verdict.errors.held, true, p.phase);
      assert.equal(p.verdict.latency.slaMs, 5_000);
      assert.equal(p.verdict.latency.p99Ms, p.figures.startToCompleteMs.p99);
    }
    for (const p of [baseline, peak, recovery]) assert.equal(p.verdict.held, true, `${p.phase}: p99 ${p.verdict.latency.p99Ms} ms`);
    assert.equal(failure.figures.workersDownMs, 7_000);
    assert.equal(failure.verdict.latency.held, false);
    assert.equal(failure.verdict.held, false);
    assert.ok(failure.figures.startToCompleteMs.max >= 5_500, `the first workflow of the outage waited for the workers: ${failure.figures.startToCompleteMs.max} ms`);
    assert.ok(recovery.figures.startToCompleteMs.p99 < failure.figures.startToCompleteMs.p99);
    assert.deepEqual(result.timeline.steps.map((s) => [s.name, s.outcome]), [
      ['read plan and SLAs', 'succeeded'],
      ['baseline phase', 'succeeded'],
      ['peak phase', 'succeeded'],
      ['failure phase', 'succeeded'],
      ['recovery phase', 'succeeded'],
    ]);
    assert.equal(result.timeline.steps[3].evidence.slaHeld, false);
  });

  test('without a loadTest: section the run fails at its first step naming what to add', async () => {
    const bare = join(dir, 'bare.yaml');
    writeFileSync(bare, `version: 1\nenvironments:\n  ci:\n    temporal: { address: "${temporal.address}", taskQueues: { batch: bare-batch } }\n`);
    const w = new RunbookWorker({ loaded: loadConfig(bare), queues: ['batch'], httpPort: 0, logger: createLogger('error') });
    await w.start();
    await w.waitUntilReady();
    try {
      const r = await runCli(['--config', bare, 'loadtest', '--wait'], { timeoutMs: 60_000 });
      assert.equal(r.code, 1);
      assert.match(r.stdout, /load test FAILED .*environment ci has no loadTest: section; add one with baselineRate and sla.p99StartToComplete/);
    } finally {
      await w.shutdown();
    }
  });

  const badConfigs: [string, RegExp][] = [
    ['{ baselineRate: 0, sla: { p99StartToComplete: 2s } }', /loadTest\.baselineRate.*expected workflows per second above 0/s],
    ['{ baselineRate: 5, peakMultiplier: 1, sla: { p99StartToComplete: 2s } }', /loadTest\.peakMultiplier.*2-3x the baseline/s],
    ['{ baselineRate: 5, phaseDuration: 10s, failure: { outage: 10s }, sla: { p99StartToComplete: 2s } }', /loadTest\.failure\.outage.*must be shorter than phaseDuration/s],
    ['{ baselineRate: 5, sla: { p99StartToComplete: soon } }', /loadTest\.sla\.p99StartToComplete.*expected a positive duration/s],
    ['{ baselineRate: 5, sla: { p99StartToComplete: 2s, maxErrorRate: 5 } }', /loadTest\.sla\.maxErrorRate.*fraction from 0 to 1/s],
    ['{ baselineRate: 5 }', /loadTest\.sla/],
    ['{ baselineRate: 5, sla: { p99StartToComplete: 2s }, failure: { mode: crash } }', /loadTest\.failure\.mode.*workers-stopped/s],
  ];
  for (const [block, message] of badConfigs) {
    test(`loadTest: ${block} is refused at load, naming the field`, () => {
      assert.throws(() => parseConfig(`version: 1\nenvironments:\n  ci:\n    loadTest: ${block}\n`, 'runbook.yaml'), (err: Error) => {
        assert.match(err.message, message);
        return true;
      });
    });
  }
});
