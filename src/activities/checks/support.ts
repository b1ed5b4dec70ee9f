/**
 * What every check module of the readiness audit shares: the verdict a check returns, the
 * dependencies it is built from, and the PostgreSQL helpers several systems' checks use.
 */
import type { Client } from '@temporalio/client';
import { hostname } from 'node:os';
import type { CheckInput } from '../../checklist/catalog';
import type { TemporalConnectionSettings } from '../../config/connection';
import type { EnvironmentConfig } from '../../config/schema';
import type { ServerLocator } from '../backups';
import { connectPg } from '../pg';
import { credentialFor } from '../../config/pgRoles';
import { primaryLocator, reachServer } from '../primary';
import type { ObjectStore } from '../s3';

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
  /** Reads a pgBackRest database's repository (its newest backup), for databases backed up that way. */
  physicalRepository?: (database: string) => Promise<{ backups: { label: string; stoppedAt: string; repoBytes: number; error: boolean }[] }>;
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

/**
 * How the audit reaches a configured database: its service address when one is configured, otherwise
 * the primary the topology driver finds at the moment of use (never a node's fixed address, which may
 * be a replica since the last failover); the password is read from its reference at each use.
 */
export function pgServerOf(db: EnvironmentConfig['databases'][string], baseDir: string): ServerLocator {
  const checks = credentialFor(db, 'checks');
  return primaryLocator(baseDir, db, checks.user, checks.password);
}

/** Runs fn with a query function on one database, closing the connection afterwards. */
export async function withPg<T>(server: ServerLocator, database: string, fn: (q: (sql: string, values?: unknown[]) => Promise<Record<string, unknown>[]>) => Promise<T>): Promise<T> {
  const client = await connectPg(await reachServer(server), database, 'runbook-readiness-audit');
  try {
    return await fn(async (sql, values) => (await client.query<Record<string, unknown>>(sql, values)).rows);
  } finally {
    await client.end().catch(() => undefined);
  }
}
