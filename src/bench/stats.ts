import { cpus, totalmem } from 'node:os';

/** Percentiles of a sample (nearest rank), in the unit the sample is in. */
export interface Percentiles {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  max: number;
}

export function percentiles(values: number[]): Percentiles {
  if (values.length === 0) return { count: 0, mean: 0, p50: 0, p90: 0, p95: 0, p99: 0, max: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
  const round = (n: number) => Math.round(n * 10) / 10;
  return {
    count: sorted.length,
    mean: round(sorted.reduce((s, v) => s + v, 0) / sorted.length),
    p50: round(at(50)),
    p90: round(at(90)),
    p95: round(at(95)),
    p99: round(at(99)),
    max: round(sorted[sorted.length - 1]),
  };
}

/** Peak RSS and heap of this process, sampled while a run goes, and the CPU it used. */
export class ProcessSampler {
  private readonly cpuStart = process.cpuUsage();
  private readonly wallStart = performance.now();
  readonly rssStartBytes = process.memoryUsage.rss();
  rssPeakBytes = this.rssStartBytes;
  heapUsedPeakBytes = process.memoryUsage().heapUsed;
  private readonly timer: NodeJS.Timeout;

  constructor(intervalMs = 200) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  sample(): void {
    const m = process.memoryUsage();
    this.rssPeakBytes = Math.max(this.rssPeakBytes, m.rss);
    this.heapUsedPeakBytes = Math.max(this.heapUsedPeakBytes, m.heapUsed);
  }

  stop(): ProcessFigures {
    clearInterval(this.timer);
    this.sample();
    const cpu = process.cpuUsage(this.cpuStart);
    const wallMs = performance.now() - this.wallStart;
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    return {
      pid: process.pid,
      cpuSeconds: Math.round(cpuSeconds * 100) / 100,
      // Of one core: 100% is one core busy for the whole run.
      cpuPercent: wallMs > 0 ? Math.round((cpuSeconds * 1000 * 1000) / wallMs) / 10 : 0,
      rssStartBytes: this.rssStartBytes,
      rssEndBytes: process.memoryUsage.rss(),
      rssPeakBytes: this.rssPeakBytes,
      heapUsedPeakBytes: this.heapUsedPeakBytes,
    };
  }
}

export interface ProcessFigures {
  pid: number;
  cpuSeconds: number;
  cpuPercent: number;
  rssStartBytes: number;
  rssEndBytes: number;
  rssPeakBytes: number;
  heapUsedPeakBytes: number;
}

export function machineLine(): { cpuModel: string; cores: number; node: string; memoryBytes: number } {
  return { cpuModel: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version, memoryBytes: totalmem() };
}

export function describeMachine(): string {
  const m = machineLine();
  return `machine: ${m.cpuModel}, ${m.cores} cores, ${(m.memoryBytes / 2 ** 30).toFixed(0)} GB, node ${m.node}`;
}
