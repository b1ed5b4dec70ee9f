import { CancellationScope } from '@temporalio/workflow';
import type { Timeline } from './timeline';
import { isPlanRun, recordPlanned } from './plan';

/**
 * Undo actions registered as a runbook changes the world. On failure (or abort) they run in reverse
 * order, each as a timeline step, best effort, in a scope that cancellation cannot interrupt.
 */
export class Compensations {
  private readonly stack: { name: string; fn: () => Promise<unknown> }[] = [];

  add(name: string, fn: () => Promise<unknown>): void {
    this.stack.push({ name, fn });
    if (isPlanRun()) recordPlanned([{ kind: 'compensation', by: 'compensation', what: `from here on, if a step fails or the run is aborted: ${name}` }]);
  }

  get pending(): number {
    return this.stack.length;
  }

  async run(timeline: Timeline): Promise<{ name: string; ok: boolean; error?: string }[]> {
    const results: { name: string; ok: boolean; error?: string }[] = [];
    await CancellationScope.nonCancellable(async () => {
      while (this.stack.length > 0) {
        const { name, fn } = this.stack.pop()!;
        try {
          await timeline.step(`compensate: ${name}`, async (evidence) => {
            const r = await fn();
            if (r && typeof r === 'object') Object.assign(evidence, r);
          });
          results.push({ name, ok: true });
        } catch (err) {
          results.push({ name, ok: false, error: err instanceof Error ? err.message : String(err) });
        }
      }
    });
    return results;
  }
}
