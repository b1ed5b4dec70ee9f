import { ActivityFailure, ApplicationFailure, proxyActivities, proxySinks, uuid4, workflowInfo } from '@temporalio/workflow';
import type { LegacyDrillActivities as DrillActivities, NodeState } from '../activities/topologyLegacy';
import type { createVisibilityActivities } from '../activities/visibility';
import { DrillReport, renderDrillHtml, renderDrillMarkdown } from '../reports/drill';
import { Compensations } from './lib/compensation';
import { acquireTarget } from './lib/exclusive';
import { PERMANENT_FAILURES } from './lib/failures';
import { Gates } from './lib/gate';
import type { DrDrillInput, DrDrillResult } from './drDrill';
import type { RunbookSinks } from './lib/sinks';
import type { Timeline } from './lib/timeline';

// Reads and checks: quick, retried a few times.
const inspect = proxyActivities<DrillActivities & ReturnType<typeof createVisibilityActivities>>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
});
// Changes to the topology and DNS: each checks before it acts, so a retry after a crash does not act twice.
// They heartbeat, so an attempt lost with its worker is retried within seconds, not minutes.
const act = proxyActivities<DrillActivities>({
  startToCloseTimeout: '3 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 5, nonRetryableErrorTypes: PERMANENT_FAILURES },
});
// Promotion: a replica that cannot be reached is not waited for long; compensation takes over.
const promote = proxyActivities<DrillActivities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
});
// Waiting for replay or for a rejoined replica to stream: minutes, with heartbeats.
const waitFor = proxyActivities<DrillActivities>({
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
});

const sinks = proxySinks<RunbookSinks>();

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

function preflightProblems(nodes: NodeState[], dnsAnswer: string[], rpoMs: number | undefined, approvers: string[]): { problems: string[]; primary?: NodeState; replica?: NodeState } {
  const problems: string[] = [];
  for (const n of nodes) if (!n.reachable) problems.push(`node ${n.name} (${n.host}:${n.port}) is not reachable: ${n.error}`);
  const primaries = nodes.filter((n) => n.role === 'primary');
  if (primaries.length !== 1) problems.push(`expected exactly one primary, found ${primaries.length}`);
  const primary = primaries[0];
  const replica = nodes.find((n) => n.role === 'replica');
  if (!replica) problems.push('no replica found');
  const stream = primary?.replicas?.find((r) => r.name === replica?.name);
  if (primary && replica && stream?.state !== 'streaming') problems.push(`replica ${replica.name} is not streaming from ${primary.name} (state ${stream?.state ?? 'not connected'})`);
  if (stream && rpoMs !== undefined && stream.replayLagMs > rpoMs) problems.push(`replication lag ${stream.replayLagMs} ms exceeds the RPO target of ${rpoMs} ms`);
  if (primary && !(dnsAnswer.length === 1 && dnsAnswer[0] === primary.host)) problems.push(`the service name answers ${JSON.stringify(dnsAnswer)}, not the primary ${primary.host}`);
  if (approvers.length === 0) problems.push('no approvers are configured for drDrill (approvers.drDrill or approvers.default)');
  return { problems, primary, replica };
}

/**
 * A planned switchover back to the original primary: stop the current one cleanly, let the original
 * replay everything, promote it, point the service name back, verify, and rejoin the other as replica.
 */
async function switchBack(timeline: Timeline, db: string, current: NodeState, original: NodeState, drillId: string): Promise<void> {
  await timeline.step('switch back: stop writes on the current primary and drain', async (evidence) => {
    const [state] = (await inspect.inspectNodes({ database: db })).filter((n) => n.name === current.name);
    await act.stopDatabaseNode({ database: db, node: current.name, mode: 'fast' });
    const r = await waitFor.waitForReplay({ database: db, node: original.name, lsn: state.lsn!, timeoutMs: 120_000 });
    Object.assign(evidence, { stopped: current.name, lsn: state.lsn, replayedLsn: r.replayedLsn });
  });
  await timeline.step('switch back: promote the original primary and point DNS at it', async (evidence) => {
    await act.confirmNodeDown({ database: db, node: current.name });
    const p = await promote.promoteNode({ database: db, node: original.name });
    const d = await act.switchServiceName({ database: db, address: original.host });
    const v = await act.verifyThroughServiceName({ database: db, drillId: `${drillId}-back`, markerDrillId: drillId });
    Object.assign(evidence, { promoted: p.promoted, dnsChanged: d.changed, verifiedOn: v.node, markerPresent: v.markerPresent });
    if (v.node !== original.name) throw new DrillFailure('DrillFailed', `after switching back the service name reaches ${v.node}, not ${original.name}`);
  });
  await timeline.step('switch back: rejoin the other node as a replica', async (evidence) => {
    Object.assign(evidence, await waitFor.rejoinAsReplica({ database: db, node: current.name, primary: original.name }));
  });
}

/**
 * The DR drill as it ran before the topology drivers, kept so that drills started by that code (a
 * drill can wait at its gate for days) replay and finish on this worker: drDrill takes this path only
 * for histories without the 'topology-drivers' marker. Remove it once no such run can be in flight.
 */
export async function legacyDrDrillBody(input: DrDrillInput, timeline: Timeline, gates: Gates): Promise<Omit<DrDrillResult, 'timeline'>> {
  const compensations = new Compensations();
  {
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
    const failWith = async (err: unknown): Promise<never> => {
      const type = err instanceof DrillFailure ? err.type : 'DrillFailed';
      const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : err instanceof Error ? err.message : String(err);
      // Name the step that failed, unless the drill's own failure already says what happened.
      const failedStep = timeline.snapshot().steps.filter((s) => s.outcome === 'failed').pop();
      const message = err instanceof DrillFailure || !failedStep ? cause : `step '${failedStep.name}' failed: ${cause}`;
      report.reasons.push(message);
      if (compensations.pending > 0) report.compensation = await compensations.run(timeline);
      const keys = await finishReport().catch(() => []);
      throw ApplicationFailure.create({ type, message: `drill ${drillId} failed: ${message}`, nonRetryable: true, details: [{ ...report, reportKeys: keys }] });
    };

    let target: Awaited<ReturnType<DrillActivities['describeDrillTarget']>>;
    let primary: NodeState;
    let replica: NodeState;
    try {
      await gates.start(input as unknown as Record<string, unknown>);
      ({ target, primary, replica } = await timeline.step('preflight', async (evidence) => {
        const t = await inspect.describeDrillTarget({ database: db, environment: input.environment });
        const [nodes, answer] = await Promise.all([inspect.inspectNodes({ database: db }), inspect.resolveServiceName({ database: db })]);
        const { problems, primary: p, replica: r } = preflightProblems(nodes, answer, t.rpoMs, t.approvers);
        Object.assign(evidence, { nodes: nodes.map((n) => `${n.name}=${n.role}`), serviceName: t.serviceName, answers: answer, lagBytes: p?.replicas?.[0]?.lagBytes ?? null });
        if (input.requireRestoreTestWithinDays !== undefined) {
          const last = await inspect.lastSuccessfulRun({ runbook: 'verifyBackup' });
          const ageMs = last ? Date.now() - Date.parse(last.closedAt) : undefined;
          evidence.lastRestoreTest = last ? { ...last, ageDays: Number((ageMs! / 86_400_000).toFixed(2)) } : null;
          if (ageMs === undefined || ageMs > input.requireRestoreTestWithinDays * 86_400_000) {
            problems.push(`no restore test passed within ${input.requireRestoreTestWithinDays} days${last ? ` (the last one: ${last.workflowId} at ${last.closedAt})` : ''}`);
          }
        }
        if (problems.length) throw new DrillFailure('DrillPreflightFailed', `preflight failed, nothing was changed: ${problems.join('; ')}`);
        return { target: t, primary: p!, replica: r! };
      }));
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

      // From here on, service must be restored whatever happens.
      compensations.add('restore a writable primary and point the service name at it', async () => {
        const p = await act.ensureWritablePrimary({ database: db, formerPrimary: primary.name });
        const d = await act.switchServiceName({ database: db, address: p.address });
        return { primary: p.primary, action: p.action, dnsChanged: d.changed };
      });
      const fault = await timeline.step(input.mode === 'failover' ? 'fault: stop the primary hard' : 'fault: stop writes and drain', async (evidence) => {
        const s = await act.stopDatabaseNode({ database: db, node: primary.name, mode: input.mode === 'failover' ? 'immediate' : 'fast' });
        Object.assign(evidence, { node: primary.name, mode: input.mode === 'failover' ? 'immediate' : 'fast', wasRunning: s.wasRunning, stoppedAt: s.stoppedAt });
        if (input.mode === 'switchover') {
          const r = await waitFor.waitForReplay({ database: db, node: replica.name, lsn: marker.lsn, timeoutMs: 120_000 });
          evidence.replayedLsn = r.replayedLsn;
        }
        return s;
      });
      checkAbort();

      const beforePromotion = await timeline.step('promote the replica', async (evidence) => {
        // Never two writable nodes: the old primary must be down before the replica is promoted.
        await act.confirmNodeDown({ database: db, node: primary.name });
        const states = await inspect.inspectNodes({ database: db });
        const r = states.find((n) => n.name === replica.name)!;
        const p = await promote.promoteNode({ database: db, node: replica.name });
        Object.assign(evidence, { node: replica.name, fencedFormerPrimary: primary.name, replayedLsn: r.lsn ?? null, lastReplayAt: r.lastReplayAt ?? null, promoted: p.promoted, writableAt: p.writableAt });
        return r;
      });
      report.primaryAfter = replica.name;
      checkAbort();

      await timeline.step('switch DNS', async (evidence) => {
        const d = await act.switchServiceName({ database: db, address: replica.host });
        Object.assign(evidence, { serviceName: target.serviceName, from: d.previous, to: replica.host, changed: d.changed, answeredAt: d.answeredAt });
      });
      checkAbort();

      const verified = await timeline.step('verify through the service name', async (evidence) => {
        const v = await act.verifyThroughServiceName({ database: db, drillId: `${drillId}-verify`, markerDrillId: drillId });
        Object.assign(evidence, v);
        return v;
      });

      await timeline.step('measure RTO and RPO', async (evidence) => {
        const rtoMs = Date.parse(verified.writeAt) - Date.parse(fault.stoppedAt);
        const lost = beforePromotion.lsn ? lsnBytes(marker.lsn) - lsnBytes(beforePromotion.lsn) : 0n;
        const lostBytes = Number(lost > 0n ? lost : 0n);
        const rpoMs = verified.markerPresent ? 0 : Math.max(0, Date.parse(marker.writtenAt) - Date.parse(beforePromotion.lastReplayAt ?? marker.writtenAt));
        report.rto = { ms: rtoMs, targetMs: target.rtoMs, met: target.rtoMs === undefined ? null : rtoMs <= target.rtoMs };
        report.rpo = { markerPresent: verified.markerPresent, lostBytes, ms: rpoMs, targetMs: target.rpoMs, met: target.rpoMs === undefined ? null : rpoMs <= target.rpoMs };
        if (report.rto.met === false) report.reasons.push(`RTO ${rtoMs} ms exceeds the target of ${target.rtoMs} ms`);
        if (report.rpo.met === false) report.reasons.push(`RPO ${rpoMs} ms exceeds the target of ${target.rpoMs} ms`);
        if (input.mode === 'switchover' && !verified.markerPresent) report.reasons.push('switchover lost the marker row: a planned switchover must lose nothing');
        for (const c of verified.checks.filter((x) => !x.passed)) report.reasons.push(`health check ${c.name}: ${c.detail}`);
        Object.assign(evidence, { rtoMs, rpoMs, lostBytes, markerPresent: verified.markerPresent, rtoTargetMs: target.rtoMs ?? null, rpoTargetMs: target.rpoMs ?? null });
      });

      if (input.failback === false) {
        timeline.skip('failback', 'disabled for this drill');
        report.failback = { skipped: 'disabled for this drill' };
      } else {
        await timeline.step('failback: rejoin the old primary as a replica', async (evidence) => {
          const f = await waitFor.rejoinAsReplica({ database: db, node: primary.name, primary: replica.name });
          Object.assign(evidence, f);
          report.failback = f;
        });
        if (input.switchBack) await switchBack(timeline, db, replica, primary, drillId);
        report.primaryAfter = input.switchBack ? primary.name : replica.name;
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
  }
}
