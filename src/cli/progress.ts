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
  if (d && typeof d.percent === 'number') parts.push(`${d.phase ?? ''} ${d.percent.toFixed(1)}%${typeof d.node === 'string' ? ` on ${d.node}` : ''}`.trim());
  if (d && typeof d.acknowledged === 'number') parts.push(`${d.acknowledged} writes acknowledged`);
  if (d && typeof d.weight === 'number') parts.push(`canary weight ${d.weight}%`);
  // A drill's topology driver reports what it waits for (a node to stream, replay, an earlier rejoin).
  const waiting = d && Object.entries(d).find(([k, v]) => k.startsWith('waitingFor') && typeof v === 'string');
  if (waiting) parts.push(`${waiting[0].replace(/^waitingFor/, 'waiting for ').replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase()}: ${waiting[1]}`);
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

/** Where progress goes: a terminal gets one line rewritten in place, anything else a plain line per change. */
export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): unknown;
}

/**
 * Shows progress lines on a stream. On a terminal the line is rewritten in place (with the time
 * since the start, so a long step visibly lives) and cut to the terminal's width; elsewhere (a pipe,
 * a log file, CI) each changed line is printed once, as plain text without control characters.
 */
export function progressPrinter(stream: ProgressStream, started = Date.now()): { show(line: string, now?: number): void; end(): void } {
  let last = '';
  let drawn = false;
  return {
    show(line: string, now = Date.now()) {
      if (stream.isTTY) {
        const text = `  ${line} (${Math.floor((now - started) / 1000)} s)`;
        const width = Math.max(20, (stream.columns ?? 80) - 1);
        stream.write(`\r\x1b[2K${text.length > width ? `${text.slice(0, width - 1)}…` : text}`);
        drawn = true;
      } else if (line !== last) {
        stream.write(`  ${line}\n`);
      }
      last = line;
    },
    end() {
      if (drawn) stream.write('\n');
      drawn = false;
    },
  };
}

/** Waits for the result, printing progress to stderr (not in --json mode): see progressPrinter. */
export async function waitWithProgress<T>(handle: WorkflowHandle, show: boolean, intervalMs = 1_000): Promise<T> {
  const result = handle.result() as Promise<T>;
  if (!show) return result;
  const printer = progressPrinter(process.stderr);
  let last = '';
  let done = false;
  result.then(() => (done = true), () => (done = true));
  try {
    while (!done) {
      last = await readProgress(handle).then(progressLine, () => last);
      if (last) printer.show(last);
      await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, intervalMs))]);
    }
  } finally {
    printer.end();
  }
  return result;
}
