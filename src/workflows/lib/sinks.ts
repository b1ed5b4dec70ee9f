import type { Sinks } from '@temporalio/workflow';

/**
 * How a workflow reports to the worker's metrics without breaking determinism: sink calls leave
 * the workflow sandbox and are not repeated when history is replayed.
 */
export interface RunbookSinks extends Sinks {
  runbookMetrics: {
    runStarted(runbook: string, environment: string): void;
    stepFinished(runbook: string, step: string, outcome: string, durationMs: number): void;
    runFinished(runbook: string, environment: string, outcome: 'succeeded' | 'failed' | 'cancelled', endedAtMs: number): void;
    gateOpened(runbook: string, environment: string, atMs: number): void;
    gateClosed(runbook: string, environment: string): void;
    drillMeasured(environment: string, passed: boolean, rtoMs: number, rpoMs: number, endedAtMs: number): void;
    readinessScored(environment: string, section: string, score: number): void;
    gateReminder(runbook: string, environment: string): void;
    actAccepted(runbook: string, environment: string, act: string, principal: string): void;
    actRefused(runbook: string, environment: string, kind: string): void;
    notificationSent(environment: string, channel: string): void;
    notificationFailed(environment: string, channel: string): void;
    rolloutFinished(environment: string, outcome: string): void;
    rolloutPhase(environment: string, deployment: string, phase: string): void;
  };
}
