import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { Client as PgClient } from 'pg';
import { stringify } from 'yaml';
import { generateKey } from '../identity/signer';
import { startDnsServer, stopDnsServer, DnsServerInfo } from './dns';
import { ensureDatabase, initCluster, nodeRunning, reachableClusterDir, startPostgres, startReplica, stopPostgres, PostgresClusterInfo } from './postgres';
import { kubernetesAnswers, kubernetesPids, startKubernetes, stopKubernetes, KubernetesInfo } from './kubernetes';
import { disown, groupAlive } from '../system/process';
import { startS3Server, stopS3Server, S3ServerInfo } from './s3';
import { ensureSandboxRoles, SANDBOX_ROLES, SandboxRoles } from './pgRoles';
import { temporalChecksGrant } from '../config/pgRoles';
import { createStanza, enableArchiving, SANDBOX_PGBACKREST_BUCKET, SandboxPgBackRest, writeHostConfig } from './pgbackrest';
import { createCa } from './tls';
import { disownPatroni, PatroniClusterInfo, patroniPids, patroniStatus, startPatroniCluster, stopPatroniCluster } from './patroni';
import { startTemporalDevServer, stopTemporalDevServer, temporalAnswers, TemporalDevServerInfo } from './temporal';
import { describeTemporalCluster, startTemporalCluster, stopTemporalCluster, temporalClusterPids, TemporalClusterInfo } from './temporalCluster';

export const DEFAULT_STACK_DIR = '.runbook/stack';
export const SANDBOX_ZONE = 'sandbox.test';
export const SANDBOX_BUCKET = 'runbook-backups';
export const SANDBOX_DATABASE = 'app';
/** The sandbox's two operators (throwaway SSH keys made by stack up), so four-eyes can be shown: one requests, the other approves. */
export const SANDBOX_OPERATORS = ['sandbox-operator', 'sandbox-reviewer'] as const;
export type SandboxOperator = (typeof SANDBOX_OPERATORS)[number];

/** The key file of a sandbox operator, as the CLI's --key takes it. */
export function sandboxKey(state: Pick<StackState, 'dir'>, who: SandboxOperator): string {
  return join(state.dir, 'keys', who);
}

/** Throwaway Ed25519 keys for the sandbox operators and the allowed_signers file listing them. */
async function writeSandboxKeys(dir: string): Promise<void> {
  const keys = join(dir, 'keys');
  mkdirSync(keys, { recursive: true, mode: 0o700 });
  const lines: string[] = [];
  for (const who of SANDBOX_OPERATORS) {
    const [type, key] = (await generateKey(join(keys, who), `${who}@sandbox`)).split(' ');
    lines.push(`${who} ${type} ${key}`);
  }
  writeFileSync(join(keys, 'allowed_signers'), `# sandbox operators (throwaway keys made by runbook stack up)\n${lines.join('\n')}\n`);
}

/**
 * `replica` is a streaming replica of the PostgreSQL primary, on the next loopback address (needs `postgres`).
 * `kubernetes` is the test control plane (etcd, API server, controllers, scheduler, kwok nodes); it is
 * not part of the default stack because it is built once from Go modules (scripts/k8s/build).
 * `patroni` is a Patroni cluster (etcd, three PostgreSQL nodes, HAProxy), the database `ha` of the config.
 * `temporal-cluster` is a production-shaped Temporal cluster (src/sandbox/temporalCluster.ts) with its own
 * PostgreSQL pair, built once by scripts/temporal/build; it needs `s3` (archival). With it, the sandbox
 * environment runs on the cluster, and the dev server (when it runs too) serves the `ops` environment.
 */
export type StackComponent = 'temporal' | 'postgres' | 'replica' | 's3' | 'pgbackrest' | 'dns' | 'kubernetes' | 'patroni' | 'temporal-cluster';
/** `pgbackrest`: WAL archiving of the primary into a pgBackRest stanza on the S3 server's TLS endpoint (needs postgres and s3). */
export const DEFAULT_COMPONENTS: StackComponent[] = ['temporal', 'postgres', 'replica', 's3', 'pgbackrest', 'dns'];
export const ALL_COMPONENTS: StackComponent[] = [...DEFAULT_COMPONENTS, 'kubernetes', 'patroni', 'temporal-cluster'];
/** The config key of the Patroni cluster's database. */
export const PATRONI_DATABASE_KEY = 'ha';
/** The same Patroni database, backed up with pgBackRest and WAL archiving (with the pgbackrest component). */
export const PATRONI_PITR_DATABASE_KEY = 'ha_pitr';

export interface StackState {
  dir: string;
  startedAt: string;
  configFile: string;
  temporal?: TemporalDevServerInfo;
  postgres?: PostgresClusterInfo & { database: string };
  /** The streaming replica, same port as the primary on its own address. */
  postgresReplica?: PostgresClusterInfo;
  s3?: S3ServerInfo;
  /** The stanza the primary archives into, and the database host's pgBackRest configuration. */
  pgbackrest?: SandboxPgBackRest;
  dns?: DnsServerInfo;
  kubernetes?: KubernetesInfo;
  patroni?: PatroniClusterInfo;
  temporalCluster?: TemporalClusterInfo;
  /** The runbook roles on each PostgreSQL server (no secrets: references to secrets/). */
  roles?: { postgres?: SandboxRoles; patroni?: SandboxRoles; temporal?: SandboxRoles };
}

export interface StartStackOptions {
  dir: string;
  components?: StackComponent[];
  /** Web UI port; undefined runs the dev server headless. */
  uiPort?: number;
  /** Keep Temporal state in a SQLite file under dir, so a restarted server continues runs. */
  persist?: boolean;
  /** Leave the services running after this process exits (runbook stack up). */
  detach?: boolean;
  /** Address of the PostgreSQL primary; the DNS name db.<zone> points at it. */
  postgresHost?: string;
  /** Address of the replica (default 127.0.0.3). */
  replicaHost?: string;
  /** Addresses of the Temporal cluster's own PostgreSQL primary and replica (default 127.0.0.4, 127.0.0.5). */
  temporalPostgresHost?: string;
  temporalReplicaHost?: string;
  /** Address of the Patroni cluster's etcd and HAProxy (default 127.0.0.10; its nodes take the next three). */
  patroniHost?: string;
  /** Patroni's dynamic settings for the sandbox cluster (ttl, loop_wait, ...). */
  patroniSettings?: Parameters<typeof startPatroniCluster>[0]['settings'];
}

function writeSecret(dir: string, name: string, value: string): string {
  const secretsDir = join(dir, 'secrets');
  mkdirSync(secretsDir, { recursive: true, mode: 0o700 });
  const path = join(secretsDir, name);
  writeFileSync(path, `${value}\n`, { mode: 0o600 });
  return `file:secrets/${name}`;
}

/** A runbook config file describing the sandbox environment, with every secret in a file beside it. */
export function writeStackConfig(state: StackState): void {
  const env: Record<string, unknown> = {};
  const cluster = state.temporalCluster;
  const relative = (path: string) => (path.startsWith(`${state.dir}/`) ? path.slice(state.dir.length + 1) : path);
  if (cluster) {
    env.temporal = {
      address: cluster.address,
      namespace: cluster.namespace,
      tls: {
        serverCa: `file:${relative(cluster.pki.ca)}`,
        clientCert: `file:${relative(cluster.pki.worker.cert)}`,
        clientKey: `file:${relative(cluster.pki.worker.key)}`,
        serverName: cluster.serverName,
      },
      cluster: {
        persistenceDatabase: 'temporal',
        visibilityDatabase: cluster.visibilityDatabase,
        dynamicConfigFile: relative(cluster.dynamicConfigFile),
      },
    };
  } else if (state.temporal) env.temporal = { address: state.temporal.address, namespace: state.temporal.namespace };
  // Run pages and messages link to the dev server's UI when it has one (not with the cluster: its UI is not part of the stack).
  if (!cluster && state.temporal?.uiUrl) env.notifications = { temporalUiUrl: state.temporal.uiUrl };
  if (state.dns) {
    env.dns = {
      provider: 'rfc2136',
      server: `${state.dns.host}:${state.dns.port}`,
      zone: state.dns.zone,
      tsig: { name: state.dns.tsigKeyName, algorithm: state.dns.tsigAlgorithm, secret: writeSecret(state.dir, 'tsig.key', state.dns.tsigSecret) },
      records: { db: { name: 'db', ttl: 30 } },
    };
  }
  const temporalDatabase = cluster && {
    host: cluster.postgres.host,
    port: cluster.postgres.port,
    database: cluster.persistenceDatabase,
    ...roleConfig(state.roles?.temporal, { user: cluster.postgres.superuser, password: 'file:secrets/temporal-postgres-password' }),
    replica: { host: cluster.postgresReplica.host, port: cluster.postgresReplica.port },
  };
  const databases: Record<string, unknown> = {};
  if (temporalDatabase) databases.temporal = temporalDatabase;
  if (state.postgres) {
    databases.main = {
      // With a replica the runbooks follow the primary through the topology (after a failover it is the
      // other node); a single node has a fixed address.
      ...(state.postgresReplica ? {} : { host: state.postgres.host, port: state.postgres.port }),
      database: state.postgres.database,
      ...roleConfig(state.roles?.postgres, { user: state.postgres.superuser, password: 'file:secrets/postgres-password' }),
      ...(state.dns ? { dnsRecord: 'db' } : {}),
      ...(state.postgresReplica
        ? {
            topology: {
              driver: 'local',
              nodes: [
                { name: 'pg-a', host: state.postgres.host, port: state.postgres.port, dataDir: state.postgres.dataDir },
                { name: 'pg-b', host: state.postgresReplica.host, port: state.postgresReplica.port, dataDir: state.postgresReplica.dataDir },
              ],
            },
          }
        : {}),
    };
  }
  if (state.patroni) {
    const p = state.patroni;
    const control = (action: string, ...rest: string[]) => [p.control, action, '{member}', ...rest];
    databases[PATRONI_DATABASE_KEY] = {
      // HAProxy's write port: the service address clients use; it follows the leader by Patroni's health checks.
      host: p.haproxy.host,
      port: p.haproxy.writePort,
      database: p.database,
      ...roleConfig(state.roles?.patroni, { user: p.superuser, password: `file:secrets/${p.secrets.postgresPassword}` }),
      topology: {
        driver: 'patroni',
        members: p.nodes.map((n) => ({ name: n.name, host: n.host, port: n.pgPort, api: n.apiUrl })),
        // HTTPS with the sandbox CA's certificates and basic auth, as a production API should be.
        api: { username: p.apiUser, password: `file:secrets/${p.secrets.apiPassword}`, tls: { ca: `file:${p.ca}` } },
        // The sandbox's node control script stands in for systemctl over SSH on a real host.
        commands: { fault: control('kill'), recover: control('start'), keepAside: control('keep-aside', '{suffix}') },
        electionTimeout: '90s',
        rejoinTimeout: '45s',
      },
    };
  }
  // The pgBackRest database: the same primary, backed up physically with WAL archiving.
  if (state.postgres && state.pgbackrest && state.s3?.tls) databases.pitr = pitrDatabase(state);
  if (state.patroni?.pgbackrest && state.s3?.tls) databases[PATRONI_PITR_DATABASE_KEY] = patroniPitrDatabase(state);
  if (Object.keys(databases).length) env.databases = databases;
  if (state.s3) {
    env.backups = {
      bucket: SANDBOX_BUCKET,
      prefix: 'sandbox/',
      region: state.s3.region,
      endpoint: state.s3.endpoint,
      forcePathStyle: true,
      accessKeyId: writeSecret(state.dir, 's3-access-key-id', state.s3.accessKeyId),
      secretAccessKey: writeSecret(state.dir, 's3-secret-access-key', state.s3.secretAccessKey),
      retention: { keepLast: 7, maxAge: '30d' },
    };
  }
  if (state.kubernetes) env.kubernetes = { kubeconfig: state.kubernetes.kubeconfig, context: 'sandbox', namespace: 'default', deployments: [] };
  env.targets = { rpo: '15m', rto: '30m' };
  env.approvers = { default: [...SANDBOX_OPERATORS] };
  // Decisions are signed: the CLI signs as sandbox-operator by default (--key keys/sandbox-reviewer for the other);
  // the requester of a run may not approve it, so the demo's runs are approved by the reviewer.
  env.signing = { allowedSigners: 'file:keys/allowed_signers', key: 'keys/sandbox-operator', maxAge: '15m' };
  env.policies = { default: { fourEyes: true } };
  const schedules: Record<string, unknown>[] =
    state.postgres && state.s3
      ? [
          { id: 'sandbox-nightly-backup', runbook: 'backupDatabase', environment: 'sandbox', cron: '0 1 * * *', input: { database: 'main' } },
          { id: 'sandbox-nightly-restore-test', runbook: 'verifyBackup', environment: 'sandbox', cron: '0 3 * * *', input: { database: 'main', selection: { mode: 'random' } } },
          ...(state.pgbackrest
            ? [
                { id: 'sandbox-restore-canary', runbook: 'restoreCanary', environment: 'sandbox', cron: '*/5 * * * *', input: { database: 'pitr' } },
                { id: 'sandbox-weekly-full-backup', runbook: 'backupDatabase', environment: 'sandbox', cron: '30 1 * * 0', input: { database: 'pitr', type: 'full' } },
                { id: 'sandbox-nightly-incremental-backup', runbook: 'backupDatabase', environment: 'sandbox', cron: '30 1 * * 1-6', input: { database: 'pitr', type: 'incr' } },
                {
                  id: 'sandbox-nightly-pitr-restore-test',
                  runbook: 'verifyBackup',
                  environment: 'sandbox',
                  cron: '30 3 * * *',
                  input: { database: 'pitr', selection: { mode: 'randomTime', within: '7d' } },
                },
              ]
            : []),
          ...(state.postgresReplica && state.dns
            ? [
                {
                  id: 'sandbox-quarterly-dr-drill',
                  runbook: 'drDrill',
                  environment: 'sandbox',
                  calendar: { month: [1, 4, 7, 10], dayOfMonth: '1-7', dayOfWeek: 'TUE', hour: 10, minute: 0 },
                  timezone: 'UTC',
                  input: { database: 'main', mode: 'failover', approvalTimeoutSeconds: 14400 },
                },
              ]
            : []),
        ]
      : [];
  // Runbooks that act on the cluster's own database (its failover) must not run on that cluster: the
  // dev server, when it runs beside the cluster, is the small ops Temporal they run on.
  const ops =
    cluster && state.temporal && temporalDatabase
      ? {
          temporal: { address: state.temporal.address, namespace: state.temporal.namespace },
          databases: {
            temporal: {
              // Reached through the topology, as the sandbox's main database: after a failover drill the
              // primary is the other node (a fixed host would pin the runbooks to the old one).
              database: temporalDatabase.database,
              user: temporalDatabase.user,
              password: temporalDatabase.password,
              topology: {
                driver: 'local',
                nodes: [
                  { name: 'temporal-pg-a', host: cluster.postgres.host, port: cluster.postgres.port, dataDir: cluster.postgres.dataDir },
                  { name: 'temporal-pg-b', host: cluster.postgresReplica.host, port: cluster.postgresReplica.port, dataDir: cluster.postgresReplica.dataDir },
                ],
              },
            },
          },
          ...(env.backups ? { backups: { ...(env.backups as object), prefix: 'ops/' } } : {}),
          targets: { rpo: '15m', rto: '30m' },
          approvers: env.approvers,
          signing: env.signing,
          policies: env.policies,
        }
      : undefined;
  if (cluster && state.s3) {
    schedules.push(
      { id: 'sandbox-nightly-temporal-config-backup', runbook: 'backupTemporalConfig', environment: 'sandbox', cron: '0 2 * * *', input: {} },
      { id: 'sandbox-nightly-temporal-config-restore-test', runbook: 'verifyTemporalConfig', environment: 'sandbox', cron: '0 4 * * *', input: {} },
    );
  }
  const config = {
    version: 1,
    defaultEnvironment: 'sandbox',
    environments: { sandbox: env, ...(ops ? { ops } : {}) },
    // Freshness is read from Temporal every 5 s here (60 s by default), so the sandbox's /metrics follow runs at once.
    worker: { http: { host: '127.0.0.1', port: 9464 }, freshnessInterval: '5s' },
    schedules,
  };
  writeFileSync(
    state.configFile,
    `# Written by 'runbook stack up' for the local sandbox stack. Secrets are in secrets/ beside this file.\n${stringify(config)}`,
  );
}

/**
 * A database backed up with pgBackRest: the stanza its primary archives into, on the S3 server's TLS
 * endpoint verified against the sandbox CA, with the same S3 keys by reference. Backups follow
 * whichever of the nodes is primary.
 */
function pgbackrestDatabase(
  state: StackState,
  db: { host: string; port: number; database: string; user: string; password: string },
  b: SandboxPgBackRest,
  nodes: { name: string; host: string; port: number; dataDir: string; socketDir: string }[],
): Record<string, unknown> {
  return {
    ...db,
    backups: {
      method: 'pgbackrest',
      pgbackrest: {
        stanza: b.stanza,
        repo: {
          bucket: b.bucket,
          path: b.repoPath,
          endpoint: `https://${b.endpoint}:${b.port}`,
          region: state.s3!.region,
          uriStyle: 'path',
          caFile: b.caFile,
          accessKeyId: 'file:secrets/s3-access-key-id',
          secretAccessKey: 'file:secrets/s3-secret-access-key',
        },
        nodes,
        retention: { full: 2 },
      },
    },
    // Backups are nightly; the RPO (targets.rpo) is met by WAL archiving and checked as the archive's age.
    restoreTest: { maxBackupAge: '26h', randomWindow: '7d' },
  };
}

/** The sandbox primary again, backed up with pgBackRest (stanza app). */
function pitrDatabase(state: StackState): Record<string, unknown> {
  const pg = state.postgres!;
  const node = (name: string, info: PostgresClusterInfo) => ({ name, host: info.host, port: info.port, dataDir: info.dataDir, socketDir: info.socketDir });
  return pgbackrestDatabase(
    state,
    { host: pg.host, port: pg.port, database: pg.database, ...roleConfig(state.roles?.postgres, { user: pg.superuser, password: 'file:secrets/postgres-password' }) },
    state.pgbackrest!,
    [node('pg-a', pg), ...(state.postgresReplica ? [node('pg-b', state.postgresReplica)] : [])],
  );
}

/**
 * The Patroni cluster's database again, backed up with pgBackRest (stanza ha): reached through
 * HAProxy's write port, backed up on whichever member leads, its WAL archived by the leader.
 */
function patroniPitrDatabase(state: StackState): Record<string, unknown> {
  const p = state.patroni!;
  return pgbackrestDatabase(
    state,
    { host: p.haproxy.host, port: p.haproxy.writePort, database: p.database, ...roleConfig(state.roles?.patroni, { user: p.superuser, password: `file:secrets/${p.secrets.postgresPassword}` }) },
    p.pgbackrest!,
    p.nodes.map((n) => ({ name: n.name, host: n.host, port: n.pgPort, dataDir: n.dataDir, socketDir: join(n.dir, 'socket') })),
  );
}

/**
 * A database's login and runbook roles in the stack's config: the sandbox's roles where they were
 * created (a stack started by this code), the superuser only for a stack state written before them.
 */
function roleConfig(roles: SandboxRoles | undefined, superuser: { user: string; password: string }): { user: string; password: string; roles?: SandboxRoles['roles'] } {
  return roles ? { ...roles.login, roles: roles.roles } : superuser;
}

const stateFile = (dir: string) => join(dir, 'state.json');

/** The state file holds pids and endpoints for stop/status; secrets stay only in secrets/. */
function writeStateFile(state: StackState): void {
  const redacted: StackState = {
    ...state,
    s3: state.s3 && { ...state.s3, accessKeyId: '(see secrets/)', secretAccessKey: '(see secrets/)' },
    dns: state.dns && { ...state.dns, tsigSecret: '(see secrets/tsig.key)' },
  };
  writeFileSync(stateFile(state.dir), JSON.stringify(redacted, null, 2), { mode: 0o600 });
}

export function readStackState(dir: string): StackState | undefined {
  const file = stateFile(dir);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as StackState;
}

/**
 * Brings up the local stack as real processes. If any component fails to start, the ones already
 * started are stopped again before the error is rethrown, so a failed start leaves nothing behind.
 */
export async function startStack(opts: StartStackOptions): Promise<StackState> {
  const dir = resolve(opts.dir);
  const components = opts.components ?? DEFAULT_COMPONENTS;
  const existing = readStackState(dir);
  if (existing && stackPids(existing).some(groupAlive)) {
    throw new Error(`a stack is already running from ${dir} (see 'runbook stack status'); stop it with 'runbook stack down' first`);
  }
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  // The PostgreSQL cluster runs as the postgres user, which must be able to enter this directory.
  chmodSync(dir, 0o755);
  const state: StackState = { dir, startedAt: new Date().toISOString(), configFile: join(dir, 'runbook.yaml') };
  const pgHost = opts.postgresHost ?? '127.0.0.2';
  if (components.includes('temporal-cluster') && !components.includes('s3')) {
    throw new Error('the temporal-cluster component archives to the sandbox S3 server: add s3 to the components');
  }
  const pgbackrest = components.includes('pgbackrest');
  if (pgbackrest && !((components.includes('postgres') || components.includes('patroni')) && components.includes('s3'))) throw new Error('the pgbackrest component needs s3, and postgres or the Patroni cluster (--with-patroni): add them to --only, or leave pgbackrest out');
  // The sandbox CA issues the S3 TLS endpoint's certificate (pgBackRest verifies it).
  const s3Started = components.includes('s3')
    ? (pgbackrest ? createCa(join(dir, 'tls'), 'runbook-sandbox-ca') : Promise.resolve(undefined))
        .then((tlsCa) => startS3Server({ dir, buckets: [SANDBOX_BUCKET, ...(pgbackrest ? [SANDBOX_PGBACKREST_BUCKET] : [])], tlsCa }))
        .then((s) => (state.s3 = s))
    : undefined;
  // Independent services start side by side; the machine has two cores and they mostly wait on I/O.
  // allSettled, not all: every start must have finished (and registered itself in state) before a
  // failure is cleaned up, or a service still starting would be left behind.
  const postgresStarted: Promise<unknown> = components.includes('postgres')
    ? startSandboxPostgres(dir, pgHost, async (pgBase, dataDir) => {
        if (!pgbackrest) return;
        // Archiving is on from the first start (archive_mode needs a restart), into a repository that is ready.
        const s3 = await s3Started!;
        state.pgbackrest = writeHostConfig(join(pgBase, 'pgbackrest'), s3);
        enableArchiving(dataDir, state.pgbackrest);
      }).then(async (p) => {
        state.postgres = p;
        if (components.includes('replica')) {
          const password = readFileSync(join(dir, 'secrets', 'postgres-password'), 'utf8').trim();
          state.postgresReplica = await startReplica(p, { dir: join(dirname(dirname(p.dataDir)), 'postgres-replica'), host: opts.replicaHost ?? '127.0.0.3', password });
        }
        if (state.pgbackrest) {
          // After a failover without switch-back the primary is the other node: the stanza is created (or checked) there.
          const host = await currentPrimaryHost(state);
          await createStanza(state.pgbackrest, [state.postgres, state.postgresReplica].find((n) => n?.host === host) ?? p);
        }
      })
    : Promise.resolve();
  const results = await Promise.allSettled([
    components.includes('temporal')
      ? startTemporalDevServer({ dir, uiPort: opts.uiPort, dbFile: opts.persist ? join(dir, 'temporal.sqlite') : undefined }).then((t) => (state.temporal = t))
      : undefined,
    s3Started,
    components.includes('temporal-cluster')
      ? s3Started!.then(() =>
          startTemporalCluster({
            dir: join(dir, 'temporal-cluster'),
            s3: state.s3!,
            postgresHost: opts.temporalPostgresHost,
            replicaHost: opts.temporalReplicaHost,
            postgresPassword: stackSecret(dir, 'temporal-postgres-password'),
          }).then((c) => (state.temporalCluster = c)),
        )
      : undefined,
    components.includes('kubernetes') ? startKubernetes({ dir }).then((k) => (state.kubernetes = k)) : undefined,
    components.includes('patroni')
      ? // With pgbackrest the cluster archives WAL into a stanza of its own, so it waits for the S3 server.
        (pgbackrest ? s3Started! : Promise.resolve(undefined))
          .then((s3) => startPatroniCluster({ dir, secretsDir: join(dir, 'secrets'), host: opts.patroniHost, settings: opts.patroniSettings, archiveTo: s3 }))
          .then((p) => (state.patroni = p))
      : undefined,
    postgresStarted,
    // The service name points at whichever node is primary now: after a failover drill without
    // switch-back and a restart, that is the former replica.
    components.includes('dns')
      ? postgresStarted
          .catch(() => undefined)
          .then(async () => startDnsServer({ dir, zone: SANDBOX_ZONE, records: { db: (await currentPrimaryHost(state)) ?? pgHost } }))
          .then((d) => (state.dns = d))
      : undefined,
  ]);
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) {
    await stopStack(state).catch(() => undefined);
    throw failure.reason;
  }
  try {
    state.roles = await createRunbookRoles(state);
  } catch (err) {
    await stopStack(state).catch(() => undefined);
    throw err;
  }
  await writeSandboxKeys(dir);
  writeStackConfig(state);
  writeStateFile(state);
  if (opts.detach) {
    for (const pid of stackPids(state)) disown(pid);
    if (state.patroni) disownPatroni(state.patroni);
  }
  return state;
}

/**
 * The runbook roles on every PostgreSQL server of the stack, so its config connects as no superuser:
 * the sandbox database owned by app_owner, Temporal's own database read by the checks and backup roles.
 */
async function createRunbookRoles(state: StackState): Promise<StackState['roles']> {
  const secret = (name: string) => stackSecret(state.dir, name);
  const roles: NonNullable<StackState['roles']> = {};
  if (state.postgres) {
    const host = (await currentPrimaryHost(state)) ?? state.postgres.host;
    const password = readFileSync(join(state.dir, 'secrets', 'postgres-password'), 'utf8').trim();
    roles.postgres = await ensureSandboxRoles({ server: { host, port: state.postgres.port, user: state.postgres.superuser, password }, database: state.postgres.database, owner: true, secret });
  }
  if (state.patroni) {
    const p = state.patroni;
    const password = readFileSync(join(state.dir, 'secrets', p.secrets.postgresPassword), 'utf8').trim();
    roles.patroni = await ensureSandboxRoles({ server: { host: p.haproxy.host, port: p.haproxy.writePort, user: p.superuser, password }, database: p.database, owner: true, secret });
  }
  if (state.temporalCluster) {
    const c = state.temporalCluster;
    const password = readFileSync(join(state.dir, 'secrets', 'temporal-postgres-password'), 'utf8').trim();
    const server = { host: c.postgres.host, port: c.postgres.port, user: c.postgres.superuser, password };
    // The audit reads Temporal's schema version and cluster metadata: SELECT on those tables, nothing else.
    roles.temporal = await ensureSandboxRoles({ server, database: c.persistenceDatabase, owner: false, secret, extra: [temporalChecksGrant(SANDBOX_ROLES.checks, ['schema_version', 'cluster_metadata_info'])] });
    await ensureSandboxRoles({ server, database: c.visibilityDatabase, owner: false, secret, extra: [temporalChecksGrant(SANDBOX_ROLES.checks, ['schema_version'])] });
  }
  return roles;
}

/** A generated secret kept in secrets/ (the same one again when the stack is restarted from dir). */
function stackSecret(dir: string, name: string): string {
  const file = join(dir, 'secrets', name);
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const value = randomBytes(18).toString('base64url');
  writeSecret(dir, name, value);
  return value;
}

/** The address of the sandbox node that is primary now (not in recovery), if any answers. */
async function currentPrimaryHost(state: StackState): Promise<string | undefined> {
  if (!state.postgres) return undefined;
  const password = readFileSync(join(state.dir, 'secrets', 'postgres-password'), 'utf8').trim();
  for (const n of [state.postgres, state.postgresReplica]) {
    if (!n) continue;
    const c = new PgClient({ host: n.host, port: n.port, user: n.superuser, password, database: 'postgres', connectionTimeoutMillis: 5_000 });
    c.on('error', () => undefined);
    try {
      await c.connect();
      if (!(await c.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec')).rows[0].rec) return n.host;
    } catch {
      /* try the other node */
    } finally {
      await c.end().catch(() => undefined);
    }
  }
  return undefined;
}

async function startSandboxPostgres(
  dir: string,
  host: string,
  beforeStart: (pgBase: string, dataDir: string) => Promise<void>,
): Promise<PostgresClusterInfo & { database: string }> {
  const pgBase = reachableClusterDir(dir);
  const pgDir = join(pgBase, 'postgres-primary');
  const password = stackSecret(dir, 'postgres-password');
  const { dataDir, socketDir } = await initCluster({ dir: pgDir, password });
  await beforeStart(pgBase, dataDir);
  const info = await startPostgres({ dir: pgDir, host, password, dataDir, socketDir });
  await ensureDatabase(info, SANDBOX_DATABASE);
  return { ...info, database: SANDBOX_DATABASE };
}

export function stackPids(state: StackState): number[] {
  return [
    state.temporal?.pid,
    state.postgres?.pid,
    state.postgresReplica?.pid,
    state.s3?.pid,
    state.s3?.tls?.pid,
    state.dns?.pid,
    ...(state.kubernetes ? kubernetesPids(state.kubernetes) : []),
    ...(state.patroni ? patroniPids(state.patroni) : []),
    ...(state.temporalCluster ? temporalClusterPids(state.temporalCluster) : []),
  ].filter(
    (p): p is number => p !== undefined,
  );
}

/** Stops every component that is running; safe to call twice. */
export async function stopStack(state: StackState): Promise<void> {
  // With WAL archiving on, a stopping primary archives its last segment into S3: S3 goes after it.
  const databases = Promise.all([state.postgres && stopPostgres(state.postgres), state.postgresReplica && stopPostgres(state.postgresReplica)]);
  await Promise.all([
    state.temporal && stopTemporalDevServer(state.temporal.pid),
    databases,
    state.s3 && databases.then(() => stopS3Server(state.s3!.pid, state.s3!.tls)),
    state.dns && stopDnsServer(state.dns.pid),
    state.kubernetes && stopKubernetes(state.kubernetes),
    state.patroni && stopPatroniCluster(state.patroni),
    state.temporalCluster && stopTemporalCluster(state.temporalCluster),
  ]);
  if (existsSync(stateFile(state.dir))) rmSync(stateFile(state.dir));
  // A cluster placed outside the stack directory (see reachableClusterDir) is removed with the stack.
  const pgBase = state.postgres && dirname(dirname(state.postgres.dataDir));
  for (const base of [pgBase, state.patroni && dirname(state.patroni.dir)]) {
    if (base && !base.startsWith(state.dir) && basename(base).startsWith('runbook-pg-')) rmSync(base, { recursive: true, force: true });
  }
}

export interface ComponentStatus {
  component: StackComponent | string;
  pid: number;
  running: boolean;
  endpoint: string;
}

export async function stackStatus(state: StackState): Promise<ComponentStatus[]> {
  const out: ComponentStatus[] = [];
  if (state.temporal) {
    const running = groupAlive(state.temporal.pid) && (await temporalAnswers(state.temporal.address));
    out.push({ component: 'temporal', pid: state.temporal.pid, running, endpoint: state.temporal.address });
  }
  if (state.postgres) out.push({ component: 'postgres', pid: state.postgres.pid, running: nodeRunning(state.postgres.dataDir), endpoint: `${state.postgres.host}:${state.postgres.port}` });
  if (state.postgresReplica) {
    out.push({ component: 'replica', pid: state.postgresReplica.pid, running: nodeRunning(state.postgresReplica.dataDir), endpoint: `${state.postgresReplica.host}:${state.postgresReplica.port}` });
  }
  if (state.s3) out.push({ component: 's3', pid: state.s3.pid, running: groupAlive(state.s3.pid) && (!state.s3.tls || groupAlive(state.s3.tls.pid)), endpoint: state.s3.tls ? `${state.s3.endpoint} ${state.s3.tls.endpoint}` : state.s3.endpoint });
  if (state.dns) out.push({ component: 'dns', pid: state.dns.pid, running: groupAlive(state.dns.pid), endpoint: `${state.dns.host}:${state.dns.port}` });
  if (state.kubernetes) {
    const k = state.kubernetes;
    out.push({ component: 'kubernetes', pid: k.pids.apiserver, running: kubernetesPids(k).every(groupAlive) && (await kubernetesAnswers(k)), endpoint: k.server });
  }
  // Each Patroni part separately: a drill kills a node on purpose, and status says which one is down.
  if (state.patroni) for (const p of await patroniStatus(state.patroni)) out.push(p);
  if (state.temporalCluster) {
    const c = state.temporalCluster;
    // Whole when every process lives and the ring, asked through the load balancer, has every one of them.
    const ring = await describeTemporalCluster(c.address, { ca: c.pki.ca, cert: c.pki.admin }).catch(() => undefined);
    const members = new Set(Object.values(ring?.rings ?? {}).flat());
    const running = temporalClusterPids(c).every(groupAlive) && c.processes.every((p) => members.has(p.grpcAddress));
    out.push({ component: 'temporal-cluster', pid: c.haproxy.pid, running, endpoint: c.address });
  }
  return out;
}
