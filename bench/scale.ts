/**
 * Scale: concurrent restore-test-shaped workflows (preflight, select, a heartbeating "restore",
 * validate, drop: activities that sleep 50, 50, 1000, 200 and 50 ms) started at once on one worker
 * with the project's production tuning (src/worker.ts DEFAULT_TUNING). Each count runs once per
 * round, the counts interleaved over the rounds; medians with their spread. For each count: the time
 * until all completed, each workflow's start-to-complete, the activities' schedule-to-start (measured
 * by the activities, as the SDK's metric is), the workflow tasks' schedule-to-start (from a sample of
 * histories: where the queue waits), the process's peak RSS, and how each grows with the count.
 *
 *   npm run bench:scale [-- --full | --smoke] [--out DIR]     # counts 1, 10, 100 (full: and 1,000)
 */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BenchWorker, benchTaskQueue, ensureRuntime, workflowTaskLatencies } from '../src/bench/engine';
import { percentiles, ProcessSampler } from '../src/bench/stats';
import { findTemporalCli, startTemporalDevServer, stopTemporalDevServer } from '../src/sandbox/temporal';
import { DEFAULT_TUNING } from '../src/worker';
import { beginBench, formatSummary, parseBenchArgs, Profile, ratio, Ratio, runMain, summarize, Summary, toolVersion } from './lib/report';

const PROFILES: Record<Profile, { counts: number[]; rounds: number; restoreMs: number; stepMs: number }> = {
  smoke: { counts: [1, 2], rounds: 1, restoreMs: 20, stepMs: 5 },
  quick: { counts: [1, 10, 100], rounds: 3, restoreMs: 1_000, stepMs: 50 },
  full: { counts: [1, 10, 100, 1000], rounds: 3, restoreMs: 1_000, stepMs: 50 },
};
/** Histories read per run for the workflow tasks' schedule-to-start. */
const HISTORY_SAMPLE = 50;

interface Run {
  seconds: number;
  perWorkflowP50: number;
  perWorkflowP99: number;
  activityS2sP50: number;
  activityS2sP99: number;
  workflowTaskS2sP50: number;
  workflowTaskS2sP99: number;
  rssPeakMb: number;
  cpuSeconds: number;
}

async function main(): Promise<void> {
  const args = parseBenchArgs();
  const p = PROFILES[args.profile];
  const bench = beginBench('scale', args);
  const dir = mkdtempSync(join(tmpdir(), 'runbook-bench-scale-'));
  ensureRuntime();
  const server = await startTemporalDevServer({ dir });
  const connection = await Connection.connect({ address: server.address });
  const native = await NativeConnection.connect({ address: server.address });
  const client = new Client({ connection });
  const taskQueue = benchTaskQueue('runbook-bench-scale');
  let timings: number[] = [];
  const { shutdownGraceTimeMs: _grace, ...tuning } = DEFAULT_TUNING;
  const worker = new BenchWorker({ connection: native, namespace: 'default', taskQueue, tuning, onActivityStarted: (t) => timings.push(t.scheduleToStartMs) });
  const runs: Record<number, Run[]> = Object.fromEntries(p.counts.map((n) => [n, []]));
  const input = { restoreMs: p.restoreMs, stepMs: p.stepMs };
  try {
    await worker.start();
    // Warm up the bundle and the sticky queue.
    await client.workflow.execute('benchRestoreShaped', { taskQueue, workflowId: `scale-warmup-${Date.now()}`, args: [{ restoreMs: 10, stepMs: 1 }] });
    console.log(`worker tuning: ${JSON.stringify(tuning)}; restore step ${p.restoreMs} ms, other steps ${p.stepMs}-${p.stepMs * 4} ms (ideal workflow: ${p.restoreMs + p.stepMs * 8} ms); ${p.rounds} rounds`);
    for (let round = 1; round <= p.rounds; round++) {
      for (const n of p.counts) {
        timings = [];
        const sampler = new ProcessSampler(100);
        const begun = performance.now();
        const ends: number[] = [];
        // Start all n at once (up to 200 start calls in flight), then wait for every one.
        const ids = Array.from({ length: n }, (_, i) => `scale-${n}-${round}-${i}-${Date.now()}`);
        const running: Promise<void>[] = [];
        for (let i = 0; i < n; i += 200) {
          await Promise.all(
            ids.slice(i, i + 200).map(async (workflowId) => {
              const t0 = performance.now();
              const h = await client.workflow.start('benchRestoreShaped', { taskQueue, workflowId, args: [input] });
              running.push(h.result().then(() => void ends.push(performance.now() - t0)));
            }),
          );
        }
        await Promise.all(running);
        const seconds = (performance.now() - begun) / 1000;
        const figures = sampler.stop();
        const sample = ids.filter((_, i) => i % Math.max(1, Math.floor(n / HISTORY_SAMPLE)) === 0).slice(0, HISTORY_SAMPLE);
        const wft = percentiles((await workflowTaskLatencies(client, sample)).scheduleToStartMs);
        const s2s = percentiles(timings);
        const e2e = percentiles(ends);
        const r: Run = {
          seconds,
          perWorkflowP50: e2e.p50,
          perWorkflowP99: e2e.p99,
          activityS2sP50: s2s.p50,
          activityS2sP99: s2s.p99,
          workflowTaskS2sP50: wft.p50,
          workflowTaskS2sP99: wft.p99,
          rssPeakMb: Math.round(figures.rssPeakBytes / 1_048_576),
          cpuSeconds: figures.cpuSeconds,
        };
        runs[n].push(r);
        console.log(
          `round ${round}: ${String(n).padStart(5)} workflows all completed in ${seconds.toFixed(2)} s, per workflow p50 ${e2e.p50} / p99 ${e2e.p99} ms; ` +
            `activity schedule-to-start p50 ${s2s.p50} / p99 ${s2s.p99} ms; workflow task schedule-to-start p50 ${wft.p50} / p99 ${wft.p99} ms (${wft.count} tasks of ${sample.length} histories); peak RSS ${r.rssPeakMb} MB; CPU ${figures.cpuSeconds} s`,
        );
      }
    }
    const keys: (keyof Run)[] = ['seconds', 'perWorkflowP50', 'perWorkflowP99', 'activityS2sP50', 'activityS2sP99', 'workflowTaskS2sP50', 'workflowTaskS2sP99', 'rssPeakMb', 'cpuSeconds'];
    const table = p.counts.map((n) => ({ workflows: n, ...(Object.fromEntries(keys.map((k) => [k, summarize(runs[n].map((r) => r[k]))])) as Record<keyof Run, Summary>) }));
    console.log(`medians of ${p.rounds} rounds (lowest-highest):`);
    for (const row of table) {
      console.log(
        `${String(row.workflows).padStart(5)} workflows: all completed ${formatSummary(row.seconds, 's', 2)}; per workflow p50 ${formatSummary(row.perWorkflowP50, 'ms', 0)}, p99 ${formatSummary(row.perWorkflowP99, 'ms', 0)}; ` +
          `activity schedule-to-start p99 ${formatSummary(row.activityS2sP99, 'ms', 0)}; workflow task schedule-to-start p99 ${formatSummary(row.workflowTaskS2sP99, 'ms', 0)}; peak RSS ${formatSummary(row.rssPeakMb, 'MB', 0)}`,
      );
    }
    const ratios: Ratio[] = [];
    for (let i = 1; i < table.length; i++) {
      const a = table[i - 1];
      const b = table[i];
      const step = `${a.workflows} -> ${b.workflows}`;
      ratios.push(ratio(`completion time ${step}`, b.seconds.median, a.seconds.median, `time until all ${b.workflows} completed / until all ${a.workflows} completed`));
      ratios.push(ratio(`peak RSS ${step}`, b.rssPeakMb.median, a.rssPeakMb.median, `peak RSS with ${b.workflows} / with ${a.workflows}`));
    }
    const last = table[table.length - 1];
    if (last.activityS2sP99.median > 0) {
      ratios.push(ratio(`workflow task / activity schedule-to-start p99 at ${last.workflows}`, last.workflowTaskS2sP99.median, last.activityS2sP99.median, `where the queue waits at ${last.workflows} workflows: workflow tasks' schedule-to-start p99 / activities'`));
    }
    bench.finish({ counts: p.counts, rounds: p.rounds, restoreMs: p.restoreMs, stepMs: p.stepMs, workerTuning: tuning }, { rows: table }, ratios, { temporal: toolVersion(findTemporalCli()) });
  } finally {
    await worker.stop().catch(() => undefined);
    await native.close().catch(() => undefined);
    await connection.close().catch(() => undefined);
    await stopTemporalDevServer(server.pid);
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain(main);
