import pino from 'pino';
import type { LogLevel, LogMetadata, Logger as SdkLogger } from '@temporalio/common';

export type AppLogger = pino.Logger;

export function createLogger(level: string = process.env.RUNBOOK_LOG_LEVEL ?? 'info', destination?: pino.DestinationStream): AppLogger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ fd: 1, sync: true }),
  );
}

/** Errors as JSON: JSON.stringify of an Error is {}, which hides the one thing the line is about. */
function describeError(err: Error): Record<string, unknown> {
  const withType = err as Error & { type?: string; cause?: unknown };
  return {
    name: err.name,
    message: err.message,
    ...(withType.type ? { type: withType.type } : {}),
    ...(withType.cause instanceof Error ? { cause: describeError(withType.cause) } : {}),
  };
}

const LEVELS: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

/**
 * The logger handed to the Temporal runtime. The SDK attaches workflowId, runId and workflowType to
 * every line a workflow logs, and activityType, attempt and the workflow's ids to every line an
 * activity logs; this adapter writes them as JSON fields under one spelling (runId, not
 * workflowRunId) and drops the task token, which is a credential for completing the task.
 */
export class SdkLoggerAdapter implements SdkLogger {
  constructor(private readonly logger: AppLogger) {}

  log(level: LogLevel, message: string, meta?: LogMetadata): void {
    const fields: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(meta ?? {})) {
      if (key === 'taskToken') continue;
      fields[key === 'workflowRunId' ? 'runId' : key] = value instanceof Error ? describeError(value) : value;
    }
    this.logger[LEVELS[level]](fields, message);
  }
  trace(message: string, meta?: LogMetadata): void {
    this.log('TRACE', message, meta);
  }
  debug(message: string, meta?: LogMetadata): void {
    this.log('DEBUG', message, meta);
  }
  info(message: string, meta?: LogMetadata): void {
    this.log('INFO', message, meta);
  }
  warn(message: string, meta?: LogMetadata): void {
    this.log('WARN', message, meta);
  }
  error(message: string, meta?: LogMetadata): void {
    this.log('ERROR', message, meta);
  }
}
