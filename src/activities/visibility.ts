import type { Client } from '@temporalio/client';
import type { RunRequirement } from '../checklist/catalog';
import { failure } from './errors';

const RUNBOOK = /^[a-zA-Z]{1,64}$/;
const ENVIRONMENT = /^[a-z][a-z0-9-]{0,30}$/;
/** A database key or a Deployment name. */
const TARGET = /^[a-z0-9_][a-z0-9_-]{0,62}$/;

type RunResult = Record<string, unknown>;
interface PhaseResult {
  phase?: string;
  figures?: { targetRate?: number; failed?: number; fault?: { recoverError?: string }; drainMs?: number | null };
  verdict?: { held?: boolean; nothingLost?: boolean };
}

const phaseOf = (r: RunResult, name: string): PhaseResult | undefined =>
  Array.isArray(r.phases) ? (r.phases as PhaseResult[]).find((p) => p?.phase === name) : undefined;

/**
 * What a run's result must show to prove an item (RUN_REQUIREMENTS in src/checklist/catalog.ts), and
 * what of it the audit keeps as evidence. A result without the fields asked for proves nothing.
 */
export const REQUIREMENT_TESTS: Record<RunRequirement, (r: RunResult, deployments?: string[]) => Record<string, unknown> | undefined> = {
  verifiedChange: (r, deployments) => {
    if (r.changed !== true || r.verified !== true || typeof r.deployment !== 'string') return undefined;
    if (deployments?.length && !deployments.includes(r.deployment)) return undefined;
    return { deployment: r.deployment };
  },
  loadBaselineHeld: (r) => {
    const baseline = phaseOf(r, 'baseline');
    return baseline?.verdict?.held === true ? { baselineRate: baseline.figures?.targetRate } : undefined;
  },
  loadPeakHeld: (r) => {
    const base = phaseOf(r, 'baseline')?.figures?.targetRate;
    const peak = phaseOf(r, 'peak');
    const rate = peak?.figures?.targetRate;
    if (peak?.verdict?.held !== true || typeof base !== 'number' || typeof rate !== 'number' || base <= 0 || rate < 2 * base) return undefined;
    return { peakRate: rate, baselineRate: base, peakOverBaseline: Number((rate / base).toFixed(2)) };
  },
  loadFaultSurvived: (r) => {
    const f = phaseOf(r, 'failure');
    if (!f?.figures || f.verdict?.nothingLost !== true || f.figures.failed !== 0 || f.figures.fault?.recoverError !== undefined) return undefined;
    return { failurePhase: 'nothing lost or failed', ...(f.figures.fault ? { faultEnded: true } : {}) };
  },
  loadRecovered: (r) => {
    const drainMs = phaseOf(r, 'failure')?.figures?.drainMs;
    const within = (r.plan as { sla?: { drainWithinMs?: number } } | undefined)?.sla?.drainWithinMs;
    if (typeof drainMs !== 'number' || (within !== undefined && drainMs > within) || phaseOf(r, 'recovery')?.verdict?.held !== true) return undefined;
    return { drainMs, ...(within !== undefined ? { drainWithinMs: within } : {}), recoveryPhase: 'held its SLAs' };
  },
  loadPassed: (r) => (r.passed === true ? { passed: true } : undefined),
};

/** A run that proves an item: which, when it closed, and (for a requirement) what its result showed. */
export type ProvingRun = { workflowId: string; closedAt: string; target?: string; proved?: Record<string, unknown> };

/**
 * What this project's own runbooks have proved, found through Temporal visibility: the checklist's
 * "tested" items are runs of these workflows that completed (and, where an item asks, whose result
 * shows what it asks).
 */
export function createVisibilityActivities(deps: { environment: string; client: () => Promise<Client>; deployments?: string[] }) {
  /** The newest of the latest completed runs (by close time, 25 at most read) whose result meets the requirement. */
  async function newestMeeting(client: Client, query: string, requires: RunRequirement): Promise<ProvingRun | null> {
    const runs: { workflowId: string; runId: string; closedAt: string }[] = [];
    for await (const w of client.workflow.list({ query })) {
      const closedAt = w.closeTime?.toISOString();
      if (closedAt) runs.push({ workflowId: w.workflowId, runId: w.runId, closedAt });
      if (runs.length >= 100) break;
    }
    runs.sort((a, b) => (a.closedAt < b.closedAt ? 1 : -1));
    for (const r of runs.slice(0, 25)) {
      const result = (await client.workflow.getHandle(r.workflowId, r.runId).result().catch(() => undefined)) as RunResult | undefined;
      const proved = result && typeof result === 'object' ? REQUIREMENT_TESTS[requires](result, deps.deployments) : undefined;
      if (proved) return { workflowId: r.workflowId, closedAt: r.closedAt, proved };
    }
    return null;
  }

  return {
    /**
     * The newest completed run of a runbook in this environment (with target: of that database or
     * Deployment only; with requires: whose result meets that requirement), or null. verifiedChange: true
     * is the older spelling of requires: 'verifiedChange', still asked by audits started before requirements.
     */
    async lastSuccessfulRun(input: { runbook: string; target?: string; verifiedChange?: boolean; requires?: RunRequirement }): Promise<ProvingRun | null> {
      if (!RUNBOOK.test(input.runbook) || !ENVIRONMENT.test(deps.environment)) throw failure('InvalidInput', `'${input.runbook}' is not a runbook name`);
      if (input.target !== undefined && !TARGET.test(input.target)) throw failure('InvalidInput', `'${input.target}' is not a database key or Deployment name`);
      if (input.requires !== undefined && !Object.hasOwn(REQUIREMENT_TESTS, input.requires)) throw failure('InvalidInput', `'${input.requires}' is not a run requirement; expected one of ${Object.keys(REQUIREMENT_TESTS).join(', ')}`);
      const client = await deps.client();
      // Names are checked above: nothing from outside is spliced into the query unchecked.
      const query = `WorkflowType = '${input.runbook}' AND ExecutionStatus = 'Completed' AND RunbookEnvironment = '${deps.environment}'${input.target !== undefined ? ` AND RunbookTarget = '${input.target}'` : ''}`;
      const requires = input.requires ?? (input.verifiedChange ? 'verifiedChange' : undefined);
      if (requires) return newestMeeting(client, query, requires);
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
