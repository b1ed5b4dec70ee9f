import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import type { WorkflowHandle } from '@temporalio/client';
import { parse, stringify } from 'yaml';
import { ConnectedClient, connectClient } from '../src/cli/client';
import { createDemoDeployment } from '../src/cli/demoRollout';
import { loadConfig } from '../src/config/load';
import { StackState, startStack, stopStack } from '../src/sandbox/stack';
import { freePort } from '../src/system/process';
import { HistoryWatch } from './history-watch';
import { httpStatus, REPO, RUNBOOK_BIN, waitFor } from './helpers';

/*
 * The crash loop: a runbook runs once while its worker (a `runbook worker` process group) is killed
 * with SIGKILL as each step of its recorded step list starts and inside each activity that reports
 * progress by heartbeat; a new worker process is started each time. Judged from the history (every
 * activity scheduled as often as in the recorded run: no step ran twice) and from the world (the
 * Deployment's revisions, the reports in S3). The step lists are those of the recorded happy-path
 * histories in test/histories, so a runbook added later without one fails the registry test below.
 */

const HISTORIES = join(REPO, 'test', 'histories');
export let stack: StackState;
export let c: ConnectedClient;
let configFile: string;
export let apps: k8s.AppsV1Api;
const workers: { child: ChildProcess; exited: Promise<unknown> }[] = [];
/** Crash points per runbook, printed at the end and summed in the README. */
export const table: { runbook: string; points: string[]; survived: boolean }[] = [];

/** Where each runbook's crash test lives: the registry test checks every runbook the worker runs is here. */
export const CRASH_TESTS: Record<string, string> = {
  smokeTest: 'test/integration/crash-suite.test.ts',
  backupDatabase: 'test/integration/crash-suite.test.ts',
  verifyBackup: 'test/integration/crash-suite.test.ts',
  drDrill: 'test/integration/crash-suite.test.ts',
  rollout: 'test/e2e/rollout-cli.test.ts',
  restoreCanary: 'test/integration/pgbackrest.test.ts',
  readinessAudit: 'test/integration/crash-loop.test.ts',
  loadTest: 'test/integration/crash-loop.test.ts',
  backupTemporalConfig: 'test/integration/crash-loop-config.test.ts',
  verifyTemporalConfig: 'test/integration/crash-loop-config.test.ts',
  rollback: 'test/integration/crash-loop-rollback.test.ts',
  // Killed inside its longest step, the migration Job, which must not run twice.
  release: 'test/integration/release.test.ts',
  // Killed during an environment's bake, which must not promote that environment again.
  promotion: 'test/integration/promotion.test.ts',
  goLive: 'test/integration/crash-loop-golive.test.ts',
};

export interface Recorded {
  file: string;
  steps: string[];
  scheduled: Record<string, number>;
  /** Where each step begins in the history: its first activity, as the n-th scheduling of that type. */
  boundaries: { step: string; activityType: string; occurrence: number }[];
}

/** The newest recorded happy path of a runbook: its step names and how often each activity was scheduled. */
export function recorded(runbook: string): Recorded | undefined {
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

/** One sandbox stack (with the Kubernetes test cluster and the demo Deployment) for the file that calls this. */
export function useCrashLoopStack(): void {
  const dir = mkdtempSync(join(tmpdir(), 'runbook-crash-loop-'));
  chmodSync(dir, 0o755);
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
}

function killGroup(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    /* gone */
  }
}

/** A runbook worker and the load generator (the load test's phases run there), started and killed together. */
async function startWorker(): Promise<ChildProcess[]> {
  return Promise.all([startProcess([]), startProcess(['--load-generator'])]);
}

async function startProcess(extra: string[]): Promise<ChildProcess> {
  const port = await freePort();
  const child = spawn(RUNBOOK_BIN, ['--config', configFile, 'worker', ...extra, '--http-port', String(port)], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
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
export async function crashLoop(handle: WorkflowHandle, rec: Recorded, watch: HistoryWatch, operate: () => Promise<void> = async () => undefined): Promise<string[]> {
  const points: string[] = [];
  const pending = [...rec.boundaries];
  const killedInside = new Set<string>();
  let worker = await startWorker();
  const kill = async (point: string) => {
    worker.forEach(killGroup);
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
  worker.forEach(killGroup);
  const closed = watch.events.find((e) => e.workflowExecutionCompletedEventAttributes || e.workflowExecutionFailedEventAttributes || e.workflowExecutionTerminatedEventAttributes || e.workflowExecutionTimedOutEventAttributes);
  const how = closed?.workflowExecutionFailedEventAttributes ? `failed: ${closed.workflowExecutionFailedEventAttributes.failure?.message}` : closed?.workflowExecutionCompletedEventAttributes ? 'completed' : 'closed';
  assert.deepEqual(pending, [], `every step boundary was reached and killed (the run ${how} after ${points.length} kills: ${points.join('; ')})`);
  return points;
}

/** Every activity scheduled as often as in the recorded run: a retried attempt is not a new scheduling. */
export function assertScheduledLikeRecorded(watch: HistoryWatch, rec: Recorded, ignore: string[] = []): void {
  const counts: Record<string, number> = {};
  for (const e of watch.events) {
    const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
    if (name && !ignore.includes(name)) counts[name] = (counts[name] ?? 0) + 1;
  }
  const expected = Object.fromEntries(Object.entries(rec.scheduled).filter(([k]) => !ignore.includes(k)));
  assert.deepEqual(counts, expected, `activities scheduled as in ${rec.file}`);
}

export async function revisionsOf(name: string): Promise<number> {
  return Number((await apps.readNamespacedDeployment({ name, namespace: 'default' })).metadata?.annotations?.['deployment.kubernetes.io/revision'] ?? 0);
}

