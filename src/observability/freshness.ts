import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { EnvironmentConfig } from '../config/schema';
import { RUNBOOK_TARGET_KIND, ImplementedRunbook } from '../workflows/catalog';
import type { RunbookMetrics } from './metrics';

const RUNBOOK_TARGET = defineSearchAttributeKey('RunbookTarget', SearchAttributeType.KEYWORD);
const RUNBOOK_NAME = defineSearchAttributeKey('RunbookName', SearchAttributeType.KEYWORD);

/** Managed schedules carry this memo (src/schedules/plan.ts MANAGED_BY). */
const MANAGED_BY = 'runbook-config';

export interface FreshnessOptions {
  environment: string;
  env: EnvironmentConfig;
  client: () => Promise<Client>;
  metrics: RunbookMetrics;
  /** Runbooks to report on (the worker's registry). */
  runbooks: readonly ImplementedRunbook[];
  /** How many closed runs per runbook and outcome are read, newest first, to find each target's newest. */
  maxScan?: number;
  onError?: (err: Error) => void;
}

interface Newest {
  closedAtMs: number;
  workflowId: string;
  runId: string;
}

/** What one collection found, also returned for tests and logs. */
export interface FreshnessSnapshot {
  collectedAtMs: number;
  lastSuccess: { runbook: string; target: string; atMs: number }[];
  lastFailure: { runbook: string; target: string; atMs: number }[];
  nextDue: { runbook: string; target: string; schedule: string; atMs: number }[];
  openGates: { runbook: string; target: string; workflowId: string; gate: string; openedAtMs: number }[];
}

const QUOTE = /^[A-Za-z0-9_.-]{1,128}$/;

/**
 * Freshness of the runbooks from Temporal itself, not from this process's memory: the newest
 * successful and failed run of each runbook per target (database, Deployment, or the environment),
 * the next run each managed schedule will start, and the gates open right now with their age. Every
 * worker replica computes the same values, and a restarted worker reports them again at its first
 * collection, so an alert on "older than" or "never" keeps firing across restarts.
 *
 * Targets the config names (databases, kubernetes.deployments) are always reported: a target with no
 * run at all is exported as 0 (the epoch), which every "older than" alert treats as overdue.
 */
export class FreshnessCollector {
  private readonly maxScan: number;
  /** Results of finished runs never change: read each run's result once. */
  private readonly results = new Map<string, unknown>();

  constructor(private readonly opts: FreshnessOptions) {
    this.maxScan = opts.maxScan ?? 500;
    if (!QUOTE.test(opts.environment)) throw new Error(`environment name ${opts.environment} cannot be used in a visibility query`);
  }

  /** The targets the config names for a runbook ('' for environment-wide runbooks). */
  private expectedTargets(runbook: ImplementedRunbook): string[] {
    const kind = RUNBOOK_TARGET_KIND[runbook];
    if (kind === 'database') return Object.keys(this.opts.env.databases);
    if (kind === 'deployment') return [...(this.opts.env.kubernetes?.deployments ?? [])];
    return [''];
  }

  private targetOf(w: WorkflowExecutionInfo): string {
    const target = w.typedSearchAttributes.get(RUNBOOK_TARGET);
    return typeof target === 'string' ? target : '';
  }

  /** Newest closed run per target among the newest maxScan runs the query matches. */
  private async newestByTarget(client: Client, query: string, expected: string[]): Promise<Map<string, Newest>> {
    const newest = new Map<string, Newest>();
    let seen = 0;
    for await (const w of client.workflow.list({ query, pageSize: 100 })) {
      const closedAtMs = w.closeTime?.getTime();
      if (closedAtMs !== undefined) {
        const target = this.targetOf(w);
        const known = newest.get(target);
        if (!known || closedAtMs > known.closedAtMs) newest.set(target, { closedAtMs, workflowId: w.workflowId, runId: w.runId });
      }
      // Visibility lists closed runs newest first; once every expected target is found, older runs add nothing.
      if (++seen >= this.maxScan || (expected.length > 0 && expected.every((t) => newest.has(t)) && seen >= 20)) break;
    }
    return newest;
  }

  private async resultOf(client: Client, run: Newest): Promise<unknown> {
    const key = `${run.workflowId}/${run.runId}`;
    if (!this.results.has(key)) {
      const result = await client.workflow.getHandle(run.workflowId, run.runId).result();
      this.results.set(key, result);
      if (this.results.size > 1_000) this.results.delete(this.results.keys().next().value as string);
    }
    return this.results.get(key);
  }

  async collect(): Promise<FreshnessSnapshot> {
    const { environment, metrics } = this.opts;
    const client = await this.opts.client();
    const snapshot: FreshnessSnapshot = { collectedAtMs: Date.now(), lastSuccess: [], lastFailure: [], nextDue: [], openGates: [] };
    const base = `RunbookEnvironment = '${environment}'`;

    for (const runbook of this.opts.runbooks) {
      const expected = this.expectedTargets(runbook);
      const succeeded = await this.newestByTarget(client, `WorkflowType = '${runbook}' AND ${base} AND ExecutionStatus = 'Completed'`, expected);
      const failed = await this.newestByTarget(
        client,
        `WorkflowType = '${runbook}' AND ${base} AND (ExecutionStatus = 'Failed' OR ExecutionStatus = 'TimedOut' OR ExecutionStatus = 'Terminated')`,
        expected,
      );
      for (const target of new Set([...expected, ...succeeded.keys(), ...failed.keys()])) {
        const ok = succeeded.get(target)?.closedAtMs ?? 0;
        const bad = failed.get(target)?.closedAtMs ?? 0;
        snapshot.lastSuccess.push({ runbook, target, atMs: ok });
        snapshot.lastFailure.push({ runbook, target, atMs: bad });
      }
      // The figures of the newest good restore test and drill per database, read from their results.
      for (const [target, run] of succeeded) {
        if (runbook === 'verifyBackup') {
          const r = (await this.resultOf(client, run).catch(() => undefined)) as { restore?: { durationMs?: number; bytes?: number } } | undefined;
          if (typeof r?.restore?.durationMs === 'number') metrics.restoreTestDuration.set({ environment, database: target }, r.restore.durationMs / 1000);
          if (typeof r?.restore?.bytes === 'number') metrics.restoreTestBytes.set({ environment, database: target }, r.restore.bytes);
        }
        if (runbook === 'drDrill') {
          const r = (await this.resultOf(client, run).catch(() => undefined)) as { rto?: { ms?: number }; rpo?: { ms?: number } } | undefined;
          if (typeof r?.rto?.ms === 'number') metrics.drillRto.set({ environment, database: target }, r.rto.ms / 1000);
          if (typeof r?.rpo?.ms === 'number') metrics.drillRpo.set({ environment, database: target }, r.rpo.ms / 1000);
        }
      }
    }

    for await (const summary of client.schedule.list()) {
      if (summary.memo?.managedBy !== MANAGED_BY || summary.memo?.environment !== environment) continue;
      if (summary.action?.type !== 'startWorkflow') continue;
      const runbook = summary.action.workflowType;
      const next = summary.info.nextActionTimes[0];
      if (!next) continue;
      const args = (await client.schedule.getHandle(summary.scheduleId).describe().then((d) => (d.action.type === 'startWorkflow' ? d.action.args : []), () => [])) as unknown[];
      const kind = (RUNBOOK_TARGET_KIND as Record<string, string>)[runbook];
      const input = args[0] as Record<string, unknown> | undefined;
      const target = kind && kind !== 'none' && typeof input?.[kind] === 'string' ? String(input[kind]) : '';
      snapshot.nextDue.push({ runbook, target, schedule: summary.scheduleId, atMs: next.getTime() });
    }

    let scanned = 0;
    for await (const w of client.workflow.list({ query: `${base} AND ExecutionStatus = 'Running'`, pageSize: 100 })) {
      if (++scanned > this.maxScan) break;
      const runbook = w.typedSearchAttributes.get(RUNBOOK_NAME) ?? w.type;
      const gates = await client.workflow
        .getHandle(w.workflowId, w.runId)
        .query<{ name: string; openedAt: string; outcome: string }[]>('gates')
        .catch(() => [] as { name: string; openedAt: string; outcome: string }[]);
      for (const g of gates) {
        if (g.outcome === 'waiting') snapshot.openGates.push({ runbook: String(runbook), target: this.targetOf(w), workflowId: w.workflowId, gate: g.name, openedAtMs: Date.parse(g.openedAt) });
      }
    }

    this.publish(snapshot);
    return snapshot;
  }

  /** Replaces the freshness series at once, so a finished schedule or a closed gate disappears. */
  private publish(s: FreshnessSnapshot): void {
    const { environment, metrics } = this.opts;
    const sec = (ms: number) => ms / 1000;
    metrics.lastSuccess.reset();
    metrics.lastFailure.reset();
    metrics.nextDue.reset();
    metrics.gateOpenSince.reset();
    for (const r of s.lastSuccess) metrics.lastSuccess.set({ runbook: r.runbook, environment, target: r.target }, sec(r.atMs));
    for (const r of s.lastFailure) metrics.lastFailure.set({ runbook: r.runbook, environment, target: r.target }, sec(r.atMs));
    for (const r of s.nextDue) metrics.nextDue.set({ runbook: r.runbook, environment, target: r.target, schedule: r.schedule }, sec(r.atMs));
    for (const g of s.openGates) metrics.gateOpenSince.set({ runbook: g.runbook, environment, target: g.target, workflow_id: g.workflowId }, sec(g.openedAtMs));
    metrics.freshnessCollected.set({ environment }, sec(s.collectedAtMs));
  }

  /**
   * Collects now and then every intervalMs until stopped; a failed collection keeps the last values and
   * says so. The returned stop() resolves once a collection in flight has ended, so its client can close.
   */
  start(intervalMs: number): () => Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    let current: Promise<void> = Promise.resolve();
    const tick = () => {
      current = (async () => {
        try {
          await this.collect();
        } catch (err) {
          if (stopped) return;
          this.opts.metrics.freshnessErrors.inc({ environment: this.opts.environment });
          this.opts.onError?.(err as Error);
        }
      })();
      void current.then(() => {
        if (!stopped) timer = setTimeout(tick, intervalMs);
      });
    };
    tick();
    return async () => {
      stopped = true;
      clearTimeout(timer);
      await current;
    };
  }
}
