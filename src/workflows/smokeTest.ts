import { ApplicationFailure, proxyActivities, uuid4 } from '@temporalio/workflow';
import type { SmokeActivities } from '../activities/smoke';
import { describe, ENVIRONMENT_NAME, InputChecker } from './lib/input';
import { runRunbook, TimelineSnapshot } from './lib/timeline';

export interface SmokeTestInput {
  environment: string;
  /** Hold the activity open, heartbeating, for this many seconds (0-3600). */
  holdSeconds?: number;
}

export interface SmokeTestResult {
  runbook: 'smokeTest';
  environment: string;
  passed: true;
  /** Workflow-observed time from scheduling the activity to receiving its result. */
  roundTripMs: number;
  scheduleToStartMs: number;
  worker: { host: string; pid: number; taskQueue: string };
  timeline: TimelineSnapshot;
}

/** Validation shared by the CLI (refuse before starting) and the workflow (refuse bad input from any client). */
export function validateSmokeTestInput(input: unknown): SmokeTestInput {
  const check = InputChecker.of('smokeTest', input);
  check.matches('environment', ENVIRONMENT_NAME, 'an environment name (lower-case letters, digits, -)');
  const hold = check.value.holdSeconds;
  if (hold !== undefined && (typeof hold !== 'number' || !Number.isFinite(hold) || hold < 0 || hold > 3600)) {
    check.problem(`holdSeconds: expected a number of seconds from 0 to 3600, found ${describe(hold)}`);
  }
  check.done();
  return check.value as unknown as SmokeTestInput;
}

// The smoke check is a short call; a held check heartbeats every second, so a lost worker is noticed in 10 s.
function smokeActivities(holdSeconds: number) {
  return proxyActivities<SmokeActivities>({
    startToCloseTimeout: `${30 + holdSeconds} seconds`,
    heartbeatTimeout: '10 seconds',
    retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: ['InvalidInput'] },
  });
}

/** The checklist's "smoke tests passed: basic workflow execution": one activity through a real worker, timed. */
export async function smokeTest(rawInput: SmokeTestInput): Promise<SmokeTestResult> {
  const input = validateSmokeTestInput(rawInput);
  const { smokeCheck } = smokeActivities(input.holdSeconds ?? 0);
  return runRunbook('smokeTest', input.environment, async (timeline) => {
    const nonce = uuid4();
    const check = await timeline.step('execute activity round trip', async (evidence) => {
      const started = Date.now();
      const result = await smokeCheck({ nonce, holdSeconds: input.holdSeconds, environment: input.environment });
      const roundTripMs = Date.now() - started;
      Object.assign(evidence, { roundTripMs, scheduleToStartMs: result.scheduleToStartMs, taskQueue: result.taskQueue, host: result.host, attempt: result.attempt });
      if (result.echo !== nonce) {
        throw ApplicationFailure.create({ type: 'SmokeTestFailed', message: `the activity answered ${result.echo}, expected ${nonce}`, nonRetryable: true });
      }
      return { ...result, roundTripMs };
    });
    return {
      runbook: 'smokeTest' as const,
      environment: input.environment,
      passed: true as const,
      roundTripMs: check.roundTripMs,
      scheduleToStartMs: check.scheduleToStartMs,
      worker: { host: check.host, pid: check.pid, taskQueue: check.taskQueue },
    };
  });
}
