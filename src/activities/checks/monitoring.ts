/**
 * The readiness audit's monitoring checks: Prometheus (scrape targets, key metrics, retention, the
 * alert rules loaded) through its HTTP API, and the workers' own health endpoints.
 */
import type { CheckId } from '../../checklist/catalog';
import { CheckDeps, errorText, fail, pass, unknown, Verdict, VerdictFn } from './support';

const DAY_MS = 86_400_000;
/** Alert rules of deploy/prometheus/rules.yml each checklist item expects to be loaded. */
const REQUIRED_ALERTS = {
  serviceDown: ['TemporalFrontendDown', 'RunbookWorkerNotReady'],
  failureRate: ['HighWorkflowFailureRate'],
  latency: ['LongScheduleToStartLatency'],
  queueBuildup: ['TaskQueueBacklogBuildup'],
  resources: ['ContainerMemoryNearLimit', 'ContainerCpuThrottled', 'DiskSpaceLow'],
};
/** Metric name prefixes the checklist calls key: workflows, activities, schedule-to-start. */
const KEY_METRICS = ['temporal_workflow_completed', 'temporal_workflow_failed', 'temporal_activity_execution_latency', 'temporal_workflow_task_schedule_to_start_latency'];

/**
 * Latency histograms collected by Prometheus — the SDK's (`temporal_*latency*`), the server's
 * (`service_latency`, `persistence_latency`, `task_latency*`) and this project's steps: each
 * needs enough buckets over a wide enough range for a p99 to mean something (a histogram with a few
 * coarse buckets reports every quantile as one of them).
 */
const LATENCY_HISTOGRAMS = '{__name__=~"temporal_.*latency.*_bucket|(service|persistence|task)_latency.*_bucket|runbook_step_duration_seconds_bucket"}';
export const HISTOGRAM_MIN_BUCKETS = 8;
/** The largest finite bound over the smallest: three orders of magnitude (e.g. 10 ms to 10 s). */
export const HISTOGRAM_MIN_SPAN = 1_000;

/** Judges each latency histogram's bucket bounds (the `le` values, +Inf included). */
export function judgeHistogramBuckets(bounds: Record<string, string[]>): { coarse: Record<string, string>; histograms: Record<string, { buckets: number; smallest: number; largest: number }> } {
  const coarse: Record<string, string> = {};
  const histograms: Record<string, { buckets: number; smallest: number; largest: number }> = {};
  for (const [name, les] of Object.entries(bounds)) {
    const finite = [...new Set(les.map(Number).filter((n) => Number.isFinite(n) && n > 0))].sort((a, b) => a - b);
    const smallest = finite[0] ?? NaN;
    const largest = finite[finite.length - 1] ?? NaN;
    histograms[name] = { buckets: finite.length, smallest, largest };
    if (finite.length < HISTOGRAM_MIN_BUCKETS) coarse[name] = `${finite.length} finite bucket${finite.length === 1 ? '' : 's'} (at least ${HISTOGRAM_MIN_BUCKETS})`;
    else if (largest / smallest < HISTOGRAM_MIN_SPAN) coarse[name] = `buckets from ${smallest} to ${largest} span less than ${HISTOGRAM_MIN_SPAN}x`;
  }
  return { coarse, histograms };
}

/** Prometheus durations: 15d, 1y, 2w, 12h30m. */
export function prometheusDurationMs(text: string): number | undefined {
  const units: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: DAY_MS, w: 7 * DAY_MS, y: 365 * DAY_MS };
  const parts = [...text.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) return undefined;
  return parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]], 0);
}

type MonitoringCheck = Extract<CheckId, `checkPrometheus${string}` | `checkAlert${string}` | 'checkWorkerHealth' | 'checkHistogramBuckets'>;

export function createMonitoringChecks(deps: CheckDeps): Record<MonitoringCheck, VerdictFn> {
  const { env } = deps;
  const prometheus = async <T>(path: string, signal: AbortSignal): Promise<T> => {
    const base = env.monitoring!.prometheusUrl!.replace(/\/$/, '');
    const res = await fetch(`${base}${path}`, { signal });
    if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`GET ${path}: ${body.error ?? body.status}`);
    return body.data;
  };
  const noPrometheus = () => unknown(`no monitoring.prometheusUrl for environment ${deps.environment}`);
  const alertsLoaded = (names: string[]) => async (signal: AbortSignal): Promise<Verdict> => {
    if (!env.monitoring?.prometheusUrl) return noPrometheus();
    const data = await prometheus<{ groups: { name: string; rules: { name: string; type: string; health?: string }[] }[] }>('/api/v1/rules?type=alert', signal);
    const loaded = new Map(data.groups.flatMap((g) => g.rules.map((r) => [r.name, r.health ?? 'unknown'] as const)));
    const missing = names.filter((n) => !loaded.has(n));
    const evidence = { required: names, loaded: Object.fromEntries(names.filter((n) => loaded.has(n)).map((n) => [n, loaded.get(n)])), missing, alertRulesLoaded: loaded.size };
    return missing.length === 0 ? pass(`alert rules loaded: ${names.join(', ')}`, evidence) : fail(`alert rules not loaded in Prometheus: ${missing.join(', ')}`, evidence);
  };

  return {
    async checkPrometheusTargets(_t, _i, signal) {
      if (!env.monitoring?.prometheusUrl) return noPrometheus();
      const data = await prometheus<{ activeTargets: { labels: Record<string, string>; health: string; lastError: string; scrapeUrl: string }[] }>('/api/v1/targets?state=active', signal);
      const targets = data.activeTargets.map((t) => ({ job: t.labels.job, instance: t.labels.instance, health: t.health, lastError: t.lastError || null }));
      const down = targets.filter((t) => t.health !== 'up');
      if (targets.length === 0) return fail('Prometheus scrapes nothing', { targets });
      return down.length === 0 ? pass(`all ${targets.length} scrape targets are up`, { targets }) : fail(`scrape targets down: ${down.map((t) => `${t.job}/${t.instance}`).join(', ')}`, { targets });
    },
    async checkPrometheusKeyMetrics(_t, _i, signal) {
      if (!env.monitoring?.prometheusUrl) return noPrometheus();
      const names = await prometheus<string[]>('/api/v1/label/__name__/values', signal);
      const present = Object.fromEntries(KEY_METRICS.map((k) => [k, names.some((n) => n.startsWith(k))]));
      const missing = KEY_METRICS.filter((k) => !present[k]);
      return missing.length === 0 ? pass('the key Temporal metrics are collected', { present }) : fail(`not collected: ${missing.join(', ')}`, { present });
    },
    async checkPrometheusRetention(_t, _i, signal) {
      if (!env.monitoring?.prometheusUrl) return noPrometheus();
      const flags = await prometheus<Record<string, string>>('/api/v1/status/flags', signal);
      const raw = flags['storage.tsdb.retention.time'] ?? flags['storage.tsdb.retention'] ?? '0s';
      // 0 means the default, 15 days.
      const ms = raw === '0s' || raw === '0' ? 15 * DAY_MS : prometheusDurationMs(raw);
      if (ms === undefined) return unknown(`cannot read the retention '${raw}'`, { retention: raw });
      const min = env.monitoring.minRetention;
      const evidence = { retention: raw, retentionDays: ms / DAY_MS, minimumDays: min / DAY_MS, sizeLimit: flags['storage.tsdb.retention.size'] ?? null };
      return ms >= min ? pass(`metrics kept ${ms / DAY_MS} days`, evidence) : fail(`metrics kept ${ms / DAY_MS} days, less than ${min / DAY_MS}`, evidence);
    },
    async checkHistogramBuckets(_t, _i, signal) {
      if (!env.monitoring?.prometheusUrl) return noPrometheus();
      const data = await prometheus<{ result: { metric: { __name__: string; le?: string } }[] }>(`/api/v1/query?query=${encodeURIComponent(`count by (__name__, le) (${LATENCY_HISTOGRAMS})`)}`, signal);
      const bounds: Record<string, string[]> = {};
      for (const r of data.result) (bounds[r.metric.__name__] ??= []).push(r.metric.le ?? '');
      if (Object.keys(bounds).length === 0) return fail('Prometheus collects no latency histogram of Temporal or the runbooks', { query: LATENCY_HISTOGRAMS });
      const { coarse, histograms } = judgeHistogramBuckets(bounds);
      const evidence = { histograms, coarse, minimumBuckets: HISTOGRAM_MIN_BUCKETS, minimumSpan: HISTOGRAM_MIN_SPAN };
      const names = Object.keys(coarse);
      return names.length === 0
        ? pass(`${Object.keys(histograms).length} latency histogram${Object.keys(histograms).length === 1 ? '' : 's'} with at least ${HISTOGRAM_MIN_BUCKETS} buckets over ${HISTOGRAM_MIN_SPAN}x or more`, evidence)
        : fail(`latency histograms too coarse for percentiles: ${names.map((n) => `${n}: ${coarse[n]}`).join('; ')}`, evidence);
    },
    checkAlertServiceDown: (_t, _i, signal) => alertsLoaded(REQUIRED_ALERTS.serviceDown)(signal),
    checkAlertFailureRate: (_t, _i, signal) => alertsLoaded(REQUIRED_ALERTS.failureRate)(signal),
    checkAlertLatency: (_t, _i, signal) => alertsLoaded(REQUIRED_ALERTS.latency)(signal),
    checkAlertQueueBuildup: (_t, _i, signal) => alertsLoaded(REQUIRED_ALERTS.queueBuildup)(signal),
    checkAlertResources: (_t, _i, signal) => alertsLoaded(REQUIRED_ALERTS.resources)(signal),
    async checkWorkerHealth(_t, _i, signal) {
      const urls = env.monitoring?.workerUrls ?? [];
      if (urls.length === 0) return unknown(`no monitoring.workerUrls for environment ${deps.environment}`);
      const workers: Record<string, { health: number | string; ready: number | string }> = {};
      for (const url of urls) {
        const base = url.replace(/\/$/, '');
        const status = (path: string) => fetch(`${base}${path}`, { signal }).then((r) => r.status, (err: unknown) => `unreachable: ${errorText(err)}`);
        workers[base] = { health: await status('/health'), ready: await status('/ready') };
      }
      const bad = Object.entries(workers).filter(([, v]) => v.health !== 200 || v.ready !== 200);
      return bad.length === 0 ? pass(`${urls.length} worker${urls.length === 1 ? '' : 's'} healthy and ready`, { workers }) : fail(`not healthy and ready: ${bad.map(([u]) => u).join(', ')}`, { workers });
    },
  };
}
