import { classifyMetric, judge, Judgement } from '../analysis/compare';
import type { CompareSpec } from '../workflows/lib/analysis';
import { failure } from './errors';
import { withHeartbeat } from './heartbeat';
import { classifyKubernetes, LABEL_TRACK } from './kubernetes';
import { KubeApi, selectorText } from './kube';

export interface ComparisonResult extends Judgement {
  window: { start: string; end: string; stepSeconds: number };
  /** The two queries each metric ran, for the record. */
  queries: { name: string; canary: string; stable: string }[];
}

/** Fills the pod-set placeholders of a comparison query. */
export function querySet(query: string, set: { track: string; deployment: string; pods: string[] }): string {
  const pods = set.pods.length ? set.pods.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|') : 'no-pods-in-this-set';
  return query.replaceAll('{{track}}', set.track).replaceAll('{{deployment}}', set.deployment).replaceAll('{{pods}}', pods);
}

/**
 * Canary versus stable: each metric's query runs for both pod sets over the same trailing window
 * (a Prometheus range query), and the samples are judged with the Mann-Whitney U test
 * (src/analysis/compare.ts). No samples is "no data" and the verdict inconclusive, never a failure.
 */
export function createCanaryActivities(opts: { api: () => KubeApi; allowed: (deployment: string) => void }) {
  const { api } = opts;

  async function podNames(deployment: string): Promise<{ canary: string[]; stable: string[] }> {
    const ns = api().namespace;
    try {
      const d = await api().apps.readNamespacedDeployment({ name: deployment, namespace: ns });
      const pods = await api().core.listNamespacedPod({ namespace: ns, labelSelector: selectorText(d.spec?.selector.matchLabels) });
      const live = pods.items.filter((p) => !p.metadata?.deletionTimestamp);
      return {
        canary: live.filter((p) => p.metadata?.labels?.[LABEL_TRACK] === 'canary').map((p) => p.metadata!.name!),
        stable: live.filter((p) => p.metadata?.labels?.[LABEL_TRACK] !== 'canary').map((p) => p.metadata!.name!),
      };
    } catch (err) {
      throw classifyKubernetes(err, `listing the pods of ${deployment}`);
    }
  }

  async function rangeQuery(address: string, query: string, start: number, end: number, step: number): Promise<number[]> {
    const url = `${address.replace(/\/$/, '')}/api/v1/query_range?query=${encodeURIComponent(query)}&start=${start}&end=${end}&step=${step}`;
    let res: Response;
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(15_000) });
    } catch (err) {
      throw failure('ServerUnreachable', `Prometheus at ${address}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`);
    }
    const body = (await res.json().catch(() => ({}))) as { status?: string; error?: string; data?: { result?: { values?: [number, string][] }[] } };
    if (body.status !== 'success') {
      if (res.status === 400 || res.status === 422) throw failure('InvalidInput', `the query ${query} was refused by Prometheus: ${body.error ?? `HTTP ${res.status}`}`);
      throw failure('ServerUnreachable', `Prometheus at ${address}: ${body.error ?? `HTTP ${res.status}`}`);
    }
    // Several series for one set are pooled: each point is one sample of the set's behaviour.
    return (body.data?.result ?? []).flatMap((s) => (s.values ?? []).map(([, v]) => Number(v))).filter(Number.isFinite);
  }

  return {
    async compareCanaryWithStable(input: { deployment: string; spec: CompareSpec; endMs?: number }): Promise<ComparisonResult> {
      opts.allowed(input.deployment);
      return withHeartbeat(async () => {
        const spec = input.spec;
        const end = Math.floor((input.endMs ?? Date.now()) / 1000);
        const window = spec.windowSeconds ?? 300;
        const step = spec.stepSeconds ?? 15;
        const start = end - window;
        const needsPods = spec.metrics.some((m) => m.query.includes('{{pods}}'));
        const pods = needsPods ? await podNames(input.deployment) : { canary: [], stable: [] };
        const sets = {
          canary: { track: 'canary', deployment: `${input.deployment}-canary`, pods: pods.canary },
          stable: { track: 'stable', deployment: input.deployment, pods: pods.stable },
        };
        const queries: ComparisonResult['queries'] = [];
        const metrics = [];
        for (const m of spec.metrics) {
          const q = { name: m.name, canary: querySet(m.query, sets.canary), stable: querySet(m.query, sets.stable) };
          queries.push(q);
          const [c, s] = await Promise.all([rangeQuery(m.address, q.canary, start, end, step), rangeQuery(m.address, q.stable, start, end, step)]);
          metrics.push(classifyMetric(m, c, s, spec.minSamples ?? 10));
        }
        return { ...judge(metrics, spec.thresholds), window: { start: new Date(start * 1000).toISOString(), end: new Date(end * 1000).toISOString(), stepSeconds: step }, queries };
      });
    },
  };
}

export type CanaryActivities = ReturnType<typeof createCanaryActivities>;
