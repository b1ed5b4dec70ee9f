/**
 * The activities a plan worker registers: the read-only ones as they are, and for every activity that
 * changes something (or follows such a change) a recording stand-in that answers as the real one would
 * after doing its work, and says what that work would be. No activity that changes anything is
 * registered, so a plan cannot change the world even if its workflow code tried.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Activities } from '../activities';
import type { EnvironmentConfig } from '../config/schema';
import { ACTIVITY_EFFECTS } from './effects';
import type { PlanEnvelope, PlannedChange } from './types';

type Fn = (input: never) => Promise<unknown>;
type InputOf<K extends keyof Activities> = Activities[K] extends (input: infer I, ...rest: never[]) => unknown ? I : never;
type ResultOf<K extends keyof Activities> = Awaited<ReturnType<Activities[K]>>;

/** What a planner knows: the environment's config, the read-only activities, and the plan's own state of the world. */
export interface PlanContext {
  environment: string;
  env: EnvironmentConfig;
  reads: Activities;
  /** State one plan run carries from step to step (the node that would be primary, the revision a Deployment would be at). */
  world: Record<string, unknown>;
  /** The plan run's workflow id. */
  workflowId: string;
}

export type Planner<K extends keyof Activities> = (input: InputOf<K>, ctx: PlanContext) => Promise<{ result: ResultOf<K>; planned: PlannedChange[] }>;
export type Planners = { [K in keyof Activities]?: Planner<K> };

const WORLDS_KEPT = 200;

export function createPlanActivities(opts: { environment: string; env: EnvironmentConfig; real: Activities; planners: Planners }): Record<string, Fn> {
  const worlds = new Map<string, Record<string, unknown>>();
  const worldOf = (id: string) => {
    let w = worlds.get(id);
    if (!w) {
      w = {};
      worlds.set(id, w);
      if (worlds.size > WORLDS_KEPT) worlds.delete(worlds.keys().next().value!);
    }
    return w;
  };
  const out: Record<string, Fn> = {};
  for (const name of Object.keys(ACTIVITY_EFFECTS) as (keyof Activities)[]) {
    const effect = ACTIVITY_EFFECTS[name];
    if (effect === 'reads') {
      out[name] = opts.real[name] as unknown as Fn;
      continue;
    }
    const planner = opts.planners[name] as Planner<typeof name> | undefined;
    out[name] = async (input: never): Promise<PlanEnvelope> => {
      if (!planner) {
        throw ApplicationFailure.create({
          type: 'PlanIncomplete',
          nonRetryable: true,
          message: `the plan stops here: the real run would call ${name}, which ${effect === 'changes' ? 'changes something' : 'follows an earlier change'}, and plan mode has no model of what it would do`,
        });
      }
      // The plan's world lives with the run it belongs to: children (a go-live's rollout) plan in their own.
      const workflowId = Context.current().info.workflowExecution?.workflowId ?? 'none';
      const r = await planner(input, { environment: opts.environment, env: opts.env, reads: opts.real, world: worldOf(workflowId), workflowId });
      return { runbookPlan: 1, result: r.result, planned: r.planned };
    };
  }
  return out;
}
