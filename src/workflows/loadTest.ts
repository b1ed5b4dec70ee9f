import { proxyActivities, uuid4 } from '@temporalio/workflow';
import type { LoadPhase, LoadPhaseFigures, LoadTestActivities, LoadTestPlan } from '../activities/loadTest';
import { ENVIRONMENT_NAME, InputChecker } from './lib/input';
import { runRunbook, TimelineSnapshot } from './lib/timeline';

export interface LoadTestInput {
  environment: string;
}

export interface PhaseVerdict {
  latency: { p99Ms: number; slaMs: number; held: boolean };
  errors: { rate: number; max: number; held: boolean };
  /** Nothing started in the phase was lost: every workflow completed or failed visibly. */
  nothingLost: boolean;
  held: boolean;
}

export interface LoadTestPhaseReport {
  phase: LoadPhase;
  figures: LoadPhaseFigures;
  verdict: PhaseVerdict;
}

export interface LoadTestResult {
  runbook: 'loadTest';
  environment: string;
  /** The SLAs held at baseline, at peak and after recovery, and the failure phase lost nothing. */
  passed: boolean;
  reasons: string[];
  plan: LoadTestPlan;
  taskQueue: string;
  phases: LoadTestPhaseReport[];
  timeline: TimelineSnapshot;
}

export function validateLoadTestInput(input: unknown): LoadTestInput {
  const check = InputChecker.of('loadTest', input);
  check.matches('environment', ENVIRONMENT_NAME, 'an environment name (lower-case letters, digits, -)');
  for (const key of Object.keys(check.value)) if (key !== 'environment') check.problem(`${key}: unknown field; the plan and SLAs come from the environment's loadTest: config`);
  check.done();
  return check.value as unknown as LoadTestInput;
}

/** Whether a phase's figures met the SLAs. */
export function judgePhase(f: LoadPhaseFigures, sla: LoadTestPlan['sla']): PhaseVerdict {
  const latency = { p99Ms: f.startToCompleteMs.p99, slaMs: sla.p99StartToCompleteMs, held: f.completed > 0 && f.startToCompleteMs.p99 <= sla.p99StartToCompleteMs };
  const errors = { rate: Math.round(f.errorRate * 10_000) / 10_000, max: sla.maxErrorRate, held: f.errorRate <= sla.maxErrorRate };
  const nothingLost = f.unfinished === 0 && f.completed + f.failed === f.started;
  return { latency, errors, nothingLost, held: latency.held && errors.held && nothingLost };
}

const planActivities = proxyActivities<LoadTestActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: ['InvalidInput'] },
});

// A phase drives load for its duration, then drains; it heartbeats each second, so a lost worker is
// noticed in 10 s, and the phase is measured again from the start (at most three attempts in all: a
// worker lost at the phase's start and another in its middle still leave a measurement).
function phaseActivities(phaseMs: number) {
  return proxyActivities<LoadTestActivities>({
    startToCloseTimeout: phaseMs * 3 + 5 * 60_000,
    heartbeatTimeout: '10 seconds',
    retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumAttempts: 5, nonRetryableErrorTypes: ['InvalidInput'] },
  });
}

/**
 * The checklist's load testing: baseline, peak (2-3x), failure (bench workers stopped, or a slow
 * dependency) and recovery, each driven by the bench on a task queue of this run's own, each judged
 * against the SLAs from config.
 */
export async function loadTest(rawInput: LoadTestInput): Promise<LoadTestResult> {
  const input = validateLoadTestInput(rawInput);
  return runRunbook('loadTest', input.environment, async (timeline) => {
    const plan = await timeline.step('read plan and SLAs', async (evidence) => {
      const p = await planActivities.loadTestPlan();
      Object.assign(evidence, { scenario: p.scenario, baselineRate: p.baselineRate, peakMultiplier: p.peakMultiplier, phaseDurationMs: p.phaseDurationMs, failure: p.failure, sla: p.sla });
      return p;
    });
    const taskQueue = `runbook-loadtest-${uuid4().slice(0, 8)}`;
    const { runLoadPhase } = phaseActivities(plan.phaseDurationMs);
    const rates: Record<LoadPhase, number> = { baseline: plan.baselineRate, peak: plan.baselineRate * plan.peakMultiplier, failure: plan.baselineRate, recovery: plan.baselineRate };
    const phases: LoadTestPhaseReport[] = [];
    for (const phase of ['baseline', 'peak', 'failure', 'recovery'] as const) {
      const failing = phase === 'failure';
      const report = await timeline.step(`${phase} phase`, async (evidence) => {
        const figures = await runLoadPhase({
          phase,
          taskQueue,
          scenario: plan.scenario,
          ratePerSecond: rates[phase],
          durationMs: plan.phaseDurationMs,
          concurrency: plan.concurrency,
          outageMs: failing && plan.failure.mode === 'workers-stopped' ? plan.failure.outageMs : undefined,
          dependencyDelayMs: failing && plan.failure.mode === 'slow-dependency' ? plan.failure.dependencyDelayMs : undefined,
        });
        const verdict = judgePhase(figures, plan.sla);
        Object.assign(evidence, {
          targetRate: figures.targetRate,
          achievedRate: figures.achievedRate,
          started: figures.started,
          completed: figures.completed,
          failed: figures.failed,
          p50Ms: figures.startToCompleteMs.p50,
          p99Ms: figures.startToCompleteMs.p99,
          errorRate: verdict.errors.rate,
          slaHeld: verdict.held,
        });
        return { phase, figures, verdict };
      });
      phases.push(report);
    }
    const reasons: string[] = [];
    for (const p of phases) {
      const v = p.verdict;
      if (p.phase === 'failure') {
        if (!v.nothingLost || p.figures.failed > 0) reasons.push(`failure phase: ${p.figures.failed} failed and ${p.figures.unfinished} unfinished of ${p.figures.started}; nothing may be lost`);
        continue;
      }
      if (!v.latency.held) reasons.push(`${p.phase} phase: p99 start-to-complete ${v.latency.p99Ms} ms above the SLA of ${v.latency.slaMs} ms`);
      if (!v.errors.held) reasons.push(`${p.phase} phase: error rate ${v.errors.rate} above the SLA of ${v.errors.max}`);
      if (!v.nothingLost) reasons.push(`${p.phase} phase: ${p.figures.unfinished} workflows did not finish`);
    }
    return { runbook: 'loadTest' as const, environment: input.environment, passed: reasons.length === 0, reasons, plan, taskQueue, phases };
  });
}
