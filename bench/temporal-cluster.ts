/**
 * Temporal cluster benchmark: how long the sandbox's production-shaped cluster takes to start (on a new
 * database, and again from the same directory) and to stop, and what its processes cost when idle.
 *
 *   node --import tsx bench/temporal-cluster.ts          # 2 rounds
 *   BENCH_ROUNDS=4 node --import tsx bench/temporal-cluster.ts
 *
 * Not a test: nothing here asserts.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { startStack, stopStack } from '../src/sandbox/stack';
import type { TemporalClusterInfo } from '../src/sandbox/temporalCluster';

const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const CLOCK_TICKS = 100;

/** Resident memory and CPU seconds so far of one process, from /proc. */
function usage(pid: number): { rssMb: number; cpuSeconds: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const rssPages = Number(fields[21]);
  return { rssMb: (rssPages * 4096) / 2 ** 20, cpuSeconds: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS };
}

async function idleCost(c: TemporalClusterInfo, seconds: number): Promise<string[]> {
  const before = new Map(c.processes.map((p) => [p.name, usage(p.pid)]));
  await new Promise((r) => setTimeout(r, seconds * 1000));
  return c.processes.map((p) => {
    const after = usage(p.pid);
    const cpu = ((after.cpuSeconds - before.get(p.name)!.cpuSeconds) / seconds) * 100;
    return `${p.name.padEnd(11)} RSS ${after.rssMb.toFixed(0).padStart(4)} MB, idle CPU ${cpu.toFixed(1)}% of a core`;
  });
}

async function main(): Promise<void> {
  console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model}), ${(totalmem() / 2 ** 30).toFixed(0)} GB, node ${process.version}, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  for (let round = 1; round <= rounds; round++) {
    const dir = mkdtempSync(join(tmpdir(), 'runbook-bench-cluster-'));
    chmodSync(dir, 0o755);
    try {
      for (const start of ['new database', 'same directory'] as const) {
        const t0 = Date.now();
        const stack = await startStack({ dir, components: ['s3', 'temporal-cluster'] });
        const started = Date.now() - t0;
        const c = stack.temporalCluster!;
        const lines = start === 'same directory' ? await idleCost(c, 20) : [];
        const t1 = Date.now();
        await stopStack(stack);
        console.log(`round ${round}, ${start}: stack up ${s(started)} (cluster ${s(c.startMs)}), down ${s(Date.now() - t1)}`);
        for (const l of lines) console.log(`  ${l}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
