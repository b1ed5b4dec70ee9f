import { sleep } from '@temporalio/workflow';
import type { AnalysisChecks, MeasurementResult } from '../../activities/kubernetes';
import { describe } from './input';

/**
 * What an analysis measures and how often, after Argo Rollouts' AnalysisTemplate: every interval, for
 * count measurements; it fails when more than failureLimit measurements of one metric fail, or more
 * than errorLimit could not be taken (an analysis that cannot see is not a pass).
 */
export interface AnalysisSpec {
  intervalSeconds?: number;
  count?: number;
  failureLimit?: number;
  errorLimit?: number;
  /** Measurements without data (a query answering no series) one metric may have before the analysis is inconclusive (default 0), where the runbook asks for that judgement. */
  inconclusiveLimit?: number;
  http?: NonNullable<AnalysisChecks['http']>;
  prometheus?: NonNullable<AnalysisChecks['prometheus']>;
  /** Pod restarts and readiness of the Deployment(s) under analysis. */
  pods?: { maxRestarts?: number; minReadyRatio?: number };
}

export interface AnalysisRun {
  name: string;
  passed: boolean;
  /** passed, failed, or inconclusive (no data: a person decides); absent in runs recorded before it existed. */
  verdict?: 'passed' | 'failed' | 'inconclusive';
  reason?: string;
  measurements: { at: string; results: MeasurementResult[] }[];
  failures: Record<string, number>;
  errors: Record<string, number>;
  inconclusive?: Record<string, number>;
}

/**
 * Canary versus stable (after Kayenta): each metric's query is run for both pod sets over the same
 * trailing window; the query names the set with {{track}} (canary / stable), {{deployment}}
 * (shop-canary / shop) or {{pods}} (a regular expression of the set's pod names).
 */
export interface CompareSpec {
  /** How far back each judgement looks (default 300). */
  windowSeconds?: number;
  /** The range query's resolution: one sample per step (default 15). */
  stepSeconds?: number;
  /** Fewer samples than this for either set: no data, inconclusive (default 10). */
  minSamples?: number;
  /** Wait this long before judging, so the window holds canary traffic (default 0). */
  delaySeconds?: number;
  thresholds?: { pass?: number; marginal?: number };
  metrics: { name: string; address: string; query: string; direction?: 'increase' | 'decrease' | 'either'; alpha?: number; tolerance?: number; weight?: number; critical?: boolean }[];
}

const CONDITION = /^\s*(?:result\s*)?(<=|>=|==|!=|<|>)\s*-?\d+(?:\.\d+)?(?:e-?\d+)?\s*$/i;

const int = (v: unknown, min: number, max: number) => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/** Problems with an analysis spec, each naming its field under the given prefix. */
export function analysisProblems(spec: unknown, field: string): string[] {
  const out: string[] = [];
  if (spec === undefined) return out;
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) return [`${field}: expected an analysis object, found ${describe(spec)}`];
  const a = spec as Record<string, unknown>;
  const known = ['intervalSeconds', 'count', 'failureLimit', 'errorLimit', 'inconclusiveLimit', 'http', 'prometheus', 'pods'];
  for (const k of Object.keys(a)) if (!known.includes(k)) out.push(`${field}.${k}: unknown field; expected one of ${known.join(', ')}`);
  if (a.intervalSeconds !== undefined && !int(a.intervalSeconds, 1, 3600)) out.push(`${field}.intervalSeconds: expected 1 to 3600, found ${describe(a.intervalSeconds)}`);
  if (a.count !== undefined && !int(a.count, 1, 1000)) out.push(`${field}.count: expected 1 to 1000, found ${describe(a.count)}`);
  if (a.failureLimit !== undefined && !int(a.failureLimit, 0, 1000)) out.push(`${field}.failureLimit: expected 0 or more, found ${describe(a.failureLimit)}`);
  if (a.errorLimit !== undefined && !int(a.errorLimit, 0, 1000)) out.push(`${field}.errorLimit: expected 0 or more, found ${describe(a.errorLimit)}`);
  if (a.inconclusiveLimit !== undefined && !int(a.inconclusiveLimit, 0, 1000)) out.push(`${field}.inconclusiveLimit: expected 0 or more, found ${describe(a.inconclusiveLimit)}`);
  const list = (key: string): Record<string, unknown>[] => {
    const v = a[key];
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.length > 20) {
      out.push(`${field}.${key}: expected a list of at most 20 checks, found ${describe(v)}`);
      return [];
    }
    return v.map((x, i) => {
      if (x === null || typeof x !== 'object' || Array.isArray(x)) out.push(`${field}.${key}[${i}]: expected an object, found ${describe(x)}`);
      return (x ?? {}) as Record<string, unknown>;
    });
  };
  const isUrl = (v: unknown) => typeof v === 'string' && v.length <= 2000 && /^https?:\/\/[^\s/]+(\/\S*)?$/.test(v);
  list('http').forEach((h, i) => {
    if (!isUrl(h.url)) out.push(`${field}.http[${i}].url: expected an http(s) URL, found ${describe(h.url)}`);
    if (h.expectStatus !== undefined && !int(h.expectStatus, 100, 599)) out.push(`${field}.http[${i}].expectStatus: expected an HTTP status, found ${describe(h.expectStatus)}`);
    if (h.maxLatencyMs !== undefined && !int(h.maxLatencyMs, 1, 600_000)) out.push(`${field}.http[${i}].maxLatencyMs: expected 1 to 600000, found ${describe(h.maxLatencyMs)}`);
  });
  list('prometheus').forEach((q, i) => {
    if (!isUrl(q.address)) out.push(`${field}.prometheus[${i}].address: expected the Prometheus URL (http://host:9090), found ${describe(q.address)}`);
    if (typeof q.query !== 'string' || q.query.length === 0 || q.query.length > 4000) out.push(`${field}.prometheus[${i}].query: expected a PromQL expression, found ${describe(q.query)}`);
    if (typeof q.successCondition !== 'string' || !CONDITION.test(q.successCondition)) {
      out.push(`${field}.prometheus[${i}].successCondition: expected a comparison such as "< 0.05" or "result >= 0.99", found ${describe(q.successCondition)}`);
    }
  });
  if (a.pods !== undefined) {
    const p = a.pods as Record<string, unknown>;
    if (p === null || typeof p !== 'object') out.push(`${field}.pods: expected { maxRestarts?, minReadyRatio? }, found ${describe(a.pods)}`);
    else {
      if (p.maxRestarts !== undefined && !int(p.maxRestarts, 0, 1000)) out.push(`${field}.pods.maxRestarts: expected 0 or more, found ${describe(p.maxRestarts)}`);
      if (p.minReadyRatio !== undefined && !(typeof p.minReadyRatio === 'number' && p.minReadyRatio >= 0 && p.minReadyRatio <= 1)) out.push(`${field}.pods.minReadyRatio: expected 0 to 1, found ${describe(p.minReadyRatio)}`);
    }
  }
  if (!a.http && !a.prometheus && !a.pods) out.push(`${field}: an analysis needs at least one of http, prometheus or pods`);
  return out;
}

const PLACEHOLDER = /\{\{(track|deployment|pods)\}\}/;

/** Problems with a canary-versus-stable comparison, each naming its field under the given prefix. */
export function compareProblems(spec: unknown, field: string): string[] {
  const out: string[] = [];
  if (spec === undefined) return out;
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) return [`${field}: expected a comparison { metrics, windowSeconds, ... }, found ${describe(spec)}`];
  const c = spec as Record<string, unknown>;
  const known = ['windowSeconds', 'stepSeconds', 'minSamples', 'delaySeconds', 'thresholds', 'metrics'];
  for (const k of Object.keys(c)) if (!known.includes(k)) out.push(`${field}.${k}: unknown field; expected one of ${known.join(', ')}`);
  if (c.windowSeconds !== undefined && !int(c.windowSeconds, 10, 86_400)) out.push(`${field}.windowSeconds: expected 10 to 86400, found ${describe(c.windowSeconds)}`);
  if (c.stepSeconds !== undefined && !int(c.stepSeconds, 1, 3600)) out.push(`${field}.stepSeconds: expected 1 to 3600, found ${describe(c.stepSeconds)}`);
  if (c.minSamples !== undefined && !int(c.minSamples, 3, 10_000)) out.push(`${field}.minSamples: expected 3 or more (the rank test needs a few samples a side), found ${describe(c.minSamples)}`);
  if (c.delaySeconds !== undefined && !int(c.delaySeconds, 0, 86_400)) out.push(`${field}.delaySeconds: expected 0 to 86400, found ${describe(c.delaySeconds)}`);
  const window = (c.windowSeconds as number | undefined) ?? 300;
  const step = (c.stepSeconds as number | undefined) ?? 15;
  if (int(window, 10, 86_400) && int(step, 1, 3600) && window / step > 11_000) out.push(`${field}.stepSeconds: ${window} s at ${step} s steps is more than Prometheus' 11000 points; take a longer step`);
  const t = c.thresholds as Record<string, unknown> | undefined;
  if (t !== undefined) {
    if (t === null || typeof t !== 'object') out.push(`${field}.thresholds: expected { pass, marginal }, found ${describe(t)}`);
    else {
      const pass = (t.pass as number | undefined) ?? 95;
      const marginal = (t.marginal as number | undefined) ?? 75;
      for (const k of Object.keys(t)) if (!['pass', 'marginal'].includes(k)) out.push(`${field}.thresholds.${k}: unknown field; expected pass or marginal`);
      if (!(typeof pass === 'number' && pass >= 0 && pass <= 100)) out.push(`${field}.thresholds.pass: expected a score from 0 to 100, found ${describe(t.pass)}`);
      else if (!(typeof marginal === 'number' && marginal >= 0 && marginal <= pass)) out.push(`${field}.thresholds.marginal: expected a score from 0 to the pass threshold (${pass}), found ${describe(t.marginal)}`);
    }
  }
  const isUrl = (v: unknown) => typeof v === 'string' && v.length <= 2000 && /^https?:\/\/[^\s/]+(\/\S*)?$/.test(v);
  if (!Array.isArray(c.metrics) || c.metrics.length === 0 || c.metrics.length > 20) out.push(`${field}.metrics: expected a list of 1 to 20 metrics, found ${describe(c.metrics)}`);
  else {
    c.metrics.forEach((m: unknown, i: number) => {
      const f = `${field}.metrics[${i}]`;
      if (m === null || typeof m !== 'object' || Array.isArray(m)) return out.push(`${f}: expected { name, address, query }, found ${describe(m)}`);
      const x = m as Record<string, unknown>;
      for (const k of Object.keys(x)) if (!['name', 'address', 'query', 'direction', 'alpha', 'tolerance', 'weight', 'critical'].includes(k)) out.push(`${f}.${k}: unknown field; expected name, address, query, direction, alpha, tolerance, weight or critical`);
      if (typeof x.name !== 'string' || x.name.length === 0 || x.name.length > 200) out.push(`${f}.name: expected a name, found ${describe(x.name)}`);
      if (!isUrl(x.address)) out.push(`${f}.address: expected the Prometheus URL (http://host:9090), found ${describe(x.address)}`);
      if (typeof x.query !== 'string' || x.query.length === 0 || x.query.length > 4000) out.push(`${f}.query: expected a PromQL expression, found ${describe(x.query)}`);
      else if (!PLACEHOLDER.test(x.query)) out.push(`${f}.query: must name the pod set with {{track}}, {{deployment}} or {{pods}} (e.g. rate(errors_total{track="{{track}}"}[1m])), or canary and stable would get the same answer`);
      if (x.direction !== undefined && !['increase', 'decrease', 'either'].includes(x.direction as string)) out.push(`${f}.direction: expected increase (higher is worse), decrease or either, found ${describe(x.direction)}`);
      if (x.alpha !== undefined && !(typeof x.alpha === 'number' && x.alpha > 0 && x.alpha < 0.5)) out.push(`${f}.alpha: expected a significance level such as 0.05, found ${describe(x.alpha)}`);
      if (x.tolerance !== undefined && !(typeof x.tolerance === 'number' && x.tolerance >= 0 && x.tolerance <= 10)) out.push(`${f}.tolerance: expected a share such as 0.1 (10%), found ${describe(x.tolerance)}`);
      if (x.weight !== undefined && !(typeof x.weight === 'number' && x.weight > 0 && x.weight <= 100)) out.push(`${f}.weight: expected a weight from 0 to 100, found ${describe(x.weight)}`);
      if (x.critical !== undefined && typeof x.critical !== 'boolean') out.push(`${f}.critical: expected true or false, found ${describe(x.critical)}`);
    });
  }
  return out;
}

export function hasChecks(spec: AnalysisSpec | undefined): spec is AnalysisSpec {
  return !!spec && !!(spec.http?.length || spec.prometheus?.length || spec.pods);
}

/**
 * Runs an analysis: measure, then wait the interval, count times. Returns as soon as a limit is
 * exceeded, so a breach leads to rollback within one interval. `onMeasured` sees every measurement.
 * A verification (settle) waits one interval before its first measurement and takes at most maxCount.
 */
export async function runAnalysis(
  name: string,
  spec: AnalysisSpec,
  deployments: string[],
  measure: (checks: AnalysisChecks) => Promise<MeasurementResult[]>,
  onMeasured: (run: AnalysisRun) => void,
  opts: { settle?: boolean; maxCount?: number; inconclusive?: boolean } = {},
): Promise<AnalysisRun> {
  const run: AnalysisRun = { name, passed: false, measurements: [], failures: {}, errors: {}, ...(opts.inconclusive ? { inconclusive: {} } : {}) };
  const count = Math.min(spec.count ?? 3, opts.maxCount ?? Number.MAX_SAFE_INTEGER);
  // After a change (a rollback), metrics need a scrape or two to show the new version: wait one interval first.
  if (opts.settle) await sleep((spec.intervalSeconds ?? 10) * 1000);
  const checks: AnalysisChecks = { http: spec.http, prometheus: spec.prometheus, pods: spec.pods && { ...spec.pods, deployments } };
  for (let i = 0; i < count; i++) {
    if (i > 0) await sleep((spec.intervalSeconds ?? 10) * 1000);
    const results = await measure(checks);
    run.measurements.push({ at: new Date(Date.now()).toISOString(), results });
    for (const r of results) {
      if (r.phase === 'failed') run.failures[r.name] = (run.failures[r.name] ?? 0) + 1;
      if (r.phase === 'error') run.errors[r.name] = (run.errors[r.name] ?? 0) + 1;
      if (r.phase === 'inconclusive' && run.inconclusive) run.inconclusive[r.name] = (run.inconclusive[r.name] ?? 0) + 1;
    }
    const failed = Object.entries(run.failures).find(([, n]) => n > (spec.failureLimit ?? 0));
    const errored = Object.entries(run.errors).find(([, n]) => n > (spec.errorLimit ?? 2));
    const nodata = Object.entries(run.inconclusive ?? {}).find(([, n]) => n > (spec.inconclusiveLimit ?? 0));
    onMeasured(run);
    if (failed || errored) {
      const [metric, n] = (failed ?? errored)!;
      const last = results.find((r) => r.name === metric);
      run.reason = `analysis '${name}': ${metric} ${failed ? 'failed' : 'could not be measured'} ${n} time(s), over the limit of ${failed ? (spec.failureLimit ?? 0) : (spec.errorLimit ?? 2)}${last ? ` (${last.detail})` : ''}`;
      if (opts.inconclusive) run.verdict = 'failed';
      return run;
    }
    if (nodata) {
      run.verdict = 'inconclusive';
      run.reason = `analysis '${name}': no data for ${nodata[0]} in ${nodata[1]} measurement(s), over the limit of ${spec.inconclusiveLimit ?? 0}; nothing to judge is not a pass or a failure`;
      return run;
    }
  }
  run.passed = true;
  if (opts.inconclusive) run.verdict = 'passed';
  return run;
}
