import { Context, log, sleep } from '@temporalio/activity';
import { hostname } from 'node:os';
import { checkServedEnvironment } from './errors';

export interface SmokeCheckInput {
  nonce: string;
  /** Keep the activity running (heartbeating every second) this long: proves heartbeats, cancellation and graceful shutdown. */
  holdSeconds?: number;
  /** The environment the run names; refused unless it is the one this worker serves. */
  environment?: string;
}

export interface SmokeCheckResult {
  echo: string;
  host: string;
  pid: number;
  taskQueue: string;
  attempt: number;
  /** Time the task waited between being scheduled and being picked up by this worker. */
  scheduleToStartMs: number;
  heartbeats: number;
}

export function createSmokeActivities(environment?: string) {
  return {
    /** The smoke test's one activity: proves a worker picks up work on the queue and answers. */
    async smokeCheck(input: SmokeCheckInput): Promise<SmokeCheckResult> {
      if (environment !== undefined) checkServedEnvironment(input.environment, environment);
      const ctx = Context.current();
      const info = ctx.info;
      const scheduleToStartMs = Math.max(0, Date.now() - info.currentAttemptScheduledTimestampMs);
      log.info('smoke check picked up', { scheduleToStartMs, holdSeconds: input.holdSeconds ?? 0 });
      let heartbeats = 0;
      const holdUntil = Date.now() + (input.holdSeconds ?? 0) * 1000;
      try {
        while (Date.now() < holdUntil) {
          ctx.heartbeat({ heartbeats, remainingMs: holdUntil - Date.now() });
          heartbeats++;
          // sleep() rejects with a CancelledFailure when the activity is cancelled or the worker shuts down.
          await sleep(Math.min(1_000, Math.max(0, holdUntil - Date.now())));
        }
      } catch (err) {
        const details = ctx.cancellationDetails;
        const reason = details?.workerShutdown ? 'worker shutdown' : details?.cancelRequested ? 'cancel requested' : details?.timedOut ? 'timed out' : String(err);
        log.warn('smoke check cancelled', { reason, heartbeats });
        throw err;
      }
      return { echo: input.nonce, host: hostname(), pid: process.pid, taskQueue: info.taskQueue, attempt: info.attempt, scheduleToStartMs, heartbeats };
    },
  };
}

export type SmokeActivities = ReturnType<typeof createSmokeActivities>;
