import type { Command } from 'commander';
import { CalendarSpec, DayOfWeek, Month, ScheduleNotFoundError, ScheduleOptions, ScheduleOptionsStartWorkflowAction } from '@temporalio/client';
import type { SearchAttributePair } from '@temporalio/common';
import type { CalendarConfig } from '../config/schema';
import type { LoadedConfig } from '../config/load';
import { desiredSchedules, DesiredSchedule, MANAGED_BY } from '../schedules/plan';
import { validateBackupDatabaseInput } from '../workflows/backupDatabase';
import { validateSmokeTestInput } from '../workflows/smokeTest';
import { validateVerifyBackupInput } from '../workflows/verifyBackup';
import { validateBackupTemporalConfigInput } from '../workflows/backupTemporalConfig';
import { validateVerifyTemporalConfigInput } from '../workflows/verifyTemporalConfig';
import { validateRestoreCanaryInput } from '../workflows/restoreCanary';
import { validateDrDrillInput } from '../workflows/drDrill';
import { validateGoLiveInput } from '../workflows/goLive';
import { ConnectedClient, connectClient, searchAttributesFor } from './client';
import { GlobalOptions, loadCliConfig, printJson, UsageError } from './common';

const VALIDATORS = { smokeTest: validateSmokeTestInput, backupDatabase: validateBackupDatabaseInput, verifyBackup: validateVerifyBackupInput, restoreCanary: validateRestoreCanaryInput, drDrill: validateDrDrillInput, goLive: validateGoLiveInput, backupTemporalConfig: validateBackupTemporalConfigInput, verifyTemporalConfig: validateVerifyTemporalConfigInput };

export type ApplyAction = 'created' | 'updated' | 'unchanged' | 'deleted' | 'would delete';

const MONTHS = ['JANUARY', 'FEBRUARY', 'MARCH', 'APRIL', 'MAY', 'JUNE', 'JULY', 'AUGUST', 'SEPTEMBER', 'OCTOBER', 'NOVEMBER', 'DECEMBER'] as const;
const DAYS: Record<string, DayOfWeek> = { SUN: 'SUNDAY', MON: 'MONDAY', TUE: 'TUESDAY', WED: 'WEDNESDAY', THU: 'THURSDAY', FRI: 'FRIDAY', SAT: 'SATURDAY' };

function ranges<T>(field: number | number[] | string | undefined, map: (n: number) => T): { start: T; end: T }[] | undefined {
  if (field === undefined) return undefined;
  if (typeof field === 'string') {
    const [a, b] = field.split('-').map(Number);
    return [{ start: map(a), end: map(b) }];
  }
  return (Array.isArray(field) ? field : [field]).map((n) => ({ start: map(n), end: map(n) }));
}

/** The config's calendar as Temporal's structured calendar spec (every given field must match). */
export function calendarSpec(c: CalendarConfig): CalendarSpec {
  const spec: CalendarSpec = { hour: ranges(c.hour, (n) => n), minute: ranges(c.minute, (n) => n) };
  const month = ranges(c.month, (n) => MONTHS[n - 1] as Month);
  if (month) spec.month = month;
  const dayOfMonth = ranges(c.dayOfMonth, (n) => n);
  if (dayOfMonth) spec.dayOfMonth = dayOfMonth;
  if (c.dayOfWeek) spec.dayOfWeek = (Array.isArray(c.dayOfWeek) ? c.dayOfWeek : [c.dayOfWeek]).map((d) => ({ start: DAYS[d], end: DAYS[d] }));
  return spec;
}

function scheduleOptions(d: DesiredSchedule, typedSearchAttributes: SearchAttributePair[]): ScheduleOptions<ScheduleOptionsStartWorkflowAction<(input: unknown) => Promise<unknown>>> {
  return {
    scheduleId: d.scheduleId,
    spec: { ...(d.cron ? { cronExpressions: [d.cron] } : { calendars: [calendarSpec(d.calendar!)] }), timezone: d.timezone, jitter: d.jitterMs },
    // The hash lives in the action's memo, which (unlike the schedule's memo) an update can change.
    action: { type: 'startWorkflow', workflowType: d.runbook, args: [d.input], taskQueue: d.taskQueue, workflowId: d.workflowIdPrefix, memo: { configHash: d.hash }, typedSearchAttributes },
    policies: { overlap: d.overlap, catchupWindow: d.catchupWindowMs },
    state: { paused: d.paused, note: d.paused ? 'paused in the runbook config' : undefined },
    memo: { managedBy: MANAGED_BY, environment: d.environment },
  };
}

/** Creates or updates each schedule of one environment; deletes managed ones no longer in config only with prune. */
export async function applySchedules(c: ConnectedClient, desired: DesiredSchedule[], prune: boolean): Promise<{ scheduleId: string; action: ApplyAction }[]> {
  const results: { scheduleId: string; action: ApplyAction }[] = [];
  for (const d of desired) {
    const handle = c.client.schedule.getHandle(d.scheduleId);
    let existing: Awaited<ReturnType<typeof handle.describe>> | undefined;
    try {
      existing = await handle.describe();
    } catch (err) {
      if (!(err instanceof ScheduleNotFoundError)) throw err;
    }
    const options = scheduleOptions(d, await searchAttributesFor(c, d.runbook, d.target));
    if (!existing) {
      await c.client.schedule.create(options);
      results.push({ scheduleId: d.scheduleId, action: 'created' });
    } else if (existing.memo?.managedBy !== MANAGED_BY) {
      throw new UsageError(`schedule ${d.scheduleId} exists but was not created from a runbook config; rename the entry or delete that schedule first`);
    } else if (existing.action.type === 'startWorkflow' && existing.action.memo?.configHash === d.hash) {
      results.push({ scheduleId: d.scheduleId, action: 'unchanged' });
    } else {
      // An update keeps the schedule's history of recent runs.
      await handle.update(() => ({ spec: options.spec, action: options.action, policies: options.policies, state: { paused: d.paused, note: options.state?.note } }));
      results.push({ scheduleId: d.scheduleId, action: 'updated' });
    }
  }
  const wanted = new Set(desired.map((d) => d.scheduleId));
  for await (const summary of c.client.schedule.list()) {
    if (summary.memo?.managedBy !== MANAGED_BY || summary.memo?.environment !== c.environment || wanted.has(summary.scheduleId)) continue;
    if (prune) {
      await c.client.schedule.getHandle(summary.scheduleId).delete();
      results.push({ scheduleId: summary.scheduleId, action: 'deleted' });
    } else {
      results.push({ scheduleId: summary.scheduleId, action: 'would delete' });
    }
  }
  return results;
}

export interface ScheduleListing {
  scheduleId: string;
  environment: string;
  runbook: string;
  cron: string;
  paused: boolean;
  nextRuns: string[];
  lastRuns: { workflowId: string; startedAt: string; status: string }[];
}

export async function listSchedules(c: ConnectedClient): Promise<ScheduleListing[]> {
  const out: ScheduleListing[] = [];
  for await (const summary of c.client.schedule.list()) {
    if (summary.memo?.managedBy !== MANAGED_BY) continue;
    const d = await c.client.schedule.getHandle(summary.scheduleId).describe();
    const lastRuns = [];
    for (const run of d.info.recentActions.slice(-3).reverse()) {
      const status = await c.client.workflow
        .getHandle(run.action.workflow.workflowId, run.action.workflow.firstExecutionRunId)
        .describe()
        .then((x) => x.status.name, () => 'UNKNOWN');
      lastRuns.push({ workflowId: run.action.workflow.workflowId, startedAt: run.takenAt.toISOString(), status });
    }
    out.push({
      scheduleId: summary.scheduleId,
      environment: String(d.memo?.environment ?? ''),
      runbook: d.action.type === 'startWorkflow' ? d.action.workflowType : '',
      cron: describeCalendars(d.spec),
      paused: d.state.paused,
      nextRuns: d.info.nextActionTimes.slice(0, 3).map((t) => t.toISOString()),
      lastRuns,
    });
  }
  return out.sort((a, b) => a.scheduleId.localeCompare(b.scheduleId));
}

function describeCalendars(spec: { calendars?: unknown[]; timezone?: string }): string {
  return `${(spec.calendars ?? []).length} calendar rule${(spec.calendars ?? []).length === 1 ? '' : 's'}${spec.timezone ? ` in ${spec.timezone}` : ''}`;
}

function environmentsOf(loaded: LoadedConfig, only?: string): string[] {
  if (only && !(only in loaded.config.environments)) throw new UsageError(`--env: unknown environment '${only}'; defined: ${Object.keys(loaded.config.environments).join(', ')}`);
  const used = new Set(loaded.config.schedules.map((s) => s.environment));
  return only ? [only] : [...used];
}

export function registerSchedule(program: Command, globals: () => GlobalOptions): void {
  const schedule = program.command('schedule').description('Temporal Schedules for the runbooks, from the schedules: section of the config');

  schedule
    .command('apply')
    .description('create or update the configured schedules (idempotent); --prune deletes managed schedules no longer in the config')
    .option('--prune', 'delete schedules this tool created that the config no longer lists', false)
    .action(async (opts: { prune: boolean }) => {
      const g = globals();
      const loaded = loadCliConfig(g);
      // Validate every entry of every environment before changing any.
      const desired = desiredSchedules(loaded, VALIDATORS, g.env);
      const results: { environment: string; scheduleId: string; action: ApplyAction }[] = [];
      for (const environment of environmentsOf(loaded, g.env)) {
        const c = await connectClient(loaded, environment, loaded.config.environments[environment]);
        try {
          for (const r of await applySchedules(c, desired.filter((d) => d.environment === environment), opts.prune)) results.push({ environment, ...r });
        } finally {
          await c.close();
        }
      }
      if (g.json) printJson({ ok: true, results });
      else if (results.length === 0) process.stdout.write('no schedules configured\n');
      else for (const r of results) process.stdout.write(`${r.action.padEnd(12)} ${r.scheduleId} (${r.environment})\n`);
    });

  schedule
    .command('list')
    .description('show the managed schedules with their next run times and last results')
    .action(async () => {
      const g = globals();
      const loaded = loadCliConfig(g);
      const all: ScheduleListing[] = [];
      const environments = g.env ? environmentsOf(loaded, g.env) : Object.keys(loaded.config.environments);
      for (const environment of environments) {
        const c = await connectClient(loaded, environment, loaded.config.environments[environment]);
        try {
          all.push(...(await listSchedules(c)).filter((s) => s.environment === environment));
        } finally {
          await c.close();
        }
      }
      if (g.json) return printJson({ ok: true, schedules: all });
      if (all.length === 0) return void process.stdout.write("no schedules; create them with 'runbook schedule apply'\n");
      for (const s of all) {
        process.stdout.write(`${s.scheduleId}  ${s.runbook} on ${s.environment}${s.paused ? '  (paused)' : ''}\n`);
        process.stdout.write(`  next: ${s.nextRuns.join(', ') || '-'}\n`);
        process.stdout.write(`  last: ${s.lastRuns.map((r) => `${r.startedAt} ${r.status}`).join(', ') || 'never run'}\n`);
      }
    });
}
