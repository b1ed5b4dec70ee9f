import { ApplicationFailure, WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { ParentClosePolicy, patched, proxyActivities, sleep, startChild, workflowInfo } from '@temporalio/workflow';
import type { TargetActivities } from '../../activities/targets';
import { isPlanRun, recordPlanned } from './plan';
import type { targetGuard } from '../targetGuard';

const targets = proxyActivities<TargetActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumAttempts: 5, nonRetryableErrorTypes: ['InvalidInput'] },
});

/** Marker of the change that made mutating runbooks take their target (older histories replay without it). */
export const TARGET_GUARD_PATCH = 'one-mutating-run-per-target';

/** The guard workflow id of a target: one running workflow per id, so one holder per target. */
export const guardWorkflowId = (environment: string, kind: 'database' | 'deployment', target: string) => `target-${environment}-${kind}-${target}`;

/**
 * Takes a target (a database, a Deployment) for this run, so two mutating runbooks never act on it at
 * once: a drill and a backup of one database; a rollout, a rollback and a go-live of one Deployment.
 * The target is held by a child guard workflow whose id names the target; it is given back when this
 * run closes, however it closes. When another run holds it, the environment's policy decides: refuse at
 * once, or wait (checking every 10 s) up to a limit, then refuse. A descendant of the holder (a go-live's
 * rollout and rollback, a release's rollout and the rollback that rollout starts) acts under its hold. Refusals are non-retryable TargetBusy failures
 * that name the holder.
 */
export async function acquireTarget(opts: {
  environment: string;
  runbook: string;
  kind: 'database' | 'deployment';
  target: string;
  /** Runbooks without gates (backupDatabase, rollback) check change freezes here: one they are named in refuses them. */
  checkFreezes?: boolean;
}): Promise<{ held: 'own' | 'parent' } | undefined> {
  // Children and grandchildren of the holder (a release's rollout, that rollout's rollback) act under its hold.
  if (!patched(TARGET_GUARD_PATCH)) return undefined;
  const workflowId = guardWorkflowId(opts.environment, opts.kind, opts.target);
  const policy = await targets.describeTargetPolicy({ environment: opts.environment, runbook: opts.runbook });
  const now = Date.now();
  const freeze = opts.checkFreezes ? (policy.freezes ?? []).find((f) => now >= f.fromMs && now < f.toMs) : undefined;
  if (freeze) {
    // A runbook without gates cannot wait for a signed approval: inside a freeze that names it, it is refused.
    throw ApplicationFailure.create({
      type: 'StartRefused',
      nonRetryable: true,
      message: `the ${opts.runbook} of ${opts.kind} ${opts.target} is refused before anything changed: change freeze '${freeze.name}' (until ${new Date(freeze.toMs).toISOString()}) names ${opts.runbook}`,
    });
  }
  const deadline = Date.now() + (policy.onBusy === 'wait' ? policy.waitUpToMs : 0);
  const me = workflowInfo();
  if (isPlanRun()) {
    // A plan takes nothing: it says what the real run would take, and who holds it now.
    const holder = await targets.describeTargetHolder({ guardWorkflowId: workflowId, requester: { workflowId: me.workflowId, runId: me.runId } });
    const busy = holder && !(holder.workflowId === me.parent?.workflowId || holder.ancestor);
    recordPlanned([
      {
        kind: 'change',
        by: 'targetGuard',
        what: `takes ${opts.kind} ${opts.target} for this run (guard workflow ${workflowId}), so no other mutating runbook acts on it meanwhile${busy ? `; it is held now by ${holder.runbook} ${holder.workflowId} since ${holder.since}, so the real run would ${policy.onBusy === 'wait' ? `wait up to ${Math.round(policy.waitUpToMs / 1000)} s, then be refused` : 'be refused at once'}` : ''}`,
        detail: { guardWorkflowId: workflowId, heldBy: busy ? holder.workflowId : null },
      },
    ]);
    return { held: 'own' };
  }
  for (;;) {
    try {
      await startChild<typeof targetGuard>('targetGuard', {
        workflowId,
        args: [{ environment: opts.environment, kind: opts.kind, target: opts.target }],
        parentClosePolicy: ParentClosePolicy.TERMINATE,
      });
      return { held: 'own' };
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    }
    const holder = await targets.describeTargetHolder({ guardWorkflowId: workflowId, requester: { workflowId: me.workflowId, runId: me.runId } });
    if (holder && (holder.workflowId === me.parent?.workflowId || holder.workflowId === me.workflowId || holder.ancestor)) return { held: 'parent' };
    if (holder === null) {
      // The guard ended between the two calls: try again at once (after a breath, should it linger).
      await sleep(1_000);
      continue;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      throw ApplicationFailure.create({
        type: 'TargetBusy',
        nonRetryable: true,
        message:
          `${opts.kind} ${opts.target} is busy: ${holder.runbook} ${holder.workflowId} has acted on it since ${holder.since}; ` +
          `this ${opts.runbook} run changed nothing (${policy.onBusy === 'wait' ? `it waited ${Math.round(policy.waitUpToMs / 1000)} s` : 'the policy refuses at once'}; policies.${opts.runbook}.onBusyTarget and busyTargetWait say which)`,
      });
    }
    await sleep(Math.min(10_000, remaining));
  }
}
