/**
 * The restore canary: a small table on the source that the restoreCanary runbook writes one row to on
 * a schedule, each row with the time it was written and the WAL position it went to. A point-in-time
 * restore test proves what it restored against it: exactly the rows written before the target, none
 * after. Rows older than the retention are deleted on each write, so the table stays small.
 */
import type { Client } from 'pg';
import { quoteIdent } from './pg';

export const CANARY_TABLE = 'runbook_restore_canary';

export interface CanaryRow {
  id: number;
  writtenAt: string;
  lsn: string;
}

/** Two rows closer than this to the target (before it) may or may not have committed by then. */
export const CANARY_COMMIT_MARGIN_MS = 1_000;

const table = () => quoteIdent(CANARY_TABLE);

export async function ensureCanaryTable(client: Client): Promise<void> {
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${table()} (
       id bigserial PRIMARY KEY,
       written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
       lsn pg_lsn NOT NULL DEFAULT pg_current_wal_insert_lsn(),
       workflow_id text
     )`,
  );
}

/** One row: the server's clock and its WAL insert position at the moment of writing. */
export async function writeCanaryRow(client: Client, workflowId: string | undefined, keepMs: number): Promise<{ row: CanaryRow; pruned: number }> {
  await ensureCanaryTable(client);
  const res = await client.query<{ id: string; written_at: Date; lsn: string }>(`INSERT INTO ${table()} (workflow_id) VALUES ($1) RETURNING id, written_at, lsn::text`, [workflowId ?? null]);
  const pruned = await client.query(`DELETE FROM ${table()} WHERE written_at < clock_timestamp() - make_interval(secs => $1)`, [keepMs / 1000]);
  const r = res.rows[0];
  return { row: { id: Number(r.id), writtenAt: r.written_at.toISOString(), lsn: r.lsn }, pruned: pruned.rowCount ?? 0 };
}

/** Rows, oldest first; undefined when the table does not exist (no canary was ever written). */
export async function readCanaryRows(client: Client, opts: { maxLsn?: string; newestOnly?: boolean } = {}): Promise<CanaryRow[] | undefined> {
  const exists = await client.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [CANARY_TABLE]);
  if (!exists.rows[0].t) return undefined;
  const where = opts.maxLsn ? 'WHERE lsn <= $1::pg_lsn' : '';
  const order = opts.newestOnly ? 'ORDER BY id DESC LIMIT 1' : 'ORDER BY id';
  const res = await client.query<{ id: string; written_at: Date; lsn: string }>(`SELECT id, written_at, lsn::text AS lsn FROM ${table()} ${where} ${order}`, opts.maxLsn ? [opts.maxLsn] : []);
  return res.rows.map((r) => ({ id: Number(r.id), writtenAt: r.written_at.toISOString(), lsn: r.lsn }));
}

export interface CanaryVerdict {
  passed: boolean;
  detail: string;
  restored: number;
  expected: number;
  uncertain: number;
}

/**
 * Compares the canary rows of a restored copy with the source's. `before`: every source row written
 * before it (by more than the commit margin) must be there; `after`: no row written after it may be.
 * Rows in between could have committed on either side of the target and are not judged. Source rows
 * older than the source's oldest (pruned since) are not expected.
 */
export function judgeCanary(source: CanaryRow[], restored: CanaryRow[], window: { before: number; after: number }, label: string): CanaryVerdict {
  const oldestSource = source.length ? Date.parse(source[0].writtenAt) : Infinity;
  const restoredIds = new Set(restored.map((r) => r.id));
  const sourceIds = new Set(source.map((r) => r.id));
  const expected = source.filter((r) => Date.parse(r.writtenAt) < window.before - CANARY_COMMIT_MARGIN_MS);
  const missing = expected.filter((r) => !restoredIds.has(r.id));
  const tooNew = restored.filter((r) => Date.parse(r.writtenAt) > window.after);
  // A restored row the source never had (and not merely pruned since) would be data from elsewhere.
  const unknown = restored.filter((r) => !sourceIds.has(r.id) && Date.parse(r.writtenAt) >= oldestSource);
  const uncertain = source.filter((r) => {
    const t = Date.parse(r.writtenAt);
    return t >= window.before - CANARY_COMMIT_MARGIN_MS && t <= window.after;
  }).length;
  const ids = (rows: CanaryRow[]) => rows.slice(0, 5).map((r) => `#${r.id} at ${r.writtenAt}`).join(', ') + (rows.length > 5 ? ` and ${rows.length - 5} more` : '');
  const problems: string[] = [];
  if (missing.length) problems.push(`${missing.length} row(s) written before ${label} are missing: ${ids(missing)}`);
  if (tooNew.length) problems.push(`${tooNew.length} row(s) written after ${label} are present: ${ids(tooNew)}`);
  if (unknown.length) problems.push(`${unknown.length} row(s) the source never had: ${ids(unknown)}`);
  if (expected.length === 0 && problems.length === 0) problems.push(`no canary row was written before ${label}, so the restore proves nothing about it (schedule the restoreCanary runbook)`);
  const restoredInRange = restored.filter((r) => Date.parse(r.writtenAt) >= oldestSource).length;
  const passed = problems.length === 0;
  return {
    passed,
    restored: restoredInRange,
    expected: expected.length,
    uncertain,
    detail: passed
      ? `${restoredInRange} rows restored: all ${expected.length} written before ${label}, none after${uncertain ? ` (${uncertain} within ${CANARY_COMMIT_MARGIN_MS} ms of it not judged)` : ''}`
      : problems.join('; '),
  };
}
