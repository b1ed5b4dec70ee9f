import assert from 'node:assert/strict';
import { test } from 'node:test';
import { failureDigest } from '../../scripts/test-digest';

test('the digest of a failed file is its failing tests with their errors, not the passing ones', () => {
  const output = [
    '▶ suite',
    '  ✔ passes (12ms)',
    '  ✖ loses a row (40ms)',
    'ℹ tests 2',
    'ℹ fail 1',
    '',
    '✖ failing tests:',
    '',
    'test at test/x.test.ts:10:3',
    '✖ loses a row (40ms)',
    "  AssertionError [ERR_ASSERTION]: rows 9 !== 10",
  ].join('\n');
  const digest = failureDigest(output);
  assert.match(digest, /loses a row/);
  assert.match(digest, /rows 9 !== 10/);
  assert.doesNotMatch(digest, /passes/);
});

test('a killed file without a summary gives its last lines; a long digest is cut and says so', () => {
  const killed = ['starting', 'step 1', 'run-tests: x did not finish within 30 minutes and was killed'].join('\n');
  assert.match(failureDigest(killed), /did not finish within 30 minutes/);
  const long = ['✖ failing tests:', ...Array.from({ length: 100 }, (_, i) => `line ${i}`)].join('\n');
  const cut = failureDigest(long, 10).split('\n');
  assert.equal(cut.length, 11);
  assert.match(cut[10], /90 more lines/);
});

test('stack frames and error bookkeeping are left out and long lines are cut, so several files fit in the tail', () => {
  const output = [
    '✖ failing tests:',
    '✖ the drill passes (37859ms)',
    '  Error [WorkflowFailedError]: Workflow execution failed',
    '      at WorkflowClient.result (/x/workflow-client.ts:977:15)',
    `    cause: ApplicationFailure: drill failed: ${'x'.repeat(400)}`,
    "      failure: { message: 'long', source: 'TypeScriptSDK' },",
    "    code: 'ERR_ASSERTION',",
    '  }',
  ].join('\n');
  const lines = failureDigest(output).split('\n');
  assert.ok(lines.includes('✖ the drill passes (37859ms)'));
  assert.ok(lines.some((l) => l.includes('Workflow execution failed')));
  assert.ok(lines.every((l) => !/^\s+at /.test(l) && !/code: 'ERR_ASSERTION'/.test(l) && l.trim() !== '}'), lines.join('\n'));
  const cause = lines.find((l) => l.includes('cause: ApplicationFailure'))!;
  assert.ok(cause.length <= 241 && cause.endsWith('…'), cause);
});
