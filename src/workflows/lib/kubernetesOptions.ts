import { ActivityCancellationType, ActivityOptions } from '@temporalio/workflow';
import { PERMANENT_FAILURES } from './failures';

// The activity options of the runbooks that act on Kubernetes (rollout, rollback, goLive's watch window).
// Every one of these activities heartbeats, so a worker lost mid-call costs the heartbeat timeout.

/** Reads: quick, retried a few times. */
export const K8S_READ: ActivityOptions = {
  startToCloseTimeout: '30 seconds',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 5, nonRetryableErrorTypes: PERMANENT_FAILURES },
};

/**
 * Changes: each compares before it patches, so a retry after a lost answer is a no-op. A cancelled
 * change is waited for, so a rollback never races a patch still in flight.
 */
export const K8S_CHANGE: ActivityOptions = {
  startToCloseTimeout: '1 minute',
  heartbeatTimeout: '10 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '20 seconds', maximumAttempts: 8, nonRetryableErrorTypes: PERMANENT_FAILURES },
};

/** Waiting for a rollout to become healthy: minutes, heartbeating the replica counts. */
export const K8S_WAIT: ActivityOptions = {
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '20 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumAttempts: 5, nonRetryableErrorTypes: PERMANENT_FAILURES },
};

/**
 * One measurement of an analysis: a few HTTP calls and queries. Three attempts: a worker lost in the
 * middle costs one, and the worker that takes over may be slow to heartbeat while it starts.
 */
export const ANALYSIS_MEASURE: ActivityOptions = {
  startToCloseTimeout: '1 minute',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
};
