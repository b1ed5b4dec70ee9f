/**
 * Which task queue each runbook runs on by default, after the checklist's queue strategy: procedures
 * that touch production state at a bad moment go to critical, long background jobs to batch.
 * Pure data: imported by the CLI, the worker and the schedules alike.
 */
export const RUNBOOK_DEFAULT_QUEUE = {
  smokeTest: 'standard',
  backupDatabase: 'batch',
  verifyBackup: 'batch',
  drDrill: 'critical',
  readinessAudit: 'standard',
  rollout: 'critical',
  rollback: 'critical',
  goLive: 'critical',
  loadTest: 'batch',
  backupTemporalConfig: 'batch',
  verifyTemporalConfig: 'batch',
} as const satisfies Record<string, 'critical' | 'standard' | 'batch'>;

export type ImplementedRunbook = keyof typeof RUNBOOK_DEFAULT_QUEUE;
