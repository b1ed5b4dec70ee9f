/**
 * Scale: 1, 10, 100 and 1,000 concurrent restore-test-shaped workflows (preflight, select, a 1 s
 * heartbeating "restore", validate, drop: activities that sleep) on one worker with the project's
 * production tuning (src/worker.ts DEFAULT_TUNING: 100 activity slots, 100 workflow task slots,
 * 1,000 cached workflows). For each count: completion time of the batch, activity schedule-to-start
 * p50/p99, the process's peak RSS, and how each grows with the count.
 *
 *   npm run bench:scale                    # BENCH_COUNTS=1,10,100,1000 BENCH_RESTORE_MS=1000
 */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BenchWorker, benchTaskQueue, ensureRuntime } from '../src/bench/engine';
import { describeMachine, percentiles, ProcessSampler } from '../src/bench/stats';
import { startTemporalDevServer, stopTemporalDevServer } from '../src/sandbox/temporal';
import { DEFAULT_TUNING } from '../src/worker';

const counts = (process.env.BENCH_COUNTS ?? '1,10,100,1000').split(',').map(Number);
const restoreMs = Number(process.env.BENCH_RESTORE_MS ?? 1_000);
const mb = (n: number) => (n / 1_048_576).toFixed(0);

async function main(): Promise<void> {
  console.log(describeMachine());
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
  try {
    await worker.start();
    // Warm up the bundle and the sticky queue.
    await client.workflow.execute('benchRestoreShaped', { taskQueue, workflowId: `scale-warmup-${Date.now()}`, args: [{ restoreMs: 10, stepMs: 1 }] });
    console.log(`worker tuning: ${JSON.stringify(tuning)}; restore step ${restoreMs} ms, other steps 50-200 ms (ideal workflow: ${restoreMs + 400} ms)`);
    const rows: { n: number; seconds: number; p50: number; p99: number; e2eP50: number; rssPeak: number }[] = [];
    for (const n of counts) {
      timings = [];
      const sampler = new ProcessSampler(100);
      const begun = performance.now();
      const ends: number[] = [];
      // Start all n at once (up to 200 start calls in flight), then wait for every one.
      const ids = Array.from({ length: n }, (_, i) => `scale-${n}-${i}-${Date.now()}`);
      const running: Promise<void>[] = [];
      for (let i = 0; i < n; i += 200) {
        const batch = ids.slice(i, i + 200).map(async (workflowId) => {
          const t0 = performance.now();
          const h = await client.workflow.start('benchRestoreShaped', { taskQueue, workflowId, args: [{ restoreMs }] });
          running.push(h.result().then(() => void ends.push(performance.now() - t0)));
        });
        await Promise.all(batch);
      }
      await Promise.all(running);
      const seconds = (performance.now() - begun) / 1000;
      const figures = sampler.stop();
      const s2s = percentiles(timings);
      const e2e = percentiles(ends);
      rows.push({ n, seconds, p50: s2s.p50, p99: s2s.p99, e2eP50: e2e.p50, rssPeak: figures.rssPeakBytes });
      console.log(`${String(n).padStart(5)} workflows: all completed in ${seconds.toFixed(2)} s (${(n / seconds).toFixed(1)} workflows/s), per workflow p50 ${e2e.p50} ms p99 ${e2e.p99} ms; activity schedule-to-start p50 ${s2s.p50} ms p99 ${s2s.p99} ms (${s2s.count}); peak RSS ${mb(figures.rssPeakBytes)} MB (from ${mb(figures.rssStartBytes)} MB), CPU ${figures.cpuSeconds} s`);
    }
    console.log('growth from one count to the next (count x10):');
    for (let i = 1; i < rows.length; i++) {
      const a = rows[i - 1];
      const b = rows[i];
      const r = (x: number, y: number) => (y > 0 ? `${(x / y).toFixed(2)}x` : 'n/a');
      console.log(`  ${a.n} -> ${b.n}: completion time ${r(b.seconds, a.seconds)}, schedule-to-start p50 ${r(b.p50, a.p50)} p99 ${r(b.p99, a.p99)}, peak RSS ${r(b.rssPeak, a.rssPeak)}`);
    }
  } finally {
    await worker.stop().catch(() => undefined);
    await native.close().catch(() => undefined);
    await connection.close().catch(() => undefined);
    await stopTemporalDevServer(server.pid);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
