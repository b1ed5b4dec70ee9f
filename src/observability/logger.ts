import pino from 'pino';
import type { LogLevel, LogMetadata, Logger as SdkLogger } from '@temporalio/common';

export type AppLogger = pino.Logger;

/**
 * Field names whose values are secrets, in the spellings the code, the SDKs and HTTP use: passwords,
 * tokens, API keys, cloud credentials, key material (TSIG, payload, signing and TLS keys), webhook
 * and SMTP secrets, authorization and cookie headers. Wherever such a field appears in a log line
 * (at any depth, arrays and errors included), its value is replaced.
 */
export const SECRET_FIELD_NAMES = [
  'password', 'passwd', 'pass', 'pgpassword', 'PGPASSWORD', 'newPassword',
  'secret', 'secrets', 'clientSecret', 'client_secret', 'webhookSecret', 'hmacSecret', 'tsigSecret',
  'secretAccessKey', 'SecretAccessKey', 'secret_access_key', 'accessKeyId', 'AccessKeyId', 'aws_access_key_id', 'aws_secret_access_key', 'sessionToken', 'SessionToken', 'credentials', 'Credentials',
  'token', 'tokens', 'accessToken', 'access_token', 'refreshToken', 'refresh_token', 'idToken', 'id_token', 'bearer', 'taskToken', 'jwt',
  'apiKey', 'api_key', 'apikey', 'x-api-key',
  'authorization', 'Authorization', 'proxy-authorization', 'cookie', 'Cookie', 'set-cookie', 'x-runbook-signature',
  'privateKey', 'private_key', 'signingKey', 'signing_key', 'clientKey', 'tlsKey', 'encryptionKey', 'codecKey', 'keyMaterial', 'tsigKey', 'hmacKey',
  'connectionString', 'databaseUrl', 'dsn', 'webhookUrl', 'slackUrl',
] as const;

const REDACTED = '[redacted]';

const SECRET_FIELDS: ReadonlySet<string> = new Set(SECRET_FIELD_NAMES);

/** How deep a log line's fields are walked; deeper values are replaced whole (a log line is not a data dump). */
const MAX_DEPTH = 8;

/** user:password@ in a URL, and password=... in a libpq conninfo or a query string: the password goes, the rest stays for diagnosis. */
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^\s:/?#@]*:)[^\s@/]*@/gi;
const KEYWORD_PASSWORD = /\b(password|passwd|pwd|secret|api_?key|access_?token|token)(\s*=\s*)(?:'[^']*'|"[^"]*"|[^\s,;&'"}]+)/gi;

/** A string with the passwords of connection strings and key=value secrets replaced. */
export function scrubSecrets(text: string): string {
  return text.replace(URL_PASSWORD, `$1${REDACTED}@`).replace(KEYWORD_PASSWORD, `$1$2${REDACTED}`);
}

/**
 * A log line's value with secrets removed, in one walk: a field with a secret's name loses its value
 * at any depth (objects, arrays, an error's own fields), strings lose the passwords inside them.
 * pino's own path-based redaction is not used: with a wildcard path per name and depth it cost about
 * a millisecond per line, more than the rest of a runbook step's worker-side work.
 */
function scrubValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return scrubSecrets(value);
  if (!value || typeof value !== 'object') return value;
  if (depth > MAX_DEPTH) return '[too deep]';
  if (Array.isArray(value)) return value.map((v) => scrubValue(v, depth + 1));
  if (value instanceof Error) {
    const props = scrubFields({ ...value }, depth);
    return { type: value.constructor.name, ...props, message: scrubSecrets(value.message), ...(value.stack ? { stack: scrubSecrets(value.stack) } : {}) };
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  return scrubFields(value as Record<string, unknown>, depth);
}

function scrubFields(value: Record<string, unknown>, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value)) out[k] = SECRET_FIELDS.has(k) ? REDACTED : scrubValue(value[k], depth + 1);
  return out;
}

export function createLogger(level: string = process.env.RUNBOOK_LOG_LEVEL ?? 'info', destination?: pino.DestinationStream): AppLogger {
  const logger = pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Secret fields by name, wherever they are, and passwords inside connection strings and messages.
      formatters: { level: (label) => ({ level: label }), log: (object) => scrubValue(object, 0) as Record<string, unknown> },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((a) => (typeof a === 'string' ? scrubSecrets(a) : a)) as Parameters<typeof method>);
        },
      },
    },
    destination ?? pino.destination({ fd: 1, sync: true }),
  );
  // A child logger's bindings are written into every line it logs, and pino applies no formatter to
  // them: they are scrubbed once, when the child is made (children of children inherit this).
  const child = logger.child;
  logger.child = function scrubbedChild(this: AppLogger, bindings, options) {
    return child.call(this, scrubValue(bindings, 0) as typeof bindings, options);
  } as typeof logger.child;
  return logger;
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
