/**
 * `npm run bench`: every benchmark, one after the other, each in a process of its own, each writing
 * its figures to bench/results/<bench>-<profile>.json; then the README's Performance blocks are
 * generated from the results (bench/readme.ts).
 *
 *   npm run bench                      # the quick profile (small data sets, a few rounds)
 *   npm run bench -- --full            # the 1 GB restore, the 1,000-workflow runs, more rounds
 *   npm run bench -- --smoke --out DIR # one tiny round of each, the benchmarks at once, results under DIR (the test suite)
 *   npm run bench -- --only restore,drill
 *
 * The README is regenerated only when the results went to bench/results (not with --out elsewhere,
 * and never from a smoke run).
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { BENCHES, BenchName, parseBenchArgs, RESULTS_DIR } from './lib/report';
import { updateReadmeFile } from './readme';

interface Job {
  bench: BenchName;
  ok: boolean;
  seconds: number;
  output: string;
}

function runOne(bench: BenchName, args: string[], buffered: boolean): Promise<Job> {
  const begun = performance.now();
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--import', 'tsx', resolve(__dirname, `${bench}.ts`), ...args], { stdio: ['ignore', buffered ? 'pipe' : 'inherit', buffered ? 'pipe' : 'inherit'] });
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d));
    child.stderr?.on('data', (d: Buffer) => (output += d));
    child.on('close', (code) => done({ bench, ok: code === 0, seconds: (performance.now() - begun) / 1000, output }));
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let only: BenchName[] = [...BENCHES];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--only') {
      only = argv[++i].split(',').map((s) => s.trim()) as BenchName[];
      const unknown = only.filter((b) => !BENCHES.includes(b));
      if (unknown.length) throw new Error(`--only: unknown benchmark ${unknown.join(', ')}; expected some of ${BENCHES.join(', ')}`);
    } else rest.push(argv[i]);
  }
  const args = parseBenchArgs(rest);
  const childArgs = ['--profile', args.profile, '--out', resolve(args.out)];
  const begun = performance.now();
  let jobs: Job[];
  if (args.profile === 'smoke') {
    // The smoke run checks that the scripts work, not what they measure: all at once, each one's output printed whole when it ends.
    jobs = await Promise.all(
      only.map(async (bench) => {
        const job = await runOne(bench, childArgs, true);
        process.stdout.write(`── ${bench} (${job.ok ? 'ok' : 'FAILED'}, ${job.seconds.toFixed(1)} s)\n${job.output}`);
        return job;
      }),
    );
  } else {
    jobs = [];
    for (const bench of only) {
      console.log(`\n── ${bench} (${args.profile})`);
      jobs.push(await runOne(bench, childArgs, false));
    }
  }
  console.log(`\nbenchmarks (${args.profile} profile) in ${((performance.now() - begun) / 1000).toFixed(0)} s:`);
  for (const j of jobs) console.log(`  ${j.ok ? 'ok    ' : 'FAILED'} ${j.bench.padEnd(14)} ${j.seconds.toFixed(0).padStart(5)} s`);
  const failed = jobs.filter((j) => !j.ok);
  if (args.profile !== 'smoke' && resolve(args.out) === RESULTS_DIR) {
    const changed = updateReadmeFile();
    console.log(changed.length ? `README.md: regenerated the Performance blocks ${changed.join(', ')}` : 'README.md: the Performance blocks were up to date');
  }
  if (failed.length) {
    console.error(`failed: ${failed.map((j) => j.bench).join(', ')}`);
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
