/**
 * PostgreSQL roles per runbook: which credential each runbook connects with, and the privileges each
 * role needs (no more). The SQL here is what the sandbox runs and what the README documents; an
 * operator runs the same statements (from `roleStatements`) as a superuser once per database.
 */
import type { SecretRef } from './secrets';

/**
 * The purposes a database's runbooks connect for.
 * - `backup`: logical dumps (pg_dump, pg_dumpall --globals-only without role passwords), pgBackRest
 *   backups (the backup functions, a fast checkpoint, settings), the restore test's reads of the source.
 * - `drill`: the DR drill on its topology: probes and markers in tables of its own, pg_promote, pg_rewind
 *   and pg_basebackup (local driver), replication state.
 * - `checks`: the readiness audit, go-live and the preflights: statistics and settings, no table data.
 * - `canary`: the restore canary's rows in a table of its own.
 * Anything else (release migrations and a release's database restore) uses the database's `user`.
 */
export const RUNBOOK_ROLE_PURPOSES = ['backup', 'drill', 'checks', 'canary'] as const;
export type RunbookRolePurpose = (typeof RUNBOOK_ROLE_PURPOSES)[number];

export interface PgCredential {
  user: string;
  password: SecretRef;
}

/** The credential a purpose connects with: its role when one is configured, else the database's user. */
export function credentialFor(db: PgCredential & { roles?: Partial<Record<RunbookRolePurpose, PgCredential>> }, purpose: RunbookRolePurpose | 'owner'): PgCredential {
  const role = purpose === 'owner' ? undefined : db.roles?.[purpose];
  return role ?? { user: db.user, password: db.password };
}

/** One statement and the database it runs in (function grants are per database). */
export interface RoleStatement {
  /** 'postgres' (the maintenance database) or 'target' (the runbook's database). */
  in: 'postgres' | 'target';
  sql: string;
}

const ident = (name: string) => {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`role or database name '${name}' is not a plain lower-case identifier`);
  return `"${name}"`;
};

/** Temporal's own database: the audit reads its schema version and cluster metadata (run in that database, and SELECT on schema_version in the visibility database). */
export const temporalChecksGrant = (role: string, tables: string[]): RoleStatement => ({ in: 'target', sql: `GRANT SELECT ON ${tables.join(', ')} TO ${ident(role)}` });

/** What each purpose is granted, besides LOGIN; the README's table is written from the same list. */
export const ROLE_PRIVILEGES: Record<RunbookRolePurpose | 'owner', { attributes: string[]; grants: (role: string, database: string) => RoleStatement[]; why: string }> = {
  owner: {
    attributes: ['CREATEDB'],
    grants: (role, database) => [
      { in: 'postgres', sql: `GRANT pg_signal_backend TO ${role}` },
      { in: 'postgres', sql: `ALTER DATABASE ${database} OWNER TO ${role}` },
    ],
    why: 'owns the application database: release migrations; a release rollback restores into a new database and swaps it in (CREATEDB, ends the old sessions)',
  },
  backup: {
    attributes: ['REPLICATION'],
    grants: (role) => [
      { in: 'postgres', sql: `GRANT pg_read_all_data, pg_read_all_settings, pg_checkpoint, pg_monitor TO ${role}` },
      // pgBackRest calls these in the database it connects to (pg1-database, postgres by default).
      { in: 'postgres', sql: `GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean), pg_backup_stop(boolean), pg_create_restore_point(text), pg_switch_wal() TO ${role}` },
    ],
    why: 'reads every table (pg_dump, the restore test compares against the source) but writes none; pgBackRest starts and stops backups, checkpoints and switches WAL',
  },
  drill: {
    attributes: ['REPLICATION'],
    grants: (role) => [
      { in: 'postgres', sql: `GRANT pg_monitor TO ${role}` },
      // pg_rewind's source connection (the maintenance database).
      { in: 'postgres', sql: `GRANT EXECUTE ON FUNCTION pg_ls_dir(text, boolean, boolean), pg_stat_file(text, boolean), pg_read_binary_file(text), pg_read_binary_file(text, bigint, bigint, boolean) TO ${role}` },
      { in: 'target', sql: `GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer) TO ${role}` },
      // The drill's markers and write probe live in tables it creates and owns.
      { in: 'target', sql: `GRANT CREATE ON SCHEMA public TO ${role}` },
    ],
    why: 'writes only its own marker and probe tables; promotes a standby, rewinds and re-clones the old primary (local driver); reads replication state',
  },
  checks: {
    attributes: [],
    grants: (role) => [{ in: 'postgres', sql: `GRANT pg_monitor TO ${role}` }],
    why: 'reads statistics, settings and replication state (pg_monitor); no table data',
  },
  canary: {
    attributes: [],
    grants: (role) => [{ in: 'target', sql: `GRANT CREATE ON SCHEMA public TO ${role}` }],
    why: 'writes and prunes only its own canary table',
  },
};

/**
 * The statements that create (or update) one role with exactly its privileges. Idempotent: run again
 * after a password change. The password is set separately (`ALTER ROLE ... PASSWORD`), so it never
 * appears in this list.
 */
export function roleStatements(purpose: RunbookRolePurpose | 'owner', user: string, database: string): RoleStatement[] {
  const role = ident(user);
  const p = ROLE_PRIVILEGES[purpose];
  const attrs = ['LOGIN', 'NOSUPERUSER', ...p.attributes].join(' ');
  return [
    { in: 'postgres', sql: `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${user}') THEN CREATE ROLE ${role}; END IF; END $$` },
    { in: 'postgres', sql: `ALTER ROLE ${role} ${attrs}` },
    ...p.grants(role, ident(database)),
  ];
}
