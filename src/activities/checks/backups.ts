/**
 * The readiness audit's backup check: the newest complete backup of every database, from the S3
 * manifests (dumps) or the pgBackRest repository, against its age limit.
 */
import { CheckId, DEFAULT_RPO_WINDOW_MS } from '../../checklist/catalog';
import { auditedDatabases, noDatabases } from './postgres';
import { CheckDeps, fail, pass, VerdictFn } from './support';

/** A restore test report, as verifyBackup writes it next to the backup (dumps) or under pgbackrest/ (pgBackRest). */
interface StoredRestoreReport {
  testId: string;
  workflowId: string;
  environment: string;
  database: string;
  passed: boolean;
  backupId?: string;
  endedAt: string;
}

/** How many of a database's newest restore test reports are read looking for a passed one. */
const REPORTS_READ = 20;

export function createBackupChecks(deps: CheckDeps): Record<Extract<CheckId, 'checkRecentBackups' | 'checkRestoreTested'>, VerdictFn> {
  const { env } = deps;
  const databases = () => auditedDatabases(deps);
  return {
    async checkRecentBackups() {
      if (!env.backups || !deps.store) return fail(`environment ${deps.environment} has no backups: section`, {});
      if (databases().length === 0) return noDatabases(deps);
      const newest: Record<string, unknown> = {};
      const problems: string[] = [];
      for (const { key, db } of databases()) {
        const limitMs = db.restoreTest.maxBackupAge ?? env.targets.rpo ?? DEFAULT_RPO_WINDOW_MS;
        if (db.backups.method === 'pgbackrest' && deps.physicalRepository) {
          const last = (await deps.physicalRepository(key)).backups.filter((b) => !b.error).pop();
          if (!last) {
            newest[key] = null;
            problems.push(`${key}: no complete pgBackRest backup`);
            continue;
          }
          const ageMs = Date.now() - Date.parse(last.stoppedAt);
          newest[key] = { label: last.label, endedAt: last.stoppedAt, bytes: last.repoBytes, ageHours: Number((ageMs / 3_600_000).toFixed(2)), limitHours: Number((limitMs / 3_600_000).toFixed(2)) };
          if (ageMs > limitMs) problems.push(`${key}: the newest pgBackRest backup is ${(ageMs / 3_600_000).toFixed(1)} h old (limit ${(limitMs / 3_600_000).toFixed(1)} h)`);
          continue;
        }
        // Backup ids start with a UTC timestamp, so the last complete one in key order is the newest.
        const manifests = (await deps.store.list(`${env.backups.prefix}${key}/`)).filter((o) => o.key.endsWith('/manifest.json')).map((o) => o.key).sort();
        const last = manifests.pop();
        if (!last) {
          newest[key] = null;
          problems.push(`${key}: no complete backup`);
          continue;
        }
        const m = await deps.store.getJson<{ backupId: string; endedAt: string; bytes: number }>(last);
        const ageMs = Date.now() - Date.parse(m.endedAt);
        newest[key] = { backupId: m.backupId, endedAt: m.endedAt, bytes: m.bytes, ageHours: Number((ageMs / 3_600_000).toFixed(2)), limitHours: Number((limitMs / 3_600_000).toFixed(2)) };
        if (ageMs > limitMs) problems.push(`${key}: the newest backup is ${(ageMs / 3_600_000).toFixed(1)} h old (limit ${(limitMs / 3_600_000).toFixed(1)} h)`);
      }
      return problems.length === 0 ? pass('every database has a complete backup within its limit', { newest }) : fail(problems.join('; '), { newest });
    },
    // "Regular, tested restores": a passed restore test of this very database, in this environment, within
    // its limit; a test of another database, a failed one or an old one does not count.
    async checkRestoreTested() {
      if (!env.backups || !deps.store) return fail(`environment ${deps.environment} has no backups: section`, {});
      if (databases().length === 0) return noDatabases(deps);
      const newest: Record<string, unknown> = {};
      const problems: string[] = [];
      for (const { key, db } of databases()) {
        const limitMs = db.restoreTest.maxBackupAge ?? env.targets.rpo ?? DEFAULT_RPO_WINDOW_MS;
        const reports = (await deps.store.list(`${env.backups.prefix}${key}/`))
          .filter((o) => /\/restore-tests\/[a-z0-9-]{4,64}\.json$/.test(o.key))
          .sort((a, b) => (b.lastModified?.getTime() ?? 0) - (a.lastModified?.getTime() ?? 0))
          .slice(0, REPORTS_READ);
        let found: StoredRestoreReport | undefined;
        let failedSince = 0;
        for (const o of reports) {
          const r = await deps.store.getJson<StoredRestoreReport>(o.key);
          if (r.database !== key || r.environment !== deps.environment) continue;
          if (r.passed) {
            found = r;
            break;
          }
          failedSince++;
        }
        if (!found) {
          newest[key] = null;
          problems.push(`${key}: no passed restore test of this database${failedSince ? ` (the newest ${failedSince} failed)` : ''}; run verifyBackup for it`);
          continue;
        }
        const ageMs = Date.now() - Date.parse(found.endedAt);
        newest[key] = { testId: found.testId, workflowId: found.workflowId, backupId: found.backupId ?? null, endedAt: found.endedAt, failedSince, ageHours: Number((ageMs / 3_600_000).toFixed(2)), limitHours: Number((limitMs / 3_600_000).toFixed(2)) };
        if (ageMs > limitMs) problems.push(`${key}: the newest passed restore test (${found.workflowId}) is ${(ageMs / 3_600_000).toFixed(1)} h old (limit ${(limitMs / 3_600_000).toFixed(1)} h)`);
      }
      return problems.length === 0 ? pass('every database has a passed restore test within its limit', { newest }) : fail(problems.join('; '), { newest });
    },
  };
}
