/**
 * Records workflow histories of every runbook (a happy path and a failure path each) into
 * test/histories/, for the replay test that keeps in-flight runs safe from incompatible changes.
 *
 *   node --import tsx scripts/record-histories.ts [runbook ...]     (default: every runbook)
 *
 * RUNBOOK_RECORD_SUFFIX=name saves <runbook>-<case>.<name>.json beside the histories of earlier code,
 * which stay until no run recorded with that code can still be in flight.
 *
 * Re-record only for an intentional, patched() change; see README "Changing a runbook safely".
 */
import type { WorkflowHandle } from '@temporalio/client';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client as PgClient } from 'pg';
import { connectClient } from '../src/cli/client';
import { loadConfig } from '../src/config/load';
import { primaryLocator, reachServer } from '../src/activities/primary';
import { createLogger } from '../src/observability/logger';
import { seedSampleDatabase } from '../src/sandbox/seed';
import { sandboxKey, startStack, stopStack } from '../src/sandbox/stack';
import { actOnRollout } from '../src/cli/rollout';
import { signedDecision } from '../src/cli/sign';
import { waive } from '../src/cli/golive';
import { findTemporalCli } from '../src/sandbox/temporal';
import { decideUpdate } from '../src/workflows/lib/gate';
import { waitForOpenGate } from '../src/cli/drill';
import { RunbookWorker } from '../src/worker';
import { createDemoDeployment } from '../src/cli/demoRollout';
import { rolloutStatusQuery } from '../src/workflows/rollout';
import { CHECKLIST } from '../src/checklist/catalog';
import { decideRelease, startRelease } from '../src/cli/release';
import { startPromotion } from '../src/cli/promotion';
import * as k8s from '@kubernetes/client-node';
import { parse, stringify } from 'yaml';
import { createSampleDeployment } from '../src/sandbox/kubernetes';

const repoRoot = join(__dirname, '..');

/**
 * The release that recorded each history (test/history-releases.json): a recording belongs to the
 * package version of the code that made it, so the suite can prove the previous release's runs replay.
 */
const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
function noteRelease(file: string): void {
  const manifestFile = join(repoRoot, 'test', 'history-releases.json');
  const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { releases: Record<string, { runbooks: string[]; histories: string[] }> };
  for (const r of Object.values(manifest.releases)) r.histories = r.histories.filter((h) => h !== file);
  const entry = (manifest.releases[version] ??= { runbooks: [], histories: [] });
  entry.histories = [...entry.histories, file].sort();
  entry.runbooks = [...new Set([...entry.runbooks, file.split('-')[0]])].sort();
  writeFileSync(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
}
const out = join(repoRoot, 'test', 'histories');

/**
 * Failure stack traces carry absolute paths: this checkout's, and that of whichever checkout built the
 * cached workflow bundle (src/system/bundleCache.ts). Each becomes `.`, so histories are machine-independent.
 */
function machineIndependent(json: string): string {
  return json.split(repoRoot).join('.').replace(/(?<=[\s("'])\/[^\s"'():]*?\/(?=(?:node_modules|src)\/)/g, './');
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'runbook-record-'));
  chmodSync(dir, 0o755);
  const only = new Set(process.argv.slice(2));
  const wanted = (runbook: string) => only.size === 0 || only.has(runbook);
  const kubernetes = wanted('rollout') || wanted('rollback') || wanted('goLive') || wanted('release') || wanted('promotion');
  const stack = await startStack({ dir, components: ['temporal', 'postgres', 'replica', 's3', 'pgbackrest', 'dns', ...(kubernetes ? (['kubernetes'] as const) : [])] });
  let configFile = stack.configFile;
  if (wanted('release') || wanted('promotion')) {
    // A release of 'shop' with its down Job, and a promotion of 'web' from the sandbox to a second
    // environment ('prod': its own task queues and namespace on the same control plane).
    const doc = parse(readFileSync(stack.configFile, 'utf8'));
    const sandbox = doc.environments.sandbox;
    const psql = (sql: string) => ['psql', '-v', 'ON_ERROR_STOP=1', '-c', sql];
    sandbox.releases = {
      shop: {
        database: 'main',
        container: 'app',
        migration: { command: psql('ALTER TABLE orders ADD COLUMN discount numeric'), timeout: '2m' },
        down: { command: psql('ALTER TABLE orders DROP COLUMN discount'), timeout: '2m' },
        onFailure: 'down-migration',
      },
    };
    const prod = JSON.parse(JSON.stringify(sandbox));
    delete prod.releases;
    prod.temporal.taskQueues = { critical: 'prod-critical', standard: 'prod-standard', batch: 'prod-batch' };
    prod.kubernetes.namespace = 'prod';
    doc.environments.prod = prod;
    doc.promotions = { web: { runbook: 'rollout', deployment: 'web', stages: [{ environment: 'sandbox', bake: '1s' }, { environment: 'prod', bake: '1s' }] } };
    configFile = join(dir, 'record.yaml');
    writeFileSync(configFile, stringify(doc));
  }
  const loaded = loadConfig(configFile);
  // Short load-test phases (the block as the loader leaves it: durations in ms), so recording takes seconds.
  loaded.config.environments.sandbox.loadTest = {
    scenario: 'noop', baselineRate: 5, peakMultiplier: 2, phaseDuration: 3_000, concurrency: 100,
    failure: { mode: 'workers-stopped', outage: 2_000, dependencyDelay: 2_000, approvalTimeout: 3_600_000, allowInProduction: false },
    sla: { p99StartToComplete: 1_500, maxErrorRate: 0 },
  };
  const worker = new RunbookWorker({ loaded, httpPort: 0, logger: createLogger('warn') });
  const prodWorker = wanted('promotion') ? new RunbookWorker({ loaded, environment: 'prod', httpPort: 0, logger: createLogger('warn') }) : undefined;
  const generator = wanted('loadTest') ? new RunbookWorker({ loaded, queues: [], loadGenerator: true, httpPort: 0, logger: createLogger('warn') }) : undefined;
  try {
    const db = loaded.config.environments.sandbox.databases.main;
    const server = await reachServer(primaryLocator(loaded.baseDir, db, db.user, db.password));
    const pg = new PgClient({ ...server, database: db.database });
    await pg.connect();
    await seedSampleDatabase(pg, { rows: 2_000 });
    await pg.end();
    await worker.start();
    await worker.waitUntilReady(180_000);
    if (generator) {
      await generator.start();
      await generator.waitUntilReady(180_000);
    }
    if (prodWorker) {
      await prodWorker.start();
      await prodWorker.waitUntilReady(180_000);
    }
    const c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
    mkdirSync(out, { recursive: true });
    const save = async (name: string, handle: WorkflowHandle) => {
      await handle.result().catch(() => undefined);
      // The Temporal CLI writes the history JSON format every Temporal tool reads.
      const json = execFileSync(findTemporalCli(), ['workflow', 'show', '--address', stack.temporal!.address, '--workflow-id', handle.workflowId, '--output', 'json'], { encoding: 'utf8' });
      const suffix = process.env.RUNBOOK_RECORD_SUFFIX ? `.${process.env.RUNBOOK_RECORD_SUFFIX.replace(/[^a-z0-9-]/g, '')}` : '';
      // The history does not carry its workflow id, which workflows derive child ids from: the replay test needs it.
      const history = JSON.parse(machineIndependent(json)) as Record<string, unknown>;
      writeFileSync(join(out, `${name}${suffix}.json`), `${JSON.stringify({ workflowId: handle.workflowId, ...history }, null, 2)}\n`);
      noteRelease(`${name}${suffix}.json`);
      console.log(`recorded ${name} (release ${version})`);
    };
    const start = (type: string, queue: string, input: Record<string, unknown>) =>
      c.client.workflow.start(type, { taskQueue: queue, workflowId: `record-${type}-${Date.now()}`, args: [{ environment: 'sandbox', ...input }] });
    const operator = { keyFile: sandboxKey(stack, 'sandbox-operator'), principal: 'sandbox-operator' };
    const reviewer = { keyFile: sandboxKey(stack, 'sandbox-reviewer'), principal: 'sandbox-reviewer' };
    const approve = async (h: WorkflowHandle, decision: 'approve' | 'reject', runbook = 'drDrill') => {
      await waitForOpenGate(h);
      await h.executeUpdate(decideUpdate, { args: [await signedDecision(c, h, runbook, decision, operator)] });
    };

    if (wanted('smokeTest')) {
      await save('smokeTest-passed', await start('smokeTest', 'standard-queue', {}));
      await save('smokeTest-invalid-input', await start('smokeTest', 'standard-queue', { holdSeconds: -1 }));
    }
    if (wanted('backupDatabase')) {
      await save('backupDatabase-passed', await start('backupDatabase', 'batch-queue', { database: 'main' }));
      await save('backupDatabase-unknown-database', await start('backupDatabase', 'batch-queue', { database: 'nosuch' }));
    }
    if (wanted('targetGuard')) {
      // A database held by hand: a backup whose policy refuses a busy target fails at once, naming the holder.
      loaded.config.environments.sandbox.policies.backupDatabase = { ...loaded.config.environments.sandbox.policies.backupDatabase, onBusyTarget: 'refuse' };
      const guard = await c.client.workflow.start('targetGuard', { taskQueue: 'batch-queue', workflowId: 'target-sandbox-database-main', args: [{ environment: 'sandbox', kind: 'database', target: 'main' }] });
      await save('backupDatabase-target-busy', await start('backupDatabase', 'batch-queue', { database: 'main' }));
      await guard.signal('release');
      await save('targetGuard-released', guard);
      delete loaded.config.environments.sandbox.policies.backupDatabase?.onBusyTarget;
      // The guard of a backup that ran to the end: given back when its parent closed.
      await start('backupDatabase', 'batch-queue', { database: 'main' }).then((h) => h.result());
      await save('targetGuard-parent-closed', c.client.workflow.getHandle('target-sandbox-database-main'));
    }
    if (wanted('verifyBackup')) {
      await save('verifyBackup-passed', await start('verifyBackup', 'batch-queue', { database: 'main' }));
      await save('verifyBackup-no-such-backup', await start('verifyBackup', 'batch-queue', { database: 'main', selection: { mode: 'key', backupId: '20200101T000000Z-abcdef' } }));
    }
    if (wanted('restoreCanary')) {
      await save('restoreCanary-written', await start('restoreCanary', 'standard-queue', { database: 'pitr' }));
      await save('restoreCanary-invalid-input', await start('restoreCanary', 'standard-queue', { database: 'pitr; DROP TABLE x' }));
    }
    if (wanted('pgbackrest')) {
      // pgBackRest: a canary row, a full backup, a restore test to a moment between two canary rows, and a time outside the window.
      await start('restoreCanary', 'standard-queue', { database: 'pitr' }).then((h) => h.result());
      await save('backupDatabase-pgbackrest-full', await start('backupDatabase', 'batch-queue', { database: 'pitr', type: 'full' }));
      await start('restoreCanary', 'standard-queue', { database: 'pitr' }).then((h) => h.result());
      await new Promise((r) => setTimeout(r, 1_500));
      const at = new Date().toISOString();
      await new Promise((r) => setTimeout(r, 1_500));
      await start('restoreCanary', 'standard-queue', { database: 'pitr' }).then((h) => h.result());
      const pg = new PgClient({ ...server, password: server.password, database: db.database });
      await pg.connect();
      const switched = (await pg.query<{ f: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS f')).rows[0].f;
      while ((await pg.query<{ w: string | null }>('SELECT last_archived_wal AS w FROM pg_stat_archiver')).rows[0].w! < switched) await new Promise((r) => setTimeout(r, 200));
      await pg.end();
      await save('verifyBackup-pitr-passed', await start('verifyBackup', 'batch-queue', { database: 'pitr', selection: { mode: 'time', at } }));
      await save('verifyBackup-pitr-outside-window', await start('verifyBackup', 'batch-queue', { database: 'pitr', selection: { mode: 'time', at: '2020-01-01T00:00:00Z' } }));
      // A dump restored into a scratch instance on the worker's host (the default without a restore server).
      await start('backupDatabase', 'batch-queue', { database: 'main' }).then((h) => h.result());
      await save('verifyBackup-dump-scratch-instance', await start('verifyBackup', 'batch-queue', { database: 'main' }));
    }
    if (wanted('drDrill')) {
      // drDrill-rejected and drDrill-failover-passed were recorded before the topology drivers and replay
      // on its legacy path; these record the current one (with a write load, so its timer and cancellation too).
      const rejected = await start('drDrill', 'critical-queue', { database: 'main', mode: 'failover' });
      await approve(rejected, 'reject');
      await save('drDrill-topology-rejected', rejected);
      const drill = await start('drDrill', 'critical-queue', { database: 'main', mode: 'failover', writeLoad: { rate: 20, warmupSeconds: 1 } });
      await approve(drill, 'approve');
      await save('drDrill-topology-failover-write-load-passed', drill);
    }
    if (wanted('readinessAudit')) {
      // readinessAudit-report.json is the run from before the temporal-checks-read-their-targets patch; it stays.
      await save('readinessAudit-report-temporal-targets', await start('readinessAudit', 'standard-queue', { checkTimeoutSeconds: 5 }));
      await save('readinessAudit-invalid-input', await start('readinessAudit', 'standard-queue', { concurrency: 0 }));
    }
    if (wanted('backupTemporalConfig') || wanted('verifyTemporalConfig')) {
      await save('backupTemporalConfig-passed', await start('backupTemporalConfig', 'batch-queue', {}));
      await save('backupTemporalConfig-invalid-input', await start('backupTemporalConfig', 'batch-queue', { environment: 'Not An Environment' }));
      await save('verifyTemporalConfig-passed', await start('verifyTemporalConfig', 'batch-queue', {}));
      await save('verifyTemporalConfig-no-such-backup', await start('verifyTemporalConfig', 'batch-queue', { backupId: '20200101T000000Z-abcdef' }));
    }
    if (wanted('loadTest')) {
      await save('loadTest-phases', await start('loadTest', 'batch-queue', {}));
      await save('loadTest-invalid-input', await start('loadTest', 'batch-queue', { phases: 9 }));
    }
    if (kubernetes) {
      await createDemoDeployment(stack.kubernetes!.kubeconfig);
      const atGate = async (h: WorkflowHandle) => {
        for (;;) {
          const st = await h.query(rolloutStatusQuery);
          if (st.approvals.some((g) => g.outcome === 'waiting')) return;
          await new Promise((r) => setTimeout(r, 200));
        }
      };
      if (wanted('rollout')) {
        const promoted = await start('rollout', 'critical-queue', { deployment: 'web', image: 'registry.sandbox.test/web:1.1', steps: [{ setWeight: 34 }, { pause: {} }] });
        await atGate(promoted);
        await actOnRollout(c, promoted, 'promote', operator, 'recorded');
        await save('rollout-canary-promoted', promoted);
        await save('rollout-bad-image-rolled-back', await start('rollout', 'critical-queue', { deployment: 'web', image: 'registry.sandbox.test/web:2.0-bad', steps: [{ setWeight: 34 }, { pause: {} }], healthTimeoutSeconds: 120 }));
      }
      if (wanted('rollback')) {
        await save('rollback-previous-revision', await start('rollback', 'critical-queue', { deployment: 'web' }));
        await save('rollback-no-such-revision', await start('rollback', 'critical-queue', { deployment: 'web', toRevision: 99 }));
      }
      if (wanted('goLive')) {
        const watch = { durationSeconds: 2, intervalSeconds: 1, analysis: { pods: { maxRestarts: 0 } } };
        const input = { deployment: 'web', image: 'registry.sandbox.test/web:1.2', steps: [{ setWeight: 34 }, { pause: {} }], watch, audit: { checkTimeoutSeconds: 5 } };
        await save('goLive-blocked-at-audit-gate', await start('goLive', 'critical-queue', input));
        // The plain sandbox proves few critical items (no TLS, SQLite, no drill yet): this recording waives
        // them all, so that the whole path (smoke tests, approval, rollout, watch window, report) is replayed.
        const live = await start('goLive', 'critical-queue', { ...input, waiverWaitSeconds: 600 });
        for (const i of CHECKLIST.filter((x) => x.severity === 'critical')) await waive(c, live, operator, { item: i.id, reason: 'recording a replay history on the plain sandbox' }).catch(() => undefined);
        await approve(live, 'approve', 'goLive');
        const rollout = c.client.workflow.getHandle('rollout-sandbox-web');
        for (;;) {
          const st = await rollout.query(rolloutStatusQuery).catch(() => undefined);
          if (st?.approvals.some((g) => g.outcome === 'waiting')) break;
          await new Promise((r) => setTimeout(r, 200));
        }
        await actOnRollout(c, rollout, 'promote', operator, 'recorded');
        await save('goLive-live-with-waivers', live);
      }
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(stack.kubernetes!.kubeconfig);
      const apps = kc.makeApiClient(k8s.AppsV1Api);
      if (wanted('release')) {
        // The application reaches PostgreSQL through its environment; its migration Job runs with the same.
        const core = kc.makeApiClient(k8s.CoreV1Api);
        const db = loaded.config.environments.sandbox.databases.main;
        const primary = await reachServer(primaryLocator(loaded.baseDir, db, db.user, db.password));
        const password = primary.password;
        await core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'shop-db' }, stringData: { password } } });
        const env = [
          { name: 'PGHOST', value: primary.host },
          { name: 'PGPORT', value: String(primary.port) },
          { name: 'PGUSER', value: db.user },
          { name: 'PGDATABASE', value: db.database },
          { name: 'PGPASSWORD', valueFrom: { secretKeyRef: { name: 'shop-db', key: 'password' } } },
        ];
        await apps.createNamespacedDeployment({
          namespace: 'default',
          body: {
            metadata: { name: 'shop', labels: { app: 'shop' } },
            spec: { replicas: 2, selector: { matchLabels: { app: 'shop' } }, template: { metadata: { labels: { app: 'shop' } }, spec: { containers: [{ name: 'app', image: 'registry.sandbox.test/shop:1.0', env }] } } },
          },
        });
        for (;;) {
          if ((await apps.readNamespacedDeployment({ name: 'shop', namespace: 'default' })).status?.availableReplicas === 2) break;
          await new Promise((r) => setTimeout(r, 200));
        }
        const released = (await startRelease(c, { environment: 'sandbox', deployment: 'shop', image: 'registry.sandbox.test/shop:1.1', steps: [{ setWeight: 50 }, { pause: { durationSeconds: 1 } }] }, operator)).handle;
        await waitForOpenGate(released);
        await decideRelease(c, released, 'approve', reviewer, 'recorded');
        await save('release-released', released);
        await save('release-no-release-config', (await startRelease(c, { environment: 'sandbox', deployment: 'nothing', image: 'registry.sandbox.test/nothing:1' }, operator)).handle);
      }
      if (wanted('promotion')) {
        const core = kc.makeApiClient(k8s.CoreV1Api);
        await core.createNamespace({ body: { metadata: { name: 'prod' } } });
        await createSampleDeployment(apps, { name: 'web', image: 'registry.sandbox.test/web:1.0', replicas: 2, namespace: 'prod' });
        await save('promotion-promoted', (await startPromotion(c, { environment: 'sandbox', promotion: 'web', image: 'registry.sandbox.test/web:1.5', steps: [{ setWeight: 50 }, { pause: { durationSeconds: 1 } }] }, operator)).handle);
        await save('promotion-unknown', (await startPromotion(c, { environment: 'sandbox', promotion: 'nosuch', image: 'registry.sandbox.test/web:1.7' }, operator)).handle);
      }
    }
    await c.close();
  } finally {
    await worker.shutdown().catch(() => undefined);
    await prodWorker?.shutdown().catch(() => undefined);
    await generator?.shutdown().catch(() => undefined);
    await stopStack(stack);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
