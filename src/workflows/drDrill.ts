import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  defineQuery,
  isCancellation,
  patched,
  proxyActivities,
  proxySinks,
  setHandler,
  sleep,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { DrillActivities } from '../activities/topology';
import type { createVisibilityActivities } from '../activities/visibility';
import type { ClusterState, MemberState } from '../topology/types';
import { DrillReport, DrillWrites, renderDrillHtml, renderDrillMarkdown } from '../reports/drill';
import { legacyDrDrillBody } from './drDrillLegacy';
import { Compensations } from './lib/compensation';
import { PERMANENT_FAILURES } from './lib/failures';
import { acquireTarget } from './lib/exclusive';
import { Gates, startFieldProblem } from './lib/gate';
import type { SignedStatement } from '../identity/statement';
import { DATABASE_KEY, describe, ENVIRONMENT_NAME, InputChecker } from './lib/input';
import type { RunbookSinks } from './lib/sinks';
import { runRunbook, Timeline, TimelineSnapshot } from './lib/timeline';

// Reads and checks: quick, retried a few times.
const inspect = proxyActivities<DrillActivities & ReturnType<typeof createVisibilityActivities>>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
});
// Changes to the topology and the service endpoint: each checks before it acts, so a retry after a
// crash does not act twice. They heartbeat, so an attempt lost with its worker is retried within seconds.
const act = proxyActivities<DrillActivities>({
  startToCloseTimeout: '3 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 5, nonRetryableErrorTypes: PERMANENT_FAILURES },
});
// Waiting for a new primary: the driver gives up after the topology's electionTimeout; the activity
// heartbeats while it watches, so a lost worker is replaced within seconds.
const elect = proxyActivities<DrillActivities>({
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
});
// Waiting for a rejoined replica to stream, a switchover, counting lost writes: minutes, with heartbeats.
const waitFor = proxyActivities<DrillActivities>({
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
});
// The write load runs until the drill cancels it after verification; a short heartbeat timeout lets a
// new worker continue it soon after its worker dies, and cancellation is waited for, so the writer
// has stopped before its log is read.
const load = proxyActivities<DrillActivities>({
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '5 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '1 second', backoffCoefficient: 1, maximumAttempts: 10, nonRetryableErrorTypes: PERMANENT_FAILURES },
});

const sinks = proxySinks<RunbookSinks>();

export interface DrDrillInput {
  environment: string;
  database: string;
  /** failover: the primary dies hard (processes killed) and a new one must take over; switchover: planned, nothing may be lost. */
  mode: 'failover' | 'switchover';
  /** Make the old primary a replica of the new one afterwards (default true). */
  failback?: boolean;
  /** After failback, switch roles back: the original primary leads again and the service endpoint reaches it (default false). */
  switchBack?: boolean;
  /** How long the approval gate waits before the drill ends unchanged (default 3600). */
  approvalTimeoutSeconds?: number;
  /** Preflight also requires a restore test (verifyBackup) that passed within this many days. */
  requireRestoreTestWithinDays?: number;
  /**
   * Writes during the drill: numbered rows through the service endpoint at `rate` per second, from
   * `warmupSeconds` (default 3) before the fault until writes are verified again; the acknowledged rows
   * missing afterwards are the RPO.
   */
  writeLoad?: { rate: number; warmupSeconds?: number };
  /** Targets for this drill instead of the environment's (targets.rpo / targets.rto); rpoMs 0 means no acknowledged write may be lost. */
  targets?: { rpoMs?: number; rtoMs?: number };
  /** The requester's signed start (runbook drill start signs it); a scheduled run has none. */
  start?: SignedStatement;
}

export type DrDrillResult = DrillReport & { runbook: 'drDrill'; reportKeys: string[]; timeline: TimelineSnapshot };

/** The timeline so far, under the name operators look for during a drill. */
export const progressQuery = defineQuery<TimelineSnapshot>('progress');

export const MAX_WRITE_LOAD_RATE = 250;

export function validateDrDrillInput(input: unknown): DrDrillInput {
  const check = InputChecker.of('drDrill', input);
  check.matches('environment', ENVIRONMENT_NAME, 'an environment name');
  check.matches('database', DATABASE_KEY, 'a database key from the config (e.g. main)');
  const v = check.value;
  if (v.mode !== 'failover' && v.mode !== 'switchover') check.problem(`mode: expected failover or switchover, found ${describe(v.mode)}`);
  if (v.failback !== undefined && typeof v.failback !== 'boolean') check.problem(`failback: expected true or false, found ${describe(v.failback)}`);
  if (v.switchBack !== undefined && typeof v.switchBack !== 'boolean') check.problem(`switchBack: expected true or false, found ${describe(v.switchBack)}`);
  if (v.switchBack === true && v.failback === false) check.problem('switchBack: needs failback (the original primary must be a replica before it can lead again)');
  const t = v.approvalTimeoutSeconds;
  if (t !== undefined && (typeof t !== 'number' || !Number.isFinite(t) || t < 1 || t > 7 * 86_400)) check.problem(`approvalTimeoutSeconds: expected 1 to 604800, found ${describe(t)}`);
  const d = v.requireRestoreTestWithinDays;
  if (d !== undefined && (typeof d !== 'number' || !Number.isFinite(d) || d <= 0 || d > 366)) check.problem(`requireRestoreTestWithinDays: expected a number of days from 1 to 366, found ${describe(d)}`);
  const w = v.writeLoad as { rate?: unknown; warmupSeconds?: unknown } | undefined;
  if (w !== undefined) {
    if (typeof w !== 'object' || w === null || Array.isArray(w)) check.problem(`writeLoad: expected { rate, warmupSeconds }, found ${describe(w)}`);
    else {
      if (typeof w.rate !== 'number' || !Number.isFinite(w.rate) || w.rate < 1 || w.rate > MAX_WRITE_LOAD_RATE) check.problem(`writeLoad.rate: expected 1 to ${MAX_WRITE_LOAD_RATE} rows per second, found ${describe(w.rate)}`);
      const s = w.warmupSeconds;
      if (s !== undefined && (typeof s !== 'number' || !Number.isFinite(s) || s < 0 || s > 600)) check.problem(`writeLoad.warmupSeconds: expected 0 to 600, found ${describe(s)}`);
    }
  }
  const tg = v.targets as { rpoMs?: unknown; rtoMs?: unknown } | undefined;
  if (tg !== undefined) {
    if (typeof tg !== 'object' || tg === null || Array.isArray(tg)) check.problem(`targets: expected { rpoMs, rtoMs }, found ${describe(tg)}`);
    else {
      for (const k of ['rpoMs', 'rtoMs'] as const) {
        const x = tg[k];
        if (x !== undefined && (typeof x !== 'number' || !Number.isInteger(x) || x < (k === 'rpoMs' ? 0 : 1) || x > 30 * 86_400_000)) check.problem(`targets.${k}: expected milliseconds from ${k === 'rpoMs' ? 0 : 1} to 30 days, found ${describe(x)}`);
      }
    }
  }
  const startProblem = startFieldProblem(v.start);
  if (startProblem) check.problem(startProblem);
  check.done();
  return v as unknown as DrDrillInput;
}

/** PostgreSQL LSN text (X/Y, hex) as a number of bytes. */
function lsnBytes(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

class DrillFailure extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

type EndpointView = Awaited<ReturnType<DrillActivities['locateServiceEndpoint']>>;

/** The replica that should take over: streaming, synchronous if the cluster is, least behind. */
function chooseCandidate(cluster: ClusterState): MemberState | undefined {
  const replicas = cluster.members.filter((m) => m.role === 'replica' && m.streaming);
  return replicas.sort((a, b) => Number(b.synchronous ?? false) - Number(a.synchronous ?? false) || (a.lagBytes ?? 0) - (b.lagBytes ?? 0))[0];
}

function preflightProblems(cluster: ClusterState, endpoint: EndpointView, rpoMs: number | undefined, approvers: string[]): { problems: string[]; primary?: MemberState; candidate?: MemberState } {
  const problems = [...cluster.problems];
  const primary = cluster.members.find((m) => m.name === cluster.primary);
  const candidate = chooseCandidate(cluster);
  if (primary && !candidate && !problems.some((p) => p.includes('replica'))) problems.push('no streaming replica could take over');
  for (const r of cluster.members) {
    if (r.role === 'replica' && rpoMs !== undefined && rpoMs > 0 && r.replayLagMs !== undefined && r.replayLagMs > rpoMs) problems.push(`replica ${r.name} lags ${r.replayLagMs} ms behind, more than the RPO target of ${rpoMs} ms`);
  }
  if (endpoint.error) problems.push(`the service endpoint (${endpoint.endpoint}) does not answer: ${endpoint.error}`);
  else if (primary && (endpoint.reaches !== primary.name || !endpoint.writable)) {
    problems.push(`the service endpoint (${endpoint.endpoint}) reaches ${endpoint.reaches ?? 'no known node'}${endpoint.answers ? ` (answers ${JSON.stringify(endpoint.answers)})` : ''}, not the writable primary ${primary.name}`);
  }
  if (approvers.length === 0) problems.push('no approvers are configured for drDrill (approvers.drDrill or approvers.default)');
  return { problems, primary, candidate };
}

/**
 * A planned switchover back to the original primary, through the driver (the local driver stops the
 * current primary cleanly, waits for replay and promotes; Patroni's /switchover does all of it), then
 * the service endpoint, a verified write, and the other node rejoined as a replica.
 */
async function switchBack(timeline: Timeline, db: string, current: string, original: string, drillId: string): Promise<void> {
  await timeline.step('switch back: hand the primary role back', async (evidence) => {
    const s = await waitFor.switchPrimary({ database: db, from: current, to: original });
    const e = await act.switchServiceEndpoint({ database: db, primary: original });
    const v = await act.verifyThroughServiceEndpoint({ database: db, drillId: `${drillId}-back`, markerDrillId: drillId });
    Object.assign(evidence, { from: current, to: original, switched: s.switched, ...s.detail, endpointChanged: e.changed, verifiedOn: v.node, markerPresent: v.markerPresent });
    if (v.node !== original) throw new DrillFailure('DrillFailed', `after switching back the service endpoint reaches ${v.node}, not ${original}`);
  });
  await timeline.step('switch back: rejoin the other node as a replica', async (evidence) => {
    Object.assign(evidence, await waitFor.rejoinFormerPrimary({ database: db, member: current, primary: original, drillId: `${drillId}-back` }));
  });
}

/**
 * The DR drill: preflight (through the topology driver and the service endpoint), approval, marker,
 * optional write load, the fault, the new primary (elected by Patroni, or promoted by the local
 * driver), the service endpoint switched or watched, a verified write, RTO split into detection,
 * promotion, endpoint and first write, RPO from the writes acknowledged and lost, failback, report.
 * After the fault, a failure or an abort restores service before the run fails.
 */
export async function drDrill(rawInput: DrDrillInput): Promise<DrDrillResult> {
  const input = validateDrDrillInput(rawInput);
  const gates = new Gates('drDrill', input.environment);
  return runRunbook('drDrill', input.environment, async (timeline: Timeline) => {
    gates.attach(timeline);
    setHandler(progressQuery, () => timeline.snapshot());
    // Drills started before the topology drivers have no marker: they finish on the code they started with.
    if (!patched('topology-drivers')) return legacyDrDrillBody(input, timeline, gates);
    const compensations = new Compensations();
    const drillId = `drill-${uuid4().replace(/-/g, '').slice(0, 12)}`;
    const db = input.database;
    const report: DrillReport = {
      drillId,
      workflowId: workflowInfo().workflowId,
      environment: input.environment,
      database: db,
      mode: input.mode,
      passed: false,
      reasons: [],
      compensation: [],
      steps: [],
      startedAt: new Date(Date.now()).toISOString(),
      endedAt: '',
    };
    const checkAbort = () => {
      if (gates.aborted) throw new DrillFailure('DrillAborted', `aborted by ${gates.aborted.principal} (key ${gates.aborted.fingerprint})${gates.aborted.reason ? `: ${gates.aborted.reason}` : ''}`);
    };
    const finishReport = async (): Promise<string[]> => {
      report.endedAt = new Date(Date.now()).toISOString();
      report.steps = timeline.snapshot().steps;
      const { keys } = await inspect.writeDrillReport({ drillId, json: report, markdown: renderDrillMarkdown(report), html: renderDrillHtml(report) });
      return keys;
    };
    let writer: { scope: CancellationScope; done: Promise<unknown> } | undefined;
    const stopWriter = async (): Promise<string | undefined> => {
      if (!writer) return undefined;
      const w = writer;
      writer = undefined;
      w.scope.cancel();
      try {
        await w.done;
      } catch (err) {
        if (!isCancellation(err)) return err instanceof ActivityFailure && err.cause ? err.cause.message : String(err);
      }
      return undefined;
    };
    const failWith = async (err: unknown): Promise<never> => {
      const type = err instanceof DrillFailure ? err.type : 'DrillFailed';
      const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : err instanceof Error ? err.message : String(err);
      // Name the step that failed, unless the drill's own failure already says what happened.
      const failedStep = timeline.snapshot().steps.filter((s) => s.outcome === 'failed').pop();
      const message = err instanceof DrillFailure || !failedStep ? cause : `step '${failedStep.name}' failed: ${cause}`;
      report.reasons.push(message);
      await CancellationScope.nonCancellable(() => stopWriter());
      if (compensations.pending > 0) report.compensation = await compensations.run(timeline);
      const keys = await finishReport().catch(() => []);
      throw ApplicationFailure.create({ type, message: `drill ${drillId} failed: ${message}`, nonRetryable: true, details: [{ ...report, reportKeys: keys }] });
    };

    let target: Awaited<ReturnType<DrillActivities['describeDrillTarget']>>;
    let primary: MemberState;
    let candidate: MemberState;
    let cluster: ClusterState;
    try {
      await gates.start(input as unknown as Record<string, unknown>);
      ({ target, primary, candidate, cluster } = await timeline.step('preflight', async (evidence) => {
        const t = await inspect.describeDrillTarget({ database: db, environment: input.environment });
        if (input.targets?.rpoMs !== undefined) t.rpoMs = input.targets.rpoMs;
        if (input.targets?.rtoMs !== undefined) t.rtoMs = input.targets.rtoMs;
        const [c, endpoint] = await Promise.all([inspect.describeCluster({ database: db }), inspect.locateServiceEndpoint({ database: db })]);
        const { problems, primary: p, candidate: r } = preflightProblems(c, endpoint, t.rpoMs, t.approvers);
        Object.assign(evidence, {
          driver: c.driver,
          members: c.members.map((m) => `${m.name}=${m.role}${m.role === 'replica' ? ` (${m.streaming ? 'streaming' : 'not streaming'}, lag ${m.lagBytes ?? '?'} B)` : ''}${m.timeline ? ` tl ${m.timeline}` : ''}`),
          dcs: c.dcs ?? null,
          settings: c.settings,
          serviceEndpoint: endpoint.endpoint,
          endpointReaches: endpoint.reaches ?? null,
          candidate: r?.name ?? null,
        });
        if (input.requireRestoreTestWithinDays !== undefined) {
          // A restore test of this database: another database's proves nothing about this one.
          const last = await inspect.lastSuccessfulRun({ runbook: 'verifyBackup', target: db });
          const ageMs = last ? Date.now() - Date.parse(last.closedAt) : undefined;
          evidence.lastRestoreTest = last ? { ...last, ageDays: Number((ageMs! / 86_400_000).toFixed(2)) } : null;
          if (ageMs === undefined || ageMs > input.requireRestoreTestWithinDays * 86_400_000) {
            problems.push(`no restore test of database ${db} passed within ${input.requireRestoreTestWithinDays} days${last ? ` (the last one: ${last.workflowId} at ${last.closedAt})` : ''}`);
          }
        }
        if (problems.length) throw new DrillFailure('DrillPreflightFailed', `preflight failed, nothing was changed: ${problems.join('; ')}`);
        // What will be done, shown to the approver while the gate waits.
        evidence.plan = await inspect.planDrillFault({ database: db, member: p!.name, candidate: r!.name, mode: input.mode });
        report.plan = evidence.plan as string[];
        return { target: t, primary: p!, candidate: r!, cluster: c };
      }));
      report.driver = cluster.driver;
      report.serviceEndpoint = target.serviceEndpoint;
      report.settings = cluster.settings;
      report.primaryBefore = primary.name;

      const approval = await timeline.step('approval gate', async (evidence) => {
        const g = await gates.wait('start the drill', (input.approvalTimeoutSeconds ?? 3600) * 1000);
        Object.assign(evidence, { outcome: g.outcome, by: g.by ?? null, fingerprint: g.fingerprint ?? null, reason: g.reason ?? null, approvals: g.approvals.map((a) => `${a.principal} (${a.fingerprint})`), required: g.required, requester: gates.requester?.principal ?? null, allowed: g.allowed, ignored: g.ignored });
        if (g.outcome !== 'approved') throw new DrillFailure('DrillNotApproved', `the drill was ${g.outcome}${g.by ? ` by ${g.by}` : ''} at the approval gate; nothing was changed`);
        return g;
      });
      report.approval = approval;
      checkAbort();
    } catch (err) {
      // Input the worker refuses (an environment it does not serve, a database without a topology) is not a drill: no report is left behind.
      if (err instanceof ActivityFailure && err.cause instanceof ApplicationFailure && err.cause.type === 'InvalidInput') {
        throw ApplicationFailure.create({ type: 'InvalidInput', message: `invalid drDrill input: ${err.cause.message}`, nonRetryable: true });
      }
      if (err instanceof ApplicationFailure && err.type === 'StartRefused') throw err;
      return failWith(err);
    }

    try {
      const marker = await timeline.step('write marker', async (evidence) => {
        // The first change: from here on no other mutating run (a backup, another drill) acts on this database.
        const held = await acquireTarget({ environment: input.environment, runbook: 'drDrill', kind: 'database', target: db });
        if (held) evidence.target = `database ${db} held (${held.held})`;
        const m = await act.writeDrillMarker({ database: db, node: primary.name, drillId });
        Object.assign(evidence, { node: primary.name, lsn: m.lsn, writtenAt: m.writtenAt });
        return m;
      });
      checkAbort();

      if (input.writeLoad) {
        const rate = input.writeLoad.rate;
        await timeline.step('start the write load', async (evidence) => {
          const scope = new CancellationScope();
          const done = scope.run(() => load.runWriteLoad({ database: db, drillId, rate, maxSeconds: 3600 }));
          // Observed later by stopWriter; a rejection before then must not end the workflow task.
          done.catch(() => undefined);
          writer = { scope, done };
          const warmup = input.writeLoad!.warmupSeconds ?? 3;
          // The load runs against the old primary for a while, so the fault falls amid acknowledged commits.
          if (warmup > 0) await sleep(warmup * 1000);
          Object.assign(evidence, { rate, warmupSeconds: warmup, through: target.serviceEndpoint });
        });
        checkAbort();
      }

      // From here on, service must be restored whatever happens.
      compensations.add('restore a writable primary and point the service endpoint at it', async () => {
        const p = await act.restoreWritablePrimary({ database: db, formerPrimary: primary.name });
        const e = await act.switchServiceEndpoint({ database: db, primary: p.primary });
        return { primary: p.primary, action: p.action, endpointChanged: e.changed };
      });
      // The RTO clock starts here, once, in workflow state: a retried fault activity cannot move it.
      const clockStartedAt = new Date(Date.now()).toISOString();
      const fault = await timeline.step(input.mode === 'failover' ? 'fault: the primary dies hard' : 'fault: planned switchover', async (evidence) => {
        evidence.clockStartedAt = clockStartedAt;
        const f = await act.injectFault({ database: db, member: primary.name, candidate: candidate.name, mode: input.mode });
        Object.assign(evidence, { member: primary.name, acted: f.acted, attempt: f.attempt, activityStartedAt: f.startedAt, ...f.detail });
        return f;
      });
      checkAbort();

      const elected = await timeline.step('new primary: detected and writable', async (evidence) => {
        const n = await elect.awaitNewPrimary({ database: db, formerPrimary: primary.name, candidate: candidate.name, mode: input.mode });
        Object.assign(evidence, { primary: n.name, detectedAt: n.detectedAt, writableAt: n.writableAt, timeline: n.timeline ?? null, ...n.detail });
        return n;
      });
      report.primaryAfter = elected.name;
      checkAbort();

      const endpoint = await timeline.step('switch the service endpoint', async (evidence) => {
        const e = await act.switchServiceEndpoint({ database: db, primary: elected.name });
        Object.assign(evidence, { serviceEndpoint: target.serviceEndpoint, to: elected.name, kind: e.kind, changed: e.changed, previous: e.previous, reachedAt: e.reachedAt });
        return e;
      });
      checkAbort();

      const verified = await timeline.step('verify through the service endpoint', async (evidence) => {
        const v = await act.verifyThroughServiceEndpoint({ database: db, drillId: `${drillId}-verify`, markerDrillId: drillId });
        Object.assign(evidence, v);
        if (v.node !== elected.name) throw new DrillFailure('DrillFailed', `the service endpoint reaches ${v.node}, not the new primary ${elected.name}`);
        return v;
      });

      await timeline.step('measure RTO and RPO', async (evidence) => {
        const writerError = await stopWriter();
        const t0 = Date.parse(clockStartedAt);
        const at = (iso: string) => Date.parse(iso);
        const rtoMs = at(verified.writeAt) - t0;
        const split = {
          detectionMs: Math.max(0, at(elected.detectedAt) - t0),
          promotionMs: Math.max(0, at(elected.writableAt) - at(elected.detectedAt)),
          endpointMs: Math.max(0, at(endpoint.reachedAt) - at(elected.writableAt)),
          firstWriteMs: Math.max(0, at(verified.writeAt) - at(endpoint.reachedAt)),
        };
        const s = cluster.settings;
        // Patroni notices a dead leader once its key expires (ttl) and acts on its next loop.
        const detectionBoundMs = input.mode === 'failover' && s.ttl !== undefined ? (s.ttl + (s.loopWait ?? 0)) * 1000 : undefined;
        report.rto = { ms: rtoMs, targetMs: target.rtoMs, met: target.rtoMs === undefined ? null : rtoMs <= target.rtoMs, clockStartedAt, faultAt: fault.startedAt, split, detectionBoundMs };

        let lostBytes = 0;
        let rpoMs = 0;
        let writes: DrillWrites | undefined;
        if (input.writeLoad) {
          const w = await waitFor.countLostWrites({ database: db, drillId, primary: elected.name, faultAt: clockStartedAt });
          writes = { ...w, rate: input.writeLoad.rate, writerError: writerError ?? null };
          lostBytes = w.lostBytes;
          rpoMs = w.rpoMs;
          if (writerError) report.reasons.push(`the write load failed: ${writerError}`);
        } else if (!verified.markerPresent) {
          const sp = await waitFor.timelineSwitchPoint({ database: db, primary: elected.name });
          const lost = sp.lsn ? lsnBytes(marker.lsn) - lsnBytes(sp.lsn) : 0n;
          lostBytes = Number(lost > 0n ? lost : 0n);
          rpoMs = Math.max(0, at(clockStartedAt) - at(marker.writtenAt));
        }
        const lostRows = (writes?.lost ?? 0) + (verified.markerPresent ? 0 : 1);
        // A target of 0 means nothing acknowledged may be lost; otherwise the span lost must fit in it.
        const met = target.rpoMs === undefined ? null : target.rpoMs === 0 ? lostRows === 0 : rpoMs <= target.rpoMs;
        report.rpo = { markerPresent: verified.markerPresent, lostBytes, ms: rpoMs, targetMs: target.rpoMs, met, synchronousMode: s.synchronousMode, lostRows, writes };
        if (report.rto.met === false) report.reasons.push(`RTO ${rtoMs} ms exceeds the target of ${target.rtoMs} ms`);
        if (met === false) {
          report.reasons.push(
            target.rpoMs === 0
              ? `RPO target 0: ${lostRows} acknowledged write${lostRows === 1 ? ' was' : 's were'} lost (${s.synchronousMode ? 'synchronous' : 'asynchronous'} replication)`
              : `RPO ${rpoMs} ms exceeds the target of ${target.rpoMs} ms (${lostRows} acknowledged writes lost)`,
          );
        }
        if (input.mode === 'switchover' && lostRows > 0) report.reasons.push(`switchover lost ${lostRows} acknowledged write${lostRows === 1 ? '' : 's'}: a planned switchover must lose nothing`);
        for (const c of verified.checks.filter((x) => !x.passed)) report.reasons.push(`health check ${c.name}: ${c.detail}`);
        Object.assign(evidence, {
          rtoMs,
          ...split,
          detectionBoundMs: detectionBoundMs ?? null,
          rpoMs,
          lostRows,
          lostBytes,
          markerPresent: verified.markerPresent,
          synchronousMode: s.synchronousMode,
          acknowledged: writes?.acknowledged ?? null,
          rtoTargetMs: target.rtoMs ?? null,
          rpoTargetMs: target.rpoMs ?? null,
        });
      });

      if (input.failback === false) {
        timeline.skip('failback', 'disabled for this drill');
        report.failback = { skipped: 'disabled for this drill' };
      } else {
        await timeline.step('failback: rejoin the old primary as a replica', async (evidence) => {
          const f = await waitFor.rejoinFormerPrimary({ database: db, member: primary.name, primary: elected.name, drillId });
          Object.assign(evidence, f);
          report.failback = { method: f.method, streaming: f.streaming, keptAside: f.keptAside };
        });
        if (input.switchBack) await switchBack(timeline, db, elected.name, primary.name, drillId);
        report.primaryAfter = input.switchBack ? primary.name : elected.name;
      }
    } catch (err) {
      return failWith(err);
    }

    report.passed = report.reasons.length === 0;
    sinks.runbookMetrics.drillMeasured(input.environment, report.passed, report.rto?.ms ?? 0, report.rpo?.ms ?? 0, Date.now());
    const reportKeys = await timeline.step('write report', async (evidence) => {
      report.endedAt = new Date(Date.now()).toISOString();
      const keys = await finishReport();
      evidence.keys = keys;
      return keys;
    });
    if (!report.passed) {
      throw ApplicationFailure.create({ type: 'DrillTargetsMissed', message: `drill ${drillId}: ${report.reasons.join('; ')}`, nonRetryable: true, details: [{ ...report, reportKeys }] });
    }
    return { ...report, runbook: 'drDrill' as const, reportKeys };
  });
}
