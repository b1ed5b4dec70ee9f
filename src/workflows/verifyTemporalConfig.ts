import { ActivityCancellationType, ActivityFailure, ApplicationFailure, CancellationScope, isCancellation, proxyActivities, uuid4, workflowInfo } from '@temporalio/workflow';
import type { ConfigBackupEntry, TemporalConfigActivities } from '../activities/temporalConfig';
import { renderTemporalConfigReportMarkdown, TemporalConfigRestoreReport } from '../reports/temporalConfig';
import { PREFLIGHT, QUICK } from './lib/backupOptions';
import { BACKUP_ID, ENVIRONMENT_NAME, InputChecker } from './lib/input';
import { runRunbook, TimelineSnapshot } from './lib/timeline';

const preflight = proxyActivities<TemporalConfigActivities>(PREFLIGHT);
const quick = proxyActivities<TemporalConfigActivities>(QUICK);
// A namespace registered a moment ago is not yet known on every host: creating its schedules may be
// refused for a couple of seconds, which the retries absorb. A cancelled run waits for the attempt to
// stop, so the scratch namespace is deleted after the last write to it.
const restore = proxyActivities<TemporalConfigActivities>({ ...QUICK, startToCloseTimeout: '10 minutes', cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED });

export interface VerifyTemporalConfigInput {
  environment: string;
  /** A backup id; default the newest. */
  backupId?: string;
}

export type VerifyTemporalConfigResult = TemporalConfigRestoreReport & { runbook: 'verifyTemporalConfig'; timeline: TimelineSnapshot };

export function validateVerifyTemporalConfigInput(input: unknown): VerifyTemporalConfigInput {
  const check = InputChecker.of('verifyTemporalConfig', input);
  check.matches('environment', ENVIRONMENT_NAME, 'an environment name');
  check.matches('backupId', BACKUP_ID, 'a backup id such as 20261125T020000Z-a1b2c3', true);
  check.done();
  return check.value as unknown as VerifyTemporalConfigInput;
}

function causeMessage(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

const hours = (ms: number) => `${(ms / 3_600_000).toFixed(1)} h`;

/**
 * The configuration restore test: select a backup, check its age and its integrity, apply each of its
 * namespaces to a fresh scratch namespace, read them back and compare with the backup and with the
 * live cluster, always delete the scratch namespaces, and write the report next to the backup. Any
 * difference fails the run (type ConfigRestoreTestFailed) with the report as details.
 */
export async function verifyTemporalConfig(rawInput: VerifyTemporalConfigInput): Promise<VerifyTemporalConfigResult> {
  const input = validateVerifyTemporalConfigInput(rawInput);
  return runRunbook('verifyTemporalConfig', input.environment, async (timeline) => {
    const testId = uuid4().replace(/-/g, '').slice(0, 10);
    const report: TemporalConfigRestoreReport = {
      testId,
      workflowId: workflowInfo().workflowId,
      environment: input.environment,
      passed: false,
      reasons: [],
      integrity: null,
      scratchNamespaces: [],
      restoredDifferences: [],
      liveDifferences: [],
      startedAt: new Date(Date.now()).toISOString(),
      endedAt: '',
    };

    const target = await timeline.step('preflight', async (evidence) => {
      const p = await preflight.preflightTemporalConfig({ environment: input.environment });
      Object.assign(evidence, { serverVersion: p.serverVersion, namespaces: p.namespaces });
      return p;
    });
    report.maxBackupAgeMs = target.maxBackupAgeMs;

    const chosen = await timeline.step('select backup', async (evidence): Promise<ConfigBackupEntry | undefined> => {
      const backups = await quick.listTemporalConfigBackups();
      evidence.available = backups.length;
      const pick = input.backupId ? backups.find((b) => b.backupId === input.backupId) : backups[0];
      if (!pick) {
        const why = input.backupId ? `configuration backup ${input.backupId} not found (${backups.length} exist)` : 'no configuration backup exists';
        report.reasons.push(why);
        evidence.reason = why;
        return undefined;
      }
      const ageMs = Date.now() - Date.parse(pick.takenAt);
      Object.assign(report, { backupId: pick.backupId, backupTakenAt: pick.takenAt, backupAgeMs: ageMs });
      Object.assign(evidence, { backupId: pick.backupId, takenAt: pick.takenAt, ageMs, maxAgeMs: target.maxBackupAgeMs });
      // Checked against the newest backup only: an older one chosen on purpose may be old.
      if (!input.backupId && ageMs > target.maxBackupAgeMs) report.reasons.push(`the newest configuration backup is ${hours(ageMs)} old, more than ${hours(target.maxBackupAgeMs)}`);
      return pick;
    });

    if (chosen) {
      await timeline.step('check integrity', async (evidence) => {
        const c = await quick.checkTemporalConfigBackup({ backupId: chosen.backupId });
        report.integrity = { sha256Matches: c.sha256Matches, expectedSha256: c.expectedSha256, foundSha256: c.foundSha256 };
        Object.assign(evidence, { sha256Matches: c.sha256Matches, namespaces: c.namespaces });
        // A document that no longer matches its manifest is still restored and compared, so the report says what changed.
        if (!c.sha256Matches) report.reasons.push(`the backup document does not match its manifest (sha256 ${c.foundSha256}, manifest ${c.expectedSha256}): it was changed after it was written`);
        report.scratchNamespaces = c.namespaces.map((namespace, i) => ({ namespace, scratchNamespace: `restore-test-${testId}-${i}`, deleted: false }));
      });
      try {
        const restored = await timeline
          .step('restore into scratch namespaces', async (evidence) => {
            for (const s of report.scratchNamespaces) {
              const r = await restore.restoreNamespaceConfig({ backupId: chosen.backupId, namespace: s.namespace, scratchNamespace: s.scratchNamespace, testId });
              Object.assign(s, r);
            }
            evidence.namespaces = report.scratchNamespaces.map((s) => `${s.namespace} -> ${s.scratchNamespace}`);
            return true;
          })
          .catch((err: unknown) => {
            if (isCancellation(err)) throw err;
            report.reasons.push(`restore failed: ${causeMessage(err)}`);
            return false;
          });
        if (restored) {
          await timeline.step('compare', async (evidence) => {
            const d = await restore.compareTemporalConfig({ backupId: chosen.backupId, scratch: report.scratchNamespaces });
            report.restoredDifferences = d.restored;
            report.liveDifferences = d.live;
            Object.assign(evidence, { restoredDifferences: d.restored.length, liveDifferences: d.live.length, paths: [...d.restored, ...d.live].map((x) => x.path).slice(0, 20) });
            if (d.restored.length) report.reasons.push(`the restored copy differs from the backup: ${d.restored.map((x) => x.path).join(', ')}`);
            if (d.live.length) report.reasons.push(`the backup differs from the live cluster: ${d.live.map((x) => x.path).join(', ')}`);
          });
        }
      } finally {
        // Runs on success, failure and cancellation alike: no scratch namespace outlives the test.
        await CancellationScope.nonCancellable(() =>
          timeline.step('delete scratch namespaces', async (evidence) => {
            for (const s of report.scratchNamespaces) {
              const r = await quick.deleteScratchNamespace({ scratchNamespace: s.scratchNamespace, testId });
              s.deleted = true;
              evidence[s.scratchNamespace] = r.deleted ? 'deleted' : 'was not there';
            }
          }),
        );
      }
    }

    report.passed = report.reasons.length === 0;
    report.endedAt = new Date(Date.now()).toISOString();
    if (report.backupId) {
      await timeline.step('write report', async (evidence) => {
        Object.assign(evidence, await quick.writeTemporalConfigReport({ backupId: report.backupId!, testId, json: report, markdown: renderTemporalConfigReportMarkdown(report) }));
      });
    }
    if (!report.passed) {
      throw ApplicationFailure.create({ type: 'ConfigRestoreTestFailed', message: `configuration restore test failed: ${report.reasons.join('; ')}`, nonRetryable: true, details: [report] });
    }
    return { ...report, runbook: 'verifyTemporalConfig' as const };
  });
}
