/**
 * `--plan`: a runbook run on its plan task queue (src/plan/), where the environment's worker has no
 * activity that changes anything. The workflow is the real one; what it would change is read back
 * from its timeline, step by step, and printed as text, JSON, or a manual procedure (Markdown) a
 * person can follow when Temporal itself is not there.
 */
import { WorkflowFailedError } from '@temporalio/client';
import type { EnvironmentConfig } from '../config/schema';
import type { ImplementedRunbook } from '../workflows/catalog';
import { timelineQuery, type StepOutcome, type TimelineSnapshot } from '../workflows/lib/timeline';
import { PLAN_WORKFLOW_PREFIX, planQueueFor, PlannedChange } from '../plan/types';
import { ConnectedClient, failureMessage, newWorkflowId, pollerCount } from './client';
import { GlobalOptions, UsageError, withClient } from './common';

export interface PlanStep {
  name: string;
  outcome: StepOutcome;
  /** What the step would do. */
  planned: PlannedChange[];
  /** What the step read (preflight findings, the fault plan shown to the approver). */
  found: Record<string, unknown>;
  error?: string;
}

export interface RunbookPlan {
  runbook: string;
  environment: string;
  /** The plan run (on the plan task queue); it changed nothing. */
  workflowId: string;
  /** False when the real run would stop: a preflight problem, a refusal, a step that would fail. */
  ok: boolean;
  problems: string[];
  steps: PlanStep[];
  /** Child runs the real run would start (a go-live's audit and rollout), planned the same way. */
  children: RunbookPlan[];
  plannedAt: string;
}

const PLAN_TIMEOUT_MS = 10 * 60_000;

/** Runs a plan of a runbook with this input and reads back what each step would do. */
export async function runPlan(c: ConnectedClient, runbook: ImplementedRunbook, input: unknown, opts: { env?: EnvironmentConfig } = {}): Promise<RunbookPlan> {
  const taskQueue = planQueueFor((opts.env ?? c.env).temporal.taskQueues);
  if ((await pollerCount(c, taskQueue)) === 0) {
    throw new UsageError(`no worker polls ${taskQueue}: plans of ${runbook} run on environment ${c.environment}'s workers, which serve that queue beside their own; start one (runbook worker) or upgrade it`);
  }
  const workflowId = `${PLAN_WORKFLOW_PREFIX}${newWorkflowId(runbook, c.environment)}`;
  // No search attributes: a plan is no run of the runbook, and no listing of runs (freshness, the site) finds it.
  const handle = await c.client.workflow.start(runbook, { taskQueue, workflowId, args: [input], workflowExecutionTimeout: PLAN_TIMEOUT_MS });
  let problem: string | undefined;
  let snapshot: TimelineSnapshot | undefined;
  try {
    const r = (await handle.result()) as { timeline?: TimelineSnapshot };
    snapshot = r?.timeline;
  } catch (err) {
    if (!(err instanceof WorkflowFailedError)) throw err;
    problem = failureMessage(err);
  }
  snapshot = (await handle.query(timelineQuery).catch(() => undefined)) ?? snapshot;
  return planOf(c, runbook, workflowId, snapshot, problem);
}

async function planOf(c: ConnectedClient, runbook: string, workflowId: string, snapshot: TimelineSnapshot | undefined, problem: string | undefined): Promise<RunbookPlan> {
  const steps: PlanStep[] = (snapshot?.steps ?? []).map((s) => {
    const { planned, ...found } = s.evidence as { planned?: PlannedChange[] };
    return { name: s.name, outcome: s.outcome, planned: planned ?? [], found, ...(s.error ? { error: s.error } : {}) };
  });
  const children: RunbookPlan[] = [];
  for (const p of steps.flatMap((s) => s.planned)) {
    const id = p.kind === 'child' ? (p.detail as { workflowId?: string } | undefined)?.workflowId : undefined;
    if (!id) continue;
    const h = c.client.workflow.getHandle(id);
    let childProblem: string | undefined;
    await h.result().catch((err: unknown) => (childProblem = failureMessage(err)));
    children.push(await planOf(c, p.by, id, await h.query(timelineQuery).catch(() => undefined), childProblem));
  }
  const problems = problem ? [problem] : [];
  return { runbook, environment: c.environment, workflowId, ok: !problem, problems, steps, children, plannedAt: new Date().toISOString() };
}

const MARK: Record<PlannedChange['kind'], string> = { change: 'change', gate: 'gate', wait: 'wait', write: 'write', notify: 'notify', child: 'child run', compensation: 'on fail' };

/** The plan for a terminal: each step and what it would do; problems last. */
export function renderPlanText(p: RunbookPlan, indent = ''): string {
  const lines = [`${indent}PLAN of ${p.runbook} in ${p.environment}: ${p.ok ? 'the real run would go through these steps' : 'the real run would stop'} (plan run ${p.workflowId}; nothing was changed)`];
  p.steps.forEach((s, i) => {
    lines.push(`${indent}${i + 1}. ${s.name}${s.outcome === 'failed' ? `  -- would FAIL: ${s.error ?? ''}` : s.outcome === 'skipped' ? `  -- skipped: ${String(s.found.reason ?? '')}` : ''}`);
    for (const c of s.planned) lines.push(`${indent}     ${MARK[c.kind].padEnd(9)} ${c.what}`);
    for (const line of foundLines(s)) lines.push(`${indent}     ${'reads'.padEnd(9)} ${line}`);
  });
  for (const child of p.children) lines.push(renderPlanText(child, `${indent}    `));
  for (const problem of p.problems) lines.push(`${indent}PROBLEM: ${problem}`);
  return lines.join('\n');
}

/** The few things a step found that an operator checks before acting: the fault plan, members, the candidate. */
function foundLines(s: PlanStep): string[] {
  const out: string[] = [];
  const f = s.found;
  if (Array.isArray(f.members)) out.push(`members: ${(f.members as string[]).join('; ')}`);
  if (typeof f.candidate === 'string') out.push(`candidate: ${f.candidate}`);
  if (typeof f.serviceEndpoint === 'string') out.push(`service endpoint: ${f.serviceEndpoint}${typeof f.endpointReaches === 'string' ? ` (reaches ${f.endpointReaches})` : ''}`);
  // Whatever else the step found that fits on a line (the backup chosen, its age, the Deployment's revision).
  const shownKeys = new Set(['members', 'candidate', 'serviceEndpoint', 'endpointReaches', 'plan', 'reason']);
  const plain = Object.entries(f).filter(([k, v]) => !shownKeys.has(k) && (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') && String(v).length <= 120);
  if (plain.length) out.push(plain.slice(0, 8).map(([k, v]) => `${k}=${String(v)}`).join(', '));
  return out;
}

/**
 * The plan as a manual procedure: the steps in order, each change as a checkbox a person ticks, with
 * the exact records, patches and keys, for the day Temporal itself is down (the break-glass path).
 */
export function renderPlanMarkdown(p: RunbookPlan, level = 1): string {
  const h = '#'.repeat(level);
  const out = [
    `${h} Manual procedure: ${p.runbook} in ${p.environment}`,
    '',
    `Generated ${p.plannedAt} from plan run \`${p.workflowId}\`, from the state the environment was in then: read every "check" again before acting.`,
    '',
  ];
  if (!p.ok) out.push(`**The real run would stop:** ${p.problems.join('; ')}`, '');
  p.steps.forEach((s, i) => {
    out.push(`${h}# ${i + 1}. ${s.name}`, '');
    if (s.outcome === 'skipped') out.push(`Skipped: ${String(s.found.reason ?? '')}`, '');
    for (const line of foundLines(s)) out.push(`- check: ${line}`);
    for (const c of s.planned) {
      const verb = c.kind === 'gate' ? 'get approval' : c.kind === 'wait' ? 'wait' : c.kind === 'notify' ? 'tell' : c.kind === 'write' ? 'record' : c.kind === 'child' ? 'run' : c.kind === 'compensation' ? 'if it fails from here' : 'do';
      out.push(`- [ ] ${verb}: ${c.what}`);
      if (c.detail !== undefined && (c.kind === 'change' || c.kind === 'write')) out.push('', '  ```json', ...JSON.stringify(c.detail, null, 2).split('\n').map((l) => `  ${l}`), '  ```', '');
    }
    if (s.outcome === 'failed') out.push(`- **would fail here:** ${s.error ?? ''}`);
    out.push('');
  });
  for (const child of p.children) out.push(renderPlanMarkdown(child, level + 1));
  return out.join('\n');
}

/** Prints a plan in the format asked for and sets the exit code: 0 when the real run would go through. */
export function printPlan(p: RunbookPlan, format: { json?: boolean; markdown?: boolean }): void {
  if (format.json) process.stdout.write(`${JSON.stringify(p, null, 2)}\n`);
  else process.stdout.write(`${format.markdown ? renderPlanMarkdown(p) : renderPlanText(p)}\n`);
  process.exitCode = p.ok ? 0 : 1;
}

/** The options every planned command takes. */
export const PLAN_FLAG = '--plan';
export const PLAN_HELP = 'change nothing: run it on the plan queue and print what each step would do (exit 0 only if the real run would go through)';
export const MARKDOWN_HELP = 'with --plan: print the plan as a manual procedure (Markdown)';

/** Runs a plan of a runbook from a command: the input is built (and checked) with the client at hand. */
export async function planCommand(g: GlobalOptions, runbook: ImplementedRunbook, opts: { markdown?: boolean }, input: (c: ConnectedClient) => unknown): Promise<void> {
  await withClient(g, async (c) => printPlan(await runPlan(c, runbook, input(c)), { json: g.json, markdown: opts.markdown }));
}

/** --markdown without --plan is a mistake worth naming. */
export function checkPlanFlags(opts: { plan?: boolean; markdown?: boolean }): void {
  if (opts.markdown && !opts.plan) throw new UsageError('--markdown: only with --plan');
}
