/**
 * The drill's write load: numbered single-row commits through the service endpoint, each one the
 * database acknowledged appended to a log file before the next is sent, so the log survives the
 * worker (a killed worker's successor continues it). After the failover, the acknowledged rows
 * missing on the new primary are the writes the failover lost: the RPO measured, not assumed.
 */
import { CancelledFailure, Context, log } from '@temporalio/activity';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from 'pg';
import { lsnBytes } from '../topology/types';
import { failure } from './errors';
import { connectPg } from './pg';
import type { DrillTarget } from './topology';

export const WRITES_TABLE = 'runbook_drill_writes';
export const WRITES_TABLE_DDL = `CREATE TABLE IF NOT EXISTS ${WRITES_TABLE} (drill_id text NOT NULL, seq bigint NOT NULL, written_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (drill_id, seq))`;
/** Sequence numbers of one attempt of the writer start at attempt x this, so a retried writer never reuses one. */
const ATTEMPT_SPAN = 1_000_000;
export const MAX_WRITE_RATE = 250;
const DRILL_ID = /^[a-z0-9-]{4,80}$/;

export interface Ack {
  seq: number;
  ackedAtMs: number;
  /** WAL position when the row was inserted (its commit record follows right after). */
  lsn: string;
  attempt: number;
}

export function parseAckLog(text: string): Ack[] {
  const acks: Ack[] = [];
  for (const line of text.split('\n')) {
    const [seq, at, lsn, attempt] = line.trim().split(' ');
    // A line cut short by a killed writer is not an acknowledgement anyone received.
    if (!seq || !at || !lsn || attempt === undefined || !/^[0-9A-F]+\/[0-9A-F]+$/i.test(lsn)) continue;
    acks.push({ seq: Number(seq), ackedAtMs: Number(at), lsn, attempt: Number(attempt) });
  }
  return acks;
}

export interface LostWrites {
  log: string;
  acknowledged: number;
  acknowledgedBeforeFault: number;
  lost: number;
  /** Up to 20 lost sequence numbers, for the report. */
  lostSample: number[];
  firstLostAt?: string;
  lastLostAt?: string;
  /** The span of acknowledged commits that are gone: from the last one kept before them to the last one lost. */
  rpoMs: number;
  /** WAL the old primary wrote after the new primary's timeline forked off, as far as acknowledged commits show. */
  lostBytes: number;
  lastAckedLsnBeforeFault?: string;
  switchPoint?: string;
  writerAttempts: number;
}

/** Compares the acknowledged commits with what the new primary holds. Pure, so it is tested on its own. */
export function judgeLostWrites(acks: Ack[], present: Set<number>, faultAtMs: number, switchPoint: string | undefined, logPath: string): LostWrites {
  const sorted = [...acks].sort((a, b) => a.ackedAtMs - b.ackedAtMs || a.seq - b.seq);
  const lost = sorted.filter((a) => !present.has(a.seq));
  const before = sorted.filter((a) => a.ackedAtMs <= faultAtMs);
  let lastAcked: string | undefined;
  for (const a of before) if (!lastAcked || lsnBytes(a.lsn) > lsnBytes(lastAcked)) lastAcked = a.lsn;
  const lostBytes = lastAcked && switchPoint ? Number(lsnBytes(lastAcked) > lsnBytes(switchPoint) ? lsnBytes(lastAcked) - lsnBytes(switchPoint) : 0n) : 0;
  let rpoMs = 0;
  if (lost.length > 0) {
    const first = lost[0];
    const keptBefore = sorted.filter((a) => present.has(a.seq) && a.ackedAtMs <= first.ackedAtMs).pop();
    rpoMs = lost[lost.length - 1].ackedAtMs - (keptBefore?.ackedAtMs ?? first.ackedAtMs);
  }
  return {
    log: logPath,
    acknowledged: sorted.length,
    acknowledgedBeforeFault: before.length,
    lost: lost.length,
    lostSample: lost.slice(0, 20).map((a) => a.seq),
    firstLostAt: lost[0] && new Date(lost[0].ackedAtMs).toISOString(),
    lastLostAt: lost.length ? new Date(lost[lost.length - 1].ackedAtMs).toISOString() : undefined,
    rpoMs,
    lostBytes,
    lastAckedLsnBeforeFault: lastAcked,
    switchPoint,
    writerAttempts: new Set(sorted.map((a) => a.attempt)).size,
  };
}

export interface WriteLoadDeps {
  ackLogDir: string;
  target(database: string): DrillTarget;
  endpointAddress(t: DrillTarget): Promise<{ host: string; port: number }>;
}

export function createWriteLoadActivities(deps: WriteLoadDeps) {
  const logPath = (drillId: string) => {
    if (!DRILL_ID.test(drillId)) throw failure('InvalidInput', `drill id '${drillId}' is not a plain id`);
    return join(deps.ackLogDir, `${drillId}.acks`);
  };

  return {
    /**
     * Inserts numbered rows through the service endpoint at the given rate until cancelled (or for
     * maxSeconds), reconnecting through the endpoint whenever a connection fails, and appends every
     * acknowledged commit to the drill's log before sending the next. A retried attempt continues the
     * same log with sequence numbers of its own.
     */
    async runWriteLoad(input: { database: string; drillId: string; rate: number; maxSeconds: number }): Promise<{ acknowledged: number; errors: number; log: string }> {
      if (!Number.isFinite(input.rate) || input.rate <= 0 || input.rate > MAX_WRITE_RATE) throw failure('InvalidInput', `write load rate: expected 1 to ${MAX_WRITE_RATE} rows per second, found ${input.rate}`);
      const t = deps.target(input.database);
      const file = logPath(input.drillId);
      mkdirSync(deps.ackLogDir, { recursive: true, mode: 0o700 });
      const ctx = Context.current();
      const attempt = ctx.info.attempt;
      const fd = openSync(file, 'a');
      let client: Client | undefined;
      let seq = attempt * ATTEMPT_SPAN;
      let acknowledged = 0;
      let errors = 0;
      let lastError: string | undefined;
      let lastAckAt: string | undefined;
      const beat = setInterval(() => ctx.heartbeat({ acknowledged, errors, lastError: lastError ?? null, lastAckAt: lastAckAt ?? null, log: file }), 500);
      const interval = 1000 / input.rate;
      const deadline = Date.now() + input.maxSeconds * 1000;
      const drop = () => {
        const c = client;
        client = undefined;
        // A connection stuck in a commit (its primary died) is abandoned, not waited for.
        void c?.end().catch(() => undefined);
      };
      try {
        let next = Date.now();
        while (!ctx.cancellationSignal.aborted && Date.now() < deadline) {
          next += interval;
          try {
            if (!client) {
              const a = await deps.endpointAddress(t);
              client = await connectPg({ host: a.host, port: a.port, user: t.credentials.user, password: t.credentials.password }, t.database, 'runbook-drill-writer');
              // A new primary may not have the table: its creation can be among what a failover lost.
              if (acknowledged === 0 || errors > 0) await client.query(WRITES_TABLE_DDL);
            }
            seq += 1;
            const c = client;
            // No statement_timeout: cancelling a commit that waits for a synchronous standby would
            // acknowledge it without the standby. The wait is given up on the client side instead.
            const r = await Promise.race([
              c.query<{ lsn: string }>(`INSERT INTO ${WRITES_TABLE} (drill_id, seq) VALUES ($1, $2) RETURNING pg_current_wal_lsn()::text AS lsn`, [input.drillId, seq]),
              new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no acknowledgement within 10 s')), 10_000)),
            ]);
            writeSync(fd, `${seq} ${Date.now()} ${r.rows[0].lsn} ${attempt}\n`);
            acknowledged += 1;
            lastAckAt = new Date().toISOString();
          } catch (err) {
            errors += 1;
            lastError = (err as Error).message;
            drop();
          }
          const wait = next - Date.now();
          if (wait > 0) await new Promise<void>((res) => {
            const timer = setTimeout(res, wait);
            ctx.cancellationSignal.addEventListener('abort', () => { clearTimeout(timer); res(); }, { once: true });
          });
          else next = Date.now();
        }
      } finally {
        clearInterval(beat);
        closeSync(fd);
        drop();
      }
      log.info('write load stopped', { acknowledged, errors, log: file });
      if (ctx.cancellationSignal.aborted) throw new CancelledFailure(`write load stopped after ${acknowledged} acknowledged commits`);
      return { acknowledged, errors, log: file };
    },

    /**
     * Counts the commits the write load had acknowledged that the new primary does not hold, with the
     * time span they cover and the WAL the old primary wrote past the new timeline's switch point.
     */
    async countLostWrites(input: { database: string; drillId: string; primary: string; faultAt: string }): Promise<LostWrites> {
      const t = deps.target(input.database);
      const file = logPath(input.drillId);
      if (!existsSync(file)) throw failure('InvalidInput', `the write load's log ${file} is not on this worker's host; run workers of one environment on hosts that share ${deps.ackLogDir}`);
      const acks = parseAckLog(readFileSync(file, 'utf8'));
      const m = t.members.find((x) => x.name === input.primary);
      if (!m) throw failure('InvalidInput', `node '${input.primary}' is not in the topology`);
      const c = await connectPg({ host: m.host, port: m.port, user: t.credentials.user, password: t.credentials.password }, t.database, 'runbook-drill');
      let present: Set<number>;
      try {
        const exists = (await c.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [WRITES_TABLE])).rows[0].t;
        const r = exists ? await c.query<{ seq: string }>(`SELECT seq::text AS seq FROM ${WRITES_TABLE} WHERE drill_id = $1`, [input.drillId]) : { rows: [] };
        present = new Set(r.rows.map((x) => Number(x.seq)));
      } finally {
        await c.end().catch(() => undefined);
      }
      const switchPoint = await t.driver.switchPoint(input.primary);
      return judgeLostWrites(acks, present, Date.parse(input.faultAt), switchPoint, file);
    },
  };
}
