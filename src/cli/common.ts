import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, loadConfig, LoadedConfig, parseConfig, selectEnvironment } from '../config/load';
import type { EnvironmentConfig } from '../config/schema';
import { MissingBinaryError } from '../system/process';
import { ConnectedClient, connectClient } from './client';
import { DEFAULT_STACK_DIR } from '../sandbox/stack';

/** An error the user can fix; printed as one message without a stack trace. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface GlobalOptions {
  config?: string;
  env?: string;
  json?: boolean;
}

/**
 * The config file to use: --config, then RUNBOOK_CONFIG, then ./runbook.yaml, then the one the
 * local stack wrote. Without any, the built-in default points at a dev server on 127.0.0.1:7233.
 */
export function resolveConfigFile(explicit?: string): string | undefined {
  if (explicit) return explicit;
  if (process.env.RUNBOOK_CONFIG) return process.env.RUNBOOK_CONFIG;
  if (existsSync('runbook.yaml')) return 'runbook.yaml';
  const stackConfig = join(DEFAULT_STACK_DIR, 'runbook.yaml');
  if (existsSync(stackConfig)) return stackConfig;
  return undefined;
}

export function loadCliConfig(opts: GlobalOptions): LoadedConfig {
  const file = resolveConfigFile(opts.config);
  if (file) return loadConfig(file);
  return parseConfig('version: 1\ndefaultEnvironment: local\nenvironments:\n  local: {}\n', resolve('(built-in default)'));
}

export function cliEnvironment(loaded: LoadedConfig, opts: GlobalOptions): { name: string; env: EnvironmentConfig } {
  return selectEnvironment(loaded, opts.env ?? process.env.RUNBOOK_ENV);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Exit codes: 0 success, 1 the runbook or command failed, 2 bad input or config, 3 a required program is missing. */
export function reportError(err: unknown, json: boolean): number {
  let code = 1;
  let kind = 'error';
  if (err instanceof ConfigError) {
    code = 2;
    kind = 'config';
  } else if (err instanceof UsageError) {
    code = 2;
    kind = 'usage';
  } else if (err instanceof MissingBinaryError) {
    code = 3;
    kind = 'missing-program';
  }
  const message = err instanceof Error ? err.message : String(err);
  if (json) {
    printJson({ ok: false, error: { kind, message, ...(err instanceof ConfigError ? { file: err.file, problems: err.problems } : {}) } });
  } else {
    process.stderr.write(`runbook: ${message}\n`);
    if (process.env.RUNBOOK_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  }
  return code;
}

export function parseSeconds(value: string, flag: string, max: number): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > max) throw new UsageError(`${flag}: expected a number of seconds from 0 to ${max}, found ${shown(value)}`);
  return n;
}

const CONTROL = /[\x00-\x1f\x7f]/;

/** A value the user gave, quoted for an error message and cut short, so a huge argument cannot flood the terminal. */
export function shown(value: string): string {
  return value.length > 60 ? `${JSON.stringify(value.slice(0, 57))}... (${value.length} characters)` : JSON.stringify(value);
}

/** A WORKFLOW_ID argument: what Temporal accepts (at most 1000 characters) and nothing that could forge output lines. */
export function parseWorkflowId(value: string): string {
  if (value.length === 0 || value.length > 1000 || CONTROL.test(value)) {
    throw new UsageError(`WORKFLOW_ID: expected a workflow id of 1-1000 characters without control characters, such as drDrill-sandbox-20260101T000000Z-a1b2c3, found ${shown(value)}`);
  }
  return value;
}

/** Who acts (--by) and why (--reason), held to what the runbooks' gates accept. */
export function parseActor(by: string, reason: string | undefined): { by: string; reason?: string } {
  if (by.length === 0 || by.length > 128 || CONTROL.test(by)) throw new UsageError(`--by: expected who is acting, 1-128 characters without control characters, found ${shown(by)}`);
  if (reason !== undefined && reason.length > 1000) throw new UsageError(`--reason: expected text of at most 1000 characters, found ${reason.length} characters`);
  return { by, reason };
}

/**
 * The shape of every command that runs a runbook: connect to the environment's Temporal, run,
 * print human or JSON output, set the exit code from the outcome, and always close the connection.
 */
export async function runAndReport<T extends { ok: boolean }>(
  opts: GlobalOptions,
  run: (c: ConnectedClient, showProgress: boolean) => Promise<T>,
  describe: (outcome: T) => string,
): Promise<void> {
  await withClient(opts, async (c) => {
    const outcome = await run(c, !opts.json);
    if (opts.json) printJson(outcome);
    else process.stdout.write(`${describe(outcome)}\n`);
    process.exitCode = outcome.ok ? 0 : 1;
  });
}

/** Connects to the selected environment's Temporal, runs fn, and always closes the connection. */
export async function withClient<T>(opts: GlobalOptions, fn: (c: ConnectedClient) => Promise<T>): Promise<T> {
  const loaded = loadCliConfig(opts);
  const { name, env } = cliEnvironment(loaded, opts);
  const c = await connectClient(loaded, name, env);
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}
