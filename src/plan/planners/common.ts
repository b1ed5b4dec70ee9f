import { evidencePrefix } from '../../evidence/log';
import type { PlannedChange } from '../types';
import type { PlanContext, Planners } from '../recording';

const nowIso = () => new Date().toISOString();

/** s3://bucket/key for what a plan says would be written, or undefined where the environment keeps no reports. */
export function objectUrl(ctx: PlanContext, key: string): string | undefined {
  return ctx.env.backups ? `s3://${ctx.env.backups.bucket}/${key}` : undefined;
}

/** The report objects a real run writes under the environment's prefix: each key planned as a write. */
export function reportWrites(ctx: PlanContext, by: string, keys: string[]): { keys: string[]; planned: PlannedChange[] } {
  if (!ctx.env.backups) return { keys: [], planned: [] };
  return { keys, planned: keys.map((k) => ({ kind: 'write' as const, by, what: `writes ${objectUrl(ctx, k)}`, detail: { key: k } })) };
}

export const reportPrefix = (ctx: PlanContext): string => ctx.env.backups?.prefix ?? '';

/** What every runbook does beside its steps: evidence records and notifications. */
export const commonPlanners: Planners = {
  async appendEvidence(input, ctx) {
    const where = ctx.env.backups ? `s3://${ctx.env.backups.bucket}/${evidencePrefix(ctx.env.backups.prefix, ctx.environment)}` : undefined;
    const planned: PlannedChange[] = where ? [{ kind: 'write', by: 'appendEvidence', what: `appends a '${input.body.kind}' record to the evidence log (${where})`, detail: { kind: input.body.kind } }] : [];
    return { result: { seq: null, hash: null }, planned };
  },
  async deliverNotification(input, ctx) {
    const channel = ctx.env.notifications?.channels.find((c) => c.name === input.channel);
    const type = channel?.type ?? 'unknown';
    return {
      result: { channel: input.channel, type },
      planned: [{ kind: 'notify', by: 'deliverNotification', what: `notifies ${input.channel} (${type}): ${input.event.kind}: ${input.event.summary}`, detail: { channel: input.channel, kind: input.event.kind, at: nowIso() } }],
    };
  },
};

const runReport = (kind: string, withHtml: boolean) => (ctx: PlanContext, by: string, id: string) => {
  const base = `${reportPrefix(ctx)}${kind}/${id}/report`;
  return reportWrites(ctx, by, [`${base}.json`, `${base}.md`, ...(withHtml ? [`${base}.html`] : [])]);
};

/** The reports of the runbooks that orchestrate others: each writes its report objects beside the others. */
export const reportPlanners: Planners = {
  async writeAuditReport(input, ctx) {
    const w = runReport('audits', true)(ctx, 'writeAuditReport', input.auditId);
    return { result: { keys: w.keys }, planned: w.planned };
  },
  async writeGoLiveReport(input, ctx) {
    const w = runReport('golive', true)(ctx, 'writeGoLiveReport', input.goLiveId);
    return { result: { keys: w.keys }, planned: w.planned };
  },
  async writeReleaseReport(input, ctx) {
    const w = runReport('releases', true)(ctx, 'writeReleaseReport', input.releaseId);
    return { result: { keys: w.keys }, planned: w.planned };
  },
  async writePromotionReport(input, ctx) {
    const w = runReport('promotions', false)(ctx, 'writePromotionReport', input.promotionId);
    return { result: { keys: w.keys }, planned: w.planned };
  },
  async saveAttestation(input, ctx) {
    if (!ctx.env.backups) return { result: { key: null }, planned: [] };
    const key = `${reportPrefix(ctx)}attestations/${input.item}.json`;
    return { result: { key }, planned: [{ kind: 'write', by: 'saveAttestation', what: `writes the attestation of ${input.item} by ${input.by} to ${objectUrl(ctx, key)}`, detail: { key } }] };
  },
};
