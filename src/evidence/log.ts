import { PutObjectCommand } from '@aws-sdk/client-s3';
import { canonicalJson } from '../identity/statement';
import { sha256Hex } from '../identity/sshsig';
import type { ObjectStore } from '../activities/s3';

/**
 * The evidence log: every signed decision and every gated run's outcome, appended to S3 as numbered
 * records, each carrying the hash of the one before it, so a record changed, removed or inserted
 * later breaks the chain. It outlives the Temporal namespace's retention.
 */
export interface EvidenceBody {
  kind: 'decision' | 'outcome';
  at: string;
  environment: string;
  runbook: string;
  workflowId: string;
  runId: string;
  /** decision: the verified act. */
  act?: string;
  principal?: string;
  fingerprint?: string;
  gate?: string;
  statement?: string;
  signature?: string;
  /** outcome: how the run ended, and why. */
  outcome?: string;
  summary?: string;
}

export interface EvidenceRecord extends EvidenceBody {
  seq: number;
  prevHash: string;
  hash: string;
}

export const GENESIS = '0'.repeat(64);
const keyOf = (prefix: string, seq: number) => `${prefix}${String(seq).padStart(12, '0')}.json`;

export function evidencePrefix(backupsPrefix: string, environment: string): string {
  return `${backupsPrefix}evidence/${environment}/`;
}

export function recordHash(prevHash: string, seq: number, body: EvidenceBody): string {
  return sha256Hex(`${prevHash}\n${seq}\n${canonicalJson(body)}`);
}

function bodyOf(r: EvidenceRecord): EvidenceBody {
  const { seq: _s, prevHash: _p, hash: _h, ...body } = r;
  return body;
}

export async function readChain(store: ObjectStore, prefix: string): Promise<{ key: string; record: EvidenceRecord }[]> {
  const keys = (await store.list(prefix)).map((o) => o.key).filter((k) => /\d{12}\.json$/.test(k)).sort();
  const out: { key: string; record: EvidenceRecord }[] = [];
  for (const key of keys) out.push({ key, record: await store.getJson<EvidenceRecord>(key) });
  return out;
}

/**
 * Appends one record. The key is the next sequence number and the write is conditional (If-None-Match),
 * so two writers never take the same number; the loser reads the new tail and tries again.
 */
export async function appendEvidence(store: ObjectStore, prefix: string, body: EvidenceBody, retain?: { untilMs: number }): Promise<EvidenceRecord> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const keys = (await store.list(prefix)).map((o) => o.key).filter((k) => /\d{12}\.json$/.test(k)).sort();
    const last = keys.length ? await store.getJson<EvidenceRecord>(keys[keys.length - 1]) : undefined;
    const seq = last ? last.seq + 1 : 1;
    const prevHash = last ? last.hash : GENESIS;
    const record: EvidenceRecord = { ...body, seq, prevHash, hash: recordHash(prevHash, seq, body) };
    try {
      await store.s3.send(
        new PutObjectCommand({
          Bucket: store.bucket,
          Key: keyOf(prefix, seq),
          Body: `${JSON.stringify(record)}\n`,
          ContentType: 'application/json',
          IfNoneMatch: '*',
          ...(retain ? { ObjectLockMode: 'COMPLIANCE' as const, ObjectLockRetainUntilDate: new Date(retain.untilMs) } : {}),
        }),
      );
      return record;
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 412 || status === 409) continue;
      throw err;
    }
  }
  throw new Error(`evidence log ${prefix}: another writer kept taking the next record; try again`);
}

/** Checks the chain: numbering without gaps, each record's hash, each link to the one before. */
export function verifyChain(records: { key: string; record: EvidenceRecord }[]): { ok: boolean; checked: number; problems: string[] } {
  const problems: string[] = [];
  let prev = GENESIS;
  records.forEach(({ key, record }, i) => {
    if (record.seq !== i + 1) problems.push(`${key}: record ${record.seq} where ${i + 1} belongs (a record is missing or was inserted)`);
    if (record.prevHash !== prev) problems.push(`${key}: links to ${String(record.prevHash).slice(0, 12)}…, but the record before it hashes to ${prev.slice(0, 12)}…`);
    const h = recordHash(record.prevHash, record.seq, bodyOf(record));
    if (h !== record.hash) problems.push(`${key}: its content does not match its hash (changed after it was written)`);
    prev = record.hash;
  });
  return { ok: problems.length === 0, checked: records.length, problems };
}
