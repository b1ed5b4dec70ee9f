import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { generateKey } from '../../src/identity/signer';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createVisibilityActivities } from '../../src/activities/visibility';
import { RUN_REQUIREMENTS, RunRequirement } from '../../src/checklist/catalog';
import { loadConfig, parseConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { startTemporalDevServer, stopTemporalDevServer, TemporalDevServerInfo } from '../../src/sandbox/temporal';
import type { LoadTestResult } from '../../src/workflows/loadTest';
import { RunbookWorker } from '../../src/worker';
import { runCli, waitFor } from '../helpers';

const LOAD_REQUIREMENTS = (Object.keys(RUN_REQUIREMENTS) as RunRequirement[]).filter((r) => r.startsWith('load'));

const dir = mkdtempSync(join(tmpdir(), 'runbook-loadtest-test-'));
let temporal: TemporalDevServerInfo;
let worker: RunbookWorker;
let generator: RunbookWorker;
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
      sla: { p99StartToComplete: 5s, maxErrorRate: 0, drainWithin: 30s }`;

before(async () => {
  temporal = await startTemporalDevServer({ dir });
  config = join(dir, 'runbook.yaml');
  writeFileSync(config, `version: 1\nenvironments:\n  ci:\n    temporal: { address: "${temporal.address}" }${loadTestBlock}\n`);
  worker = new RunbookWorker({ loaded: loadConfig(config), queues: ['batch'], httpPort: 0, logger: createLogger('warn') });
  generator = new RunbookWorker({ loaded: loadConfig(config), queues: [], loadGenerator: true, httpPort: 0, logger: createLogger('warn') });
  await Promise.all([worker.start(), generator.start()]);
  await Promise.all([worker.waitUntilReady(), generator.waitUntilReady()]);
});

after(async () => {
  await Promise.all([worker?.shutdown(), generator?.shutdown()]);
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
    // The drain SLA is generous here (a busy machine drains slowly); that it fails a run is tested below.
    assert.deepEqual(result.plan.sla, { p99StartToCompleteMs: 5_000, maxErrorRate: 0, drainWithinMs: 30_000 });
    assert.match(result.plan.generatorQueue!, /-load-generator$/);
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
    // The backlog of the outage drained after the workers came back, within sla.drainWithin.
    assert.ok(failure.figures.backlog! > 0);
    assert.ok(typeof failure.figures.drainMs === 'number' && failure.figures.drainMs <= 30_000, `drained in ${failure.figures.drainMs} ms`);
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
    ['{ baselineRate: 5, sla: { p99StartToComplete: 2s }, failure: { mode: command, target: matching } }', /loadTest\.failure\.inject.*needs inject: the command that injects the fault.*loadTest\.failure\.recover.*needs recover/s],
    ['{ baselineRate: 5, sla: { p99StartToComplete: 2s }, failure: { inject: [kill, "1"] } }', /loadTest\.failure\.inject.*used only with failure\.mode: command/s],
    ['{ baselineRate: 5, sla: { p99StartToComplete: 2s, drainWithin: later } }', /loadTest\.sla\.drainWithin.*expected a positive duration/s],
  ];
  for (const [block, message] of badConfigs) {
    test(`loadTest: ${block} is refused at load, naming the field`, () => {
      assert.throws(() => parseConfig(`version: 1\nenvironments:\n  ci:\n    loadTest: ${block}\n`, 'runbook.yaml'), (err: Error) => {
        assert.match(err.message, message);
        return true;
      });
    });
  }

  test('production: must be true or false', () => {
    assert.throws(() => parseConfig('version: 1\nenvironments:\n  ci:\n    production: "yes"\n', 'runbook.yaml'), /environments\.ci\.production: expected boolean, found "yes"/);
  });
});

/**
 * A real fault: the Temporal server itself (the dev server's process) stopped with SIGSTOP for the
 * outage and resumed with SIGCONT, injected by the load generator only on a signed approval.
 */
describe('the loadTest runbook with a real fault (failure.mode: command)', () => {
  const lab = join(dir, 'lab');
  let file: string;
  let client: Client;
  let connection: Connection;
  let workers: RunbookWorker[] = [];
  const injected = () => (existsSync(join(lab, 'injected')) ? readFileSync(join(lab, 'injected'), 'utf8').trim().split('\n').length : 0);

  before(async () => {
    mkdirSync(join(lab, 'keys'), { recursive: true });
    const lines: string[] = [];
    for (const who of ['alice', 'bob']) lines.push(`${who} ${(await generateKey(join(lab, 'keys', who), who)).split(' ').slice(0, 2).join(' ')}`);
    writeFileSync(join(lab, 'keys', 'allowed_signers'), `${lines.join('\n')}\n`);
    const pid = temporal.pid;
    const fault = (recover: string, drainWithin: string) => `
      scenario: noop
      baselineRate: 5
      peakMultiplier: 2
      phaseDuration: 5s
      failure:
        mode: command
        target: the Temporal server (dev server pid ${pid}) frozen
        outage: 3s
        inject: [sh, -c, "echo injected >> ${join(lab, 'injected')}; kill -STOP ${pid}"]
        recover: [sh, -c, "${recover}"]
      # The fault and its drain are the subject here; the latency SLA leaves room for a loaded CI machine (a peak phase measured 5.2 s there).
      sla: { p99StartToComplete: 10s, maxErrorRate: 0, drainWithin: ${drainWithin} }`;
    const env = (name: string, extra: string, loadTest: string) => `
  ${name}:
    temporal: { address: "${temporal.address}", taskQueues: { critical: ${name}-critical, standard: ${name}-standard, batch: ${name}-batch } }
    signing: { allowedSigners: "file:keys/allowed_signers", key: keys/alice }
    approvers: { default: [alice, bob] }
    policies: { default: { fourEyes: true } }${extra}
    loadTest:${loadTest}`;
    file = join(lab, 'runbook.yaml');
    writeFileSync(
      file,
      `version: 1\nenvironments:${env('lab', '', fault(`kill -CONT ${pid}`, '5s'))}${env('slow', '', fault(`kill -CONT ${pid}; exit 3`, '1ms'))}${env('prod', '\n    production: true', fault(`kill -CONT ${pid}`, '5s'))}\n`,
    );
    const loaded = loadConfig(file);
    for (const e of ['lab', 'slow']) {
      workers.push(new RunbookWorker({ loaded, environment: e, queues: ['batch'], httpPort: 0, logger: createLogger('warn') }));
      workers.push(new RunbookWorker({ loaded, environment: e, queues: [], loadGenerator: true, httpPort: 0, logger: createLogger('warn') }));
    }
    workers.push(new RunbookWorker({ loaded, environment: 'prod', queues: ['batch'], httpPort: 0, logger: createLogger('warn') }));
    await Promise.all(workers.map((w) => w.start()));
    await Promise.all(workers.map((w) => w.waitUntilReady()));
    connection = await Connection.connect({ address: temporal.address });
    client = new Client({ connection });
  });

  after(async () => {
    await Promise.all(workers.map((w) => w.shutdown().catch(() => undefined)));
    workers = [];
    await connection?.close();
  });

  const start = async (env: string): Promise<string> => {
    const r = await runCli(['--config', file, '--env', env, '--json', 'loadtest']);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { workflowId: string }).workflowId;
  };
  const decide = (env: string, id: string, act: 'approve' | 'reject', who: string) =>
    waitFor(`the ${act} of ${id} to be accepted`, async () => {
      const r = await runCli(['--config', file, '--env', env, 'loadtest', act, id, '--key', join(lab, 'keys', who), '--reason', 'load test of the lab']);
      if (r.code !== 0 && /not waiting at an approval gate/.test(r.stderr)) return false;
      assert.equal(r.code, 0, r.stderr);
      return r.stdout;
    }, 60_000, 500);

  test('the fault waits for a signed approval; rejected, no load runs and nothing is injected', async () => {
    const id = await start('lab');
    assert.match(await decide('lab', id, 'reject', 'bob'), /rejected by bob/);
    const err = await client.workflow.getHandle(id).result().then(() => assert.fail('the load test passed'), (e: unknown) => e);
    assert.ok(err instanceof WorkflowFailedError);
    assert.match(String((err.cause as Error).message), /the fault \(the Temporal server .*\) was rejected by bob at the approval gate: no load was run and nothing was injected/);
    assert.equal(injected(), 0, 'the inject command never ran');
  });

  test('approved: the server is frozen for 3 s in the failure phase; the backlog drains after it within sla.drainWithin; the report names the fault', async () => {
    const id = await start('lab');
    assert.match(await decide('lab', id, 'approve', 'bob'), /approved by bob/);
    const result = (await client.workflow.getHandle(id).result()) as LoadTestResult;
    const failure = result.phases.find((p) => p.phase === 'failure')!;
    assert.deepEqual(result.reasons, []);
    assert.equal(result.passed, true);
    assert.equal(result.approval?.by, 'bob');
    assert.equal(injected(), 1);
    assert.match(failure.figures.fault!.target, /the Temporal server/);
    assert.ok(failure.figures.fault!.downMs >= 3_000, `down ${failure.figures.fault!.downMs} ms`);
    assert.equal(failure.figures.fault!.recoverError, undefined);
    assert.ok(failure.figures.backlog! > 0, 'workflows waited for the server');
    assert.ok(typeof failure.figures.drainMs === 'number' && failure.figures.drainMs <= 5_000, `drained in ${failure.figures.drainMs} ms`);
    assert.ok(failure.figures.startToCompleteMs.max >= 2_000, `the frozen server held workflows back: max ${failure.figures.startToCompleteMs.max} ms`);
    assert.equal(result.plan.generatorQueue, 'lab-batch-load-generator');
  });

  test('a backlog slower to drain than sla.drainWithin, and a recover command that fails, each fail the run with the reason', async () => {
    const id = await start('slow');
    await decide('slow', id, 'approve', 'bob');
    const result = (await client.workflow.getHandle(id).result()) as LoadTestResult;
    assert.equal(result.passed, false);
    const text = result.reasons.join('\n');
    assert.match(text, /failure phase: the backlog of \d+ workflows took \d+ ms to drain after the fault ended, above sla.drainWithin of 1 ms/);
    assert.match(text, /failure phase: the recover command .* failed \(3\).*; the fault \(the Temporal server .*\) may still be in place/);
  });

  test('the load items each completed run proves, found through Temporal visibility as the audit finds them: the lab run proves all five, the slow one neither the fault, the recovery nor the SLAs', async () => {
    const proofs = async (environment: string) => {
      const inspect = createVisibilityActivities({ environment, client: async () => client });
      const found: Record<string, string | null> = {};
      for (const requires of LOAD_REQUIREMENTS) found[requires] = (await inspect.lastSuccessfulRun({ runbook: 'loadTest', requires }))?.workflowId ?? null;
      return found;
    };
    const runOf = async (environment: string) => {
      // Each environment's one completed load test (the rejected one failed), once visibility lists it.
      const id = await waitFor(`the completed load test of ${environment} in visibility`, async () => {
        const ids: string[] = [];
        for await (const w of client.workflow.list({ query: `WorkflowType = 'loadTest' AND ExecutionStatus = 'Completed' AND RunbookEnvironment = '${environment}'` })) ids.push(w.workflowId);
        assert.ok(ids.length <= 1, `${environment}: one completed load test, found ${ids.join(', ')}`);
        return ids[0];
      }, 30_000, 250);
      return { id, result: (await client.workflow.getHandle(id).result()) as LoadTestResult };
    };
    const lab = await runOf('lab');
    assert.equal(lab.result.passed, true);
    assert.deepEqual(await proofs('lab'), Object.fromEntries(LOAD_REQUIREMENTS.map((r) => [r, lab.id])));

    const slow = await runOf('slow');
    const held = (phase: string) => slow.result.phases.find((p) => p.phase === phase)!.verdict.held;
    assert.deepEqual(await proofs('slow'), {
      // Its baseline and peak are judged on their own verdicts (10 s of p99 leaves room for a busy machine).
      loadBaselineHeld: held('baseline') ? slow.id : null,
      loadPeakHeld: held('peak') ? slow.id : null,
      // The recover command failed (the fault may still be in place) and the backlog took longer than 1 ms.
      loadFaultSurvived: null,
      loadRecovered: null,
      loadPassed: null,
    });
    // An unknown requirement is refused by name, not read as "no run".
    await assert.rejects(createVisibilityActivities({ environment: 'lab', client: async () => client }).lastSuccessfulRun({ runbook: 'loadTest', requires: 'loadFast' as never }), /'loadFast' is not a run requirement; expected one of verifiedChange, loadBaselineHeld/);
  });

  test('an environment marked production refuses the fault before any load, unless allowInProduction; without a load generator the run says how to start one', async () => {
    const r = await runCli(['--config', file, '--env', 'prod', 'loadtest', '--wait'], { timeoutMs: 60_000 });
    assert.equal(r.code, 1);
    assert.match(r.stdout, /environment prod is marked production \(environments.prod.production: true\): the load test's fault injection .* is refused there; nothing was started. Allow it with loadTest.failure.allowInProduction: true/);
    assert.equal(injected(), 2, 'only the approved runs injected');
    writeFileSync(file, readFileSync(file, 'utf8').replaceAll('        outage: 3s\n', '        outage: 3s\n        allowInProduction: true\n'));
    const w = new RunbookWorker({ loaded: loadConfig(file), environment: 'prod', queues: ['batch'], httpPort: 0, logger: createLogger('error') });
    await w.start();
    await w.waitUntilReady();
    await workers.find((x) => x.environment === 'prod')!.shutdown();
    try {
      const again = await runCli(['--config', file, '--env', 'prod', 'loadtest', '--wait'], { timeoutMs: 60_000 });
      assert.equal(again.code, 1);
      assert.match(again.stdout, /no load generator polls task queue prod-batch-load-generator: start one with 'runbook worker --load-generator'/);
    } finally {
      await w.shutdown();
    }
  });
});
