/**
 * The sticky cache on and off, side by side. N workflows each run a few activities and park on a
 * signal; with the cache on (maxCachedWorkflows 2 x N) they stay in the worker's memory, with it off
 * (0) every workflow task replays the history from the start. Then every workflow is signalled and
 * finishes. Each variant runs in a fresh process of its own (so memory figures do not mix) against
 * one dev server; the variants alternate over several rounds (off, on, then on, off, ...), and the
 * figures are medians with their spread. Reported: RSS growth with the workflows parked, the
 * workflow-task latencies from a sample of histories (all tasks, and the task that handles the
 * signal), signal-to-completion from the client, the time to start and park them all, and CPU.
 *
 *   npm run bench:sticky [-- --full | --smoke] [--out DIR]      # 50 workflows (full: 1,000)
 */
import { Client, Connection } from '@temporalio/client';
import { tsToMs } from '@temporalio/common/lib/time';
import { NativeConnection } from '@temporalio/worker';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { benchBundle, BenchWorker, benchTaskQueue, ensureRuntime } from '../src/bench/engine';
import { percentiles } from '../src/bench/stats';
import { findTemporalCli, startTemporalDevServer, stopTemporalDevServer } from '../src/sandbox/temporal';
import { beginBench, formatSummary, parseBenchArgs, Profile, ratio, runMain, summarize, Summary, toolVersion } from './lib/report';

const PROFILES: Record<Profile, { workflows: number; steps: number; rounds: number }> = {
  smoke: { workflows: 3, steps: 1, rounds: 1 },
  quick: { workflows: 50, steps: 5, rounds: 3 },
  full: { workflows: 1000, steps: 5, rounds: 3 },
};
const VARIANTS = ['off', 'on'] as const;
type VariantName = (typeof VARIANTS)[number];

/** One variant's run, as its process reports it. */
interface VariantRun {
  variant: VariantName;
  maxCachedWorkflows: number;
  parkSeconds: number;
  rssGrowthMb: number;
  rssPeakMb: number;
  signalToCompleteP50: number;
  signalToCompleteP99: number;
  taskStartToCompleteP50: number;
  taskStartToCompleteP99: number;
  signalTaskP50: number;
  signalTaskP99: number;
  cpuSeconds: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function pool<T>(items: T[], width: number, fn: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (i < items.length) await fn(items[i++]);
    }),
  );
}

/** Runs in the variant's own process: start and park N workflows, signal them all, read a sample of histories. */
async function variant(address: string, name: VariantName, n: number, steps: number, codePath: string): Promise<VariantRun> {
  ensureRuntime();
  const maxCachedWorkflows = name === 'on' ? 2 * n : 0;
  const connection = await Connection.connect({ address });
  const native = await NativeConnection.connect({ address });
  const client = new Client({ connection });
  const taskQueue = benchTaskQueue(`runbook-bench-sticky-${name}`);
  let activities = 0;
  const worker = new BenchWorker({ connection: native, namespace: 'default', taskQueue, tuning: { maxCachedWorkflows }, onActivityStarted: () => activities++, workflowBundle: { codePath } });
  const mb = (x: number) => Math.round(x / 1_048_576);
  let rssPeak = 0;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage.rss())), 100);
  try {
    await worker.start();
    const warm = await client.workflow.start('benchParked', { taskQueue, workflowId: `${taskQueue}-warmup`, args: [{ steps: 1 }] });
    await sleep(500);
    await warm.signal('proceed');
    await warm.result();
    const rssBefore = process.memoryUsage.rss();
    const cpu0 = process.cpuUsage();
    const ids = Array.from({ length: n }, (_, i) => `${taskQueue}-${i}`);
    const t0 = performance.now();
    await pool(ids, 100, async (workflowId) => void (await client.workflow.start('benchParked', { taskQueue, workflowId, args: [{ steps }] })));
    while (activities < n * steps + 2) await sleep(100);
    // Parked means the task after the last activity has completed: wait until every workflow's last event is that task's completion.
    const parkedIds = new Set<string>();
    while (parkedIds.size < n) {
      await pool(
        ids.filter((id) => !parkedIds.has(id)),
        20,
        async (id) => {
          const { events } = await client.workflow.getHandle(id).fetchHistory();
          if (events?.at(-1)?.workflowTaskCompletedEventAttributes) parkedIds.add(id);
        },
      );
      if (parkedIds.size < n) await sleep(200);
    }
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
    const cpu = process.cpuUsage(cpu0);
    const all: number[] = [];
    const signalTask: number[] = [];
    for (const id of ids.filter((_, i) => i % Math.max(1, Math.floor(n / 100)) === 0)) {
      const events = (await client.workflow.getHandle(id).fetchHistory()).events ?? [];
      let started = 0;
      let afterSignal = false;
      let signalTaskStarted = false;
      for (const e of events) {
        const at = tsToMs(e.eventTime);
        if (e.workflowExecutionSignaledEventAttributes) afterSignal = true;
        if (e.workflowTaskStartedEventAttributes) {
          started = at;
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
    const s2c = percentiles(signalToComplete);
    const wft = percentiles(all);
    const sig = percentiles(signalTask);
    return {
      variant: name,
      maxCachedWorkflows,
      parkSeconds: Math.round(parkSeconds * 10) / 10,
      rssGrowthMb: mb(rssParked - rssBefore),
      rssPeakMb: mb(rssPeak),
      signalToCompleteP50: s2c.p50,
      signalToCompleteP99: s2c.p99,
      taskStartToCompleteP50: wft.p50,
      taskStartToCompleteP99: wft.p99,
      signalTaskP50: sig.p50,
      signalTaskP99: sig.p99,
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
  const argv = process.argv.slice(2);
  const v = argv.indexOf('--variant');
  if (v >= 0) {
    const get = (flag: string) => argv[argv.indexOf(flag) + 1];
    const result = await variant(get('--address'), get('--variant') as VariantName, Number(get('--workflows')), Number(get('--steps')), get('--bundle'));
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const args = parseBenchArgs(argv);
  const p = PROFILES[args.profile];
  const bench = beginBench('sticky', args);
  console.log(`${p.workflows} workflows of ${p.steps} activities each, parked on a signal, then signalled; each variant in a fresh process of its own against one dev server; ${p.rounds} rounds, the order alternating`);
  const dir = mkdtempSync(join(tmpdir(), 'runbook-bench-sticky-'));
  const server = await startTemporalDevServer({ dir });
  // Bundled once here; every variant process loads the same code.
  const bundleFile = join(dir, 'bench-workflows.js');
  writeFileSync(bundleFile, (await benchBundle()).code);
  const runs: Record<VariantName, VariantRun[]> = { off: [], on: [] };
  try {
    for (let round = 0; round < p.rounds; round++) {
      const order = round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse();
      for (const name of order) {
        const { stdout } = await promisify(execFile)(
          process.execPath,
          ['--import', 'tsx', __filename, '--variant', name, '--address', server.address, '--workflows', String(p.workflows), '--steps', String(p.steps), '--bundle', bundleFile],
          { maxBuffer: 16 << 20 },
        );
        const r = JSON.parse(stdout.trim().split('\n').pop()!) as VariantRun;
        runs[name].push(r);
        console.log(
          `round ${round + 1}, cache ${name} (maxCachedWorkflows ${r.maxCachedWorkflows}): parked in ${r.parkSeconds} s, RSS +${r.rssGrowthMb} MB parked (peak ${r.rssPeakMb} MB), ` +
            `workflow task p50 ${r.taskStartToCompleteP50} / p99 ${r.taskStartToCompleteP99} ms, signal task p50 ${r.signalTaskP50} ms, signal to completion p50 ${r.signalToCompleteP50} / p99 ${r.signalToCompleteP99} ms, CPU ${r.cpuSeconds} s`,
        );
      }
    }
    const keys = ['parkSeconds', 'rssGrowthMb', 'rssPeakMb', 'signalToCompleteP50', 'signalToCompleteP99', 'taskStartToCompleteP50', 'taskStartToCompleteP99', 'signalTaskP50', 'signalTaskP99', 'cpuSeconds'] as const;
    const figures = Object.fromEntries(VARIANTS.map((name) => [name, Object.fromEntries(keys.map((k) => [k, summarize(runs[name].map((r) => r[k]))]))])) as Record<VariantName, Record<(typeof keys)[number], Summary>>;
    for (const name of VARIANTS) {
      const f = figures[name];
      console.log(
        `cache ${name}, medians of ${p.rounds}: workflow task start-to-complete p50 ${formatSummary(f.taskStartToCompleteP50, 'ms', 0)}, p99 ${formatSummary(f.taskStartToCompleteP99, 'ms', 0)}; ` +
          `signal task p50 ${formatSummary(f.signalTaskP50, 'ms', 0)}; signal to completion p50 ${formatSummary(f.signalToCompleteP50, 'ms', 0)}; park ${formatSummary(f.parkSeconds, 's')}; CPU ${formatSummary(f.cpuSeconds, 's')}; RSS growth ${formatSummary(f.rssGrowthMb, 'MB', 0)}`,
      );
    }
    const m = (name: VariantName, k: (typeof keys)[number]) => figures[name][k].median;
    const ratios = [
      ratio('workflow task p50 off/on', m('off', 'taskStartToCompleteP50'), m('on', 'taskStartToCompleteP50'), 'workflow task start-to-complete p50, cache off / on'),
      ratio('workflow task p99 off/on', m('off', 'taskStartToCompleteP99'), m('on', 'taskStartToCompleteP99'), 'workflow task start-to-complete p99, cache off / on'),
      ratio('signal task p50 off/on', m('off', 'signalTaskP50'), m('on', 'signalTaskP50'), 'the task that handles the signal, p50, cache off / on'),
      ratio('signal to completion p50 off/on', m('off', 'signalToCompleteP50'), m('on', 'signalToCompleteP50'), 'signal to completion from the client, p50, cache off / on'),
      ratio('park time off/on', m('off', 'parkSeconds'), m('on', 'parkSeconds'), `time to start and park the ${p.workflows}, cache off / on`),
      ratio('worker CPU off/on', m('off', 'cpuSeconds'), m('on', 'cpuSeconds'), 'the variant process CPU from the first start to the last completion, cache off / on'),
    ];
    // What the cache holds is what the cache-on process grew beyond the cache-off one (which grows too: garbage, buffers).
    const perWorkflowKb = ((m('on', 'rssGrowthMb') - m('off', 'rssGrowthMb')) * 1024) / p.workflows;
    console.log(
      `memory: with ${p.workflows} parked the cache-on process grew ${m('on', 'rssGrowthMb')} MB, the cache-off one ${m('off', 'rssGrowthMb')} MB: about ${perWorkflowKb.toFixed(0)} KB per cached workflow (medians)`,
    );
    bench.finish({ workflows: p.workflows, steps: p.steps, rounds: p.rounds }, { ...figures, cachedWorkflowKb: Math.round(perWorkflowKb) }, ratios, { temporal: toolVersion(findTemporalCli()) });
  } finally {
    await stopTemporalDevServer(server.pid);
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain(main);
