/**
 * Verification of the bearer tokens the Temporal Web UI forwards to the codec server: the signed-in
 * user's access token, a JWT signed by the identity provider, checked against the provider's JSON Web
 * Key Set (RFC 7517/7518/7519). Asymmetric algorithms only: a shared-secret (HS*) token verified with
 * a public key is the classic confusion attack, and `none` is no signature at all.
 */
import { createPublicKey, KeyObject, constants, verify } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';

export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

/** A token that does not verify; `status` is what the HTTP answer says (401 bad token, 503 keys unavailable). */
export class JwtRejected extends Error {
  constructor(
    message: string,
    readonly status: 401 | 503 = 401,
  ) {
    super(message);
    this.name = 'JwtRejected';
  }
}

export interface Jwk {
  kty?: string;
  kid?: string;
  use?: string;
  alg?: string;
  crv?: string;
  [k: string]: unknown;
}

export interface ParsedKey {
  kid?: string;
  kty: string;
  crv?: string;
  alg?: string;
  use?: string;
  key: KeyObject;
}

/** Where the keys come from; `refresh` asks for a fresh copy (an unknown kid: the provider may have rotated). */
export interface JwksSource {
  readonly description: string;
  keys(refresh: boolean): Promise<{ keys: ParsedKey[]; refreshed: boolean }>;
}

const MAX_JWKS_BYTES = 1024 * 1024;

/** The public keys of a JWKS document; private members are never kept, keys this code cannot use are skipped. */
export function parseJwks(text: string, where: string): ParsedKey[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new Error(`${where}: not JSON; expected a JWKS document {"keys": [...]}`);
  }
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new Error(`${where}: expected a JWKS document {"keys": [...]}`);
  const out: ParsedKey[] = [];
  for (const raw of keys as Jwk[]) {
    if (!raw || typeof raw !== 'object' || (raw.kty !== 'RSA' && raw.kty !== 'EC')) continue;
    const { kty, kid, use, alg, crv } = raw;
    const pub: Record<string, unknown> = kty === 'RSA' ? { kty, n: raw.n, e: raw.e } : { kty, crv, x: raw.x, y: raw.y };
    try {
      out.push({ kid: typeof kid === 'string' ? kid : undefined, kty, crv: typeof crv === 'string' ? crv : undefined, alg: typeof alg === 'string' ? alg : undefined, use: typeof use === 'string' ? use : undefined, key: createPublicKey({ key: pub as never, format: 'jwk' }) });
    } catch {
      // A malformed member makes that key unusable, not the whole set.
    }
  }
  return out;
}

/** Loopback addresses may serve the JWKS over plain HTTP (a sidecar, the test suite); anything else needs HTTPS. */
export function jwksUrlProblem(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'expected a URL such as https://login.example.com/.well-known/jwks.json';
  }
  const loopback = ['localhost', '[::1]'].includes(u.hostname) || /^127\.\d+\.\d+\.\d+$/.test(u.hostname);
  if (u.protocol === 'https:' || (u.protocol === 'http:' && loopback)) return undefined;
  return `expected an https:// URL (plain http only on loopback), found ${u.protocol}//${u.host}`;
}

export class UrlJwks implements JwksSource {
  private cache?: { keys: ParsedKey[]; fetchedAt: number };
  private inflight?: Promise<ParsedKey[]>;

  constructor(
    readonly url: string,
    private readonly options: { cacheForMs: number; refreshAtMostMs: number; onStale?: (err: Error) => void; now?: () => number },
  ) {}

  get description(): string {
    return this.url;
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  async keys(refresh: boolean): Promise<{ keys: ParsedKey[]; refreshed: boolean }> {
    const age = this.cache ? this.now() - this.cache.fetchedAt : Infinity;
    // An unknown kid refreshes, but at most every refreshAtMost: tokens with made-up kids must not turn the server into a JWKS flooder.
    if (this.cache && (refresh ? age < this.options.refreshAtMostMs : age < this.options.cacheForMs)) return { keys: this.cache.keys, refreshed: false };
    try {
      this.inflight ??= this.fetchKeys().finally(() => (this.inflight = undefined));
      return { keys: await this.inflight, refreshed: true };
    } catch (err) {
      if (!this.cache) throw new JwtRejected(`cannot verify tokens: the JWKS at ${this.url} could not be read: ${(err as Error).message}`, 503);
      // The provider is down: the keys already held still verify; try again after refreshAtMost.
      this.options.onStale?.(err as Error);
      this.cache.fetchedAt = this.now() - this.options.cacheForMs + this.options.refreshAtMostMs;
      return { keys: this.cache.keys, refreshed: false };
    }
  }

  private async fetchKeys(): Promise<ParsedKey[]> {
    const res = await fetch(this.url, { headers: { accept: 'application/json' }, redirect: 'error', signal: AbortSignal.timeout(5_000) });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    const text = await res.text();
    if (text.length > MAX_JWKS_BYTES) throw new Error(`larger than ${MAX_JWKS_BYTES} bytes`);
    const keys = parseJwks(text, this.url);
    this.cache = { keys, fetchedAt: this.now() };
    return keys;
  }
}

/** Keys from a file (a JWKS mounted from a Secret or ConfigMap), read again whenever it changes. */
export class FileJwks implements JwksSource {
  private cache?: { keys: ParsedKey[]; stamp: string };
  constructor(readonly path: string) {}

  get description(): string {
    return this.path;
  }

  async keys(): Promise<{ keys: ParsedKey[]; refreshed: boolean }> {
    let stamp: string;
    try {
      const st = statSync(this.path);
      stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch (err) {
      if (this.cache) return { keys: this.cache.keys, refreshed: false };
      throw new JwtRejected(`cannot verify tokens: the JWKS file ${this.path} cannot be read: ${(err as Error).message}`, 503);
    }
    if (this.cache?.stamp === stamp) return { keys: this.cache.keys, refreshed: false };
    let keys: ParsedKey[];
    try {
      keys = parseJwks(readFileSync(this.path, 'utf8'), this.path);
    } catch (err) {
      if (this.cache) return { keys: this.cache.keys, refreshed: false };
      throw new JwtRejected(`cannot verify tokens: ${(err as Error).message}`, 503);
    }
    this.cache = { keys, stamp };
    return { keys, refreshed: true };
  }
}

export interface JwtVerifierOptions {
  issuer: string;
  audiences: string[];
  algorithms: readonly JwtAlgorithm[];
  clockToleranceMs: number;
  /** The claim that names the user in the audit log (falls back to sub). */
  userClaim: string;
  jwks: JwksSource;
  now?: () => number;
}

export interface VerifiedToken {
  user: string;
  claims: Record<string, unknown>;
}

const SEGMENT = /^[A-Za-z0-9_-]+$/;

/** Three base64url segments: the shape of a JWS compact serialisation (a static token never has two dots). */
export function looksLikeJwt(token: string): boolean {
  const parts = token.split('.');
  return parts.length === 3 && SEGMENT.test(parts[0]) && SEGMENT.test(parts[1]) && (parts[2] === '' || SEGMENT.test(parts[2]));
}

function decodeJson(segment: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    throw new JwtRejected(`the token's ${what} is not base64url JSON`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new JwtRejected(`the token's ${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

const HASH: Record<string, string> = { '256': 'sha256', '384': 'sha384', '512': 'sha512' };
const CURVE: Record<string, { crv: string; bytes: number }> = { ES256: { crv: 'P-256', bytes: 64 }, ES384: { crv: 'P-384', bytes: 96 }, ES512: { crv: 'P-521', bytes: 132 } };

function suits(key: ParsedKey, alg: JwtAlgorithm): boolean {
  if (key.use !== undefined && key.use !== 'sig') return false;
  if (key.alg !== undefined && key.alg !== alg) return false;
  if (alg.startsWith('ES')) return key.kty === 'EC' && key.crv === CURVE[alg].crv;
  return key.kty === 'RSA';
}

function signatureValid(alg: JwtAlgorithm, key: KeyObject, data: Buffer, signature: Buffer): boolean {
  const hash = HASH[alg.slice(2)];
  if (alg.startsWith('ES')) {
    if (signature.length !== CURVE[alg].bytes) return false;
    return verify(hash, data, { key, dsaEncoding: 'ieee-p1363' }, signature);
  }
  if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) throw new JwtRejected('the signing key is an RSA key shorter than 2048 bits; such keys are refused');
  if (alg.startsWith('PS')) return verify(hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, signature);
  return verify(hash, data, { key, padding: constants.RSA_PKCS1_PADDING }, signature);
}

const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

export class JwtVerifier {
  constructor(private readonly options: JwtVerifierOptions) {}

  async verify(token: string): Promise<VerifiedToken> {
    const o = this.options;
    if (!looksLikeJwt(token)) throw new JwtRejected('the token is not a JWT (three base64url parts separated by dots)');
    const [h, p, s] = token.split('.');
    const header = decodeJson(h, 'header');
    const alg = header.alg;
    if (alg === undefined || alg === null || String(alg).toLowerCase() === 'none') throw new JwtRejected('alg none: unsigned tokens are refused');
    if (typeof alg !== 'string' || !(o.algorithms as readonly string[]).includes(alg)) {
      throw new JwtRejected(`alg ${String(alg)} is not accepted; expected one of ${o.algorithms.join(', ')}`);
    }
    if (header.crit !== undefined) throw new JwtRejected('the token has critical header parameters (crit), which are not supported');
    const kid = header.kid;
    if (kid !== undefined && typeof kid !== 'string') throw new JwtRejected('the token\'s kid is not a string');
    const algorithm = alg as JwtAlgorithm;

    const pick = (keys: ParsedKey[]) => keys.filter((k) => (kid === undefined || k.kid === kid) && suits(k, algorithm));
    let { keys, refreshed } = await o.jwks.keys(false);
    let candidates = pick(keys);
    if (candidates.length === 0 && !refreshed) {
      ({ keys, refreshed } = await o.jwks.keys(true));
      candidates = pick(keys);
    }
    if (candidates.length === 0) {
      throw new JwtRejected(
        kid === undefined
          ? `the token has no kid, and the JWKS (${o.jwks.description}) has no ${algorithm} key`
          : `unknown kid '${kid}': the JWKS (${o.jwks.description}${refreshed ? ', read again just now' : ''}) has no ${algorithm} key with that id`,
      );
    }
    if (kid === undefined && candidates.length > 1) throw new JwtRejected(`the token has no kid, and the JWKS (${o.jwks.description}) has ${candidates.length} ${algorithm} keys to choose from`);

    const signature = Buffer.from(s, 'base64url');
    let valid: boolean;
    try {
      valid = signatureValid(algorithm, candidates[0].key, Buffer.from(`${h}.${p}`), signature);
    } catch (err) {
      if (err instanceof JwtRejected) throw err;
      valid = false;
    }
    if (!valid) {
      throw new JwtRejected(`bad signature: the token was altered, or not signed by key '${candidates[0].kid ?? '(no kid)'}'`);
    }

    const claims = decodeJson(p, 'payload');
    const now = (o.now?.() ?? Date.now()) / 1000;
    const tol = o.clockToleranceMs / 1000;
    const num = (name: string) => {
      const v = claims[name];
      if (v === undefined) return undefined;
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new JwtRejected(`the token's ${name} claim is not a number`);
      return v;
    };
    const exp = num('exp');
    if (exp === undefined) throw new JwtRejected('the token has no exp claim; tokens that never expire are refused');
    if (now > exp + tol) throw new JwtRejected(`the token expired at ${iso(exp)}`);
    const nbf = num('nbf');
    if (nbf !== undefined && now + tol < nbf) throw new JwtRejected(`the token is not valid before ${iso(nbf)}`);
    const iat = num('iat');
    if (iat !== undefined && now + tol < iat) throw new JwtRejected(`the token was issued in the future (${iso(iat)})`);
    const quoted = (v: unknown): string => (Array.isArray(v) ? v.map(quoted).join(', ') || '(none)' : v === undefined || v === null ? '(none)' : `'${String(v).slice(0, 200)}'`);
    if (claims.iss !== o.issuer) throw new JwtRejected(`issuer ${quoted(claims.iss)} is not the configured issuer ${quoted(o.issuer)}`);
    const aud = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud.filter((a): a is string => typeof a === 'string') : [];
    if (!aud.some((a) => o.audiences.includes(a))) {
      throw new JwtRejected(`audience ${quoted(claims.aud)} does not include the configured audience ${o.audiences.map(quoted).join(' or ')}`);
    }
    const user = [claims[o.userClaim], claims.sub].find((v): v is string => typeof v === 'string' && v.length > 0);
    if (!user) throw new JwtRejected(`the token names no user: neither ${o.userClaim} nor sub is set`);
    return { user, claims };
  }
}
