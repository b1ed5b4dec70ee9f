import type { LoadedConfig } from '../config/load';
import { selectEnvironment } from '../config/load';
import { readSecret, SecretRef } from '../config/secrets';
import { BackupTarget, createBackupActivities } from './backups';
import { failure } from './errors';
import type { PgServer } from './pg';
import { createS3Client, ObjectStore } from './s3';
import { createSmokeActivities } from './smoke';

/** A server whose password is read from its reference at each use, so a rotated secret is picked up. */
function pgServer(host: string, port: number, user: string, password: SecretRef, baseDir: string): PgServer {
  return {
    host,
    port,
    user,
    get password() {
      return readSecret(password, baseDir);
    },
  };
}

function backupActivitiesFor(loaded: LoadedConfig, environment: string) {
  const { env } = selectEnvironment(loaded, environment);
  if (!env.backups) {
    // Registered anyway, so a backup runbook started for this environment fails with a reason, not "activity not registered".
    const refuse = async (): Promise<never> => {
      throw failure('InvalidInput', `environment ${environment} has no backups: section in ${loaded.file}; add a bucket to back up to`);
    };
    const stub = createBackupActivities({ environment, store: undefined as never, prefix: '', databases: {}, retention: {} });
    return Object.fromEntries(Object.keys(stub).map((k) => [k, refuse])) as unknown as typeof stub;
  }
  const databases: Record<string, BackupTarget> = {};
  for (const [name, db] of Object.entries(env.databases)) {
    const rt = db.restoreTest;
    databases[name] = {
      server: pgServer(db.host, db.port, db.user, db.password, loaded.baseDir),
      database: db.database,
      restore: {
        server: pgServer(rt.host ?? db.host, rt.port ?? db.port, rt.user ?? db.user, rt.password ?? db.password, loaded.baseDir),
        jobs: rt.jobs,
        randomWindowMs: rt.randomWindow,
        assertions: rt.assertions,
        maxBackupAgeMs: rt.maxBackupAge ?? env.targets.rpo,
      },
    };
  }
  return createBackupActivities({
    environment,
    store: new ObjectStore(createS3Client(loaded, env.backups), env.backups.bucket),
    prefix: env.backups.prefix,
    databases,
    retention: { keepLast: env.backups.retention.keepLast, maxAgeMs: env.backups.retention.maxAge },
  });
}

/** All activities of one environment, built from config, each module closing over its own clients. */
export function createActivities(loaded: LoadedConfig, environment: string) {
  return {
    ...createSmokeActivities(),
    ...backupActivitiesFor(loaded, environment),
  };
}

export type Activities = ReturnType<typeof createActivities>;
