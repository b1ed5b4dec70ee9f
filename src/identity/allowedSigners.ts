import { base64Decode, fingerprint, parsePublicKeyBlob, PublicKey, sameKey, SignatureError } from './sshsig';

/**
 * git's allowed_signers form (ssh-keygen(1), ALLOWED SIGNERS): one key per line,
 *   principals [options] keytype base64-key [comment]
 * with principals a comma-separated list (wildcards * and ?), and the options namespaces="a,b",
 * valid-after="YYYYMMDD[HHMM[SS]]" and valid-before=... (read as UTC). cert-authority is refused:
 * certificates are not supported.
 */
export interface AllowedSigner {
  principals: string[];
  key: PublicKey;
  fingerprint: string;
  namespaces?: string[];
  validAfterMs?: number;
  validBeforeMs?: number;
  line: number;
}

const KEY_TYPE = /^(ssh-|ecdsa-|sk-|rsa-)/;

function tokens(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of line) {
    if (ch === '"') quoted = !quoted;
    if (!quoted && /\s/.test(ch)) {
      if (cur) out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (quoted) throw new SignatureError('an unterminated quote');
  if (cur) out.push(cur);
  return out;
}

function sshTime(text: string, what: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?Z?$/.exec(text);
  if (!m) throw new SignatureError(`${what}: expected YYYYMMDD[HHMM[SS]][Z], found ${JSON.stringify(text.slice(0, 30))}`);
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4] ?? 0), Number(m[5] ?? 0), Number(m[6] ?? 0));
  if (!Number.isFinite(ms)) throw new SignatureError(`${what}: not a date`);
  return ms;
}

function splitOptions(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of text) {
    if (ch === '"') quoted = !quoted;
    if (ch === ',' && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.filter((o) => o.length > 0);
}

/** Parses allowed_signers text; a line that cannot be used is an error naming the line, never skipped. */
export function parseAllowedSigners(text: string, source = 'allowedSigners'): AllowedSigner[] {
  const out: AllowedSigner[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${source} line ${i + 1}`;
    try {
      const t = tokens(line);
      if (t.length < 3) throw new SignatureError('expected "principals [options] keytype base64-key"');
      const principals = t[0].replace(/"/g, '').split(',').filter(Boolean);
      if (principals.length === 0) throw new SignatureError('no principal');
      for (const p of principals) {
        if (!/^[A-Za-z0-9._@+*?-]{1,128}$/.test(p)) throw new SignatureError(`principal ${JSON.stringify(p.slice(0, 40))}: expected a name such as alice or alice@example.com (wildcards * and ?; no negation)`);
      }
      let k = 1;
      const entry: Partial<AllowedSigner> = { principals, line: i + 1 };
      if (!KEY_TYPE.test(t[1])) {
        for (const opt of splitOptions(t[1])) {
          const [name, ...rest] = opt.split('=');
          const value = rest.join('=').replace(/^"|"$/g, '');
          const lower = name.toLowerCase();
          if (lower === 'namespaces') entry.namespaces = value.split(',').filter(Boolean);
          else if (lower === 'valid-after') entry.validAfterMs = sshTime(value, 'valid-after');
          else if (lower === 'valid-before') entry.validBeforeMs = sshTime(value, 'valid-before');
          else if (lower === 'cert-authority') throw new SignatureError('cert-authority: certificates are not supported; list each person\'s own key');
          else throw new SignatureError(`unknown option ${JSON.stringify(name.slice(0, 30))}; expected namespaces=, valid-after= or valid-before=`);
        }
        k = 2;
      }
      const type = t[k];
      const b64 = t[k + 1];
      if (!type || !b64) throw new SignatureError('expected a key type and a base64 key after the principals');
      const key = parsePublicKeyBlob(base64Decode(b64));
      if (key.type !== type) throw new SignatureError(`the key is ${key.type}, the line says ${type}`);
      out.push({ ...(entry as AllowedSigner), key, fingerprint: fingerprint(key) });
    } catch (err) {
      throw new SignatureError(`${where}: ${(err as Error).message}`);
    }
  });
  return out;
}

function matchPattern(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\@-]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return re.test(name);
}

/**
 * Why this key may not sign as this principal now, or undefined if an entry allows it: the key is
 * listed for the principal, the entry allows the namespace, and the time lies within its validity.
 */
export function signerProblem(signers: readonly AllowedSigner[], principal: string, key: PublicKey, namespace: string, atMs: number): string | undefined {
  const forKey = signers.filter((s) => sameKey(s.key, key));
  if (forKey.length === 0) return `key ${fingerprint(key)} is not in the allowed signers`;
  const forPrincipal = forKey.filter((s) => s.principals.some((p) => matchPattern(p, principal)));
  if (forPrincipal.length === 0) return `key ${fingerprint(key)} is not listed for ${principal} in the allowed signers`;
  const problems: string[] = [];
  for (const s of forPrincipal) {
    if (s.namespaces && !s.namespaces.some((n) => matchPattern(n, namespace))) problems.push(`line ${s.line} allows namespaces ${s.namespaces.join(',')}, not ${namespace}`);
    else if (s.validAfterMs !== undefined && atMs < s.validAfterMs) problems.push(`line ${s.line} is valid only after ${new Date(s.validAfterMs).toISOString()}`);
    else if (s.validBeforeMs !== undefined && atMs >= s.validBeforeMs) problems.push(`line ${s.line} expired at ${new Date(s.validBeforeMs).toISOString()}`);
    else return undefined;
  }
  return `key ${fingerprint(key)} of ${principal} may not sign now: ${problems.join('; ')}`;
}
