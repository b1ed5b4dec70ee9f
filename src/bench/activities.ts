import { Context } from '@temporalio/activity';

/** What every bench activity reports to the run that owns its worker: when the server scheduled it and when it started here. */
export interface ActivityTiming {
  scheduleToStartMs: number;
}

export interface BenchActivityOptions {
  /** Called at the start of every activity attempt with its schedule-to-start latency. */
  onActivityStarted?: (timing: ActivityTiming) => void;
}

export interface OrderInput {
  orderId: string;
  items: { sku: string; quantity: number; priceCents: number }[];
  /** Extra latency of the "payment provider", to make a dependency slow. */
  dependencyDelayMs?: number;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (ms <= 0) return resolve();
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason ?? new Error('cancelled'));
    });
  });

/**
 * The bench's activities: no-ops, a small order pipeline and sleeps shaped like a restore test.
 * Each records its schedule-to-start latency, measured the way the SDK's
 * activity_schedule_to_start_latency metric is (the server's scheduled time of this attempt to now).
 */
export function createBenchActivities(opts: BenchActivityOptions = {}) {
  const started = (): Context => {
    const ctx = Context.current();
    opts.onActivityStarted?.({ scheduleToStartMs: Math.max(0, Date.now() - ctx.info.currentAttemptScheduledTimestampMs) });
    return ctx;
  };
  return {
    async benchNoopActivity(): Promise<void> {
      started();
    },
    /** A step that does nothing but answer with a small object, as a check answers with its evidence. */
    async benchStep(input: { step: number }): Promise<{ step: number; ok: true }> {
      started();
      return { step: input.step, ok: true };
    },
    async benchValidateOrder(order: OrderInput): Promise<{ orderId: string; totalCents: number }> {
      started();
      if (order.items.length === 0) throw new Error(`order ${order.orderId} has no items`);
      return { orderId: order.orderId, totalCents: order.items.reduce((sum, i) => sum + i.quantity * i.priceCents, 0) };
    },
    async benchReserveInventory(order: OrderInput): Promise<{ reservationId: string }> {
      started();
      return { reservationId: `res-${order.orderId}` };
    },
    async benchChargePayment(input: { orderId: string; totalCents: number; dependencyDelayMs?: number }): Promise<{ paymentId: string }> {
      const ctx = started();
      await sleep(input.dependencyDelayMs ?? 0, ctx.cancellationSignal);
      return { paymentId: `pay-${input.orderId}-${input.totalCents}` };
    },
    async benchShipOrder(input: { orderId: string; reservationId: string }): Promise<{ trackingId: string }> {
      started();
      return { trackingId: `trk-${input.orderId}-${input.reservationId.length}` };
    },
    /** Sleeps like a step of a restore test; long ones heartbeat, as the real restore does. */
    async benchSleep(ms: number): Promise<void> {
      const ctx = started();
      const beat = ms >= 1_000 ? setInterval(() => ctx.heartbeat(), 500) : undefined;
      try {
        await sleep(ms, ctx.cancellationSignal);
      } finally {
        clearInterval(beat);
      }
    },
  };
}

export type BenchActivities = ReturnType<typeof createBenchActivities>;
