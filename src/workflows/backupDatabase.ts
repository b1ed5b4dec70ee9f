import { proxyActivities, uuid4 } from '@temporalio/workflow';
import type { BackupActivities } from '../activities/backups';
import { DATABASE_KEY, ENVIRONMENT_NAME, InputChecker, timestampId } from './lib/input';
import { runRunbook, TimelineSnapshot } from './lib/timeline';

const PERMANENT = ['InvalidInput', 'DatabaseNotFound', 'AuthenticationFailed', 'PermissionDenied', 'BucketNotFound', 'BackupNotFound', 'BackupChecksumMismatch'];

// Preflight fails fast: an unreachable server or a missing bucket should stop the run before anything is changed.
const preflight = proxyActivities<BackupActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT },
});
// Short calls: listing, checks, small objects.
const quick = proxyActivities<BackupActivities>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5, nonRetryableErrorTypes: PERMANENT },
});
// The dump: hours for a large database, heartbeating every couple of seconds with bytes written.
const transfer = proxyActivities<BackupActivities>({
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '10 seconds', backoffCoefficient: 2, maximumInterval: '5 minutes', maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT },
});

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
      const p = await preflight.preflightBackupTarget({ database: input.database });
      Object.assign(evidence, { databaseName: p.databaseName, serverVersion: p.serverVersion });
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
