import { Context } from '@temporalio/activity';
import { Client, Connection } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import type { Scenario } from '../bench/scenarios';
import { percentiles, Percentiles, ProcessSampler } from '../bench/stats';
import type { TemporalConnectionSettings } from '../config/connection';
import type { LoadTestConfig } from '../config/loadTest';
import { failure } from './errors';

export type LoadPhase = 'baseline' | 'peak' | 'failure' | 'recovery';

/** The environment's loadTest block in milliseconds, as the workflow follows it. */
export interface LoadTestPlan {
  scenario: Scenario;
  baselineRate: number;
  peakMultiplier: number;
  phaseDurationMs: number;
  failure: { mode: 'workers-stopped' | 'slow-dependency'; outageMs: number; dependencyDelayMs: number };
  concurrency: number;
  sla: { p99StartToCompleteMs: number; maxErrorRate: number };
}

export interface LoadPhaseInput {
  phase: LoadPhase;
  taskQueue: string;
  scenario: Scenario;
  ratePerSecond: number;
  durationMs: number;
  concurrency: number;
  /** The bench worker starts only this long into the phase (workers stopped). */
  outageMs?: number;
  /** The payment call takes this much longer (a slow dependency). */
  dependencyDelayMs?: number;
}

export interface LoadPhaseFigures {
  phase: LoadPhase;
  targetRate: number;
  durationMs: number;
  started: number;
  completed: number;
  failed: number;
  /** Still running at the end of the drain; terminated. */
  unfinished: number;
  /** Workflows started per second over the phase. */
  achievedRate: number;
  workflowsPerSecond: number;
  errorRate: number;
  startToCompleteMs: Percentiles;
  activityScheduleToStartMs: Percentiles;
  workersDownMs: number;
  dependencyDelayMs: number;
  /** The bench worker runs in the runbook worker's process: its CPU and peak RSS during the phase. */
  process: { cpuSeconds: number; rssPeakBytes: number };
  errors: { message: string; count: number }[];
}

export interface LoadTestActivityDeps {
  environment: string;
  config?: LoadTestConfig;
  settings: () => TemporalConnectionSettings;
  dataConverter?: DataConverter;
}

export function planFrom(config: LoadTestConfig): LoadTestPlan {
  return {
    scenario: config.scenario,
    baselineRate: config.baselineRate,
    peakMultiplier: config.peakMultiplier,
    phaseDurationMs: config.phaseDuration,
    failure: { mode: config.failure.mode, outageMs: config.failure.outage ?? Math.round(config.phaseDuration / 2), dependencyDelayMs: config.failure.dependencyDelay },
    concurrency: config.concurrency,
    sla: { p99StartToCompleteMs: config.sla.p99StartToComplete, maxErrorRate: config.sla.maxErrorRate },
  };
}

/**
 * The load test's activities: the plan from config, and one phase of load — a bench worker in this
 * process on the run's own task queue, driven at the phase's rate, heartbeating its progress.
 */
export function createLoadTestActivities(deps: LoadTestActivityDeps) {
  return {
    async loadTestPlan(): Promise<LoadTestPlan> {
      if (!deps.config) throw failure('InvalidInput', `environment ${deps.environment} has no loadTest: section; add one with baselineRate and sla.p99StartToComplete`);
      return planFrom(deps.config);
    },

    async runLoadPhase(input: LoadPhaseInput): Promise<LoadPhaseFigures> {
      const ctx = Context.current();
      const s = deps.settings();
      const connection = await Connection.connect({ address: s.address, tls: s.tls, apiKey: s.apiKey, connectTimeout: 10_000 });
      // Loaded here: the worker library is large, and the CLI reaches this module without running a load test.
      const { NativeConnection } = await import('@temporalio/worker');
      const { BenchWorker, drive } = await import('../bench/engine');
      const native = await NativeConnection.connect({ address: s.address, tls: s.tls, apiKey: s.apiKey });
      const client = new Client({ connection, namespace: s.namespace, dataConverter: deps.dataConverter });
      const scheduleToStart: number[] = [];
      const worker = new BenchWorker({ connection: native, namespace: s.namespace, taskQueue: input.taskQueue, dataConverter: deps.dataConverter, onActivityStarted: (t) => scheduleToStart.push(t.scheduleToStartMs) });
      let outage: NodeJS.Timeout | undefined;
      let starting: Promise<void> | undefined;
      const sampler = new ProcessSampler();
      try {
        const outageMs = input.outageMs ?? 0;
        if (outageMs > 0) {
          // Workflows started during the outage wait on the queue; they count against this phase's SLA.
          outage = setTimeout(() => (starting = worker.start()), outageMs);
        } else {
          await worker.start();
        }
        const r = await drive({
          client,
          taskQueue: input.taskQueue,
          scenario: input.scenario,
          durationMs: input.durationMs,
          ratePerSecond: input.ratePerSecond,
          concurrency: input.concurrency,
          dependencyDelayMs: () => input.dependencyDelayMs ?? 0,
          drainTimeoutMs: Math.max(60_000, input.durationMs * 2),
          signal: ctx.cancellationSignal,
          onProgress: (p) => ctx.heartbeat({ phase: input.phase, ...p }),
          progressIntervalMs: 1_000,
        });
        await starting;
        const figures = sampler.stop();
        const seconds = input.durationMs / 1000;
        return {
          phase: input.phase,
          targetRate: input.ratePerSecond,
          durationMs: input.durationMs,
          started: r.started,
          completed: r.completed,
          failed: r.failed,
          unfinished: r.unfinished,
          achievedRate: Math.round((r.started / seconds) * 100) / 100,
          workflowsPerSecond: r.elapsedMs > 0 ? Math.round((r.completed / (r.elapsedMs / 1000)) * 100) / 100 : 0,
          errorRate: r.started > 0 ? (r.failed + r.unfinished) / r.started : 0,
          startToCompleteMs: percentiles(r.startToCompleteMs),
          activityScheduleToStartMs: percentiles(scheduleToStart),
          workersDownMs: outageMs,
          dependencyDelayMs: input.dependencyDelayMs ?? 0,
          process: { cpuSeconds: figures.cpuSeconds, rssPeakBytes: figures.rssPeakBytes },
          errors: [...r.errors].map(([message, count]) => ({ message, count })),
        };
      } finally {
        clearTimeout(outage);
        sampler.stop();
        await starting?.catch(() => undefined);
        await worker.stop().catch(() => undefined);
        await native.close().catch(() => undefined);
        await connection.close().catch(() => undefined);
      }
    },
  };
}

export type LoadTestActivities = ReturnType<typeof createLoadTestActivities>;
