import type { PlanContext, Planners } from '../recording';
import type { PlannedChange } from '../types';
import { nowIso, runReport } from './common';

interface DrillWorld {
  /** The member that would be primary at this point of the drill. */
  primary?: string;
}

const drillWorld = (ctx: PlanContext): DrillWorld => {
  ctx.world.drill ??= {};
  return ctx.world.drill as DrillWorld;
};

async function nodeOf(ctx: PlanContext, database: string, name: string) {
  const t = await ctx.reads.describeDrillTarget({ database });
  const n = t.nodes.find((x) => x.name === name);
  return { target: t, host: n?.host ?? '?', port: n?.port ?? 0 };
}

/** The DR drill's changes, each said as the driver would carry it out. */
export const drillPlanners: Planners = {
  async writeDrillMarker(input) {
    return {
      result: { lsn: '0/0', writtenAt: nowIso() },
      planned: [{ kind: 'change', by: 'writeDrillMarker', what: `on ${input.node}, creates table runbook_drill_markers if missing and inserts the marker row '${input.drillId}' (the RPO is judged by whether it survives)`, detail: { node: input.node, table: 'runbook_drill_markers', row: input.drillId } }],
    };
  },

  async runWriteLoad(input) {
    return {
      result: { acknowledged: 0, errors: 0, log: '' },
      planned: [{ kind: 'change', by: 'runWriteLoad', what: `writes numbered rows into runbook_drill_writes through the service endpoint at ${input.rate} a second, logging every acknowledged commit, until the drill has verified writes again (at most ${input.maxSeconds} s)`, detail: { rate: input.rate, table: 'runbook_drill_writes' } }],
    };
  },

  async injectFault(input, ctx) {
    const steps = await ctx.reads.planDrillFault(input);
    drillWorld(ctx).primary = undefined;
    const now = nowIso();
    return {
      result: { acted: true, detail: { faultPlan: steps }, startedAt: now, endedAt: now, attempt: 1 },
      planned: steps.map((what) => ({ kind: 'change' as const, by: 'injectFault', what, detail: { member: input.member, mode: input.mode } })),
    };
  },

  async awaitNewPrimary(input, ctx) {
    const { target, host, port } = await nodeOf(ctx, input.database, input.candidate);
    drillWorld(ctx).primary = input.candidate;
    const how = target.driver === 'patroni' ? `Patroni elects a new leader (expected: ${input.candidate})` : `the driver fences ${input.formerPrimary} and promotes ${input.candidate}`;
    const now = nowIso();
    return {
      result: { name: input.candidate, host, port, detectedAt: now, writableAt: now, detail: { planRun: true } },
      planned: [{ kind: 'wait', by: 'awaitNewPrimary', what: `waits until ${how} and the new primary commits a write (up to ${Math.round(target.electionTimeoutMs / 1000)} s)` }],
    };
  },

  async switchServiceEndpoint(input, ctx) {
    const { target, host } = await nodeOf(ctx, input.database, input.primary);
    const now = await ctx.reads.locateServiceEndpoint({ database: input.database });
    drillWorld(ctx).primary = input.primary;
    if (target.endpointKind === 'dns') {
      const previous = now.answers ?? [];
      // The record as it is now: the failback's switch, planned after the fault's, would start from the fault's target.
      const changed = !(previous.length === 1 && previous[0] === host);
      const planned: PlannedChange[] = [
        {
          kind: 'change',
          by: 'switchServiceEndpoint',
          what: changed ? `DNS A record ${target.serviceName}: ${previous.join(', ') || '(none)'} → ${host} (${target.dnsProvider ?? 'dns'}), then waits until the authoritative server answers ${host}` : `DNS A record ${target.serviceName} already answers ${host}: left as it is`,
          detail: { record: target.serviceName, type: 'A', from: previous, to: host, provider: target.dnsProvider },
        },
      ];
      return { result: { kind: 'dns', changed, previous, reachedAt: nowIso() }, planned };
    }
    if (target.endpointKind === 'proxy') {
      return { result: { kind: 'proxy', changed: false, previous: [], reachedAt: nowIso() }, planned: [{ kind: 'wait', by: 'switchServiceEndpoint', what: `waits (up to 60 s) until ${target.serviceEndpoint} reaches ${input.primary} and accepts writes; nothing is switched` }] };
    }
    return { result: { kind: 'driver', changed: false, previous: [], reachedAt: nowIso() }, planned: [] };
  },

  async verifyThroughServiceEndpoint(input, ctx) {
    const t = await ctx.reads.describeDrillTarget({ database: input.database });
    const node = drillWorld(ctx).primary ?? (await ctx.reads.locateServiceEndpoint({ database: input.database })).reaches ?? 'unknown';
    return {
      result: { address: t.serviceEndpoint, node, markerPresent: true, writeAt: nowIso(), checks: [] },
      planned: [{ kind: 'change', by: 'verifyThroughServiceEndpoint', what: `connects through ${t.serviceEndpoint}, expects ${node} and the marker row, writes row '${input.drillId}' into runbook_drill_markers and runs the database's health checks`, detail: { expect: node, row: input.drillId } }],
    };
  },

  async countLostWrites(input) {
    return {
      result: { log: '', acknowledged: 0, acknowledgedBeforeFault: 0, lost: 0, lostSample: [], rpoMs: 0, lostBytes: 0, writerAttempts: 0 },
      planned: [{ kind: 'wait', by: 'countLostWrites', what: `counts the acknowledged writes missing on ${input.primary}: their span is the RPO` }],
    };
  },

  async timelineSwitchPoint(input) {
    return { result: { lsn: undefined }, planned: [{ kind: 'wait', by: 'timelineSwitchPoint', what: `reads where ${input.primary}'s timeline began, to measure the WAL lost` }] };
  },

  async rejoinFormerPrimary(input, ctx) {
    const t = await ctx.reads.describeDrillTarget({ database: input.database });
    const patroni = t.driver === 'patroni';
    const what = patroni
      ? `makes ${input.member} a replica of ${input.primary}: Patroni restarts it and rejoins it (pg_rewind, or a fresh clone when a rewind is impossible)`
      : `makes ${input.member} a replica of ${input.primary}: pg_rewind against ${input.primary}, or, when a rewind is impossible, its data directory kept aside (suffix .kept-${input.drillId}, never deleted) and a fresh base backup; then waits until it streams and serves reads`;
    return { result: { method: patroni ? 'patroni rejoin' : 'pg_rewind', streaming: true }, planned: [{ kind: 'change', by: 'rejoinFormerPrimary', what, detail: { member: input.member, primary: input.primary } }] };
  },

  async switchPrimary(input, ctx) {
    const t = await ctx.reads.describeDrillTarget({ database: input.database });
    drillWorld(ctx).primary = input.to;
    const how = t.driver === 'patroni' ? `POST /switchover to Patroni (leader ${input.from}, candidate ${input.to})` : `stops ${input.from} cleanly (pg_ctl stop -m fast), waits until ${input.to} has replayed it, promotes ${input.to}`;
    return { result: { switched: true, detail: { planRun: true } }, planned: [{ kind: 'change', by: 'switchPrimary', what: `planned switchover from ${input.from} to ${input.to}: ${how}`, detail: { from: input.from, to: input.to } }] };
  },

  async restoreWritablePrimary(input, ctx) {
    const t = await ctx.reads.describeDrillTarget({ database: input.database });
    const primary = drillWorld(ctx).primary ?? input.formerPrimary;
    const n = t.nodes.find((x) => x.name === primary);
    return {
      result: { primary, host: n?.host ?? '?', action: 'planned' },
      planned: [{ kind: 'change', by: 'restoreWritablePrimary', what: `compensation: makes sure a member is a writable primary (restarts ${input.formerPrimary} if no other member leads)` }],
    };
  },

  writeDrillReport: async (input, ctx) => runReport(ctx, 'writeDrillReport', 'drills', input.drillId),
};
