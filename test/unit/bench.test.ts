import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { BENCHES, formatSummary, median, parseBenchArgs, Ratio, RESULTS_DIR, Summary, summarize } from '../../bench/lib/report';
import { applyBlocks, beginMarker, endMarker, README, ratioValue, renderBlocks } from '../../bench/readme';

const readme = readFileSync(README, 'utf8');

describe("the README's Performance blocks", () => {
  test('every block matches the committed results in bench/results (run npm run bench:readme after a benchmark)', () => {
    const { changed } = applyBlocks(readme, renderBlocks());
    assert.deepEqual(changed, [], `out of date: ${changed.join(', ')}; run npm run bench:readme and commit README.md`);
  });

  test('every benchmark has committed results, so no block says there are none', () => {
    const blocks = renderBlocks();
    for (const bench of BENCHES) assert.doesNotMatch(blocks[bench], /No results yet/, bench);
  });

  test('a figure edited by hand inside a block is found, and the block named', () => {
    const begin = readme.indexOf(beginMarker('orchestration'));
    const end = readme.indexOf(endMarker('orchestration'));
    const block = readme.slice(begin, end);
    const edited = block.replace(/\*\*(\d+\.\d+) ms/, (_m, n: string) => `**${(Number(n) / 2).toFixed(1)} ms`);
    assert.notEqual(edited, block, 'the block has a per-step figure to edit');
    const { changed, text } = applyBlocks(readme.slice(0, begin) + edited + readme.slice(end), renderBlocks());
    assert.deepEqual(changed, ['orchestration']);
    assert.equal(text, readme, 'regenerating restores the figure from the results');
  });

  test('a README that lost a block is refused with the lines it needs', () => {
    const withoutSticky = readme.replace(endMarker('sticky'), '');
    assert.throws(() => applyBlocks(withoutSticky, renderBlocks()), (err: Error) => err.message.includes('the generated block for sticky is missing') && err.message.includes(endMarker('sticky')));
  });
});

describe('benchmark options and figures', () => {
  test('the quick profile is the default, --full and --smoke pick the others, --out moves the results', () => {
    assert.deepEqual(parseBenchArgs([]), { profile: 'quick', out: RESULTS_DIR });
    assert.equal(parseBenchArgs(['--full']).profile, 'full');
    assert.equal(parseBenchArgs(['--smoke']).profile, 'smoke');
    assert.deepEqual(parseBenchArgs(['--profile', 'full', '--out', '/tmp/x']), { profile: 'full', out: '/tmp/x' });
  });

  const bad: [string[], RegExp][] = [
    [['--profile', 'fast'], /--profile: expected one of smoke, quick, full, found "fast"/],
    [['--out'], /--out: expected a directory/],
    [['--rounds', '3'], /unknown option --rounds; expected --quick \(default\), --full, --smoke, --profile P or --out DIR/],
  ];
  for (const [argv, says] of bad) {
    test(`a wrong option is refused naming it: ${argv.join(' ')}`, () => {
      assert.throws(() => parseBenchArgs(argv), says);
    });
  }

  test('medians and spread: odd and even samples, one round', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.deepEqual(summarize([10.123, 30, 20]), { median: 20, min: 10.12, max: 30, n: 3 });
    assert.deepEqual(summarize([7]), { median: 7, min: 7, max: 7, n: 1 });
  });

  test('a figure or ratio that could not be measured (NaN, read back from JSON as null) renders as n/a, not as an error', () => {
    const unmeasured = JSON.parse(JSON.stringify({ summary: summarize([NaN]), ratio: { name: 'machinery/bare', value: NaN, of: 'x' } })) as { summary: Summary; ratio: Ratio };
    assert.equal(unmeasured.ratio.value, null);
    assert.equal(formatSummary(unmeasured.summary, 'ms'), 'n/a');
    assert.equal(ratioValue(unmeasured.ratio), 'n/a');
    assert.equal(ratioValue({ name: 'r', value: 1.234, of: 'x' }), '1.23x');
    assert.equal(formatSummary(summarize([1, 2, 3]), 'ms'), '2.0 ms (1.0-3.0)');
  });
});
