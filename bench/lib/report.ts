/**
 * What every benchmark shares: its profile (smoke, quick, full), the machine and its load while the
 * benchmark ran, medians with their spread, the ratios it prints, and the JSON file it writes under
 * bench/results/ (the README's Performance tables are generated from those files by bench/readme.ts).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';

export type Profile = 'smoke' | 'quick' | 'full';
export const PROFILES: readonly Profile[] = ['smoke', 'quick', 'full'];
export const BENCHES = ['restore', 'pitr', 'drill', 'orchestration', 'scale', 'sticky'] as const;
export type BenchName = (typeof BENCHES)[number];

export const RESULTS_DIR = join(__dirname, '..', 'results');

export interface BenchArgs {
  profile: Profile;
  /** Directory the result file is written to (bench/results unless --out). */
  out: string;
}

/** `--profile P`, `--full`, `--smoke` (default quick) and `--out DIR`; anything else is refused. */
export function parseBenchArgs(argv: string[] = process.argv.slice(2)): BenchArgs {
  let profile: Profile = 'quick';
  let out = RESULTS_DIR;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--full') profile = 'full';
    else if (a === '--smoke') profile = 'smoke';
    else if (a === '--quick') profile = 'quick';
    else if (a === '--profile') {
      const p = argv[++i];
      if (!PROFILES.includes(p as Profile)) throw new Error(`--profile: expected one of ${PROFILES.join(', ')}, found ${JSON.stringify(p)}`);
      profile = p as Profile;
    } else if (a === '--out') {
      const dir = argv[++i];
      if (!dir) throw new Error('--out: expected a directory');
      out = dir;
    } else throw new Error(`unknown option ${a}; expected --quick (default), --full, --smoke, --profile P or --out DIR`);
  }
  return { profile, out };
}

/** The median of a sample and its spread (lowest and highest value). */
export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function summarize(values: number[], digits = 2): Summary {
  const r = (n: number) => Number(n.toFixed(digits));
  return { median: r(median(values)), min: r(Math.min(...values)), max: r(Math.max(...values)), n: values.length };
}

/** "12.3 ms (11.0-14.2)": the median and, when there is more than one round, the spread. */
export function formatSummary(s: Summary, unit: string, digits = 1): string {
  // NaN and infinities are written to JSON as null: a value that could not be measured shows as n/a.
  if (![s.median, s.min, s.max].every((n) => typeof n === 'number' && Number.isFinite(n))) return 'n/a';
  const f = (n: number) => n.toFixed(digits);
  return s.n > 1 ? `${f(s.median)} ${unit} (${f(s.min)}-${f(s.max)})` : `${f(s.median)} ${unit}`;
}

/** A ratio a benchmark prints and the README quotes: name, value, and what it compares. */
export interface Ratio {
  name: string;
  value: number;
  /** What the ratio is of: "machinery / bare SDK per regular step". */
  of: string;
}

export function ratio(name: string, numerator: number, denominator: number, of: string): Ratio {
  return { name, value: denominator > 0 ? Number((numerator / denominator).toFixed(2)) : NaN, of };
}

/**
 * The median of per-round ratios a[i] / b[i], for two variants measured in the same rounds: each
 * round's pair shares that round's machine load, so drift between rounds cancels out.
 */
export function pairedRatio(name: string, a: number[], b: number[], of: string): Ratio {
  const per = a.map((x, i) => x / b[i]).filter((x) => Number.isFinite(x) && x > 0);
  return { name, value: per.length ? Number(median(per).toFixed(2)) : NaN, of };
}

export function printRatios(ratios: Ratio[]): void {
  for (const r of ratios) console.log(`ratio ${r.name}: ${r.value.toFixed(2)}x (${r.of})`);
}

export interface MachineLine {
  cpuModel: string;
  cores: number;
  memoryGb: number;
  node: string;
}

export function machine(): MachineLine {
  return { cpuModel: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGb: Math.round(totalmem() / 2 ** 30), node: process.version };
}

/** The machine's load while a benchmark ran: the load averages at start and end, and how busy the CPUs were (all processes, not only ours). */
export interface LoadFigures {
  loadAvgStart: number[];
  loadAvgEnd: number[];
  /** Share of all CPU time that was busy (not idle, not iowait), sampled every second. */
  cpuBusyPercent: { mean: number; max: number };
  /** Runnable tasks above the core count, as a mean of the 1-second samples (0: no queue for the CPUs). */
  runQueueOverCores: number;
}

function cpuTimes(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

function runnable(): number {
  const m = /procs_running (\d+)/.exec(readFileSync('/proc/stat', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** Samples the machine's CPU use every second from /proc/stat until stopped. */
export class LoadMonitor {
  private readonly start = loadavg().map((x) => Number(x.toFixed(2)));
  private last = cpuTimes();
  private readonly busy: number[] = [];
  private readonly queue: number[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.timer = setInterval(() => this.sample(), 1_000);
    this.timer.unref();
  }

  private sample(): void {
    const now = cpuTimes();
    const total = now.total - this.last.total;
    if (total > 0) this.busy.push((100 * (now.busy - this.last.busy)) / total);
    this.last = now;
    // The sampling process itself is one of the running tasks.
    this.queue.push(Math.max(0, runnable() - 1 - cpus().length));
  }

  stop(): LoadFigures {
    clearInterval(this.timer);
    this.sample();
    const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
    return {
      loadAvgStart: this.start,
      loadAvgEnd: loadavg().map((x) => Number(x.toFixed(2))),
      cpuBusyPercent: { mean: Math.round(mean(this.busy)), max: Math.round(Math.max(0, ...this.busy)) },
      runQueueOverCores: Number(mean(this.queue).toFixed(1)),
    };
  }
}

export function describeLoad(l: LoadFigures): string {
  return `machine load during the run: load average ${l.loadAvgStart[0]} at start, ${l.loadAvgEnd[0]} at end; CPUs ${l.cpuBusyPercent.mean}% busy on average (max ${l.cpuBusyPercent.max}%), ${l.runQueueOverCores} runnable tasks waiting for a core on average`;
}

export function describeMachineLine(m: MachineLine): string {
  return `machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGb} GB, node ${m.node}`;
}

/**
 * CPU time, in ms, used by the processes under these roots: each root and its live descendants
 * (user and system time), plus every descendant that already exited and was waited for (counted in
 * its parent's children time). Read from /proc; a process that vanished while reading counts 0.
 */
export function processTreeCpuMs(roots: number[]): number {
  const parent = new Map<number, number>();
  const cpu = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(entry), Number(f[1]));
      cpu.set(Number(entry), f.slice(11, 15).reduce((a, x) => a + Number(x), 0));
    } catch {
      /* the process ended while we looked */
    }
  }
  const inTree = (pid: number): boolean => {
    for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 1 && hops < 64; p = parent.get(p), hops++) if (roots.includes(p)) return true;
    return false;
  };
  let ticks = 0;
  for (const [pid, t] of cpu) if (inTree(pid)) ticks += t;
  return (ticks * 1000) / CLOCK_TICKS;
}
/** USER_HZ, the unit of /proc CPU times: 100 on Linux. */
const CLOCK_TICKS = 100;

/** What the Temporal CLI and PostgreSQL in use say about their versions (best effort). */
export function toolVersion(command: string, args: string[] = ['--version']): string | undefined {
  try {
    return execFileSync(command, args, { encoding: 'utf8', timeout: 10_000 }).trim().split('\n')[0];
  } catch {
    return undefined;
  }
}

export interface BenchResult<F = unknown> {
  bench: BenchName;
  profile: Profile;
  startedAt: string;
  finishedAt: string;
  wallSeconds: number;
  machine: MachineLine & { tools?: Record<string, string | undefined> };
  load: LoadFigures;
  /** What was run: sizes, rounds, counts. */
  params: Record<string, unknown>;
  figures: F;
  ratios: Ratio[];
}

/** Starts a benchmark's record: prints the machine line and starts watching the load. */
export function beginBench(bench: BenchName, args: BenchArgs) {
  const startedAt = new Date();
  const monitor = new LoadMonitor();
  const m = machine();
  console.log(`${bench} benchmark, ${args.profile} profile; ${describeMachineLine(m)}`);
  return {
    /** Prints the ratios and the load, writes bench/results/<bench>-<profile>.json (or under --out), returns its path. */
    finish<F>(params: Record<string, unknown>, figures: F, ratios: Ratio[], tools?: Record<string, string | undefined>): string {
      const load = monitor.stop();
      const finishedAt = new Date();
      const result: BenchResult<F> = {
        bench,
        profile: args.profile,
        startedAt: startedAt.toISOString(),
        finishedAt: finishedAt.toISOString(),
        wallSeconds: Math.round((finishedAt.getTime() - startedAt.getTime()) / 100) / 10,
        machine: { ...m, ...(tools ? { tools } : {}) },
        load,
        params,
        figures,
        ratios,
      };
      printRatios(ratios);
      console.log(describeLoad(load));
      mkdirSync(args.out, { recursive: true });
      const file = join(args.out, `${bench}-${args.profile}.json`);
      writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
      console.log(`results written to ${file}`);
      return file;
    },
  };
}

/** Runs a benchmark's main and sets the exit code on failure. */
export function runMain(main: () => Promise<void>): void {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
