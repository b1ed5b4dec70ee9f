/**
 * The readiness audit's PostgreSQL checks: every configured database's current primary, reached as the
 * checks role (statistics and settings, no table data).
 */
import type { CheckId } from '../../checklist/catalog';
import { connectPg } from '../pg';
import { reachServer } from '../primary';
import { CheckDeps, fail, pass, pgServerOf, unknown, VerdictFn } from './support';

/** Every configured database with the locator of its current primary. */
export function auditedDatabases(deps: CheckDeps) {
  return Object.entries(deps.env.databases).map(([key, db]) => ({
    key,
    db,
    // The current primary (through the service address or the topology driver), not a node's fixed address.
    server: pgServerOf(db, deps.baseDir),
  }));
}

export const noDatabases = (deps: CheckDeps) => unknown(`no databases: section for environment ${deps.environment}`);

export function createPostgresChecks(deps: CheckDeps): Record<Extract<CheckId, `checkPostgres${string}`>, VerdictFn> {
  const databases = () => auditedDatabases(deps);
  const eachDatabase = async <T>(fn: (d: ReturnType<typeof databases>[number], q: (sql: string) => Promise<Record<string, string>[]>) => Promise<T>): Promise<Record<string, T>> => {
    const out: Record<string, T> = {};
    for (const d of databases()) {
      const client = await connectPg(await reachServer(d.server), d.db.database, 'runbook-readiness-audit');
      try {
        out[d.key] = await fn(d, async (sql) => (await client.query<Record<string, string>>(sql)).rows);
      } finally {
        await client.end().catch(() => undefined);
      }
    }
    return out;
  };
  return {
    async checkPostgresConnections() {
      if (databases().length === 0) return noDatabases(deps);
      const found = await eachDatabase(async (_d, q) => {
        const r = (await q("SELECT current_setting('max_connections')::int AS max, current_setting('superuser_reserved_connections')::int AS reserved, (SELECT count(*) FROM pg_stat_activity)::int AS used"))[0];
        const max = Number(r.max);
        const used = Number(r.used);
        return { maxConnections: max, reserved: Number(r.reserved), inUse: used, usage: Number((used / max).toFixed(3)) };
      });
      const busy = Object.entries(found).filter(([, v]) => v.usage >= 0.8).map(([k]) => k);
      return busy.length === 0 ? pass('connections below 80% of max_connections everywhere', { databases: found }) : fail(`connections at 80% or more of max_connections: ${busy.join(', ')}`, { databases: found });
    },
    async checkPostgresTimeouts() {
      if (databases().length === 0) return noDatabases(deps);
      const names = ['statement_timeout', 'idle_in_transaction_session_timeout', 'lock_timeout', 'tcp_keepalives_idle'];
      const found = await eachDatabase(async (_d, q) => {
        const rows = await q(`SELECT name, setting, unit FROM pg_settings WHERE name IN (${names.map((n) => `'${n}'`).join(', ')})`);
        return Object.fromEntries(rows.map((r) => [r.name, `${r.setting}${r.unit ?? ''}`]));
      });
      // An idle transaction holds its locks and its snapshot forever: it needs a limit.
      const unlimited = Object.entries(found).filter(([, v]) => /^0/.test(v.idle_in_transaction_session_timeout ?? '0')).map(([k]) => k);
      return unlimited.length === 0 ? pass('idle transactions are ended by idle_in_transaction_session_timeout', { databases: found }) : fail(`idle_in_transaction_session_timeout is 0 (unlimited) on: ${unlimited.join(', ')}`, { databases: found });
    },
  };
}
