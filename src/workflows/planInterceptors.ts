/**
 * Workflow interceptors that make a run on a plan task queue a plan (see src/plan/types.ts). In any
 * other run they pass every call through unchanged.
 *
 * In a plan run: activities, local activities and children go to the plan queue (a real worker's
 * queue named by the workflow — a scratch host's, another stage's — would run real activities); the
 * recording activities' answers are unwrapped and what they would change is recorded on the running
 * step; timers are recorded and last a millisecond; children carry no search attributes, so no
 * listing of real runs finds them.
 */
import type { WorkflowInterceptors } from '@temporalio/workflow';
import { workflowInfo } from '@temporalio/workflow';
import { isPlanEnvelope, isPlanQueue } from '../plan/types';
import { recordPlanned } from './lib/plan';

function unwrap(v: unknown): unknown {
  if (!isPlanEnvelope(v)) return v;
  recordPlanned(v.planned);
  return v.result;
}

function seconds(ms: number): string {
  return ms >= 3_600_000 && ms % 3_600_000 === 0 ? `${ms / 3_600_000} h` : ms >= 60_000 && ms % 60_000 === 0 ? `${ms / 60_000} min` : `${Math.round(ms / 100) / 10} s`;
}

export const interceptors = (): WorkflowInterceptors => {
  const queue = workflowInfo().taskQueue;
  if (!isPlanQueue(queue)) return {};
  return {
    outbound: [
      {
        async scheduleActivity(input, next) {
          const options = input.options.taskQueue && input.options.taskQueue !== queue ? { ...input.options, taskQueue: queue } : input.options;
          return unwrap(await next({ ...input, options }));
        },
        async scheduleLocalActivity(input, next) {
          return unwrap(await next(input));
        },
        async startTimer(input, next) {
          if (input.durationMs >= 1000) recordPlanned([{ kind: 'wait', by: 'timer', what: `waits ${seconds(input.durationMs)}` }]);
          return next({ ...input, durationMs: 1 });
        },
        async startChildWorkflowExecution(input, next) {
          recordPlanned([{ kind: 'child', by: input.workflowType, what: `starts the ${input.workflowType} runbook as a child run (planned below it)`, detail: { workflowId: input.options.workflowId } }]);
          return next({ ...input, options: { ...input.options, taskQueue: queue, searchAttributes: undefined, typedSearchAttributes: undefined } });
        },
      },
    ],
  };
};
