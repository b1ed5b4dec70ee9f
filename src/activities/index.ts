import type { LoadedConfig } from '../config/load';
import { selectEnvironment } from '../config/load';
import { readSecret, SecretRef } from '../config/secrets';
import { BackupTarget, createBackupActivities } from './backups';
import { failure } from './errors';
import type { PgServer } from './pg';
import { createS3Client, ObjectStore } from './s3';
import { createSmokeActivities } from './smoke';
import { Route53Client } from '@aws-sdk/client-route-53';
import type { EnvironmentConfig } from '../config/schema';
import { DnsProvider, Rfc2136Provider, Route53Provider } from './dns';
import { createDrillActivities, DrillTarget, localDriver, TopologyNode } from './topology';
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
import { createCanaryActivities } from './canary';
import { createDatabaseRestoreActivities } from './databaseRestore';
import { createReleaseActivities } from './release';
import { isAbsolute, join } from 'node:path';
import { createLoadTestActivities } from './loadTest';
import { createIdentityActivities } from './identity';
import { createNotifyActivities } from './notify';
import { createEvidenceActivities } from './evidence';

/** A server whose password is read from its reference at each use, so a rotated secret is picked up. */
function pgServer(host: string, port: number, user: string, password: SecretRef, baseDir: string): PgServer {
  return {
    host,
    port,
    user,
    get password() {
      return readSecret(password, baseDir);
    },
  };
}

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
    databases[name] = {
      server: pgServer(db.host, db.port, db.user, db.password, loaded.baseDir),
      database: db.database,
      restore: {
        server: pgServer(rt.host ?? db.host, rt.port ?? db.port, rt.user ?? db.user, rt.password ?? db.password, loaded.baseDir),
        jobs: rt.jobs,
        randomWindowMs: rt.randomWindow,
        assertions: rt.assertions,
        maxBackupAgeMs: rt.maxBackupAge ?? env.targets.rpo,
      },
    };
  }
  return createBackupActivities({
    environment,
    store,
    prefix: env.backups.prefix,
    databases,
    retention: { keepLast: env.backups.retention.keepLast, maxAgeMs: env.backups.retention.maxAge },
  });
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
  for (const [name, db] of Object.entries(env.databases)) {
    if (!db.topology) continue;
    const record = db.dnsRecord && env.dns ? env.dns.records[db.dnsRecord] : undefined;
    const zone = env.dns?.zone.replace(/\.$/, '');
    targets[name] = {
      credentials: pgServer(db.host, db.port, db.user, db.password, loaded.baseDir),
      database: db.database,
      nodes: db.topology.nodes as [TopologyNode, TopologyNode],
      serviceName: record && zone ? { fqdn: record.name.includes('.') ? record.name.replace(/\.$/, '') : `${record.name}.${zone}`, ttl: record.ttl } : undefined,
      healthChecks: db.healthChecks,
    };
  }
  return createDrillActivities({
    environment,
    targets,
    dns: env.dns ? dnsProviderFor(loaded, env.dns) : undefined,
    driver: localDriver,
    approvers: env.approvers.drDrill ?? env.approvers.default ?? [],
    rpoMs: env.targets.rpo,
    rtoMs: env.targets.rto,
    reports: env.backups && store ? { store, prefix: env.backups.prefix } : undefined,
  });
}

function kubernetesTargetFor(loaded: LoadedConfig, env: EnvironmentConfig): KubernetesTarget | undefined {
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
  return {
    ...createSmokeActivities(environment),
    ...createIdentityActivities({ loaded, environment }),
    ...createNotifyActivities({ loaded, environment }),
    ...createEvidenceActivities({ environment, reports: env.backups && store ? { store, prefix: env.backups.prefix } : undefined, retentionMs: env.backups?.evidenceRetention }),
    ...backupActivitiesFor(loaded, environment, store),
    ...drillActivitiesFor(loaded, environment, store),
    ...createVisibilityActivities({ environment, client: temporal }),
    ...createTargetActivities({ loaded, environment, client: temporal }),
    ...createCheckActivities({ environment, env, baseDir: loaded.baseDir, temporal, temporalSettings: () => temporalConnectionSettings(loaded, env.temporal), store }),
    ...createAuditActivities({
      environment,
      approvers: env.approvers.readinessAudit ?? env.approvers.default ?? [],
      rpoMs: env.targets.rpo,
      reports: env.backups && store ? { store, prefix: env.backups.prefix } : undefined,
    }),
    ...kubernetesActivitiesFor(loaded, environment, env),
    ...createReleaseActivities({ loaded, environment, reports: env.backups && store ? { store, prefix: env.backups.prefix } : undefined }),
    ...createDatabaseRestoreActivities({
      environment,
      store,
      prefix: env.backups?.prefix ?? '',
      databases: Object.fromEntries(Object.entries(env.databases).map(([name, db]) => [name, { server: pgServer(db.host, db.port, db.user, db.password, loaded.baseDir), database: db.database }])),
    }),
    ...createGoLiveActivities({
      environment,
      approvers: env.approvers.goLive ?? env.approvers.default ?? [],
      taskQueues: env.temporal.taskQueues,
      reports: env.backups && store ? { store, prefix: env.backups.prefix } : undefined,
    }),
    ...createLoadTestActivities({ environment, config: env.loadTest, settings: () => temporalConnectionSettings(loaded, env.temporal), dataConverter: dataConverterFor(loaded, environment, env.temporal) }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
