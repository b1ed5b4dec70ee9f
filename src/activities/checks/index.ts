/**
 * The readiness audit's automated checks, one activity per check, grouped by the system each reads
 * (Temporal, Kubernetes, PostgreSQL, backups in S3 and pgBackRest, DNS, monitoring, the config itself);
 * each runs under its own deadline and returns its evidence.
 */
import { CheckId, CheckInput, CheckResult } from '../../checklist/catalog';
import { createBackupChecks } from './backups';
import { createConfigChecks } from './config';
import { createDnsChecks } from './dns';
import { createKubernetesChecks } from './kubernetes';
import { createMonitoringChecks } from './monitoring';
import { createPostgresChecks } from './postgres';
import { CheckDeps, errorText, unknown, Verdict, VerdictFn } from './support';
import { createTemporalChecks } from './temporal';

export type { CheckDeps } from './support';
export { prometheusDurationMs } from './monitoring';

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Runs one check under its own deadline. A system that does not answer, or answers with an error,
 * gives `unknown` with the reason: an unreachable system is not evidence that an item fails.
 */
async function guarded(check: CheckId, timeoutMs: number, fn: (signal: AbortSignal) => Promise<Verdict>): Promise<CheckResult> {
  const started = Date.now();
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<Verdict>((resolve) => {
    timer = setTimeout(() => {
      controller.abort();
      resolve(unknown(`no answer within ${timeoutMs} ms`, { timedOutAfterMs: timeoutMs }));
    }, timeoutMs);
  });
  try {
    const verdict = await Promise.race([fn(controller.signal).catch((err: unknown) => unknown(`could not check: ${errorText(err)}`, { error: errorText(err) })), timedOut]);
    return { check, ...verdict, durationMs: Date.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

export function createCheckActivities(deps: CheckDeps) {
  const checks: Record<CheckId, VerdictFn> = {
    ...createTemporalChecks(deps),
    ...createKubernetesChecks(deps),
    ...createPostgresChecks(deps),
    ...createBackupChecks(deps),
    ...createDnsChecks(deps),
    ...createConfigChecks(deps),
    ...createMonitoringChecks(deps),
  };

  const activities = {} as Record<CheckId, (input?: CheckInput) => Promise<CheckResult>>;
  for (const id of Object.keys(checks) as CheckId[]) {
    activities[id] = (input: CheckInput = {}) => {
      const timeoutMs = Math.min(Math.max(input.timeoutMs ?? DEFAULT_TIMEOUT_MS, 100), 120_000);
      return guarded(id, timeoutMs, (signal) => checks[id](timeoutMs, input, signal));
    };
  }
  return activities;
}

export type CheckActivities = ReturnType<typeof createCheckActivities>;
