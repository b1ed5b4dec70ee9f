/**
 * The readiness audit's backup check: the newest complete backup of every database, from the S3
 * manifests (dumps) or the pgBackRest repository, against its age limit.
 */
import { CheckId, DEFAULT_RPO_WINDOW_MS } from '../../checklist/catalog';
import { auditedDatabases, noDatabases } from './postgres';
import { CheckDeps, fail, pass, Verdict, VerdictFn } from './support';

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

type Finding = { newest: Record<string, unknown> | null; problem?: string };

/** A finding of something that ended at endedAt: its age against the database's limit. */
function aged(key: string, what: string, endedAt: string, limitMs: number, evidence: Record<string, unknown>): Finding {
  const ageMs = Date.now() - Date.parse(endedAt);
  const hours = (ms: number) => Number((ms / 3_600_000).toFixed(2));
  return {
    newest: { ...evidence, endedAt, ageHours: hours(ageMs), limitHours: hours(limitMs) },
    problem: ageMs > limitMs ? `${key}: ${what} is ${(ageMs / 3_600_000).toFixed(1)} h old (limit ${(limitMs / 3_600_000).toFixed(1)} h)` : undefined,
  };
}

export function createBackupChecks(deps: CheckDeps): Record<Extract<CheckId, 'checkRecentBackups' | 'checkRestoreTested'>, VerdictFn> {
  const { env } = deps;
  /** Judges every configured database (against restoreTest.maxBackupAge, else the RPO): passes when none has a problem. */
  const perDatabase = async (passed: string, judge: (key: string, limitMs: number, prefix: string, db: CheckDeps['env']['databases'][string]) => Promise<Finding>): Promise<Verdict> => {
    if (!env.backups || !deps.store) return fail(`environment ${deps.environment} has no backups: section`, {});
    const databases = auditedDatabases(deps);
    if (databases.length === 0) return noDatabases(deps);
    const newest: Record<string, unknown> = {};
    const problems: string[] = [];
    for (const { key, db } of databases) {
      const f = await judge(key, db.restoreTest.maxBackupAge ?? env.targets.rpo ?? DEFAULT_RPO_WINDOW_MS, `${env.backups.prefix}${key}/`, db);
      newest[key] = f.newest;
      if (f.problem) problems.push(f.problem);
    }
    return problems.length === 0 ? pass(passed, { newest }) : fail(problems.join('; '), { newest });
  };
  return {
    checkRecentBackups: () =>
      perDatabase('every database has a complete backup within its limit', async (key, limitMs, prefix, db) => {
        if (db.backups.method === 'pgbackrest' && deps.physicalRepository) {
          const last = (await deps.physicalRepository(key)).backups.filter((b) => !b.error).pop();
          if (!last) return { newest: null, problem: `${key}: no complete pgBackRest backup` };
          return aged(key, 'the newest pgBackRest backup', last.stoppedAt, limitMs, { label: last.label, bytes: last.repoBytes });
        }
        // Backup ids start with a UTC timestamp, so the last complete one in key order is the newest.
        const last = (await deps.store!.list(prefix)).filter((o) => o.key.endsWith('/manifest.json')).map((o) => o.key).sort().pop();
        if (!last) return { newest: null, problem: `${key}: no complete backup` };
        const m = await deps.store!.getJson<{ backupId: string; endedAt: string; bytes: number }>(last);
        return aged(key, 'the newest backup', m.endedAt, limitMs, { backupId: m.backupId, bytes: m.bytes });
      }),
    // "Regular, tested restores": a passed restore test of this very database, in this environment, within
    // its limit; a test of another database, a failed one or an old one does not count.
    checkRestoreTested: () =>
      perDatabase('every database has a passed restore test within its limit', async (key, limitMs, prefix) => {
        const reports = (await deps.store!.list(prefix))
          .filter((o) => /\/restore-tests\/[a-z0-9-]{4,64}\.json$/.test(o.key))
          .sort((a, b) => (b.lastModified?.getTime() ?? 0) - (a.lastModified?.getTime() ?? 0))
          .slice(0, REPORTS_READ);
        let failedSince = 0;
        for (const o of reports) {
          const r = await deps.store!.getJson<StoredRestoreReport>(o.key);
          if (r.database !== key || r.environment !== deps.environment) continue;
          if (r.passed) return aged(key, `the newest passed restore test (${r.workflowId})`, r.endedAt, limitMs, { testId: r.testId, workflowId: r.workflowId, backupId: r.backupId ?? null, failedSince });
          failedSince++;
        }
        return { newest: null, problem: `${key}: no passed restore test of this database${failedSince ? ` (the newest ${failedSince} failed)` : ''}; run verifyBackup for it` };
      }),
  };
}
