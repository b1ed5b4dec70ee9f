import type { Client, WorkflowHandle } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { waitFor } from './helpers';

export type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/**
 * Follows a run's history as the server appends to it (long poll), without asking the worker, so a
 * crash test can kill the worker the moment a step's activity is scheduled.
 */
export class HistoryWatch {
  readonly events: HistoryEvent[] = [];
  private closed = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly client: Client,
    private readonly handle: WorkflowHandle,
    private readonly namespace = 'default',
  ) {
    this.done = this.follow();
  }

  private async follow(): Promise<void> {
    let token: Uint8Array | undefined;
    while (!this.closed) {
      const res = await this.client.workflowService.getWorkflowExecutionHistory({
        namespace: this.namespace,
        execution: { workflowId: this.handle.workflowId },
        nextPageToken: token,
        waitNewEvent: true,
        maximumPageSize: 1000,
      });
      this.events.push(...(res.history?.events ?? []));
      if (!res.nextPageToken?.length) return;
      token = res.nextPageToken;
    }
  }

  scheduled(activityType: string): HistoryEvent | undefined {
    return this.events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activityType);
  }

  async waitScheduled(activityType: string): Promise<HistoryEvent> {
    return waitFor(`${activityType} scheduled`, async () => this.scheduled(activityType), 120_000, 10);
  }

  /** Waits until an activity type has been scheduled n times (a later step may run it again). */
  async waitScheduledCount(activityType: string, n: number): Promise<void> {
    await waitFor(`${activityType} scheduled ${n} time(s)`, async () => this.count(activityType) >= n, 120_000, 10);
  }

  /** How many times an activity type was scheduled: a retried attempt is not a new scheduling. */
  count(activityType: string): number {
    return this.events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activityType).length;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.done.catch(() => undefined);
  }
}
