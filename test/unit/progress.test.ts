import assert from 'node:assert/strict';
import { test } from 'node:test';
import { progressLine, progressPrinter } from '../../src/cli/progress';

const sink = (isTTY: boolean, columns = 80) => {
  const out: string[] = [];
  return { out, stream: { isTTY, columns, write: (t: string) => out.push(t) } };
};

test('on a terminal the progress line is rewritten in place with the elapsed time, cut to the width, and ended with a newline', () => {
  const { out, stream } = sink(true, 40);
  const p = progressPrinter(stream, 0);
  p.show('[restore into scratch database] 1.0 MB', 3_000);
  p.show('[restore into scratch database] 1.0 MB', 4_000);
  p.end();
  assert.equal(out.length, 3, 'the same line is redrawn each second (its clock moves)');
  assert.ok(out[0].startsWith('\r\x1b[2K'));
  assert.ok(out[1].endsWith('…') && out[1].length - '\r\x1b[2K'.length <= 39, out[1]);
  const short = sink(true, 200);
  const q = progressPrinter(short.stream, 0);
  q.show('[preflight]', 2_500);
  assert.equal(short.out[0], '\r\x1b[2K  [preflight] (2 s)');
  assert.equal(out[2], '\n');
});

test('elsewhere (a pipe, CI) each changed line is printed once, plain, and nothing is added at the end', () => {
  const { out, stream } = sink(false);
  const p = progressPrinter(stream, 0);
  p.show('[preflight]');
  p.show('[preflight]');
  p.show('[fault] attempt 2');
  p.end();
  assert.deepEqual(out, ['  [preflight]\n', '  [fault] attempt 2\n']);
  assert.ok(out.every((l) => !l.includes('\x1b') && !l.includes('\r')));
});

test('the line names the step and what its activity reported: bytes, tables, pods, workflows, the attempt', () => {
  assert.equal(progressLine({}), '[starting]');
  assert.equal(progressLine({ step: 'dump', details: { phase: 'uploading', bytes: 2_097_152, totalBytes: 4_194_304 } }), '[dump] uploading 2.0 MB of 4.0 MB');
  assert.equal(progressLine({ step: 'validate', details: { tablesChecksummed: 3, tables: 9 } }), '[validate] tables checksummed 3/9');
  assert.equal(progressLine({ step: 'rollout', details: { deployment: 'web', replicas: 4, ready: 2, updated: 3 }, attempt: 2 }), '[rollout] web: 2/4 ready, 3 updated attempt 2');
  assert.equal(progressLine({ step: 'load', details: { completed: 5, started: 9, inFlight: 4, failed: 0 } }), '[load] 5/9 workflows completed, 4 running, 0 failed');
  assert.equal(progressLine({ step: 'backup', details: { phase: 'backup', percent: 41.25, node: 'pg-a' } }), '[backup] backup 41.3% on pg-a');
  assert.equal(progressLine({ step: 'failback', details: { waitingForReplay: 'pg-a', lsn: '0/3000000' } }), '[failback] waiting for replay: pg-a');
  assert.equal(progressLine({ step: 'fault', details: { acknowledged: 120 } }), '[fault] 120 writes acknowledged');
});
