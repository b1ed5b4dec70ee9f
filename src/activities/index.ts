import type { LoadedConfig } from '../config/load';
import type { ReportLinks } from '../reports/html';
import { credentialFor } from '../config/pgRoles';
import { selectEnvironment } from '../config/load';
import { readSecret } from '../config/secrets';
import { BackupTarget, createBackupActivities } from './backups';
import { pgServer, primaryLocator } from './primary';
import { failure } from './errors';
import { createS3Client, ObjectStore } from './s3';
import { createSmokeActivities } from './smoke';
import { Route53Client } from '@aws-sdk/client-route-53';
import type { EnvironmentConfig } from '../config/schema';
import { DnsProvider, Rfc2136Provider, Route53Provider } from './dns';
import { createDrillActivities, DrillTarget, ServiceEndpoint } from './topology';
import { createLegacyDrillActivities, DrillTarget as LegacyDrillTarget, localDriver, TopologyNode } from './topologyLegacy';
import { createTopologyDriver, electionTimeoutMs, topologyMembers } from '../topology';
import { tmpdir } from 'node:os';
import { Client, Connection } from '@temporalio/client';
import { createTargetActivities } from './targets';
import { dataConverterFor } from '../codec';
import { temporalConnectionSettings } from '../config/connection';
import { createVisibilityActivities } from './visibility';
import { createAuditActivities } from './audit';
import { createCheckActivities } from './checks';
import { createGoLiveActivities } from './golive';
import { createKubernetesActivities, deploymentGuard, KubernetesTarget } from './kubernetes';
import { lazyKubeApi } from './kube';
import { createAutoscalerActivities } from './autoscaler';
import { createJobActivities } from './jobs';
import { createCanaryActivities } from './canaryAnalysis';
import { createDatabaseRestoreActivities } from './databaseRestore';
import { createReleaseActivities } from './release';
import { isAbsolute, join } from 'node:path';
import { createLoadTestActivities } from './loadTest';
import { createPhysicalBackupActivities, PhysicalNode, PhysicalTarget } from './pgbackrest';
import { findPrimary } from './pgbackrestContext';
import { createScratchHostActivities } from './scratchHost';
import { createIdentityActivities } from './identity';
import { createNotifyActivities } from './notify';
import { createEvidenceActivities } from './evidence';
import { createTemporalConfigActivities } from './temporalConfig';

function backupActivitiesFor(loaded: LoadedConfig, environment: string, store: ObjectStore | undefined) {
  const { env } = selectEnvironment(loaded, environment);
  if (!env.backups || !store) {
    // Registered anyway, so a backup runbook started for this environment fails with a reason, not "activity not registered".
    const refuse = async (): Promise<never> => {
      throw failure('InvalidInput', `environment ${environment} has no backups: section in ${loaded.file}; add a bucket to back up to`);
    };
    const stub = createBackupActivities({ environment, store: undefined as never, prefix: '', databases: {}, retention: {} });
    return Object.fromEntries(Object.keys(stub).map((k) => [k, refuse])) as unknown as typeof stub;
  }
  const databases: Record<string, BackupTarget> = {};
  for (const [name, db] of Object.entries(env.databases)) {
    const rt = db.restoreTest;
    // Without a restore server, a dump restore test starts a scratch instance; restoring onto the source is an explicit choice.
    const into = rt.into ?? (rt.host !== undefined ? 'restoreServer' : 'scratchInstance');
    const nodes = physicalNodes(db);
    // Backups and the restore test's reads of the source connect as the backup role; restores into a server as the restore user or the owner.
    const backup = credentialFor(db, 'backup');
    const server = nodes ? pgServer(db.host ?? nodes[0].host, db.host ? db.port : nodes[0].port, backup.user, backup.password, loaded.baseDir) : undefined;
    databases[name] = {
      // A pgBackRest database's backups and preflight go to whichever node is primary now; others through the service address or the topology driver.
      server: nodes && server ? async () => ({ ...server, ...(await findPrimary(server, db.database, nodes)).node, password: server.password }) : primaryLocator(loaded.baseDir, db, backup.user, backup.password),
      user: backup.user,
      database: db.database,
      method: db.backups.method,
      globals: db.backups.globals,
      restore: {
        server: rt.host ? pgServer(rt.host, rt.port ?? db.port, rt.user ?? db.user, rt.password ?? db.password, loaded.baseDir) : primaryLocator(loaded.baseDir, db, rt.user ?? db.user, rt.password ?? db.password),
        jobs: rt.jobs,
        randomWindowMs: rt.randomWindow,
        assertions: rt.assertions,
        maxBackupAgeMs: rt.maxBackupAge ?? env.targets.rpo,
        into,
        scratchDir: rt.scratchDir,
        sharedBuffers: rt.scratchSharedBuffers,
      },
      temporalSchema: env.temporal.cluster?.persistenceDatabase === name,
    };
  }
  return createBackupActivities({
    environment,
    store,
    prefix: env.backups.prefix,
    databases,
    retention: { keepLast: env.backups.retention.keepLast, maxAgeMs: env.backups.retention.maxAge },
    multipart: { maxParts: env.backups.multipart.maxParts },
    links: reportLinks(env),
  });
}

/** A pgBackRest database's nodes: its own list, else the topology's, else the database's host. */
function physicalNodes(db: EnvironmentConfig['databases'][string]): PhysicalNode[] | undefined {
  const b = db.backups.pgbackrest;
  if (db.backups.method !== 'pgbackrest' || !b) return undefined;
  const topologyNodes = db.topology?.driver === 'local' ? db.topology.nodes : db.topology?.driver === 'patroni' ? db.topology.members : undefined;
  const list: { host: string; port: number; name?: string; dataDir?: string; socketDir?: string }[] = b.nodes ?? topologyNodes ?? (db.host ? [{ host: db.host, port: db.port }] : []);
  return list.map((n, i) => ({
    name: n.name || (list.length === 1 ? 'primary' : `node-${i + 1}`),
    host: n.host,
    port: n.port,
    dataDir: n.dataDir || b.dataDir!,
    socketDir: n.socketDir || b.socketDir,
  }));
}

const resolvePath = (p: string, baseDir: string) => (isAbsolute(p) ? p : join(baseDir, p));

/** The pgBackRest databases of an environment, each closing over its secret references (read at each use). */
function physicalBackupActivitiesFor(loaded: LoadedConfig, environment: string, store: ObjectStore | undefined) {
  const { env } = selectEnvironment(loaded, environment);
  const databases: Record<string, PhysicalTarget> = {};
  for (const [name, db] of Object.entries(env.databases)) {
    const b = db.backups.pgbackrest;
    if (db.backups.method !== 'pgbackrest' || !b) continue;
    const url = new URL(b.repo.endpoint);
    const nodes = physicalNodes(db)!;
    const rt = db.restoreTest;
    const repo = b.repo;
    const backup = credentialFor(db, 'backup');
    const canary = credentialFor(db, 'canary');
    databases[name] = {
      database: db.database,
      server: pgServer(db.host ?? nodes[0].host, db.host ? db.port : nodes[0].port, backup.user, backup.password, loaded.baseDir),
      canary: pgServer('', 0, canary.user, canary.password, loaded.baseDir),
      stanza: b.stanza,
      repo: () => ({
        bucket: repo.bucket,
        path: repo.path,
        endpoint: url.hostname,
        port: Number(url.port || 443),
        region: repo.region,
        uriStyle: repo.uriStyle,
        caFile: repo.caFile && resolvePath(repo.caFile, loaded.baseDir),
        accessKeyId: repo.accessKeyId && readSecret(repo.accessKeyId, loaded.baseDir),
        secretAccessKey: repo.secretAccessKey && readSecret(repo.secretAccessKey, loaded.baseDir),
        cipherPass: repo.cipherPass && readSecret(repo.cipherPass, loaded.baseDir),
      }),
      access: b.access,
      nodes,
      dbUser: b.dbUser,
      tls: b.tls && { port: b.tls.port, caFile: resolvePath(b.tls.caFile, loaded.baseDir), certFile: resolvePath(b.tls.certFile, loaded.baseDir), keyFile: resolvePath(b.tls.keyFile, loaded.baseDir) },
      processMax: b.processMax,
      compressType: b.compressType,
      bundle: b.bundle,
      retention: { full: b.retention.full, diff: b.retention.diff },
      restore: {
        scratchDir: rt.scratchDir,
        sharedBuffers: rt.scratchSharedBuffers,
        assertions: rt.assertions,
        maxBackupAgeMs: rt.maxBackupAge ?? env.targets.rpo,
        maxArchiveAgeMs: rt.maxArchiveAge ?? env.targets.rpo,
        maxArchiveBacklog: rt.maxArchiveBacklog,
        verifyRepository: rt.verifyRepository,
        randomWindowMs: rt.randomWindow,
        canaryKeepMs: rt.canary.keep,
      },
    };
  }
  return createPhysicalBackupActivities({ environment, databases, reports: env.backups && store ? { store, prefix: env.backups.prefix, links: reportLinks(env) } : undefined });
}

function dnsProviderFor(loaded: LoadedConfig, dns: NonNullable<EnvironmentConfig['dns']>): DnsProvider {
  if (dns.provider === 'route53') {
    const r = dns.route53 ?? { region: 'us-east-1' };
    const credentials =
      r.accessKeyId && r.secretAccessKey ? { accessKeyId: readSecret(r.accessKeyId, loaded.baseDir), secretAccessKey: readSecret(r.secretAccessKey, loaded.baseDir) } : undefined;
    return new Route53Provider(new Route53Client({ region: r.region, endpoint: r.endpoint, credentials }), dns.zone.replace(/\.$/, ''), r.hostedZoneId);
  }
  const [host, port] = dns.server!.split(':');
  const tsig = dns.tsig;
  return new Rfc2136Provider({ host, port: Number(port) }, dns.zone.replace(/\.$/, ''), tsig && { name: tsig.name, algorithm: tsig.algorithm, secret: () => readSecret(tsig.secret, loaded.baseDir) });
}

function drillActivitiesFor(loaded: LoadedConfig, environment: string, store: ObjectStore | undefined) {
  const { env } = selectEnvironment(loaded, environment);
  const targets: Record<string, DrillTarget> = {};
  const legacy: Record<string, LegacyDrillTarget> = {};
  const zone = env.dns?.zone.replace(/\.$/, '');
  for (const [name, db] of Object.entries(env.databases)) {
    const driver = createTopologyDriver(db, loaded.baseDir);
    if (!db.topology || !driver) continue;
    const record = db.dnsRecord && env.dns ? env.dns.records[db.dnsRecord] : undefined;
    const serviceName = record && zone ? { fqdn: record.name.includes('.') ? record.name.replace(/\.$/, '') : `${record.name}.${zone}`, ttl: record.ttl } : undefined;
    // The service endpoint clients use: a DNS name the drill switches, else the configured host
    // (HAProxy or a VIP that follows the leader by itself), else the driver's own view.
    const endpoint: ServiceEndpoint = serviceName ? { kind: 'dns', ...serviceName } : db.host ? { kind: 'proxy', host: db.host, port: db.port } : { kind: 'driver' };
    const drill = credentialFor(db, 'drill');
    const credentials = pgServer('', 0, drill.user, drill.password, loaded.baseDir);
    targets[name] = { credentials, database: db.database, driver, members: topologyMembers(db.topology), endpoint, healthChecks: db.healthChecks, electionTimeoutMs: electionTimeoutMs(db.topology) };
    if (db.topology.driver === 'local') {
      legacy[name] = { credentials: pgServer(db.host ?? db.topology.nodes[0].host, db.port, drill.user, drill.password, loaded.baseDir), database: db.database, nodes: db.topology.nodes as [TopologyNode, TopologyNode], serviceName, healthChecks: db.healthChecks };
    }
  }
  const common = {
    environment,
    dns: env.dns ? dnsProviderFor(loaded, env.dns) : undefined,
    approvers: env.approvers.drDrill ?? env.approvers.default ?? [],
    rpoMs: env.targets.rpo,
    rtoMs: env.targets.rto,
    reports: env.backups && store ? { store, prefix: env.backups.prefix, links: reportLinks(env) } : undefined,
  };
  return {
    // Drills started before the topology drivers finish on the activities they were written against.
    ...createLegacyDrillActivities({ ...common, targets: legacy, driver: localDriver }),
    ...createDrillActivities({ ...common, targets, ackLogDir: loaded.config.worker.drillWriteLogDir ?? join(tmpdir(), 'runbook-drill-writes') }),
  };
}

/** Where run pages link their runs: the environment's Temporal UI (notifications.temporalUiUrl) and namespace. */
function reportLinks(env: EnvironmentConfig): ReportLinks {
  return { temporalUi: env.notifications?.temporalUiUrl, namespace: env.temporal.namespace };
}

export function kubernetesTargetFor(loaded: LoadedConfig, env: EnvironmentConfig): KubernetesTarget | undefined {
  const k = env.kubernetes;
  if (!k) return undefined;
  return {
    kubeconfig: k.kubeconfig && (isAbsolute(k.kubeconfig) ? k.kubeconfig : join(loaded.baseDir, k.kubeconfig)),
    context: k.context,
    namespace: k.namespace,
    deployments: k.deployments,
    approvers: env.approvers.rollout ?? env.approvers.default ?? [],
    gate: { timeoutMs: k.rollout.gateTimeout, onTimeout: k.rollout.onGateTimeout, remindEveryMs: k.rollout.remindEvery },
    autoscalerCheckEveryMs: k.rollout.autoscalerCheckEvery,
    gitops: { onManaged: k.gitops.onManaged },
  };
}

/** Kubernetes activities of one environment: Deployments, autoscalers, Jobs and canary comparisons share one set of clients. */
function kubernetesActivitiesFor(loaded: LoadedConfig, environment: string, env: EnvironmentConfig) {
  const target = kubernetesTargetFor(loaded, env);
  const api = lazyKubeApi(environment, target);
  const allowed = deploymentGuard(api, target);
  return {
    ...createKubernetesActivities({ environment, target, api }),
    ...createAutoscalerActivities({ api, allowed }),
    ...createJobActivities({ api, allowed }),
    ...createCanaryActivities({ api, allowed }),
  };
}

/** A Temporal client for visibility queries, connected on first use and kept until close(). */
export function lazyClient(loaded: LoadedConfig, environment: string): (() => Promise<Client>) & { close(): Promise<void> } {
  let client: Promise<Client> | undefined;
  const get = () => {
    client ??= (async () => {
      const { env } = selectEnvironment(loaded, environment);
      const s = temporalConnectionSettings(loaded, env.temporal);
      const connection = await Connection.connect({ address: s.address, tls: s.tls, apiKey: s.apiKey, connectTimeout: 10_000 });
      // Listing decodes memos (a schedule's config hash), which are encrypted like every payload.
      return new Client({ connection, namespace: s.namespace, dataConverter: dataConverterFor(loaded, environment, env.temporal) });
    })().catch((err) => {
      client = undefined;
      throw err;
    });
    return client;
  };
  const close = async () => {
    const c = client;
    client = undefined;
    if (c) await c.then((x) => x.connection.close(), () => undefined);
  };
  return Object.assign(get, { close });
}

function temporalConfigActivitiesFor(loaded: LoadedConfig, environment: string, store: ObjectStore | undefined) {
  const { env } = selectEnvironment(loaded, environment);
  const cluster = env.temporal.cluster;
  const own = cluster && env.databases[cluster.persistenceDatabase];
  return createTemporalConfigActivities({
    environment,
    settings: () => temporalConnectionSettings(loaded, env.temporal),
    cluster,
    // Its primary found as every runbook finds it: the service address, else the topology driver.
    // Reads Temporal's schema version (a table): the backup role reads every table and writes none.
    persistence: own && { server: primaryLocator(loaded.baseDir, own, credentialFor(own, 'backup').user, credentialFor(own, 'backup').password), database: own.database },
    baseDir: loaded.baseDir,
    backups: env.backups && store ? { store, prefix: env.backups.prefix } : undefined,
  });
}

/**
 * All activities of one environment, built from config, each module closing over its own clients. The
 * Temporal client the activities read with is the caller's when given (the worker closes it when the
 * worker generation using it ends, so a rotated certificate leaves no connection on the old one).
 */
export function createActivities(loaded: LoadedConfig, environment: string, temporalClient?: () => Promise<Client>) {
  // One S3 client per environment: backups and drill reports share the bucket.
  const { env } = selectEnvironment(loaded, environment);
  const store = env.backups ? new ObjectStore(createS3Client(loaded, env.backups), env.backups.bucket) : undefined;
  const temporal = temporalClient ?? lazyClient(loaded, environment);
  const physical = physicalBackupActivitiesFor(loaded, environment, store);
  return {
    ...createSmokeActivities(environment),
    ...createIdentityActivities({ loaded, environment }),
    ...createNotifyActivities({ loaded, environment }),
    ...createEvidenceActivities({ environment, reports: env.backups && store ? { store, prefix: env.backups.prefix } : undefined, retentionMs: env.backups?.evidenceRetention }),
    ...backupActivitiesFor(loaded, environment, store),
    ...physical,
    ...createScratchHostActivities({ batchQueue: env.temporal.taskQueues.batch }),
    ...drillActivitiesFor(loaded, environment, store),
    ...createVisibilityActivities({ environment, client: temporal, deployments: env.kubernetes?.deployments }),
    ...createTargetActivities({ loaded, environment, client: temporal }),
    ...createCheckActivities({
      environment,
      env,
      baseDir: loaded.baseDir,
      temporal,
      temporalSettings: () => temporalConnectionSettings(loaded, env.temporal),
      store,
      physicalRepository: (database) => physical.inspectPhysicalRepository({ database }),
    }),
    ...createAuditActivities({
      environment,
      approvers: env.approvers.readinessAudit ?? env.approvers.default ?? [],
      rpoMs: env.targets.rpo,
      reports: env.backups && store ? { store, prefix: env.backups.prefix, links: reportLinks(env) } : undefined,
    }),
    ...kubernetesActivitiesFor(loaded, environment, env),
    ...createReleaseActivities({ loaded, environment, reports: env.backups && store ? { store, prefix: env.backups.prefix, links: reportLinks(env) } : undefined }),
    ...createDatabaseRestoreActivities({
      environment,
      store,
      prefix: env.backups?.prefix ?? '',
      databases: Object.fromEntries(Object.entries(env.databases).map(([name, db]) => [name, { server: primaryLocator(loaded.baseDir, db, db.user, db.password), database: db.database }])),
    }),
    ...createGoLiveActivities({
      environment,
      approvers: env.approvers.goLive ?? env.approvers.default ?? [],
      taskQueues: env.temporal.taskQueues,
      reports: env.backups && store ? { store, prefix: env.backups.prefix, links: reportLinks(env) } : undefined,
    }),
    ...temporalConfigActivitiesFor(loaded, environment, store),
    ...createLoadTestActivities({ environment, config: env.loadTest, production: env.production, batchQueue: env.temporal.taskQueues.batch, settings: () => temporalConnectionSettings(loaded, env.temporal), dataConverter: dataConverterFor(loaded, environment, env.temporal) }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
