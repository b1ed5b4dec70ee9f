import { condition, defineSignal, setHandler } from '@temporalio/workflow';

export interface TargetGuardInput {
  environment: string;
  kind: 'database' | 'deployment';
  target: string;
}

/** Lets a holder give its target back before it ends (it is given back anyway when the holder closes). */
export const releaseTargetSignal = defineSignal('release');

/**
 * Holds one target (a database, a Deployment) for the run that started it as a child: its workflow
 * id, target-<environment>-<kind>-<name>, can belong to one running workflow only, so a second
 * mutating run finds the target taken. It ends when released or, through its parent close policy,
 * when its parent closes however that happens (completed, failed, terminated).
 */
export async function targetGuard(_input: TargetGuardInput): Promise<void> {
  let released = false;
  setHandler(releaseTargetSignal, () => void (released = true));
  await condition(() => released);
}
