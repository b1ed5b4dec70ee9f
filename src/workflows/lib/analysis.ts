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
  http?: NonNullable<AnalysisChecks['http']>;
  prometheus?: NonNullable<AnalysisChecks['prometheus']>;
  /** Pod restarts and readiness of the Deployment(s) under analysis. */
  pods?: { maxRestarts?: number; minReadyRatio?: number };
}

export interface AnalysisRun {
  name: string;
  passed: boolean;
  reason?: string;
  measurements: { at: string; results: MeasurementResult[] }[];
  failures: Record<string, number>;
  errors: Record<string, number>;
}

const CONDITION = /^\s*(?:result\s*)?(<=|>=|==|!=|<|>)\s*-?\d+(?:\.\d+)?(?:e-?\d+)?\s*$/i;

const int = (v: unknown, min: number, max: number) => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/** Problems with an analysis spec, each naming its field under the given prefix. */
export function analysisProblems(spec: unknown, field: string): string[] {
  const out: string[] = [];
  if (spec === undefined) return out;
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) return [`${field}: expected an analysis object, found ${describe(spec)}`];
  const a = spec as Record<string, unknown>;
  const known = ['intervalSeconds', 'count', 'failureLimit', 'errorLimit', 'http', 'prometheus', 'pods'];
  for (const k of Object.keys(a)) if (!known.includes(k)) out.push(`${field}.${k}: unknown field; expected one of ${known.join(', ')}`);
  if (a.intervalSeconds !== undefined && !int(a.intervalSeconds, 1, 3600)) out.push(`${field}.intervalSeconds: expected 1 to 3600, found ${describe(a.intervalSeconds)}`);
  if (a.count !== undefined && !int(a.count, 1, 1000)) out.push(`${field}.count: expected 1 to 1000, found ${describe(a.count)}`);
  if (a.failureLimit !== undefined && !int(a.failureLimit, 0, 1000)) out.push(`${field}.failureLimit: expected 0 or more, found ${describe(a.failureLimit)}`);
  if (a.errorLimit !== undefined && !int(a.errorLimit, 0, 1000)) out.push(`${field}.errorLimit: expected 0 or more, found ${describe(a.errorLimit)}`);
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
  opts: { settle?: boolean; maxCount?: number } = {},
): Promise<AnalysisRun> {
  const run: AnalysisRun = { name, passed: false, measurements: [], failures: {}, errors: {} };
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
    }
    const failed = Object.entries(run.failures).find(([, n]) => n > (spec.failureLimit ?? 0));
    const errored = Object.entries(run.errors).find(([, n]) => n > (spec.errorLimit ?? 2));
    onMeasured(run);
    if (failed || errored) {
      const [metric, n] = (failed ?? errored)!;
      const last = results.find((r) => r.name === metric);
      run.reason = `analysis '${name}': ${metric} ${failed ? 'failed' : 'could not be measured'} ${n} time(s), over the limit of ${failed ? (spec.failureLimit ?? 0) : (spec.errorLimit ?? 2)}${last ? ` (${last.detail})` : ''}`;
      return run;
    }
  }
  run.passed = true;
  return run;
}
