import { ChecklistItem, checklistItem } from './catalog';

/** What a person sends to vouch for an item no machine can see. */
export interface AttestationRequest {
  item: string;
  by: string;
  comment: string;
  /** Shorter than the item's own validity if given; never longer. */
  validForDays?: number;
}

/** A recorded attestation: who vouched, when, why, and until when it counts. */
export interface Attestation {
  item: string;
  by: string;
  comment: string;
  at: string;
  expiresAt: string;
  /** The audit run that recorded it. */
  workflowId: string;
  runId?: string;
  /** The key that signed it (SHA256 fingerprint) and the signed statement itself: verified again at every read. */
  fingerprint?: string;
  statement?: string;
  signature?: string;
}

/** What a kept attestation object must carry to be believed: its signed statement. */
export interface SignedProof {
  runId: string;
  fingerprint: string;
  statement: string;
  signature: string;
}

export const ITEM_ID = /^[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$/;

const describe = (v: unknown): string => {
  if (v === undefined) return 'nothing';
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 60 ? `${text.slice(0, 57)}..." (${text.length} characters)` : text;
};

/**
 * Why an attestation must be refused, or undefined when it may be recorded: the item exists and is
 * proved by attestation, the person is an approver of the environment, a comment says what was checked.
 */
export function attestationProblem(request: unknown, approvers: readonly string[], policyMaxDays?: number): string | undefined {
  const r = request as Partial<AttestationRequest> | null;
  if (r === null || typeof r !== 'object' || Array.isArray(r)) return `expected { item, by, comment, validForDays? }, found ${describe(request)}`;
  if (typeof r.item !== 'string' || !ITEM_ID.test(r.item)) return `item: expected a checklist item id such as on-call-rotation, found ${describe(r.item)}`;
  const item: ChecklistItem | undefined = checklistItem(r.item);
  if (!item) return `item: ${r.item} is not a checklist item`;
  if (item.proof.kind !== 'attested') return `item ${r.item} is proved ${item.proof.kind === 'automated' ? 'by automated checks' : `by a ${item.proof.runbook} run`}, not by attestation`;
  if (typeof r.by !== 'string' || r.by.length === 0 || r.by.length > 128) return `by: expected who vouches (1-128 characters), found ${describe(r.by)}`;
  if (!approvers.includes(r.by)) return `${r.by} may not attest in this environment; allowed: ${approvers.join(', ') || 'nobody (configure approvers.readinessAudit or approvers.default)'}`;
  if (typeof r.comment !== 'string' || r.comment.trim().length === 0 || r.comment.length > 1000) return `comment: expected what was checked (1-1000 characters), found ${describe(r.comment)}`;
  const d = r.validForDays;
  const limit = Math.min(item.proof.validForDays, policyMaxDays ?? Infinity);
  if (d !== undefined && (typeof d !== 'number' || !Number.isFinite(d) || d <= 0 || d > limit)) {
    return `validForDays: expected a number of days from 1 to ${limit} (the longest an attestation of ${r.item} counts${limit < item.proof.validForDays ? ' under this environment\'s policy' : ''}), found ${describe(d)}`;
  }
  return undefined;
}

/** The attestation a valid request records at the given time. */
export function recordAttestation(r: AttestationRequest, atMs: number, workflowId: string, proof?: SignedProof, policyMaxDays?: number): Attestation {
  const days = attestationDays(r.item, r.validForDays, policyMaxDays);
  return { item: r.item, by: r.by, comment: r.comment, at: new Date(atMs).toISOString(), expiresAt: new Date(atMs + days * 86_400_000).toISOString(), workflowId, ...proof };
}

/** How long an attestation counts: what it asked for, at most the item's limit and the policy's. */
export function attestationDays(itemId: string, requested: number | undefined, policyMaxDays?: number): number {
  const item = checklistItem(itemId)!;
  return Math.min(requested ?? Infinity, item.proof.kind === 'attested' ? item.proof.validForDays : 0, policyMaxDays ?? Infinity);
}
