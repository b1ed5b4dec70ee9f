/**
 * What a runbook step costs in orchestration, measured side by side in one run, interleaved over
 * several rounds (the order of the variants rotates every round), medians with their spread:
 *   - bare SDK: a 50-step workflow of regular activities that each echo a small object;
 *   - the runbook machinery: the same 50 steps through runRunbook and the timeline (one timeline step
 *     each, evidence, log lines, the metrics sink), on a worker with the runbook sinks, the JSON
 *     logger at info and AES-GCM payload encryption (src/codec) — what every runbook runs with;
 *   - the same bare steps as local activities;
 *   - the bare steps on the dev server with the server's own defaults (no sandbox dynamic config),
 *     and on the sandbox dev server keeping its state in a SQLite file.
 * The added time per step is (50-step workflow - 0-step workflow) / 50. From each run's history: per
 * step, the workflow task's schedule-to-start (server dispatch) and start-to-complete (the worker's
 * activation and the completion call), and the activity from scheduled to completed; and the CPU
 * the dev server and this process (worker and client) used per step.
 *
 *   npm run bench:orchestration [-- --full | --smoke] [--out DIR]
 */
import { Client, Connection } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { tsToMs } from '@temporalio/common/lib/time';
import { InjectedSinks, NativeConnection, Runtime } from '@temporalio/worker';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { BenchWorker, BenchWorkerOptions, benchTaskQueue } from '../src/bench/engine';
import { EncryptionCodec } from '../src/codec';
import { createLogger, SdkLoggerAdapter } from '../src/observability/logger';
import { RunbookMetrics } from '../src/observability/metrics';
import { SANDBOX_DYNAMIC_CONFIG, startTemporalDevServer, stopTemporalDevServer, TemporalDevServerInfo } from '../src/sandbox/temporal';
import { DEFAULT_TUNING, runbookSinks } from '../src/worker';
import type { RunbookSinks } from '../src/workflows/lib/sinks';
import { beginBench, formatSummary, pairedRatio, parseBenchArgs, Profile, ratio, runMain, summarize, Summary, toolVersion } from './lib/report';
import { findTemporalCli } from '../src/sandbox/temporal';

/** The smoke profile only checks that the script runs: the variants on the sandbox's dev server, not the two extra servers. */
const PROFILES: Record<Profile, { steps: number; rounds: number; warmups: number; extraServers: boolean }> = {
  smoke: { steps: 2, rounds: 1, warmups: 1, extraServers: false },
  quick: { steps: 50, rounds: 3, warmups: 2, extraServers: true },
  full: { steps: 50, rounds: 11, warmups: 2, extraServers: true },
};

interface Server {
  name: string;
  info: TemporalDevServerInfo;
  connection: Connection;
  native: NativeConnection;
}

interface Variant {
  key: string;
  label: string;
  server: Server;
  client: Client;
  taskQueue: string;
  workflowType: 'benchSteps' | 'benchRunbookSteps';
  local: boolean;
  perStepMs: number[];
  serverCpuMs: number[];
  processCpuMs: number[];
  anatomy: Anatomy[];
}

interface Anatomy {
  /** Workflow task scheduled -> started: the server hands the task to the worker's poller. */
  taskDispatch: number;
  /** Workflow task started -> completed: the worker's activation and its completion call. */
  taskExecution: number;
  /** Activity scheduled -> completed (eagerly dispatched with the task's completion). */
  activity: number;
  /** Activity completed -> next activity scheduled: everything the workflow task adds. */
  between: number;
}

/** CPU time of a process from /proc, in ms. */
function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}
const ownCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** The dev server's own latency histograms by service and operation (count, and sum in ms), from its Prometheus endpoint; long polls left out. */
async function serverOperations(metricsUrl: string): Promise<Map<string, { count: number; sumMs: number }>> {
  const ops = new Map<string, { count: number; sumMs: number }>();
  const text = await (await fetch(metricsUrl)).text();
  for (const line of text.split('\n')) {
    const m = /^(service_latency|persistence_latency)_(sum|count)\{(.*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const op = /operation="([^"]+)"/.exec(m[3])?.[1];
    if (!op || /^Poll|GetWorkflowExecutionHistory/.test(op)) continue;
    const service = m[1] === 'persistence_latency' ? 'persistence' : (/service_name="([^"]+)"/.exec(m[3])?.[1] ?? 'service');
    const key = `${service} ${op}`;
    const entry = ops.get(key) ?? { count: 0, sumMs: 0 };
    if (m[2] === 'count') entry.count += Number(m[4]);
    else entry.sumMs += Number(m[4]) * 1000;
    ops.set(key, entry);
  }
  return ops;
}

function diffOperations(after: Map<string, { count: number; sumMs: number }>, before: Map<string, { count: number; sumMs: number }>) {
  const d = new Map<string, { count: number; sumMs: number }>();
  for (const [k, v] of after) {
    const b = before.get(k) ?? { count: 0, sumMs: 0 };
    if (v.count - b.count > 0) d.set(k, { count: v.count - b.count, sumMs: v.sumMs - b.sumMs });
  }
  return d;
}

async function anatomy(client: Client, workflowId: string): Promise<Anatomy> {
  const events = (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  const d: Record<keyof Anatomy, number[]> = { taskDispatch: [], taskExecution: [], activity: [], between: [] };
  let wtScheduled = 0;
  let wtStarted = 0;
  let lastCompleted: number | undefined;
  const scheduled = new Map<string, number>();
  for (const e of events) {
    const at = tsToMs(e.eventTime);
    if (e.workflowTaskScheduledEventAttributes) wtScheduled = at;
    else if (e.workflowTaskStartedEventAttributes) {
      wtStarted = at;
      if (lastCompleted !== undefined) d.taskDispatch.push(at - wtScheduled);
    } else if (e.workflowTaskCompletedEventAttributes) {
      if (lastCompleted !== undefined) d.taskExecution.push(at - wtStarted);
    } else if (e.activityTaskScheduledEventAttributes) {
      scheduled.set(String(e.eventId), at);
      if (lastCompleted !== undefined) d.between.push(at - lastCompleted);
    } else if (e.activityTaskCompletedEventAttributes) {
      d.activity.push(at - scheduled.get(String(e.activityTaskCompletedEventAttributes.scheduledEventId))!);
      lastCompleted = at;
    }
  }
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
  return { taskDispatch: mean(d.taskDispatch), taskExecution: mean(d.taskExecution), activity: mean(d.activity), between: mean(d.between) };
}

async function main(): Promise<void> {
  const args = parseBenchArgs();
  const { steps, rounds, warmups, extraServers } = PROFILES[args.profile];
  const bench = beginBench('orchestration', args);
  const dir = mkdtempSync(join(tmpdir(), 'runbook-bench-orch-'));
  // The worker's log lines go where a production worker's would (pino JSON, synchronous writes), to a file here.
  const logFile = join(dir, 'worker.log');
  const logger = createLogger('info', pino.destination({ dest: logFile, sync: true }));
  Runtime.install({ logger: new SdkLoggerAdapter(logger) });
  const codec = new EncryptionCodec(new Map([['bench', randomBytes(32)]]), 'bench');
  const encrypted: DataConverter = { payloadCodecs: [codec] };
  const metrics = new RunbookMetrics();
  const sinks: InjectedSinks<RunbookSinks> = runbookSinks(metrics);
  const { shutdownGraceTimeMs: _grace, ...tuning } = DEFAULT_TUNING;

  const servers: Server[] = [];
  const workers: BenchWorker[] = [];
  const variants: Variant[] = [];
  try {
    const server = async (name: string, opts: { dynamicConfig?: Record<string, unknown>; sqlite?: boolean }) => {
      const info = await startTemporalDevServer({ dir: mkdtempSync(join(dir, `${name}-`)), dynamicConfig: opts.dynamicConfig, dbFile: opts.sqlite ? join(dir, `${name}.sqlite`) : undefined });
      const s: Server = { name, info, connection: await Connection.connect({ address: info.address }), native: await NativeConnection.connect({ address: info.address }) };
      servers.push(s);
      return s;
    };
    const worker = async (s: Server, opts: { sinks?: InjectedSinks<RunbookSinks>; dataConverter?: DataConverter; tuning?: BenchWorkerOptions['tuning'] } = {}) => {
      const taskQueue = benchTaskQueue(`runbook-bench-orch-${s.name}`);
      const w = new BenchWorker({ connection: s.native, namespace: 'default', taskQueue, tuning: opts.tuning ?? tuning, sinks: opts.sinks, dataConverter: opts.dataConverter });
      await w.start();
      workers.push(w);
      return taskQueue;
    };
    const variant = (key: string, label: string, s: Server, taskQueue: string, workflowType: Variant['workflowType'], local: boolean, dataConverter?: DataConverter) =>
      variants.push({ key, label, server: s, client: new Client({ connection: s.connection, dataConverter }), taskQueue, workflowType, local, perStepMs: [], serverCpuMs: [], processCpuMs: [], anatomy: [] });

    const [sandbox, stock, sqlite] = await Promise.all([
      server('sandbox', {}),
      extraServers ? server('stock', { dynamicConfig: {} }) : undefined,
      extraServers ? server('sqlite', { sqlite: true }) : undefined,
    ]);
    const bareQueue = await worker(sandbox);
    const machineryQueue = await worker(sandbox, { sinks, dataConverter: encrypted });
    variant('bare', 'bare SDK, regular activities', sandbox, bareQueue, 'benchSteps', false);
    variant('machinery', 'runbook machinery (timeline, sinks, logging, encryption), regular activities', sandbox, machineryQueue, 'benchRunbookSteps', false, encrypted);
    variant('local', 'bare SDK, local activities', sandbox, bareQueue, 'benchSteps', true);
    // Where the machinery's time goes: each half of it alone.
    variant('bareEncrypted', 'bare SDK, regular activities, with the payload encryption only', sandbox, await worker(sandbox, { dataConverter: encrypted }), 'benchSteps', false, encrypted);
    variant('machineryPlain', 'runbook machinery without payload encryption (timeline, sinks, logging), regular activities', sandbox, await worker(sandbox, { sinks }), 'benchRunbookSteps', false);
    variant('sdkDefaults', "bare SDK, regular activities, the SDK's default worker options instead of the production tuning", sandbox, await worker(sandbox, { tuning: {} }), 'benchSteps', false);
    variant('freshContext', 'bare SDK, regular activities, reuseV8Context off (a V8 context per workflow)', sandbox, await worker(sandbox, { tuning: { ...tuning, reuseV8Context: false } }), 'benchSteps', false);
    if (stock) variant('stock', "bare SDK, regular activities, dev server with the server's default dynamic config", stock, await worker(stock), 'benchSteps', false);
    if (sqlite) variant('sqlite', 'bare SDK, regular activities, dev server on its SQLite file', sqlite, await worker(sqlite), 'benchSteps', false);

    let seq = 0;
    const run = async (v: Variant, n: number) => {
      const workflowId = `orch-${v.key}-${n}-${seq++}`;
      const cpu0 = { server: processCpuMs(v.server.info.pid), own: ownCpuMs() };
      const begun = performance.now();
      await v.client.workflow.execute(v.workflowType, { taskQueue: v.taskQueue, workflowId, args: [{ steps: n, local: v.local }] });
      const ms = performance.now() - begun;
      return { ms, workflowId, serverCpu: processCpuMs(v.server.info.pid) - cpu0.server, ownCpu: ownCpuMs() - cpu0.own };
    };
    // Warm up: bundles, connections, sticky queues, the codec.
    for (const v of variants) for (let i = 0; i < warmups; i++) await run(v, Math.min(5, steps));
    // What the dev server does for the bare variant's steps, by operation: how often per step ((50-step run - 0-step run) / 50) and how long (the 50-step runs' mean).
    const opsFull = new Map<string, { count: number; sumMs: number }>();
    const opsEmpty = new Map<string, number>();
    const addOps = (d: Map<string, { count: number; sumMs: number }>, into: 'full' | 'empty') => {
      for (const [k, v] of d) {
        if (into === 'empty') opsEmpty.set(k, (opsEmpty.get(k) ?? 0) + v.count);
        else {
          const e = opsFull.get(k) ?? { count: 0, sumMs: 0 };
          opsFull.set(k, { count: e.count + v.count, sumMs: e.sumMs + v.sumMs });
        }
      }
    };
    for (let round = 0; round < rounds; round++) {
      // Rotate the order so no variant always runs first (or right after the slowest).
      const order = variants.map((_, i) => variants[(i + round) % variants.length]);
      for (const v of order) {
        const bare = v.key === 'bare';
        const ops0 = bare ? await serverOperations(v.server.info.metricsUrl) : undefined;
        const empty = await run(v, 0);
        const ops1 = bare ? await serverOperations(v.server.info.metricsUrl) : undefined;
        const full = await run(v, steps);
        if (bare) {
          addOps(diffOperations(await serverOperations(v.server.info.metricsUrl), ops1!), 'full');
          addOps(diffOperations(ops1!, ops0!), 'empty');
        }
        v.perStepMs.push((full.ms - empty.ms) / steps);
        v.serverCpuMs.push(Math.max(0, full.serverCpu - empty.serverCpu) / steps);
        v.processCpuMs.push(Math.max(0, full.ownCpu - empty.ownCpu) / steps);
        if (!v.local) v.anatomy.push(await anatomy(v.client, full.workflowId));
      }
      process.stderr.write(`round ${round + 1}/${rounds} done\n`);
    }

    const figures: Record<string, { label: string; perStepMs: Summary; serverCpuMsPerStep: Summary; processCpuMsPerStep: Summary; anatomyMs?: Record<keyof Anatomy, Summary> }> = {};
    console.log(`${steps}-step workflows, ${rounds} interleaved rounds; per step: median (lowest-highest) over the rounds`);
    for (const v of variants) {
      const f: (typeof figures)[string] = { label: v.label, perStepMs: summarize(v.perStepMs), serverCpuMsPerStep: summarize(v.serverCpuMs), processCpuMsPerStep: summarize(v.processCpuMs) };
      if (v.anatomy.length) {
        const keys: (keyof Anatomy)[] = ['taskDispatch', 'taskExecution', 'activity', 'between'];
        f.anatomyMs = Object.fromEntries(keys.map((k) => [k, summarize(v.anatomy.map((a) => a[k]))])) as Record<keyof Anatomy, Summary>;
      }
      figures[v.key] = f;
      console.log(`${v.key.padEnd(10)} ${formatSummary(f.perStepMs, 'ms')} per step; CPU per step: dev server ${formatSummary(f.serverCpuMsPerStep, 'ms')}, bench process ${formatSummary(f.processCpuMsPerStep, 'ms')} — ${v.label}`);
      if (f.anatomyMs) {
        const a = f.anatomyMs;
        console.log(
          `${''.padEnd(10)} from the histories, per step: workflow task dispatch ${formatSummary(a.taskDispatch, 'ms')}, workflow task execution ${formatSummary(a.taskExecution, 'ms')}, ` +
            `activity scheduled to completed ${formatSummary(a.activity, 'ms')}; activity completed to the next one scheduled ${formatSummary(a.between, 'ms')}`,
        );
      }
    }
    // Per regular step: how often the dev server handled each operation and how long it took on average.
    const perStep = rounds * steps;
    const serverPerStep = [...opsFull]
      .map(([op, v]) => ({ operation: op, perStep: Number(((v.count - (opsEmpty.get(op) ?? 0)) / perStep).toFixed(2)), meanMs: Number((v.sumMs / v.count).toFixed(2)) }))
      .filter((o) => o.perStep >= 0.5)
      .sort((a, b) => b.perStep * b.meanMs - a.perStep * a.meanMs);
    console.log(`the dev server, per regular step of the bare variant: ${serverPerStep.map((o) => `${o.operation} x${o.perStep} (${o.meanMs} ms)`).join(', ')}`);
    const m = (k: string) => figures[k].perStepMs.median;
    // CPU is steadier than wall time on a shared machine: both processes' CPU per step, the dev server's and the worker's.
    const cpu = (k: string) => figures[k].serverCpuMsPerStep.median + figures[k].processCpuMsPerStep.median;
    const ratios = [
      ratio('machinery/bare', m('machinery'), m('bare'), 'a regular step through the runbook machinery / the same step as a bare SDK activity (goal: at most 1.15)'),
      pairedRatio('machinery/bare, paired by round', variants.find((v) => v.key === 'machinery')!.perStepMs, variants.find((v) => v.key === 'bare')!.perStepMs, "the median of each round's machinery / bare ratio (the two ran in the same round, under its load)"),
      ratio('machinery/bare, CPU', cpu('machinery'), cpu('bare'), 'the CPU a step through the runbook machinery costs the dev server and the worker together / a bare SDK step'),
      ratio('encrypted/bare', m('bareEncrypted'), m('bare'), 'a bare SDK step with payload encryption / without: the codec alone'),
      ratio('machinery without encryption/bare', m('machineryPlain'), m('bare'), 'a step through the timeline, sinks and logging, without encryption / a bare SDK step'),
      ratio('regular/local', m('bare'), m('local'), 'a regular activity step / a local activity step'),
      ...(stock ? [ratio('stock/sandbox', m('stock'), m('bare'), "a regular step on the dev server with the server's default dynamic config / with the sandbox's")] : []),
      ...(sqlite ? [ratio('sqlite/memory', m('sqlite'), m('bare'), 'a regular step on the dev server with its SQLite file / in memory')] : []),
      ratio('sdk defaults/production tuning', m('sdkDefaults'), m('bare'), "a regular step on a worker with the SDK's default options / with DEFAULT_TUNING"),
      ratio('fresh context/reused', m('freshContext'), m('bare'), 'a regular step with reuseV8Context off / on'),
    ];
    bench.finish({ steps, rounds, devServerDynamicConfig: SANDBOX_DYNAMIC_CONFIG, workerTuning: tuning }, { variants: figures, serverPerStep }, ratios, { temporal: toolVersion(findTemporalCli()) });
  } finally {
    for (const w of workers) await w.stop().catch(() => undefined);
    for (const s of servers) {
      await s.native.close().catch(() => undefined);
      await s.connection.close().catch(() => undefined);
      await stopTemporalDevServer(s.info.pid);
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain(main);
