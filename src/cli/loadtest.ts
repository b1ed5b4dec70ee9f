import type { Command } from 'commander';
import type { LoadTestResult } from '../workflows/loadTest';
import { ConnectedClient, failureMessage, pollerCount, startRunbook, taskQueueFor } from './client';
import { GlobalOptions, printJson, withClient } from './common';
import { waitWithProgress } from './progress';

export interface LoadTestOutcome {
  ok: boolean;
  workflowId: string;
  taskQueue: string;
  result?: LoadTestResult;
  error?: string;
}

/** Starts the loadTest runbook; with wait, follows it and returns its report. */
export async function runLoadTest(c: ConnectedClient, opts: { wait: boolean; showProgress: boolean }): Promise<LoadTestOutcome> {
  const queue = taskQueueFor(c.env, 'loadTest');
  if ((await pollerCount(c, queue).catch(() => 1)) === 0) {
    process.stderr.write(`runbook: warning: no worker has polled task queue ${queue} recently; start one with 'runbook worker'\n`);
  }
  const { handle, taskQueue, workflowId } = await startRunbook(c, 'loadTest', [{ environment: c.environment }], {});
  if (!opts.wait) return { ok: true, workflowId, taskQueue };
  try {
    const result = await waitWithProgress<LoadTestResult>(handle, opts.showProgress);
    return { ok: result.passed, workflowId, taskQueue, result };
  } catch (err) {
    return { ok: false, workflowId, taskQueue, error: failureMessage(err) };
  }
}

const held = (b: boolean) => (b ? 'held' : 'VIOLATED');

export function describeLoadTest(o: LoadTestOutcome): string {
  if (o.error) return `load test FAILED (workflow ${o.workflowId}): ${o.error}`;
  if (!o.result) return `load test started on ${o.taskQueue}: workflow ${o.workflowId}\n  follow it with: runbook timeline ${o.workflowId}`;
  const r = o.result;
  const lines = [
    `load test ${r.passed ? 'PASSED' : 'FAILED'} (workflow ${o.workflowId}; bench queue ${r.taskQueue}; scenario ${r.plan.scenario}; SLA p99 start-to-complete <= ${r.plan.sla.p99StartToCompleteMs} ms, error rate <= ${r.plan.sla.maxErrorRate})`,
  ];
  for (const p of r.phases) {
    const f = p.figures;
    const v = p.verdict;
    const extra = f.workersDownMs ? `, workers stopped ${f.workersDownMs / 1000} s` : f.dependencyDelayMs ? `, dependency +${f.dependencyDelayMs} ms` : '';
    lines.push(
      `  ${p.phase.padEnd(9)} ${f.targetRate}/s target, ${f.achievedRate}/s started${extra}: ${f.completed}/${f.started} completed, p50 ${f.startToCompleteMs.p50} ms, p99 ${f.startToCompleteMs.p99} ms (${held(v.latency.held)}), errors ${v.errors.rate} (${held(v.errors.held)})${v.nothingLost ? '' : ', workflows LOST'}`,
    );
  }
  for (const reason of r.reasons) lines.push(`  - ${reason}`);
  return lines.join('\n');
}

export function registerLoadTest(program: Command, globals: () => GlobalOptions): void {
  program
    .command('loadtest')
    .description('start the loadTest runbook: baseline, peak, failure and recovery phases against the SLAs of the environment\'s loadTest: config')
    .option('--wait', 'follow the run and print the report; exit 0 only when the SLAs held')
    .action(async (opts: { wait?: boolean }) => {
      const g = globals();
      await withClient(g, async (c) => {
        const outcome = await runLoadTest(c, { wait: Boolean(opts.wait), showProgress: !g.json });
        if (g.json) printJson(outcome);
        else process.stdout.write(`${describeLoadTest(outcome)}\n`);
        process.exitCode = outcome.ok ? 0 : 1;
      });
    });
}
