import { defineQuery, isCancellation, log, proxySinks, setHandler } from '@temporalio/workflow';
import type { RunbookSinks } from './sinks';
import { setRunningStepLookup, takePlannedBetweenSteps } from './plan';

export type StepOutcome = 'running' | 'succeeded' | 'failed' | 'skipped' | 'cancelled';
export type RunOutcome = 'running' | 'succeeded' | 'failed' | 'cancelled';
export type Evidence = Record<string, unknown>;

/** One step of a runbook as the timeline shows it and the report renders it. */
export interface StepRecord {
  name: string;
  startedAt: string;
  endedAt?: string;
  durationMs?: number;
  outcome: StepOutcome;
  evidence: Evidence;
  error?: string;
}

export interface TimelineSnapshot {
  runbook: string;
  environment: string;
  startedAt: string;
  endedAt?: string;
  outcome: RunOutcome;
  steps: StepRecord[];
}

/** The query every runbook answers: where it is and what each step found. */
export const timelineQuery = defineQuery<TimelineSnapshot>('timeline');

const sinks = proxySinks<RunbookSinks>();

// Date.now() inside a workflow is the deterministic workflow clock (the time of the current workflow task).
const isoNow = (): string => new Date(Date.now()).toISOString();

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as Error & { cause?: unknown }).cause;
    return cause instanceof Error ? `${err.message}: ${cause.message}` : err.message;
  }
  return String(err);
}

/**
 * The timeline of one runbook run: each step's name, start, end, outcome and evidence, kept in
 * workflow state (so it survives worker restarts through replay) and exposed by the timeline query.
 */
export class Timeline {
  private readonly state: TimelineSnapshot;

  constructor(runbook: string, environment: string) {
    this.state = { runbook, environment, startedAt: isoNow(), outcome: 'running', steps: [] };
    setHandler(timelineQuery, () => this.snapshot());
    // A plan run records what each step would change on that step (src/workflows/planInterceptors.ts).
    setRunningStepLookup(() => {
      for (let i = this.state.steps.length - 1; i >= 0; i--) if (this.state.steps[i].outcome === 'running') return this.state.steps[i].evidence;
      return undefined;
    });
  }

  snapshot(): TimelineSnapshot {
    return { ...this.state, steps: this.state.steps.map((s) => ({ ...s, evidence: { ...s.evidence } })) };
  }

  /**
   * Runs fn as a named step. fn may add evidence as it goes; the step ends succeeded, failed or
   * cancelled with the error text, and the error is rethrown for the runbook to handle.
   */
  async step<T>(name: string, fn: (evidence: Evidence) => Promise<T>): Promise<T> {
    const pending = takePlannedBetweenSteps();
    const record: StepRecord = { name, startedAt: isoNow(), outcome: 'running', evidence: pending.length ? { planned: pending } : {} };
    this.state.steps.push(record);
    const started = Date.now();
    log.info('step started', { runbook: this.state.runbook, environment: this.state.environment, step: name });
    try {
      const result = await fn(record.evidence);
      this.end(record, started, 'succeeded');
      return result;
    } catch (err) {
      record.error = errorText(err);
      this.end(record, started, isCancellation(err) ? 'cancelled' : 'failed');
      throw err;
    }
  }

  /** Records a step that was deliberately not run, with the reason. */
  skip(name: string, reason: string): void {
    const now = isoNow();
    this.state.steps.push({ name, startedAt: now, endedAt: now, durationMs: 0, outcome: 'skipped', evidence: { reason } });
  }

  private end(record: StepRecord, startedMs: number, outcome: StepOutcome): void {
    record.endedAt = isoNow();
    record.durationMs = Date.now() - startedMs;
    record.outcome = outcome;
    sinks.runbookMetrics.stepFinished(this.state.runbook, record.name, outcome, record.durationMs);
    log.info('step finished', { runbook: this.state.runbook, environment: this.state.environment, step: record.name, outcome, durationMs: record.durationMs });
  }

  /** Records something that happened beside the steps (a notification that could not be delivered), with its evidence. */
  note(name: string, outcome: 'succeeded' | 'failed', evidence: Evidence): void {
    const now = isoNow();
    this.state.steps.push({ name, startedAt: now, endedAt: now, durationMs: 0, outcome, evidence, error: outcome === 'failed' ? String(evidence.error ?? '') : undefined });
  }

  /** Set by a runbook's gates: told how the run ended (notifications), awaited before the run completes. */
  onFinish?: (outcome: Exclude<RunOutcome, 'running'>, reason?: string, err?: unknown) => Promise<void>;

  finish(outcome: Exclude<RunOutcome, 'running'>): void {
    this.state.outcome = outcome;
    this.state.endedAt = isoNow();
  }
}

/**
 * Runs a runbook body with its timeline: counts the run in the worker's metrics, marks the
 * timeline's final outcome, and rethrows failures so Temporal records the run as failed.
 */
export async function runRunbook<T extends object>(
  runbook: string,
  environment: string,
  body: (timeline: Timeline) => Promise<T>,
): Promise<T & { timeline: TimelineSnapshot }> {
  const timeline = new Timeline(runbook, environment);
  sinks.runbookMetrics.runStarted(runbook, environment);
  try {
    const result = await body(timeline);
    await timeline.onFinish?.('succeeded');
    timeline.finish('succeeded');
    sinks.runbookMetrics.runFinished(runbook, environment, 'succeeded', Date.now());
    return { ...result, timeline: timeline.snapshot() };
  } catch (err) {
    const outcome = isCancellation(err) ? 'cancelled' : 'failed';
    await timeline.onFinish?.(outcome, errorText(err), err);
    timeline.finish(outcome);
    sinks.runbookMetrics.runFinished(runbook, environment, outcome, Date.now());
    throw err;
  }
}
