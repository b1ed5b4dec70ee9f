import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import type { WorkflowHandle } from '@temporalio/client';
import { primaryLocator, reachServer } from '../activities/primary';
import type { LoadedConfig } from '../config/load';
import { createSampleDeployment, waitForDeploymentAvailable } from '../sandbox/kubernetes';
import type { StackState } from '../sandbox/stack';
import { promotionStatusQuery } from '../workflows/promotion';
import type { ConnectedClient } from './client';
import { awaitPromotion, describePromotionReport, startPromotion } from './promotion';
import { awaitRelease, decideRelease, describeReleaseReport, startRelease } from './release';
import { decideGate, Signer } from './sign';
import { waitForOpenGate } from './drill';
import { k8sRuntime } from '../activities/k8sRuntime';
import { DEMO_LOAD_TEST } from './demoOperations';

/** The second environment of the demo's promotion: the same control plane, its own namespace and task queues. */
export const DEMO_PROD_ENV = 'sandbox-prod';
export const DEMO_PROD_NAMESPACE = 'prod';

/**
 * The demo's configuration: the stack's, plus what a release and a promotion need. `web` gets a release
 * whose migration Job adds a column to the sample database's orders table (the sandbox's Job runner
 * runs its psql for real), and a promotion of `web` from sandbox to sandbox-prod with a signed approval
 * between them. In the sandbox both environments share one Kubernetes control plane (namespaces
 * default and prod); in production each environment names its own cluster.
 */
export function writeDemoConfig(stack: StackState): string {
  const doc = parse(readFileSync(stack.configFile, 'utf8'));
  const sandbox = doc.environments.sandbox;
  sandbox.releases = {
    web: {
      database: 'main',
      container: 'web',
      migration: { command: ['sh', '-c', 'echo migrating web; psql -v ON_ERROR_STOP=1 -c "ALTER TABLE orders ADD COLUMN IF NOT EXISTS gift_note text"'], timeout: '2m' },
      down: { command: ['sh', '-c', 'psql -v ON_ERROR_STOP=1 -c "ALTER TABLE orders DROP COLUMN IF EXISTS gift_note"'], timeout: '2m' },
      onFailure: 'down-migration',
    },
  };
  sandbox.loadTest = DEMO_LOAD_TEST;
  const prod = JSON.parse(JSON.stringify(sandbox));
  delete prod.releases;
  delete prod.loadTest;
  prod.temporal.taskQueues = { critical: 'prod-critical', standard: 'prod-standard', batch: 'prod-batch' };
  prod.kubernetes.namespace = DEMO_PROD_NAMESPACE;
  doc.environments[DEMO_PROD_ENV] = prod;
  doc.promotions = {
    web: {
      runbook: 'rollout',
      deployment: 'web',
      stages: [
        { environment: 'sandbox', bake: '2s', approval: true },
        { environment: DEMO_PROD_ENV, bake: '2s' },
      ],
      onAbort: 'rollback-promoted',
    },
  };
  const file = join(stack.dir, 'demo.yaml');
  writeFileSync(file, stringify(doc), { mode: 0o600 });
  return file;
}

/**
 * The demo's application: three replicas of web:1.0 in the default namespace, reaching the sandbox
 * database's current primary (its migration Jobs run with the same environment), the password from a
 * Secret; and web:1.0 in the prod namespace for the promotion.
 */
export async function createDemoApps(loaded: LoadedConfig, kubeconfig: string): Promise<void> {
  const kc = new (k8sRuntime().KubeConfig)();
  kc.loadFromFile(kubeconfig);
  const apps = kc.makeApiClient(k8sRuntime().AppsV1Api);
  const core = kc.makeApiClient(k8sRuntime().CoreV1Api);
  const db = loaded.config.environments.sandbox.databases.main;
  const server = await reachServer(primaryLocator(loaded.baseDir, db, db.user, db.password));
  await core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'web-db' }, stringData: { password: server.password ?? '' } } });
  await apps.createNamespacedDeployment({
    namespace: 'default',
    body: {
      metadata: { name: 'web', labels: { app: 'web' } },
      spec: {
        replicas: 3,
        selector: { matchLabels: { app: 'web' } },
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
        template: {
          metadata: { labels: { app: 'web' } },
          spec: {
            containers: [
              {
                name: 'web',
                image: 'registry.sandbox.test/web:1.0',
                env: [
                  { name: 'PGHOST', value: server.host },
                  { name: 'PGPORT', value: String(server.port) },
                  { name: 'PGUSER', value: server.user },
                  { name: 'PGDATABASE', value: db.database },
                  { name: 'PGPASSWORD', valueFrom: { secretKeyRef: { name: 'web-db', key: 'password' } } },
                ],
              },
            ],
          },
        },
      },
    },
  });
  await core.createNamespace({ body: { metadata: { name: DEMO_PROD_NAMESPACE } } });
  await Promise.all([
    waitForDeploymentAvailable(apps, 'default', 'web', 3),
    createSampleDeployment(apps, { name: 'web', image: 'registry.sandbox.test/web:1.0', replicas: 2, container: 'web', namespace: DEMO_PROD_NAMESPACE }),
  ]);
}

/** Waits for the run's gate; true when it is open, false when the run ended first. */
async function atGate(handle: WorkflowHandle): Promise<boolean> {
  await waitForOpenGate(handle, 180_000);
  return (await handle.describe()).status.name === 'RUNNING';
}

export interface DemoOutcome {
  ok: boolean;
  workflowId: string;
  queue: string;
  result?: unknown;
  error?: string;
  text: string;
}

/**
 * A release of web:1.2: backup of the database, the signed approval (requested by one operator,
 * approved by the other), the migration Job, a two-step canary, the report.
 */
export async function runDemoRelease(c: ConnectedClient, signers: { requester: Signer; approver: Signer }, showProgress: boolean): Promise<DemoOutcome> {
  const { handle, workflowId } = await startRelease(c, { environment: c.environment, deployment: 'web', image: 'registry.sandbox.test/web:1.2', steps: [{ setWeight: 34 }, { pause: { durationSeconds: 2 } }], healthTimeoutSeconds: 120 }, signers.requester);
  const done = awaitRelease(handle, showProgress);
  if (await atGate(handle)) await decideRelease(c, handle, 'approve', signers.approver, 'demo: migration reviewed');
  const r = await done;
  const queue = (await handle.describe()).taskQueue;
  const text = r.report ? describeReleaseReport(r.report, r.report.reportKeys ?? []) : `release FAILED: ${r.error}`;
  return { ok: r.ok && r.report?.outcome === 'released', workflowId, queue, result: r.report, error: r.error, text };
}

/** A promotion of web:1.3 from sandbox to sandbox-prod: a rollout in each, a bake, and a signed approval between them. */
export async function runDemoPromotion(c: ConnectedClient, signers: { requester: Signer; approver: Signer }, showProgress: boolean): Promise<DemoOutcome> {
  const { handle, workflowId } = await startPromotion(c, { environment: c.environment, promotion: 'web', image: 'registry.sandbox.test/web:1.3', steps: [{ setWeight: 50 }, { pause: { durationSeconds: 1 } }] }, signers.requester);
  const done = awaitPromotion(handle, showProgress);
  if (await atGate(handle)) await decideGate(c, handle, 'promotion', 'approve', signers.approver, 'demo: sandbox looks healthy');
  const r = await done;
  const queue = (await handle.describe()).taskQueue;
  const status = await handle.query(promotionStatusQuery).catch(() => undefined);
  const text = r.report ? describePromotionReport(r.report) : `promotion FAILED: ${r.error}`;
  return { ok: r.ok, workflowId, queue, result: r.report ?? status, error: r.error, text };
}
