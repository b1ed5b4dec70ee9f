import { workflowInfo } from '@temporalio/workflow';
import { isPlanQueue, PlannedChange } from '../../plan/types';
import type { Evidence } from './timeline';

/**
 * Whether this run is a plan: it runs on a plan task queue, whose worker has no activity that changes
 * anything. Gates then record whom they would wait for instead of waiting.
 */
export function isPlanRun(): boolean {
  return isPlanQueue(workflowInfo().taskQueue);
}

const RUNNING_STEP = Symbol.for('runbook.runningStepEvidence');

type StepHolder = { [RUNNING_STEP]?: () => Evidence | undefined };

/** Set by the run's timeline: where planned changes of the step running now are recorded. */
export function setRunningStepLookup(fn: () => Evidence | undefined): void {
  (globalThis as StepHolder)[RUNNING_STEP] = fn;
}

const PENDING = Symbol.for('runbook.plannedBetweenSteps');
type PendingHolder = { [PENDING]?: PlannedChange[] };

/**
 * Records what a real run would do on the step running now; between steps (a compensation registered
 * before the fault), on the step that starts next.
 */
export function recordPlanned(changes: PlannedChange[]): void {
  if (changes.length === 0) return;
  const evidence = (globalThis as StepHolder)[RUNNING_STEP]?.();
  if (!evidence) {
    const g = globalThis as PendingHolder;
    g[PENDING] = [...(g[PENDING] ?? []), ...changes];
    return;
  }
  const list = (evidence.planned as PlannedChange[] | undefined) ?? [];
  list.push(...changes);
  evidence.planned = list;
}

/** What was recorded between steps, for the step that starts now (empty outside plan runs). */
export function takePlannedBetweenSteps(): PlannedChange[] {
  const g = globalThis as PendingHolder;
  const pending = g[PENDING] ?? [];
  g[PENDING] = [];
  return pending;
}
