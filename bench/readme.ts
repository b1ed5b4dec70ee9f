/**
 * Generates the README's Performance blocks from the benchmark results in bench/results/, so no
 * figure in them is copied by hand. Each block sits between `<!-- bench:NAME:begin -->` and
 * `<!-- bench:NAME:end -->`; a block shows its benchmark's full-profile result where there is one,
 * else the quick one (the restore block shows both, one row each).
 *
 *   npm run bench:readme                 # rewrite the blocks in README.md
 *   npm run bench:readme -- --check      # exit 1 naming every block that is out of date
 *   ... [--results DIR] [--readme FILE] [--profile smoke|quick|full]
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BENCHES, BenchName, BenchResult, formatSummary, Profile, PROFILES, Ratio, RESULTS_DIR, Summary } from './lib/report';

export const README = join(__dirname, '..', 'README.md');

export function beginMarker(bench: BenchName): string {
  return `<!-- bench:${bench}:begin (generated from bench/results by npm run bench:readme; do not edit) -->`;
}
export function endMarker(bench: BenchName): string {
  return `<!-- bench:${bench}:end -->`;
}

/** The results a block is made from: the full profile's where there is one, else the quick one (or only the given profile). */
export function loadResults(dir: string, bench: BenchName, profile?: Profile): BenchResult[] {
  const order: Profile[] = profile ? [profile] : ['full', 'quick'];
  const found: BenchResult[] = [];
  for (const p of order) {
    const file = join(dir, `${bench}-${p}.json`);
    if (existsSync(file)) found.push(JSON.parse(readFileSync(file, 'utf8')) as BenchResult);
  }
  return found;
}

const s = (x: Summary | undefined, unit: string, digits = 1) => (x ? formatSummary(x, unit, digits) : 'n/a');
const date = (iso: string) => iso.slice(0, 10);
/** A ratio whose parts could not be measured (NaN, written to JSON as null; e.g. a per-step time below the noise of a smoke run) shows as n/a. */
export const ratioValue = (r: Ratio) => (typeof r.value === 'number' && Number.isFinite(r.value) ? `${r.value.toFixed(2)}x` : 'n/a');

function header(r: BenchResult, script: string): string {
  const l = r.load;
  const cmd = r.profile === 'full' ? `npm run ${script} -- --full` : r.profile === 'smoke' ? `npm run ${script} -- --smoke` : `npm run ${script}`;
  return (
    `Measured ${date(r.startedAt)} with \`${cmd}\` (${r.profile} profile, ${r.wallSeconds} s) on ${r.machine.cpuModel}, ${r.machine.cores} cores, ${r.machine.memoryGb} GB, Node.js ${r.machine.node}. ` +
    `Machine load while it ran (other work included): load average ${l.loadAvgStart[0]} at the start and ${l.loadAvgEnd[0]} at the end, CPUs ${l.cpuBusyPercent.mean}% busy on average, ` +
    `${l.runQueueOverCores} runnable tasks waiting for a core on average. Medians over the rounds, lowest and highest in parentheses.`
  );
}

function ratioLines(r: BenchResult, script: string): string {
  return [`Ratios printed by \`${script}\`:`, '', ...r.ratios.map((x) => `- ${x.name}: **${ratioValue(x)}** — ${x.of}`)].join('\n');
}

interface RestoreFigures {
  databaseMb: number;
  dumpMb: number;
  seedSeconds: number;
  backupSeconds: number;
  runbookStreamed: { restoreSeconds: Summary; wholeSeconds: Summary; wholeCpuSeconds: Summary; wholePostgresCpuSeconds?: Summary; walMb?: Summary; phasesSeconds: Record<string, Summary> };
  runbookParallel?: { restoreSeconds: Summary; wholeSeconds: Summary; wholeCpuSeconds: Summary };
  manual: {
    restoreSeconds: Summary;
    createSeconds: Summary;
    downloadSeconds: Summary;
    pgRestoreSeconds: Summary;
    validationSeconds: Summary;
    dropSeconds: Summary;
    wholeSeconds: Summary;
    restoreCpuSeconds: Summary;
    wholeCpuSeconds: Summary;
    wholePostgresCpuSeconds?: Summary;
    walMb?: Summary;
  };
}

function renderRestore(results: BenchResult[]): string {
  const out: string[] = [header(results[0], 'bench:restore'), ''];
  out.push('| database (dump) | profile, rounds | runbook streamed | runbook parallel (2 jobs) | by hand: create + download + `pg_restore` | streamed / by hand |');
  out.push('| --- | --- | --- | --- | --- | --- |');
  for (const r of results) {
    const f = r.figures as RestoreFigures;
    const ratioOf = r.ratios.find((x) => x.name === 'restore streamed/manual');
    out.push(
      `| ${f.databaseMb} MB (${f.dumpMb} MB) | ${r.profile}, ${r.params.rounds} | ${s(f.runbookStreamed.restoreSeconds, 's')} | ${s(f.runbookParallel?.restoreSeconds, 's')} | ` +
        `${s(f.manual.restoreSeconds, 's')} = ${s(f.manual.createSeconds, 's')} + ${s(f.manual.downloadSeconds, 's')} + ${s(f.manual.pgRestoreSeconds, 's')} | ${ratioOf ? `**${ratioValue(ratioOf)}**` : 'n/a'} |`,
    );
  }
  out.push(
    '',
    '| database | whole restore test, runbook streamed | by hand: restore + validation queries + drop | runbook / by hand | CPU of all processes (of it PostgreSQL), runbook / by hand | WAL written, runbook / by hand |',
    '| --- | --- | --- | --- | --- | --- |',
  );
  for (const r of results) {
    const f = r.figures as RestoreFigures;
    const ratioOf = r.ratios.find((x) => x.name === 'whole test/manual with validation');
    const cpu = r.ratios.find((x) => x.name === 'whole test CPU/manual CPU');
    out.push(
      `| ${f.databaseMb} MB | ${s(f.runbookStreamed.wholeSeconds, 's')} | ${s(f.manual.wholeSeconds, 's')} (validation ${s(f.manual.validationSeconds, 's')}) | ${ratioOf ? `**${ratioValue(ratioOf)}**` : 'n/a'} | ` +
        `${s(f.runbookStreamed.wholeCpuSeconds, 's')} (${s(f.runbookStreamed.wholePostgresCpuSeconds, 's')}) / ${s(f.manual.wholeCpuSeconds, 's')} (${s(f.manual.wholePostgresCpuSeconds, 's')})${cpu ? `: ${ratioValue(cpu)}` : ''} | ` +
        `${s(f.runbookStreamed.walMb, 'MB', 0)} / ${s(f.manual.walMb, 'MB', 0)} |`,
    );
  }
  const first = results[0].figures as RestoreFigures;
  const phases = Object.entries(first.runbookStreamed.phasesSeconds)
    .map(([k, v]) => `${k} ${s(v, 's')}`)
    .join(', ');
  out.push(
    '',
    `The runbook's streamed restore of the ${first.databaseMb} MB database, by phase: ${phases}. Generating that database took ${first.seedSeconds} s and backing it up ${first.backupSeconds} s (dump, checksums from the same snapshot, upload).`,
  );
  for (const r of results) out.push('', ratioLines(r, `bench/restore.ts --${r.profile}`));
  return out.join('\n');
}

/** One driver's drills (bench/drill.ts); results from before the split by driver carry only the local driver's RTO, activity and orchestration figures. */
interface DrillDriverFigures {
  drills: unknown[];
  rtoMs: Summary;
  detectionMs?: Summary;
  promotionMs?: Summary;
  endpointMs?: Summary;
  firstWriteMs?: Summary;
  activityMs: Summary;
  orchestrationMs: Summary;
  orchestrationPercent: Summary;
}
type DrillFigures = { drivers: Record<string, DrillDriverFigures> } | DrillDriverFigures;

function renderDrill(r: BenchResult): string {
  const f = r.figures as DrillFigures;
  const drivers = 'drivers' in f ? f.drivers : { local: f };
  const out = [
    header(r, 'bench:drill'),
    '',
    'RTO from the fault to the first verified write, split by the drill report into detection, promotion, endpoint switch (DNS for the local pair, HAProxy for Patroni) and first write; ' +
      'and from the workflow history into the time inside activities and orchestration (the RTO minus the time inside activities: workflow tasks, activity scheduling, timers).',
    '',
    '| driver | drills | RTO | detection | promotion | endpoint switch | first write | inside activities | orchestration | orchestration share of the RTO |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const [driver, d] of Object.entries(drivers)) {
    out.push(
      `| ${driver} | ${d.drills.length} | ${s(d.rtoMs, 'ms', 0)} | ${s(d.detectionMs, 'ms', 0)} | ${s(d.promotionMs, 'ms', 0)} | ${s(d.endpointMs, 'ms', 0)} | ${s(d.firstWriteMs, 'ms', 0)} | ` +
        `${s(d.activityMs, 'ms', 0)} | ${s(d.orchestrationMs, 'ms', 0)} | ${s(d.orchestrationPercent, '%', 0)} |`,
    );
  }
  out.push('', ratioLines(r, 'bench/drill.ts'));
  return out.join('\n');
}

interface OrchestrationVariant {
  label: string;
  perStepMs: Summary;
  serverCpuMsPerStep: Summary;
  processCpuMsPerStep: Summary;
  anatomyMs?: { taskDispatch: Summary; taskExecution: Summary; activity: Summary; between: Summary };
}

function renderOrchestration(r: BenchResult): string {
  const figures = r.figures as { variants: Record<string, OrchestrationVariant>; serverPerStep: { operation: string; perStep: number; meanMs: number }[] };
  const f = figures.variants;
  const out = [
    header(r, 'bench:orchestration'),
    '',
    `${r.params.steps}-step workflows; the time a step adds is (${r.params.steps}-step workflow - 0-step workflow) / ${r.params.steps}. The anatomy columns come from each run's history (event times), the CPU columns from /proc: the dev server's process and the benchmark's (worker and client).`,
    '',
    '| variant | per step | workflow task dispatch | workflow task execution | activity, scheduled to completed | CPU per step: dev server / worker process |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const v of Object.values(f)) {
    const a = v.anatomyMs;
    out.push(`| ${v.label} | **${s(v.perStepMs, 'ms')}** | ${a ? s(a.taskDispatch, 'ms') : '—'} | ${a ? s(a.taskExecution, 'ms') : '—'} | ${a ? s(a.activity, 'ms') : '—'} | ${s(v.serverCpuMsPerStep, 'ms')} / ${s(v.processCpuMsPerStep, 'ms')} |`);
  }
  out.push(
    '',
    `What the dev server did per regular step of the bare variant, from its own metrics (operation, times per step, mean latency): ${figures.serverPerStep.map((o) => `${o.operation} ×${o.perStep} (${o.meanMs.toFixed(1)} ms)`).join('; ')}.`,
    '',
    ratioLines(r, 'bench/orchestration.ts'),
  );
  return out.join('\n');
}

interface ScaleRow {
  workflows: number;
  seconds: Summary;
  perWorkflowP50: Summary;
  perWorkflowP99: Summary;
  activityS2sP50: Summary;
  activityS2sP99: Summary;
  workflowTaskS2sP50: Summary;
  workflowTaskS2sP99: Summary;
  rssPeakMb: Summary;
  cpuSeconds: Summary;
}

function renderScale(r: BenchResult): string {
  const rows = (r.figures as { rows: ScaleRow[] }).rows;
  const out = [
    header(r, 'bench:scale'),
    '',
    `Restore-test-shaped workflows (${r.params.stepMs}, ${r.params.stepMs}, a heartbeating ${r.params.restoreMs} ms "restore", ${Number(r.params.stepMs) * 4} and ${r.params.stepMs} ms activities), all started at once on one worker with the production tuning; ${r.params.rounds} rounds, the counts interleaved.`,
    '',
    '| workflows | all completed | per workflow p50 / p99 | activity schedule-to-start p50 / p99 | workflow task schedule-to-start p50 / p99 | peak RSS | CPU |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const x of rows) {
    out.push(
      `| ${x.workflows.toLocaleString('en-US')} | ${s(x.seconds, 's', 2)} | ${s(x.perWorkflowP50, 'ms', 0)} / ${s(x.perWorkflowP99, 'ms', 0)} | ${s(x.activityS2sP50, 'ms', 0)} / ${s(x.activityS2sP99, 'ms', 0)} | ` +
        `${s(x.workflowTaskS2sP50, 'ms', 0)} / ${s(x.workflowTaskS2sP99, 'ms', 0)} | ${s(x.rssPeakMb, 'MB', 0)} | ${s(x.cpuSeconds, 's')} |`,
    );
  }
  out.push('', ratioLines(r, 'bench/scale.ts'));
  return out.join('\n');
}

type StickyVariant = Record<'parkSeconds' | 'rssGrowthMb' | 'rssPeakMb' | 'signalToCompleteP50' | 'signalToCompleteP99' | 'taskStartToCompleteP50' | 'taskStartToCompleteP99' | 'signalTaskP50' | 'signalTaskP99' | 'cpuSeconds', Summary>;

function renderSticky(r: BenchResult): string {
  const f = r.figures as { off: StickyVariant; on: StickyVariant; cachedWorkflowKb: number };
  const row = (label: string, get: (v: StickyVariant) => string) => `| ${label} | ${get(f.off)} | ${get(f.on)} |`;
  return [
    header(r, 'bench:sticky'),
    '',
    `${Number(r.params.workflows).toLocaleString('en-US')} workflows of ${r.params.steps} activities each, parked on a signal, then signalled; ${r.params.rounds} rounds, each variant in a fresh process, the order alternating.`,
    '',
    '| | cache off (`maxCachedWorkflows: 0`) | cache on |',
    '| --- | --- | --- |',
    row('workflow task start-to-complete p50 / p99', (v) => `${s(v.taskStartToCompleteP50, 'ms', 0)} / ${s(v.taskStartToCompleteP99, 'ms', 0)}`),
    row('the task that handles the signal, p50 / p99', (v) => `${s(v.signalTaskP50, 'ms', 0)} / ${s(v.signalTaskP99, 'ms', 0)}`),
    row('signal to completion (client) p50 / p99', (v) => `${s(v.signalToCompleteP50, 'ms', 0)} / ${s(v.signalToCompleteP99, 'ms', 0)}`),
    row('time to start and park them all', (v) => s(v.parkSeconds, 's')),
    row('variant process CPU', (v) => s(v.cpuSeconds, 's')),
    row('RSS growth with all parked', (v) => s(v.rssGrowthMb, 'MB', 0)),
    '',
    `With the cache on, each parked workflow held about ${f.cachedWorkflowKb} KB of the worker's memory: the cache-on process's RSS growth beyond the cache-off one's, over the workflows (medians; with few workflows this is within the noise of the processes' own growth).`,
    '',
    ratioLines(r, 'bench/sticky.ts'),
  ].join('\n');
}

interface PitrFigures {
  databaseMb: number;
  repositoryMb: number;
  backupSeconds: number;
  walMb: number;
  runbook: Record<'total' | 'checks' | 'restore' | 'replay' | 'validate' | 'remove' | 'walReplayedMb', Summary>;
  manual: Record<'total' | 'restore' | 'replay' | 'checks' | 'remove', Summary>;
}

function renderPitr(r: BenchResult): string {
  const f = r.figures as PitrFigures;
  return [
    header(r, 'bench:pitr'),
    '',
    `${Number(r.params.rows).toLocaleString('en-US')} orders, a database of ${f.databaseMb} MB (${f.repositoryMb} MB in the repository, lz4; the full backup took ${f.backupSeconds} s), then ${f.walMb} MB of WAL written after the backup; the target lies between two canary rows after it. ${r.params.rounds} rounds, interleaved, each after a CHECKPOINT.`,
    '',
    '| | whole test | repository checks | restore | start + WAL replay to the target | checks | removal |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    `| runbook (\`verifyBackup\`, \`--at\`) | ${s(f.runbook.total, 's')} | ${s(f.runbook.checks, 's')} | ${s(f.runbook.restore, 's')} | ${s(f.runbook.replay, 's')} (${s(f.runbook.walReplayedMb, 'MB', 0)} replayed) | ${s(f.runbook.validate, 's')} | ${s(f.runbook.remove, 's')} |`,
    `| by hand (\`pgbackrest restore --type=time\`, start, wait, \`psql\`) | ${s(f.manual.total, 's')} | — | ${s(f.manual.restore, 's')} | ${s(f.manual.replay, 's')} | ${s(f.manual.checks, 's')} | ${s(f.manual.remove, 's')} |`,
    '',
    ratioLines(r, 'bench/pitr.ts'),
  ].join('\n');
}

/** Every block's generated text (the lines between its markers), from the results in dir. */
export function renderBlocks(dir: string = RESULTS_DIR, profile?: Profile): Record<BenchName, string> {
  const blocks = {} as Record<BenchName, string>;
  for (const bench of BENCHES) {
    const results = loadResults(dir, bench, profile);
    if (results.length === 0) {
      blocks[bench] = `No results yet: run \`npm run bench\` (or \`npm run bench -- --only ${bench}\`).`;
      continue;
    }
    const newest = results[0];
    blocks[bench] =
      bench === 'restore' ? renderRestore(results) : bench === 'pitr' ? renderPitr(newest) : bench === 'drill' ? renderDrill(newest) : bench === 'orchestration' ? renderOrchestration(newest) : bench === 'scale' ? renderScale(newest) : renderSticky(newest);
  }
  return blocks;
}

/** The README with every block replaced; throws naming a block whose markers are missing. */
export function applyBlocks(readme: string, blocks: Record<BenchName, string>): { text: string; changed: BenchName[] } {
  let text = readme;
  const changed: BenchName[] = [];
  for (const bench of BENCHES) {
    const begin = text.indexOf(beginMarker(bench));
    const end = text.indexOf(endMarker(bench));
    if (begin < 0 || end < begin) throw new Error(`README: the generated block for ${bench} is missing; it needs the lines\n${beginMarker(bench)}\n${endMarker(bench)}`);
    const from = begin + beginMarker(bench).length;
    const next = `\n${blocks[bench]}\n`;
    if (text.slice(from, end) !== next) changed.push(bench);
    text = text.slice(0, from) + next + text.slice(end);
  }
  return { text, changed };
}

/** Rewrites README.md's blocks from bench/results; returns the blocks that changed. */
export function updateReadmeFile(readme = README, dir = RESULTS_DIR, profile?: Profile): BenchName[] {
  const { text, changed } = applyBlocks(readFileSync(readme, 'utf8'), renderBlocks(dir, profile));
  if (changed.length) writeFileSync(readme, text);
  return changed;
}

function main(): void {
  const argv = process.argv.slice(2);
  let readme = README;
  let dir = RESULTS_DIR;
  let profile: Profile | undefined;
  let check = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--check') check = true;
    else if (a === '--readme') readme = argv[++i];
    else if (a === '--results') dir = argv[++i];
    else if (a === '--profile') {
      profile = argv[++i] as Profile;
      if (!PROFILES.includes(profile)) throw new Error(`--profile: expected one of ${PROFILES.join(', ')}`);
    } else throw new Error(`unknown option ${a}; expected --check, --readme FILE, --results DIR or --profile P`);
  }
  if (check) {
    const { changed } = applyBlocks(readFileSync(readme, 'utf8'), renderBlocks(dir, profile));
    if (changed.length) {
      console.error(`${readme}: the Performance blocks ${changed.join(', ')} do not match the results in ${dir}; run npm run bench:readme and commit README.md`);
      process.exitCode = 1;
    } else console.log(`${readme}: every Performance block matches the results in ${dir}`);
    return;
  }
  const changed = updateReadmeFile(readme, dir, profile);
  console.log(changed.length ? `${readme}: regenerated ${changed.join(', ')}` : `${readme}: already up to date`);
}

if (require.main === module) {
  try {
    main();
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  }
}
