/**
 * Plan mode: a runbook run on a plan task queue, whose worker registers the read-only activities as
 * they are and every activity that changes something as a recording stand-in. The workflow code is the
 * real run's; what would change is recorded on the step that would change it.
 */

/** A plan task queue ends with this suffix; only plan workers poll it. */
export const PLAN_QUEUE_SUFFIX = '-plan';

/**
 * An environment's plan queue: one for all its runbooks (every worker process of the environment
 * serves it, whichever queues it serves otherwise), named after its critical queue so that two
 * environments in one namespace never share it.
 */
export const planQueueFor = (taskQueues: { critical: string }): string => planQueue(taskQueues.critical);

export const planQueue = (queue: string): string => (queue.endsWith(PLAN_QUEUE_SUFFIX) ? queue : `${queue}${PLAN_QUEUE_SUFFIX}`);
export const isPlanQueue = (queue: string): boolean => queue.endsWith(PLAN_QUEUE_SUFFIX);

/** Plan runs' workflow ids start with this, so no listing of real runs (by id prefix) finds them. */
export const PLAN_WORKFLOW_PREFIX = 'plan-';

/** One thing a real run would do at a step. */
export interface PlannedChange {
  /**
   * change: the world is changed; gate: the run waits for people; wait: the run waits for time or for
   * an earlier change to take effect; write: evidence or a report is written; notify: a message is
   * sent; child: a runbook is started as a child run; compensation: what a failure from here on undoes.
   */
  kind: 'change' | 'gate' | 'wait' | 'write' | 'notify' | 'child' | 'compensation';
  /** The activity (or the workflow feature) that would do it. */
  by: string;
  /** In words an operator acts on: which node is stopped how, which record goes from what to what. */
  what: string;
  /** Structured detail where there is one: a JSON patch, an S3 key, a command line. */
  detail?: unknown;
}

/** What a recording activity returns in place of the real result: the workflow's interceptor unwraps it. */
export interface PlanEnvelope<T = unknown> {
  runbookPlan: 1;
  result: T;
  planned: PlannedChange[];
}

export function isPlanEnvelope(v: unknown): v is PlanEnvelope {
  return typeof v === 'object' && v !== null && (v as { runbookPlan?: unknown }).runbookPlan === 1 && Array.isArray((v as { planned?: unknown }).planned);
}
