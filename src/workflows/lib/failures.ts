/**
 * The named failure types activities throw (src/activities/errors.ts) and whether a retry can fix
 * them. Pure data, so workflows list the permanent ones as nonRetryableErrorTypes from the same source.
 */
export const FAILURE_TYPES = {
  InvalidInput: { retryable: false },
  DatabaseNotFound: { retryable: false },
  AuthenticationFailed: { retryable: false },
  PermissionDenied: { retryable: false },
  BucketNotFound: { retryable: false },
  BackupNotFound: { retryable: false },
  BackupChecksumMismatch: { retryable: false },
  ServerUnreachable: { retryable: true },
  ConnectionLost: { retryable: true },
  RestoreFailed: { retryable: true },
  DumpFailed: { retryable: true },
  /** A Kubernetes object that does not exist (404). */
  NotFound: { retryable: false },
  /** A Kubernetes write that lost a race (409): read again and retry. */
  Conflict: { retryable: true },
  /** A rollout that cannot become healthy: progress deadline exceeded, pods crash-looping, or too slow. */
  RolloutFailed: { retryable: false },
  RevisionNotFound: { retryable: false },
  /** A pgBackRest command that failed for a reason a retry may fix (S3 unavailable, a lock held, a timeout). */
  PgBackRestFailed: { retryable: true },
  /** pgBackRest refused its configuration: an invalid option, no stanza in the repository, a certificate that does not verify. */
  PgBackRestConfigError: { retryable: false },
  /** A scratch instance's recovery ended with an error (a corrupt file, WAL that cannot be read, a target that cannot be reached). */
  RecoveryFailed: { retryable: false },
  /** The scratch directory cannot hold the restored copy. */
  InsufficientScratchSpace: { retryable: false },
  /** A program the activity runs is not installed on the worker. */
  ProgramMissing: { retryable: false },
  /** A configured command (a topology fault, recover or keep-aside command) failed: a retry may succeed. */
  CommandFailed: { retryable: true },
  /** The load test's fault injection is refused in an environment marked production. */
  LoadTestRefused: { retryable: false },
  /** No load generator (runbook worker --load-generator) polls its task queue. */
  NoLoadGenerator: { retryable: false },
  /** Patroni refused an action (a switchover without a good candidate, a malformed request). */
  PatroniRefused: { retryable: false },
  /** A former primary could not be made a streaming replica without destroying data. */
  RejoinFailed: { retryable: false },
} as const;
export type FailureType = keyof typeof FAILURE_TYPES;

export const PERMANENT_FAILURES: FailureType[] = (Object.keys(FAILURE_TYPES) as FailureType[]).filter((t) => !FAILURE_TYPES[t].retryable);
