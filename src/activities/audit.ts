import { Attestation, ITEM_ID } from '../checklist/attestation';
import { ReadinessReport, renderAuditHtml } from '../reports/audit';
import type { ReportLinks } from '../reports/html';
import { checkServedEnvironment, failure } from './errors';
import type { ObjectStore } from './s3';

/**
 * What the readiness audit reads and writes besides the checks: who may attest, the attestations
 * kept in the backup bucket (so they outlive one audit and expire on their own), and the report.
 */
export function createAuditActivities(deps: { environment: string; approvers: string[]; rpoMs?: number; reports?: { store: ObjectStore; prefix: string; links?: ReportLinks } }) {
  const attestationPrefix = () => `${deps.reports!.prefix}attestations/`;
  return {
    async describeAuditTarget(input: { environment: string }): Promise<{ approvers: string[]; rpoMs?: number; attestationsKept: boolean }> {
      checkServedEnvironment(input.environment, deps.environment);
      return { approvers: deps.approvers, rpoMs: deps.rpoMs, attestationsKept: deps.reports !== undefined };
    },

    /**
     * The kept attestation of each item as stored, with its key: the workflow verifies each signed
     * statement (anyone who can write to the bucket can put an object there, so nothing is believed here).
     */
    async loadAttestations(): Promise<(Partial<Attestation> & { key: string })[]> {
      if (!deps.reports) return [];
      const objects = (await deps.reports.store.list(attestationPrefix())).filter((o) => o.key.endsWith('.json'));
      const out: (Partial<Attestation> & { key: string })[] = [];
      for (const o of objects.slice(0, 500)) {
        const a = await deps.reports.store.getJson<Record<string, unknown>>(o.key).catch(() => undefined);
        const pick = (k: string, max: number) => (typeof a?.[k] === 'string' ? (a[k] as string).slice(0, max) : undefined);
        out.push({ key: o.key, item: pick('item', 64), by: pick('by', 128), at: pick('at', 40), statement: pick('statement', 5000), signature: pick('signature', 5000) });
      }
      return out;
    },

    /** Keeps the attestation as the item's current one (overwriting the previous). */
    async saveAttestation(a: Attestation): Promise<{ key: string | null }> {
      if (!ITEM_ID.test(a.item)) throw failure('InvalidInput', `'${a.item}' is not a checklist item id`);
      if (!deps.reports) return { key: null };
      const key = `${attestationPrefix()}${a.item}.json`;
      await deps.reports.store.putJson(key, a);
      return { key };
    },

    /** The scores of the environment's newest audits (at most limit), oldest first, from the reports kept in S3. */
    async readScoreTrend(input: { limit: number }): Promise<{ auditId: string; endedAt: string; score: number; ready: boolean }[]> {
      if (!deps.reports) return [];
      const limit = Math.min(Math.max(Math.trunc(input.limit), 1), 50);
      const reports = (await deps.reports.store.list(`${deps.reports.prefix}audits/`)).filter((o) => o.key.endsWith('/report.json'));
      reports.sort((a, b) => (a.lastModified?.getTime() ?? 0) - (b.lastModified?.getTime() ?? 0));
      const out: { auditId: string; endedAt: string; score: number; ready: boolean }[] = [];
      for (const o of reports.slice(-limit)) {
        const r = await deps.reports.store.getJson<Record<string, unknown>>(o.key).catch(() => undefined);
        if (r && typeof r.auditId === 'string' && typeof r.score === 'number' && typeof r.endedAt === 'string') out.push({ auditId: r.auditId.slice(0, 80), endedAt: r.endedAt.slice(0, 40), score: r.score, ready: r.ready === true });
      }
      return out.sort((a, b) => Date.parse(a.endedAt) - Date.parse(b.endedAt));
    },

    async writeAuditReport(input: { auditId: string; json: unknown; markdown: string; html: string }): Promise<{ keys: string[] }> {
      if (!deps.reports) return { keys: [] };
      if (!/^[a-z0-9-]{4,80}$/.test(input.auditId)) throw failure('InvalidInput', `audit id '${input.auditId}' is not a plain id`);
      const base = `${deps.reports.prefix}audits/${input.auditId}/report`;
      await deps.reports.store.putJson(`${base}.json`, input.json);
      await deps.reports.store.putText(`${base}.md`, input.markdown, 'text/markdown');
      const r = input.json as ReadinessReport | undefined;
      const html = r && typeof r === 'object' && Array.isArray(r.sections) && typeof r.workflowId === 'string' ? renderAuditHtml(r, deps.reports.links) : input.html;
      await deps.reports.store.putText(`${base}.html`, html, 'text/html');
      return { keys: [`${base}.json`, `${base}.md`, `${base}.html`] };
    },
  };
}

export type AuditActivities = ReturnType<typeof createAuditActivities>;
