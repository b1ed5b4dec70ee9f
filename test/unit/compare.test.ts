import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { classifyMetric, hodgesLehmann, judge, mannWhitneyU, median, normalCdf } from '../../src/analysis/compare';

const close = (a: number, b: number, eps: number, what: string) => assert.ok(Math.abs(a - b) <= eps, `${what}: ${a} is not within ${eps} of ${b}`);

/** A deterministic noisy series around a level, so tests never depend on Math.random. */
function series(level: number, spread: number, n: number, seed = 1): number[] {
  let x = seed;
  return Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return level + spread * (x / 2147483648 - 0.5);
  });
}

describe('Mann-Whitney U', () => {
  test('two separate samples: U is 0 and the p-value matches the normal approximation (R: wilcox.test(correct = TRUE))', () => {
    const r = mannWhitneyU([1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15, 16]);
    assert.equal(r.u, 0);
    close(r.p, 0.000939, 0.00001, 'p');
  });

  test('ties get mid-ranks and the variance correction', () => {
    const r = mannWhitneyU([1, 2, 2, 3, 3, 3, 4, 5], [3, 3, 4, 4, 5, 5, 6, 7]);
    assert.equal(r.u, 11);
    close(r.z, -2.2004, 0.0005, 'z');
    close(r.p, 0.02778, 0.0002, 'p');
  });

  test('identical samples are not different; all-equal values give p = 1', () => {
    const a = series(5, 1, 30);
    assert.ok(mannWhitneyU(a, [...a]).p > 0.9);
    assert.equal(mannWhitneyU([2, 2, 2, 2], [2, 2, 2, 2]).p, 1);
  });

  test('helpers: median, Hodges-Lehmann shift, normal CDF', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 2, 3]), 2.5);
    assert.equal(hodgesLehmann([10, 11, 12], [1, 2, 3]), 9);
    close(normalCdf(1.96), 0.975, 0.0001, 'Φ(1.96)');
    close(normalCdf(-1.96), 0.025, 0.0001, 'Φ(-1.96)');
  });
});

describe('judging a canary against the stable version', () => {
  const stable = series(0.01, 0.004, 30, 7);
  test('a canary whose error rate is clearly higher is classified high and fails the judgement', () => {
    const m = classifyMetric({ name: 'error rate' }, series(0.1, 0.02, 30, 3), stable, 10);
    assert.equal(m.result, 'high');
    assert.ok(m.p! < 0.001);
    assert.ok(m.shift! > 0.08);
    const j = judge([m]);
    assert.equal(j.verdict, 'fail');
    assert.equal(j.score, 0);
    assert.match(j.reason, /error rate: canary significantly higher/);
  });

  test('a canary like the stable version passes', () => {
    const j = judge([classifyMetric({ name: 'error rate' }, series(0.01, 0.004, 30, 11), stable, 10)]);
    assert.equal(j.verdict, 'pass');
    assert.equal(j.score, 100);
  });

  test('a significant shift in the harmless direction passes; in the harmful direction for a "decrease" metric it fails', () => {
    const better = classifyMetric({ name: 'error rate', direction: 'increase' }, series(0.001, 0.0005, 30, 5), stable, 10);
    assert.equal(better.result, 'pass');
    assert.match(better.reason, /not harmful/);
    const lowerSuccess = classifyMetric({ name: 'success ratio', direction: 'decrease' }, series(0.9, 0.01, 30, 5), series(0.99, 0.005, 30, 9), 10);
    assert.equal(lowerSuccess.result, 'low');
  });

  test('a shift within the tolerance passes', () => {
    const m = classifyMetric({ name: 'latency', tolerance: 0.2 }, series(105, 2, 40, 2), series(100, 2, 40, 4), 10);
    assert.equal(m.result, 'pass');
    assert.match(m.reason, /within the tolerance of 20%/);
  });

  test('no data or too few samples is inconclusive, never a failure', () => {
    const empty = classifyMetric({ name: 'error rate' }, [], stable, 10);
    assert.equal(empty.result, 'nodata');
    const few = classifyMetric({ name: 'latency' }, [1, 2, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 10);
    assert.equal(few.result, 'nodata');
    const j = judge([empty, classifyMetric({ name: 'other' }, series(1, 0.1, 20), series(1, 0.1, 20, 3), 10)]);
    assert.equal(j.verdict, 'inconclusive');
    assert.match(j.reason, /no data to judge error rate \(too few samples to judge \(canary 0, stable 30/);
    assert.equal(judge([]).verdict, 'inconclusive');
  });

  test('scores between the thresholds are marginal; a failed critical metric fails whatever the score', () => {
    const pass = (name: string) => ({ name, result: 'pass' as const, canarySamples: 20, stableSamples: 20, weight: 1, critical: false, reason: 'ok' });
    const high = (name: string, critical = false) => ({ ...pass(name), result: 'high' as const, critical, reason: 'worse' });
    assert.equal(judge([pass('a'), pass('b'), pass('c'), high('d')], { pass: 95, marginal: 75 }).verdict, 'marginal');
    assert.equal(judge([pass('a'), pass('b'), pass('c'), high('d')], { pass: 95, marginal: 75 }).score, 75);
    assert.equal(judge([pass('a'), high('b'), high('c')], { pass: 95, marginal: 75 }).verdict, 'fail');
    const crit = judge([...Array.from({ length: 30 }, (_, i) => pass(`m${i}`)), high('errors', true)]);
    assert.equal(crit.verdict, 'fail');
    assert.match(crit.reason, /critical metric errors failed/);
  });
});
