import type { Command } from 'commander';
import { dataConverterFor } from '../codec';
import { temporalConnectionSettings } from '../config/connection';
import { parseDuration } from '../config/duration';
import type { BenchReport, DriveProgress } from '../bench/engine';
import { Scenario, SCENARIOS } from '../bench/scenarios';
import { cliEnvironment, GlobalOptions, loadCliConfig, printJson, shown, UsageError } from './common';

export interface BenchCliOptions {
  scenario: Scenario;
  workflowCount?: number;
  concurrentCount: number;
  durationMs?: number;
  taskQueue?: string;
}

function wholeNumber(value: string, flag: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag}: expected a whole number from ${min} to ${max}, found ${shown(value)}`);
  return n;
}

/** Checks the command line; with neither a count nor a duration the bench runs 1,000 workflows. */
export function parseBenchOptions(opts: { scenario?: string; workflowCount?: string; concurrentCount?: string; duration?: string; taskQueue?: string }): BenchCliOptions {
  const scenario = opts.scenario ?? 'noop';
  if (!(SCENARIOS as readonly string[]).includes(scenario)) throw new UsageError(`--scenario: expected one of ${SCENARIOS.join(', ')}, found ${shown(scenario)}`);
  let durationMs: number | undefined;
  if (opts.duration !== undefined) {
    durationMs = /^\d+(\.\d+)?$/.test(opts.duration) ? Number(opts.duration) * 1000 : parseDuration(opts.duration);
    if (durationMs === undefined || durationMs <= 0 || durationMs > 24 * 3_600_000) throw new UsageError(`--duration: expected seconds or a duration such as 30s or 5m (at most 24h), found ${shown(opts.duration)}`);
  }
  const workflowCount = opts.workflowCount !== undefined ? wholeNumber(opts.workflowCount, '--workflow-count', 1, 10_000_000) : durationMs === undefined ? 1_000 : undefined;
  const concurrentCount = opts.concurrentCount !== undefined ? wholeNumber(opts.concurrentCount, '--concurrent-count', 1, 100_000) : 10;
  if (opts.taskQueue !== undefined && !/^[A-Za-z0-9._-]{1,200}$/.test(opts.taskQueue)) throw new UsageError(`--task-queue: expected letters, digits, ., _ and -, found ${shown(opts.taskQueue)}`);
  return { scenario: scenario as Scenario, workflowCount, concurrentCount, durationMs, taskQueue: opts.taskQueue };
}

const ms = (n: number) => `${n.toFixed(n < 10 ? 1 : 0)} ms`;
const mb = (n: number) => `${(n / 1_048_576).toFixed(0)} MB`;

export function describeBench(r: BenchReport): string {
  const l = r.latencyMs;
  const line = (name: string, p: BenchReport['latencyMs']['startToComplete']) =>
    `  ${name.padEnd(30)} p50 ${ms(p.p50)}, p90 ${ms(p.p90)}, p99 ${ms(p.p99)}, max ${ms(p.max)} (${p.count} samples)`;
  return [
    `bench ${r.scenario} on ${r.address} namespace ${r.namespace}, task queue ${r.taskQueue}`,
    `  machine: ${r.machine.cpuModel}, ${r.machine.cores} cores, node ${r.machine.node}`,
    `  ${r.completed} of ${r.started} workflows completed in ${r.elapsedSeconds} s (concurrency ${r.requested.concurrentCount}); ${r.failed} failed, ${r.unfinished} unfinished`,
    `  throughput: ${r.throughput.workflowsPerSecond} workflows/s, ${r.throughput.activitiesPerSecond} activities/s`,
    line('start-to-complete', l.startToComplete),
    line('activity schedule-to-start', l.activityScheduleToStart),
    line('workflow task schedule-to-start', l.workflowTaskScheduleToStart),
    `  worker (in this process, with the driver): ${r.worker.cpuSeconds} s CPU (${r.worker.cpuPercent}% of a core), RSS ${mb(r.worker.rssStartBytes)} -> peak ${mb(r.worker.rssPeakBytes)}`,
    ...r.errors.messages.map((e) => `  error x${e.count}: ${e.message}`),
  ].join('\n');
}

function progressWriter(scenario: string, total: number | undefined): (p: DriveProgress) => void {
  const tty = process.stderr.isTTY;
  let lastLine = 0;
  return (p) => {
    const rate = p.elapsedMs > 0 ? (p.completed / p.elapsedMs) * 1000 : 0;
    const text = `bench ${scenario}: ${p.completed}${total ? `/${total}` : ''} completed, ${p.inFlight} running, ${p.failed} failed, ${rate.toFixed(1)} workflows/s, ${(p.elapsedMs / 1000).toFixed(1)} s`;
    if (tty) process.stderr.write(`\r\x1b[K${text}`);
    else if (p.done || p.elapsedMs - lastLine >= 2_000) {
      lastLine = p.elapsedMs;
      process.stderr.write(`${text}\n`);
    }
  };
}

export function registerBench(program: Command, globals: () => GlobalOptions): void {
  program
    .command('bench')
    .description('drive the Temporal cluster with bench workflows on a task queue of their own and report throughput, latency, errors, worker CPU and memory')
    .option('--scenario <name>', `${SCENARIOS.join(', ')} (default noop)`)
    .option('--workflow-count <n>', 'workflows to run (default 1000 unless --duration is given)')
    .option('--concurrent-count <n>', 'workflows running at once (default 10)')
    .option('--duration <time>', 'keep starting workflows this long (seconds, or 30s, 5m)')
    .option('--task-queue <name>', 'task queue for the bench worker (default runbook-bench-<random>)')
    .action(async (opts: { scenario?: string; workflowCount?: string; concurrentCount?: string; duration?: string; taskQueue?: string }) => {
      const g = globals();
      const o = parseBenchOptions(opts);
      const loaded = loadCliConfig(g);
      const { name, env } = cliEnvironment(loaded, g);
      const settings = temporalConnectionSettings(loaded, env.temporal);
      const dataConverter = dataConverterFor(loaded, name, env.temporal);
      // Loaded here: the worker SDK takes a second to load, which no other command needs.
      const { runBench } = await import('../bench/engine');
      let report: BenchReport;
      try {
        report = await runBench({ settings, dataConverter, ...o, onProgress: progressWriter(o.scenario, o.workflowCount) });
      } catch (err) {
        throw new Error(`bench against ${settings.address} (environment ${name}): ${(err as Error).message}`);
      } finally {
        if (process.stderr.isTTY) process.stderr.write('\n');
      }
      if (g.json) printJson({ ok: report.errors.count === 0, ...report });
      else process.stdout.write(`${describeBench(report)}\n`);
      process.exitCode = report.errors.count === 0 ? 0 : 1;
    });
}
