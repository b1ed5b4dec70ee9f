/**
 * Sticky cache on vs off at 1,000 cached workflows. Each variant runs in a process of its own (so
 * memory figures do not mix) against the same dev server: 1,000 workflows each run 5 activities and
 * park on a signal; with the cache on (maxCachedWorkflows 2000) they stay in the worker's memory,
 * with it off (0) every workflow task replays the history from the start. Then every workflow is
 * signalled and finishes. Reported: RSS with the workflows parked, the workflow-task latencies from
 * the histories (all tasks, and the task that handles the signal), and signal-to-completion time.
 *
 *   npm run bench:sticky                   # BENCH_WORKFLOWS=1000 BENCH_STEPS=5
 */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BenchWorker, benchTaskQueue, ensureRuntime } from '../src/bench/engine';
import { describeMachine, percentiles, Percentiles } from '../src/bench/stats';
import { startTemporalDevServer, stopTemporalDevServer } from '../src/sandbox/temporal';

const N = Number(process.env.BENCH_WORKFLOWS ?? 1_000);
const STEPS = Number(process.env.BENCH_STEPS ?? 5);
const toMs = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) => Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface VariantResult {
  variant: string;
  maxCachedWorkflows: number;
  parkSeconds: number;
  rssBeforeMb: number;
  rssParkedMb: number;
  rssPeakMb: number;
  signalToCompleteMs: Percentiles;
  wftStartToCompleteMs: Percentiles;
  wftScheduleToStartMs: Percentiles;
  signalTaskStartToCompleteMs: Percentiles;
  cpuSeconds: number;
}

async function pool<T>(items: T[], width: number, fn: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (i < items.length) await fn(items[i++]);
  }));
}

async function variant(address: string, name: string): Promise<VariantResult> {
  ensureRuntime();
  const maxCachedWorkflows = name === 'on' ? 2_000 : 0;
  const connection = await Connection.connect({ address });
  const native = await NativeConnection.connect({ address });
  const client = new Client({ connection });
  const taskQueue = benchTaskQueue(`runbook-bench-sticky-${name}`);
  let activities = 0;
  const worker = new BenchWorker({ connection: native, namespace: 'default', taskQueue, tuning: { maxCachedWorkflows }, onActivityStarted: () => activities++ });
  const mb = (n: number) => Math.round(n / 1_048_576);
  let rssPeak = 0;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage.rss())), 100);
  const cpu0 = process.cpuUsage();
  try {
    await worker.start();
    await client.workflow.start('benchParked', { taskQueue, workflowId: `${taskQueue}-warmup`, args: [{ steps: 1 }] }).then((h) => sleep(500).then(() => h.signal('proceed')).then(() => h.result()));
    const rssBefore = process.memoryUsage.rss();
    const ids = Array.from({ length: N }, (_, i) => `${taskQueue}-${i}`);
    const t0 = performance.now();
    await pool(ids, 100, async (workflowId) => void (await client.workflow.start('benchParked', { taskQueue, workflowId, args: [{ steps: STEPS }] })));
    while (activities < N * STEPS + 2) await sleep(100);
    await sleep(2_000); // the last workflow tasks (each parking on the signal) complete
    const parkSeconds = (performance.now() - t0) / 1000;
    const rssParked = process.memoryUsage.rss();
    const signalToComplete: number[] = [];
    await pool(ids, 50, async (workflowId) => {
      const h = client.workflow.getHandle(workflowId);
      const s = performance.now();
      await h.signal('proceed');
      await h.result();
      signalToComplete.push(performance.now() - s);
    });
    const all: number[] = [];
    const s2s: number[] = [];
    const signalTask: number[] = [];
    for (const id of ids.filter((_, i) => i % 10 === 0)) {
      const events = (await client.workflow.getHandle(id).fetchHistory()).events ?? [];
      let scheduled = 0;
      let started = 0;
      let afterSignal = false;
      let signalTaskStarted = false;
      for (const e of events) {
        const at = toMs(e.eventTime as never);
        if (e.workflowExecutionSignaledEventAttributes) afterSignal = true;
        if (e.workflowTaskScheduledEventAttributes) scheduled = at;
        if (e.workflowTaskStartedEventAttributes) {
          started = at;
          s2s.push(at - scheduled);
          signalTaskStarted = afterSignal;
        }
        if (e.workflowTaskCompletedEventAttributes) {
          all.push(at - started);
          if (signalTaskStarted) {
            signalTask.push(at - started);
            afterSignal = false;
            signalTaskStarted = false;
          }
        }
      }
    }
    const cpu = process.cpuUsage(cpu0);
    return {
      variant: name,
      maxCachedWorkflows,
      parkSeconds: Math.round(parkSeconds * 10) / 10,
      rssBeforeMb: mb(rssBefore),
      rssParkedMb: mb(rssParked),
      rssPeakMb: mb(rssPeak),
      signalToCompleteMs: percentiles(signalToComplete),
      wftStartToCompleteMs: percentiles(all),
      wftScheduleToStartMs: percentiles(s2s),
      signalTaskStartToCompleteMs: percentiles(signalTask),
      cpuSeconds: Math.round(((cpu.user + cpu.system) / 1e6) * 10) / 10,
    };
  } finally {
    clearInterval(sampler);
    await worker.stop().catch(() => undefined);
    await native.close().catch(() => undefined);
    await connection.close().catch(() => undefined);
  }
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--variant');
  if (i > 0) {
    const result = await variant(process.argv[process.argv.indexOf('--address') + 1], process.argv[i + 1]);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  console.log(describeMachine());
  console.log(`${N} workflows of ${STEPS} activities each, parked on a signal, then signalled; each variant in its own process against one dev server`);
  const dir = mkdtempSync(join(tmpdir(), 'runbook-bench-sticky-'));
  const server = await startTemporalDevServer({ dir });
  const results: Record<string, VariantResult> = {};
  try {
    for (const name of ['off', 'on']) {
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', __filename, '--variant', name, '--address', server.address], { maxBuffer: 16 << 20 });
      const r = JSON.parse(stdout.trim().split('\n').pop()!) as VariantResult;
      results[name] = r;
      const p = (x: Percentiles) => `p50 ${x.p50} ms, p99 ${x.p99} ms`;
      console.log(`cache ${name} (maxCachedWorkflows ${r.maxCachedWorkflows}): ${N} parked in ${r.parkSeconds} s; RSS ${r.rssBeforeMb} MB before, ${r.rssParkedMb} MB parked, peak ${r.rssPeakMb} MB; CPU ${r.cpuSeconds} s`);
      console.log(`  workflow task start-to-complete (all tasks, ${r.wftStartToCompleteMs.count} sampled) ${p(r.wftStartToCompleteMs)}; schedule-to-start ${p(r.wftScheduleToStartMs)}`);
      console.log(`  the task handling the signal: start-to-complete ${p(r.signalTaskStartToCompleteMs)}; signal to completion from the client ${p(r.signalToCompleteMs)}`);
    }
    const on = results.on;
    const off = results.off;
    const r = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a');
    console.log(
      `ratios off/on: workflow task start-to-complete p50 ${r(off.wftStartToCompleteMs.p50, on.wftStartToCompleteMs.p50)}, p99 ${r(off.wftStartToCompleteMs.p99, on.wftStartToCompleteMs.p99)}; ` +
        `signal task p50 ${r(off.signalTaskStartToCompleteMs.p50, on.signalTaskStartToCompleteMs.p50)}; signal to completion p50 ${r(off.signalToCompleteMs.p50, on.signalToCompleteMs.p50)}; ` +
        `CPU ${r(off.cpuSeconds, on.cpuSeconds)}; memory with ${N} parked: on uses ${on.rssParkedMb - on.rssBeforeMb} MB more than before parking, off ${off.rssParkedMb - off.rssBeforeMb} MB (${(((on.rssParkedMb - on.rssBeforeMb) * 1024) / N).toFixed(0)} KB per cached workflow)`,
    );
  } finally {
    await stopTemporalDevServer(server.pid);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
