/**
 * DR drill benchmark: the RTO of a failover drill in the sandbox, split into the database and DNS
 * work itself (activity execution) and orchestration (scheduling activities, workflow tasks, the time
 * between steps), from the workflow history of each drill.
 *
 *   npm run bench:drill              # 3 drills (failover with failback; the roles alternate)
 *   BENCH_DRILLS=5 npm run bench:drill
 *
 * Not a test: nothing here asserts.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
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

const drills = Number(process.env.BENCH_DRILLS ?? 3);
const ms = (n: number) => `${n.toFixed(0)} ms`;
const toMs = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) => Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;

async function main(): Promise<void> {
  console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model}), ${(totalmem() / 2 ** 30).toFixed(0)} GB, node ${process.version}`);
  const dir = mkdtempSync(join(tmpdir(), 'runbook-bench-drill-'));
  chmodSync(dir, 0o755);
  const stack = await startStack({ dir });
  const loaded = loadConfig(stack.configFile);
  const worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  try {
    await worker.start();
    await worker.waitUntilReady();
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
    const avg = (f: (r: (typeof rows)[number]) => number) => rows.reduce((a, r) => a + f(r), 0) / rows.length;
    console.log(`mean of ${rows.length}: RTO ${ms(avg((r) => r.rto))}; database and DNS work ${ms(avg((r) => r.work))}; orchestration ${ms(avg((r) => r.orchestration))} = ${((avg((r) => r.orchestration) / avg((r) => r.rto)) * 100).toFixed(0)}% of the RTO`);
  } finally {
    await worker.shutdown().catch(() => undefined);
    await stopStack(stack);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
