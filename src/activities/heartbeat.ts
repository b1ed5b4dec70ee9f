import { Context } from '@temporalio/activity';

/**
 * Heartbeats every interval with the latest details, so an activity blocked in a long call (a
 * restore, a promotion) still proves it is alive, and learns of cancellation from the answer.
 */
export function heartbeater(intervalMs = 2_000): { beat(details: Record<string, unknown>): void; stop(): void; signal: AbortSignal } {
  const ctx = Context.current();
  let latest: Record<string, unknown> = {};
  ctx.heartbeat(latest);
  const timer = setInterval(() => ctx.heartbeat(latest), intervalMs);
  return {
    beat: (details) => {
      latest = details;
    },
    stop: () => clearInterval(timer),
    signal: ctx.cancellationSignal,
  };
}

function inActivity(): boolean {
  try {
    Context.current();
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs fn with a heartbeat going; for activities that call something that may block for a while.
 * Outside an activity (the CLI calling the same code) fn just runs.
 */
export async function withHeartbeat<T>(fn: () => Promise<T>): Promise<T> {
  if (!inActivity()) return fn();
  const hb = heartbeater();
  try {
    return await fn();
  } finally {
    hb.stop();
  }
}
