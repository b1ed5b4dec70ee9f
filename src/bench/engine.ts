/**
 * The bench engine: a bench worker (the bench workflows and activities, on a task queue of its own)
 * and a driver that starts workflows against any Temporal cluster and measures what comes back.
 * Used by `runbook bench`, by the loadTest runbook's phase activity and by the benchmarks in bench/.
 */
import { Client, Connection, WorkflowHandle } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { tsToMs } from '@temporalio/common/lib/time';
import { bundleWorkflowCode, DefaultLogger, InjectedSinks, NativeConnection, Runtime, Worker, WorkerOptions } from '@temporalio/worker';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { TemporalConnectionSettings } from '../config/connection';
import { cachedBundle } from '../system/bundleCache';
import type { RunbookSinks } from '../workflows/lib/sinks';
import { ActivityTiming, createBenchActivities, OrderInput } from './activities';
import { ACTIVITIES_PER_WORKFLOW, Scenario, SCENARIOS } from './scenarios';
import { machineLine, percentiles, Percentiles, ProcessFigures, ProcessSampler } from './stats';

export { SCENARIOS, ACTIVITIES_PER_WORKFLOW };
export type { Scenario };

export function benchTaskQueue(prefix = 'runbook-bench'): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** The SDK runtime is process-wide; a CLI or bench process that has none gets one that logs only warnings. */
export function ensureRuntime(): void {
  if (!Runtime._instance) Runtime.install({ logger: new DefaultLogger('WARN') });
}

/**
 * The bench workflows bundled once per process and failure converter (an encrypted environment's bundle
 * encodes failure messages too), and kept in the bundle cache for the next processes (src/system/bundleCache.ts).
 */
const bundles = new Map<string, Promise<{ code: string }>>();
export function benchBundle(failureConverterPath?: string): Promise<{ code: string }> {
  const key = failureConverterPath ?? '';
  let bundle = bundles.get(key);
  if (!bundle) {
    bundle = cachedBundle({
      sourceRoot: join(__dirname, '..'),
      lockFile: join(__dirname, '..', '..', 'package-lock.json'),
      name: failureConverterPath ? 'bench-workflows-encoded-failures' : 'bench-workflows',
      build: () => bundleWorkflowCode({ workflowsPath: require.resolve('./workflows'), failureConverterPath, logger: new DefaultLogger('WARN') }),
    });
    bundles.set(key, bundle);
  }
  return bundle;
}

export interface BenchWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  dataConverter?: DataConverter;
  /** The runbook worker's sinks, for bench workflows that run through the runbook machinery. */
  sinks?: InjectedSinks<RunbookSinks>;
  /** Worker options such as maxCachedWorkflows or the concurrency limits; defaults are the SDK's. */
  tuning?: Partial<Pick<WorkerOptions, 'maxCachedWorkflows' | 'maxConcurrentActivityTaskExecutions' | 'maxConcurrentWorkflowTaskExecutions' | 'maxConcurrentLocalActivityExecutions' | 'maxConcurrentWorkflowTaskPolls' | 'maxConcurrentActivityTaskPolls' | 'reuseV8Context'>>;
  onActivityStarted?: (timing: ActivityTiming) => void;
  /** A bundle of the bench workflows made elsewhere (another process), instead of bundling here. */
  workflowBundle?: { code: string } | { codePath: string };
}

/** A bench worker that can be stopped and started again (the failure phase of a load test stops it). */
export class BenchWorker {
  private worker?: Worker;
  private running?: Promise<void>;

  constructor(private readonly options: BenchWorkerOptions) {}

  get isRunning(): boolean {
    return this.worker !== undefined;
  }

  async start(): Promise<void> {
    if (this.worker) return;
    ensureRuntime();
    const o = this.options;
    const worker = await Worker.create({
      connection: o.connection,
      namespace: o.namespace,
      taskQueue: o.taskQueue,
      workflowBundle: o.workflowBundle ?? (await benchBundle(o.dataConverter?.failureConverterPath)),
      activities: createBenchActivities({ onActivityStarted: o.onActivityStarted }),
      dataConverter: o.dataConverter,
      sinks: o.sinks,
      shutdownGraceTime: '2s',
      ...o.tuning,
    });
    this.worker = worker;
    this.running = worker.run();
    while (worker.getState() !== 'RUNNING') {
      if (worker.getState() === 'FAILED' || worker.getState() === 'STOPPED') {
        await this.running;
        throw new Error(`bench worker on ${o.taskQueue} stopped before polling`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    this.worker = undefined;
    if (worker.getState() === 'RUNNING') worker.shutdown();
    await this.running;
  }
}

export interface DriveProgress {
  elapsedMs: number;
  started: number;
  completed: number;
  failed: number;
  inFlight: number;
  /** The last report of the run. */
  done: boolean;
}

export interface DriveOptions {
  client: Client;
  taskQueue: string;
  scenario: Scenario;
  /** Stop starting after this many workflows. */
  workflowCount?: number;
  /** Stop starting after this long. At least one of workflowCount and durationMs. */
  durationMs?: number;
  /** At most this many workflows running at once (closed loop). */
  concurrency: number;
  /** Start at this pace (workflows/s) instead of as fast as concurrency allows (open loop). */
  ratePerSecond?: number;
  /** Added latency of the order pipeline's payment call, read at each start. */
  dependencyDelayMs?: () => number;
  /** Wait this long for running workflows after the last start; the rest are terminated and counted unfinished. */
  drainTimeoutMs?: number;
  onProgress?: (p: DriveProgress) => void;
  progressIntervalMs?: number;
  /** Stops starting new workflows (e.g. the activity driving a load phase was cancelled). */
  signal?: AbortSignal;
  /** Workflow ids kept for reading histories afterwards (the first N). */
  keepIds?: number;
  /** Called as each workflow settles: when it was started and when it ended (performance.now() times), and whether it completed. */
  onSettled?: (startedAt: number, endedAt: number, completed: boolean) => void;
}

export interface DriveResult {
  started: number;
  completed: number;
  failed: number;
  /** Still running when the drain timeout passed; terminated. */
  unfinished: number;
  /** From the first start to the last completion. */
  elapsedMs: number;
  startToCompleteMs: number[];
  errors: Map<string, number>;
  sampleIds: string[];
}

function workflowFor(scenario: Scenario, id: string, delayMs: number): { type: string; args: unknown[] } {
  if (scenario === 'noop') return { type: 'benchNoop', args: [] };
  if (scenario === 'activity-chain') return { type: 'benchActivityChain', args: [{ steps: ACTIVITIES_PER_WORKFLOW['activity-chain'] }] };
  const order: OrderInput & { holdMs: number } = {
    orderId: id,
    items: [
      { sku: 'SKU-1001', quantity: 2, priceCents: 1250 },
      { sku: 'SKU-2002', quantity: 1, priceCents: 4999 },
    ],
    dependencyDelayMs: delayMs,
    holdMs: 200,
  };
  return { type: 'benchOrderProcessing', args: [order] };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts workflows on the bench queue and waits for each; failures are counted, never thrown. */
export async function drive(o: DriveOptions): Promise<DriveResult> {
  if (o.workflowCount === undefined && o.durationMs === undefined) throw new Error('drive: give a workflow count, a duration, or both');
  const runId = randomBytes(3).toString('hex');
  const t0 = performance.now();
  const result: DriveResult = { started: 0, completed: 0, failed: 0, unfinished: 0, elapsedMs: 0, startToCompleteMs: [], errors: new Map(), sampleIds: [] };
  const inFlight = new Set<Promise<void>>();
  const handles = new Map<string, WorkflowHandle>();
  const terminated = new Set<string>();
  let lastEnd = t0;
  const report = (done = false) => o.onProgress?.({ elapsedMs: performance.now() - t0, started: result.started, completed: result.completed, failed: result.failed, inFlight: inFlight.size, done });
  const ticker = o.onProgress ? setInterval(() => report(), o.progressIntervalMs ?? 500) : undefined;
  const fail = (err: unknown) => {
    result.failed++;
    const msg = (err as Error & { cause?: Error }).cause?.message ?? (err instanceof Error ? err.message : String(err));
    result.errors.set(msg, (result.errors.get(msg) ?? 0) + 1);
  };
  const more = () =>
    !o.signal?.aborted && (o.workflowCount === undefined || result.started < o.workflowCount) && (o.durationMs === undefined || performance.now() - t0 < o.durationMs);
  try {
    while (more()) {
      if (o.ratePerSecond !== undefined) {
        const due = t0 + (result.started / o.ratePerSecond) * 1000;
        const wait = due - performance.now();
        if (wait > 0) {
          await sleep(wait);
          if (!more()) break;
        }
      }
      while (inFlight.size >= o.concurrency) await Promise.race(inFlight);
      const n = result.started++;
      const id = `${o.taskQueue}-${runId}-${n}`;
      if (result.sampleIds.length < (o.keepIds ?? 0)) result.sampleIds.push(id);
      const { type, args } = workflowFor(o.scenario, id, o.dependencyDelayMs?.() ?? 0);
      const begun = performance.now();
      const one = (async () => {
        try {
          // The run timeout ends anything a vanished bench leaves behind.
          const handle = await o.client.workflow.start(type, { taskQueue: o.taskQueue, workflowId: id, args, workflowRunTimeout: '15 minutes' });
          handles.set(id, handle);
          await handle.result();
          result.completed++;
          result.startToCompleteMs.push(performance.now() - begun);
          o.onSettled?.(begun, performance.now(), true);
        } catch (err) {
          if (!terminated.has(id)) {
            fail(err);
            o.onSettled?.(begun, performance.now(), false);
          }
        } finally {
          handles.delete(id);
          lastEnd = performance.now();
        }
      })();
      inFlight.add(one);
      void one.finally(() => inFlight.delete(one));
    }
    let drainTimer: NodeJS.Timeout | undefined;
    const drained = Promise.all(inFlight).then(() => true);
    const timedOut = new Promise<boolean>((resolve) => (drainTimer = setTimeout(() => resolve(false), o.drainTimeoutMs ?? 10 * 60_000)));
    const inTime = await Promise.race([drained, timedOut]);
    clearTimeout(drainTimer);
    if (!inTime) {
      result.unfinished = handles.size;
      for (const id of handles.keys()) terminated.add(id);
      await Promise.all([...handles.values()].map((h) => h.terminate('bench drain timeout').catch(() => undefined)));
      await Promise.all(inFlight);
    }
  } finally {
    clearInterval(ticker);
  }
  result.elapsedMs = lastEnd - t0;
  report(true);
  return result;
}

/** Workflow-task latencies read from history event timestamps: scheduled to started, and started to completed. */
export async function workflowTaskLatencies(client: Client, workflowIds: string[]): Promise<{ scheduleToStartMs: number[]; startToCompleteMs: number[] }> {
  const scheduleToStartMs: number[] = [];
  const startToCompleteMs: number[] = [];
  for (const id of workflowIds) {
    const history = await client.workflow.getHandle(id).fetchHistory();
    let scheduled: number | undefined;
    let started: number | undefined;
    for (const e of history.events ?? []) {
      const at = tsToMs(e.eventTime);
      if (e.workflowTaskScheduledEventAttributes) scheduled = at;
      else if (e.workflowTaskStartedEventAttributes && scheduled !== undefined) {
        scheduleToStartMs.push(at - scheduled);
        started = at;
      } else if (e.workflowTaskCompletedEventAttributes && started !== undefined) {
        startToCompleteMs.push(at - started);
        started = undefined;
      }
    }
  }
  return { scheduleToStartMs, startToCompleteMs };
}

export interface BenchOptions {
  settings: TemporalConnectionSettings;
  dataConverter?: DataConverter;
  scenario: Scenario;
  workflowCount?: number;
  concurrentCount: number;
  durationMs?: number;
  taskQueue?: string;
  onProgress?: (p: DriveProgress) => void;
  /** Histories read for workflow-task latency (default 20). */
  historySample?: number;
}

export interface BenchReport {
  scenario: Scenario;
  address: string;
  namespace: string;
  taskQueue: string;
  requested: { workflowCount?: number; concurrentCount: number; durationSeconds?: number };
  started: number;
  completed: number;
  failed: number;
  unfinished: number;
  activities: number;
  elapsedSeconds: number;
  throughput: { workflowsPerSecond: number; activitiesPerSecond: number };
  latencyMs: {
    startToComplete: Percentiles;
    /** Measured by the activities as the SDK's metric is: the server's scheduled time of the attempt to its start in the worker. */
    activityScheduleToStart: Percentiles;
    /** From history event timestamps of a sample of the runs. */
    workflowTaskScheduleToStart: Percentiles;
  };
  errors: { count: number; messages: { message: string; count: number }[] };
  /** The bench worker runs in this process, so the figures include the driving client. */
  worker: ProcessFigures & { inProcess: true };
  machine: ReturnType<typeof machineLine>;
}

const round2 = (n: number) => Math.round(n * 100) / 100;

/** One bench run: a bench worker in this process on its own task queue, the driver, the report. */
export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const taskQueue = o.taskQueue ?? benchTaskQueue();
  ensureRuntime();
  const s = o.settings;
  const connection = await Connection.connect({ address: s.address, tls: s.tls, apiKey: s.apiKey, connectTimeout: 10_000 });
  const native = await NativeConnection.connect({ address: s.address, tls: s.tls, apiKey: s.apiKey });
  const client = new Client({ connection, namespace: s.namespace, dataConverter: o.dataConverter });
  const scheduleToStart: number[] = [];
  const worker = new BenchWorker({ connection: native, namespace: s.namespace, taskQueue, dataConverter: o.dataConverter, onActivityStarted: (t) => scheduleToStart.push(t.scheduleToStartMs) });
  try {
    await worker.start();
    const sampler = new ProcessSampler();
    const r = await drive({ client, taskQueue, scenario: o.scenario, workflowCount: o.workflowCount, durationMs: o.durationMs, concurrency: o.concurrentCount, onProgress: o.onProgress, keepIds: o.historySample ?? 20 });
    const figures = sampler.stop();
    await worker.stop();
    const wft = await workflowTaskLatencies(client, r.sampleIds).catch(() => ({ scheduleToStartMs: [] }));
    const seconds = r.elapsedMs / 1000;
    const activities = r.completed * ACTIVITIES_PER_WORKFLOW[o.scenario];
    return {
      scenario: o.scenario,
      address: s.address,
      namespace: s.namespace,
      taskQueue,
      requested: { workflowCount: o.workflowCount, concurrentCount: o.concurrentCount, durationSeconds: o.durationMs !== undefined ? o.durationMs / 1000 : undefined },
      started: r.started,
      completed: r.completed,
      failed: r.failed,
      unfinished: r.unfinished,
      activities,
      elapsedSeconds: round2(seconds),
      throughput: { workflowsPerSecond: seconds > 0 ? round2(r.completed / seconds) : 0, activitiesPerSecond: seconds > 0 ? round2(activities / seconds) : 0 },
      latencyMs: {
        startToComplete: percentiles(r.startToCompleteMs),
        activityScheduleToStart: percentiles(scheduleToStart),
        workflowTaskScheduleToStart: percentiles(wft.scheduleToStartMs),
      },
      errors: { count: r.failed + r.unfinished, messages: [...r.errors].map(([message, count]) => ({ message, count })) },
      worker: { ...figures, inProcess: true },
      machine: machineLine(),
    };
  } finally {
    await worker.stop().catch(() => undefined);
    await native.close().catch(() => undefined);
    await connection.close().catch(() => undefined);
  }
}
