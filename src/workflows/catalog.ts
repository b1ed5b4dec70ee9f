/**
 * Which task queue each runbook runs on by default, after the checklist's queue strategy: procedures
 * that touch production state at a bad moment go to critical, long background jobs to batch.
 * Pure data: imported by the CLI, the worker and the schedules alike.
 */
export const RUNBOOK_DEFAULT_QUEUE = {
  smokeTest: 'standard',
  backupDatabase: 'batch',
  verifyBackup: 'batch',
  restoreCanary: 'standard',
  drDrill: 'critical',
  readinessAudit: 'standard',
  rollout: 'critical',
  rollback: 'critical',
  goLive: 'critical',
  loadTest: 'batch',
  backupTemporalConfig: 'batch',
  verifyTemporalConfig: 'batch',
  release: 'critical',
  promotion: 'critical',
} as const satisfies Record<string, 'critical' | 'standard' | 'batch'>;

export type ImplementedRunbook = keyof typeof RUNBOOK_DEFAULT_QUEUE;

/**
 * What a runbook acts on, so runs can be found per target in visibility (the RunbookTarget search
 * attribute): a database key, a Deployment name, or the environment as a whole.
 */
export const RUNBOOK_TARGET_KIND = {
  smokeTest: 'none',
  backupDatabase: 'database',
  verifyBackup: 'database',
  restoreCanary: 'database',
  drDrill: 'database',
  readinessAudit: 'none',
  rollout: 'deployment',
  rollback: 'deployment',
  goLive: 'deployment',
  loadTest: 'none',
  backupTemporalConfig: 'none',
  verifyTemporalConfig: 'none',
  release: 'deployment',
  promotion: 'none',
} as const satisfies Record<ImplementedRunbook, 'database' | 'deployment' | 'none'>;

/** The target of one run from its input: input.database or input.deployment, or undefined for environment-wide runbooks. */
export function targetOf(runbook: ImplementedRunbook, input: unknown): string | undefined {
  const kind = RUNBOOK_TARGET_KIND[runbook];
  if (kind === 'none' || !input || typeof input !== 'object') return undefined;
  const value = (input as Record<string, unknown>)[kind];
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}
