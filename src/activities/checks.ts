import type * as k8s from '@kubernetes/client-node';
import { Resolver } from 'node:dns/promises';
import { isAbsolute, join } from 'node:path';
import { CheckId, CheckInput, CheckResult, DEFAULT_RPO_WINDOW_MS } from '../checklist/catalog';
import type { EnvironmentConfig } from '../config/schema';
import { CheckDeps, errorText, fail, pass, pgServerOf, unknown, Verdict, VerdictFn } from './checkSupport';
import { connectPg } from './pg';
import { reachServer } from './primary';
import { createTemporalChecks } from './temporalChecks';
import { k8sRuntime } from './k8sRuntime';

export type { CheckDeps } from './checkSupport';

const DEFAULT_TIMEOUT_MS = 10_000;
const DAY_MS = 86_400_000;
/** Alert rules of deploy/prometheus/rules.yml each checklist item expects to be loaded. */
const REQUIRED_ALERTS = {
  serviceDown: ['TemporalFrontendDown', 'RunbookWorkerNotReady'],
  failureRate: ['HighWorkflowFailureRate'],
  latency: ['LongScheduleToStartLatency'],
};
/** Metric name prefixes the checklist calls key: workflows, activities, schedule-to-start. */
const KEY_METRICS = ['temporal_workflow_completed', 'temporal_workflow_failed', 'temporal_activity_execution_latency', 'temporal_workflow_task_schedule_to_start_latency'];
const SECRET_NAME = /(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL)/i;
const KEY_MATERIAL = /-----BEGIN [A-Z ]*PRIVATE KEY-----|\bAKIA[0-9A-Z]{16}\b/;

/**
 * Runs one check under its own deadline. A system that does not answer, or answers with an error,
 * gives `unknown` with the reason: an unreachable system is not evidence that an item fails.
 */
async function guarded(check: CheckId, timeoutMs: number, fn: (signal: AbortSignal) => Promise<Verdict>): Promise<CheckResult> {
  const started = Date.now();
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<Verdict>((resolve) => {
    timer = setTimeout(() => {
      controller.abort();
      resolve(unknown(`no answer within ${timeoutMs} ms`, { timedOutAfterMs: timeoutMs }));
    }, timeoutMs);
  });
  try {
    const verdict = await Promise.race([fn(controller.signal).catch((err: unknown) => unknown(`could not check: ${errorText(err)}`, { error: errorText(err) })), timedOut]);
    return { check, ...verdict, durationMs: Date.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

/** Prometheus durations: 15d, 1y, 2w, 12h30m. */
export function prometheusDurationMs(text: string): number | undefined {
  const units: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: DAY_MS, w: 7 * DAY_MS, y: 365 * DAY_MS };
  const parts = [...text.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) return undefined;
  return parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]], 0);
}

// ---------------------------------------------------------------- Kubernetes

interface Workload {
  name: string;
  replicas: number;
  available: number;
  podLabels: Record<string, string>;
  /** The long-running containers (probes, resources and HA concern these). */
  containers: k8s.V1Container[];
  initContainers: k8s.V1Container[];
}

function selects(selector: k8s.V1LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = e.key in labels;
    const value = labels[e.key];
    if (e.operator === 'In' && !(has && (e.values ?? []).includes(value))) return false;
    if (e.operator === 'NotIn' && has && (e.values ?? []).includes(value)) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

class KubernetesView {
  private readonly kc = new (k8sRuntime().KubeConfig)();
  readonly namespace: string;

  constructor(
    private readonly config: NonNullable<EnvironmentConfig['kubernetes']>,
    baseDir: string,
  ) {
    if (config.kubeconfig) this.kc.loadFromFile(isAbsolute(config.kubeconfig) ? config.kubeconfig : join(baseDir, config.kubeconfig));
    else this.kc.loadFromDefault();
    if (config.context) this.kc.setCurrentContext(config.context);
    this.namespace = config.namespace;
  }

  api<T extends k8s.ApiType>(kind: new (config: k8s.Configuration) => T): T {
    return this.kc.makeApiClient(kind);
  }

  /** The configured Deployments (all in the namespace when none are listed); a missing one is a problem of its own. */
  async workloads(): Promise<{ items: Workload[]; missing: string[] }> {
    const apps = this.api(k8sRuntime().AppsV1Api);
    const all = (await apps.listNamespacedDeployment({ namespace: this.namespace })).items;
    const wanted = this.config.deployments.length ? this.config.deployments : all.map((d) => d.metadata!.name!);
    const items: Workload[] = [];
    const missing: string[] = [];
    for (const name of wanted) {
      const d = all.find((x) => x.metadata?.name === name);
      if (!d) {
        missing.push(name);
        continue;
      }
      const spec = d.spec!.template.spec;
      items.push({
        name,
        replicas: d.spec?.replicas ?? 1,
        available: d.status?.availableReplicas ?? 0,
        podLabels: d.spec?.template.metadata?.labels ?? {},
        containers: spec?.containers ?? [],
        initContainers: spec?.initContainers ?? [],
      });
    }
    return { items, missing };
  }
}

// ---------------------------------------------------------------- the checks

export function createCheckActivities(deps: CheckDeps) {
  const { env } = deps;
  const kube = env.kubernetes ? new KubernetesView(env.kubernetes, deps.baseDir) : undefined;
  /** One check per Deployment; the check passes when no Deployment has a problem. */
  const perWorkload = (what: string, judge: (w: Workload, ctx: { pdbs: k8s.V1PodDisruptionBudget[]; hpas: k8s.V2HorizontalPodAutoscaler[]; policies: k8s.V1NetworkPolicy[] }) => string | undefined, needs: { pdbs?: boolean; hpas?: boolean; policies?: boolean } = {}) =>
    async (): Promise<Verdict> => {
      if (!kube) return unknown(`no kubernetes: section for environment ${deps.environment}`);
      const ns = kube.namespace;
      const [{ items, missing }, pdbs, hpas, policies] = await Promise.all([
        kube.workloads(),
        needs.pdbs ? kube.api(k8sRuntime().PolicyV1Api).listNamespacedPodDisruptionBudget({ namespace: ns }).then((l) => l.items) : [],
        needs.hpas ? kube.api(k8sRuntime().AutoscalingV2Api).listNamespacedHorizontalPodAutoscaler({ namespace: ns }).then((l) => l.items) : [],
        needs.policies ? kube.api(k8sRuntime().NetworkingV1Api).listNamespacedNetworkPolicy({ namespace: ns }).then((l) => l.items) : [],
      ]);
      if (items.length === 0 && missing.length === 0) return unknown(`no Deployments in namespace ${ns}`, { namespace: ns });
      const deployments: Record<string, string> = {};
      for (const name of missing) deployments[name] = 'not found';
      for (const w of items) deployments[w.name] = judge(w, { pdbs, hpas, policies }) ?? 'ok';
      const bad = Object.entries(deployments).filter(([, v]) => v !== 'ok');
      const evidence = { namespace: ns, deployments };
      return bad.length === 0 ? pass(`${what}: every Deployment (${items.length}) complies`, evidence) : fail(`${what}: ${bad.map(([n, v]) => `${n}: ${v}`).join('; ')}`, evidence);
    };
  const containersLacking = (w: Workload, lacks: (c: k8s.V1Container) => string[], containers = w.containers): string | undefined => {
    const problems = containers.flatMap((c) => lacks(c).map((p) => `${c.name} ${p}`));
    return problems.length ? problems.join(', ') : undefined;
  };
  const probe = (kind: 'livenessProbe' | 'readinessProbe' | 'startupProbe', label: string) =>
    perWorkload(`${label} probes`, (w) => containersLacking(w, (c) => (c[kind] ? [] : [`has no ${label} probe`])));
  const resources = (resource: 'cpu' | 'memory') =>
    perWorkload(`${resource} requests and limits`, (w) =>
      containersLacking(w, (c) => [...(c.resources?.requests?.[resource] ? [] : [`has no ${resource} request`]), ...(c.resources?.limits?.[resource] ? [] : [`has no ${resource} limit`])]),
    );

  // ---- PostgreSQL: every configured database's server
  const databases = () =>
    Object.entries(env.databases).map(([key, db]) => ({
      key,
      db,
      // The current primary (through the service address or the topology driver), not a node's fixed address.
      server: pgServerOf(db, deps.baseDir),
    }));
  const eachDatabase = async <T>(fn: (d: ReturnType<typeof databases>[number], q: (sql: string) => Promise<Record<string, string>[]>) => Promise<T>): Promise<Record<string, T>> => {
    const out: Record<string, T> = {};
    for (const d of databases()) {
      const client = await connectPg(await reachServer(d.server), d.db.database, 'runbook-readiness-audit');
      try {
        out[d.key] = await fn(d, async (sql) => (await client.query<Record<string, string>>(sql)).rows);
      } finally {
        await client.end().catch(() => undefined);
      }
    }
    return out;
  };
  const noDatabases = () => unknown(`no databases: section for environment ${deps.environment}`);

  // ---- Prometheus
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

  const checks: Record<CheckId, VerdictFn> = {
    ...createTemporalChecks(deps),

    // ---- Kubernetes
    checkKubernetesReplicas: perWorkload('replicas', (w) => (w.replicas >= 2 ? undefined : `${w.replicas} replica${w.replicas === 1 ? '' : 's'} (at least 2 for HA; ${w.available} available)`)),
    checkKubernetesPdb: perWorkload(
      'PodDisruptionBudgets',
      (w, { pdbs }) => {
        const matching = pdbs.filter((p) => selects(p.spec?.selector, w.podLabels));
        if (matching.length === 0) return 'no PodDisruptionBudget selects its pods';
        const useful = matching.some((p) => {
          const s = p.spec!;
          if (s.minAvailable !== undefined) return typeof s.minAvailable === 'number' ? s.minAvailable >= 1 && s.minAvailable < w.replicas : s.minAvailable !== '100%' && s.minAvailable !== '0%';
          if (s.maxUnavailable !== undefined) return typeof s.maxUnavailable === 'number' ? s.maxUnavailable >= 1 && s.maxUnavailable < w.replicas : s.maxUnavailable !== '0%' && s.maxUnavailable !== '100%';
          return false;
        });
        return useful ? undefined : `PodDisruptionBudget ${matching.map((p) => p.metadata?.name).join(', ')} either blocks every eviction or allows losing all pods`;
      },
      { pdbs: true },
    ),
    checkKubernetesHpa: perWorkload('HorizontalPodAutoscalers', (w, { hpas }) => {
      const h = hpas.find((x) => x.spec?.scaleTargetRef.kind === 'Deployment' && x.spec.scaleTargetRef.name === w.name);
      if (!h) return 'no HorizontalPodAutoscaler targets it';
      return (h.spec!.minReplicas ?? 1) >= 2 ? undefined : `HorizontalPodAutoscaler ${h.metadata?.name} may scale it down to ${h.spec!.minReplicas ?? 1} replica`;
    }, { hpas: true }),
    checkKubernetesCpuLimits: resources('cpu'),
    checkKubernetesMemoryLimits: resources('memory'),
    checkKubernetesLivenessProbes: probe('livenessProbe', 'liveness'),
    checkKubernetesReadinessProbes: probe('readinessProbe', 'readiness'),
    checkKubernetesStartupProbes: probe('startupProbe', 'startup'),
    checkKubernetesNetworkPolicies: perWorkload('NetworkPolicies', (w, { policies }) => {
      // An empty podSelector selects every pod of the namespace.
      const matching = policies.filter((p) => selects(p.spec?.podSelector, w.podLabels));
      return matching.length ? undefined : 'no NetworkPolicy selects its pods';
    }, { policies: true }),
    checkKubernetesSecretEnv: perWorkload('secrets in pod env', (w) =>
      containersLacking(w, (c) =>
        (c.env ?? [])
          .filter((e) => e.value !== undefined && e.value !== '' && (SECRET_NAME.test(e.name) || KEY_MATERIAL.test(e.value)))
          // The variable's name is evidence; its value never leaves the worker.
          .map((e) => `sets ${e.name} to a literal value (use valueFrom.secretKeyRef)`),
        [...w.initContainers, ...w.containers],
      ),
    ),

    // ---- PostgreSQL
    async checkPostgresConnections() {
      if (databases().length === 0) return noDatabases();
      const found = await eachDatabase(async (_d, q) => {
        const r = (await q("SELECT current_setting('max_connections')::int AS max, current_setting('superuser_reserved_connections')::int AS reserved, (SELECT count(*) FROM pg_stat_activity)::int AS used"))[0];
        const max = Number(r.max);
        const used = Number(r.used);
        return { maxConnections: max, reserved: Number(r.reserved), inUse: used, usage: Number((used / max).toFixed(3)) };
      });
      const busy = Object.entries(found).filter(([, v]) => v.usage >= 0.8).map(([k]) => k);
      return busy.length === 0 ? pass('connections below 80% of max_connections everywhere', { databases: found }) : fail(`connections at 80% or more of max_connections: ${busy.join(', ')}`, { databases: found });
    },
    async checkPostgresTimeouts() {
      if (databases().length === 0) return noDatabases();
      const names = ['statement_timeout', 'idle_in_transaction_session_timeout', 'lock_timeout', 'tcp_keepalives_idle'];
      const found = await eachDatabase(async (_d, q) => {
        const rows = await q(`SELECT name, setting, unit FROM pg_settings WHERE name IN (${names.map((n) => `'${n}'`).join(', ')})`);
        return Object.fromEntries(rows.map((r) => [r.name, `${r.setting}${r.unit ?? ''}`]));
      });
      // An idle transaction holds its locks and its snapshot forever: it needs a limit.
      const unlimited = Object.entries(found).filter(([, v]) => /^0/.test(v.idle_in_transaction_session_timeout ?? '0')).map(([k]) => k);
      return unlimited.length === 0 ? pass('idle transactions are ended by idle_in_transaction_session_timeout', { databases: found }) : fail(`idle_in_transaction_session_timeout is 0 (unlimited) on: ${unlimited.join(', ')}`, { databases: found });
    },
    // ---- backups, DNS, targets
    async checkRecentBackups() {
      if (!env.backups || !deps.store) return fail(`environment ${deps.environment} has no backups: section`, {});
      if (databases().length === 0) return noDatabases();
      const newest: Record<string, unknown> = {};
      const problems: string[] = [];
      for (const { key, db } of databases()) {
        const limitMs = db.restoreTest.maxBackupAge ?? env.targets.rpo ?? DEFAULT_RPO_WINDOW_MS;
        if (db.backups.method === 'pgbackrest' && deps.physicalRepository) {
          const last = (await deps.physicalRepository(key)).backups.filter((b) => !b.error).pop();
          if (!last) {
            newest[key] = null;
            problems.push(`${key}: no complete pgBackRest backup`);
            continue;
          }
          const ageMs = Date.now() - Date.parse(last.stoppedAt);
          newest[key] = { label: last.label, endedAt: last.stoppedAt, bytes: last.repoBytes, ageHours: Number((ageMs / 3_600_000).toFixed(2)), limitHours: Number((limitMs / 3_600_000).toFixed(2)) };
          if (ageMs > limitMs) problems.push(`${key}: the newest pgBackRest backup is ${(ageMs / 3_600_000).toFixed(1)} h old (limit ${(limitMs / 3_600_000).toFixed(1)} h)`);
          continue;
        }
        // Backup ids start with a UTC timestamp, so the last complete one in key order is the newest.
        const manifests = (await deps.store.list(`${env.backups.prefix}${key}/`)).filter((o) => o.key.endsWith('/manifest.json')).map((o) => o.key).sort();
        const last = manifests.pop();
        if (!last) {
          newest[key] = null;
          problems.push(`${key}: no complete backup`);
          continue;
        }
        const m = await deps.store.getJson<{ backupId: string; endedAt: string; bytes: number }>(last);
        const ageMs = Date.now() - Date.parse(m.endedAt);
        newest[key] = { backupId: m.backupId, endedAt: m.endedAt, bytes: m.bytes, ageHours: Number((ageMs / 3_600_000).toFixed(2)), limitHours: Number((limitMs / 3_600_000).toFixed(2)) };
        if (ageMs > limitMs) problems.push(`${key}: the newest backup is ${(ageMs / 3_600_000).toFixed(1)} h old (limit ${(limitMs / 3_600_000).toFixed(1)} h)`);
      }
      return problems.length === 0 ? pass('every database has a complete backup within its limit', { newest }) : fail(problems.join('; '), { newest });
    },
    async checkDnsRecords(timeoutMs) {
      const dns = env.dns;
      if (!dns || Object.keys(dns.records).length === 0) return unknown(`no dns.records for environment ${deps.environment}`);
      const resolver = new Resolver({ timeout: Math.min(timeoutMs, 2_000), tries: 1 });
      if (dns.provider === 'rfc2136' && dns.server) resolver.setServers([dns.server]);
      const zone = dns.zone.replace(/\.$/, '');
      const answers: Record<string, unknown> = {};
      const problems: string[] = [];
      for (const [key, r] of Object.entries(dns.records)) {
        const fqdn = r.name.includes('.') ? r.name.replace(/\.$/, '') : `${r.name}.${zone}`;
        try {
          answers[fqdn] = await resolver.resolve4(fqdn);
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code !== 'ENOTFOUND' && code !== 'ENODATA') throw err;
          answers[fqdn] = null;
          problems.push(`${key} (${fqdn}) has no A record`);
        }
      }
      const evidence = { server: dns.provider === 'rfc2136' ? dns.server : 'system resolver', answers };
      return problems.length === 0 ? pass(`every service name resolves (${Object.keys(answers).length})`, evidence) : fail(problems.join('; '), evidence);
    },
    async checkRtoDefined() {
      const rto = env.targets.rto;
      return rto !== undefined ? pass(`RTO target ${rto / 1000} s`, { rtoSeconds: rto / 1000 }) : fail('no targets.rto in the config', { rtoSeconds: null });
    },
    async checkRpoDefined() {
      const rpo = env.targets.rpo;
      return rpo !== undefined ? pass(`RPO target ${rpo / 1000} s`, { rpoSeconds: rpo / 1000 }) : fail('no targets.rpo in the config', { rpoSeconds: null });
    },

    // ---- monitoring
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
    checkAlertServiceDown: (_t, _i, signal) => alertsLoaded(REQUIRED_ALERTS.serviceDown)(signal),
    checkAlertFailureRate: (_t, _i, signal) => alertsLoaded(REQUIRED_ALERTS.failureRate)(signal),
    checkAlertLatency: (_t, _i, signal) => alertsLoaded(REQUIRED_ALERTS.latency)(signal),
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

  const activities = {} as Record<CheckId, (input?: CheckInput) => Promise<CheckResult>>;
  for (const id of Object.keys(checks) as CheckId[]) {
    activities[id] = (input: CheckInput = {}) => {
      const timeoutMs = Math.min(Math.max(input.timeoutMs ?? DEFAULT_TIMEOUT_MS, 100), 120_000);
      return guarded(id, timeoutMs, (signal) => checks[id](timeoutMs, input, signal));
    };
  }
  return activities;
}

export type CheckActivities = ReturnType<typeof createCheckActivities>;
