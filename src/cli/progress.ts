import type { WorkflowHandle } from '@temporalio/client';
import type { LoadedDataConverter } from '@temporalio/common';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import { timelineQuery } from '../workflows/lib/timeline';

export interface ProgressSnapshot {
  step?: string;
  activity?: string;
  attempt?: number;
  details?: Record<string, unknown>;
}

function megabytes(n: unknown): string {
  return typeof n === 'number' ? `${(n / 1_048_576).toFixed(1)} MB` : '?';
}

/** One line for people: the running step and what its activity last reported in a heartbeat. */
export function progressLine(p: ProgressSnapshot): string {
  const parts = [p.step ? `[${p.step}]` : '[starting]'];
  const d = p.details;
  if (d && typeof d.bytes === 'number') parts.push(`${d.phase ?? ''} ${megabytes(d.bytes)}${typeof d.totalBytes === 'number' ? ` of ${megabytes(d.totalBytes)}` : ''}`.trim());
  if (d && typeof d.tablesChecksummed === 'number') parts.push(`tables checksummed ${d.tablesChecksummed}/${d.tables}`);
  if (d && typeof d.deployment === 'string' && typeof d.replicas === 'number') {
    parts.push(`${d.deployment}: ${d.ready ?? d.newReady ?? 0}/${d.replicas} ready, ${d.updated ?? 0} updated`);
  }
  if (d && typeof d.inFlight === 'number') parts.push(`${d.completed}/${d.started} workflows completed, ${d.inFlight} running, ${d.failed} failed`);
  if (p.attempt && p.attempt > 1) parts.push(`attempt ${p.attempt}`);
  return parts.join(' ');
}

/** Reads where a run is: the timeline's running step and the pending activity's heartbeat details. */
export async function readProgress(handle: WorkflowHandle): Promise<ProgressSnapshot> {
  const [timeline, description] = await Promise.all([handle.query(timelineQuery).catch(() => undefined), handle.describe()]);
  const running = timeline?.steps.filter((s) => s.outcome === 'running').pop();
  const pending = description.raw.pendingActivities?.[0];
  let details: Record<string, unknown> | undefined;
  const payloads = pending?.heartbeatDetails?.payloads;
  if (payloads?.length) {
    // Heartbeat details are payloads like any other: encrypted where the environment encrypts, so they
    // go through the client's own data converter (its codec), which the SDK keeps protected.
    const converter = (handle.client as unknown as { dataConverter: LoadedDataConverter }).dataConverter;
    details = await decodeFromPayloadsAtIndex<Record<string, unknown>>(converter, 0, payloads).catch(() => undefined);
  }
  return { step: running?.name, activity: pending?.activityType?.name ?? undefined, attempt: pending?.attempt ?? undefined, details };
}

/** Waits for the result, printing a progress line to stderr whenever it changes (not in --json mode). */
export async function waitWithProgress<T>(handle: WorkflowHandle, show: boolean, intervalMs = 1_000): Promise<T> {
  const result = handle.result() as Promise<T>;
  if (!show) return result;
  let last = '';
  let done = false;
  result.then(() => (done = true), () => (done = true));
  while (!done) {
    const line = await readProgress(handle).then(progressLine, () => last);
    if (line !== last) {
      process.stderr.write(`  ${line}\n`);
      last = line;
    }
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, intervalMs))]);
  }
  return result;
}
