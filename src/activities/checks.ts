import { Client, Connection } from '@temporalio/client';
import * as k8s from '@kubernetes/client-node';
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { isAbsolute, join } from 'node:path';
import { checkServerIdentity, connect as tlsConnect, DetailedPeerCertificate, TLSSocket } from 'node:tls';
import { CheckId, CheckInput, CheckResult, CheckStatus, DEFAULT_RPO_WINDOW_MS } from '../checklist/catalog';
import type { TemporalConnectionSettings } from '../config/connection';
import type { EnvironmentConfig } from '../config/schema';
import { connectPg } from './pg';
import { primaryLocator, reachServer } from './primary';
import { createTopologyDriver } from '../topology';
import type { ObjectStore } from './s3';

/** What a check found, before the wrapper adds its name and duration. */
interface Verdict {
  status: CheckStatus;
  summary: string;
  evidence: Record<string, unknown>;
}

export interface CheckDeps {
  environment: string;
  env: EnvironmentConfig;
  /** Directory relative paths in the config (kubeconfig, file: secrets) are resolved against. */
  baseDir: string;
  temporal: () => Promise<Client>;
  temporalSettings: () => TemporalConnectionSettings;
  store?: ObjectStore;
  /** Reads a pgBackRest database's repository (its newest backup), for databases backed up that way. */
  physicalRepository?: (database: string) => Promise<{ backups: { label: string; stoppedAt: string; repoBytes: number; error: boolean }[] }>;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DAY_MS = 86_400_000;
/** gRPC NOT_FOUND. */
const GRPC_NOT_FOUND = 5;
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

const errorText = (err: unknown): string => {
  const e = err as { message?: string; code?: unknown; details?: string };
  const text = e?.details || e?.message || String(err);
  return text.replace(/\s+/g, ' ').slice(0, 300);
};

const pass = (summary: string, evidence: Record<string, unknown> = {}): Verdict => ({ status: 'pass', summary, evidence });
const fail = (summary: string, evidence: Record<string, unknown> = {}): Verdict => ({ status: 'fail', summary, evidence });
const unknown = (summary: string, evidence: Record<string, unknown> = {}): Verdict => ({ status: 'unknown', summary, evidence });

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

function versionAtLeast(version: string, min: number[]): boolean {
  const parts = version.replace(/^v/, '').split(/[.-]/).map((p) => Number.parseInt(p, 10));
  for (let i = 0; i < min.length; i++) {
    const v = Number.isFinite(parts[i]) ? parts[i] : 0;
    if (v !== min[i]) return v > min[i];
  }
  return true;
}

/** Seconds of a protobuf Duration (seconds may be a Long). */
function durationSeconds(d: { seconds?: unknown } | null | undefined): number | undefined {
  if (!d || d.seconds === undefined || d.seconds === null) return undefined;
  return Number(String(d.seconds));
}

/** Prometheus durations: 15d, 1y, 2w, 12h30m. */
export function prometheusDurationMs(text: string): number | undefined {
  const units: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: DAY_MS, w: 7 * DAY_MS, y: 365 * DAY_MS };
  const parts = [...text.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) return undefined;
  return parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]], 0);
}

// ---------------------------------------------------------------- TLS probes

interface Endpoint {
  host: string;
  port: number;
  /** The name the certificate must carry (tls.serverName, else the host). */
  name: string;
  ca?: Uint8Array;
  cert?: Uint8Array;
  key?: Uint8Array;
}

interface Handshake {
  ok: boolean;
  protocol?: string | null;
  authorized?: boolean;
  authorizationError?: string;
  chain?: { subject: string; issuer: string; validTo: string; daysLeft: number }[];
  identityError?: string;
  error?: string;
  errorCode?: string;
}

function endpointOf(s: TemporalConnectionSettings): Endpoint {
  const i = s.address.lastIndexOf(':');
  const host = s.address.slice(0, i);
  const tls = s.tls && typeof s.tls === 'object' ? s.tls : undefined;
  return {
    host,
    port: Number(s.address.slice(i + 1)),
    name: tls?.serverNameOverride ?? host,
    ca: tls?.serverRootCACertificate,
    cert: tls?.clientCertPair?.crt,
    key: tls?.clientCertPair?.key,
  };
}

function chainOf(cert: DetailedPeerCertificate, now: number): Handshake['chain'] {
  const chain: NonNullable<Handshake['chain']> = [];
  const seen = new Set<string>();
  let c: DetailedPeerCertificate | undefined = cert;
  while (c && c.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    const cn = (x: unknown) => String((x as { CN?: unknown } | undefined)?.CN ?? '');
    chain.push({ subject: cn(c.subject), issuer: cn(c.issuer), validTo: new Date(c.valid_to).toISOString(), daysLeft: Number(((Date.parse(c.valid_to) - now) / DAY_MS).toFixed(1)) });
    c = c.issuerCertificate;
  }
  return chain;
}

/** One TLS handshake with the frontend; server authentication is judged afterwards, from what was presented. */
function handshake(ep: Endpoint, opts: { clientCert: boolean; minVersion?: 'TLSv1' | 'TLSv1.2'; maxVersion?: 'TLSv1.1' | 'TLSv1.3'; ciphers?: string }, signal: AbortSignal): Promise<Handshake> {
  return new Promise((resolve) => {
    const socket: TLSSocket = tlsConnect({
      host: ep.host,
      port: ep.port,
      servername: isIP(ep.name) ? undefined : ep.name,
      ca: ep.ca && Buffer.from(ep.ca),
      cert: opts.clientCert && ep.cert ? Buffer.from(ep.cert) : undefined,
      key: opts.clientCert && ep.key ? Buffer.from(ep.key) : undefined,
      minVersion: opts.minVersion,
      maxVersion: opts.maxVersion,
      ciphers: opts.ciphers,
      ALPNProtocols: ['h2'],
      rejectUnauthorized: false,
    });
    const done = (h: Handshake) => {
      socket.destroy();
      resolve(h);
    };
    signal.addEventListener('abort', () => done({ ok: false, error: 'aborted' }), { once: true });
    socket.once('secureConnect', () => {
      const peer = socket.getPeerCertificate(true);
      const identity = peer && peer.raw ? checkServerIdentity(ep.name, peer) : new Error('no certificate presented');
      done({
        ok: true,
        protocol: socket.getProtocol(),
        authorized: socket.authorized,
        authorizationError: socket.authorizationError ? String(socket.authorizationError) : undefined,
        chain: peer && peer.raw ? chainOf(peer, Date.now()) : [],
        identityError: identity?.message,
      });
    });
    socket.once('error', (err: Error & { code?: string }) => done({ ok: false, error: errorText(err), errorCode: err.code }));
  });
}

const H2_PREFACE = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);

/**
 * Connects without a client certificate and speaks HTTP/2: `answered` if the server sends its
 * SETTINGS (it accepted an anonymous client), `refused` if the handshake or the connection fails.
 * With TLS 1.3 a server rejects a missing certificate only after the client's handshake completes,
 * so the answer is awaited, not the handshake.
 */
function anonymousProbe(ep: Endpoint, signal: AbortSignal): Promise<{ outcome: 'answered' | 'refused' | 'silent'; protocol?: string | null; error?: string; errorCode?: string }> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: ep.host, port: ep.port, servername: isIP(ep.name) ? undefined : ep.name, ALPNProtocols: ['h2'], rejectUnauthorized: false });
    let protocol: string | null = null;
    let settled = false;
    const done = (r: { outcome: 'answered' | 'refused' | 'silent'; error?: string; errorCode?: string }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...r, protocol });
    };
    const timer = setTimeout(() => done({ outcome: 'silent' }), 3_000);
    signal.addEventListener('abort', () => done({ outcome: 'silent', error: 'aborted' }), { once: true });
    socket.once('secureConnect', () => {
      protocol = socket.getProtocol();
      socket.write(H2_PREFACE);
    });
    socket.once('data', () => done({ outcome: 'answered' }));
    socket.once('error', (err: Error & { code?: string }) => done({ outcome: 'refused', error: errorText(err), errorCode: err.code }));
    socket.once('close', () => done({ outcome: 'refused', error: 'connection closed by the server' }));
  });
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
  private readonly kc = new k8s.KubeConfig();
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
    const apps = this.api(k8s.AppsV1Api);
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
  const temporalCall = async <T>(timeoutMs: number, fn: (c: Client) => Promise<T>): Promise<T> => {
    const c = await deps.temporal();
    return c.connection.withDeadline(Date.now() + timeoutMs, () => fn(c));
  };
  const tlsConfigured = () => Boolean(env.temporal.tls || env.temporal.apiKey);
  /** For the plaintext case: does the frontend speak TLS at all? Evidence for a failing TLS item. */
  const plaintextVerdict = async (what: string, signal: AbortSignal): Promise<Verdict> => {
    const h = await handshake(endpointOf(deps.temporalSettings()), { clientCert: false }, signal);
    return fail(`${what}: the environment connects to Temporal without TLS (no temporal.tls or apiKey in the config)`, {
      address: env.temporal.address,
      tlsConfigured: false,
      frontendTlsHandshake: h.ok ? `succeeded (${h.protocol})` : `failed: ${h.error}`,
    });
  };

  /** One check per Deployment; the check passes when no Deployment has a problem. */
  const perWorkload = (what: string, judge: (w: Workload, ctx: { pdbs: k8s.V1PodDisruptionBudget[]; hpas: k8s.V2HorizontalPodAutoscaler[]; policies: k8s.V1NetworkPolicy[] }) => string | undefined, needs: { pdbs?: boolean; hpas?: boolean; policies?: boolean } = {}) =>
    async (): Promise<Verdict> => {
      if (!kube) return unknown(`no kubernetes: section for environment ${deps.environment}`);
      const ns = kube.namespace;
      const [{ items, missing }, pdbs, hpas, policies] = await Promise.all([
        kube.workloads(),
        needs.pdbs ? kube.api(k8s.PolicyV1Api).listNamespacedPodDisruptionBudget({ namespace: ns }).then((l) => l.items) : [],
        needs.hpas ? kube.api(k8s.AutoscalingV2Api).listNamespacedHorizontalPodAutoscaler({ namespace: ns }).then((l) => l.items) : [],
        needs.policies ? kube.api(k8s.NetworkingV1Api).listNamespacedNetworkPolicy({ namespace: ns }).then((l) => l.items) : [],
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
      server: primaryLocator(deps.baseDir, db, db.user, db.password),
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

  const checks: Record<CheckId, (timeoutMs: number, input: CheckInput, signal: AbortSignal) => Promise<Verdict>> = {
    // ---- Temporal
    async checkTemporalVersion(timeoutMs) {
      const info = await temporalCall(timeoutMs, (c) => c.workflowService.getSystemInfo({}));
      const version = info.serverVersion ?? '';
      const evidence = { serverVersion: version };
      return versionAtLeast(version, [1, 20]) ? pass(`Temporal server ${version} (1.20 or later)`, evidence) : fail(`Temporal server ${version || '(unknown version)'} is older than 1.20`, evidence);
    },
    async checkTemporalPersistence(timeoutMs) {
      const info = await temporalCall(timeoutMs, (c) => c.workflowService.getClusterInfo({}));
      const store = info.persistenceStore ?? '';
      const evidence = { persistenceStore: store, serverVersion: info.serverVersion };
      return /^(postgres|mysql|cassandra)/i.test(store) ? pass(`persistence on ${store}`, evidence) : fail(`persistence store '${store}' is not PostgreSQL, MySQL or Cassandra`, evidence);
    },
    async checkTemporalVisibilityStore(timeoutMs) {
      const info = await temporalCall(timeoutMs, (c) => c.workflowService.getClusterInfo({}));
      const store = info.visibilityStore ?? '';
      const evidence = { visibilityStore: store };
      return /elasticsearch|opensearch/i.test(store) ? pass(`visibility on ${store}`, evidence) : fail(`visibility store '${store}' is not Elasticsearch`, evidence);
    },
    async checkNamespaceArchival(timeoutMs) {
      const ns = await temporalCall(timeoutMs, (c) => c.workflowService.describeNamespace({ namespace: c.options.namespace }));
      const state = (x: unknown) => (x === 2 || x === 'ARCHIVAL_STATE_ENABLED' ? 'enabled' : 'disabled');
      const evidence = { namespace: ns.namespaceInfo?.name, historyArchival: state(ns.config?.historyArchivalState), visibilityArchival: state(ns.config?.visibilityArchivalState), historyArchivalUri: ns.config?.historyArchivalUri || null };
      return evidence.historyArchival === 'enabled' ? pass('history archival is enabled', evidence) : fail(`history archival is disabled for namespace ${evidence.namespace}`, evidence);
    },
    async checkTemporalTls(_t, _i, signal) {
      if (!tlsConfigured()) return plaintextVerdict('TLS', signal);
      const ep = endpointOf(deps.temporalSettings());
      const h = await handshake(ep, { clientCert: true }, signal);
      const evidence = { address: env.temporal.address, serverName: ep.name, protocol: h.protocol ?? null, error: h.error ?? null };
      if (!h.ok) return fail(`the TLS handshake with ${env.temporal.address} failed: ${h.error}`, evidence);
      return pass(`${h.protocol} to ${env.temporal.address}`, evidence);
    },
    async checkTemporalMtls(_t, _i, signal) {
      if (!tlsConfigured()) return plaintextVerdict('mTLS', signal);
      const ep = endpointOf(deps.temporalSettings());
      const configured = Boolean(ep.cert && ep.key);
      const probe = await anonymousProbe(ep, signal);
      const evidence = { clientCertificateConfigured: configured, connectionWithoutClientCertificate: probe.outcome, protocol: probe.protocol ?? null, error: probe.error ?? null, errorCode: probe.errorCode ?? null };
      if (probe.outcome === 'silent') return unknown('a connection without a client certificate got no answer and no refusal within 3 s', evidence);
      if (probe.outcome === 'answered') return fail('the frontend accepts connections without a client certificate', evidence);
      if (!configured) return fail('the frontend refuses clients without a certificate, but this environment has no tls.clientCert configured', evidence);
      return pass('a connection without a client certificate is refused', evidence);
    },
    async checkTemporalCertificate(_t, input, signal) {
      if (!tlsConfigured()) return plaintextVerdict('certificate', signal);
      const minDays = input.certificateMinDays ?? 30;
      const ep = endpointOf(deps.temporalSettings());
      const h = await handshake(ep, { clientCert: true }, signal);
      if (!h.ok) return unknown(`no TLS handshake with ${env.temporal.address}: ${h.error}`, { error: h.error ?? null });
      const chain = h.chain ?? [];
      const soonest = Math.min(...chain.map((c) => c.daysLeft));
      const evidence = { serverName: ep.name, chain, chainValid: h.authorized === true, authorizationError: h.authorizationError ?? null, nameMatches: !h.identityError, identityError: h.identityError ?? null, minDaysLeft: minDays };
      if (!h.authorized) return fail(`the certificate chain does not verify${ep.ca ? ' against tls.serverCa' : ''}: ${h.authorizationError}`, evidence);
      if (h.identityError) return fail(`the certificate does not match ${ep.name}: ${h.identityError}`, evidence);
      if (soonest < minDays) return fail(`a certificate of the chain expires in ${soonest} days (less than ${minDays})`, evidence);
      return pass(`chain valid, ${soonest} days until the first expiry`, evidence);
    },
    async checkTemporalTlsVersion(_t, _i, signal) {
      if (!tlsConfigured()) return plaintextVerdict('TLS version', signal);
      const ep = endpointOf(deps.temporalSettings());
      // SECLEVEL=0 lets this client offer TLS 1.0/1.1 at all, so a refusal is the server's.
      const old = await handshake(ep, { clientCert: true, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' }, signal);
      const current = await handshake(ep, { clientCert: true, minVersion: 'TLSv1.2' }, signal);
      const evidence = { tls11: old.ok ? `accepted (${old.protocol})` : `refused: ${old.errorCode ?? old.error}`, negotiated: current.protocol ?? null, currentError: current.error ?? null };
      if (old.ok) return fail(`the frontend accepts ${old.protocol}`, evidence);
      if (old.errorCode === 'ERR_SSL_NO_PROTOCOLS_AVAILABLE') return unknown('this worker cannot offer TLS 1.1 to test the server', evidence);
      if (!current.ok) return unknown(`no TLS 1.2+ handshake either: ${current.error}`, evidence);
      return pass(`TLS 1.1 refused, ${current.protocol} negotiated`, evidence);
    },
    async checkTemporalClientAuth(timeoutMs, _i, signal) {
      const s = deps.temporalSettings();
      if (s.apiKey) {
        // The same call as the audit's own client, without the key: it must be refused.
        const anonymous = await Connection.connect({ address: s.address, tls: s.tls, connectTimeout: timeoutMs });
        try {
          await anonymous.withDeadline(Date.now() + timeoutMs, () => anonymous.workflowService.describeNamespace({ namespace: s.namespace }));
          return fail('a call without the API key was answered', { method: 'apiKey', anonymousCall: 'answered' });
        } catch (err) {
          return pass('calls without the API key are refused', { method: 'apiKey', anonymousCall: `refused: ${errorText(err)}` });
        } finally {
          await anonymous.close().catch(() => undefined);
        }
      }
      if (!env.temporal.tls?.clientCert) {
        const plain = tlsConfigured() ? undefined : await plaintextVerdict('client auth', signal);
        return fail('the environment authenticates to Temporal with neither an API key nor a client certificate', { method: 'none', ...(plain?.evidence ?? {}) });
      }
      const probe = await anonymousProbe(endpointOf(s), signal);
      const evidence = { method: 'mTLS', connectionWithoutClientCertificate: probe.outcome, error: probe.error ?? null };
      if (probe.outcome === 'answered') return fail('client certificates are configured but not required: an anonymous connection was answered', evidence);
      if (probe.outcome === 'silent') return unknown('an anonymous connection got no answer and no refusal', evidence);
      return pass('clients authenticate with certificates; anonymous connections are refused', evidence);
    },
    async checkTemporalNamespace(timeoutMs) {
      const namespace = deps.temporalSettings().namespace;
      try {
        const ns = await temporalCall(timeoutMs, (c) => c.workflowService.describeNamespace({ namespace }));
        const state = ns.namespaceInfo?.state;
        const registered = state === 1 || (state as unknown) === 'NAMESPACE_STATE_REGISTERED';
        const evidence = { namespace, state: registered ? 'registered' : String(state), id: ns.namespaceInfo?.id };
        return registered ? pass(`namespace ${namespace} exists`, evidence) : fail(`namespace ${namespace} is not in the registered state`, evidence);
      } catch (err) {
        if ((err as { code?: number }).code === GRPC_NOT_FOUND) return fail(`namespace ${namespace} does not exist`, { namespace, error: errorText(err) });
        throw err;
      }
    },
    async checkNamespaceRetention(timeoutMs) {
      const namespace = deps.temporalSettings().namespace;
      const ns = await temporalCall(timeoutMs, (c) => c.workflowService.describeNamespace({ namespace }));
      const seconds = durationSeconds(ns.config?.workflowExecutionRetentionTtl as { seconds?: unknown });
      if (seconds === undefined) return unknown(`namespace ${namespace} reports no retention`, { namespace });
      const days = Number((seconds / 86_400).toFixed(2));
      const evidence = { namespace, retentionDays: days, allowedDays: [7, 90] };
      return days >= 7 && days <= 90 ? pass(`retention ${days} days`, evidence) : fail(`retention ${days} days is outside 7-90 days`, evidence);
    },
    async checkHistoryShards(timeoutMs) {
      const info = await temporalCall(timeoutMs, (c) => c.workflowService.getClusterInfo({}));
      const shards = info.historyShardCount ?? 0;
      const evidence = { historyShardCount: shards, minimum: 512 };
      return shards >= 512 ? pass(`${shards} history shards`, evidence) : fail(`${shards} history shard${shards === 1 ? '' : 's'}; production clusters need at least 512 (fixed when the cluster is created)`, evidence);
    },
    async checkQueueIsolation() {
      const q = env.temporal.taskQueues;
      const names = [q.critical, q.standard, q.batch];
      const evidence = { critical: q.critical, standard: q.standard, batch: q.batch };
      return new Set(names).size === 3 ? pass('critical, standard and batch work run on separate task queues', evidence) : fail('two queue kinds share one task queue', evidence);
    },
    async checkQueuePollers(timeoutMs) {
      const namespace = deps.temporalSettings().namespace;
      const queues: Record<string, { queue: string; workflowPollers: number; activityPollers: number }> = {};
      for (const [kind, name] of Object.entries(env.temporal.taskQueues)) {
        const count = (type: 1 | 2) =>
          temporalCall(timeoutMs, (c) => c.workflowService.describeTaskQueue({ namespace, taskQueue: { name }, taskQueueType: type })).then((r) => r.pollers?.length ?? 0);
        queues[kind] = { queue: name, workflowPollers: await count(1), activityPollers: await count(2) };
      }
      const empty = Object.entries(queues).filter(([, v]) => v.workflowPollers === 0 || v.activityPollers === 0).map(([k]) => k);
      return empty.length === 0 ? pass('every queue has workflow and activity pollers', { queues }) : fail(`no workers polling: ${empty.join(', ')}`, { queues });
    },

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
    async checkPostgresVersion() {
      if (databases().length === 0) return noDatabases();
      const found = await eachDatabase(async (_d, q) => Number((await q('SHOW server_version_num'))[0].server_version_num));
      const versions = Object.fromEntries(Object.entries(found).map(([k, v]) => [k, `${Math.floor(v / 10_000)}.${v % 10_000}`]));
      const old = Object.entries(found).filter(([, v]) => v < 130_000).map(([k]) => k);
      return old.length === 0 ? pass('every database runs PostgreSQL 13 or later', { versions }) : fail(`older than PostgreSQL 13: ${old.join(', ')}`, { versions });
    },
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
    async checkPostgresReplica() {
      const all = databases();
      if (all.length === 0) return noDatabases();
      const withReplica = all.filter((d) => d.db.replica || d.db.topology);
      if (withReplica.length === 0) return fail('no database has a replica configured', { databases: all.map((d) => d.key) });
      const replicas: Record<string, unknown> = {};
      const problems: string[] = [];
      for (const d of withReplica) {
        // With a topology, the replicas are whichever members are replicas now (after a failover, not the configured ones).
        const driver = createTopologyDriver(d.db, deps.baseDir);
        if (driver) {
          const c = await driver.describe();
          const rs = c.members.filter((m) => m.role === 'replica');
          replicas[d.key] = { driver: c.driver, primary: c.primary ?? null, replicas: rs.map((r) => ({ name: r.name, streaming: r.streaming ?? false, lagBytes: r.lagBytes ?? null })) };
          if (rs.length === 0) problems.push(`${d.key}: no member is a replica (${c.members.map((m) => `${m.name}=${m.role}`).join(', ')})`);
          for (const r of rs) if (!r.streaming) problems.push(`${d.key}: replica ${r.name} is not streaming`);
          continue;
        }
        const r = d.db.replica!;
        const primary = await reachServer(d.server);
        const client = await connectPg({ ...primary, host: r.host, port: r.port, password: primary.password }, d.db.database, 'runbook-readiness-audit');
        try {
          const rec = (await client.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec')).rows[0].rec;
          const stat = rec ? (await client.query<{ status: string | null }>('SELECT status FROM pg_stat_wal_receiver')).rows[0]?.status ?? null : null;
          replicas[d.key] = { replica: `${r.host}:${r.port}`, inRecovery: rec, walReceiver: stat };
          if (!rec) problems.push(`${d.key}: the replica ${r.host}:${r.port} is not in recovery (it is a primary)`);
          else if (stat !== 'streaming') problems.push(`${d.key}: the replica is not streaming (${stat ?? 'no WAL receiver'})`);
        } finally {
          await client.end().catch(() => undefined);
        }
      }
      return problems.length === 0 ? pass('every configured replica is streaming', { replicas }) : fail(problems.join('; '), { replicas });
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
