import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { runtimeInfo } from './runtime';

/** Buckets for procedures that last from seconds (a smoke test) to hours (a large restore). */
export const STEP_DURATION_BUCKETS = [0.05, 0.25, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400];

export type RunOutcome = 'succeeded' | 'failed' | 'cancelled';

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
  readonly lastSuccess = new Gauge({
    name: 'runbook_last_success_timestamp_seconds',
    help: 'Unix time of the last successful run, by runbook and environment',
    labelNames: ['runbook', 'environment'] as const,
    registers: [this.registry],
  });
  readonly lastFailure = new Gauge({
    name: 'runbook_last_failure_timestamp_seconds',
    help: 'Unix time of the last failed run, by runbook and environment',
    labelNames: ['runbook', 'environment'] as const,
    registers: [this.registry],
  });
  readonly gateOpenSince = new Gauge({
    name: 'runbook_gate_open_since_timestamp_seconds',
    help: 'Unix time an approval gate opened and is still waiting, by runbook and environment',
    labelNames: ['runbook', 'environment'] as const,
    registers: [this.registry],
  });
  readonly rpoTarget = new Gauge({ name: 'runbook_rpo_target_seconds', help: 'The environment\'s RPO target from config', labelNames: ['environment'] as const, registers: [this.registry] });
  readonly rtoTarget = new Gauge({ name: 'runbook_rto_target_seconds', help: 'The environment\'s RTO target from config', labelNames: ['environment'] as const, registers: [this.registry] });
  readonly workerReady = new Gauge({
    name: 'runbook_worker_ready',
    help: '1 when every task queue of this worker is polling, else 0',
    registers: [this.registry],
  });

  readonly drillRto = new Gauge({ name: 'runbook_drill_rto_seconds', help: 'RTO achieved by the last DR drill', labelNames: ['environment'] as const, registers: [this.registry] });
  readonly drillRpo = new Gauge({ name: 'runbook_drill_rpo_seconds', help: 'RPO achieved (data loss window) by the last DR drill', labelNames: ['environment'] as const, registers: [this.registry] });
  readonly drillPassed = new Gauge({ name: 'runbook_drill_passed', help: '1 if the last DR drill met its targets, else 0', labelNames: ['environment'] as const, registers: [this.registry] });
  readonly drillLastRun = new Gauge({ name: 'runbook_drill_last_run_timestamp_seconds', help: 'Unix time the last DR drill ended', labelNames: ['environment'] as const, registers: [this.registry] });
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

  runFinished(runbook: string, environment: string, outcome: RunOutcome, endedAtMs: number): void {
    this.runsCompleted.inc({ runbook, environment, outcome });
    if (outcome === 'succeeded') this.lastSuccess.set({ runbook, environment }, endedAtMs / 1000);
    if (outcome === 'failed') this.lastFailure.set({ runbook, environment }, endedAtMs / 1000);
  }

  drillMeasured(environment: string, passed: boolean, rtoMs: number, rpoMs: number, endedAtMs: number): void {
    this.drillRto.set({ environment }, rtoMs / 1000);
    this.drillRpo.set({ environment }, rpoMs / 1000);
    this.drillPassed.set({ environment }, passed ? 1 : 0);
    this.drillLastRun.set({ environment }, endedAtMs / 1000);
  }

  readinessScored(environment: string, section: string, score: number): void {
    this.readinessScore.set({ section, environment }, score);
  }

  gateOpened(runbook: string, environment: string, atMs: number): void {
    this.gateOpenSince.set({ runbook, environment }, atMs / 1000);
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
    this.gateOpenSince.remove({ runbook, environment });
  }

  stepFinished(runbook: string, step: string, outcome: string, durationMs: number): void {
    this.stepDuration.observe({ runbook, step, outcome }, durationMs / 1000);
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
