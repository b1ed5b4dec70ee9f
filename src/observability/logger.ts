import pino from 'pino';
import type { LogLevel, LogMetadata, Logger as SdkLogger } from '@temporalio/common';

export type AppLogger = pino.Logger;

/**
 * Field names whose values are secrets, in the spellings the code, the SDKs and HTTP use: passwords,
 * tokens, API keys, cloud credentials, key material (TSIG, payload, signing and TLS keys), webhook
 * and SMTP secrets, authorization and cookie headers. Wherever such a field appears in a log line
 * (at the top or nested up to four levels, arrays included), its value is replaced.
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

/** pino redact paths for every secret field name at depths 0 to 4 (fast-redact has no recursive wildcard). */
function redactPaths(): string[] {
  const paths: string[] = [];
  for (const name of SECRET_FIELD_NAMES) {
    const plain = /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name);
    for (let depth = 0; depth <= 4; depth++) {
      const wildcards = Array(depth).fill('*').join('.');
      paths.push(plain ? (depth === 0 ? name : `${wildcards}.${name}`) : `${wildcards}["${name}"]`);
    }
  }
  return paths;
}

/** user:password@ in a URL, and password=... in a libpq conninfo or a query string: the password goes, the rest stays for diagnosis. */
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^\s:/?#@]*:)[^\s@/]*@/gi;
const KEYWORD_PASSWORD = /\b(password|passwd|pwd|secret|api_?key|access_?token|token)(\s*=\s*)(?:'[^']*'|"[^"]*"|[^\s,;&'"}]+)/gi;

/** A string with the passwords of connection strings and key=value secrets replaced. */
export function scrubSecrets(text: string): string {
  return text.replace(URL_PASSWORD, `$1${REDACTED}@`).replace(KEYWORD_PASSWORD, `$1$2${REDACTED}`);
}

function scrubValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return scrubSecrets(value);
  if (depth > 5 || !value || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => scrubValue(v, depth + 1));
  if (value instanceof Error) {
    const props = scrubValue({ ...value }, depth + 1) as Record<string, unknown>;
    return { type: value.constructor.name, ...props, message: scrubSecrets(value.message), ...(value.stack ? { stack: scrubSecrets(value.stack) } : {}) };
  }
  if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = scrubValue(v, depth + 1);
  return out;
}

export function createLogger(level: string = process.env.RUNBOOK_LOG_LEVEL ?? 'info', destination?: pino.DestinationStream): AppLogger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Secret fields by name, wherever they are; then passwords inside connection strings and messages.
      redact: { paths: redactPaths(), censor: REDACTED },
      formatters: { level: (label) => ({ level: label }), log: (object) => scrubValue(object, 0) as Record<string, unknown> },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((a) => (typeof a === 'string' ? scrubSecrets(a) : a)) as Parameters<typeof method>);
        },
      },
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
