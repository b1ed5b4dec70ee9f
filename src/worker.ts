import { join } from 'node:path';
import { bundleWorkflowCode, InjectedSinks, NativeConnection, Runtime, Worker, WorkerOptions } from '@temporalio/worker';
import type { DataConverter } from '@temporalio/common';
import { watchFile, unwatchFile } from 'node:fs';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createActivities, lazyClient } from './activities';
import { createPlanActivities } from './plan/recording';
import { PLANNERS } from './plan/planners';
import { planQueueFor } from './plan/types';
import { scratchHostQueue } from './activities/scratchHost';
import { dataConverterFor } from './codec';
import { credentialFiles, temporalConnectionSettings, TemporalConnectionSettings } from './config/connection';
import { parseDuration } from './config/duration';
import { checkSecretRefs, LoadedConfig, selectEnvironment } from './config/load';
import { QUEUE_KINDS, QueueKind, WorkerConfig } from './config/schema';
import { loadGeneratorQueue } from './activities/loadTest';
import { AppLogger, createLogger, SdkLoggerAdapter } from './observability/logger';
import { RunbookMetrics } from './observability/metrics';
import { runtimeInfo } from './observability/runtime';
import { cachedBundle } from './system/bundleCache';
import { FreshnessCollector } from './observability/freshness';
import { RUNBOOK_DEFAULT_QUEUE, ImplementedRunbook } from './workflows/catalog';
import { freePort, sleep } from './system/process';
import type { RunbookSinks } from './workflows/lib/sinks';

/** The checklist's production worker values; each can be overridden in config (worker.tuning) or by env. */
export const DEFAULT_TUNING = {
  maxConcurrentActivityTaskExecutions: 100,
  maxConcurrentLocalActivityExecutions: 100,
  maxConcurrentWorkflowTaskExecutions: 100,
  maxConcurrentWorkflowTaskPolls: 100,
  maxConcurrentActivityTaskPolls: 10,
  maxCachedWorkflows: 1000,
  shutdownGraceTimeMs: 30_000,
};
export type WorkerTuning = typeof DEFAULT_TUNING;

const TUNING_ENV: Record<keyof WorkerTuning, string> = {
  maxConcurrentActivityTaskExecutions: 'RUNBOOK_MAX_CONCURRENT_ACTIVITIES',
  maxConcurrentLocalActivityExecutions: 'RUNBOOK_MAX_CONCURRENT_LOCAL_ACTIVITIES',
  maxConcurrentWorkflowTaskExecutions: 'RUNBOOK_MAX_CONCURRENT_WORKFLOW_TASKS',
  maxConcurrentWorkflowTaskPolls: 'RUNBOOK_MAX_CONCURRENT_WORKFLOW_TASK_POLLS',
  maxConcurrentActivityTaskPolls: 'RUNBOOK_MAX_CONCURRENT_ACTIVITY_TASK_POLLS',
  maxCachedWorkflows: 'RUNBOOK_MAX_CACHED_WORKFLOWS',
  shutdownGraceTimeMs: 'RUNBOOK_SHUTDOWN_GRACE_TIME',
};

/** Tuning from defaults, then config, then environment variables; bad env values are refused by name. */
export function resolveTuning(config: WorkerConfig['tuning'], env: NodeJS.ProcessEnv = process.env): WorkerTuning {
  const { shutdownGraceTime, ...counts } = config;
  const tuning: WorkerTuning = { ...DEFAULT_TUNING, ...stripUndefined(counts) };
  if (shutdownGraceTime !== undefined) tuning.shutdownGraceTimeMs = shutdownGraceTime;
  for (const key of Object.keys(TUNING_ENV) as (keyof WorkerTuning)[]) {
    const name = TUNING_ENV[key];
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    if (key === 'shutdownGraceTimeMs') {
      const ms = parseDuration(raw);
      if (ms === undefined) throw new Error(`${name}: expected a duration such as "30s", found "${raw}"`);
      tuning.shutdownGraceTimeMs = ms;
    } else {
      const n = Number(raw);
      const min = key === 'maxCachedWorkflows' ? 0 : 1;
      if (!Number.isInteger(n) || n < min) throw new Error(`${name}: expected a whole number >= ${min}, found "${raw}"`);
      tuning[key] = n;
    }
  }
  if (tuning.maxConcurrentWorkflowTaskPolls > tuning.maxConcurrentWorkflowTaskExecutions) {
    throw new Error(
      `worker tuning: maxConcurrentWorkflowTaskPolls (${tuning.maxConcurrentWorkflowTaskPolls}) cannot exceed maxConcurrentWorkflowTaskExecutions (${tuning.maxConcurrentWorkflowTaskExecutions})`,
    );
  }
  return tuning;
}

function stripUndefined<T extends object>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Which queues this process serves: explicit list, then RUNBOOK_TASK_QUEUES, then config, then all three. */
export function resolveQueues(explicit: string[] | undefined, config: WorkerConfig): QueueKind[] {
  const fromEnv = process.env.RUNBOOK_TASK_QUEUES?.split(',').map((q) => q.trim()).filter(Boolean);
  const chosen = explicit ?? fromEnv ?? config.taskQueues ?? [...QUEUE_KINDS];
  const bad = chosen.filter((q) => !(QUEUE_KINDS as readonly string[]).includes(q));
  if (bad.length > 0) throw new Error(`task queues: unknown queue ${bad.map((b) => `'${b}'`).join(', ')}; expected some of ${QUEUE_KINDS.join(', ')}`);
  if (chosen.length === 0) throw new Error(`task queues: at least one of ${QUEUE_KINDS.join(', ')} is needed`);
  return [...new Set(chosen)] as QueueKind[];
}

/** The sinks every runbook reports its metrics through; their calls are not repeated when a history is replayed. */
export function runbookSinks(metrics: RunbookMetrics): InjectedSinks<RunbookSinks> {
  return {
    runbookMetrics: {
      runStarted: { fn: (_info, runbook, environment) => metrics.runStarted(runbook, environment), callDuringReplay: false },
      stepFinished: { fn: (_info, runbook, step, outcome, ms) => metrics.stepFinished(runbook, step, outcome, ms), callDuringReplay: false },
      runFinished: { fn: (_info, runbook, environment, outcome) => metrics.runFinished(runbook, environment, outcome), callDuringReplay: false },
      gateOpened: { fn: (_info, runbook, environment) => metrics.gateOpened(runbook, environment), callDuringReplay: false },
      gateClosed: { fn: (_info, runbook, environment) => metrics.gateClosed(runbook, environment), callDuringReplay: false },
      drillMeasured: { fn: (_info, environment, passed) => metrics.drillMeasured(environment, passed), callDuringReplay: false },
      readinessScored: { fn: (_info, environment, section, score) => metrics.readinessScored(environment, section, score), callDuringReplay: false },
      gateReminder: { fn: (_info, runbook, environment) => metrics.gateReminder(runbook, environment), callDuringReplay: false },
      actAccepted: { fn: (_info, runbook, environment, act, principal) => metrics.actAccepted(runbook, environment, act, principal), callDuringReplay: false },
      notificationSent: { fn: (_info, environment, channel) => metrics.notificationsSent.inc({ environment, channel }), callDuringReplay: false },
      notificationFailed: { fn: (_info, environment, channel) => metrics.notificationFailures.inc({ environment, channel }), callDuringReplay: false },
      actRefused: { fn: (_info, runbook, environment, kind) => metrics.actRefused(runbook, environment, kind), callDuringReplay: false },
      rolloutFinished: { fn: (_info, environment, outcome) => metrics.rolloutFinished(environment, outcome), callDuringReplay: false },
      rolloutPhase: { fn: (_info, environment, deployment, phase) => metrics.rolloutPhase(environment, deployment, phase), callDuringReplay: false },
    },
  };
}

/** A plan run's sinks: it is not a run of the runbook, so it counts in no metric. */
function silentSinks(): InjectedSinks<RunbookSinks> {
  const quiet = { fn: () => undefined, callDuringReplay: false };
  const fns = runbookSinks({} as RunbookMetrics).runbookMetrics;
  return { runbookMetrics: Object.fromEntries(Object.keys(fns).map((k) => [k, quiet])) as unknown as InjectedSinks<RunbookSinks>['runbookMetrics'] };
}

let runtimeInstalled: Promise<{ sdkMetricsUrl: string }> | undefined;

/** Seconds: 5 ms to a minute, for calls to the server and task latencies (13 buckets). */
const TASK_LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Seconds: 10 ms to two hours, for activities (a restore runs for an hour) and long polls. */
const ACTIVITY_LATENCY_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200];
/** Seconds: 100 ms to a day, for whole workflows (a drill waits hours at its gate). */
const WORKFLOW_LATENCY_BUCKETS = [0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 14400, 86400];

/**
 * Every latency histogram the SDK's Core records (the names as the Core spells them, before the
 * temporal_ prefix and the _seconds suffix), with buckets fine enough for percentiles: its defaults have six or
 * seven buckets for most of them (a p99 can only be one of those bounds), too coarse for the
 * checklist's "histogram buckets appropriate for latency tracking" (checkHistogramBuckets).
 */
export const SDK_HISTOGRAM_BUCKETS: Record<string, number[]> = {
  request_latency: TASK_LATENCY_BUCKETS,
  long_request_latency: ACTIVITY_LATENCY_BUCKETS,
  workflow_task_schedule_to_start_latency: TASK_LATENCY_BUCKETS,
  workflow_task_execution_latency: TASK_LATENCY_BUCKETS,
  workflow_task_replay_latency: TASK_LATENCY_BUCKETS,
  activity_schedule_to_start_latency: TASK_LATENCY_BUCKETS,
  activity_execution_latency: ACTIVITY_LATENCY_BUCKETS,
  activity_succeed_endtoend_latency: ACTIVITY_LATENCY_BUCKETS,
  local_activity_execution_latency: TASK_LATENCY_BUCKETS,
  local_activity_succeed_endtoend_latency: TASK_LATENCY_BUCKETS,
  nexus_task_schedule_to_start_latency: TASK_LATENCY_BUCKETS,
  nexus_task_execution_latency: ACTIVITY_LATENCY_BUCKETS,
  nexus_task_endtoend_latency: ACTIVITY_LATENCY_BUCKETS,
  workflow_endtoend_latency: WORKFLOW_LATENCY_BUCKETS,
};

/**
 * The SDK runtime is process-wide and can be installed once (the first worker's logger wins):
 * logs go to our JSON logger, metrics to a loopback exporter.
 */
function installRuntime(logger: AppLogger): Promise<{ sdkMetricsUrl: string }> {
  runtimeInstalled ??= freePort('127.0.0.1').then((port) => {
    Runtime.install({
      logger: new SdkLoggerAdapter(logger),
      // Prometheus conventions: counters end in _total, durations are seconds and say so.
      telemetryOptions: { metrics: { prometheus: { bindAddress: `127.0.0.1:${port}`, countersTotalSuffix: true, unitSuffix: true, useSecondsForDurations: true, histogramBucketOverrides: SDK_HISTOGRAM_BUCKETS } } },
    });
    return { sdkMetricsUrl: `http://127.0.0.1:${port}/metrics` };
  });
  return runtimeInstalled;
}

export interface RunbookWorkerOptions {
  loaded: LoadedConfig;
  environment?: string;
  queues?: string[];
  /** Port of the health/ready/metrics server; 0 picks a free one. Default from config (9464). */
  httpPort?: number;
  httpHost?: string;
  logger?: AppLogger;
  /**
   * Also (with queues: [] only) be the load generator: a worker on the environment's load-generator
   * queue (`<batch>-load-generator`) that runs the loadTest runbook's phases and fault commands, so
   * the load never runs inside a production worker.
   */
  loadGenerator?: boolean;
}

interface Generation {
  connection: NativeConnection;
  workers: Worker[];
  running: Promise<void>;
}

/** A batch worker also serves its host's scratch-instance queue (src/activities/scratchHost.ts). */
const extraWorkers = (queues: QueueKind[]) => (queues.includes('batch') ? 1 : 0);

/**
 * One worker process: a Temporal worker per task queue on one connection, an HTTP server for
 * /health, /ready and /metrics, reconnection until the server is reachable, and a new connection
 * when certificate files change.
 */
export class RunbookWorker {
  readonly environment: string;
  readonly queues: QueueKind[];
  readonly tuning: WorkerTuning;
  readonly metrics = new RunbookMetrics();
  readonly logger: AppLogger;
  private readonly loaded: LoadedConfig;
  private readonly settings: () => TemporalConnectionSettings;
  private readonly watched: string[];
  /** Payload encryption from temporal.encryption; keys are read once, at start. */
  private readonly dataConverter?: DataConverter;
  private http?: Server;
  private sdkMetricsUrl?: string;
  private generation?: Generation;
  private stopping = false;
  private rotating: Promise<void> = Promise.resolve();
  private rotationTimer?: NodeJS.Timeout;
  private finished!: Promise<void>;
  private workflowBundle?: { code: string };
  private readonly options: RunbookWorkerOptions;
  private stopFreshness?: () => Promise<void>;
  private freshnessStopped?: Promise<void>;

  constructor(options: RunbookWorkerOptions) {
    this.options = options;
    this.loaded = options.loaded;
    const { name, env } = selectEnvironment(options.loaded, options.environment);
    checkSecretRefs(options.loaded, [name], 'worker');
    this.environment = name;
    this.queues = options.loadGenerator && options.queues?.length === 0 ? [] : resolveQueues(options.queues, options.loaded.config.worker);
    this.tuning = resolveTuning(options.loaded.config.worker.tuning);
    this.logger = options.logger ?? createLogger(options.loaded.config.worker.logLevel);
    this.settings = () => temporalConnectionSettings(this.loaded, env.temporal);
    if (env.targets.rpo !== undefined) this.metrics.rpoTarget.set({ environment: name }, env.targets.rpo / 1000);
    if (env.targets.rto !== undefined) this.metrics.rtoTarget.set({ environment: name }, env.targets.rto / 1000);
    this.watched = credentialFiles(this.loaded, env.temporal);
    this.dataConverter = dataConverterFor(this.loaded, name, env.temporal);
  }

  /** Starts the HTTP server at once (so /health answers while connecting), then connects and polls in the background. */
  async start(): Promise<{ httpUrl: string }> {
    const runtime = await installRuntime(this.logger);
    this.sdkMetricsUrl = runtime.sdkMetricsUrl;
    const httpUrl = await this.startHttp();
    this.finished = this.connectAndRun();
    for (const file of this.watched) {
      watchFile(file, { interval: 1_000 }, (curr, prev) => {
        if (curr.mtimeMs !== prev.mtimeMs || curr.size !== prev.size) this.scheduleRotation(file);
      });
    }
    return { httpUrl };
  }

  /** Resolves when the worker has stopped; rejects if it failed for a reason a restart would not fix. */
  get done(): Promise<void> {
    return this.finished;
  }

  isReady(): boolean {
    const gen = this.generation;
    return !this.stopping && gen !== undefined && gen.workers.length === this.queues.length + (this.queues.length > 0 ? 1 : 0) + extraWorkers(this.queues) + (this.options.loadGenerator ? 1 : 0) && gen.workers.every((w) => w.getState() === 'RUNNING');
  }

  /** Waits until every queue is polling; rejects if the worker fails or stops first. */
  async waitUntilReady(timeoutMs = 180_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let failed: unknown;
    let ended = false;
    this.finished.then(
      () => (ended = true),
      (err) => (failed = err),
    );
    while (!this.isReady()) {
      if (failed) throw failed;
      if (ended || this.stopping) throw new Error('worker stopped before it was ready');
      if (Date.now() > deadline) throw new Error(`worker not polling after ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  taskQueueNames(): string[] {
    const { env } = selectEnvironment(this.loaded, this.environment);
    return [...this.queues.map((q) => env.temporal.taskQueues[q]), ...(this.queues.length > 0 ? [planQueueFor(env.temporal.taskQueues)] : []), ...(this.options.loadGenerator ? [loadGeneratorQueue(env.temporal.taskQueues.batch)] : [])];
  }

  private async connectAndRun(): Promise<void> {
    const connection = await this.connectWithRetry();
    if (!connection) return;
    const generation = await this.launch(connection);
    this.startFreshness();
    // A shutdown requested while the workers were being created must still reach them.
    if (this.stopping) for (const w of generation.workers) w.shutdown();
    await generation.running;
    // A rotation replaces the generation; wait for whichever is current when this one ends.
    while (this.generation && this.generation !== generation && !this.stopping) await this.generation.running;
  }

  private async connectWithRetry(): Promise<NativeConnection | undefined> {
    let delay = 500;
    for (let attempt = 1; !this.stopping; attempt++) {
      const settings = this.settings();
      try {
        const connection = await NativeConnection.connect({ address: settings.address, tls: settings.tls, apiKey: settings.apiKey });
        this.logger.info({ address: settings.address, namespace: settings.namespace, tls: Boolean(settings.tls), attempt }, 'connected to Temporal');
        return connection;
      } catch (err) {
        this.logger.warn({ address: settings.address, attempt, retryInMs: delay, err: (err as Error).message }, 'cannot reach Temporal yet; retrying');
        await sleep(delay);
        delay = Math.min(delay * 2, 10_000);
      }
    }
    return undefined;
  }

  private async bundle(): Promise<{ code: string }> {
    if (!this.workflowBundle) {
      // Failures raised in workflow code are converted inside the bundle, so an encrypted environment's
      // bundle carries its failure converter (and is cached under a name of its own).
      const failureConverterPath = this.dataConverter?.failureConverterPath;
      this.workflowBundle = await cachedBundle({
        sourceRoot: __dirname,
        lockFile: join(__dirname, '..', 'package-lock.json'),
        name: failureConverterPath ? 'workflows-encoded-failures' : 'workflows',
        build: () => bundleWorkflowCode({ workflowsPath: require.resolve('./workflows'), workflowInterceptorModules: [require.resolve('./workflows/planInterceptors')], failureConverterPath, logger: new SdkLoggerAdapter(this.logger.child({ component: 'bundler' }, { level: 'warn' })) }),
      });
    }
    return this.workflowBundle;
  }

  private async launch(connection: NativeConnection): Promise<Generation> {
    const { env } = selectEnvironment(this.loaded, this.environment);
    // The activities' own Temporal client lives as long as this generation's connection.
    const activityClient = lazyClient(this.loaded, this.environment);
    const activities = createActivities(this.loaded, this.environment, activityClient);
    const workflowBundle = await this.bundle();
    const namespace = this.settings().namespace;
    const sinks = runbookSinks(this.metrics);
    const workers: Worker[] = [];
    try {
      for (const kind of this.queues) {
        const options: WorkerOptions = {
          connection,
          namespace,
          taskQueue: env.temporal.taskQueues[kind],
          workflowBundle,
          activities,
          sinks,
          dataConverter: this.dataConverter,
          maxConcurrentActivityTaskExecutions: this.tuning.maxConcurrentActivityTaskExecutions,
          maxConcurrentLocalActivityExecutions: this.tuning.maxConcurrentLocalActivityExecutions,
          maxConcurrentWorkflowTaskExecutions: this.tuning.maxConcurrentWorkflowTaskExecutions,
          maxConcurrentWorkflowTaskPolls: this.tuning.maxConcurrentWorkflowTaskPolls,
          maxConcurrentActivityTaskPolls: this.tuning.maxConcurrentActivityTaskPolls,
          maxCachedWorkflows: this.tuning.maxCachedWorkflows,
          shutdownGraceTime: this.tuning.shutdownGraceTimeMs,
          // Past the grace period plus a margin, give up on draining rather than hang the process.
          shutdownForceTime: this.tuning.shutdownGraceTimeMs + 10_000,
        };
        workers.push(await Worker.create(options));
      }
      if (this.queues.length > 0) {
        // Plans: the same workflows on the environment's plan queue, with no activity that changes
        // anything (recording stand-ins instead) and no metrics, so a plan is neither an action nor a run.
        workers.push(
          await Worker.create({
            connection,
            namespace,
            taskQueue: planQueueFor(env.temporal.taskQueues),
            workflowBundle,
            activities: createPlanActivities({ environment: this.environment, env, real: activities, planners: PLANNERS }),
            sinks: silentSinks(),
            dataConverter: this.dataConverter,
            maxConcurrentActivityTaskExecutions: 10,
            maxConcurrentWorkflowTaskExecutions: 10,
            maxCachedWorkflows: 50,
            shutdownGraceTime: this.tuning.shutdownGraceTimeMs,
            shutdownForceTime: this.tuning.shutdownGraceTimeMs + 10_000,
          }),
        );
      }
      if (extraWorkers(this.queues)) {
        // Activities only: the restore test's scratch-instance steps, pinned to the host that holds the instance.
        workers.push(
          await Worker.create({
            connection,
            namespace,
            taskQueue: scratchHostQueue(env.temporal.taskQueues.batch),
            activities,
            dataConverter: this.dataConverter,
            maxConcurrentActivityTaskExecutions: this.tuning.maxConcurrentActivityTaskExecutions,
            maxConcurrentActivityTaskPolls: this.tuning.maxConcurrentActivityTaskPolls,
            shutdownGraceTime: this.tuning.shutdownGraceTimeMs,
            shutdownForceTime: this.tuning.shutdownGraceTimeMs + 10_000,
          }),
        );
      }
      if (this.options.loadGenerator) {
        // Activities only: the load test's phases (a bench worker and the load it drives) and its fault commands.
        workers.push(
          await Worker.create({
            connection,
            namespace,
            taskQueue: loadGeneratorQueue(env.temporal.taskQueues.batch),
            activities: { runLoadPhase: activities.runLoadPhase, recoverLoadTestFault: activities.recoverLoadTestFault },
            dataConverter: this.dataConverter,
            maxConcurrentActivityTaskExecutions: 4,
            shutdownGraceTime: this.tuning.shutdownGraceTimeMs,
            shutdownForceTime: this.tuning.shutdownGraceTimeMs + 10_000,
          }),
        );
      }
    } catch (err) {
      await connection.close().catch(() => undefined);
      await activityClient.close();
      throw err;
    }
    const running = Promise.all(workers.map((w) => w.run())).then(() => undefined);
    const generation: Generation = { connection, workers, running };
    this.generation = generation;
    this.logger.info({ environment: this.environment, namespace, taskQueues: this.taskQueueNames(), tuning: this.tuning }, 'worker polling');
    running.finally(() => Promise.all([connection.close().catch(() => undefined), activityClient.close()])).catch(() => undefined);
    return generation;
  }

  /** Freshness series for /metrics, read from Temporal on an interval (src/observability/freshness.ts). */
  private startFreshness(): void {
    if (this.stopping || this.stopFreshness) return;
    const { env } = selectEnvironment(this.loaded, this.environment);
    const client = lazyClient(this.loaded, this.environment);
    const collector = new FreshnessCollector({
      environment: this.environment,
      env,
      client,
      metrics: this.metrics,
      runbooks: Object.keys(RUNBOOK_DEFAULT_QUEUE) as ImplementedRunbook[],
      onError: (err) => this.logger.warn({ err: err.message }, 'cannot read runbook freshness from Temporal; keeping the last values'),
    });
    const stop = collector.start(this.loaded.config.worker.freshnessInterval);
    this.stopFreshness = () => stop().then(() => client.close());
  }

  /** A certificate and its key are replaced one file after the other: act once both have settled. */
  private scheduleRotation(file: string): void {
    clearTimeout(this.rotationTimer);
    this.rotationTimer = setTimeout(() => this.rotate(file), 1_000);
  }

  /** Certificates changed on disk: connect with the new ones, start polling, then drain the old workers. */
  private rotate(file: string): void {
    this.rotating = this.rotating.then(async () => {
      const old = this.generation;
      if (this.stopping || !old) return;
      this.logger.info({ file }, 'credential file changed; reconnecting with the new credentials');
      let connection: NativeConnection;
      try {
        const s = this.settings();
        connection = await NativeConnection.connect({ address: s.address, tls: s.tls, apiKey: s.apiKey });
      } catch (err) {
        this.logger.error({ file, err: (err as Error).message }, 'new credentials do not connect; keeping the current connection');
        return;
      }
      await this.launch(connection);
      for (const w of old.workers) w.shutdown();
      // The freshness collector reads with a client of its own: start it again on the new credentials.
      const stopFreshness = this.stopFreshness;
      this.stopFreshness = undefined;
      await stopFreshness?.().catch(() => undefined);
      this.startFreshness();
      await old.running.catch((err) => this.logger.warn({ err: (err as Error).message }, 'old worker generation ended with an error'));
      this.logger.info({ file }, 'credential rotation complete');
    });
  }

  /** Stops polling, lets running tasks finish within the grace period, closes everything. */
  async shutdown(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.freshnessStopped = this.stopFreshness?.().catch(() => undefined);
      this.metrics.workerReady.set(0);
      for (const file of this.watched) unwatchFile(file);
      clearTimeout(this.rotationTimer);
      this.logger.info({ graceMs: this.tuning.shutdownGraceTimeMs }, 'shutting down: no new tasks; running ones get the grace period');
      await this.rotating;
      for (const w of this.generation?.workers ?? []) if (w.getState() === 'RUNNING') w.shutdown();
    }
    try {
      await this.finished;
    } finally {
      await this.freshnessStopped;
      await new Promise<void>((resolve) => (this.http ? this.http.close(() => resolve()) : resolve()));
      this.logger.info('worker stopped');
    }
  }

  private startHttp(): Promise<string> {
    const host = this.options.httpHost ?? this.loaded.config.worker.http.host;
    const port = this.options.httpPort ?? this.loaded.config.worker.http.port;
    this.http = createServer((req, res) => void this.handleHttp(req, res));
    return new Promise((resolve, reject) => {
      this.http!.once('error', (err) => reject(new Error(`worker HTTP server cannot listen on ${host}:${port}: ${err.message} (set worker.http.port or --http-port)`)));
      this.http!.listen(port, host, () => {
        const addr = this.http!.address() as AddressInfo;
        resolve(`http://${host}:${addr.port}`);
      });
    });
  }

  private async handleHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (path === '/health') return json(200, { status: 'alive', runtime: runtimeInfo() });
    if (path === '/ready') {
      const ready = this.isReady();
      this.metrics.workerReady.set(ready ? 1 : 0);
      return json(ready ? 200 : 503, {
        status: ready ? 'ready' : this.stopping ? 'shutting down' : 'not ready',
        environment: this.environment,
        taskQueues: this.taskQueueNames(),
        workers: this.generation?.workers.map((w) => ({ taskQueue: w.options.taskQueue, state: w.getState() })) ?? [],
      });
    }
    if (path === '/metrics') {
      this.metrics.workerReady.set(this.isReady() ? 1 : 0);
      const body = await this.metrics.exposition(this.sdkMetricsUrl);
      res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
      return void res.end(body);
    }
    json(404, { error: `no such endpoint ${path}; try /health, /ready or /metrics` });
  }
}

/** `runbook worker`: runs until SIGTERM or SIGINT, then shuts down gracefully and exits 0. */
export async function runWorkerUntilSignalled(options: RunbookWorkerOptions): Promise<number> {
  const worker = new RunbookWorker(options);
  const { httpUrl } = await worker.start();
  worker.logger.info({ httpUrl, environment: worker.environment, queues: worker.queues }, 'worker started');
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      worker.logger.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    signalled = true;
    worker.logger.info({ signal }, 'signal received');
    worker.shutdown().catch(() => undefined);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await worker.done;
    await worker.shutdown();
    return 0;
  } catch (err) {
    worker.logger.error({ err: (err as Error).message }, 'worker failed');
    await worker.shutdown().catch(() => undefined);
    return 1;
  }
}
