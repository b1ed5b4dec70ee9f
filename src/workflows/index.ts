export { smokeTest } from './smokeTest';
export { backupDatabase } from './backupDatabase';
export { verifyBackup } from './verifyBackup';
export { drDrill } from './drDrill';
