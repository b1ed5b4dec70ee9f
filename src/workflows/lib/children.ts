import { workflowInfo } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

const RUNBOOK_NAME = defineSearchAttributeKey('RunbookName', SearchAttributeType.KEYWORD);
const RUNBOOK_ENVIRONMENT = defineSearchAttributeKey('RunbookEnvironment', SearchAttributeType.KEYWORD);

/** A child run as reports link it. */
export interface ChildRun {
  workflowId: string;
  runId: string;
}

export const linked = (h: { workflowId: string; firstExecutionRunId: string }): ChildRun => ({ workflowId: h.workflowId, runId: h.firstExecutionRunId });

/**
 * A child's search attributes: the parent's (environment, target), named for the child's runbook, so
 * visibility finds it as a run of that runbook; in another environment (a promotion's stages), named
 * for that environment too. Empty where the namespace does not define them.
 */
export function childSearchAttributes(runbook: string, environment?: string) {
  const mine = workflowInfo().typedSearchAttributes;
  if (mine.get(RUNBOOK_NAME) === undefined) return mine;
  return mine.updateCopy([{ key: RUNBOOK_NAME, value: runbook }, ...(environment !== undefined && mine.get(RUNBOOK_ENVIRONMENT) !== undefined ? [{ key: RUNBOOK_ENVIRONMENT, value: environment }] : [])]);
}

/** The innermost message of an error chain (a child's failure, an activity's cause). */
export function causeText(err: unknown): string {
  let e: unknown = err;
  const parts: string[] = [];
  while (e instanceof Error) {
    if (!parts.includes(e.message)) parts.push(e.message);
    e = (e as Error & { cause?: unknown }).cause;
  }
  return parts.length ? parts[parts.length - 1] : String(err);
}
