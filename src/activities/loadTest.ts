import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
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
  failure: {
    mode: 'workers-stopped' | 'slow-dependency' | 'command';
    outageMs: number;
    dependencyDelayMs: number;
    /** mode command: what the fault hits, the commands that inject and end it, how long its approval may wait. */
    target?: string;
    inject?: string[];
    recover?: string[];
    approvalTimeoutMs?: number;
  };
  concurrency: number;
  sla: { p99StartToCompleteMs: number; maxErrorRate: number; drainWithinMs?: number };
  /** The task queue of the load generator's own worker (runbook worker --load-generator); absent in plans of older workers. */
  generatorQueue?: string;
  /** The environment is marked production (and the fault, if any, is allowed there). */
  production?: boolean;
}

/** The load generator's task queue: next to the batch queue, served only by workers started with --load-generator. */
export function loadGeneratorQueue(batchQueue: string): string {
  return `${batchQueue}-load-generator`;
}

const execFileAsync = promisify(execFile);

/** Runs a fault command (an argument list) and returns what it printed; a failure names the command and its output. */
async function runFaultCommand(kind: 'inject' | 'recover', argv: string[]): Promise<{ argv: string[]; ms: number; output: string }> {
  const t0 = Date.now();
  try {
    const { stdout, stderr } = await execFileAsync(argv[0], argv.slice(1), { timeout: 120_000, maxBuffer: 1 << 20 });
    return { argv, ms: Date.now() - t0, output: `${stdout}${stderr}`.trim().slice(-500) };
  } catch (err) {
    const e = err as Error & { stderr?: string; code?: number | string };
    throw failure('CommandFailed', `the ${kind} command ${JSON.stringify(argv)} failed (${e.code ?? 'no exit code'}): ${(e.stderr || e.message).trim().slice(-500)}`);
  }
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
  /** A real fault: inject at the phase's start, recover after outageMs. */
  fault?: { target: string; inject: string[]; recover: string[]; outageMs: number };
}

/** The fault of a failure phase, as it happened. */
export interface InjectedFault {
  target: string;
  inject: { argv: string[]; ms: number; output: string };
  recover?: { argv: string[]; ms: number; output: string };
  /** The recover command failed: the fault may still be in place. */
  recoverError?: string;
  /** From the phase's start to the end of the recover command. */
  downMs: number;
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
  /** The fault injected in this phase (mode command). */
  fault?: InjectedFault;
  /**
   * After the fault ended (workers back, recover done): how long until every workflow started before
   * that had settled; null when some never did. Absent in phases without an outage.
   */
  drainMs?: number | null;
  /** Workflows started before the fault ended: the backlog that had to drain. */
  backlog?: number;
  /** The bench worker runs in the runbook worker's process: its CPU and peak RSS during the phase. */
  process: { cpuSeconds: number; rssPeakBytes: number };
  errors: { message: string; count: number }[];
}

export interface LoadTestActivityDeps {
  environment: string;
  config?: LoadTestConfig;
  /** environments.<env>.production */
  production?: boolean;
  /** The environment's batch queue; the load generator's queue is named after it. */
  batchQueue?: string;
  settings: () => TemporalConnectionSettings;
  dataConverter?: DataConverter;
}

export function planFrom(config: LoadTestConfig, extra: { production?: boolean; generatorQueue?: string } = {}): LoadTestPlan {
  const f = config.failure;
  return {
    scenario: config.scenario,
    baselineRate: config.baselineRate,
    peakMultiplier: config.peakMultiplier,
    phaseDurationMs: config.phaseDuration,
    failure: {
      mode: f.mode,
      outageMs: f.outage ?? Math.round(config.phaseDuration / 2),
      dependencyDelayMs: f.dependencyDelay,
      ...(f.mode === 'command' ? { target: f.target, inject: f.inject, recover: f.recover, approvalTimeoutMs: f.approvalTimeout } : {}),
    },
    concurrency: config.concurrency,
    sla: { p99StartToCompleteMs: config.sla.p99StartToComplete, maxErrorRate: config.sla.maxErrorRate, drainWithinMs: config.sla.drainWithin ?? config.phaseDuration },
    ...(extra.generatorQueue ? { generatorQueue: extra.generatorQueue } : {}),
    production: extra.production ?? false,
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
      if (deps.config.failure.mode === 'command' && deps.production && !deps.config.failure.allowInProduction) {
        throw failure(
          'LoadTestRefused',
          `environment ${deps.environment} is marked production (environments.${deps.environment}.production: true): the load test's fault injection (loadTest.failure.mode: command, ${deps.config.failure.target}) is refused there; nothing was started. Allow it with loadTest.failure.allowInProduction: true, or use mode workers-stopped`,
        );
      }
      const generatorQueue = deps.batchQueue ? loadGeneratorQueue(deps.batchQueue) : undefined;
      if (generatorQueue) {
        // The load runs in a worker of its own, never in a production worker: one must be polling.
        const s = deps.settings();
        const connection = await Connection.connect({ address: s.address, tls: s.tls, apiKey: s.apiKey, connectTimeout: 10_000 });
        try {
          const r = await connection.workflowService.describeTaskQueue({ namespace: s.namespace, taskQueue: { name: generatorQueue }, taskQueueType: 2 });
          if ((r.pollers?.length ?? 0) === 0) {
            throw failure('NoLoadGenerator', `no load generator polls task queue ${generatorQueue}: start one with 'runbook worker --load-generator' (a worker of its own, not a production worker); nothing was started`);
          }
        } finally {
          await connection.close().catch(() => undefined);
        }
      }
      return planFrom(deps.config, { production: deps.production, generatorQueue });
    },

    /** Runs the recover command of a fault again: after a failure phase that did not end cleanly, the fault must not stay in place. */
    async recoverLoadTestFault(input: { recover: string[] }): Promise<{ argv: string[]; ms: number; output: string }> {
      return runFaultCommand('recover', input.recover);
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
      let recovering: Promise<void> | undefined;
      const sampler = new ProcessSampler();
      // The backlog: workflows started before the fault ended, and when the last of them settled.
      let faultEndedAt: number | undefined;
      const settled: { startedAt: number; endedAt: number }[] = [];
      let fault: InjectedFault | undefined;
      const phaseStart = performance.now();
      try {
        const outageMs = input.outageMs ?? 0;
        if (input.fault || outageMs <= 0) await worker.start();
        if (input.fault) {
          const f = input.fault;
          fault = { target: f.target, inject: await runFaultCommand('inject', f.inject), downMs: 0 };
          ctx.heartbeat({ phase: input.phase, fault: `injected: ${f.target}` });
          outage = setTimeout(() => {
            recovering = runFaultCommand('recover', f.recover).then(
              (r) => void (fault!.recover = r),
              (err: Error) => void (fault!.recoverError = err.message),
            ).finally(() => {
              faultEndedAt = performance.now();
              fault!.downMs = Math.round(faultEndedAt - phaseStart);
            });
          }, f.outageMs);
        } else if (outageMs > 0) {
          // Workflows started during the outage wait on the queue; they count against this phase's SLA.
          outage = setTimeout(() => (starting = worker.start().then(() => void (faultEndedAt = performance.now()))), outageMs);
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
          onSettled: (startedAt, endedAt) => settled.push({ startedAt, endedAt }),
        });
        await starting;
        await recovering;
        const figures = sampler.stop();
        let drain: { drainMs: number | null; backlog: number } | undefined;
        if (faultEndedAt !== undefined) {
          const before = settled.filter((x) => x.startedAt < faultEndedAt!);
          const last = Math.max(faultEndedAt, ...before.map((x) => x.endedAt));
          drain = { drainMs: r.unfinished > 0 ? null : Math.round(last - faultEndedAt), backlog: before.length + r.unfinished };
        }
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
          ...(fault ? { fault } : {}),
          ...(drain ?? {}),
          process: { cpuSeconds: figures.cpuSeconds, rssPeakBytes: figures.rssPeakBytes },
          errors: [...r.errors].map(([message, count]) => ({ message, count })),
        };
      } finally {
        clearTimeout(outage);
        // A phase that ends early (cancelled, the drive failed) still ends its fault.
        if (fault && !recovering && input.fault) recovering = runFaultCommand('recover', input.fault.recover).then(() => undefined, () => undefined);
        await recovering?.catch(() => undefined);
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
