import type { Client } from '@temporalio/client';
import { failure } from './errors';

const RUNBOOK = /^[a-zA-Z]{1,64}$/;
const ENVIRONMENT = /^[a-z][a-z0-9-]{0,30}$/;
/** A database key or a Deployment name. */
const TARGET = /^[a-z0-9_][a-z0-9_-]{0,62}$/;

/**
 * What this project's own runbooks have proved, found through Temporal visibility: the checklist's
 * "tested" items are runs of these workflows that completed.
 */
export function createVisibilityActivities(deps: { environment: string; client: () => Promise<Client>; deployments?: string[] }) {
  /**
   * The newest completed rollback that changed a Deployment (one of kubernetes.deployments when that
   * list is set) and whose analysis verified the result: a no-op or an unverified rollback proves nothing.
   */
  async function newestVerifiedChange(client: Client, query: string): Promise<{ workflowId: string; closedAt: string; deployment: string } | null> {
    const runs: { workflowId: string; runId: string; closedAt: string }[] = [];
    for await (const w of client.workflow.list({ query })) {
      const closedAt = w.closeTime?.toISOString();
      if (closedAt) runs.push({ workflowId: w.workflowId, runId: w.runId, closedAt });
      if (runs.length >= 100) break;
    }
    runs.sort((a, b) => (a.closedAt < b.closedAt ? 1 : -1));
    for (const r of runs.slice(0, 25)) {
      const result = (await client.workflow.getHandle(r.workflowId, r.runId).result().catch(() => undefined)) as { deployment?: string; changed?: boolean; verified?: boolean | null } | undefined;
      if (!result || result.changed !== true || result.verified !== true || typeof result.deployment !== 'string') continue;
      if (deps.deployments?.length && !deps.deployments.includes(result.deployment)) continue;
      return { workflowId: r.workflowId, closedAt: r.closedAt, deployment: result.deployment };
    }
    return null;
  }

  return {
    /** The newest completed run of a runbook in this environment (with target: of that database or Deployment only), or null. */
    async lastSuccessfulRun(input: { runbook: string; target?: string; verifiedChange?: boolean }): Promise<{ workflowId: string; closedAt: string; target?: string; deployment?: string } | null> {
      if (!RUNBOOK.test(input.runbook) || !ENVIRONMENT.test(deps.environment)) throw failure('InvalidInput', `'${input.runbook}' is not a runbook name`);
      if (input.target !== undefined && !TARGET.test(input.target)) throw failure('InvalidInput', `'${input.target}' is not a database key or Deployment name`);
      const client = await deps.client();
      // Names are checked above: nothing from outside is spliced into the query unchecked.
      const query = `WorkflowType = '${input.runbook}' AND ExecutionStatus = 'Completed' AND RunbookEnvironment = '${deps.environment}'${input.target !== undefined ? ` AND RunbookTarget = '${input.target}'` : ''}`;
      if (input.verifiedChange) return newestVerifiedChange(client, query);
      let newest: { workflowId: string; closedAt: string } | null = null;
      let seen = 0;
      for await (const w of client.workflow.list({ query })) {
        const closedAt = w.closeTime?.toISOString();
        if (closedAt && (!newest || closedAt > newest.closedAt)) newest = { workflowId: w.workflowId, closedAt, ...(input.target !== undefined ? { target: input.target } : {}) };
        if (++seen >= 100) break;
      }
      return newest;
    },
  };
}
