import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { BENCHES, BenchResult } from '../../bench/lib/report';
import { beginMarker, endMarker, README } from '../../bench/readme';
import { REPO } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-bench-smoke-'));
const results = join(dir, 'results');

after(() => rmSync(dir, { recursive: true, force: true }));

function node(script: string, args: string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, script), ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`${script} ${args.join(' ')} did not finish in ${timeoutMs} ms\n${output}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('the benchmarks, in their smoke profile (one tiny round; the figures are not checked, only that every script runs)', () => {
  test('npm run bench -- --smoke runs every benchmark and each writes its results, with the machine, its load and the ratios it printed', async () => {
    const r = await node('bench/run.ts', ['--smoke', '--out', results], 15 * 60_000);
    assert.equal(r.code, 0, r.output);
    for (const bench of BENCHES) {
      const file = join(results, `${bench}-smoke.json`);
      assert.ok(existsSync(file), `${bench} wrote ${file}\n${r.output}`);
      const result = JSON.parse(readFileSync(file, 'utf8')) as BenchResult;
      assert.equal(result.bench, bench);
      assert.equal(result.profile, 'smoke');
      assert.ok(result.machine.cores > 0);
      assert.equal(result.load.loadAvgStart.length, 3);
      assert.ok(result.ratios.length > 0, `${bench} reports ratios`);
      for (const ratio of result.ratios) assert.match(r.output, new RegExp(`ratio ${ratio.name.replace(/[/.*+?^${}()|[\]\\]/g, '\\$&')}: `), `${bench} printed its ratio ${ratio.name}`);
    }
    assert.match(r.output, /benchmarks \(smoke profile\)/);
    assert.doesNotMatch(r.output, /README\.md: regenerated/, 'a smoke run never touches the README');
  });

  test('the README generator renders every block from those results, and its check names every block that differs from them', async () => {
    const copy = join(dir, 'README.md');
    copyFileSync(README, copy);
    const stale = await node('bench/readme.ts', ['--check', '--readme', copy, '--results', results, '--profile', 'smoke'], 60_000);
    assert.equal(stale.code, 1, stale.output);
    assert.match(stale.output, new RegExp(`the Performance blocks ${BENCHES.join(', ')} do not match the results in .*; run npm run bench:readme`));
    const written = await node('bench/readme.ts', ['--readme', copy, '--results', results, '--profile', 'smoke'], 60_000);
    assert.equal(written.code, 0, written.output);
    const text = readFileSync(copy, 'utf8');
    for (const bench of BENCHES) {
      const block = text.slice(text.indexOf(beginMarker(bench)), text.indexOf(endMarker(bench)));
      assert.match(block, /\(smoke profile, /, `${bench} block generated from the smoke result`);
    }
    const fresh = await node('bench/readme.ts', ['--check', '--readme', copy, '--results', results, '--profile', 'smoke'], 60_000);
    assert.equal(fresh.code, 0, fresh.output);
    assert.equal(readFileSync(README, 'utf8').includes('(smoke profile, '), false, 'the README itself is untouched');
  });
});
