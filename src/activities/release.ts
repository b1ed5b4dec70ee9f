import type { LoadedConfig } from '../config/load';
import { isRunReport } from '../reports/html';
import { renderReleaseHtml, ReleaseReport } from '../reports/release';
import type { ReportLinks } from '../reports/html';
import type { QueueKind } from '../config/schema';
import type { AnalysisSpec } from '../workflows/lib/analysis';
import { checkServedEnvironment, failure } from './errors';
import type { ObjectStore } from './s3';

/** A release's plan as the runbook reads it from config (environments.<env>.releases.<deployment>). */
export interface ReleasePlan {
  deployment: string;
  database: string;
  container?: string;
  migration: { command: string[]; env: { name: string; value: string }[]; timeoutMs: number };
  down?: { command: string[]; env: { name: string; value: string }[]; timeoutMs: number };
  onFailure: 'down-migration' | 'restore' | 'forward-fix';
  restoreTest: boolean;
  watch: { durationMs: number; intervalMs: number };
  approvers: string[];
  taskQueues: Record<QueueKind, string>;
  reportsKept: boolean;
}

/** One environment of a promotion, with the task queues its runs go to. */
export interface PromotionStagePlan {
  environment: string;
  bakeMs?: number;
  analysis?: AnalysisSpec;
  approval: boolean;
  taskQueues: Record<QueueKind, string>;
}

export interface PromotionPlan {
  name: string;
  runbook: 'release' | 'rollout';
  deployment: string;
  onAbort: 'rollback-promoted' | 'leave';
  stages: PromotionStagePlan[];
  approvers: string[];
}

const ID = /^[a-z0-9-]{4,80}$/;

/**
 * What the release and promotion runbooks read from config, checked against the worker's environment,
 * and where their reports go (next to the go-live and drill reports in the backup bucket).
 */
export function createReleaseActivities(deps: { loaded: LoadedConfig; environment: string; reports?: { store: ObjectStore; prefix: string; links?: ReportLinks } }) {
  const write = async (kind: 'releases' | 'promotions', id: string, json: unknown, markdown: string, html?: (links?: ReportLinks) => string): Promise<{ keys: string[] }> => {
    if (!deps.reports) return { keys: [] };
    if (!ID.test(id)) throw failure('InvalidInput', `report id '${id}' is not a plain id`);
    const base = `${deps.reports.prefix}${kind}/${id}/report`;
    await deps.reports.store.putJson(`${base}.json`, json);
    await deps.reports.store.putText(`${base}.md`, markdown, 'text/markdown');
    if (!html) return { keys: [`${base}.json`, `${base}.md`] };
    await deps.reports.store.putText(`${base}.html`, html(deps.reports.links), 'text/html');
    return { keys: [`${base}.json`, `${base}.md`, `${base}.html`] };
  };
  return {
    async describeRelease(input: { environment: string; deployment: string }): Promise<ReleasePlan> {
      checkServedEnvironment(input.environment, deps.environment);
      const env = deps.loaded.config.environments[deps.environment];
      const r = env.releases[input.deployment];
      if (!r) {
        const known = Object.keys(env.releases);
        throw failure('InvalidInput', `deployment: environment ${deps.environment} has no releases.${input.deployment} in ${deps.loaded.file} (the migration Job's command and the database policy); ${known.length ? `configured: ${known.join(', ')}` : 'add one'}`);
      }
      return {
        deployment: input.deployment,
        database: r.database,
        container: r.container,
        migration: { command: r.migration.command, env: r.migration.env, timeoutMs: r.migration.timeout },
        down: r.down && { command: r.down.command, env: r.down.env, timeoutMs: r.down.timeout },
        onFailure: r.onFailure,
        restoreTest: r.restoreTest,
        watch: { durationMs: r.watch.duration, intervalMs: r.watch.interval },
        approvers: env.approvers.release ?? env.approvers.default ?? [],
        taskQueues: { ...env.temporal.taskQueues },
        reportsKept: deps.reports !== undefined,
      };
    },

    async describePromotion(input: { environment: string; promotion: string }): Promise<PromotionPlan> {
      checkServedEnvironment(input.environment, deps.environment);
      const config = deps.loaded.config;
      const p = config.promotions[input.promotion];
      if (!p) {
        const known = Object.keys(config.promotions);
        throw failure('InvalidInput', `promotion: ${deps.loaded.file} has no promotions.${input.promotion}; ${known.length ? `configured: ${known.join(', ')}` : 'add one'}`);
      }
      if (p.stages[0].environment !== deps.environment) throw failure('InvalidInput', `environment: promotion ${input.promotion} starts in ${p.stages[0].environment}; run it on a worker of that environment`);
      const env = config.environments[deps.environment];
      return {
        name: input.promotion,
        runbook: p.runbook,
        deployment: p.deployment,
        onAbort: p.onAbort,
        approvers: env.approvers.promotion ?? env.approvers.default ?? [],
        stages: p.stages.map((s) => ({
          environment: s.environment,
          bakeMs: s.bake,
          analysis: s.analysis as AnalysisSpec | undefined,
          approval: s.approval,
          taskQueues: { ...config.environments[s.environment].temporal.taskQueues },
        })),
      };
    },

    writeReleaseReport: (input: { releaseId: string; json: unknown; markdown: string }) =>
      write('releases', input.releaseId, input.json, input.markdown, isRunReport(input.json) ? (links) => renderReleaseHtml(input.json as ReleaseReport, links) : undefined),
    writePromotionReport: (input: { promotionId: string; json: unknown; markdown: string }) => write('promotions', input.promotionId, input.json, input.markdown),
  };
}

export type ReleaseActivities = ReturnType<typeof createReleaseActivities>;
