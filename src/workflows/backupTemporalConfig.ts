import { proxyActivities, uuid4 } from '@temporalio/workflow';
import type { TemporalConfigActivities } from '../activities/temporalConfig';
import { PREFLIGHT, TRANSFER } from './lib/backupOptions';
import { ENVIRONMENT_NAME, InputChecker, timestampId } from './lib/input';
import { runRunbook, TimelineSnapshot } from './lib/timeline';

const preflight = proxyActivities<TemporalConfigActivities>(PREFLIGHT);
// Reading every namespace and schedule: minutes on a large cluster, heartbeating all along.
const transfer = proxyActivities<TemporalConfigActivities>({ ...TRANSFER, startToCloseTimeout: '30 minutes' });

export interface BackupTemporalConfigInput {
  environment: string;
}

export interface BackupTemporalConfigResult {
  runbook: 'backupTemporalConfig';
  environment: string;
  backupId: string;
  takenAt: string;
  manifestKey: string;
  sha256: string;
  bytes: number;
  namespaces: number;
  schedules: number;
  searchAttributes: number;
  timeline: TimelineSnapshot;
}

export function validateBackupTemporalConfigInput(input: unknown): BackupTemporalConfigInput {
  const check = InputChecker.of('backupTemporalConfig', input);
  check.matches('environment', ENVIRONMENT_NAME, 'an environment name');
  check.done();
  return check.value as unknown as BackupTemporalConfigInput;
}

/**
 * The checklist's configuration backup: every namespace (retention, archival, custom search
 * attributes, schedules with their specs and state), the dynamic config and the schema versions of
 * Temporal's databases, written to S3 as one document with its manifest.
 */
export async function backupTemporalConfig(rawInput: BackupTemporalConfigInput): Promise<BackupTemporalConfigResult> {
  const input = validateBackupTemporalConfigInput(rawInput);
  return runRunbook('backupTemporalConfig', input.environment, async (timeline) => {
    const backupId = timestampId(Date.now(), uuid4().replace(/-/g, '').slice(0, 6));
    await timeline.step('preflight', async (evidence) => {
      const p = await preflight.preflightTemporalConfig({ environment: input.environment });
      Object.assign(evidence, { serverVersion: p.serverVersion, namespaces: p.namespaces, dynamicConfigFile: p.dynamicConfigFile });
    });
    const b = await timeline.step('write configuration to S3', async (evidence) => {
      const r = await transfer.backupTemporalConfiguration({ backupId });
      Object.assign(evidence, { backupId, namespaces: r.namespaces, schedules: r.schedules, searchAttributes: r.searchAttributes, bytes: r.bytes, sha256: r.sha256, manifestKey: r.manifestKey });
      return r;
    });
    return {
      runbook: 'backupTemporalConfig' as const,
      environment: input.environment,
      backupId,
      takenAt: b.takenAt,
      manifestKey: b.manifestKey,
      sha256: b.sha256,
      bytes: b.bytes,
      namespaces: b.namespaces,
      schedules: b.schedules,
      searchAttributes: b.searchAttributes,
    };
  });
}
