import type { ActivityOptions } from '@temporalio/workflow';

// Failures no retry can fix stop both backup runbooks at once.
import { PERMANENT_FAILURES } from './failures';

/** Preflight fails fast: an unreachable server or a missing bucket should stop the run before anything is changed. */
export const PREFLIGHT: ActivityOptions = {
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
};

/** Short calls: listing, checks, dropping a database, small objects. */
export const QUICK: ActivityOptions = {
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5, nonRetryableErrorTypes: PERMANENT_FAILURES },
};

/** A dump or a restore: hours for a large database, heartbeating every couple of seconds with bytes moved. */
export const TRANSFER: ActivityOptions = {
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '10 seconds', backoffCoefficient: 2, maximumInterval: '5 minutes', maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
};
