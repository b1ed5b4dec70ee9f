/**
 * DR drill benchmark: the RTO of failover drills in the sandbox for both topology drivers — the local
 * pair (the drill stops the primary and promotes the replica itself, DNS switch) and the Patroni
 * cluster (the leader is killed; Patroni detects it and elects a new leader; HAProxy follows) — split
 * into detection, promotion, endpoint switch and first verified write from each drill's report, and
 * into the activities' own work and orchestration (RTO minus the time inside activities) from each
 * drill's workflow history.
 *
 *   npm run bench:drill [-- --full | --smoke] [--out DIR]   # 3 drills per driver (smoke: 1, full: 7), failover with failback
 *   BENCH_DRIVERS=patroni npm run bench:drill                # one driver only (default local,patroni)
 *
 * Not a test: nothing here asserts.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
import { beginBench, formatSummary, parseBenchArgs, Profile, Ratio, ratio, runMain, Summary, summarize } from './lib/report';

const DRILLS: Record<Profile, number> = { smoke: 1, quick: 3, full: 7 };
const DRIVERS = ['local', 'patroni'] as const;
type Driver = (typeof DRIVERS)[number];
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

/** One driver's drills and their medians (what bench/readme.ts renders, one row per driver). */
export interface DriverFigures {
  drills: { rtoMs: number; detectionMs: number; promotionMs: number; endpointMs: number; firstWriteMs: number; activityMs: number; orchestrationMs: number }[];
  rtoMs: Summary;
  detectionMs: Summary;
  promotionMs: Summary;
  endpointMs: Summary;
  firstWriteMs: Summary;
  activityMs: Summary;
  orchestrationMs: Summary;
  orchestrationPercent: Summary;
}

function driversFromEnv(): Driver[] {
  const drivers = (process.env.BENCH_DRIVERS ?? DRIVERS.join(',')).split(',').map((d) => d.trim());
  const unknown = drivers.filter((d) => !DRIVERS.includes(d as Driver));
  if (unknown.length || drivers.length === 0) throw new Error(`BENCH_DRIVERS: unknown driver ${unknown.join(', ')}; expected some of ${DRIVERS.join(', ')}`);
  return drivers as Driver[];
}

async function main(): Promise<void> {
  const args = parseBenchArgs();
  const drivers = driversFromEnv();
  const drills = DRILLS[args.profile];
  const bench = beginBench('drill', args);
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
    // Bundling the runbooks takes long on a busy machine.
    await worker.waitUntilReady(10 * 60_000);
    const c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
    const patroniSettings = stack.patroni?.settings;
    if (patroniSettings) {
      const s = patroniSettings;
      console.log(`patroni: ttl ${s.ttl} s, loop_wait ${s.loopWait} s, retry_timeout ${s.retryTimeout} s, synchronous_mode ${s.synchronousMode ? 'on' : 'off'}; HAProxy checks every 500 ms, down after 2`);
    }
    const byDriver: Partial<Record<Driver, DriverFigures>> = {};
    const ratios: Ratio[] = [];
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
          `${driver} drill ${i}: ${result.primaryBefore} -> ${result.primaryAfter}, RTO ${ms(rto)} = detection ${ms(row.detection)} + promotion ${ms(row.promotion)} + endpoint ${ms(row.endpoint)} + first write ${ms(row.firstWrite)}; ` +
            `activities ${ms(work)}, orchestration ${ms(row.orchestration)} (${((row.orchestration / rto) * 100).toFixed(0)}%)`,
        );
      }
      const f: DriverFigures = {
        drills: rows.map((r) => ({
          rtoMs: r.rto,
          detectionMs: Math.round(r.detection),
          promotionMs: Math.round(r.promotion),
          endpointMs: Math.round(r.endpoint),
          firstWriteMs: Math.round(r.firstWrite),
          activityMs: Math.round(r.work),
          orchestrationMs: Math.round(r.orchestration),
        })),
        rtoMs: summarize(rows.map((r) => r.rto), 0),
        detectionMs: summarize(rows.map((r) => r.detection), 0),
        promotionMs: summarize(rows.map((r) => r.promotion), 0),
        endpointMs: summarize(rows.map((r) => r.endpoint), 0),
        firstWriteMs: summarize(rows.map((r) => r.firstWrite), 0),
        activityMs: summarize(rows.map((r) => r.work), 0),
        orchestrationMs: summarize(rows.map((r) => r.orchestration), 0),
        orchestrationPercent: summarize(rows.map((r) => (100 * r.orchestration) / r.rto), 0),
      };
      byDriver[driver] = f;
      console.log(
        `${driver}: medians of ${rows.length} (lowest-highest): RTO ${formatSummary(f.rtoMs, 'ms', 0)} = detection ${formatSummary(f.detectionMs, 'ms', 0)} + promotion ${formatSummary(f.promotionMs, 'ms', 0)} + ` +
          `endpoint ${formatSummary(f.endpointMs, 'ms', 0)} + first write ${formatSummary(f.firstWriteMs, 'ms', 0)}; inside activities ${formatSummary(f.activityMs, 'ms', 0)}; ` +
          `orchestration ${formatSummary(f.orchestrationMs, 'ms', 0)}, ${formatSummary(f.orchestrationPercent, '%', 0)} of the RTO`,
      );
      // The local driver's ratio keeps its name from the earlier results (the goal is stated for it).
      ratios.push(
        ratio(
          driver === 'local' ? 'orchestration/RTO' : `${driver} orchestration/RTO`,
          f.orchestrationMs.median,
          f.rtoMs.median,
          `${driver} driver: orchestration (RTO minus the time inside activities) / RTO, medians${driver === 'local' ? ' (goal: at most 0.10)' : ''}`,
        ),
      );
    }
    await c.close();
    bench.finish({ drills, mode: 'failover', drivers, ...(patroniSettings ? { patroni: patroniSettings } : {}) }, { drivers: byDriver }, ratios);
  } finally {
    await worker.shutdown().catch(() => undefined);
    await stopStack(stack);
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain(main);
