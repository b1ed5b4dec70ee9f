import type { ActivityOptions } from '@temporalio/workflow';

// Failures no retry can fix stop both backup runbooks at once.
import { PERMANENT_FAILURES } from './failures';

// Every activity heartbeats while it runs, so an attempt lost with its worker (a crash, a killed pod) is
// retried within seconds rather than after its start-to-close timeout (hours for a validation).

/** Preflight fails fast: an unreachable server or a missing bucket should stop the run before anything is changed. */
export const PREFLIGHT: ActivityOptions = {
  startToCloseTimeout: '1 minute',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
};

/** Short calls: listing, checks, dropping a database, small objects. */
export const QUICK: ActivityOptions = {
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5, nonRetryableErrorTypes: PERMANENT_FAILURES },
};

/** A dump or a restore: hours for a large database, heartbeating every couple of seconds with bytes moved. */
export const TRANSFER: ActivityOptions = {
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '20 seconds',
  retry: { initialInterval: '10 seconds', backoffCoefficient: 2, maximumInterval: '5 minutes', maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
};
