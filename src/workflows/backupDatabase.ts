import { ApplicationFailure, proxyActivities, uuid4 } from '@temporalio/workflow';
import type { BackupActivities } from '../activities/backups';
import type { BackupType, PhysicalBackupActivities } from '../activities/pgbackrest';
import { PREFLIGHT, QUICK, TRANSFER } from './lib/backupOptions';
import { PHYSICAL_QUICK, PHYSICAL_TRANSFER } from './lib/physicalOptions';
import { acquireTarget } from './lib/exclusive';
import { DATABASE_KEY, ENVIRONMENT_NAME, InputChecker, timestampId } from './lib/input';
import { runRunbook, Timeline, TimelineSnapshot } from './lib/timeline';

const preflight = proxyActivities<BackupActivities>(PREFLIGHT);
const quick = proxyActivities<BackupActivities>(QUICK);
const transfer = proxyActivities<BackupActivities>(TRANSFER);
const physical = proxyActivities<PhysicalBackupActivities>(PHYSICAL_TRANSFER);
const physicalQuick = proxyActivities<PhysicalBackupActivities>(PHYSICAL_QUICK);

export interface BackupDatabaseInput {
  environment: string;
  /** The database's key under environments.<env>.databases (e.g. main). */
  database: string;
  /** pgBackRest databases: full, diff (since the last full) or incr (since the last backup; default). */
  type?: BackupType;
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

/** A pgBackRest backup: the backup set it wrote, as the repository lists it. */
export interface PhysicalBackupDatabaseResult {
  runbook: 'backupDatabase';
  method: 'pgbackrest';
  environment: string;
  database: string;
  backupId: string;
  label: string;
  type: BackupType;
  prior: string | null;
  reference: string[];
  startedAt: string;
  stoppedAt: string;
  walStart: string;
  walStop: string;
  /** This backup's size in the repository, the backup set's, and the database's. */
  bytes: number;
  repoBytes: number;
  databaseBytes: number;
  node: string;
  retention: { kept: string[]; deleted: string[] };
  timeline: TimelineSnapshot;
}

export function validateBackupDatabaseInput(input: unknown): BackupDatabaseInput {
  const check = InputChecker.of('backupDatabase', input);
  check.matches('environment', ENVIRONMENT_NAME, 'an environment name');
  check.matches('database', DATABASE_KEY, 'a database key from the config (e.g. main)');
  check.matches('type', /^(full|diff|incr)$/, 'full, diff or incr', true);
  check.done();
  return check.value as unknown as BackupDatabaseInput;
}

/**
 * pg_dump streamed to S3 with a manifest from the same snapshot, then retention; or, for a pgBackRest
 * database, a full, differential or incremental backup of the current primary, then pgBackRest's expire.
 */
export async function backupDatabase(rawInput: BackupDatabaseInput): Promise<BackupDatabaseResult | PhysicalBackupDatabaseResult> {
  const input = validateBackupDatabaseInput(rawInput);
  return runRunbook('backupDatabase', input.environment, async (timeline): Promise<Omit<BackupDatabaseResult, 'timeline'> | Omit<PhysicalBackupDatabaseResult, 'timeline'>> => {
    const backupId = timestampId(Date.now(), uuid4().replace(/-/g, '').slice(0, 6));
    const method = await timeline.step('preflight', async (evidence) => {
      const p = await preflight.preflightBackupTarget({ database: input.database, environment: input.environment });
      Object.assign(evidence, { databaseName: p.databaseName, serverVersion: p.serverVersion });
      // Runs recorded before pgBackRest existed have no method: they were dumps.
      const m = p.method ?? 'dump';
      if (m === 'dump' && input.type !== undefined) {
        throw ApplicationFailure.create({ type: 'InvalidInput', nonRetryable: true, message: `type: ${input.type} backups are pgBackRest backups; ${input.database} is backed up with pg_dump (backups.method: dump)` });
      }
      if (m === 'pgbackrest') evidence.method = m;
      // No drill (or second backup) acts on this database while the backup runs.
      const held = await acquireTarget({ environment: input.environment, runbook: 'backupDatabase', checkFreezes: true, kind: 'database', target: input.database });
      if (held) evidence.target = `database ${input.database} held (${held.held})`;
      return m;
    });
    if (method === 'pgbackrest') return physicalBackup(input, backupId, timeline);
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

async function physicalBackup(input: BackupDatabaseInput, backupId: string, timeline: Timeline): Promise<Omit<PhysicalBackupDatabaseResult, 'timeline'>> {
  const type = input.type ?? 'incr';
  const b = await timeline.step(`pgBackRest ${type} backup`, async (evidence) => {
    const r = await physical.takePhysicalBackup({ database: input.database, backupId, type });
    // The backup set as the repository records it: what a restore of this backup needs.
    Object.assign(evidence, {
      backupId,
      label: r.label,
      type: r.type,
      prior: r.prior,
      reference: r.reference,
      node: r.node,
      startedAt: r.startedAt,
      stoppedAt: r.stoppedAt,
      walStart: r.walStart,
      walStop: r.walStop,
      lsnStart: r.lsnStart,
      lsnStop: r.lsnStop,
      databaseBytes: r.databaseBytes,
      repoBytes: r.repoBytes,
      repoDeltaBytes: r.repoDeltaBytes,
      alreadyDone: r.alreadyDone,
    });
    return r;
  });
  const retention = await timeline.step('apply retention', async (evidence) => {
    const r = await physicalQuick.expirePhysicalBackups({ database: input.database });
    Object.assign(evidence, { kept: r.kept.length, expired: r.expired });
    return { kept: r.kept, deleted: r.expired };
  });
  return {
    runbook: 'backupDatabase',
    method: 'pgbackrest',
    environment: input.environment,
    database: input.database,
    backupId,
    label: b.label,
    type: b.type,
    prior: b.prior,
    reference: b.reference,
    startedAt: b.startedAt,
    stoppedAt: b.stoppedAt,
    walStart: b.walStart,
    walStop: b.walStop,
    bytes: b.repoDeltaBytes,
    repoBytes: b.repoBytes,
    databaseBytes: b.databaseBytes,
    node: b.node,
    retention,
  };
}
