/**
 * Orchestration overhead: a 50-step runbook of no-op activities against 50 direct calls of the same
 * no-op, measured side by side in one run, and what the added time per step is made of:
 *   - regular vs local activities: a local activity runs inside the workflow task, so the difference
 *     is the activity task's round trip through the server (dispatch, completion, a new workflow task);
 *   - the dev server in memory vs with its SQLite file: the cost of persisting each step;
 *   - from the histories: per step, schedule-to-start, start-to-close and the workflow task between steps.
 *
 *   npm run bench:orchestration            # BENCH_ROUNDS (default 5) interleaved rounds, medians
 */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { noopStep } from '../src/bench/activities';
import { BenchWorker, benchTaskQueue, ensureRuntime } from '../src/bench/engine';
import { describeMachine } from '../src/bench/stats';
import { startTemporalDevServer, stopTemporalDevServer, TemporalDevServerInfo } from '../src/sandbox/temporal';

const STEPS = 50;
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const toMs = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) => Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const f1 = (n: number) => n.toFixed(1);

interface Target {
  name: string;
  server: TemporalDevServerInfo;
  client: Client;
  connection: Connection;
  native: NativeConnection;
  worker: BenchWorker;
  taskQueue: string;
}

async function target(name: string, server: TemporalDevServerInfo): Promise<Target> {
  const connection = await Connection.connect({ address: server.address });
  const native = await NativeConnection.connect({ address: server.address });
  const taskQueue = benchTaskQueue('runbook-bench-orch');
  const worker = new BenchWorker({ connection: native, namespace: 'default', taskQueue });
  await worker.start();
  return { name, server, client: new Client({ connection }), connection, native, worker, taskQueue };
}

let seq = 0;
async function runSteps(t: Target, steps: number, local: boolean): Promise<{ ms: number; workflowId: string }> {
  const workflowId = `orch-${local ? 'local' : 'regular'}-${steps}-${seq++}`;
  const begun = performance.now();
  await t.client.workflow.execute('benchSteps', { taskQueue: t.taskQueue, workflowId, args: [{ steps, local }] });
  return { ms: performance.now() - begun, workflowId };
}

/** Per step of a regular-activity run: scheduled->started, started->completed, completed->next scheduled (the workflow task). */
async function stepAnatomy(t: Target, workflowId: string) {
  const events = (await t.client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  const scheduled = new Map<string, number>();
  const started = new Map<string, number>();
  const s2s: number[] = [];
  const s2c: number[] = [];
  const between: number[] = [];
  let lastCompleted: number | undefined;
  for (const e of events) {
    const at = toMs(e.eventTime as never);
    if (e.activityTaskScheduledEventAttributes) {
      scheduled.set(String(e.eventId), at);
      if (lastCompleted !== undefined) between.push(at - lastCompleted);
    }
    if (e.activityTaskStartedEventAttributes) started.set(String(e.activityTaskStartedEventAttributes.scheduledEventId), at);
    const done = e.activityTaskCompletedEventAttributes;
    if (done) {
      const id = String(done.scheduledEventId);
      s2s.push(started.get(id)! - scheduled.get(id)!);
      s2c.push(at - started.get(id)!);
      lastCompleted = at;
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  return { scheduleToStart: mean(s2s), startToClose: mean(s2c), workflowTask: mean(between) };
}

async function main(): Promise<void> {
  console.log(describeMachine());
  const dir = mkdtempSync(join(tmpdir(), 'runbook-bench-orch-'));
  ensureRuntime();
  const memory = await startTemporalDevServer({ dir: join(dir) });
  const sqlite = await startTemporalDevServer({ dir: mkdtempSync(join(dir, 'sqlite-')), dbFile: join(dir, 'temporal.sqlite') });
  const targets = [await target('in-memory', memory), await target('sqlite-file', sqlite)];
  try {
    // Warm up: bundle, connections, sticky queues.
    for (const t of targets) for (const local of [false, true]) await runSteps(t, 5, local);
    const direct: number[] = [];
    const times: Record<string, number[]> = {};
    const record = (k: string, ms: number) => (times[k] ??= []).push(ms);
    const anatomy: Record<string, ReturnType<typeof stepAnatomy> extends Promise<infer A> ? A[] : never> = {};
    for (let round = 1; round <= rounds; round++) {
      const begun = performance.now();
      for (let i = 0; i < STEPS; i++) await noopStep();
      direct.push(performance.now() - begun);
      for (const t of targets) {
        for (const local of [false, true]) {
          const kind = `${t.name} ${local ? 'local' : 'regular'}`;
          record(`${kind} 0`, (await runSteps(t, 0, local)).ms);
          const r = await runSteps(t, STEPS, local);
          record(`${kind} ${STEPS}`, r.ms);
          if (!local) (anatomy[t.name] ??= []).push(await stepAnatomy(t, r.workflowId));
        }
      }
      process.stderr.write(`round ${round}/${rounds} done\n`);
    }
    const directMs = median(direct);
    console.log(`${STEPS} direct calls of the no-op: ${(directMs * 1000).toFixed(1)} us in all (median of ${rounds})`);
    const perStep: Record<string, number> = {};
    for (const t of targets) {
      for (const kind of ['regular', 'local']) {
        const k = `${t.name} ${kind}`;
        const t0 = median(times[`${k} 0`]);
        const t50 = median(times[`${k} ${STEPS}`]);
        perStep[k] = (t50 - t0) / STEPS;
        console.log(`${k.padEnd(22)} ${STEPS}-step runbook ${f1(t50)} ms, 0-step runbook ${f1(t0)} ms: added per step ${f1(perStep[k])} ms (vs direct ${f1(((t50 - directMs) / STEPS))} ms incl. start and first task)`);
      }
      const a = anatomy[t.name];
      const avg = (key: 'scheduleToStart' | 'startToClose' | 'workflowTask') => median(a.map((x) => x[key]));
      console.log(`${t.name.padEnd(22)} per regular step, from history: schedule-to-start ${f1(avg('scheduleToStart'))} ms, start-to-close ${f1(avg('startToClose'))} ms, workflow task to the next step ${f1(avg('workflowTask'))} ms`);
    }
    const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
    console.log(`ratios: regular/local per step ${ratio(perStep['in-memory regular'], perStep['in-memory local'])} (in memory), ${ratio(perStep['sqlite-file regular'], perStep['sqlite-file local'])} (sqlite); ` +
      `sqlite/in-memory per regular step ${ratio(perStep['sqlite-file regular'], perStep['in-memory regular'])}, per local step ${ratio(perStep['sqlite-file local'], perStep['in-memory local'])}`);
    console.log(`split of a regular step (in memory): server round trip of the activity task ~${f1(perStep['in-memory regular'] - perStep['in-memory local'])} ms, worker-side (workflow code, local activity, markers) ~${f1(perStep['in-memory local'])} ms; persistence to SQLite adds ~${f1(perStep['sqlite-file regular'] - perStep['in-memory regular'])} ms per regular step`);
  } finally {
    for (const t of targets) {
      await t.worker.stop().catch(() => undefined);
      await t.native.close().catch(() => undefined);
      await t.connection.close().catch(() => undefined);
    }
    await stopTemporalDevServer(memory.pid);
    await stopTemporalDevServer(sqlite.pid);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
