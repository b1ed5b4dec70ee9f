export { smokeTest } from './smokeTest';
export { backupDatabase } from './backupDatabase';
export { verifyBackup } from './verifyBackup';
export { drDrill } from './drDrill';
export { readinessAudit } from './readinessAudit';
export { rollout } from './rollout';
export { rollback } from './rollback';
export { goLive } from './goLive';
