/**
 * What kind of secret a piece of workload configuration holds, judged by its shape (and, for a
 * variable or key, by its name), so the audit can say "ConfigMap app key DATABASE_URL holds a password
 * in a connection string" without ever repeating the value. Pure functions.
 */

const SHAPES: [kind: string, pattern: RegExp][] = [
  ['a private key', /-----BEGIN [A-Z ]*PRIVATE KEY-----/],
  ['an AWS access key id', /\b(AKIA|ASIA)[0-9A-Z]{16}\b/],
  // scheme://user:password@host — a password in a URL (a bare user@host is fine).
  ['a password in a connection string', /\b[a-z][a-z0-9+.-]*:\/\/[^\s:@/]+:[^\s@/]+@[^\s]/i],
  // libpq/ADO style: password=... inside a connection string.
  ['a password in a connection string', /(^|[\s;'"])(password|pwd)\s*=\s*(?!\$)[^\s;'"]{3,}/i],
  ['a JSON Web Token', /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/],
  ['an API token', /\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,}|xox[abposr]-[A-Za-z0-9-]{10,}|sk_live_[A-Za-z0-9]{16,}|glpat-[A-Za-z0-9_-]{20})\b/],
  // A YAML, properties or shell line assigning a password, secret or token (not a reference to one).
  ['a password or token in a config file', /(^|\n)\s*[A-Za-z0-9_.-]*(password|passwd|secret|token|api[_-]?key)s?\d*\s*[:=]\s*["']?(?![$%{<]|env:|file:|vault:|ref\+)[^\s"'#]{4,}/i],
];

/** A variable or key whose name says it holds a secret. */
const SECRET_NAME = /(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL)/i;

/** A value that points at a secret rather than holding one: ${VAR}, $(VAR), env:/file:/vault: references. */
const REFERENCE = /^(\$\{[^}]+\}|\$\([^)]+\)|\$[A-Z_][A-Z0-9_]*|(env|file|vault|secret|ref\+[a-z]+):.+)$/i;

/** The kind of secret a value holds by its shape, or undefined. */
export function secretKind(value: string): string | undefined {
  for (const [kind, pattern] of SHAPES) if (pattern.test(value)) return kind;
  return undefined;
}

/** The kind of secret a named value holds: by its shape, else by its name (a non-empty literal under a secret's name). */
export function namedSecretKind(name: string, value: string | undefined): string | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const shaped = secretKind(value);
  if (shaped) return shaped;
  return SECRET_NAME.test(name) && !REFERENCE.test(value.trim()) ? 'a secret by its name' : undefined;
}
