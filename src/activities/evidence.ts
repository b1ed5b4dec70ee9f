import { appendEvidence, EvidenceBody, evidencePrefix } from '../evidence/log';
import { checkServedEnvironment } from './errors';
import type { ObjectStore } from './s3';

/** Appends signed decisions and run outcomes to the environment's evidence log in the backup bucket. */
export function createEvidenceActivities(deps: { environment: string; reports?: { store: ObjectStore; prefix: string }; retentionMs?: number }) {
  return {
    async appendEvidence(input: { body: EvidenceBody }): Promise<{ seq: number | null; hash: string | null }> {
      checkServedEnvironment(input.body.environment, deps.environment);
      if (!deps.reports) return { seq: null, hash: null };
      const r = await appendEvidence(deps.reports.store, evidencePrefix(deps.reports.prefix, deps.environment), input.body, deps.retentionMs ? { untilMs: Date.now() + deps.retentionMs } : undefined);
      return { seq: r.seq, hash: r.hash };
    },
  };
}

export type EvidenceActivities = ReturnType<typeof createEvidenceActivities>;
