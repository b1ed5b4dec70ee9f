/**
 * The topology driver of a configured database: `local` or `patroni`, built from its config with
 * secrets read at each use (a rotated password is picked up).
 */
import { credentialFor, PgCredential } from '../config/pgRoles';
import { readSecret } from '../config/secrets';
import type { EnvironmentConfig } from '../config/schema';
import { createLocalDriver } from './local';
import { createPatroniDriver } from './patroni';
import type { TopologyDriver } from './types';

export * from './types';
export { createLocalDriver } from './local';
export { createPatroniDriver } from './patroni';

export type DatabaseConfig = EnvironmentConfig['databases'][string];
export type TopologyConfig = NonNullable<DatabaseConfig['topology']>;

/**
 * `login` is who the driver's SQL connects as: the drill's role by default (it promotes, rewinds and
 * re-clones); a runbook that only locates the primary passes its own.
 */
export function createTopologyDriver(db: DatabaseConfig, baseDir: string, login: PgCredential = credentialFor(db, 'drill')): TopologyDriver | undefined {
  const t = db.topology;
  if (!t) return undefined;
  const credentials = {
    user: login.user,
    get password() {
      return readSecret(login.password, baseDir);
    },
  };
  if (t.driver === 'local') return createLocalDriver({ nodes: t.nodes, credentials, database: db.database });
  const secret = (ref: Parameters<typeof readSecret>[0] | undefined) => (ref ? () => readSecret(ref, baseDir) : undefined);
  return createPatroniDriver({
    members: t.members,
    api: { username: t.api.username, password: secret(t.api.password), ca: secret(t.api.tls?.ca), cert: secret(t.api.tls?.cert), key: secret(t.api.tls?.key), serverName: t.api.tls?.serverName },
    credentials,
    database: db.database,
    commands: t.commands,
    rejoinTimeoutMs: t.rejoinTimeout,
  });
}

/** How long the drill waits for a new primary after the fault (Patroni: electionTimeout; local: the promotion itself). */
export function electionTimeoutMs(t: TopologyConfig): number {
  return t.driver === 'patroni' ? t.electionTimeout : 120_000;
}

/** The member names of a topology, as the drill names them. */
export function topologyMembers(t: TopologyConfig): { name: string; host: string; port: number }[] {
  return t.driver === 'local' ? t.nodes : t.members;
}
