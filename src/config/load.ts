import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument, isNode } from 'yaml';
import type { ZodIssue } from 'zod';
import { configSchema, EnvironmentConfig, RunbookConfig } from './schema';
import { decodeKeyText } from '../codec/keys';
import { looksLikeKeyMaterial, readSecret, SecretRef, secretRefProblem } from './secrets';

export interface ConfigProblem {
  /** Dotted path of the field, e.g. environments.prod.targets.rpo ('' for the whole file). */
  path: string;
  message: string;
  line?: number;
}

/** Every problem found in one config file, each naming the file, the field, what was expected and found. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: ConfigProblem[],
  ) {
    super(
      `${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n` +
        problems.map((p) => `  ${file}${p.line ? `:${p.line}` : ''}: ${p.path || '(file)'}: ${p.message}`).join('\n'),
    );
    this.name = 'ConfigError';
  }
}

export interface LoadedConfig {
  file: string;
  /** Directory relative file: references are resolved against. */
  baseDir: string;
  config: RunbookConfig;
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}..." (${String(value).length} characters)` : text;
}

function valueAt(data: unknown, path: PropertyKey[]): unknown {
  let current: unknown = data;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

/** Zod's own wording starts "Invalid ..."; a schema's own message says what to write instead. */
const ownMessage = (issue: ZodIssue): boolean => !/^Invalid\b/.test(issue.message);

function issueMessage(issue: ZodIssue, raw: unknown): string {
  const found = valueAt(raw, issue.path);
  switch (issue.code) {
    case 'invalid_type':
      if (found === undefined) return `required field is missing (expected ${issue.expected})`;
      return `expected ${issue.expected}, found ${describeValue(found)}`;
    case 'unrecognized_keys':
      return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')} (check the spelling; see the configuration reference in README.md)`;
    case 'invalid_value':
      if (ownMessage(issue)) return `${issue.message}, found ${describeValue(found)}`;
      return `expected one of ${issue.values.map((o) => `'${String(o)}'`).join(', ')}, found ${describeValue(found)}`;
    case 'invalid_key': {
      // A record's key broke its rule: the key's own issues say which.
      const key = String(issue.path[issue.path.length - 1]);
      const text = issue.issues.map((i) => i.message).join('; ');
      return text.includes('found') ? text : `${text}, found key ${describeValue(key)}`;
    }
    default:
      return issue.message.includes('found') ? issue.message : `${issue.message}, found ${describeValue(found)}`;
  }
}

/** Parses and validates a config file's text. Never throws anything but ConfigError for bad content. */
export function parseConfig(text: string, file: string): LoadedConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({ path: '', line: lineCounter.linePos(e.pos[0]).line, message: `not valid YAML: ${e.message.split('\n')[0]}` })),
    );
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 50 });
  const lineOf = (path: PropertyKey[]): number | undefined => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n).map((k) => (typeof k === 'symbol' ? String(k) : k)), true);
      if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line;
    }
    return undefined;
  };

  const problems: ConfigProblem[] = [];
  const scan = (value: unknown, path: (string | number)[]): void => {
    if (typeof value === 'string') {
      if (looksLikeKeyMaterial(value)) {
        problems.push({ path: path.join('.'), line: lineOf(path), message: 'looks like an inline key or credential; store it in a file or env var and reference it (file:/path or env:NAME)' });
      }
    } else if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) scan(v, [...path, Array.isArray(value) ? Number(k) : k]);
    }
  };
  scan(raw, []);

  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) {
    for (const issue of result.error.issues) {
      const path = issue.code === 'unrecognized_keys' && issue.keys.length === 1 ? [...issue.path, issue.keys[0]] : issue.path;
      problems.push({ path: path.map(String).join('.'), line: lineOf(issue.path), message: issueMessage(issue, raw) });
    }
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  return { file, baseDir: dirname(resolve(file)), config: (result as { data: RunbookConfig }).data };
}

export function loadConfig(file: string): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(file, [{ path: '', message: code === 'ENOENT' ? 'file not found (pass --config FILE or set RUNBOOK_CONFIG)' : `cannot read: ${(err as Error).message}` }]);
  }
  return parseConfig(text, file);
}

/** Every secret reference in an environment, with its field path. */
/**
 * The secret references the worker reads: Temporal credentials, payload keys, databases, S3, DNS and
 * notification channels. The codec server's tokens are not among them: a worker never needs them.
 */
export function secretRefsOf(env: EnvironmentConfig, prefix: string): { path: string; ref: SecretRef }[] {
  const refs: { path: string; ref: SecretRef }[] = [];
  const add = (path: string, ref: SecretRef | undefined) => ref && refs.push({ path: `${prefix}.${path}`, ref });
  add('temporal.apiKey', env.temporal.apiKey);
  add('temporal.tls.serverCa', env.temporal.tls?.serverCa);
  add('temporal.tls.clientCert', env.temporal.tls?.clientCert);
  add('temporal.tls.clientKey', env.temporal.tls?.clientKey);
  env.temporal.encryption?.keys.forEach((k, i) => add(`temporal.encryption.keys.${i}.key`, k.key));
  for (const [name, db] of Object.entries(env.databases)) {
    add(`databases.${name}.password`, db.password);
    add(`databases.${name}.restoreTest.password`, db.restoreTest.password);
    for (const [purpose, role] of Object.entries(db.roles)) add(`databases.${name}.roles.${purpose}.password`, role?.password);
    const repo = db.backups.pgbackrest?.repo;
    add(`databases.${name}.backups.pgbackrest.repo.accessKeyId`, repo?.accessKeyId);
    add(`databases.${name}.backups.pgbackrest.repo.secretAccessKey`, repo?.secretAccessKey);
    add(`databases.${name}.backups.pgbackrest.repo.cipherPass`, repo?.cipherPass);
  }
  add('backups.accessKeyId', env.backups?.accessKeyId);
  add('backups.secretAccessKey', env.backups?.secretAccessKey);
  add('dns.tsig.secret', env.dns?.tsig?.secret);
  add('dns.route53.accessKeyId', env.dns?.route53?.accessKeyId);
  add('dns.route53.secretAccessKey', env.dns?.route53?.secretAccessKey);
  env.notifications?.channels.forEach((c, i) => {
    if (c.type === 'webhook') add(`notifications.channels.${i}.secret`, c.secret);
    if (c.type === 'slack') add(`notifications.channels.${i}.url`, c.url);
    if (c.type === 'email') add(`notifications.channels.${i}.password`, c.password);
  });
  return refs;
}

/** The secret references `runbook codec-server` reads: the payload keys and its bearer tokens, nothing else. */
export function codecServerSecretRefsOf(env: EnvironmentConfig, prefix: string): { path: string; ref: SecretRef }[] {
  const enc = env.temporal.encryption;
  return [
    ...(enc?.keys ?? []).map((k, i) => ({ path: `${prefix}.temporal.encryption.keys.${i}.key`, ref: k.key })),
    ...(enc?.codecServer?.tokens ?? []).map((t, i) => ({ path: `${prefix}.temporal.encryption.codecServer.tokens.${i}.token`, ref: t.token })),
  ];
}

/**
 * Checks that the secret references of the named environments resolve on this machine: those the
 * worker reads, those the codec server reads, or all of them (`runbook config check --secrets`).
 */
export function checkSecretRefs(loaded: LoadedConfig, environments: string[], reader: 'worker' | 'codec-server' | 'all' = 'all'): void {
  const problems: ConfigProblem[] = [];
  for (const name of environments) {
    const env = loaded.config.environments[name];
    const prefix = `environments.${name}`;
    const refs = reader === 'worker' ? secretRefsOf(env, prefix) : reader === 'codec-server' ? codecServerSecretRefsOf(env, prefix) : [...new Map([...secretRefsOf(env, prefix), ...codecServerSecretRefsOf(env, prefix)].map((r) => [r.path, r])).values()];
    for (const { path, ref } of refs) {
      const problem = secretRefProblem(ref, loaded.baseDir);
      if (problem) problems.push({ path, message: `secret reference ${ref} cannot be resolved: ${problem}` });
    }
    env.temporal.encryption?.keys.forEach((k, i) => {
      if (secretRefProblem(k.key, loaded.baseDir)) return;
      const decoded = decodeKeyText(readSecret(k.key, loaded.baseDir));
      if ('problem' in decoded) problems.push({ path: `environments.${name}.temporal.encryption.keys.${i}.key`, message: `key '${k.id}' (${k.key}): ${decoded.problem}` });
    });
  }
  if (problems.length > 0) throw new ConfigError(loaded.file, problems);
}

/** The environment to act on: an explicit choice, then worker.environment, then defaultEnvironment, then the only one. */
export function selectEnvironment(loaded: LoadedConfig, requested?: string): { name: string; env: EnvironmentConfig } {
  const envs = loaded.config.environments;
  const names = Object.keys(envs);
  const name = requested ?? loaded.config.worker.environment ?? loaded.config.defaultEnvironment ?? (names.length === 1 ? names[0] : undefined);
  if (name === undefined) {
    throw new ConfigError(loaded.file, [{ path: 'defaultEnvironment', message: `several environments are defined (${names.join(', ')}); pass --env NAME or set defaultEnvironment` }]);
  }
  if (!(name in envs)) {
    throw new ConfigError(loaded.file, [{ path: 'environments', message: `unknown environment '${name}'; defined: ${names.join(', ')}` }]);
  }
  return { name, env: envs[name] };
}
