import { hostname } from 'node:os';

/**
 * A scratch instance lives on the disk of the worker host that started it, so the activities that use
 * it (restore, validate, remove) must run on that host. Every worker that serves the batch queue also
 * polls a queue of its host's own; a restore test first asks any batch worker for its host queue, then
 * sends its scratch-instance activities there. A worker restarted on the same host (a crash, a container
 * restart) polls the same queue again and picks them up.
 */
export function scratchHostQueue(batchQueue: string, host = hostname()): string {
  return `${batchQueue}-scratch-${host.replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

export function createScratchHostActivities(deps: { batchQueue: string }) {
  return {
    /** The host this worker runs on and the task queue only workers on this host poll. */
    async claimScratchHost(): Promise<{ host: string; taskQueue: string }> {
      return { host: hostname(), taskQueue: scratchHostQueue(deps.batchQueue) };
    },
  };
}

export type ScratchHostActivities = ReturnType<typeof createScratchHostActivities>;
