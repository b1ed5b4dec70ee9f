/**
 * DR drill benchmark: the RTO of a failover drill in the sandbox, split into the database and DNS
 * work itself (activity execution) and orchestration (scheduling activities, workflow tasks, the time
 * between steps), from the workflow history of each drill.
 *
 *   npm run bench:drill [-- --full | --smoke] [--out DIR]   # 3 drills (full: 7), failover with failback; the roles alternate
 *
 * Not a test: nothing here asserts.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectClient } from '../src/cli/client';
import { loadConfig } from '../src/config/load';
import { createLogger } from '../src/observability/logger';
import { sandboxKey, startStack, stopStack } from '../src/sandbox/stack';
import { signedDecision } from '../src/cli/sign';
import type { DrDrillResult } from '../src/workflows/drDrill';
import { decideUpdate } from '../src/workflows/lib/gate';
import { waitForOpenGate } from '../src/cli/drill';
import { RunbookWorker } from '../src/worker';
import { beginBench, formatSummary, parseBenchArgs, Profile, ratio, runMain, summarize } from './lib/report';

const DRILLS: Record<Profile, number> = { smoke: 1, quick: 3, full: 7 };
const ms = (n: number) => `${n.toFixed(0)} ms`;
const toMs = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) => Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;

async function main(): Promise<void> {
  const args = parseBenchArgs();
  const drills = DRILLS[args.profile];
  const bench = beginBench('drill', args);
  const dir = mkdtempSync(join(tmpdir(), 'runbook-bench-drill-'));
  chmodSync(dir, 0o755);
  const stack = await startStack({ dir });
  const loaded = loadConfig(stack.configFile);
  const worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  try {
    await worker.start();
    // Bundling the runbooks takes long on a busy machine.
    await worker.waitUntilReady(10 * 60_000);
    const c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
    const rows: { rto: number; work: number; orchestration: number }[] = [];
    for (let i = 1; i <= drills; i++) {
      const handle = await c.client.workflow.start('drDrill', { taskQueue: 'critical-queue', workflowId: `bench-drill-${Date.now()}`, args: [{ environment: 'sandbox', database: 'main', mode: 'failover' }] });
      await waitForOpenGate(handle);
      await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', { keyFile: sandboxKey(stack, 'sandbox-operator'), principal: 'sandbox-operator' })] });
      const result: DrDrillResult = await handle.result();
      const fault = result.timeline.steps.find((s) => s.name.startsWith('fault'))!;
      const verify = result.timeline.steps.find((s) => s.name === 'verify through the service name')!;
      const windowStart = Date.parse(String(fault.evidence.stoppedAt));
      const windowEnd = Date.parse(String(verify.evidence.writeAt));
      // Activity execution inside the outage window, from the history's started/completed events.
      const events = (await handle.fetchHistory()).events ?? [];
      const started = new Map<string, number>();
      let work = 0;
      for (const e of events) {
        const at = toMs(e.eventTime as never);
        if (e.activityTaskStartedEventAttributes) started.set(String(e.activityTaskStartedEventAttributes.scheduledEventId), at);
        const done = e.activityTaskCompletedEventAttributes;
        if (done) {
          const s = started.get(String(done.scheduledEventId));
          if (s === undefined) continue;
          const from = Math.max(s, windowStart);
          const to = Math.min(at, windowEnd);
          if (to > from) work += to - from;
        }
      }
      const rto = result.rto!.ms;
      rows.push({ rto, work, orchestration: Math.max(0, rto - work) });
      console.log(`drill ${i}: ${result.primaryBefore} -> ${result.primaryAfter}, RTO ${ms(rto)}: activities ${ms(work)}, orchestration ${ms(Math.max(0, rto - work))} (${((Math.max(0, rto - work) / rto) * 100).toFixed(0)}%)`);
    }
    await c.close();
    const figures = {
      drills: rows.map((r) => ({ rtoMs: r.rto, activityMs: Math.round(r.work), orchestrationMs: Math.round(r.orchestration) })),
      rtoMs: summarize(rows.map((r) => r.rto), 0),
      activityMs: summarize(rows.map((r) => r.work), 0),
      orchestrationMs: summarize(rows.map((r) => r.orchestration), 0),
      orchestrationPercent: summarize(rows.map((r) => (100 * r.orchestration) / r.rto), 0),
    };
    console.log(
      `medians of ${rows.length} (lowest-highest): RTO ${formatSummary(figures.rtoMs, 'ms', 0)}; database and DNS work ${formatSummary(figures.activityMs, 'ms', 0)}; ` +
        `orchestration ${formatSummary(figures.orchestrationMs, 'ms', 0)}, ${formatSummary(figures.orchestrationPercent, '%', 0)} of the RTO`,
    );
    const ratios = [ratio('orchestration/RTO', figures.orchestrationMs.median, figures.rtoMs.median, 'orchestration (RTO minus the time inside activities) / RTO, medians (goal: at most 0.10)')];
    bench.finish({ drills, mode: 'failover' }, figures, ratios);
  } finally {
    await worker.shutdown().catch(() => undefined);
    await stopStack(stack);
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain(main);
