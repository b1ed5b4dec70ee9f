import type { Command } from 'commander';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Client as PgClient } from 'pg';
import { loadConfig, LoadedConfig } from '../config/load';
import { primaryLocator, reachServer } from '../activities/primary';
import { seedSampleDatabase } from '../sandbox/seed';
import { describeBackup, describeVerify, runBackup, runVerify } from './backup';
import { awaitDrill, decideDrill, describeDrill, drillInput, startDrill, waitForOpenGate } from './drill';
import { renderPlanText, RunbookPlan, runPlan } from './plan';
import { QUEUE_KINDS } from '../config/schema';
import { createLogger } from '../observability/logger';
import { freePort } from '../system/process';
import { DEFAULT_STACK_DIR, sandboxKey, startStack, stopStack, StackState } from '../sandbox/stack';
import type { RunbookWorker } from '../worker';
import { connectClient } from './client';
import { GlobalOptions, printJson } from './common';
import { describeSmoke, runSmokeTest } from './smoke';
import { describeStack } from './stack';

export interface DemoRun {
  runbook: string;
  queue: string;
  ok: boolean;
  detail: unknown;
}

/** Gives the sandbox database something worth backing up, once. */
async function seedDemoDatabase(loaded: LoadedConfig): Promise<void> {
  const db = loaded.config.environments.sandbox.databases.main;
  const server = await reachServer(primaryLocator(loaded.baseDir, db, db.user, db.password));
  const client = new PgClient({ ...server, database: db.database });
  await client.connect();
  try {
    const exists = await client.query("SELECT 1 FROM pg_tables WHERE tablename = 'orders'");
    if (exists.rowCount === 0) await seedSampleDatabase(client, { rows: 50_000 });
  } finally {
    await client.end();
  }
}

/**
 * Brings the sandbox up, runs workers in this process, runs 13 runbook runs against it (README, Quickstart),
 * and prints what happened. Without --keep everything is stopped and removed again.
 */
export async function runDemo(opts: { keep: boolean; json: boolean }): Promise<number> {
  const say = (text: string) => {
    if (!opts.json) process.stdout.write(`${text}\n`);
  };
  const dir = opts.keep ? DEFAULT_STACK_DIR : mkdtempSync(join(tmpdir(), 'runbook-demo-'));
  say('starting the local stack (Temporal dev server, PostgreSQL 15, S3 server, BIND 9, Kubernetes test cluster)...');
  const t0 = Date.now();
  const stack: StackState = await startStack({
    dir,
    uiPort: await freePort(),
    persist: opts.keep,
    detach: opts.keep,
    components: ['temporal', 'postgres', 'replica', 's3', 'dns', 'kubernetes'],
  });
  const stackMs = Date.now() - t0;
  say(describeStack(stack));
  let worker: RunbookWorker | undefined;
  let prodWorker: RunbookWorker | undefined;
  let generator: RunbookWorker | undefined;
  const runs: DemoRun[] = [];
  let drillPlan: RunbookPlan | undefined;
  /** Records a demo run that reports its own queue and text, and prints the text. */
  const record = (runbook: string, o: { queue: string; ok: boolean; text: string }) => {
    runs.push({ runbook, queue: o.queue, ok: o.ok, detail: o });
    say(o.text);
  };
  try {
    // The stack's configuration plus a release of web and a promotion across two environments (see demoRelease.ts).
    const { DEMO_PROD_ENV, createDemoApps, runDemoPromotion, runDemoRelease, writeDemoConfig } = await import('./demoRelease');
    const loaded = loadConfig(writeDemoConfig(stack));
    // Worker logs go to a file so the demo's own output stays readable.
    const logFile = join(stack.dir, 'worker.log');
    // Loaded here, not at the top: the worker SDK takes a second to load, which no other command needs.
    const { RunbookWorker } = await import('../worker');
    const logger = createLogger('info', pino.destination({ dest: logFile, sync: true }));
    worker = new RunbookWorker({ loaded, httpPort: 0, logger });
    // The promotion's second environment has workers of its own (its own task queues).
    prodWorker = new RunbookWorker({ loaded, environment: DEMO_PROD_ENV, httpPort: 0, logger });
    // The load test's load runs in a load generator of its own, never in the runbook worker.
    generator = new RunbookWorker({ loaded, queues: [], loadGenerator: true, httpPort: 0, logger });
    const [{ httpUrl }] = await Promise.all([worker.start(), prodWorker.start(), generator.start()]);
    await Promise.all([worker.waitUntilReady(), prodWorker.waitUntilReady(), generator.waitUntilReady()]);
    say(`worker serving ${worker.taskQueueNames().join(', ')}; health ${httpUrl}/ready, metrics ${httpUrl}/metrics; log ${logFile}`);
    const c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
    try {
      for (const queue of QUEUE_KINDS) {
        const outcome = await runSmokeTest(c, { queue, timeoutSeconds: 60 });
        runs.push({ runbook: 'smokeTest', queue: outcome.taskQueue, ok: outcome.ok, detail: outcome });
        say(describeSmoke(outcome));
      }
      say('seeding the sandbox database (4 tables, 50k orders) and taking a backup...');
      await seedDemoDatabase(loaded);
      const backup = await runBackup(c, 'main', !opts.json);
      runs.push({ runbook: 'backupDatabase', queue: c.env.temporal.taskQueues.batch, ok: backup.ok, detail: backup });
      say(describeBackup(backup));
      const verify = await runVerify(c, 'main', { mode: 'latest' }, !opts.json);
      runs.push({ runbook: 'verifyBackup', queue: c.env.temporal.taskQueues.batch, ok: verify.ok, detail: verify });
      say(describeVerify(verify));
      // Every decision is signed with the sandbox's throwaway SSH keys: sandbox-operator requests, sandbox-reviewer approves (four-eyes).
      const requester = { keyFile: sandboxKey(stack, 'sandbox-operator'), principal: 'sandbox-operator' };
      const approver = { keyFile: sandboxKey(stack, 'sandbox-reviewer'), principal: 'sandbox-reviewer' };
      say('plan of the DR drill (runbook drill start --plan: the drill on its plan queue, where nothing can change anything)...');
      const drillStart = { database: 'main', mode: 'failover' as const, failback: true, approvalTimeoutSeconds: 300 };
      drillPlan = await runPlan(c, 'drDrill', drillInput(c, drillStart));
      say(renderPlanText(drillPlan));
      say('DR drill: failover of the PostgreSQL primary with DNS switch and failback (signed: requested by sandbox-operator, approved by sandbox-reviewer)...');
      const { handle, workflowId } = await startDrill(c, { ...drillStart, signer: requester, reason: 'demo drill' });
      const drill = awaitDrill(handle, workflowId, !opts.json);
      await waitForOpenGate(handle);
      await decideDrill(c, workflowId, 'approve', approver, 'demo');
      const outcome = await drill;
      runs.push({ runbook: 'drDrill', queue: c.env.temporal.taskQueues.critical, ok: outcome.ok, detail: outcome });
      say(describeDrill(outcome));
      say('gated canary rollout of the Deployment web (registry.sandbox.test/web:1.0 -> 1.1) on the Kubernetes test cluster (signed: requested by sandbox-operator, approved by sandbox-reviewer)...');
      const { runDemoRollout } = await import('./demoRollout');
      await createDemoApps(loaded, stack.kubernetes!.kubeconfig);
      const rollout = await runDemoRollout(c, { requester, approver }, !opts.json);
      runs.push({ runbook: 'rollout', queue: c.env.temporal.taskQueues.critical, ok: rollout.ok, detail: rollout });
      say(rollout.text);
      say('release of web 1.2: backup of the database, signed approval, migration Job (adds orders.gift_note), canary rollout...');
      record('release', await runDemoRelease(c, { requester, approver }, !opts.json));
      say(`promotion of web 1.3: sandbox, a bake and a signed approval, then ${DEMO_PROD_ENV} (namespace prod, its own workers)...`);
      record('promotion', await runDemoPromotion(c, { requester, approver }, !opts.json));
      const { createGoLiveApp, runDemoAudit, runDemoGoLive, runDemoLoadTest, runDemoRollback, DEMO_GOLIVE_DEPLOYMENT } = await import('./demoOperations');
      say('rollback of web to its previous revision (1.3 -> 1.2), verified by its pods...');
      record('rollback', await runDemoRollback(c, !opts.json));
      say('readiness audit of the sandbox against the production checklist (the sandbox is not production: the score says how far)...');
      record('readinessAudit', await runDemoAudit(c, !opts.json));
      say(`go-live of ${DEMO_GOLIVE_DEPLOYMENT} 1.1: audit gate (the reviewer signs a waiver for each critical item the sandbox cannot prove), smoke tests, signed approval, rollout, watch window...`);
      await createGoLiveApp(stack.kubernetes!.kubeconfig);
      record('goLive', await runDemoGoLive(c, { requester, approver }, !opts.json));
      say('load test: baseline, peak, the bench workers stopped for 4 s, recovery (5 s each; the failure phase misses its SLA by design)...');
      record('loadTest', await runDemoLoadTest(c, !opts.json));
    } finally {
      await c.close();
    }
    const passed = runs.filter((r) => r.ok).length;
    if (opts.json) {
      printJson({ ok: passed === runs.length, stackStartMs: stackMs, temporalUi: stack.temporal?.uiUrl, kept: opts.keep, stack, runs, drillPlan });
    } else {
      say('');
      say(`summary (stack up in ${(stackMs / 1000).toFixed(1)} s, runbooks ${((Date.now() - t0 - stackMs) / 1000).toFixed(1)} s):`);
      const width = Math.max(...runs.map((r) => r.runbook.length));
      for (const r of runs) say(`  ${r.runbook.padEnd(width)}  ${r.queue.padEnd(15)} ${r.ok ? 'passed' : 'FAILED'}`);
      say(`${passed} of ${runs.length} runbook runs passed`);
      say(`Temporal UI: ${stack.temporal?.uiUrl ?? '(headless)'}${opts.keep ? '' : ' (stopped with the demo; use --keep to keep the stack)'}`);
      if (opts.keep) say(`the stack keeps running; start a worker with 'runbook worker' and stop the stack with 'runbook stack down'`);
    }
    return passed === runs.length ? 0 : 1;
  } finally {
    await Promise.all([worker?.shutdown().catch(() => undefined), prodWorker?.shutdown().catch(() => undefined), generator?.shutdown().catch(() => undefined)]);
    if (!opts.keep) {
      await stopStack(stack);
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

export function registerDemo(program: Command, globals: () => GlobalOptions): void {
  program
    .command('demo')
    .description('bring up the local stack, run 13 runbook runs against it with a worker (see the README), print a summary table')
    .option('--keep', 'leave the stack running afterwards (in .runbook/stack, with persistent Temporal state)', false)
    .action(async (opts: { keep: boolean }) => {
      process.exitCode = await runDemo({ keep: opts.keep, json: Boolean(globals().json) });
    });
}
