/**
 * The bench's own workflows, bundled only for bench workers on their own task queues; they are not
 * runbooks and are never registered on the runbook worker.
 */
import { condition, defineSignal, proxyActivities, proxyLocalActivities, RetryPolicy, setHandler, sleep } from '@temporalio/workflow';
import { runRunbook, TimelineSnapshot } from '../workflows/lib/timeline';
import type { BenchActivities, OrderInput } from './activities';

const retry: RetryPolicy = { initialInterval: '200 milliseconds', backoffCoefficient: 2, maximumInterval: '2 seconds', maximumAttempts: 5 };

// Bench activities are short; a lost bench worker is noticed by the start-to-close timeout.
const short = proxyActivities<BenchActivities>({ startToCloseTimeout: '30 seconds', retry });
// The restore-shaped sleeps heartbeat every 500 ms.
const long = proxyActivities<BenchActivities>({ startToCloseTimeout: '10 minutes', heartbeatTimeout: '10 seconds', retry });
const local = proxyLocalActivities<BenchActivities>({ startToCloseTimeout: '30 seconds', retry });

export const proceedSignal = defineSignal('proceed');

/** No activity at all: one workflow task. */
export async function benchNoop(): Promise<void> {
  return undefined;
}

/** A chain of no-op activities, one after the other. */
export async function benchActivityChain(input: { steps?: number } = {}): Promise<number> {
  const steps = input.steps ?? 5;
  for (let i = 0; i < steps; i++) await short.benchNoopActivity();
  return steps;
}

/** Validate, reserve, charge, a short timer, ship: four activities with small payloads and a timer. */
export async function benchOrderProcessing(order: OrderInput & { holdMs?: number }): Promise<{ trackingId: string; paymentId: string }> {
  const { totalCents } = await short.benchValidateOrder(order);
  const { reservationId } = await short.benchReserveInventory(order);
  const { paymentId } = await short.benchChargePayment({ orderId: order.orderId, totalCents, dependencyDelayMs: order.dependencyDelayMs });
  await sleep(order.holdMs ?? 200);
  const { trackingId } = await short.benchShipOrder({ orderId: order.orderId, reservationId });
  return { trackingId, paymentId };
}

/** `steps` steps, each one activity that echoes a small object, with nothing around them: the bare SDK. */
export async function benchSteps(input: { steps: number; local?: boolean }): Promise<number> {
  const act = input.local ? local : short;
  for (let i = 0; i < input.steps; i++) await act.benchStep({ step: i + 1 });
  return input.steps;
}

/**
 * The same steps as benchSteps, run the way every runbook runs them: through runRunbook and one
 * timeline step each (start, end, outcome, the activity's result as evidence, the step's log lines
 * and its metrics sink call), with the timeline returned in the result. The worker adds the runbook
 * sinks, the JSON logger and payload encryption, so what this costs over benchSteps is the machinery.
 */
export async function benchRunbookSteps(input: { steps: number }): Promise<{ steps: number; timeline: TimelineSnapshot }> {
  return runRunbook('benchRunbookSteps', 'bench', async (timeline) => {
    for (let i = 0; i < input.steps; i++) {
      await timeline.step(`step ${i + 1}`, async (evidence) => {
        Object.assign(evidence, await short.benchStep({ step: i + 1 }));
      });
    }
    return { steps: input.steps };
  });
}

/** Shaped like a restore test: preflight, select, a long restore (heartbeating), validate, drop. */
export async function benchRestoreShaped(input: { restoreMs?: number; stepMs?: number } = {}): Promise<void> {
  const step = input.stepMs ?? 50;
  await short.benchSleep(step);
  await short.benchSleep(step);
  await long.benchSleep(input.restoreMs ?? 1_000);
  await short.benchSleep(step * 4);
  await short.benchSleep(step);
}

/** Runs `steps` activities, then waits (cached, or not) for the proceed signal, then one more activity. */
export async function benchParked(input: { steps: number }): Promise<void> {
  let proceed = false;
  setHandler(proceedSignal, () => {
    proceed = true;
  });
  for (let i = 0; i < input.steps; i++) await short.benchNoopActivity();
  await condition(() => proceed);
  await short.benchNoopActivity();
}
