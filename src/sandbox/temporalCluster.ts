/**
 * A production-shaped Temporal cluster for the sandbox, from the official server built once by
 * scripts/temporal/build: persistence and SQL advanced visibility on a PostgreSQL pair of its own
 * (created and migrated with Temporal's schema tool; a streaming replica beside the primary), 512
 * history shards, every service role in its own process (two frontends), HAProxy in front of the
 * frontends, TLS on the frontend and between services from a throwaway CA with client certificates
 * required everywhere, history and visibility archival to the sandbox S3 server, and a dynamic
 * config file. All processes share one server config file and differ only by environment (ports),
 * as pods of one Deployment would.
 */
import { execFile, execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common';
import { Client as PgClient } from 'pg';
import { findBinary, MissingBinaryError, spawnService, stopService, groupAlive, waitUntil } from '../system/process';
import { reachableClusterDir, PostgresClusterInfo } from '../system/postgres';
import { ClusterDescription, TemporalAdminConnection } from '../system/temporalAdmin';
import { initCluster, startPostgres, startReplica, stopPostgres } from './postgres';
import type { S3ServerInfo } from './s3';
import { SEARCH_ATTRIBUTES } from './temporal';
import { CertFiles, createCa, issueCert } from './tls';

const run = promisify(execFile);

export type TemporalRole = 'frontend' | 'history' | 'matching' | 'worker';
export const TEMPORAL_ROLES: readonly TemporalRole[] = ['frontend', 'history', 'matching', 'worker'];

/** The name clients and the load balancer present the frontend as; the certificate carries it. */
export const CLUSTER_SERVER_NAME = 'temporal.sandbox.test';
const INTERNODE_NAME = 'internode.sandbox.test';
export const PERSISTENCE_DATABASE = 'temporal';
export const VISIBILITY_DATABASE = 'temporal_visibility';
export const ARCHIVAL_BUCKET = 'runbook-temporal-archival';
const NUM_HISTORY_SHARDS = 512;
const CERT_DAYS = 90;

export interface TemporalClusterProcess {
  name: string;
  role: TemporalRole;
  pid: number;
  /** The gRPC endpoint, as the membership ring reports it. */
  grpcAddress: string;
  membershipPort: number;
  metricsUrl: string;
  logFile: string;
}

export interface TemporalClusterInfo {
  dir: string;
  serverVersion: string;
  /** The load balancer: what clients connect to. */
  address: string;
  serverName: string;
  namespace: string;
  processes: TemporalClusterProcess[];
  haproxy: { pid: number; configFile: string; logFile: string; statsSocket: string };
  postgres: PostgresClusterInfo;
  postgresReplica: PostgresClusterInfo;
  persistenceDatabase: string;
  visibilityDatabase: string;
  serverConfigFile: string;
  dynamicConfigFile: string;
  archivalUri: string;
  pki: { ca: string; worker: CertFiles; admin: CertFiles };
  /** Wall time of the start, from the first file written to the namespace being usable. */
  startMs: number;
}

export interface TemporalClusterOptions {
  dir: string;
  /** The sandbox S3 server: archival goes there. */
  s3: S3ServerInfo;
  /** Hosts per role (default two of each: the audit's minimum for high availability). */
  hosts?: Partial<Record<TemporalRole, number>>;
  /** Loopback addresses of Temporal's PostgreSQL primary and replica (default 127.0.0.4, 127.0.0.5). */
  postgresHost?: string;
  replicaHost?: string;
  /** Password of the PostgreSQL superuser the servers log in as; kept out of every file but the caller's secret. */
  postgresPassword: string;
  namespace?: string;
}

const projectRoot = resolve(__dirname, '..', '..');
const buildScript = join(projectRoot, 'scripts', 'temporal', 'build');

/**
 * Where the server, the schema tool and the schemas are: RUNBOOK_TEMPORAL_SERVER_DIR, or the cache
 * scripts/temporal/build fills (it returns at once when the cache is complete; otherwise it builds,
 * which takes minutes once).
 */
export function temporalServerDir(opts: { build?: boolean } = {}): string {
  const explicit = process.env.RUNBOOK_TEMPORAL_SERVER_DIR;
  const dir = explicit
    ? explicit
    : (() => {
        try {
          const out = execFileSync(buildScript, [], {
            encoding: 'utf8',
            stdio: ['ignore', 'pipe', opts.build === false ? 'ignore' : 'inherit'],
            env: { ...process.env, ...(opts.build === false ? { RUNBOOK_TEMPORAL_CHECK_ONLY: '1' } : {}) },
          });
          return out.trim().split('\n').pop() ?? '';
        } catch {
          return '';
        }
      })();
  for (const needed of ['bin/temporal-server', 'bin/temporal-sql-tool', 'schema/postgresql/v12/temporal/versioned', 'schema/postgresql/v12/visibility/versioned']) {
    if (!dir || !existsSync(join(dir, needed))) {
      throw new MissingBinaryError(
        basename(needed),
        'Run scripts/temporal/build (it builds the Temporal server and its schema tool once from the Go module proxy and caches them), or set RUNBOOK_TEMPORAL_SERVER_DIR to a directory holding bin/temporal-server, bin/temporal-sql-tool and schema/.',
      );
    }
  }
  return dir;
}

export function findHaproxy(): string {
  return findBinary('haproxy', { dirs: ['/usr/sbin'], hint: 'Install HAProxy (scripts/bootstrap --with-temporal-cluster does: apt-get install haproxy, without starting its service).' });
}

function versionOf(serverDir: string): string {
  const file = join(serverDir, 'bin', '.complete');
  const line = existsSync(file) ? readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith('server=')) : undefined;
  return line ? line.slice('server='.length) : 'unknown';
}

/** The schema tool against Temporal's PostgreSQL; the password travels in its environment, not its arguments. */
async function sqlTool(serverDir: string, pg: PostgresClusterInfo, password: string, database: string, args: string[]): Promise<void> {
  try {
    await run(join(serverDir, 'bin', 'temporal-sql-tool'), ['--plugin', 'postgres12', '--ep', pg.host, '-p', String(pg.port), '-u', pg.superuser, '--db', database, ...args], {
      env: { ...process.env, SQL_PASSWORD: password },
    });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`temporal-sql-tool ${args[0]} on ${database} failed: ${(e.stderr || e.stdout || e.message).trim().slice(-2000)}`);
  }
}

async function pgQuery(pg: PostgresClusterInfo, password: string, database: string, sql: string, values: unknown[] = []): Promise<unknown[]> {
  const client = new PgClient({ host: pg.host, port: pg.port, user: pg.superuser, password, database });
  await client.connect();
  try {
    return (await client.query(sql, values)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Creates and migrates the persistence and visibility databases, as the server's upgrade guide does.
 * On a restart from the same directory they exist: only update-schema runs (a no-op when current).
 */
async function setUpSchemas(serverDir: string, pg: PostgresClusterInfo, password: string): Promise<void> {
  for (const [database, schema] of [
    [PERSISTENCE_DATABASE, 'temporal'],
    [VISIBILITY_DATABASE, 'visibility'],
  ] as const) {
    const exists = (await pgQuery(pg, password, 'postgres', 'SELECT 1 FROM pg_database WHERE datname = $1', [database])).length > 0;
    if (!exists) await sqlTool(serverDir, pg, password, database, ['create-database']);
    const versioned = exists && ((await pgQuery(pg, password, database, "SELECT to_regclass('schema_version') IS NOT NULL AS present")) as { present: boolean }[])[0].present;
    if (!versioned) await sqlTool(serverDir, pg, password, database, ['setup-schema', '-v', '0.0']);
    await sqlTool(serverDir, pg, password, database, ['update-schema', '-d', join(serverDir, 'schema', 'postgresql', 'v12', schema, 'versioned')]);
  }
}

function serverConfig(o: { pg: PostgresClusterInfo; pki: string; ca: string; s3: S3ServerInfo; dynamicConfigFile: string; lbAddress: string }): string {
  const cert = (name: string) => join(o.pki, `${name}.pem`);
  const key = (name: string) => join(o.pki, `${name}.key`);
  const sql = (database: string, maxConns: number) => `
      sql:
        pluginName: postgres12
        databaseName: ${database}
        connectAddr: "${o.pg.host}:${o.pg.port}"
        connectProtocol: tcp
        user: ${o.pg.superuser}
        password: '{{ env "TEMPORAL_SQL_PASSWORD" }}'
        maxConns: ${maxConns}
        maxIdleConns: ${maxConns}
        maxConnLifetime: 1h`;
  const rpc = `
    rpc:
      grpcPort: {{ env "TEMPORAL_GRPC_PORT" }}
      membershipPort: {{ env "TEMPORAL_MEMBERSHIP_PORT" }}
      bindOnIP: 127.0.0.1`;
  return `# enable-template
# The sandbox's Temporal cluster, written by 'runbook stack up --with-temporal-cluster'. Every process reads
# this file and runs the one service named by its --service flag; ports and the database password come
# from each process's environment. No secret is written here.
log:
  stdout: true
  level: warn

persistence:
  defaultStore: postgres-default
  visibilityStore: postgres-visibility
  numHistoryShards: ${NUM_HISTORY_SHARDS}
  datastores:
    postgres-default:${sql(PERSISTENCE_DATABASE, 8)}
    postgres-visibility:${sql(VISIBILITY_DATABASE, 4)}

global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1
  metrics:
    prometheus:
      framework: tally
      timerType: histogram
      listenAddress: '127.0.0.1:{{ env "TEMPORAL_METRICS_PORT" }}'
  tls:
    refreshInterval: 1m
    internode:
      server:
        certFile: ${cert('internode')}
        keyFile: ${key('internode')}
        requireClientAuth: true
        clientCaFiles: [${o.ca}]
      client:
        serverName: ${INTERNODE_NAME}
        rootCaFiles: [${o.ca}]
    frontend:
      server:
        certFile: ${cert('frontend')}
        keyFile: ${key('frontend')}
        requireClientAuth: true
        clientCaFiles: [${o.ca}]
      client:
        serverName: ${CLUSTER_SERVER_NAME}
        rootCaFiles: [${o.ca}]
    systemWorker:
      certFile: ${cert('system-worker')}
      keyFile: ${key('system-worker')}
      client:
        serverName: ${CLUSTER_SERVER_NAME}
        rootCaFiles: [${o.ca}]

services:
  frontend:${rpc}
  history:${rpc}
  matching:${rpc}
  worker:${rpc}

clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: ${o.lbAddress}

dcRedirectionPolicy:
  policy: noop

archival:
  history:
    state: enabled
    enableRead: true
    provider:
      s3store:
        region: ${o.s3.region}
        endpoint: ${o.s3.endpoint}
        s3ForcePathStyle: true
  visibility:
    state: enabled
    enableRead: true
    provider:
      s3store:
        region: ${o.s3.region}
        endpoint: ${o.s3.endpoint}
        s3ForcePathStyle: true

namespaceDefaults:
  archival:
    history:
      state: disabled
      URI: s3://${ARCHIVAL_BUCKET}
    visibility:
      state: disabled
      URI: s3://${ARCHIVAL_BUCKET}

dynamicConfigClient:
  filepath: ${o.dynamicConfigFile}
  pollInterval: 10s
`;
}

const DYNAMIC_CONFIG = `# Dynamic config of the sandbox's Temporal cluster (read by every process, polled every 10 s).
# Membership gossip uses the internode TLS settings too, so no traffic between services is plaintext.
system.enableRingpopTLS:
  - value: true
# Search attributes added by an operator are seen at once (the sandbox adds them right after start).
system.forceSearchAttributesCacheRefreshOnRead:
  - value: true
limit.maxIDLength:
  - value: 255
`;

function haproxyConfig(o: { listen: string; frontends: TemporalClusterProcess[]; statsSocket: string }): string {
  // TCP mode: TLS passes through to the frontends, which check the client certificate themselves.
  return `# HAProxy in front of the sandbox's Temporal frontends (gRPC over TLS, passed through).
global
  maxconn 2000
  stats socket ${o.statsSocket} mode 600 level admin
  log stdout format raw local0 notice

defaults
  mode tcp
  log global
  timeout connect 2s
  timeout client 10m
  timeout server 10m
  retries 2
  option redispatch

frontend temporal_grpc
  bind ${o.listen}
  default_backend temporal_frontends

backend temporal_frontends
  balance roundrobin
${o.frontends.map((f) => `  server ${f.name} ${f.grpcAddress} check inter 1s fall 2 rise 1`).join('\n')}
`;
}

function processNames(hosts: Record<TemporalRole, number>): { name: string; role: TemporalRole }[] {
  const out: { name: string; role: TemporalRole }[] = [];
  for (const role of TEMPORAL_ROLES) for (let i = 0; i < hosts[role]; i++) out.push({ role, name: `${role}-${String.fromCharCode(97 + i)}` });
  return out;
}

/**
 * A free port below the kernel's ephemeral range (32768 and up), tried at random and bound once.
 * Membership ports must be: cluster_membership.rpc_port is a SMALLINT. The servers' other ports are
 * too, because the processes start seconds apart and on a busy machine an outgoing connection can
 * take an ephemeral port that was free a moment before.
 */
async function freeLowPort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_700);
    // A port handed out before may not be bound yet (its process is still starting): never hand it out twice.
    if (handedOut.has(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen({ host, port }, () => server.close(() => resolve(true)));
    });
    if (free) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port below 32768 on ${host} for the Temporal cluster`);
}
/** Every port freeLowPort returned in this process: 36 ports drawn at random for one cluster collide often enough to matter. */
const handedOut = new Set<number>();

const INDEXED_VALUE_TYPES: Record<string, number> = { Text: 1, Keyword: 2, Int: 3, Double: 4, Bool: 5, Datetime: 6, KeywordList: 7 };

function connectAs(address: string, pki: { ca: string; cert: CertFiles }, connectTimeout = 2_000): Promise<TemporalAdminConnection> {
  return TemporalAdminConnection.open({
    address,
    connectTimeout,
    tls: { serverNameOverride: CLUSTER_SERVER_NAME, serverRootCACertificate: readFileSync(pki.ca), clientCertPair: { crt: readFileSync(pki.cert.cert), key: readFileSync(pki.cert.key) } },
  });
}

/** The cluster as its membership ring sees it, asked through one address. */
export async function describeTemporalCluster(address: string, pki: { ca: string; cert: CertFiles }): Promise<ClusterDescription> {
  const connection = await connectAs(address, pki);
  try {
    return await connection.describeCluster(3_000);
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/** Registers the namespace (30-day retention, archival to S3) and the runbooks' search attributes, idempotently. */
async function prepareNamespace(connection: Connection, namespace: string, archivalUri: string): Promise<void> {
  try {
    await connection.workflowService.registerNamespace({
      namespace,
      description: 'runbook sandbox',
      workflowExecutionRetentionPeriod: msToTs('30 days'),
      historyArchivalState: 2,
      historyArchivalUri: archivalUri,
      visibilityArchivalState: 2,
      visibilityArchivalUri: archivalUri,
    });
  } catch (err) {
    // ALREADY_EXISTS: a retried start.
    if ((err as { code?: number }).code !== 6) throw err;
  }
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const missing = Object.entries(SEARCH_ATTRIBUTES).filter(([name]) => !(name in (existing.customAttributes ?? {})));
  if (missing.length) {
    await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: Object.fromEntries(missing.map(([name, type]) => [name, INDEXED_VALUE_TYPES[type]])) });
  }
}

/** True when the namespace and its search attributes are usable through this frontend. */
async function namespaceUsable(address: string, pki: { ca: string; cert: CertFiles }, namespace: string): Promise<boolean> {
  const connection = await connectAs(address, pki);
  try {
    await connection.workflowService.countWorkflowExecutions({ namespace, query: `RunbookName = 'sandbox-start-probe'` });
    return true;
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/**
 * Starts the cluster. If any part fails, what was started is stopped again before the error is
 * rethrown, so a failed start leaves no process behind.
 */
export async function startTemporalCluster(opts: TemporalClusterOptions): Promise<TemporalClusterInfo> {
  const started = Date.now();
  const serverDir = temporalServerDir();
  const haproxy = findHaproxy();
  const dir = opts.dir;
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const hosts: Record<TemporalRole, number> = { frontend: 2, history: 2, matching: 2, worker: 2, ...opts.hosts };
  const namespace = opts.namespace ?? 'default';
  const partial: Partial<TemporalClusterInfo> & { dir: string; processes: TemporalClusterProcess[] } = { dir, processes: [] };
  try {
    // ---- certificates: one CA; frontend (server), internode (server and client), client certificates
    const pkiDir = join(dir, 'pki');
    const ca = await createCa(pkiDir, 'runbook-sandbox-temporal-ca', CERT_DAYS);
    await issueCert(pkiDir, ca, 'frontend', { usage: 'server', dnsNames: [CLUSTER_SERVER_NAME, 'localhost'], ips: ['127.0.0.1'], days: CERT_DAYS });
    await issueCert(pkiDir, ca, 'internode', { usage: 'server-client', dnsNames: [INTERNODE_NAME], ips: ['127.0.0.1'], days: CERT_DAYS });
    await issueCert(pkiDir, ca, 'system-worker', { usage: 'client', commonName: 'temporal-system-worker', days: CERT_DAYS });
    const worker = await issueCert(pkiDir, ca, 'runbook-worker', { usage: 'client', commonName: 'runbook-worker', days: CERT_DAYS });
    const admin = await issueCert(pkiDir, ca, 'admin', { usage: 'client', commonName: 'temporal-admin', days: CERT_DAYS });
    partial.pki = { ca: ca.cert, worker, admin };

    // ---- Temporal's own PostgreSQL pair, the archival bucket
    const pgDir = join(reachableClusterDir(join(dir, 'pg')), 'temporal-postgres-primary');
    const { dataDir, socketDir } = await initCluster({ dir: pgDir, password: opts.postgresPassword, name: 'temporal-pg-a' });
    // Every process keeps a pool to each store: more connections than the sandbox's default allows.
    if (!readFileSync(join(dataDir, 'postgresql.auto.conf'), 'utf8').includes('max_connections')) appendFileSync(join(dataDir, 'postgresql.auto.conf'), 'max_connections = 200\n');
    partial.postgres = await startPostgres({ dir: pgDir, host: opts.postgresHost ?? '127.0.0.4', password: opts.postgresPassword, dataDir, socketDir, name: 'temporal-pg-a' });
    const s3 = new S3Client({ endpoint: opts.s3.endpoint, region: opts.s3.region, forcePathStyle: true, credentials: { accessKeyId: opts.s3.accessKeyId, secretAccessKey: opts.s3.secretAccessKey } });
    try {
      await s3.send(new CreateBucketCommand({ Bucket: ARCHIVAL_BUCKET })).catch((err: { name?: string }) => {
        if (err.name !== 'BucketAlreadyOwnedByYou' && err.name !== 'BucketAlreadyExists') throw err;
      });
    } finally {
      s3.destroy();
    }
    const pg = partial.postgres;
    const [replica] = await Promise.all([
      startReplica(pg, { dir: join(dirname(pgDir), 'temporal-postgres-replica'), host: opts.replicaHost ?? '127.0.0.5', password: opts.postgresPassword, name: 'temporal-pg-b' }),
      setUpSchemas(serverDir, pg, opts.postgresPassword),
    ]);
    partial.postgresReplica = replica;

    // A restart from the same directory: the hosts of the last run are gone; without their rows the
    // first process does not wait for them to answer before it forms the ring.
    await pgQuery(pg, opts.postgresPassword, PERSISTENCE_DATABASE, 'DELETE FROM cluster_membership');

    // ---- configuration
    const lbPort = await freeLowPort();
    const lbAddress = `127.0.0.1:${lbPort}`;
    const dynamicConfigFile = join(dir, 'dynamicconfig.yaml');
    writeFileSync(dynamicConfigFile, DYNAMIC_CONFIG);
    const serverConfigFile = join(dir, 'temporal-server.yaml');
    writeFileSync(serverConfigFile, serverConfig({ pg, pki: pkiDir, ca: ca.cert, s3: opts.s3, dynamicConfigFile, lbAddress }));
    partial.dynamicConfigFile = dynamicConfigFile;
    partial.serverConfigFile = serverConfigFile;

    // ---- the services, each its own process
    const binary = join(serverDir, 'bin', 'temporal-server');
    for (const [i, { name, role }] of processNames(hosts).entries()) {
      if (i === 1) {
        // Every process writes the cluster's metadata when there is none, or when the stored record
        // differs from its config (a restart: the load balancer's address is new), and the losers of
        // that race exit. So the first process gets past it alone: it joins the membership (whose rows
        // were cleared above) only after its metadata step, and then the others start.
        const first = partial.processes[0];
        await waitUntil(
          `Temporal ${first.name} to record the cluster's metadata and join the membership`,
          async () =>
            (await pgQuery(pg, opts.postgresPassword, PERSISTENCE_DATABASE, 'SELECT 1 FROM cluster_metadata_info')).length > 0 &&
            (await pgQuery(pg, opts.postgresPassword, PERSISTENCE_DATABASE, 'SELECT 1 FROM cluster_membership')).length > 0,
          { timeoutMs: 120_000, intervalMs: 200, pid: first.pid, logFile: first.logFile },
        );
      }
      const [grpcPort, membershipPort, metricsPort] = [await freeLowPort(), await freeLowPort(), await freeLowPort()];
      const logFile = join(dir, 'logs', `${name}.log`);
      const service = spawnService(`temporal ${name}`, binary, ['--config-file', serverConfigFile, '--allow-no-auth', 'start', '--service', role], logFile, {
        cwd: dir,
        env: {
          ...process.env,
          TEMPORAL_GRPC_PORT: String(grpcPort),
          TEMPORAL_MEMBERSHIP_PORT: String(membershipPort),
          TEMPORAL_METRICS_PORT: String(metricsPort),
          TEMPORAL_SQL_PASSWORD: opts.postgresPassword,
          AWS_ACCESS_KEY_ID: opts.s3.accessKeyId,
          AWS_SECRET_ACCESS_KEY: opts.s3.secretAccessKey,
          AWS_REGION: opts.s3.region,
        },
      });
      partial.processes.push({ name, role, pid: service.pid, grpcAddress: `127.0.0.1:${grpcPort}`, membershipPort, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, logFile });
    }

    // ---- the load balancer
    const frontends = partial.processes.filter((p) => p.role === 'frontend');
    const haproxyConfigFile = join(dir, 'haproxy.cfg');
    const statsSocket = join(dir, 'haproxy.sock');
    writeFileSync(haproxyConfigFile, haproxyConfig({ listen: lbAddress, frontends, statsSocket }));
    const lb = spawnService('haproxy', haproxy, ['-db', '-f', haproxyConfigFile], join(dir, 'logs', 'haproxy.log'));
    partial.haproxy = { pid: lb.pid, configFile: haproxyConfigFile, logFile: lb.logFile, statsSocket };

    // ---- whole: every host of every role in the ring, seen through the load balancer
    const adminPki = { ca: ca.cert, cert: admin };
    const exited = () => partial.processes.find((p) => !groupAlive(p.pid));
    await waitUntil(
      'Temporal cluster membership',
      async () => {
        const gone = exited();
        if (gone) throw new Error(`${gone.name} exited`);
        const d = await describeTemporalCluster(lbAddress, adminPki);
        return TEMPORAL_ROLES.every((role) => (d.rings[role]?.length ?? 0) >= hosts[role]);
      },
      { timeoutMs: 120_000, intervalMs: 500, pid: lb.pid, logFile: lb.logFile },
    ).catch((err: Error) => {
      const gone = exited();
      throw gone ? new Error(`Temporal ${gone.name} exited during start-up:\n${readFileSync(gone.logFile, 'utf8').trimEnd().split('\n').slice(-15).join('\n')}`) : err;
    });
    const archivalUri = `s3://${ARCHIVAL_BUCKET}`;
    const setup = await connectAs(lbAddress, adminPki, 10_000);
    try {
      await prepareNamespace(setup, namespace, archivalUri);
    } finally {
      await setup.close().catch(() => undefined);
    }
    for (const f of frontends) {
      await waitUntil(`namespace ${namespace} on ${f.name}`, () => namespaceUsable(f.grpcAddress, adminPki, namespace), { timeoutMs: 30_000, intervalMs: 250, pid: f.pid, logFile: f.logFile });
    }
    const description = await describeTemporalCluster(lbAddress, adminPki);
    return {
      dir,
      serverVersion: description.serverVersion || versionOf(serverDir),
      address: lbAddress,
      serverName: CLUSTER_SERVER_NAME,
      namespace,
      processes: partial.processes,
      haproxy: partial.haproxy,
      postgres: pg,
      postgresReplica: replica,
      persistenceDatabase: PERSISTENCE_DATABASE,
      visibilityDatabase: VISIBILITY_DATABASE,
      serverConfigFile,
      dynamicConfigFile,
      archivalUri,
      pki: partial.pki,
      startMs: Date.now() - started,
    };
  } catch (err) {
    await stopTemporalCluster(partial).catch(() => undefined);
    throw err;
  }
}

export function temporalClusterPids(info: Pick<TemporalClusterInfo, 'processes' | 'haproxy' | 'postgres' | 'postgresReplica'>): number[] {
  return [...info.processes.map((p) => p.pid), info.haproxy?.pid, info.postgres?.pid, info.postgresReplica?.pid].filter((p): p is number => p !== undefined);
}

/** Stops the load balancer, then the services, then their database; removes a database placed outside dir. Safe to call twice. */
export async function stopTemporalCluster(info: Partial<TemporalClusterInfo> & { dir: string }): Promise<void> {
  if (info.haproxy) await stopService(info.haproxy.pid, 'SIGTERM', 5_000);
  await Promise.all((info.processes ?? []).map((p) => stopService(p.pid, 'SIGTERM', 20_000)));
  await Promise.all([info.postgresReplica && stopPostgres(info.postgresReplica), info.postgres && stopPostgres(info.postgres)]);
  const pgBase = info.postgres && dirname(dirname(info.postgres.dataDir));
  if (pgBase && !pgBase.startsWith(info.dir) && basename(pgBase).startsWith('runbook-pg-')) rmSync(pgBase, { recursive: true, force: true });
}
