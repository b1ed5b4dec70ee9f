/**
 * Canary-versus-stable judgement, after Kayenta: the same metric is sampled for both pod sets over the
 * same window, each metric is classified with a Mann-Whitney U rank test (is the canary's distribution
 * shifted from the stable one's, and which way), and the run is scored as the weighted share of metrics
 * that pass. Pure functions, shared by the activity that samples and by the tests.
 */

export type MetricDirection = 'increase' | 'decrease' | 'either';

export interface MetricClassification {
  name: string;
  /** pass: no harmful shift; high / low: the canary is significantly worse upward / downward; nodata: too few samples to judge. */
  result: 'pass' | 'high' | 'low' | 'nodata';
  canarySamples: number;
  stableSamples: number;
  canaryMedian?: number;
  stableMedian?: number;
  /** Hodges-Lehmann estimate of the shift (canary minus stable). */
  shift?: number;
  /** Two-sided p-value of the U test (normal approximation with tie correction). */
  p?: number;
  u?: number;
  weight: number;
  critical: boolean;
  reason: string;
}

export interface Judgement {
  verdict: 'pass' | 'marginal' | 'fail' | 'inconclusive';
  /** Weighted share of classified metrics that passed, 0-100 (undefined when nothing could be judged). */
  score?: number;
  thresholds: { pass: number; marginal: number };
  metrics: MetricClassification[];
  reason: string;
}

export interface MetricJudgementSpec {
  name: string;
  /** Which way is harmful: increase (error rate, latency; the default), decrease (success rate, throughput), or either. */
  direction?: MetricDirection;
  /** Significance level of the U test (default 0.05). */
  alpha?: number;
  /** A significant shift smaller than this share of the stable median still passes (default 0). */
  tolerance?: number;
  weight?: number;
  /** A critical metric that fails fails the whole judgement, whatever the score. */
  critical?: boolean;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Standard normal cumulative distribution (Abramowitz and Stegun 7.1.26, error below 1.5e-7). */
export function normalCdf(z: number): number {
  const x = Math.abs(z) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * x);
  const erf = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
  return z >= 0 ? 0.5 * (1 + erf) : 0.5 * (1 - erf);
}

/**
 * Mann-Whitney U test of a against b: U of a (the number of pairs in which a is larger, ties counting
 * a half), and the two-sided p-value from the normal approximation with tie correction and continuity
 * correction. Good from about 8 samples a side, which is why fewer are judged "no data".
 */
export function mannWhitneyU(a: number[], b: number[]): { u: number; z: number; p: number } {
  const n1 = a.length;
  const n2 = b.length;
  const all = [...a.map((v) => ({ v, g: 0 })), ...b.map((v) => ({ v, g: 1 }))].sort((x, y) => x.v - y.v);
  const ranks = new Array<number>(all.length);
  let tieTerm = 0;
  for (let i = 0; i < all.length; ) {
    let j = i;
    while (j + 1 < all.length && all[j + 1].v === all[i].v) j++;
    const rank = (i + j + 2) / 2;
    for (let k = i; k <= j; k++) ranks[k] = rank;
    const t = j - i + 1;
    tieTerm += t * t * t - t;
    i = j + 1;
  }
  let r1 = 0;
  all.forEach((x, i) => {
    if (x.g === 0) r1 += ranks[i];
  });
  const u = r1 - (n1 * (n1 + 1)) / 2;
  const n = n1 + n2;
  const mean = (n1 * n2) / 2;
  const variance = ((n1 * n2) / 12) * (n + 1 - tieTerm / (n * (n - 1)));
  if (variance <= 0) return { u, z: 0, p: 1 };
  const diff = u - mean;
  const z = (diff - Math.sign(diff) * 0.5) / Math.sqrt(variance);
  return { u, z, p: Math.min(1, 2 * (1 - normalCdf(Math.abs(z)))) };
}

/** Hodges-Lehmann estimate of the location shift a - b: the median of all pairwise differences. */
export function hodgesLehmann(a: number[], b: number[]): number {
  const d: number[] = [];
  for (const x of a) for (const y of b) d.push(x - y);
  return median(d);
}

/** Classifies one metric from its canary and stable samples. */
export function classifyMetric(spec: MetricJudgementSpec, canary: number[], stable: number[], minSamples: number): MetricClassification {
  const c = canary.filter(Number.isFinite);
  const s = stable.filter(Number.isFinite);
  const base = { name: spec.name, canarySamples: c.length, stableSamples: s.length, weight: spec.weight ?? 1, critical: spec.critical ?? false };
  if (c.length < minSamples || s.length < minSamples) {
    return { ...base, result: 'nodata', reason: `too few samples to judge (canary ${c.length}, stable ${s.length}; at least ${minSamples} each)` };
  }
  const { u, p } = mannWhitneyU(c, s);
  const shift = hodgesLehmann(c, s);
  const canaryMedian = median(c);
  const stableMedian = median(s);
  const stats = { ...base, u, p, shift, canaryMedian, stableMedian };
  const alpha = spec.alpha ?? 0.05;
  const direction = spec.direction ?? 'increase';
  const fmt = (x: number) => Number(x.toPrecision(4));
  const summary = `canary median ${fmt(canaryMedian)} vs stable ${fmt(stableMedian)}, shift ${fmt(shift)}, p=${p.toPrecision(3)}`;
  if (p >= alpha || shift === 0) return { ...stats, result: 'pass', reason: `no significant difference (${summary})` };
  const tolerated = Math.abs(shift) <= (spec.tolerance ?? 0) * Math.abs(stableMedian);
  const harmful = (shift > 0 && direction !== 'decrease') || (shift < 0 && direction !== 'increase');
  if (!harmful) return { ...stats, result: 'pass', reason: `significantly ${shift > 0 ? 'higher' : 'lower'}, which is not harmful for this metric (${summary})` };
  if (tolerated) return { ...stats, result: 'pass', reason: `significant but within the tolerance of ${(spec.tolerance ?? 0) * 100}% (${summary})` };
  return { ...stats, result: shift > 0 ? 'high' : 'low', reason: `canary significantly ${shift > 0 ? 'higher' : 'lower'} (${summary})` };
}

/**
 * The run's verdict: any metric without enough data makes it inconclusive (no data is not a failure);
 * a failed critical metric fails it; otherwise the weighted share of passing metrics is compared with
 * the pass and marginal thresholds (marginal asks a person, as Kayenta's "marginal" does).
 */
export function judge(metrics: MetricClassification[], thresholds: { pass?: number; marginal?: number } = {}): Judgement {
  const t = { pass: thresholds.pass ?? 95, marginal: thresholds.marginal ?? 75 };
  const nodata = metrics.filter((m) => m.result === 'nodata');
  if (metrics.length === 0) return { verdict: 'inconclusive', thresholds: t, metrics, reason: 'no metrics to compare' };
  if (nodata.length > 0) {
    return { verdict: 'inconclusive', thresholds: t, metrics, reason: `no data to judge ${nodata.map((m) => `${m.name} (${m.reason})`).join('; ')}` };
  }
  const total = metrics.reduce((n, m) => n + m.weight, 0);
  const passed = metrics.filter((m) => m.result === 'pass').reduce((n, m) => n + m.weight, 0);
  const score = total > 0 ? Math.round((10_000 * passed) / total) / 100 : 0;
  const failed = metrics.filter((m) => m.result !== 'pass');
  const failedText = failed.map((m) => `${m.name}: ${m.reason}`).join('; ');
  const critical = failed.find((m) => m.critical);
  if (critical) return { verdict: 'fail', score, thresholds: t, metrics, reason: `critical metric ${critical.name} failed: ${critical.reason}` };
  if (score >= t.pass) return { verdict: 'pass', score, thresholds: t, metrics, reason: `score ${score} (pass at ${t.pass})${failed.length ? `; ${failedText}` : ''}` };
  if (score >= t.marginal) return { verdict: 'marginal', score, thresholds: t, metrics, reason: `score ${score} is marginal (pass at ${t.pass}, marginal at ${t.marginal}): ${failedText}` };
  return { verdict: 'fail', score, thresholds: t, metrics, reason: `score ${score} is below the marginal threshold of ${t.marginal}: ${failedText}` };
}
