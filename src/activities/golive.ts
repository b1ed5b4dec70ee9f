import type { QueueKind } from '../config/schema';
import { isRunReport } from '../reports/html';
import { GoLiveReport, renderGoLiveHtml } from '../reports/golive';
import type { ReportLinks } from '../reports/html';
import { checkServedEnvironment, failure } from './errors';
import type { ObjectStore } from './s3';

/**
 * What the go-live runbook reads from config (who approves, the environment's task queues, whether
 * reports are kept) and where it writes its report: next to the drill and audit reports.
 */
export function createGoLiveActivities(deps: { environment: string; approvers: string[]; taskQueues: Record<QueueKind, string>; reports?: { store: ObjectStore; prefix: string; links?: ReportLinks } }) {
  return {
    async describeGoLiveTarget(input: { environment: string }): Promise<{ approvers: string[]; taskQueues: Record<QueueKind, string>; reportsKept: boolean }> {
      checkServedEnvironment(input.environment, deps.environment);
      return { approvers: deps.approvers, taskQueues: { ...deps.taskQueues }, reportsKept: deps.reports !== undefined };
    },

    async writeGoLiveReport(input: { goLiveId: string; json: unknown; markdown: string }): Promise<{ keys: string[] }> {
      if (!deps.reports) return { keys: [] };
      if (!/^[a-z0-9-]{4,80}$/.test(input.goLiveId)) throw failure('InvalidInput', `go-live id '${input.goLiveId}' is not a plain id`);
      const base = `${deps.reports.prefix}golive/${input.goLiveId}/report`;
      await deps.reports.store.putJson(`${base}.json`, input.json);
      await deps.reports.store.putText(`${base}.md`, input.markdown, 'text/markdown');
      if (!isRunReport(input.json)) return { keys: [`${base}.json`, `${base}.md`] };
      await deps.reports.store.putText(`${base}.html`, renderGoLiveHtml(input.json as GoLiveReport, deps.reports.links), 'text/html');
      return { keys: [`${base}.json`, `${base}.md`, `${base}.html`] };
    },
  };
}

export type GoLiveActivities = ReturnType<typeof createGoLiveActivities>;
