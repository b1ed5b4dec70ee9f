import { proxyActivities, uuid4 } from '@temporalio/workflow';
import type { BackupActivities } from '../activities/backups';
import { PREFLIGHT, QUICK, TRANSFER } from './lib/backupOptions';
import { acquireTarget } from './lib/exclusive';
import { DATABASE_KEY, ENVIRONMENT_NAME, InputChecker, timestampId } from './lib/input';
import { runRunbook, TimelineSnapshot } from './lib/timeline';

const preflight = proxyActivities<BackupActivities>(PREFLIGHT);
const quick = proxyActivities<BackupActivities>(QUICK);
const transfer = proxyActivities<BackupActivities>(TRANSFER);

export interface BackupDatabaseInput {
  environment: string;
  /** The database's key under environments.<env>.databases (e.g. main). */
  database: string;
}

export interface BackupDatabaseResult {
  runbook: 'backupDatabase';
  environment: string;
  database: string;
  backupId: string;
  bytes: number;
  sha256: string;
  manifestKey: string;
  tableCount: number;
  retention: { kept: string[]; deleted: string[] };
  timeline: TimelineSnapshot;
}

export function validateBackupDatabaseInput(input: unknown): BackupDatabaseInput {
  const check = InputChecker.of('backupDatabase', input);
  check.matches('environment', ENVIRONMENT_NAME, 'an environment name');
  check.matches('database', DATABASE_KEY, 'a database key from the config (e.g. main)');
  check.done();
  return check.value as unknown as BackupDatabaseInput;
}

/** pg_dump streamed to S3 with a manifest from the same snapshot, then retention. */
export async function backupDatabase(rawInput: BackupDatabaseInput): Promise<BackupDatabaseResult> {
  const input = validateBackupDatabaseInput(rawInput);
  return runRunbook('backupDatabase', input.environment, async (timeline) => {
    const backupId = timestampId(Date.now(), uuid4().replace(/-/g, '').slice(0, 6));
    await timeline.step('preflight', async (evidence) => {
      const p = await preflight.preflightBackupTarget({ database: input.database, environment: input.environment });
      Object.assign(evidence, { databaseName: p.databaseName, serverVersion: p.serverVersion });
      // No drill (or second backup) acts on this database while the dump runs.
      const held = await acquireTarget({ environment: input.environment, runbook: 'backupDatabase', checkFreezes: true, kind: 'database', target: input.database });
      if (held) evidence.target = `database ${input.database} held (${held.held})`;
    });
    const backup = await timeline.step('dump to S3', async (evidence) => {
      const b = await transfer.takeBackup({ database: input.database, backupId });
      Object.assign(evidence, { backupId, bytes: b.bytes, sha256: b.sha256, tables: b.tableCount, manifestKey: b.manifestKey });
      return b;
    });
    const retention = await timeline.step('apply retention', async (evidence) => {
      const r = await quick.applyRetention({ database: input.database, nowMs: Date.now() });
      Object.assign(evidence, { kept: r.kept.length, deleted: r.deleted });
      return r;
    });
    return {
      runbook: 'backupDatabase' as const,
      environment: input.environment,
      database: input.database,
      backupId,
      bytes: backup.bytes,
      sha256: backup.sha256,
      manifestKey: backup.manifestKey,
      tableCount: backup.tableCount,
      retention,
    };
  });
}
