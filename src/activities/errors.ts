import { ApplicationFailure } from '@temporalio/common';
import { FAILURE_TYPES, FailureType } from '../workflows/lib/failures';

export type { FailureType };

export function failure(type: FailureType, message: string, details?: unknown): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: !FAILURE_TYPES[type].retryable, details: details === undefined ? undefined : [details] });
}

/**
 * Task queue names may be shared between environments, so a runbook's first activity checks that the
 * environment the run names is the one this worker acts on, before anything is read or changed.
 */
export function checkServedEnvironment(requested: string | undefined, served: string): void {
  if (requested !== undefined && requested !== served) {
    throw failure('InvalidInput', `environment: this worker acts on environment '${served}', not '${requested}'; start it on a worker for that environment (runbook --env ${requested} worker)`);
  }
}

interface ErrorLike {
  code?: string;
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  Code?: string;
}

/**
 * Turns raw errors (PostgreSQL SQLSTATEs, socket errors, S3 error names) into named failures; an
 * error already classified passes through, an unknown one is rethrown as it is (retryable).
 */
export function classify(err: unknown, context: string): unknown {
  if (err instanceof ApplicationFailure) return err;
  const e = (err ?? {}) as ErrorLike;
  const message = `${context}: ${e.message ?? String(err)}`;
  switch (e.code) {
    case '3D000':
      return failure('DatabaseNotFound', message);
    case '28P01':
    case '28000':
      return failure('AuthenticationFailed', message);
    case '42501':
      return failure('PermissionDenied', message);
    case '57P01':
    case '57P02':
    case '57P03':
    case 'ECONNRESET':
    case 'EPIPE':
      return failure('ConnectionLost', message);
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ETIMEDOUT':
    case 'ENOTFOUND':
      return failure('ServerUnreachable', message);
  }
  const s3Name = e.name ?? e.Code;
  // S3 5xx (InternalError, ServiceUnavailable, SlowDown) left after the SDK's own retries: the server is unwell, not the request.
  if ((e.$metadata?.httpStatusCode ?? 0) >= 500) return failure('ServerUnreachable', message);
  if (s3Name === 'NoSuchBucket') return failure('BucketNotFound', message);
  if (s3Name === 'NoSuchKey' || s3Name === 'NotFound') return failure('BackupNotFound', message);
  if (s3Name === 'AccessDenied' || s3Name === 'InvalidAccessKeyId' || s3Name === 'SignatureDoesNotMatch') return failure('PermissionDenied', message);
  if (/Connection terminated|terminating connection/i.test(e.message ?? '')) return failure('ConnectionLost', message);
  return err;
}
