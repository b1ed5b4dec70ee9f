import { AllowedSigner, signerProblem } from './allowedSigners';
import { fingerprint, sha256Hex, SignatureError, verifySignature } from './sshsig';

/**
 * A signed decision: the statement text exactly as signed, and the armored SSH signature over it.
 * The statement binds everything the decision is about (namespace, workflow and run, the gate's id,
 * the act, the reason, the time), so a signature for one gate, run or act is refused for any other.
 */
export interface SignedStatement {
  statement: string;
  signature: string;
}

/** The SSH signature namespace (ssh-keygen -Y sign -n ...) of every decision; a git commit signature (namespace git) is refused. */
export const SIGNATURE_NAMESPACE = 'runbook-decision';

export const ACTS = ['approve', 'reject', 'abort', 'promote', 'promote-full', 'waive', 'attest', 'start'] as const;
export type Act = (typeof ACTS)[number];

export interface Statement {
  v: 1;
  /** The Temporal namespace. */
  namespace: string;
  environment: string;
  runbook: string;
  workflowId: string;
  /** The run; empty for a start, whose run id does not exist yet (the input hash binds it instead). */
  runId: string;
  /** The gate's id (gates list it); "run" for an abort, "start" for a start. */
  gate: string;
  act: Act;
  /** The principal, as listed in the allowed signers. */
  by: string;
  reason: string;
  /** When it was signed (ISO 8601, UTC). */
  at: string;
  /** A waiver or attestation: the checklist item. */
  item?: string;
  /** An attestation: how long it counts. */
  validForDays?: number;
  /** A start: sha256 of the run's input (canonical JSON, without the start statement itself). */
  inputHash?: string;
}

export interface VerifiedStatement {
  principal: string;
  fingerprint: string;
  keyType: string;
  statement: Statement;
  /** sha256 of the signature text: evidence records name it, and a run counts each signature once. */
  signatureHash: string;
}

/** What a statement must say to count here and now. */
export interface Expectation {
  namespace: string;
  environment: string;
  runbook: string;
  workflowId: string;
  runId: string;
  gate: string;
  acts: readonly Act[];
  nowMs: number;
  /** How old a statement may be (default 15 minutes). */
  maxAgeMs?: number;
  item?: string;
  inputHash?: string;
}

export const MAX_STATEMENT = 4096;
/** Clocks of the signer's machine and the worker may differ a little. */
const CLOCK_SKEW_MS = 5 * 60_000;
export const DEFAULT_MAX_AGE_MS = 15 * 60_000;

/** A refusal with a short machine-readable reason (unsigned, bad-signature, unknown-key, ...) and the text for people. */
export class StatementRefused extends Error {
  constructor(
    readonly code: 'malformed' | 'unsigned' | 'bad-signature' | 'unknown-key' | 'wrong-binding' | 'expired' | 'not-allowed',
    message: string,
  ) {
    super(message);
    this.name = 'StatementRefused';
  }
}

/** The statement text the CLI signs: JSON with its keys in one fixed order, no undefined fields. */
export function statementText(s: Statement): string {
  const order: (keyof Statement)[] = ['v', 'namespace', 'environment', 'runbook', 'workflowId', 'runId', 'gate', 'act', 'by', 'reason', 'at', 'item', 'validForDays', 'inputHash'];
  const o: Record<string, unknown> = {};
  for (const k of order) if (s[k] !== undefined) o[k] = s[k];
  return JSON.stringify(o);
}

/** JSON with sorted keys and no undefined values: the same input gives the same text on every machine. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : canonicalJson(x))).join(',')}]`;
  const entries = Object.entries(v as Record<string, unknown>)
    .filter(([, x]) => x !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(',')}}`;
}

/** The hash a start statement binds: the input without its own start field. */
export function inputHash(input: Record<string, unknown>): string {
  const { start: _start, ...rest } = input;
  return sha256Hex(canonicalJson(rest));
}

const describe = (v: unknown) => {
  const t = JSON.stringify(v) ?? String(v);
  return t.length > 60 ? `${t.slice(0, 57)}..." (${t.length} characters)` : t;
};

/** The statement's fields, checked for shape only (before anything is believed). */
export function parseStatement(text: string): Statement {
  let s: Record<string, unknown>;
  try {
    s = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new StatementRefused('malformed', 'statement: not JSON; sign the statement the runbook CLI writes');
  }
  if (s === null || typeof s !== 'object' || Array.isArray(s)) throw new StatementRefused('malformed', 'statement: expected a JSON object');
  const str = (k: string, max: number, allowEmpty = false) => {
    const x = s[k];
    if (typeof x !== 'string' || x.length > max || (!allowEmpty && x.length === 0) || /[\x00-\x08\x0b-\x1f\x7f]/.test(x)) throw new StatementRefused('malformed', `statement.${k}: expected text of ${allowEmpty ? 0 : 1}-${max} characters, found ${describe(x)}`);
  };
  if (s.v !== 1) throw new StatementRefused('malformed', `statement.v: expected 1, found ${describe(s.v)}`);
  str('namespace', 255);
  str('environment', 64);
  str('runbook', 64);
  str('workflowId', 1000);
  str('runId', 64, true);
  str('gate', 200);
  if (!(ACTS as readonly unknown[]).includes(s.act)) throw new StatementRefused('malformed', `statement.act: expected one of ${ACTS.join(', ')}, found ${describe(s.act)}`);
  str('by', 128);
  str('reason', 1000, true);
  str('at', 40);
  if (!Number.isFinite(Date.parse(s.at as string))) throw new StatementRefused('malformed', `statement.at: expected an ISO 8601 time, found ${describe(s.at)}`);
  if (s.item !== undefined) str('item', 64);
  if (s.validForDays !== undefined && !(typeof s.validForDays === 'number' && Number.isFinite(s.validForDays) && s.validForDays > 0 && s.validForDays <= 3660)) {
    throw new StatementRefused('malformed', `statement.validForDays: expected a number of days, found ${describe(s.validForDays)}`);
  }
  if (s.inputHash !== undefined && !(typeof s.inputHash === 'string' && /^[0-9a-f]{64}$/.test(s.inputHash))) throw new StatementRefused('malformed', `statement.inputHash: expected a sha256 in hex, found ${describe(s.inputHash)}`);
  const known = new Set(['v', 'namespace', 'environment', 'runbook', 'workflowId', 'runId', 'gate', 'act', 'by', 'reason', 'at', 'item', 'validForDays', 'inputHash']);
  for (const k of Object.keys(s)) if (!known.has(k)) throw new StatementRefused('malformed', `statement.${k.slice(0, 30)}: unknown field`);
  return s as unknown as Statement;
}

/**
 * Verifies a signed statement against the allowed signers and what it must say here: refuses at once
 * an unsigned or malformed one, a bad signature, an unknown key, a key not listed for the principal
 * (or outside its validity), a statement for another namespace, environment, runbook, run, gate or
 * act, and one older than the allowed age (or from the future).
 */
export function verifyStatement(signed: unknown, signers: readonly AllowedSigner[], want: Expectation): VerifiedStatement {
  const v = signed as Partial<SignedStatement> | null;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new StatementRefused('unsigned', `expected a signed statement { statement, signature } (runbook signs it with your SSH key), found ${describe(signed)}`);
  if (typeof v.statement !== 'string' || v.statement.length === 0) throw new StatementRefused('malformed', `statement: expected the signed statement text, found ${describe(v.statement)}`);
  if (v.statement.length > MAX_STATEMENT) throw new StatementRefused('malformed', `statement: ${v.statement.length} characters; a statement is at most ${MAX_STATEMENT}`);
  if (typeof v.signature !== 'string' || v.signature.trim() === '') throw new StatementRefused('unsigned', 'unsigned: the statement carries no signature; decisions must be signed with an SSH key listed in allowedSigners (runbook ... --key FILE)');
  const s = parseStatement(v.statement);
  let sig;
  try {
    sig = verifySignature(v.signature, v.statement, SIGNATURE_NAMESPACE);
  } catch (err) {
    if (err instanceof SignatureError) throw new StatementRefused('bad-signature', `bad signature: ${err.message}`);
    throw err;
  }
  const problem = signerProblem(signers, s.by, sig.publicKey, SIGNATURE_NAMESPACE, want.nowMs);
  if (problem) throw new StatementRefused('unknown-key', `${problem}; the decision does not count`);
  const bind = (field: keyof Statement, expected: unknown, what: string) => {
    if (s[field] !== expected) throw new StatementRefused('wrong-binding', `the statement is for ${what} ${describe(s[field])}, not ${describe(expected)}: a signature counts only for the decision it was made for`);
  };
  bind('namespace', want.namespace, 'namespace');
  bind('environment', want.environment, 'environment');
  bind('runbook', want.runbook, 'runbook');
  bind('workflowId', want.workflowId, 'workflow');
  bind('runId', want.runId, 'run');
  bind('gate', want.gate, 'gate');
  if (!want.acts.includes(s.act)) throw new StatementRefused('wrong-binding', `the statement says ${s.act}, this action needs ${want.acts.join(' or ')}: a signature counts only for the decision it was made for`);
  if (want.item !== undefined) bind('item', want.item, 'item');
  if (want.inputHash !== undefined) bind('inputHash', want.inputHash, 'input hash');
  const at = Date.parse(s.at);
  const maxAge = want.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
  if (want.nowMs - at > maxAge) throw new StatementRefused('expired', `the statement was signed at ${s.at}, more than ${Math.round(maxAge / 1000)} s ago; sign a new one`);
  if (at - want.nowMs > CLOCK_SKEW_MS) throw new StatementRefused('expired', `the statement is dated ${s.at}, in the future; check the signer's clock`);
  return { principal: s.by, fingerprint: fingerprint(sig.publicKey), keyType: sig.publicKey.type, statement: s, signatureHash: sha256Hex(v.signature.trim()) };
}
