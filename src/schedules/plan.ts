import { createHash } from 'node:crypto';
import { ConfigError, ConfigProblem, LoadedConfig } from '../config/load';
import type { CalendarConfig, RunbookConfig } from '../config/schema';
import { RUNBOOK_DEFAULT_QUEUE, ImplementedRunbook, targetOf } from '../workflows/catalog';

/** Memo key that marks a schedule as created from a runbook config, so prune never touches others. */
export const MANAGED_BY = 'runbook-config';

export type OverlapPolicy = 'SKIP' | 'BUFFER_ONE' | 'BUFFER_ALL' | 'CANCEL_OTHER' | 'TERMINATE_OTHER' | 'ALLOW_ALL';

const OVERLAP: Record<RunbookConfig['schedules'][number]['overlap'], OverlapPolicy> = {
  skip: 'SKIP',
  bufferOne: 'BUFFER_ONE',
  bufferAll: 'BUFFER_ALL',
  cancelOther: 'CANCEL_OTHER',
  terminateOther: 'TERMINATE_OTHER',
  allowAll: 'ALLOW_ALL',
};

/** Everything a Temporal Schedule is made from, as plain data: compared by hash to decide create/update/unchanged. */
export interface DesiredSchedule {
  scheduleId: string;
  environment: string;
  runbook: ImplementedRunbook;
  cron?: string;
  calendar?: CalendarConfig;
  timezone?: string;
  jitterMs?: number;
  overlap: OverlapPolicy;
  catchupWindowMs: number;
  paused: boolean;
  taskQueue: string;
  workflowIdPrefix: string;
  input: Record<string, unknown>;
  /** The database or Deployment the runs act on (their RunbookTarget search attribute), if any. */
  target?: string;
  hash: string;
}

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * The schedules a config asks for. Every entry is checked before any is applied, so a bad entry
 * changes nothing: runbooks not available in this version, and inputs the runbook would refuse.
 */
export function desiredSchedules(
  loaded: LoadedConfig,
  validators: Partial<Record<ImplementedRunbook, (input: unknown) => unknown>>,
  onlyEnvironment?: string,
): DesiredSchedule[] {
  const config = loaded.config;
  const problems: ConfigProblem[] = [];
  const out: DesiredSchedule[] = [];
  config.schedules.forEach((s, i) => {
    if (onlyEnvironment && s.environment !== onlyEnvironment) return;
    if (!(s.runbook in RUNBOOK_DEFAULT_QUEUE)) {
      problems.push({ path: `schedules.${i}.runbook`, message: `${s.id}: runbook ${s.runbook} is not available in this version; available: ${Object.keys(RUNBOOK_DEFAULT_QUEUE).join(', ')}` });
      return;
    }
    const runbook = s.runbook as ImplementedRunbook;
    const input = { ...s.input, environment: s.environment };
    try {
      validators[runbook]?.(input);
    } catch (err) {
      problems.push({ path: `schedules.${i}.input`, message: `${s.id}: ${(err as Error).message}` });
      return;
    }
    const env = config.environments[s.environment];
    const definition = {
      scheduleId: s.id,
      environment: s.environment,
      runbook,
      cron: s.cron,
      calendar: s.calendar,
      timezone: s.timezone,
      jitterMs: s.jitter,
      overlap: OVERLAP[s.overlap],
      catchupWindowMs: s.catchupWindow,
      paused: s.paused,
      taskQueue: env.temporal.taskQueues[RUNBOOK_DEFAULT_QUEUE[runbook]],
      workflowIdPrefix: `${runbook}-${s.environment}-${s.id}`,
      input,
      target: targetOf(runbook, input),
      // Scheduled runs carry the same search attributes as runs started from the CLI; part of the hash,
      // so schedules made before they did are updated once.
      searchAttributes: ['RunbookName', 'RunbookEnvironment', 'RunbookTarget'],
    };
    out.push({ ...definition, hash: createHash('sha256').update(stableJson(definition)).digest('hex').slice(0, 16) });
  });
  if (problems.length) throw new ConfigError(loaded.file, problems.map((p) => ({ ...p, message: `${p.message} (no schedule was changed)` })));
  return out;
}
