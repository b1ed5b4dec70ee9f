import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import type { WorkflowHandle } from '@temporalio/client';
import { parse, stringify } from 'yaml';
import { CHECKLIST } from '../../src/checklist/catalog';
import { ConnectedClient, connectClient, startRunbook } from '../../src/cli/client';
import { createDemoDeployment } from '../../src/cli/demoRollout';
import { waive } from '../../src/cli/golive';
import { actOnRollout } from '../../src/cli/rollout';
import { signedDecision } from '../../src/cli/sign';
import { loadConfig } from '../../src/config/load';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { freePort } from '../../src/system/process';
import { RUNBOOK_DEFAULT_QUEUE } from '../../src/workflows/catalog';
import { decideUpdate, gatesQuery } from '../../src/workflows/lib/gate';
import { goLiveStatusQuery } from '../../src/workflows/goLive';
import { rolloutStatusQuery } from '../../src/workflows/rollout';
import { HistoryWatch } from '../history-watch';
import { httpStatus, operator, REPO, RUNBOOK_BIN, waitFor } from '../helpers';

/*
 * The crash loop: a runbook runs once while its worker (a `runbook worker` process group) is killed
 * with SIGKILL as each step of its recorded step list starts and inside each activity that reports
 * progress by heartbeat; a new worker process is started each time. Judged from the history (every
 * activity scheduled as often as in the recorded run: no step ran twice) and from the world (the
 * Deployment's revisions, the reports in S3). The step lists are those of the recorded happy-path
 * histories in test/histories, so a runbook added later without one fails the registry test below.
 */

const HISTORIES = join(REPO, 'test', 'histories');
const dir = mkdtempSync(join(tmpdir(), 'runbook-crash-loop-'));
chmodSync(dir, 0o755);
let stack: StackState;
let c: ConnectedClient;
let configFile: string;
let apps: k8s.AppsV1Api;
const workers: { child: ChildProcess; exited: Promise<unknown> }[] = [];
/** Crash points per runbook, printed at the end and summed in the README. */
const table: { runbook: string; points: string[]; survived: boolean }[] = [];

/**
 * Runbooks whose crash scenarios live in other files: killed at every step there, except release
 * (killed inside its longest step, the migration Job, which must not run twice) and promotion (killed
 * during an environment's bake, which must not promote that environment again).
 */
const COVERED_ELSEWHERE: Record<string, string> = {
  smokeTest: 'test/integration/crash-suite.test.ts',
  backupDatabase: 'test/integration/crash-suite.test.ts',
  verifyBackup: 'test/integration/crash-suite.test.ts',
  drDrill: 'test/integration/crash-suite.test.ts',
  rollout: 'test/e2e/rollout-cli.test.ts',
  release: 'test/integration/release.test.ts',
  promotion: 'test/integration/promotion.test.ts',
};
const COVERED_HERE = ['rollback', 'goLive', 'readinessAudit', 'loadTest'];

interface Recorded {
  file: string;
  steps: string[];
  scheduled: Record<string, number>;
  /** Where each step begins in the history: its first activity, as the n-th scheduling of that type. */
  boundaries: { step: string; activityType: string; occurrence: number }[];
}

/** The newest recorded happy path of a runbook: its step names and how often each activity was scheduled. */
function recorded(runbook: string): Recorded | undefined {
  // Histories recorded with newer code sit beside the older ones (name.suffix.json): the newest recording first.
  const candidates = readdirSync(HISTORIES)
    .filter((f) => f.startsWith(`${runbook}-`) && f.endsWith('.json'))
    .map((file) => ({ file, history: JSON.parse(readFileSync(join(HISTORIES, file), 'utf8')) as { events: Record<string, any>[] } }))
    .sort((a, b) => Date.parse(b.history.events[0]?.eventTime ?? 0) - Date.parse(a.history.events[0]?.eventTime ?? 0) || a.file.localeCompare(b.file));
  for (const { file, history } of candidates) {
    const last = history.events[history.events.length - 1];
    const payload = last.workflowExecutionCompletedEventAttributes?.result?.payloads?.[0];
    if (!payload) continue;
    const result = JSON.parse(Buffer.from(payload.data, 'base64').toString('utf8'));
    const steps: string[] | undefined = result?.timeline?.steps?.map((s: { name: string }) => s.name);
    if (!steps?.length || result.outcome === 'failed' || result.passed === false) continue;
    const scheduled: Record<string, number> = {};
    const schedulings: { type: string; occurrence: number; at: number }[] = [];
    for (const e of history.events) {
      const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
      if (!name) continue;
      scheduled[name] = (scheduled[name] ?? 0) + 1;
      schedulings.push({ type: name, occurrence: scheduled[name], at: Date.parse(e.eventTime) });
    }
    // A step's first activity is the first one scheduled once the step had started (workflow time) and before it ended.
    const boundaries: Recorded['boundaries'] = [];
    for (const st of result.timeline.steps as { name: string; startedAt: string; endedAt?: string }[]) {
      const from = Date.parse(st.startedAt);
      const to = st.endedAt ? Date.parse(st.endedAt) : Infinity;
      const first = schedulings.find((x) => x.at >= from && x.at <= to);
      if (first) boundaries.push({ step: st.name, activityType: first.type, occurrence: first.occurrence });
    }
    return { file, steps, scheduled, boundaries };
  }
  return undefined;
}

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 'replica', 's3', 'dns', 'kubernetes'] });
  const doc = parse(readFileSync(stack.configFile, 'utf8'));
  // Short load-test phases, as the recorded history has them.
  doc.environments.sandbox.loadTest = { scenario: 'noop', baselineRate: 5, peakMultiplier: 2, phaseDuration: '3s', concurrency: 100, failure: { mode: 'workers-stopped', outage: '2s' }, sla: { p99StartToComplete: '1500ms', maxErrorRate: 0 } };
  doc.worker = { ...doc.worker, logLevel: 'warn' };
  doc.schedules = [];
  configFile = join(stack.dir, 'crash-loop.yaml');
  writeFileSync(configFile, stringify(doc));
  const loaded = loadConfig(configFile);
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
  await createDemoDeployment(stack.kubernetes!.kubeconfig);
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(stack.kubernetes!.kubeconfig);
  apps = kc.makeApiClient(k8s.AppsV1Api);
});

after(async () => {
  for (const w of workers) killGroup(w.child);
  await Promise.all(workers.map((w) => w.exited));
  await c?.close();
  if (stack) await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
  if (table.length) {
    console.log(`crash loop: ${table.reduce((n, t) => n + t.points.length, 0)} crash points over ${table.length} runbooks, ${table.filter((t) => t.survived).length} runs survived`);
    for (const t of table) console.log(`  ${t.runbook}: ${t.survived ? 'survived' : 'FAILED'} — ${t.points.join('; ')}`);
  }
});

function killGroup(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    /* gone */
  }
}

async function startWorker(): Promise<ChildProcess> {
  const port = await freePort();
  const child = spawn(RUNBOOK_BIN, ['--config', configFile, 'worker', '--http-port', String(port)], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4_000)));
  workers.push({ child, exited: new Promise((r) => child.on('exit', r)) });
  await waitFor('worker ready', async () => {
    if (child.exitCode !== null) throw new Error(`worker exited: ${err}`);
    return (await httpStatus(`http://127.0.0.1:${port}/ready`)).status === 200;
  }, 300_000, 200);
  return child;
}

/**
 * Runs until the workflow closes, killing the worker the moment each recorded step's first activity is
 * scheduled (read from the history as the server appends it) and once inside each activity that
 * reports progress by heartbeat; `operate` plays the people (approvals, waivers) on every turn.
 */
async function crashLoop(handle: WorkflowHandle, rec: Recorded, watch: HistoryWatch, operate: () => Promise<void> = async () => undefined): Promise<string[]> {
  const points: string[] = [];
  const pending = [...rec.boundaries];
  const killedInside = new Set<string>();
  let worker = await startWorker();
  const kill = async (point: string) => {
    killGroup(worker);
    points.push(point);
    worker = await startWorker();
  };
  let lastOperate = 0;
  for (;;) {
    const counts: Record<string, number> = {};
    for (const e of watch.events) {
      const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
      if (name) counts[name] = (counts[name] ?? 0) + 1;
    }
    const due = pending.findIndex((b) => (counts[b.activityType] ?? 0) >= b.occurrence);
    if (due >= 0) {
      const [b] = pending.splice(due, 1);
      await kill(`at ${b.step} (${b.activityType} scheduled)`);
      continue;
    }
    if (watch.events.some((e) => e.workflowExecutionCompletedEventAttributes || e.workflowExecutionFailedEventAttributes || e.workflowExecutionTerminatedEventAttributes || e.workflowExecutionTimedOutEventAttributes)) break;
    if (Date.now() - lastOperate > 500) {
      lastOperate = Date.now();
      const d = await handle.describe();
      // One kill inside each heartbeating activity execution (by its scheduling), so a retry is not killed again.
      const beating = d.raw.pendingActivities?.find((a) => a.heartbeatDetails?.payloads?.length && !killedInside.has(`${a.activityType?.name}#${a.activityId}`));
      if (beating) {
        killedInside.add(`${beating.activityType!.name}#${beating.activityId}`);
        await kill(`inside ${beating.activityType!.name}`);
        continue;
      }
      await operate().catch(() => undefined);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  killGroup(worker);
  assert.deepEqual(pending, [], 'every step boundary was reached and killed');
  return points;
}

/** Every activity scheduled as often as in the recorded run: a retried attempt is not a new scheduling. */
function assertScheduledLikeRecorded(watch: HistoryWatch, rec: Recorded, ignore: string[] = []): void {
  const counts: Record<string, number> = {};
  for (const e of watch.events) {
    const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
    if (name && !ignore.includes(name)) counts[name] = (counts[name] ?? 0) + 1;
  }
  const expected = Object.fromEntries(Object.entries(rec.scheduled).filter(([k]) => !ignore.includes(k)));
  assert.deepEqual(counts, expected, `activities scheduled as in ${rec.file}`);
}

async function revisionsOf(name: string): Promise<number> {
  return Number((await apps.readNamespacedDeployment({ name, namespace: 'default' })).metadata?.annotations?.['deployment.kubernetes.io/revision'] ?? 0);
}

describe('the crash loop: every runbook survives its worker killed at each step', () => {
  test('the registry: every runbook the worker runs has a recorded step list and a crash scenario', () => {
    for (const runbook of Object.keys(RUNBOOK_DEFAULT_QUEUE)) {
      assert.ok(COVERED_HERE.includes(runbook) || runbook in COVERED_ELSEWHERE, `${runbook} has no crash scenario: add it to the crash loop (test/integration/crash-loop.test.ts)`);
      assert.ok(recorded(runbook), `${runbook} has no recorded happy-path history with a step list in test/histories (scripts/record-histories.ts)`);
    }
  });

  test('rollback: one revert however often its worker dies; the Deployment on the previous image, one revision more', async () => {
    const rec = recorded('rollback')!;
    const before = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
    // Give the Deployment a previous revision to go back to.
    await apps.patchNamespacedDeployment({ name: 'web', namespace: 'default', body: { spec: { template: { spec: { containers: [{ name: 'web', image: 'registry.sandbox.test/web:1.3' }] } } } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch));
    await waitFor('web on 1.3', async () => {
      const d = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
      return d.status?.updatedReplicas === d.spec?.replicas && d.status?.availableReplicas === d.spec?.replicas && (d.status?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0);
    }, 120_000, 250);
    const revisionBefore = await revisionsOf('web');
    const { handle } = await startRunbook(c, 'rollback', [{ environment: 'sandbox', deployment: 'web' }], {});
    const watch = new HistoryWatch(c.client, handle);
    let survived = false;
    const points = await crashLoop(handle, rec, watch);
    try {
      const result = (await handle.result()) as { outcome?: string; timeline: { steps: { name: string }[] } };
      assert.deepEqual(result.timeline.steps.map((s) => s.name), rec.steps);
      await watch.close();
      assertScheduledLikeRecorded(watch, rec);
      const after = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
      assert.equal(after.spec?.template.spec?.containers[0].image, before.spec?.template.spec?.containers[0].image, 'back on the image before 1.3');
      assert.equal(await revisionsOf('web'), revisionBefore + 1, 'one revert: exactly one revision more');
      survived = true;
    } finally {
      table.push({ runbook: 'rollback', points, survived });
    }
  });

  test('readinessAudit: one report set however often its worker dies', async () => {
    const rec = recorded('readinessAudit')!;
    const { handle } = await startRunbook(c, 'readinessAudit', [{ environment: 'sandbox', checkTimeoutSeconds: 5 }], {});
    const watch = new HistoryWatch(c.client, handle);
    let survived = false;
    const points = await crashLoop(handle, rec, watch);
    try {
      const result = (await handle.result()) as { auditId: string; reportKeys: string[]; timeline: { steps: { name: string }[] } };
      assert.deepEqual(result.timeline.steps.map((s) => s.name), rec.steps);
      await watch.close();
      assertScheduledLikeRecorded(watch, rec);
      assert.equal(result.reportKeys.length, 3, 'JSON, Markdown and HTML once each');
      assert.equal(new Set(result.reportKeys).size, 3);
      survived = true;
    } finally {
      table.push({ runbook: 'readinessAudit', points, survived });
    }
  });

  test('loadTest: every phase measured once however often its worker dies', async () => {
    const rec = recorded('loadTest')!;
    const { handle } = await startRunbook(c, 'loadTest', [{ environment: 'sandbox' }], {});
    const watch = new HistoryWatch(c.client, handle);
    let survived = false;
    const points = await crashLoop(handle, rec, watch);
    try {
      // A phase whose worker died is measured again by its retry (a load test re-measures); the run still has each phase once.
      const result = (await handle.result()) as { phases?: { phase: string }[]; timeline?: { steps: { name: string }[] } };
      assert.deepEqual(result.timeline?.steps.map((s) => s.name), rec.steps);
      assert.deepEqual(result.phases?.map((p) => p.phase), ['baseline', 'peak', 'failure', 'recovery']);
      await watch.close();
      assertScheduledLikeRecorded(watch, rec);
      survived = true;
    } finally {
      table.push({ runbook: 'loadTest', points, survived });
    }
  });

  test('goLive: one rollout, one report however often its worker dies; the Deployment on the new image, one revision more', async () => {
    const rec = recorded('goLive')!;
    const revisionBefore = await revisionsOf('web');
    const input = {
      environment: 'sandbox',
      deployment: 'web',
      image: 'registry.sandbox.test/web:1.4',
      steps: [{ setWeight: 34 }, { pause: {} }],
      watch: { durationSeconds: 2, intervalSeconds: 1, analysis: { pods: { maxRestarts: 0 } } },
      audit: { checkTimeoutSeconds: 5 },
      waiverWaitSeconds: 600,
    };
    const { handle } = await startRunbook(c, 'goLive', [input], { target: 'web' });
    const watch = new HistoryWatch(c.client, handle);
    const me = operator(stack);
    const waived = new Set<string>();
    const critical = CHECKLIST.filter((i) => i.severity === 'critical').map((i) => i.id);
    // The people: waive every critical item at the audit gate (the plain sandbox proves few), approve, promote the rollout.
    const operate = async () => {
      const phase = (await handle.query(goLiveStatusQuery).catch(() => undefined))?.phase;
      for (const item of phase === 'audit' ? critical.filter((i) => !waived.has(i)) : []) {
        await waive(c, handle, me, { item, reason: 'crash loop on the plain sandbox' });
        waived.add(item);
      }
      const gates = await handle.query(gatesQuery).catch(() => []);
      if (gates.some((g) => g.outcome === 'waiting' && g.name !== 'audit gate')) {
        await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'goLive', 'approve', me, 'crash loop')] });
      }
      const rollout = c.client.workflow.getHandle('rollout-sandbox-web');
      const st = await rollout.query(rolloutStatusQuery).catch(() => undefined);
      if (st?.approvals.some((g) => g.outcome === 'waiting')) await actOnRollout(c, rollout, 'promote', me, 'crash loop');
    };
    let survived = false;
    const points = await crashLoop(handle, rec, watch, operate);
    try {
      const result = (await handle.result()) as { outcome?: string; reportKeys: string[]; timeline: { steps: { name: string }[] } };
      assert.deepEqual(result.timeline.steps.map((s) => s.name), rec.steps);
      await watch.close();
      // Waivers are acts of people, sent as often as the gate took them; every other activity as recorded.
      assertScheduledLikeRecorded(watch, rec, ['describeGatePolicy']);
      const after = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
      assert.equal(after.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/web:1.4');
      assert.equal(await revisionsOf('web'), revisionBefore + 1, 'one rollout: exactly one revision more');
      await assert.rejects(apps.readNamespacedDeployment({ name: 'web-canary', namespace: 'default' }), 'the canary is gone');
      assert.equal(new Set(result.reportKeys).size, result.reportKeys.length);
      survived = true;
    } finally {
      table.push({ runbook: 'goLive', points, survived });
    }
  });
});
