import { evidencePrefix } from '../../evidence/log';
import type { PlannedChange } from '../types';
import type { PlanContext, Planners } from '../recording';

export const nowIso = (): string => new Date().toISOString();

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

/** A run's report objects (JSON, Markdown, and HTML where the runbook draws a page) under `<prefix><kind>/<id>/report`. */
export function runReport(ctx: PlanContext, by: string, kind: string, id: string, withHtml = true): { result: { keys: string[] }; planned: PlannedChange[] } {
  const base = `${reportPrefix(ctx)}${kind}/${id}/report`;
  const w = reportWrites(ctx, by, [`${base}.json`, `${base}.md`, ...(withHtml ? [`${base}.html`] : [])]);
  return { result: { keys: w.keys }, planned: w.planned };
}

/** The reports of the runbooks that orchestrate others: each writes its report objects beside the others. */
export const reportPlanners: Planners = {
  writeAuditReport: async (input, ctx) => runReport(ctx, 'writeAuditReport', 'audits', input.auditId),
  writeGoLiveReport: async (input, ctx) => runReport(ctx, 'writeGoLiveReport', 'golive', input.goLiveId),
  writeReleaseReport: async (input, ctx) => runReport(ctx, 'writeReleaseReport', 'releases', input.releaseId),
  writePromotionReport: async (input, ctx) => runReport(ctx, 'writePromotionReport', 'promotions', input.promotionId, false),
  async saveAttestation(input, ctx) {
    if (!ctx.env.backups) return { result: { key: null }, planned: [] };
    const key = `${reportPrefix(ctx)}attestations/${input.item}.json`;
    return { result: { key }, planned: [{ kind: 'write', by: 'saveAttestation', what: `writes the attestation of ${input.item} by ${input.by} to ${objectUrl(ctx, key)}`, detail: { key } }] };
  },
};
