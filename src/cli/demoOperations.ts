/**
 * The demo's second half: a rollback of web, a readiness audit with its score line, a go-live of a
 * second Deployment (audit gate with signed waivers, smoke tests, signed approval, rollout, watch
 * window) and a short load test. Each returns what the demo's summary shows.
 */
import { WorkflowFailedError, WorkflowHandle } from '@temporalio/client';
import { createSampleDeployment } from '../sandbox/kubernetes';
import { k8sRuntime } from '../activities/k8sRuntime';
import type { RollbackResult } from '../workflows/rollback';
import { GoLiveResult, goLiveStatusQuery, GoLiveStatus } from '../workflows/goLive';
import type { GoLiveReport } from '../reports/golive';
import { ConnectedClient, failureMessage, startRunbook } from './client';
import { describeAudit, runAudit } from './audit';
import { startGoLive, waive } from './golive';
import { describeLoadTest, runLoadTest } from './loadtest';
import { waitWithProgress } from './progress';
import { decideGate, Signer } from './sign';
import type { DemoOutcome } from './demoRelease';

/** The go-live's Deployment: two replicas of shop:1.0, created next to web. */
export const DEMO_GOLIVE_DEPLOYMENT = 'shop';

/** The demo's load test: noop workflows at 5/s for four 5 s phases, the bench workers stopped for 4 s of the failure phase. */
export const DEMO_LOAD_TEST = {
  scenario: 'noop',
  baselineRate: 5,
  peakMultiplier: 2,
  phaseDuration: '5s',
  failure: { mode: 'workers-stopped', outage: '4s' },
  sla: { p99StartToComplete: '3s', maxErrorRate: 0 },
};

export async function createGoLiveApp(kubeconfig: string): Promise<void> {
  const kc = new (k8sRuntime().KubeConfig)();
  kc.loadFromFile(kubeconfig);
  await createSampleDeployment(kc.makeApiClient(k8sRuntime().AppsV1Api), { name: DEMO_GOLIVE_DEPLOYMENT, image: `registry.sandbox.test/${DEMO_GOLIVE_DEPLOYMENT}:1.0`, replicas: 2, container: DEMO_GOLIVE_DEPLOYMENT });
}

const queueOf = async (handle: WorkflowHandle) => (await handle.describe()).taskQueue;

/** web back to its previous revision (the promotion's 1.3 becomes the release's 1.2), verified by its pods' readiness and restarts. */
export async function runDemoRollback(c: ConnectedClient, showProgress: boolean): Promise<DemoOutcome> {
  const { handle, workflowId } = await startRunbook(
    c,
    'rollback',
    [{ environment: c.environment, deployment: 'web', analysis: { count: 1, pods: { maxRestarts: 0, minReadyRatio: 1 } }, healthTimeoutSeconds: 120, reason: 'demo: back to the release', requestedBy: 'sandbox-operator' }],
    { target: 'web' },
  );
  const queue = await queueOf(handle);
  try {
    const r = await waitWithProgress<RollbackResult>(handle, showProgress);
    const imgs = (x: { images: { image: string }[] }) => x.images.map((i) => i.image).join(', ');
    const text = `rollback ${r.changed ? 'done' : 'not needed'}: web revision ${r.from.revision} (${imgs(r.from)}) -> ${r.to.revision} (${imgs(r.to)}); verified: ${r.verified}`;
    return { ok: r.changed && r.verified === true, workflowId, queue, result: r, text };
  } catch (err) {
    return { ok: false, workflowId, queue, error: failureMessage(err), text: `rollback FAILED (workflow ${workflowId}): ${failureMessage(err)}` };
  }
}

/**
 * The readiness audit of the sandbox. The run passes when it completes with a report; the sandbox is
 * not production-ready (nobody attested the people-side items, and the plain stack proves only part
 * of the rest), and the score line says so.
 */
export async function runDemoAudit(c: ConnectedClient, showProgress: boolean): Promise<DemoOutcome> {
  const o = await runAudit(c, { checkTimeoutSeconds: 5, certificateMinDays: 1 }, showProgress);
  const handle = c.client.workflow.getHandle(o.workflowId);
  const text = describeAudit(o).split('\n')[0];
  return { ok: o.report !== undefined, workflowId: o.workflowId, queue: await queueOf(handle), result: o.report, error: o.error, text };
}

/**
 * A go-live of shop:1.1. Its audit finds the critical items the sandbox cannot prove; the reviewer
 * waives each with a signed reason, approves with a signed decision, and the rollout and a short watch
 * window (pods ready, no restarts) follow.
 */
export async function runDemoGoLive(c: ConnectedClient, signers: { requester: Signer; approver: Signer }, showProgress: boolean): Promise<DemoOutcome> {
  const dep = DEMO_GOLIVE_DEPLOYMENT;
  const pods = { maxRestarts: 0, minReadyRatio: 1 };
  const { handle, workflowId } = await startGoLive(
    c,
    {
      environment: c.environment,
      deployment: dep,
      image: `registry.sandbox.test/${dep}:1.1`,
      steps: [{ setWeight: 50 }, { pause: { durationSeconds: 1 } }],
      healthTimeoutSeconds: 120,
      watch: { durationSeconds: 4, intervalSeconds: 2, analysis: { pods } },
      audit: { checkTimeoutSeconds: 5, certificateMinDays: 1 },
      waiverWaitSeconds: 300,
      approvalTimeoutSeconds: 300,
    },
    signers.requester,
  );
  const queue = await queueOf(handle);
  const done = waitWithProgress<GoLiveResult>(handle, showProgress).then(
    (r) => ({ report: r as GoLiveReport & { reportKeys: string[] }, error: undefined as string | undefined }),
    (err: unknown) => ({ report: err instanceof WorkflowFailedError ? ((err.cause as { details?: unknown[] } | undefined)?.details?.[0] as (GoLiveReport & { reportKeys: string[] }) | undefined) : undefined, error: failureMessage(err) }),
  );
  let finished = false;
  void done.then(() => (finished = true));
  const waived = new Set<string>();
  const deadline = Date.now() + 600_000;
  while (!finished && Date.now() < deadline) {
    const s: GoLiveStatus | undefined = await handle.query(goLiveStatusQuery).catch(() => undefined);
    if (s?.phase === 'audit' && s.blocking?.length && s.waitingFor?.startsWith('signed waivers')) {
      for (const b of s.blocking.filter((x) => !waived.has(x.id))) {
        await waive(c, handle, signers.approver, { item: b.id, reason: `demo: the sandbox is not production; ${b.id} is ${b.status} here` });
        waived.add(b.id);
      }
    } else if (s?.phase === 'approval' && s.approvals.some((g) => g.outcome === 'waiting')) {
      await decideGate(c, handle, 'goLive', 'approve', signers.approver, 'demo: audit gate passed with signed waivers');
      break;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const { report, error } = await done;
  const head = report ? `go-live ${report.passed ? `LIVE: ${dep} runs ${report.image}` : `${report.outcome.toUpperCase()}: ${report.reason}`}` : `go-live FAILED (workflow ${workflowId}): ${error}`;
  const lines = [head];
  if (report?.audit) lines.push(`  audit gate: score ${(report.audit.score * 100).toFixed(0)}%, ${report.audit.waived.length} critical item(s) waived by ${[...new Set(report.audit.waived.map((w) => w.by))].join(', ') || 'nobody'}`);
  if (report?.watch) lines.push(`  watch window: ${report.watch.passed ? 'quiet' : `alert: ${report.watch.reason}`} (${report.watch.measurements} of ${report.watch.of} measurements)`);
  return { ok: report?.passed === true, workflowId, queue, result: report, error, text: lines.join('\n') };
}

/** A short load test (DEMO_LOAD_TEST): the failure phase misses its SLA by design; the run passes when the other phases hold theirs and nothing is lost. */
export async function runDemoLoadTest(c: ConnectedClient, showProgress: boolean): Promise<DemoOutcome> {
  const o = await runLoadTest(c, { wait: true, showProgress });
  return { ok: o.ok, workflowId: o.workflowId, queue: o.taskQueue, result: o.result, error: o.error, text: describeLoadTest(o) };
}
