import type { Command } from 'commander';
import type { LoadTestResult } from '../workflows/loadTest';
import { ConnectedClient, failureMessage, pollerCount, startRunbook, taskQueueFor } from './client';
import { GlobalOptions, parseWorkflowId, printJson, UsageError, withClient } from './common';
import { decideGate, resolveSigner } from './sign';
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
  const f = c.env.loadTest?.failure;
  if (opts.showProgress && f?.mode === 'command') process.stderr.write(`load test ${workflowId} injects a real fault (${f.target}) only on a signed approval: runbook loadtest approve ${workflowId} --key YOUR_KEY\n`);
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
    const extra =
      (f.fault ? `, fault "${f.fault.target}" for ${(f.fault.downMs / 1000).toFixed(1)} s${f.fault.recoverError ? ' (NOT RECOVERED)' : ''}` : f.workersDownMs ? `, workers stopped ${f.workersDownMs / 1000} s` : f.dependencyDelayMs ? `, dependency +${f.dependencyDelayMs} ms` : '') +
      (f.drainMs === undefined ? '' : f.drainMs === null ? `, backlog of ${f.backlog} NEVER DRAINED` : `, backlog of ${f.backlog} drained ${(f.drainMs / 1000).toFixed(1)} s after`);
    lines.push(
      `  ${p.phase.padEnd(9)} ${f.targetRate}/s target, ${f.achievedRate}/s started${extra}: ${f.completed}/${f.started} completed, p50 ${f.startToCompleteMs.p50} ms, p99 ${f.startToCompleteMs.p99} ms (${held(v.latency.held)}), errors ${v.errors.rate} (${held(v.errors.held)})${v.nothingLost ? '' : ', workflows LOST'}`,
    );
  }
  for (const reason of r.reasons) lines.push(`  - ${reason}`);
  return lines.join('\n');
}

export function registerLoadTest(program: Command, globals: () => GlobalOptions): void {
  const loadtest = program
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

  for (const decision of ['approve', 'reject'] as const) {
    loadtest
      .command(`${decision} <workflowId>`)
      .description(`${decision} the fault a load test waits to inject (failure.mode: command), with your signed decision`)
      .option('--key <file>', 'your SSH key (default: $RUNBOOK_SIGNING_KEY, then signing.key in the config)')
      .option('--by <principal>', "the principal your key is listed for (default: the allowed signers' entry for the key)")
      .option('--reason <text>', 'why, for the record (signed)')
      .action(async (id: string, opts: { key?: string; by?: string; reason?: string }) => {
        const workflowId = parseWorkflowId(id);
        if (opts.reason !== undefined && opts.reason.length > 1000) throw new UsageError(`--reason: expected text of at most 1000 characters, found ${opts.reason.length} characters`);
        const g = globals();
        await withClient(g, async (c) => {
          const gate = await decideGate(c, c.client.workflow.getHandle(workflowId), 'loadTest', decision, resolveSigner(c, opts), opts.reason);
          if (g.json) printJson({ ok: true, gate });
          else process.stdout.write(`gate '${gate.name}' ${gate.outcome}${gate.by ? ` by ${gate.by} (key ${gate.fingerprint})` : ''}${gate.outcome === 'waiting' ? `: ${gate.approvals.length} of ${gate.required} approvals` : ''}\n`);
        });
      });
  }
}
