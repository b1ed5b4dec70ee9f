import type { Client } from '@temporalio/client';
import type { LoadedConfig } from '../config/load';
import { checkServedEnvironment } from './errors';

/** What a runbook does when another mutating run holds its target: refuse at once, or wait up to waitUpToMs. */
export interface TargetBusyPolicy {
  onBusy: 'refuse' | 'wait';
  waitUpToMs: number;
  /** The change freezes that name this runbook (judged against the workflow's clock by the caller). */
  freezes: { name: string; fromMs: number; toMs: number; action: 'refuse' | 'gate' }[];
}

/** The run holding a target: the parent of the target's guard workflow. */
export interface TargetHolder {
  workflowId: string;
  runId: string;
  runbook: string;
  since: string;
  /** The holder is the asking run's parent, grandparent or further up: the asker acts under its hold. */
  ancestor?: boolean;
}

/**
 * One mutating run per target: the policy that says what a second run does, and who holds a target
 * now (read from Temporal: a held target is a running guard workflow whose parent is the holder).
 */
export function createTargetActivities(deps: { loaded: LoadedConfig; environment: string; client: () => Promise<Client> }) {
  return {
    async describeTargetPolicy(input: { environment: string; runbook: string }): Promise<TargetBusyPolicy> {
      checkServedEnvironment(input.environment, deps.environment);
      const policies = deps.loaded.config.environments[deps.environment].policies;
      const own = policies[input.runbook] ?? {};
      const base = policies.default ?? {};
      const freezes = deps.loaded.config.environments[deps.environment].freezes
        .filter((f) => (f.runbooks as string[]).includes(input.runbook))
        .map((f) => ({ name: f.name, fromMs: Date.parse(f.from), toMs: Date.parse(f.to), action: f.action }));
      return { onBusy: own.onBusyTarget ?? base.onBusyTarget ?? 'wait', waitUpToMs: own.busyTargetWait ?? base.busyTargetWait ?? 15 * 60_000, freezes };
    },

    async describeTargetHolder(input: { guardWorkflowId: string; requester?: { workflowId: string; runId: string } }): Promise<TargetHolder | null> {
      const client = await deps.client();
      try {
        const guard = await client.workflow.getHandle(input.guardWorkflowId).describe();
        if (guard.status.name !== 'RUNNING') return null;
        const parentId = guard.parentExecution?.workflowId;
        // A guard started by hand (an operator holding a target during maintenance) is its own holder.
        if (!parentId) return { workflowId: guard.workflowId, runId: guard.runId, runbook: 'targetGuard (started by hand)', since: guard.startTime.toISOString() };
        const parent = await client.workflow.getHandle(parentId, guard.parentExecution?.runId ?? undefined).describe();
        // A release holds its Deployment; its rollout and that rollout's rollback act under the hold: walk up from the asker.
        let ancestor = false;
        let at = input.requester && (await client.workflow.getHandle(input.requester.workflowId, input.requester.runId).describe());
        for (let depth = 0; at?.parentExecution && depth < 8 && !ancestor; depth++) {
          const up = at.parentExecution;
          ancestor = up.workflowId === parent.workflowId && up.runId === parent.runId;
          at = ancestor ? undefined : await client.workflow.getHandle(String(up.workflowId), up.runId ?? undefined).describe();
        }
        return { workflowId: parent.workflowId, runId: parent.runId, runbook: parent.type, since: guard.startTime.toISOString(), ancestor };
      } catch (err) {
        if ((err as Error).name === 'WorkflowNotFoundError') return null;
        throw err;
      }
    },
  };
}

export type TargetActivities = ReturnType<typeof createTargetActivities>;
