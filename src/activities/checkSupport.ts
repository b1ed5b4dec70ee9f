/**
 * What every check module of the readiness audit shares: the verdict a check returns, the
 * dependencies it is built from, and the PostgreSQL helpers several systems' checks use.
 */
import type { Client } from '@temporalio/client';
import { hostname } from 'node:os';
import type { CheckInput } from '../checklist/catalog';
import type { TemporalConnectionSettings } from '../config/connection';
import type { EnvironmentConfig } from '../config/schema';
import { readSecret } from '../config/secrets';
import { connectPg, PgServer } from './pg';
import type { ObjectStore } from './s3';

/** What a check found, before the wrapper adds its name and duration. */
export interface Verdict {
  status: 'pass' | 'fail' | 'unknown';
  summary: string;
  evidence: Record<string, unknown>;
}

export type VerdictFn = (timeoutMs: number, input: CheckInput, signal: AbortSignal) => Promise<Verdict>;

export interface CheckDeps {
  environment: string;
  env: EnvironmentConfig;
  /** Directory relative paths in the config (kubeconfig, file: secrets, the dynamic config file) are resolved against. */
  baseDir: string;
  temporal: () => Promise<Client>;
  temporalSettings: () => TemporalConnectionSettings;
  store?: ObjectStore;
}

export const pass = (summary: string, evidence: Record<string, unknown> = {}): Verdict => ({ status: 'pass', summary, evidence });
export const fail = (summary: string, evidence: Record<string, unknown> = {}): Verdict => ({ status: 'fail', summary, evidence });
export const unknown = (summary: string, evidence: Record<string, unknown> = {}): Verdict => ({ status: 'unknown', summary, evidence });

export const errorText = (err: unknown): string => {
  const e = err as { message?: string; code?: unknown; details?: string };
  const text = e?.details || e?.message || String(err);
  return text.replace(/\s+/g, ' ').slice(0, 300);
};

/**
 * The identity this process's Temporal workers poll with: the SDK's default, process id at host name.
 * The audit runs on one of them, so its own pollers are told apart from the deployed workers'.
 */
export function ownWorkerIdentity(): string {
  return `${process.pid}@${hostname()}`;
}

/** A configured database's server, its password read from the reference at each use. */
export function pgServerOf(db: EnvironmentConfig['databases'][string], baseDir: string): PgServer {
  return {
    host: db.host,
    port: db.port,
    user: db.user,
    get password() {
      return readSecret(db.password, baseDir);
    },
  };
}

/** Runs fn with a query function on one database, closing the connection afterwards. */
export async function withPg<T>(server: PgServer, database: string, fn: (q: (sql: string, values?: unknown[]) => Promise<Record<string, unknown>[]>) => Promise<T>): Promise<T> {
  const client = await connectPg(server, database, 'runbook-readiness-audit');
  try {
    return await fn(async (sql, values) => (await client.query<Record<string, unknown>>(sql, values)).rows);
  } finally {
    await client.end().catch(() => undefined);
  }
}
