/**
 * DR drill benchmark: the RTO of failover drills in the sandbox for both topology drivers — the local
 * pair (the drill stops the primary and promotes the replica itself, DNS switch) and the Patroni
 * cluster (the leader is killed; Patroni detects it and elects a new leader; HAProxy follows) — split
 * into detection, promotion, endpoint switch and first verified write from each drill's report, and
 * into the activities' own work and orchestration from each drill's workflow history.
 *
 *   npm run bench:drill                            # 3 drills per driver (failover with failback)
 *   BENCH_DRILLS=5 BENCH_DRIVERS=patroni npm run bench:drill
 *
 * Not a test: nothing here asserts.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { connectClient } from '../src/cli/client';
import { loadConfig } from '../src/config/load';
import { createLogger } from '../src/observability/logger';
import { PATRONI_DATABASE_KEY, sandboxKey, StackComponent, startStack, stopStack } from '../src/sandbox/stack';
import { signedDecision } from '../src/cli/sign';
import type { DrDrillResult } from '../src/workflows/drDrill';
import { decideUpdate } from '../src/workflows/lib/gate';
import { waitForOpenGate } from '../src/cli/drill';
import { RunbookWorker } from '../src/worker';

const drills = Number(process.env.BENCH_DRILLS ?? 3);
const drivers = (process.env.BENCH_DRIVERS ?? 'local,patroni').split(',').map((d) => d.trim()) as ('local' | 'patroni')[];
const ms = (n: number) => `${n.toFixed(0)} ms`;
const toMs = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) => Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;

interface Row {
  rto: number;
  detection: number;
  promotion: number;
  endpoint: number;
  firstWrite: number;
  work: number;
  orchestration: number;
}

async function main(): Promise<void> {
  console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model}), ${(totalmem() / 2 ** 30).toFixed(0)} GB, node ${process.version}`);
  const dir = mkdtempSync(join(tmpdir(), 'runbook-bench-drill-'));
  chmodSync(dir, 0o755);
  const components: StackComponent[] = ['temporal', 's3'];
  if (drivers.includes('local')) components.push('postgres', 'replica', 'dns');
  if (drivers.includes('patroni')) components.push('patroni');
  const stack = await startStack({ dir, components });
  const loaded = loadConfig(stack.configFile);
  const worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  try {
    await worker.start();
    await worker.waitUntilReady();
    const c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
    if (stack.patroni) {
      const s = stack.patroni.settings;
      console.log(`patroni: ttl ${s.ttl} s, loop_wait ${s.loopWait} s, retry_timeout ${s.retryTimeout} s, synchronous_mode ${s.synchronousMode ? 'on' : 'off'}; HAProxy checks every 500 ms, down after 2`);
    }
    for (const driver of drivers) {
      const database = driver === 'local' ? 'main' : PATRONI_DATABASE_KEY;
      const rows: Row[] = [];
      for (let i = 1; i <= drills; i++) {
        const handle = await c.client.workflow.start('drDrill', { taskQueue: 'critical-queue', workflowId: `bench-drill-${driver}-${Date.now()}`, args: [{ environment: 'sandbox', database, mode: 'failover' }] });
        await waitForOpenGate(handle);
        await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'drDrill', 'approve', { keyFile: sandboxKey(stack, 'sandbox-operator'), principal: 'sandbox-operator' })] });
        const result: DrDrillResult = await handle.result();
        const windowStart = Date.parse(result.rto!.clockStartedAt!);
        const verify = result.timeline.steps.find((s) => s.name === 'verify through the service endpoint')!;
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
        const split = result.rto!.split!;
        const row = { rto, detection: split.detectionMs, promotion: split.promotionMs, endpoint: split.endpointMs, firstWrite: split.firstWriteMs, work, orchestration: Math.max(0, rto - work) };
        rows.push(row);
        console.log(
          `${driver} drill ${i}: ${result.primaryBefore} -> ${result.primaryAfter}, RTO ${ms(rto)} = detection ${ms(row.detection)} + promotion ${ms(row.promotion)} + endpoint ${ms(row.endpoint)} + first write ${ms(row.firstWrite)}; activities ${ms(work)}, orchestration ${ms(row.orchestration)}`,
        );
      }
      const avg = (f: (r: Row) => number) => rows.reduce((a, r) => a + f(r), 0) / rows.length;
      console.log(
        `${driver}: mean of ${rows.length}: RTO ${ms(avg((r) => r.rto))} = detection ${ms(avg((r) => r.detection))} + promotion ${ms(avg((r) => r.promotion))} + endpoint ${ms(avg((r) => r.endpoint))} + first write ${ms(avg((r) => r.firstWrite))}; orchestration ${ms(avg((r) => r.orchestration))} (${((avg((r) => r.orchestration) / avg((r) => r.rto)) * 100).toFixed(0)}% of the RTO)`,
      );
    }
    await c.close();
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
