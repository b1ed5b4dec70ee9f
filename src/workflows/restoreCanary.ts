import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { PhysicalBackupActivities } from '../activities/pgbackrest';
import type { CanaryRow } from '../activities/canary';
import { DATABASE_KEY, ENVIRONMENT_NAME, InputChecker } from './lib/input';
import { REPOSITORY_READ } from './lib/physicalOptions';
import { runRunbook, TimelineSnapshot } from './lib/timeline';

const canary = proxyActivities<PhysicalBackupActivities>(REPOSITORY_READ);

export interface RestoreCanaryInput {
  environment: string;
  /** A pgBackRest database's key under environments.<env>.databases. */
  database: string;
}

export interface RestoreCanaryResult {
  runbook: 'restoreCanary';
  environment: string;
  database: string;
  row: CanaryRow;
  node: string;
  pruned: number;
  timeline: TimelineSnapshot;
}

export function validateRestoreCanaryInput(input: unknown): RestoreCanaryInput {
  const check = InputChecker.of('restoreCanary', input);
  check.matches('environment', ENVIRONMENT_NAME, 'an environment name');
  check.matches('database', DATABASE_KEY, 'a database key from the config (e.g. main)');
  check.done();
  return check.value as unknown as RestoreCanaryInput;
}

/**
 * Writes one row to the restore canary on the database's primary (scheduled every few minutes), so a
 * point-in-time restore test can prove exactly which writes it restored: those before its target.
 */
export async function restoreCanary(rawInput: RestoreCanaryInput): Promise<RestoreCanaryResult> {
  const input = validateRestoreCanaryInput(rawInput);
  return runRunbook('restoreCanary', input.environment, async (timeline) => {
    const r = await timeline.step('write canary row', async (evidence) => {
      const w = await canary.writeRestoreCanary({ database: input.database, environment: input.environment, workflowId: workflowInfo().workflowId });
      Object.assign(evidence, { id: w.row.id, writtenAt: w.row.writtenAt, lsn: w.row.lsn, node: w.node, pruned: w.pruned });
      return w;
    });
    return { runbook: 'restoreCanary' as const, environment: input.environment, database: input.database, row: r.row, node: r.node, pruned: r.pruned };
  });
}
