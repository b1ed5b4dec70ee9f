/**
 * The sandbox's PostgreSQL roles: one per runbook purpose (src/config/pgRoles.ts) and the application
 * owner, created on a primary with the superuser the sandbox started it with, so no runbook in the
 * sandbox's config connects as a superuser.
 */
import { Client as PgClient } from 'pg';
import { PgCredential, RUNBOOK_ROLE_PURPOSES, RunbookRolePurpose, roleStatements, RoleStatement } from '../config/pgRoles';
import type { SecretRef } from '../config/secrets';

/** The sandbox's role names: the same on every sandbox server. */
export const SANDBOX_ROLES: Record<RunbookRolePurpose | 'owner', string> = {
  owner: 'app_owner',
  backup: 'runbook_backup',
  drill: 'runbook_drill',
  checks: 'runbook_checks',
  canary: 'runbook_canary',
};

/** The secret file (under the stack's secrets/) holding a sandbox role's password. */
export const roleSecretName = (user: string) => `pg-${user}-password`;

export interface SandboxRoles {
  /** The database's `user`/`password`: the owner where `owner` was asked for, else the checks role. */
  login: PgCredential;
  roles: Record<RunbookRolePurpose, PgCredential>;
}

/**
 * Creates (or updates) the runbook roles on one server and grants them their privileges in `database`.
 * `secret(name)` returns the password kept under that name (generated once). `extra` statements run
 * after the grants (Temporal's own tables the checks read). Idempotent: a restarted stack runs it again.
 */
export async function ensureSandboxRoles(o: {
  server: { host: string; port: number; user: string; password: string };
  database: string;
  owner: boolean;
  secret: (name: string) => string;
  extra?: RoleStatement[];
}): Promise<SandboxRoles> {
  const purposes: (RunbookRolePurpose | 'owner')[] = [...(o.owner ? (['owner'] as const) : []), ...RUNBOOK_ROLE_PURPOSES];
  const statements: RoleStatement[] = [];
  const passwords: { user: string; password: string }[] = [];
  for (const purpose of purposes) {
    const user = SANDBOX_ROLES[purpose];
    statements.push(...roleStatements(purpose, user, o.database));
    passwords.push({ user, password: o.secret(roleSecretName(user)) });
  }
  statements.push(...(o.extra ?? []));
  const databases = ['postgres', o.database] as const;
  for (const [i, name] of databases.entries()) {
    const c = new PgClient({ host: o.server.host, port: o.server.port, user: o.server.user, password: o.server.password, database: name, connectionTimeoutMillis: 10_000 });
    await c.connect();
    try {
      for (const s of statements.filter((s) => (s.in === 'postgres') === (i === 0))) await c.query(s.sql);
      if (i === 0) for (const p of passwords) await c.query(`ALTER ROLE "${p.user}" PASSWORD ${c.escapeLiteral(p.password)}`);
    } finally {
      await c.end().catch(() => undefined);
    }
  }
  const ref = (user: string): PgCredential => ({ user, password: `file:secrets/${roleSecretName(user)}` as SecretRef });
  return {
    login: ref(o.owner ? SANDBOX_ROLES.owner : SANDBOX_ROLES.checks),
    roles: Object.fromEntries(RUNBOOK_ROLE_PURPOSES.map((p) => [p, ref(SANDBOX_ROLES[p])])) as Record<RunbookRolePurpose, PgCredential>,
  };
}
