/**
 * Runs the test suite: every test file in a process of its own (node --test with tsx), several files at
 * once, the longest first (by the durations of the previous run), each file's output printed whole when
 * it ends, then the totals and the ten slowest files. Exit 1 when any file failed.
 *
 *   node --import tsx scripts/run-tests.ts [--concurrency N] [--timeout MINUTES] [FILE ...]
 *
 * Most tests wait on real timeouts (crashes, heartbeats, gates), so files overlap well even on two
 * cores; every file starts its own servers on free ports, so they do not see each other.
 * RUNBOOK_TEST_CONCURRENCY sets the default concurrency.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { failureDigest } from './test-digest';

const REPO = join(__dirname, '..');
const DURATIONS_FILE = join(REPO, '.runbook', 'test-durations.json');
/** Durations of a whole run on a two-core machine, committed: the order on a fresh clone (CI). */
const COMMITTED_DURATIONS_FILE = join(REPO, 'test', 'durations.json');
const DEFAULT_DIRS = ['test/unit', 'test/integration', 'test/e2e'];

interface Options {
  concurrency: number;
  timeoutMs: number;
  files: string[];
}

function usage(message: string): never {
  process.stderr.write(`run-tests: ${message}\nusage: run-tests [--concurrency N] [--timeout MINUTES] [FILE ...]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const envConcurrency = process.env.RUNBOOK_TEST_CONCURRENCY;
  let concurrency = envConcurrency ? Number(envConcurrency) : 3;
  let timeoutMs = 30 * 60_000;
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--concurrency') concurrency = Number(argv[++i]);
    else if (arg === '--timeout') timeoutMs = Number(argv[++i]) * 60_000;
    else if (arg.startsWith('--')) usage(`unknown option ${arg}`);
    else files.push(relative(REPO, join(process.cwd(), arg)));
  }
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 16) usage(`--concurrency (or RUNBOOK_TEST_CONCURRENCY) must be a whole number from 1 to 16, got ${concurrency}`);
  if (!(timeoutMs > 0)) usage('--timeout must be a number of minutes above 0');
  if (files.length === 0) {
    for (const dir of DEFAULT_DIRS) {
      for (const f of readdirSync(join(REPO, dir)).sort()) if (f.endsWith('.test.ts')) files.push(`${dir}/${f}`);
    }
  }
  for (const f of files) if (!existsSync(join(REPO, f))) usage(`no such test file: ${f}`);
  return { concurrency, timeoutMs, files };
}

/**
 * Jobs: the unit tests together (pure logic, a few seconds in all), every other file alone. Known
 * durations order the jobs longest first, so the long crash and fault files do not start last.
 */
const UNIT_JOB = 'test/unit/*';

function planJobs(files: string[]): { name: string; files: string[]; expectedMs: number }[] {
  let known: Record<string, number> = {};
  try {
    // The committed durations, overridden by this checkout's own runs (which may have run a few files only).
    const read = (file: string) => (existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, number>) : {});
    known = { ...read(COMMITTED_DURATIONS_FILE), ...read(DURATIONS_FILE) };
  } catch {
    /* first run here: no order yet */
  }
  const unit = files.filter((f) => f.startsWith('test/unit/'));
  const jobs = files.filter((f) => !f.startsWith('test/unit/')).map((f) => ({ name: f, files: [f], expectedMs: known[f] ?? Number.MAX_SAFE_INTEGER }));
  if (unit.length > 0) jobs.push({ name: UNIT_JOB, files: unit, expectedMs: known[UNIT_JOB] ?? Number.MAX_SAFE_INTEGER });
  return jobs.sort((a, b) => b.expectedMs - a.expectedMs);
}

interface JobResult {
  name: string;
  ms: number;
  ok: boolean;
  tests: number;
  failed: number;
  output: string;
}

const count = (output: string, label: string) => Number(new RegExp(`^ℹ ${label} (\\d+)$`, 'm').exec(output)?.[1] ?? 0);

function runJob(job: { name: string; files: string[] }, timeoutMs: number): Promise<JobResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    // --test-force-exit: once every test of the file has finished (its after hooks included), a handle
    // something left open (a socket of a stopped server) must not keep the file running until the timeout.
    // The unit files run in the runner's own process (--test-isolation=none): with a child process per
    // file, --test-force-exit can drop the tail of a file's results before the parent reads them, and
    // the run still exits 0 with fewer tests counted (seen here: a unit file's last 14 tests missing;
    // nodejs/node#64833). Unit tests are pure logic and leave no handles, so nothing is lost by it.
    const isolation = job.name === UNIT_JOB ? ['--test-isolation=none'] : [];
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', ...isolation, '--test-force-exit', '--test-concurrency=1', '--test-reporter=spec', ...job.files], {
      cwd: REPO,
      env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (timedOut) output += `\nrun-tests: ${job.name} did not finish within ${timeoutMs / 60_000} minutes and was killed\n`;
      resolve({ name: job.name, ms: Date.now() - started, ok: code === 0 && !timedOut, tests: count(output, 'tests'), failed: count(output, 'fail'), output });
    });
  });
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  const jobs = planJobs(opts.files);
  const started = Date.now();
  process.stdout.write(`run-tests: ${opts.files.length} files in ${jobs.length} jobs, ${opts.concurrency} at a time, on Node.js ${process.versions.node}\n`);
  const queue = [...jobs];
  const results: JobResult[] = [];
  const running = new Set<string>();
  const worker = async () => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      running.add(job.name);
      const r = await runJob(job, opts.timeoutMs);
      running.delete(job.name);
      results.push(r);
      process.stdout.write(`\n━━ ${r.ok ? 'ok' : 'FAILED'}  ${r.name}  (${r.tests} tests, ${r.failed} failed, ${seconds(r.ms)})\n${r.output.trimEnd()}\n`);
      process.stdout.write(`━━ ${results.length}/${jobs.length} files done after ${seconds(Date.now() - started)}${running.size ? `; running: ${[...running].join(', ')}` : ''}\n`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, jobs.length) }, worker));

  const wall = Date.now() - started;
  const failed = results.filter((r) => !r.ok);
  const tests = results.reduce((n, r) => n + r.tests, 0);
  const testFailures = results.reduce((n, r) => n + r.failed, 0);
  const busy = results.reduce((n, r) => n + r.ms, 0);
  process.stdout.write(`\n━━ slowest files\n`);
  for (const r of [...results].sort((a, b) => b.ms - a.ms).slice(0, 10)) process.stdout.write(`  ${seconds(r.ms).padStart(8)}  ${r.name}\n`);
  process.stdout.write(
    `\n━━ ${tests} tests in ${results.length} jobs: ${tests - testFailures} passed, ${testFailures} failed; ${failed.length} job(s) failed` +
      `\n━━ wall ${seconds(wall)}, sum of file times ${seconds(busy)} (${(busy / wall).toFixed(2)}x overlap, concurrency ${opts.concurrency})\n`,
  );
  // The failing tests and their errors come last: CI keeps only the tail of the output.
  for (const r of failed) process.stdout.write(`\n━━ FAILED: ${r.name}\n${failureDigest(r.output)}\n`);
  for (const r of failed) process.stdout.write(`FAILED: ${r.name}\n`);

  // Only a full run's durations order the next run; a partial run adds to them.
  const known: Record<string, number> = existsSync(DURATIONS_FILE) ? (JSON.parse(readFileSync(DURATIONS_FILE, 'utf8')) as Record<string, number>) : {};
  for (const r of results) known[r.name] = r.ms;
  mkdirSync(join(REPO, '.runbook'), { recursive: true });
  writeFileSync(DURATIONS_FILE, `${JSON.stringify(known, null, 2)}\n`);
  return failed.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`run-tests: ${String(err)}\n`);
    process.exit(1);
  },
);
