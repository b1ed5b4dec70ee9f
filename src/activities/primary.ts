/**
 * How runbooks reach a configured database: credentials read at each use, and the primary found
 * through the service address or the topology driver at each use.
 */
import { readSecret, SecretRef } from '../config/secrets';
import { createTopologyDriver, DatabaseConfig } from '../topology';
import type { ServerLocator } from './backups';

export const reachServer = (s: ServerLocator): Promise<PgServer> => Promise.resolve(typeof s === 'function' ? s() : s);
import type { PgServer } from './pg';

/** A server whose password is read from its reference at each use, so a rotated secret is picked up. */
export function pgServer(host: string, port: number, user: string, password: SecretRef, baseDir: string): PgServer {
  return {
    host,
    port,
    user,
    get password() {
      return readSecret(password, baseDir);
    },
  };
}

/**
 * How runbooks reach a database's primary: its service address when one is configured (a DNS name,
 * HAProxy or a VIP that follows the primary), otherwise wherever the topology driver finds the
 * primary at the moment of use, so nothing is pinned to the address of a node that may be a replica now.
 */
export function primaryLocator(baseDir: string, db: DatabaseConfig, user: string, password: SecretRef): ServerLocator {
  if (db.host) return pgServer(db.host, db.port, user, password, baseDir);
  const driver = createTopologyDriver(db, baseDir, { user, password })!;
  return async () => {
    const p = await driver.primaryAddress();
    return pgServer(p.host, p.port, user, password, baseDir);
  };
}

