import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { runtimeInfo } from './runtime';

/** Buckets for procedures that last from seconds (a smoke test) to hours (a large restore). */
export const STEP_DURATION_BUCKETS = [0.05, 0.25, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400];

export type RunOutcome = 'succeeded' | 'failed' | 'cancelled';

/**
 * A step name as a label from a bounded set: a rollout's "step 3: set weight 25%" and "step 5: bake for
 * 600 s" become "set weight N%" and "bake for N s", so numbers a user chose never multiply the series.
 */
export function stepLabel(step: string): string {
  return step.replace(/^step \d+: /, '').replace(/\d+(\.\d+)?/g, 'N').slice(0, 64);
}

/** The runbooks' own metrics. Labels are bounded sets (runbook, environment, step, outcome), never ids. */
export class RunbookMetrics {
  readonly registry = new Registry();
  readonly runsStarted = new Counter({
    name: 'runbook_runs_started_total',
    help: 'Runbook runs started, by runbook and environment',
    labelNames: ['runbook', 'environment'] as const,
    registers: [this.registry],
  });
  readonly runsCompleted = new Counter({
    name: 'runbook_runs_completed_total',
    help: 'Runbook runs finished, by runbook, environment and outcome',
    labelNames: ['runbook', 'environment', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly stepDuration = new Histogram({
    name: 'runbook_step_duration_seconds',
    help: 'Duration of runbook steps',
    labelNames: ['runbook', 'step', 'outcome'] as const,
    buckets: STEP_DURATION_BUCKETS,
    registers: [this.registry],
  });
  // Freshness, computed from Temporal visibility by the FreshnessCollector (src/observability/freshness.ts),
  // so every replica reports the same values and a restart loses nothing. 0 means "never".
  readonly lastSuccess = new Gauge({
    name: 'runbook_last_success_timestamp_seconds',
    help: 'Unix time the newest successful run closed, by runbook, environment and target (database, Deployment, or "" for the environment); 0 when none ran',
    labelNames: ['runbook', 'environment', 'target'] as const,
    registers: [this.registry],
  });
  readonly lastFailure = new Gauge({
    name: 'runbook_last_failure_timestamp_seconds',
    help: 'Unix time the newest failed (or timed out, or terminated) run closed, by runbook, environment and target; 0 when none failed',
    labelNames: ['runbook', 'environment', 'target'] as const,
    registers: [this.registry],
  });
  readonly nextDue = new Gauge({
    name: 'runbook_next_due_timestamp_seconds',
    help: 'Unix time a managed schedule starts its next run, by runbook, environment, target and schedule id',
    labelNames: ['runbook', 'environment', 'target', 'schedule'] as const,
    registers: [this.registry],
  });
  readonly gateOpenSince = new Gauge({
    name: 'runbook_gate_open_since_timestamp_seconds',
    help: 'Unix time an approval gate opened, for every run waiting at one now, by runbook, environment, target and workflow id',
    labelNames: ['runbook', 'environment', 'target', 'workflow_id'] as const,
    registers: [this.registry],
  });
  readonly freshnessCollected = new Gauge({
    name: 'runbook_freshness_collected_timestamp_seconds',
    help: 'Unix time the freshness series were last read from Temporal by this worker',
    labelNames: ['environment'] as const,
    registers: [this.registry],
  });
  readonly freshnessErrors = new Counter({
    name: 'runbook_freshness_errors_total',
    help: 'Collections of the freshness series that failed (Temporal unreachable); the last values are kept',
    labelNames: ['environment'] as const,
    registers: [this.registry],
  });
  readonly restoreTestDuration = new Gauge({
    name: 'runbook_restore_test_duration_seconds',
    help: 'Restore time of the newest passing restore test, by environment and database',
    labelNames: ['environment', 'database'] as const,
    registers: [this.registry],
  });
  readonly restoreTestBytes = new Gauge({
    name: 'runbook_restore_test_restored_bytes',
    help: 'Bytes restored by the newest passing restore test, by environment and database',
    labelNames: ['environment', 'database'] as const,
    registers: [this.registry],
  });
  readonly rpoTarget = new Gauge({ name: 'runbook_rpo_target_seconds', help: 'The environment\'s RPO target from config', labelNames: ['environment'] as const, registers: [this.registry] });
  readonly rtoTarget = new Gauge({ name: 'runbook_rto_target_seconds', help: 'The environment\'s RTO target from config', labelNames: ['environment'] as const, registers: [this.registry] });
  readonly workerReady = new Gauge({
    name: 'runbook_worker_ready',
    help: '1 when every task queue of this worker is polling, else 0',
    registers: [this.registry],
  });

  readonly drillRto = new Gauge({ name: 'runbook_drill_rto_seconds', help: 'RTO achieved by the newest passing DR drill, by environment and database', labelNames: ['environment', 'database'] as const, registers: [this.registry] });
  readonly drillRpo = new Gauge({ name: 'runbook_drill_rpo_seconds', help: 'RPO achieved (data loss window) by the newest passing DR drill, by environment and database', labelNames: ['environment', 'database'] as const, registers: [this.registry] });
  readonly drills = new Counter({ name: 'runbook_drills_total', help: 'DR drills that measured RTO and RPO, by environment and whether they met the targets', labelNames: ['environment', 'passed'] as const, registers: [this.registry] });
  readonly gatesOpened = new Counter({ name: 'runbook_gates_opened_total', help: 'Approval gates opened, by runbook and environment', labelNames: ['runbook', 'environment'] as const, registers: [this.registry] });
  readonly gatesClosed = new Counter({ name: 'runbook_gates_closed_total', help: 'Approval gates closed (decided, timed out or aborted), by runbook and environment', labelNames: ['runbook', 'environment'] as const, registers: [this.registry] });
  readonly readinessScore = new Gauge({
    name: 'runbook_readiness_score',
    help: 'Share of checklist items that pass or are attested in the last readiness audit, by section (and overall) and environment',
    labelNames: ['section', 'environment'] as const,
    registers: [this.registry],
  });

  readonly gateReminders = new Counter({
    name: 'runbook_gate_reminders_total',
    help: 'Reminders sent because an approval gate was still waiting, by runbook and environment',
    labelNames: ['runbook', 'environment'] as const,
    registers: [this.registry],
  });
  readonly signedActs = new Counter({
    name: 'runbook_signed_acts_total',
    help: 'Signed acts a run accepted (approve, reject, abort, promote, waive, attest, start), by runbook, environment, act and verified principal',
    labelNames: ['runbook', 'environment', 'act', 'principal'] as const,
    registers: [this.registry],
  });
  readonly refusedActs = new Counter({
    name: 'runbook_signed_acts_refused_total',
    help: 'Acts refused (unsigned, bad signature, unknown or revoked key, another gate or run, too old, not allowed), by runbook, environment and kind',
    labelNames: ['runbook', 'environment', 'kind'] as const,
    registers: [this.registry],
  });
  readonly notificationFailures = new Counter({
    name: 'runbook_notification_failures_total',
    help: 'Notifications a channel did not take after every retry, by environment and channel',
    labelNames: ['environment', 'channel'] as const,
    registers: [this.registry],
  });
  readonly notificationsSent = new Counter({
    name: 'runbook_notifications_sent_total',
    help: 'Notifications delivered, by environment and channel',
    labelNames: ['environment', 'channel'] as const,
    registers: [this.registry],
  });
  readonly rollouts = new Counter({
    name: 'runbook_rollouts_total',
    help: 'Rollouts finished, by environment and outcome (promoted, rolled back, aborted, unchanged)',
    labelNames: ['environment', 'outcome'] as const,
    registers: [this.registry],
  });

  /** Deployment names come from the config's short list, so the label stays bounded. */
  readonly rolloutPhaseGauge = new Gauge({
    name: 'runbook_rollout_phase',
    help: '1 for the phase a running rollout is in (progressing, paused, analysis, promoting, rolling back), by environment and deployment',
    labelNames: ['environment', 'deployment', 'phase'] as const,
    registers: [this.registry],
  });

  readonly buildInfo = new Gauge({
    name: 'runbook_build_info',
    help: 'Always 1; the labels say which release of the project, Node.js and the Temporal SDK this worker runs',
    labelNames: ['version', 'node', 'temporal_sdk'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'runbook_process_' });
    const info = runtimeInfo();
    this.buildInfo.set({ version: info.runbook, node: info.node, temporal_sdk: info.temporalSdk }, 1);
  }

  runStarted(runbook: string, environment: string): void {
    this.runsStarted.inc({ runbook, environment });
  }

  runFinished(runbook: string, environment: string, outcome: RunOutcome): void {
    this.runsCompleted.inc({ runbook, environment, outcome });
  }

  drillMeasured(environment: string, passed: boolean): void {
    this.drills.inc({ environment, passed: passed ? 'true' : 'false' });
  }

  readinessScored(environment: string, section: string, score: number): void {
    this.readinessScore.set({ section, environment }, score);
  }

  gateOpened(runbook: string, environment: string): void {
    this.gatesOpened.inc({ runbook, environment });
  }

  actAccepted(runbook: string, environment: string, act: string, principal: string): void {
    this.signedActs.inc({ runbook, environment, act, principal });
  }

  actRefused(runbook: string, environment: string, kind: string): void {
    this.refusedActs.inc({ runbook, environment, kind });
  }

  gateReminder(runbook: string, environment: string): void {
    this.gateReminders.inc({ runbook, environment });
  }

  rolloutPhase(environment: string, deployment: string, phase: string): void {
    for (const p of ['preflight', 'progressing', 'paused', 'analysis', 'promoting', 'rolling back']) this.rolloutPhaseGauge.remove({ environment, deployment, phase: p });
    if (phase !== 'done') this.rolloutPhaseGauge.set({ environment, deployment, phase }, 1);
  }

  rolloutFinished(environment: string, outcome: string): void {
    this.rollouts.inc({ environment, outcome });
  }

  gateClosed(runbook: string, environment: string): void {
    this.gatesClosed.inc({ runbook, environment });
  }

  stepFinished(runbook: string, step: string, outcome: string, durationMs: number): void {
    this.stepDuration.observe({ runbook, step: stepLabel(step), outcome }, durationMs / 1000);
  }

  /** Our registry plus the SDK's own worker metrics, scraped from its exporter on loopback. */
  async exposition(sdkMetricsUrl?: string): Promise<string> {
    const own = await this.registry.metrics();
    if (!sdkMetricsUrl) return own;
    try {
      const res = await fetch(sdkMetricsUrl, { signal: AbortSignal.timeout(2_000) });
      const sdk = await res.text();
      return `${own}\n${sdk}`;
    } catch (err) {
      return `${own}\n# SDK metrics unavailable: ${(err as Error).message.replace(/\n/g, ' ')}\n`;
    }
  }
}
