import type { ActivityOptions } from '@temporalio/workflow';
import { PERMANENT_FAILURES } from './failures';

// Activity options of the pgBackRest steps. Every activity heartbeats, so an attempt lost with its
// worker is retried within seconds; the restore's retry starts from an empty scratch instance.

/** Reading the repository (pgbackrest info, the source's archiver, the canary): seconds. */
export const REPOSITORY_READ: ActivityOptions = {
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '20 seconds',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 4, nonRetryableErrorTypes: PERMANENT_FAILURES },
};

/** pgbackrest check waits for a WAL segment to be archived; the archive scan lists the WAL of a backup's span. */
export const REPOSITORY_CHECK: ActivityOptions = {
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '20 seconds',
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '2 minutes', maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
};

/** A backup, a verify of the whole repository, or a restore with its WAL replay: hours for a large database. */
export const PHYSICAL_TRANSFER: ActivityOptions = {
  startToCloseTimeout: '12 hours',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '10 seconds', backoffCoefficient: 2, maximumInterval: '5 minutes', maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
};

/** Removing a scratch instance, writing a report, expiring backups. */
export const PHYSICAL_QUICK: ActivityOptions = {
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '20 seconds',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5, nonRetryableErrorTypes: PERMANENT_FAILURES },
};

/** How long a scratch-instance step waits for its host's worker (a restarted worker polls again within seconds). */
export const SCRATCH_HOST_WAIT = '10 minutes';
