import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { BENCHES } from '../../bench/lib/report';
import { applyBlocks, beginMarker, endMarker, README, renderBlocks } from '../../bench/readme';

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
