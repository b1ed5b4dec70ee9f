/**
 * The readiness audit's checks of Temporal itself: what the cluster says about itself (version,
 * stores, shards, namespace), what its membership ring shows (hosts per role, and whether every one
 * of them speaks TLS and demands client certificates), what its persistence database shows (version,
 * identity, streaming replica), and what its task queues show about the deployed workers.
 *
 * Server settings and membership come from the cluster's API at temporal.address (GetClusterInfo,
 * the admin DescribeCluster); the database from temporal.cluster.persistenceDatabase; the dynamic
 * config from temporal.cluster.dynamicConfigFile. A dev server answers the same questions, and the
 * answers fail: SQLite, one shard, one host per role, plaintext between services.
 */
import { Client, Connection } from '@temporalio/client';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { isAbsolute, join } from 'node:path';
import { checkServerIdentity, connect as tlsConnect, DetailedPeerCertificate, TLSSocket } from 'node:tls';
import { parse as parseYaml } from 'yaml';
import type { TemporalConnectionSettings } from '../../config/connection';
import { decodeClusterMetadata, ClusterDescription, TemporalAdminConnection } from '../../system/temporalAdmin';
import { CheckDeps, errorText, fail, ownWorkerIdentity, pass, pgServerOf, unknown, Verdict, VerdictFn, withPg } from './support';
import { reachServer } from '../primary';

export const TEMPORAL_CHECK_IDS = [
  'checkTemporalVersion',
  'checkTemporalPersistence',
  'checkTemporalVisibilityStore',
  'checkNamespaceArchival',
  'checkTemporalTls',
  'checkTemporalMtls',
  'checkTemporalCertificate',
  'checkTemporalTlsVersion',
  'checkTemporalClientAuth',
  'checkTemporalNamespace',
  'checkNamespaceRetention',
  'checkHistoryShards',
  'checkTemporalMembership',
  'checkTemporalDatabaseReplica',
  'checkQueueIsolation',
  'checkQueuePollers',
] as const;
export type TemporalCheckId = (typeof TEMPORAL_CHECK_IDS)[number];

const DAY_MS = 86_400_000;
/** gRPC NOT_FOUND. */
const GRPC_NOT_FOUND = 5;
const ROLES = ['frontend', 'history', 'matching', 'worker'] as const;
const DEFAULT_MINIMUM_HOSTS = { frontend: 2, history: 2, matching: 2, worker: 2 };

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

const pgVersionText = (num: number) => `${Math.floor(num / 10_000)}.${num % 10_000}`;

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

function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

function endpointOf(s: TemporalConnectionSettings, address = s.address): Endpoint {
  const { host, port } = splitAddress(address);
  const tls = s.tls && typeof s.tls === 'object' ? s.tls : undefined;
  return {
    host,
    port,
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

/** One TLS handshake; server authentication is judged afterwards, from what was presented. */
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
    const timer = setTimeout(() => done({ ok: false, error: 'no TLS handshake within 3 s', errorCode: 'ETIMEDOUT' }), 3_000);
    const done = (h: Handshake) => {
      clearTimeout(timer);
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

const UNREACHABLE = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** How one service host of the cluster answers: TLS or not, and whether it serves a client without a certificate. */
interface MemberProbe {
  role: string;
  address: string;
  /** `tls` (protocol), `plaintext` (no TLS handshake), or `unreachable` (from where the audit runs). */
  transport: string;
  certificate?: { subject: string; issuer: string; daysLeft: number; chainValid: boolean };
  withoutClientCertificate?: 'answered' | 'refused' | 'silent';
  error?: string;
}

async function probeMember(settings: TemporalConnectionSettings, role: string, address: string, signal: AbortSignal, withAnonymous: boolean): Promise<MemberProbe> {
  const ep = endpointOf(settings, address);
  const h = await handshake(ep, { clientCert: true }, signal);
  if (!h.ok) {
    const unreachable = h.errorCode !== undefined && UNREACHABLE.has(h.errorCode);
    return { role, address, transport: unreachable ? 'unreachable' : 'plaintext', error: h.error };
  }
  const leaf = h.chain?.[0];
  const probe: MemberProbe = {
    role,
    address,
    transport: `tls (${h.protocol})`,
    certificate: leaf && { subject: leaf.subject, issuer: leaf.issuer, daysLeft: Math.min(...(h.chain ?? []).map((c) => c.daysLeft)), chainValid: h.authorized === true },
  };
  if (withAnonymous) probe.withoutClientCertificate = (await anonymousProbe(ep, signal)).outcome;
  return probe;
}

// ---------------------------------------------------------------- the checks

export function createTemporalChecks(deps: CheckDeps): Record<TemporalCheckId, VerdictFn> {
  const { env } = deps;
  const cluster = env.temporal.cluster;
  const temporalCall = async <T>(timeoutMs: number, fn: (c: Client) => Promise<T>): Promise<T> => {
    const c = await deps.temporal();
    return c.connection.withDeadline(Date.now() + timeoutMs, () => fn(c));
  };
  let admin: Promise<TemporalAdminConnection> | undefined;
  /** The cluster's membership, through the same address and credentials as the audit's client. */
  const describeCluster = async (timeoutMs: number): Promise<ClusterDescription> => {
    const s = deps.temporalSettings();
    admin ??= TemporalAdminConnection.open({ address: s.address, tls: s.tls, apiKey: s.apiKey, connectTimeout: Math.min(timeoutMs, 10_000) }).catch((err) => {
      admin = undefined;
      throw err;
    });
    return (await admin).describeCluster(timeoutMs);
  };
  const membership = async (timeoutMs: number): Promise<{ ok: true; d: ClusterDescription } | { ok: false; reason: string }> => {
    try {
      return { ok: true, d: await describeCluster(timeoutMs) };
    } catch (err) {
      return { ok: false, reason: `the cluster does not describe its membership (admin DescribeCluster): ${errorText(err)}` };
    }
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
  /** Every service host of the ring, probed in parallel. */
  const probeMembers = async (d: ClusterDescription, signal: AbortSignal, withAnonymous: boolean): Promise<MemberProbe[]> => {
    const s = deps.temporalSettings();
    const hosts = Object.entries(d.rings).flatMap(([role, members]) => members.map((address) => ({ role, address })));
    return Promise.all(hosts.map((h) => probeMember(s, h.role, h.address, signal, withAnonymous)));
  };
  const dynamicConfig = (): { file: string; values: Record<string, unknown> } | { error: string } | undefined => {
    const file = cluster?.dynamicConfigFile;
    if (!file) return undefined;
    const path = isAbsolute(file) ? file : join(deps.baseDir, file);
    try {
      return { file: path, values: (parseYaml(readFileSync(path, 'utf8')) ?? {}) as Record<string, unknown> };
    } catch (err) {
      return { error: `cannot read the dynamic config ${path}: ${errorText(err)}` };
    }
  };
  /** A global (unconstrained) value of a dynamic config key, as the file sets it. */
  const dynamicValue = (values: Record<string, unknown>, key: string): unknown => {
    const entries = values[key];
    if (!Array.isArray(entries)) return undefined;
    const global = entries.find((e: { constraints?: Record<string, unknown> }) => !e.constraints || Object.keys(e.constraints).length === 0) as { value?: unknown } | undefined;
    return global?.value;
  };
  const persistenceDb = () => (cluster ? { key: cluster.persistenceDatabase, db: env.databases[cluster.persistenceDatabase] } : undefined);
  const noClusterConfig = (what: string) =>
    unknown(`no temporal.cluster.persistenceDatabase for environment ${deps.environment}: the audit cannot tell which database is Temporal's own, so ${what} is not proved`, { configured: false });

  return {
    async checkTemporalVersion(timeoutMs) {
      const info = await temporalCall(timeoutMs, (c) => c.workflowService.getSystemInfo({}));
      const version = info.serverVersion ?? '';
      const evidence = { serverVersion: version };
      return versionAtLeast(version, [1, 20]) ? pass(`Temporal server ${version} (1.20 or later)`, evidence) : fail(`Temporal server ${version || '(unknown version)'} is older than 1.20`, evidence);
    },

    async checkTemporalPersistence(timeoutMs) {
      const info = await temporalCall(timeoutMs, (c) => c.workflowService.getClusterInfo({}));
      const store = info.persistenceStore ?? '';
      const evidence: Record<string, unknown> = { persistenceStore: store, clusterId: info.clusterId, historyShardCount: info.historyShardCount };
      if (!/^(postgres|mysql|cassandra)/i.test(store)) return fail(`persistence store '${store}' is not PostgreSQL, MySQL or Cassandra`, evidence);
      const own = persistenceDb();
      if (!own) return noClusterConfig(`the version of its ${store} database`);
      if (!/^postgres/i.test(store)) return unknown(`persistence on ${store}; the configured database ${own.key} is PostgreSQL, so it is not the one this cluster uses`, evidence);
      const server = await reachServer(pgServerOf(own.db, deps.baseDir));
      const found = await withPg(server, own.db.database, async (q) => {
        const version = Number((await q('SHOW server_version_num'))[0].server_version_num);
        const schema = (await q('SELECT curr_version FROM schema_version WHERE db_name = $1', [own.db.database]))[0]?.curr_version ?? null;
        const meta = (await q('SELECT cluster_name, data, data_encoding FROM cluster_metadata_info'))
          .filter((r) => String(r.data_encoding).toLowerCase() === 'proto3')
          .map((r) => decodeClusterMetadata(r.data as Buffer));
        return { version, schema, meta };
      });
      const stored = found.meta.find((m) => m.clusterId === info.clusterId);
      Object.assign(evidence, {
        database: `${server.host}:${server.port}/${own.db.database}`,
        postgresVersion: pgVersionText(found.version),
        schemaVersion: found.schema,
        clusterIdsInDatabase: found.meta.map((m) => m.clusterId),
      });
      if (!stored) return fail(`database ${own.key} (${evidence.database}) does not hold this cluster (id ${info.clusterId}): temporal.cluster.persistenceDatabase names another cluster's database`, evidence);
      if (found.version < 130_000) return fail(`Temporal's database ${own.key} runs PostgreSQL ${pgVersionText(found.version)}, older than 13`, evidence);
      return pass(`persistence on ${store}: PostgreSQL ${pgVersionText(found.version)} at ${evidence.database}, schema ${found.schema}, holding this cluster (${stored.historyShardCount} shards)`, evidence);
    },

    async checkTemporalVisibilityStore(timeoutMs) {
      const info = await temporalCall(timeoutMs, (c) => c.workflowService.getClusterInfo({}));
      const store = info.visibilityStore ?? '';
      const evidence: Record<string, unknown> = { visibilityStore: store };
      if (/elasticsearch|opensearch/i.test(store)) return pass(`visibility on ${store}`, { ...evidence, kind: 'elasticsearch' });
      // SQL advanced visibility (PostgreSQL 12+, MySQL 8) is Temporal's supported alternative to Elasticsearch.
      if (/^(postgres12|mysql8)/i.test(store)) {
        evidence.kind = 'sql-advanced-visibility';
        const own = persistenceDb();
        const visibilityDb = cluster?.visibilityDatabase;
        if (own && visibilityDb && /^postgres/i.test(store)) {
          const server = await reachServer(pgServerOf(own.db, deps.baseDir));
          const found = await withPg(server, visibilityDb, async (q) => ({
            version: Number((await q('SHOW server_version_num'))[0].server_version_num),
            schema: (await q('SELECT curr_version FROM schema_version WHERE db_name = $1', [visibilityDb]))[0]?.curr_version ?? null,
          }));
          Object.assign(evidence, { database: `${server.host}:${server.port}/${visibilityDb}`, postgresVersion: pgVersionText(found.version), schemaVersion: found.schema });
          return pass(`SQL advanced visibility on PostgreSQL ${pgVersionText(found.version)} (${visibilityDb}, schema ${found.schema}), Temporal's supported alternative to Elasticsearch`, evidence);
        }
        return pass(`SQL advanced visibility on ${store}, Temporal's supported alternative to Elasticsearch`, evidence);
      }
      return fail(`visibility store '${store}' is neither Elasticsearch nor SQL advanced visibility (PostgreSQL 12+, MySQL 8)`, evidence);
    },

    async checkNamespaceArchival(timeoutMs) {
      const namespace = deps.temporalSettings().namespace;
      const ns = await temporalCall(timeoutMs, (c) => c.workflowService.describeNamespace({ namespace }));
      const state = (x: unknown) => (x === 2 || x === 'ARCHIVAL_STATE_ENABLED' ? 'enabled' : 'disabled');
      const evidence = {
        namespace,
        historyArchival: state(ns.config?.historyArchivalState),
        historyArchivalUri: ns.config?.historyArchivalUri || null,
        visibilityArchival: state(ns.config?.visibilityArchivalState),
        visibilityArchivalUri: ns.config?.visibilityArchivalUri || null,
      };
      if (evidence.historyArchival !== 'enabled') return fail(`history archival is disabled for namespace ${namespace}`, evidence);
      const objectStore = (uri: string | null) => uri !== null && /^(s3|gs):\/\//.test(uri);
      if (!objectStore(evidence.historyArchivalUri)) return fail(`history archival of ${namespace} goes to ${evidence.historyArchivalUri}, not to object storage (s3:// or gs://)`, evidence);
      return pass(`history archival to ${evidence.historyArchivalUri}${evidence.visibilityArchival === 'enabled' ? `, visibility archival to ${evidence.visibilityArchivalUri}` : ''}`, evidence);
    },

    async checkTemporalTls(timeoutMs, _i, signal) {
      if (!tlsConfigured()) return plaintextVerdict('TLS', signal);
      const ep = endpointOf(deps.temporalSettings());
      const h = await handshake(ep, { clientCert: true }, signal);
      const evidence: Record<string, unknown> = { address: env.temporal.address, serverName: ep.name, protocol: h.protocol ?? null, error: h.error ?? null };
      if (!h.ok) return fail(`the TLS handshake with ${env.temporal.address} failed: ${h.error}`, evidence);
      // The frontend is one hop; "all internal communication" is every service host of the ring.
      const m = await membership(timeoutMs);
      // A managed service (Temporal Cloud) shows no service hosts: what the audit can see is the frontend.
      if (!m.ok) return pass(`${h.protocol} to ${env.temporal.address}; the service hosts behind it are not visible to the audit (${m.reason})`, { ...evidence, services: 'not visible' });
      const members = await probeMembers(m.d, signal, false);
      evidence.services = members.map(({ role, address, transport, error }) => ({ role, address, transport, ...(error ? { error } : {}) }));
      const plain = members.filter((p) => p.transport === 'plaintext');
      if (plain.length) return fail(`services speak plaintext: ${plain.map((p) => `${p.role} ${p.address}`).join(', ')}`, evidence);
      const unreachable = members.filter((p) => p.transport === 'unreachable');
      if (unreachable.length) return unknown(`services not reachable from the audit to check: ${unreachable.map((p) => `${p.role} ${p.address}`).join(', ')}`, evidence);
      const dc = dynamicConfig();
      if (!dc) return unknown(`${h.protocol} to the frontend and to all ${members.length} service hosts; membership gossip not proved: set temporal.cluster.dynamicConfigFile`, evidence);
      if ('error' in dc) return unknown(dc.error, evidence);
      const ringpopTls = dynamicValue(dc.values, 'system.enableRingpopTLS') === true;
      Object.assign(evidence, { dynamicConfigFile: dc.file, membershipGossipTls: ringpopTls });
      if (!ringpopTls) return fail(`membership gossip between services is plaintext: system.enableRingpopTLS is not true in ${dc.file}`, evidence);
      return pass(`${h.protocol} to the frontend and to all ${members.length} service hosts; membership gossip over TLS (system.enableRingpopTLS)`, evidence);
    },

    async checkTemporalMtls(timeoutMs, _i, signal) {
      if (!tlsConfigured()) return plaintextVerdict('mTLS', signal);
      const ep = endpointOf(deps.temporalSettings());
      const configured = Boolean(ep.cert && ep.key);
      const probe = await anonymousProbe(ep, signal);
      const evidence: Record<string, unknown> = { clientCertificateConfigured: configured, connectionWithoutClientCertificate: probe.outcome, protocol: probe.protocol ?? null, error: probe.error ?? null, errorCode: probe.errorCode ?? null };
      if (probe.outcome === 'silent') return unknown('a connection without a client certificate got no answer and no refusal within 3 s', evidence);
      if (probe.outcome === 'answered') return fail('the frontend accepts connections without a client certificate', evidence);
      if (!configured) return fail('the frontend refuses clients without a certificate, but this environment has no tls.clientCert configured', evidence);
      // Behind a load balancer, each frontend and each internal service must refuse anonymous clients too.
      const m = await membership(timeoutMs);
      if (!m.ok) return pass(`a connection without a client certificate is refused (service hosts not checked: ${m.reason})`, evidence);
      const members = await probeMembers(m.d, signal, true);
      evidence.services = members.map(({ role, address, transport, withoutClientCertificate }) => ({ role, address, transport, withoutClientCertificate: withoutClientCertificate ?? null }));
      const open = members.filter((p) => p.transport === 'plaintext' || p.withoutClientCertificate === 'answered');
      if (open.length) return fail(`services that serve a client without a certificate: ${open.map((p) => `${p.role} ${p.address} (${p.transport === 'plaintext' ? 'plaintext' : 'TLS without client authentication'})`).join(', ')}`, evidence);
      const unsure = members.filter((p) => p.transport === 'unreachable' || p.withoutClientCertificate === 'silent');
      if (unsure.length) return unknown(`not proved for: ${unsure.map((p) => `${p.role} ${p.address}`).join(', ')}`, evidence);
      return pass(`a connection without a client certificate is refused by the load balancer's frontend and by all ${members.length} service hosts`, evidence);
    },

    async checkTemporalCertificate(timeoutMs, input, signal) {
      if (!tlsConfigured()) return plaintextVerdict('certificate', signal);
      const minDays = input.certificateMinDays ?? 30;
      const ep = endpointOf(deps.temporalSettings());
      const h = await handshake(ep, { clientCert: true }, signal);
      if (!h.ok) return unknown(`no TLS handshake with ${env.temporal.address}: ${h.error}`, { error: h.error ?? null });
      const chain = h.chain ?? [];
      let soonest = Math.min(...chain.map((c) => c.daysLeft));
      const evidence: Record<string, unknown> = { serverName: ep.name, chain, chainValid: h.authorized === true, authorizationError: h.authorizationError ?? null, nameMatches: !h.identityError, identityError: h.identityError ?? null, minDaysLeft: minDays };
      if (!h.authorized) return fail(`the certificate chain does not verify${ep.ca ? ' against tls.serverCa' : ''}: ${h.authorizationError}`, evidence);
      if (h.identityError) return fail(`the certificate does not match ${ep.name}: ${h.identityError}`, evidence);
      // The services' own (internode) certificates expire too.
      const m = await membership(timeoutMs);
      if (m.ok) {
        const members = (await probeMembers(m.d, signal, false)).filter((p) => p.certificate);
        evidence.services = members.map((p) => ({ role: p.role, address: p.address, ...p.certificate }));
        const expiring = members.filter((p) => p.certificate!.daysLeft < minDays);
        if (expiring.length) return fail(`service certificates expire within ${minDays} days: ${expiring.map((p) => `${p.role} ${p.address} (${p.certificate!.daysLeft} days)`).join(', ')}`, evidence);
        if (members.length) soonest = Math.min(soonest, ...members.map((p) => p.certificate!.daysLeft));
      }
      if (soonest < minDays) return fail(`a certificate of the chain expires in ${soonest} days (less than ${minDays})`, evidence);
      return pass(`chain valid, ${soonest} days until the first expiry${m.ok ? ' (frontend and service certificates)' : ''}`, evidence);
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

    async checkTemporalMembership(timeoutMs) {
      const m = await membership(timeoutMs);
      if (!m.ok) return unknown(m.reason);
      const minimum = cluster?.minimumHosts ?? DEFAULT_MINIMUM_HOSTS;
      const hosts = Object.fromEntries(ROLES.map((role) => [role, m.d.rings[role] ?? []]));
      const evidence = { hosts, minimum, answeredBy: m.d.answeredBy, minimumFrom: cluster ? 'temporal.cluster.minimumHosts' : 'default' };
      const short = ROLES.filter((role) => hosts[role].length < minimum[role]);
      if (short.length) {
        return fail(`too few hosts for high availability: ${short.map((role) => `${role} ${hosts[role].length} (at least ${minimum[role]})`).join(', ')}`, evidence);
      }
      return pass(`every service role runs on several hosts: ${ROLES.map((role) => `${role} ${hosts[role].length}`).join(', ')}`, evidence);
    },

    async checkTemporalDatabaseReplica() {
      const own = persistenceDb();
      if (!own) return noClusterConfig('a replica of it');
      const r = own.db.replica;
      const evidence: Record<string, unknown> = { database: own.key, replica: r ? `${r.host}:${r.port}` : null };
      if (!r) return fail(`Temporal's persistence database ${own.key} has no replica configured (databases.${own.key}.replica)`, evidence);
      const server = await reachServer(pgServerOf(own.db, deps.baseDir));
      const primary = `${server.host}:${server.port}`;
      evidence.primary = primary;
      const onReplica = await withPg({ ...server, host: r.host, port: r.port, password: server.password }, own.db.database, async (q) => {
        const rec = (await q('SELECT pg_is_in_recovery() AS rec'))[0].rec === true;
        const receiver = rec ? ((await q('SELECT status, sender_host, sender_port FROM pg_stat_wal_receiver'))[0] ?? null) : null;
        const lag = rec ? (await q('SELECT EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 AS lag'))[0].lag : null;
        return { inRecovery: rec, walReceiver: receiver?.status ?? null, sender: receiver ? `${receiver.sender_host}:${receiver.sender_port}` : null, replayDelaySeconds: lag === null ? null : Number(Number(lag).toFixed(1)) };
      });
      Object.assign(evidence, onReplica);
      if (!onReplica.inRecovery) return fail(`the replica ${r.host}:${r.port} of Temporal's database ${own.key} is not in recovery (it is a primary)`, evidence);
      if (onReplica.walReceiver !== 'streaming') return fail(`the replica of Temporal's database ${own.key} is not streaming (${onReplica.walReceiver ?? 'no WAL receiver'})`, evidence);
      const streamingFromPrimary = onReplica.sender === primary;
      evidence.streamingFromConfiguredPrimary = streamingFromPrimary;
      if (!streamingFromPrimary) return fail(`the replica of ${own.key} streams from ${onReplica.sender}, not from the configured primary ${primary}`, evidence);
      return pass(`Temporal's database ${own.key} has a streaming replica at ${r.host}:${r.port}`, evidence);
    },

    async checkQueueIsolation() {
      const q = env.temporal.taskQueues;
      const names = [q.critical, q.standard, q.batch];
      const evidence = { critical: q.critical, standard: q.standard, batch: q.batch };
      return new Set(names).size === 3 ? pass('critical, standard and batch work run on separate task queues', evidence) : fail('two queue kinds share one task queue', evidence);
    },

    async checkQueuePollers(timeoutMs) {
      const namespace = deps.temporalSettings().namespace;
      // The audit itself runs on a worker that polls these queues; only the other workers count.
      const self = ownWorkerIdentity();
      const queues: Record<string, { queue: string; workflowPollers: string[]; activityPollers: string[] }> = {};
      for (const [kind, name] of Object.entries(env.temporal.taskQueues)) {
        const pollers = (type: 1 | 2) =>
          temporalCall(timeoutMs, (c) => c.workflowService.describeTaskQueue({ namespace, taskQueue: { name }, taskQueueType: type })).then((r) =>
            [...new Set((r.pollers ?? []).map((p) => p.identity ?? '').filter((id) => id && id !== self))].sort(),
          );
        queues[kind] = { queue: name, workflowPollers: await pollers(1), activityPollers: await pollers(2) };
      }
      const evidence = { queues, auditingWorker: self };
      const empty = Object.entries(queues).filter(([, v]) => v.workflowPollers.length === 0 || v.activityPollers.length === 0).map(([k]) => k);
      return empty.length === 0
        ? pass(`every queue is polled by deployed workers (${[...new Set(Object.values(queues).flatMap((v) => v.workflowPollers))].length} besides the auditing one)`, evidence)
        : fail(`no deployed worker polls: ${empty.join(', ')} (the auditing worker itself does not count)`, evidence);
    },
  };
}
