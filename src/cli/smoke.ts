import type { Command } from 'commander';
import { WorkflowFailedError } from '@temporalio/client';
import { QUEUE_KINDS, QueueKind } from '../config/schema';
import type { SmokeTestResult } from '../workflows/smokeTest';
import { timelineQuery } from '../workflows/lib/timeline';
import { ConnectedClient, failureMessage, pollerCount, startRunbook, taskQueueFor } from './client';
import { GlobalOptions, parseSeconds, parseWorkflowId, printJson, runAndReport, shown, UsageError, withClient } from './common';
import { renderTimeline } from './render';

export interface SmokeOptions {
  queue?: QueueKind;
  holdSeconds?: number;
  timeoutSeconds?: number;
}

export interface SmokeOutcome {
  ok: boolean;
  workflowId: string;
  runId: string;
  taskQueue: string;
  /** Client-observed time from start request to result. */
  endToEndMs: number;
  result?: SmokeTestResult;
  error?: string;
}

/** Runs the smoke runbook and waits for it; a missing worker or a failure is an outcome, not an exception. */
export async function runSmokeTest(c: ConnectedClient, opts: SmokeOptions): Promise<SmokeOutcome> {
  const queueName = taskQueueFor(c.env, 'smokeTest', opts.queue);
  const timeoutMs = (opts.timeoutSeconds ?? 60) * 1000;
  if ((await pollerCount(c, queueName).catch(() => 1)) === 0) {
    process.stderr.write(`runbook: warning: no worker has polled task queue ${queueName} recently; start one with 'runbook worker'\n`);
  }
  const started = Date.now();
  // The server ends the run at the timeout, so a run nobody picks up does not linger.
  const { handle, taskQueue, workflowId } = await startRunbook(c, 'smokeTest', [{ environment: c.environment, holdSeconds: opts.holdSeconds }], {
    queue: opts.queue,
    timeoutMs: timeoutMs + (opts.holdSeconds ?? 0) * 1000,
  });
  const runId = handle.firstExecutionRunId;
  try {
    const result = (await handle.result()) as SmokeTestResult;
    return { ok: true, workflowId, runId, taskQueue, endToEndMs: Date.now() - started, result };
  } catch (err) {
    let error = failureMessage(err);
    if (err instanceof WorkflowFailedError && /timed? ?out/i.test(err.message + String(err.cause))) {
      error = `no worker completed the smoke test on ${taskQueue} within ${timeoutMs / 1000}s; is 'runbook worker' running for environment ${c.environment}?`;
    }
    return { ok: false, workflowId, runId, taskQueue, endToEndMs: Date.now() - started, error };
  }
}

export function describeSmoke(o: SmokeOutcome): string {
  if (!o.ok || !o.result) return `smoke test FAILED on ${o.taskQueue} (workflow ${o.workflowId}): ${o.error}`;
  const r = o.result;
  return [
    `smoke test passed on ${o.taskQueue} (workflow ${o.workflowId})`,
    `  activity round trip ${r.roundTripMs} ms, schedule-to-start ${r.scheduleToStartMs} ms, end to end ${o.endToEndMs} ms`,
    `  answered by worker ${r.worker.host} pid ${r.worker.pid}`,
    renderTimeline(r.timeline).replace(/^/gm, '  '),
  ].join('\n');
}

export function registerSmoke(program: Command, globals: () => GlobalOptions): void {
  program
    .command('smoke')
    .description('run the smoke-test runbook: one activity through a worker on a task queue, timed')
    .option('--queue <queue>', `task queue kind: ${QUEUE_KINDS.join(', ')} (default: standard)`)
    .option('--hold <seconds>', 'keep the activity running, heartbeating, this long (0-3600)')
    .option('--timeout <seconds>', 'give up if no worker completes it within this time (default 60)')
    .action(async (opts: { queue?: string; hold?: string; timeout?: string }) => {
      const g = globals();
      if (opts.queue !== undefined && !(QUEUE_KINDS as readonly string[]).includes(opts.queue)) {
        throw new UsageError(`--queue: expected one of ${QUEUE_KINDS.join(', ')}, found ${shown(opts.queue)}`);
      }
      const holdSeconds = opts.hold !== undefined ? parseSeconds(opts.hold, '--hold', 3600) : undefined;
      const timeoutSeconds = opts.timeout !== undefined ? parseSeconds(opts.timeout, '--timeout', 86_400) : undefined;
      await runAndReport(g, (c) => runSmokeTest(c, { queue: opts.queue as QueueKind | undefined, holdSeconds, timeoutSeconds }), describeSmoke);
    });

  program
    .command('timeline <workflowId>')
    .description("show a runbook run's timeline (steps, outcomes, evidence) while it runs or after")
    .action(async (workflowId: string) => {
      const g = globals();
      parseWorkflowId(workflowId);
      await withClient(g, async (c) => {
        const timeline = await c.client.workflow.getHandle(workflowId).query(timelineQuery);
        if (g.json) printJson(timeline);
        else process.stdout.write(`${renderTimeline(timeline)}\n`);
      });
    });
}
