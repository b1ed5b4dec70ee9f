import { ApplicationFailure, proxyActivities, uuid4 } from '@temporalio/workflow';
import type { LoadPhase, LoadPhaseFigures, LoadTestActivities, LoadTestPlan } from '../activities/loadTest';
import { ENVIRONMENT_NAME, InputChecker } from './lib/input';
import { runRunbook, TimelineSnapshot } from './lib/timeline';
import { GateRecord, Gates } from './lib/gate';

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
  /** mode command: the signed approval the fault was injected on. */
  approval?: GateRecord;
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
function phaseActivities(phaseMs: number, taskQueue?: string) {
  return proxyActivities<LoadTestActivities>({
    ...(taskQueue ? { taskQueue } : {}),
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
  const gates = new Gates('loadTest', input.environment);
  return runRunbook('loadTest', input.environment, async (timeline) => {
    gates.attach(timeline);
    const plan = await timeline.step('read plan and SLAs', async (evidence) => {
      const p = await planActivities.loadTestPlan();
      Object.assign(evidence, { scenario: p.scenario, baselineRate: p.baselineRate, peakMultiplier: p.peakMultiplier, phaseDurationMs: p.phaseDurationMs, failure: p.failure, sla: p.sla, generatorQueue: p.generatorQueue ?? null, production: p.production ?? null });
      return p;
    });
    // A real fault (mode command) is injected only on a signed approval, asked before any load runs.
    let approval: GateRecord | undefined;
    if (plan.failure.mode === 'command') {
      approval = await timeline.step('approval gate', async (evidence) => {
        const g = await gates.wait(`inject the fault: ${plan.failure.target}`, plan.failure.approvalTimeoutMs ?? 3_600_000);
        Object.assign(evidence, { fault: plan.failure.target, inject: plan.failure.inject, recover: plan.failure.recover, outageMs: plan.failure.outageMs, outcome: g.outcome, by: g.by ?? null, fingerprint: g.fingerprint ?? null, reason: g.reason ?? null, allowed: g.allowed });
        if (g.outcome !== 'approved') {
          throw ApplicationFailure.create({ type: 'LoadTestNotApproved', nonRetryable: true, message: `the fault (${plan.failure.target}) was ${g.outcome}${g.by ? ` by ${g.by}` : ''} at the approval gate: no load was run and nothing was injected` });
        }
        return g;
      });
    }
    const taskQueue = `runbook-loadtest-${uuid4().slice(0, 8)}`;
    // Plans from this version name the load generator's queue: the phases run in that worker, never in a production one.
    const { runLoadPhase, recoverLoadTestFault } = phaseActivities(plan.phaseDurationMs, plan.generatorQueue);
    const rates: Record<LoadPhase, number> = { baseline: plan.baselineRate, peak: plan.baselineRate * plan.peakMultiplier, failure: plan.baselineRate, recovery: plan.baselineRate };
    const phases: LoadTestPhaseReport[] = [];
    for (const phase of ['baseline', 'peak', 'failure', 'recovery'] as const) {
      const failing = phase === 'failure';
      const report = await timeline.step(`${phase} phase`, async (evidence) => {
        const fault = failing && plan.failure.mode === 'command' ? { target: plan.failure.target!, inject: plan.failure.inject!, recover: plan.failure.recover!, outageMs: plan.failure.outageMs } : undefined;
        const figures = await runLoadPhase({
          phase,
          taskQueue,
          scenario: plan.scenario,
          ratePerSecond: rates[phase],
          durationMs: plan.phaseDurationMs,
          concurrency: plan.concurrency,
          outageMs: failing && plan.failure.mode === 'workers-stopped' ? plan.failure.outageMs : undefined,
          dependencyDelayMs: failing && plan.failure.mode === 'slow-dependency' ? plan.failure.dependencyDelayMs : undefined,
          ...(fault ? { fault } : {}),
        }).catch(async (err: unknown) => {
          // The phase did not end cleanly: its fault must not stay in place (recover is safe to run twice).
          if (fault) {
            const r = await recoverLoadTestFault({ recover: fault.recover }).then(
              (x) => ({ recovered: x.argv }),
              (e: unknown) => ({ recoverFailed: e instanceof Error ? e.message : String(e) }),
            );
            evidence.afterFailure = r;
          }
          throw err;
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
          ...(figures.fault ? { fault: figures.fault } : {}),
          ...(figures.drainMs !== undefined ? { drainMs: figures.drainMs, backlog: figures.backlog } : {}),
        });
        return { phase, figures, verdict };
      });
      phases.push(report);
    }
    const reasons: string[] = [];
    for (const p of phases) {
      const v = p.verdict;
      if (p.phase === 'failure') {
        const f = p.figures;
        if (!v.nothingLost || f.failed > 0) reasons.push(`failure phase: ${f.failed} failed and ${f.unfinished} unfinished of ${f.started}; nothing may be lost`);
        if (f.fault?.recoverError) reasons.push(`failure phase: ${f.fault.recoverError}; the fault (${f.fault.target}) may still be in place`);
        const drainWithin = plan.sla.drainWithinMs;
        if (f.drainMs === null) reasons.push(`failure phase: the backlog of ${f.backlog} workflows never drained after the fault ended`);
        else if (f.drainMs !== undefined && drainWithin !== undefined && f.drainMs > drainWithin) {
          reasons.push(`failure phase: the backlog of ${f.backlog} workflows took ${f.drainMs} ms to drain after the fault ended, above sla.drainWithin of ${drainWithin} ms`);
        }
        continue;
      }
      if (!v.latency.held) reasons.push(`${p.phase} phase: p99 start-to-complete ${v.latency.p99Ms} ms above the SLA of ${v.latency.slaMs} ms`);
      if (!v.errors.held) reasons.push(`${p.phase} phase: error rate ${v.errors.rate} above the SLA of ${v.errors.max}`);
      if (!v.nothingLost) reasons.push(`${p.phase} phase: ${p.figures.unfinished} workflows did not finish`);
    }
    return { runbook: 'loadTest' as const, environment: input.environment, passed: reasons.length === 0, reasons, plan, taskQueue, phases, ...(approval ? { approval } : {}) };
  });
}
