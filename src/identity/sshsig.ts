import { ed25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';
import { sha256, sha512 } from '@noble/hashes/sha2.js';

/**
 * SSH signatures (the SSHSIG format `ssh-keygen -Y sign` writes and git uses for commit signing),
 * parsed and verified in pure JavaScript, so workflow code can verify deterministically inside the
 * Temporal sandbox: no node:crypto, no Buffer, no I/O. Ed25519 and ECDSA P-256 keys are supported;
 * RSA, other curves, security keys (sk-*) and certificates are refused by name.
 */

export const SUPPORTED_KEY_TYPES = ['ssh-ed25519', 'ecdsa-sha2-nistp256'] as const;
export type KeyType = (typeof SUPPORTED_KEY_TYPES)[number];

/** A public key as SSH encodes it (the wire blob) with its type. */
export interface PublicKey {
  type: KeyType;
  /** The SSH wire encoding of the key, the thing fingerprints and allowed_signers entries are made of. */
  blob: Uint8Array;
  /** Ed25519: 32 bytes; P-256: the 65-byte uncompressed point. */
  key: Uint8Array;
}

export interface ParsedSignature {
  publicKey: PublicKey;
  namespace: string;
  hashAlgorithm: 'sha256' | 'sha512';
  signature: Uint8Array;
}

export class SignatureError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SignatureError';
  }
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_INDEX = new Map([...B64].map((ch, i) => [ch, i]));

export function base64Decode(text: string): Uint8Array {
  const s = text.replace(/=+$/, '');
  if (!/^[A-Za-z0-9+/]*$/.test(s) || s.length % 4 === 1) throw new SignatureError('not valid base64');
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let bits = 0;
  let acc = 0;
  let j = 0;
  for (const ch of s) {
    acc = (acc << 6) | B64_INDEX.get(ch)!;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[j++] = (acc >> bits) & 0xff;
    }
  }
  return out;
}

export function base64Encode(bytes: Uint8Array, pad = true): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63] + (i + 1 < bytes.length ? B64[(n >> 6) & 63] : '=') + (i + 2 < bytes.length ? B64[n & 63] : '=');
  }
  return pad ? out : out.replace(/=+$/, '');
}

export function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
export const sha256Hex = (data: Uint8Array | string): string => hex(sha256(typeof data === 'string' ? utf8(data) : data));

/** Reads the SSH wire format: uint32 lengths, strings, in order; every read is bounds-checked. */
class WireReader {
  private pos = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly what: string,
  ) {}
  uint32(): number {
    if (this.pos + 4 > this.buf.length) throw new SignatureError(`${this.what} is truncated`);
    const v = ((this.buf[this.pos] << 24) >>> 0) + (this.buf[this.pos + 1] << 16) + (this.buf[this.pos + 2] << 8) + this.buf[this.pos + 3];
    this.pos += 4;
    return v;
  }
  bytes(n: number): Uint8Array {
    if (n > this.buf.length - this.pos) throw new SignatureError(`${this.what} is truncated`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  string(): Uint8Array {
    return this.bytes(this.uint32());
  }
  text(): string {
    const b = this.string();
    return new TextDecoder('utf-8', { fatal: false }).decode(b);
  }
  end(): void {
    if (this.pos !== this.buf.length) throw new SignatureError(`${this.what} has ${this.buf.length - this.pos} unexpected trailing bytes`);
  }
}

function wireString(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + data.length);
  out[0] = (data.length >>> 24) & 0xff;
  out[1] = (data.length >>> 16) & 0xff;
  out[2] = (data.length >>> 8) & 0xff;
  out[3] = data.length & 0xff;
  out.set(data, 4);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) {
    out.set(p, i);
    i += p.length;
  }
  return out;
}

/** A public key from its SSH wire blob; refuses key types this verifier does not support, by name. */
export function parsePublicKeyBlob(blob: Uint8Array): PublicKey {
  const r = new WireReader(blob, 'the public key');
  const type = r.text();
  if (type === 'ssh-ed25519') {
    const key = r.string();
    r.end();
    if (key.length !== 32) throw new SignatureError(`an ssh-ed25519 key has 32 bytes, found ${key.length}`);
    return { type, blob, key };
  }
  if (type === 'ecdsa-sha2-nistp256') {
    const curve = r.text();
    const key = r.string();
    r.end();
    if (curve !== 'nistp256' || key.length !== 65 || key[0] !== 4) throw new SignatureError('an ecdsa-sha2-nistp256 key must carry an uncompressed nistp256 point');
    return { type, blob, key };
  }
  throw new SignatureError(`key type ${JSON.stringify(type.slice(0, 40))} is not supported; use ssh-ed25519 (ssh-keygen -t ed25519) or ecdsa-sha2-nistp256`);
}

/** "ssh-ed25519 AAAA... comment" as one line of an authorized_keys or .pub file. */
export function parsePublicKeyLine(line: string): PublicKey {
  const [type, b64] = line.trim().split(/\s+/);
  if (!type || !b64) throw new SignatureError('expected "<key type> <base64 key>"');
  const key = parsePublicKeyBlob(base64Decode(b64));
  if (key.type !== type) throw new SignatureError(`the key says it is ${key.type}, the line says ${type}`);
  return key;
}

/** The fingerprint ssh-keygen -l prints: SHA256:<unpadded base64 of sha256(blob)>. */
export function fingerprint(key: PublicKey | Uint8Array): string {
  const blob = key instanceof Uint8Array ? key : key.blob;
  return `SHA256:${base64Encode(sha256(blob), false)}`;
}

export function sameKey(a: PublicKey, b: PublicKey): boolean {
  if (a.blob.length !== b.blob.length) return false;
  for (let i = 0; i < a.blob.length; i++) if (a.blob[i] !== b.blob[i]) return false;
  return true;
}

const BEGIN = '-----BEGIN SSH SIGNATURE-----';
const END = '-----END SSH SIGNATURE-----';
const MAGIC = utf8('SSHSIG');
/** Armored signatures are a few hundred characters; anything far larger is not one. */
export const MAX_ARMORED_SIGNATURE = 4096;

/** Parses the armored SSHSIG format (PROTOCOL.sshsig): magic, version, public key, namespace, reserved, hash, signature. */
export function parseSignature(armored: string): ParsedSignature {
  if (typeof armored !== 'string') throw new SignatureError('the signature is missing');
  if (armored.length > MAX_ARMORED_SIGNATURE) throw new SignatureError(`the signature is ${armored.length} characters; an SSH signature is at most ${MAX_ARMORED_SIGNATURE}`);
  const text = armored.trim();
  if (!text.startsWith(BEGIN) || !text.endsWith(END)) throw new SignatureError(`expected an armored SSH signature (${BEGIN} ... ${END}), as ssh-keygen -Y sign writes`);
  const body = text.slice(BEGIN.length, text.length - END.length).replace(/\s+/g, '');
  const raw = base64Decode(body);
  const r = new WireReader(raw, 'the signature');
  const magic = r.bytes(6);
  if (!MAGIC.every((b, i) => magic[i] === b)) throw new SignatureError('the signature does not start with SSHSIG');
  const version = r.uint32();
  if (version !== 1) throw new SignatureError(`SSHSIG version ${version} is not supported (only 1)`);
  const publicKey = parsePublicKeyBlob(r.string());
  const namespace = r.text();
  r.string(); // reserved
  const hashAlgorithm = r.text();
  if (hashAlgorithm !== 'sha256' && hashAlgorithm !== 'sha512') throw new SignatureError(`hash algorithm ${JSON.stringify(hashAlgorithm.slice(0, 20))} is not sha256 or sha512`);
  const signature = r.string();
  r.end();
  return { publicKey, namespace, hashAlgorithm, signature };
}

function ecdsaCompact(blob: Uint8Array): Uint8Array {
  // The blob holds two mpints r and s: big-endian, possibly with a leading zero byte.
  const r = new WireReader(blob, 'the ECDSA signature');
  const fixed = (n: Uint8Array) => {
    let v = n;
    while (v.length > 32 && v[0] === 0) v = v.subarray(1);
    if (v.length > 32) throw new SignatureError('an ECDSA P-256 signature value is longer than 32 bytes');
    const out = new Uint8Array(32);
    out.set(v, 32 - v.length);
    return out;
  };
  const rr = fixed(r.string());
  const ss = fixed(r.string());
  r.end();
  return concat(rr, ss);
}

/**
 * Verifies an SSHSIG signature over a message for the given namespace. Throws SignatureError
 * naming what is wrong; returns the signing key when the signature is good.
 */
export function verifySignature(armored: string, message: Uint8Array | string, namespace: string): ParsedSignature {
  const sig = parseSignature(armored);
  if (sig.namespace !== namespace) throw new SignatureError(`the signature is for namespace ${JSON.stringify(sig.namespace.slice(0, 64))}, not ${namespace} (sign with ssh-keygen -Y sign -n ${namespace})`);
  const msg = typeof message === 'string' ? utf8(message) : message;
  const digest = sig.hashAlgorithm === 'sha512' ? sha512(msg) : sha256(msg);
  const signed = concat(MAGIC, wireString(utf8(namespace)), wireString(new Uint8Array(0)), wireString(utf8(sig.hashAlgorithm)), wireString(digest));
  const inner = new WireReader(sig.signature, 'the signature blob');
  const sigType = inner.text();
  const sigBytes = inner.string();
  inner.end();
  let ok = false;
  if (sig.publicKey.type === 'ssh-ed25519') {
    if (sigType !== 'ssh-ed25519') throw new SignatureError(`an ssh-ed25519 key cannot make a ${sigType.slice(0, 40)} signature`);
    if (sigBytes.length !== 64) throw new SignatureError('an Ed25519 signature has 64 bytes');
    ok = ed25519.verify(sigBytes, signed, sig.publicKey.key, { zip215: false });
  } else {
    if (sigType !== 'ecdsa-sha2-nistp256') throw new SignatureError(`an ecdsa-sha2-nistp256 key cannot make a ${sigType.slice(0, 40)} signature`);
    // OpenSSH signs the SHA-256 of the data and does not normalise s, so high-S signatures are valid.
    ok = p256.verify(ecdsaCompact(sigBytes), signed, sig.publicKey.key, { prehash: true, lowS: false });
  }
  if (!ok) throw new SignatureError('the signature does not match the statement (altered, or signed by another key)');
  return sig;
}
