import { childEnv } from '../system/process';
import { Client, ClientConfig } from 'pg';
import { classify } from './errors';

/** How to reach one PostgreSQL server as one user. Passwords stay inside the worker. */
export interface PgServer {
  host: string;
  port: number;
  user: string;
  password: string;
}

/**
 * Session settings under which a row's text form is the same on every server and session, so
 * checksums taken at backup time compare with those taken on the restored copy.
 */
const CANONICAL_SESSION = [
  "SET TimeZone = 'UTC'",
  "SET DateStyle = 'ISO, YMD'",
  "SET IntervalStyle = 'postgres'",
  'SET extra_float_digits = 3',
  "SET bytea_output = 'hex'",
];

export async function connectPg(server: PgServer, database: string, applicationName = 'runbook'): Promise<Client> {
  const config: ClientConfig = {
    host: server.host,
    port: server.port,
    user: server.user,
    password: server.password,
    database,
    application_name: applicationName,
    connectionTimeoutMillis: 10_000,
  };
  const client = new Client(config);
  // An idle client whose server goes away emits 'error'; without a listener that crashes the worker.
  client.on('error', () => undefined);
  try {
    await client.connect();
    for (const sql of CANONICAL_SESSION) await client.query(sql);
  } catch (err) {
    await client.end().catch(() => undefined);
    throw classify(err, `connecting to ${server.host}:${server.port}/${database} as ${server.user}`);
  }
  return client;
}

/** A double-quoted SQL identifier; embedded quotes are doubled, so no name can end the quoting. */
export function quoteIdent(name: string): string {
  if (name.includes('\0')) throw new Error('identifier contains a NUL byte');
  return `"${name.replace(/"/g, '""')}"`;
}

export interface TableStats {
  schema: string;
  name: string;
  rows: number;
  /** Order-independent sum of per-row hashes: equal contents give equal checksums whatever the physical order. */
  checksum: string;
}

/** Every user table (partitions included, partitioned parents not, so rows count once). */
export async function listTables(client: Client): Promise<{ schema: string; name: string }[]> {
  const res = await client.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
      ORDER BY 1, 2`,
  );
  return res.rows;
}

export async function tableStats(client: Client, table: { schema: string; name: string }): Promise<TableStats> {
  const res = await client.query<{ rows: string; checksum: string }>(
    `SELECT count(*)::text AS rows,
            coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)::text AS checksum
       FROM ${quoteIdent(table.schema)}.${quoteIdent(table.name)} t`,
  );
  return { ...table, rows: Number(res.rows[0].rows), checksum: res.rows[0].checksum };
}

export async function serverVersion(client: Client): Promise<string> {
  const res = await client.query<{ server_version: string }>('SHOW server_version');
  return res.rows[0].server_version;
}

/** The worker's libpq TLS settings, which the tools must honour as the worker's own connections do. */
export const PG_TLS_VARIABLES = ['PGSSLMODE', 'PGSSLROOTCERT', 'PGSSLCERT', 'PGSSLKEY', 'PGSSLCRL', 'PGSSLCRLDIR', 'PGSSLMINPROTOCOLVERSION'] as const;

/**
 * Environment for pg_dump / pg_restore: the password travels in the environment, never on the command
 * line; beside it only PATH, the locale and the TLS settings, never the worker's other variables.
 */
export function pgToolEnv(server: PgServer, applicationName: string): NodeJS.ProcessEnv {
  return childEnv({ PGPASSWORD: server.password, PGAPPNAME: applicationName, PGCONNECT_TIMEOUT: '10', TZ: 'UTC' }, PG_TLS_VARIABLES);
}
