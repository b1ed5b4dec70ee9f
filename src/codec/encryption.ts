import { METADATA_ENCODING_KEY, Payload, PayloadCodec } from '@temporalio/common';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { Field, MapField, Root, Type } from 'protobufjs';
import { KEY_BYTES } from './keys';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';

const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * The wire form of temporal.api.common.v1.Payload (metadata map and data), so the encrypted bytes are
 * the original payload exactly as any Temporal SDK would serialise it.
 */
const PayloadMessage = new Type('Payload').add(new MapField('metadata', 1, 'string', 'bytes')).add(new Field('data', 2, 'bytes'));
new Root().define('temporal.api.common.v1').add(PayloadMessage);

/** A payload this process cannot decrypt: unknown key id, altered ciphertext, malformed metadata. */
export class PayloadDecryptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayloadDecryptionError';
  }
}

/** The key id authenticates with the ciphertext: moving a payload under another id's name fails. */
function aad(keyId: string): Buffer {
  return Buffer.from(`runbook-payload-v1:${keyId}`);
}

/** A payload that is not encrypted, met by a codec that requires encryption. */
export class PlaintextPayloadError extends PayloadDecryptionError {
  constructor(message: string) {
    super(message);
    this.name = 'PlaintextPayloadError';
  }
}

export interface EncryptionCodecOptions {
  /**
   * Refuse payloads that are not encrypted on decode. Without it they pass through untouched
   * (histories from before encryption was turned on).
   */
  requireEncryption?: boolean;
  /**
   * Let through, even when encryption is required, the one plaintext payload the SDK itself puts in
   * every history: the data of a patch marker (`core_patch`: `{"id": ..., "deprecated": ...}`),
   * written by the SDK's core outside any codec. Workers and clients never decode markers; the codec
   * server does, when the Web UI or `temporal workflow show` sends it a whole history.
   */
  passSdkPatchMarkers?: boolean;
}

/** The exact shape of the SDK core's patch marker data: json/plain `{"id": string, "deprecated": boolean}` and nothing else. */
export function isSdkPatchMarkerData(payload: Payload): boolean {
  const keys = Object.keys(payload.metadata ?? {});
  if (keys.length !== 1 || keys[0] !== METADATA_ENCODING_KEY || Buffer.from(payload.metadata![METADATA_ENCODING_KEY]).toString() !== 'json/plain') return false;
  const data = Buffer.from(payload.data ?? []);
  if (data.length > 512) return false;
  try {
    const value = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
    return (
      !!value && typeof value === 'object' && !Array.isArray(value) &&
      Object.keys(value).sort().join(',') === 'deprecated,id' && typeof value.id === 'string' && typeof value.deprecated === 'boolean'
    );
  } catch {
    return false;
  }
}

/**
 * AES-256-GCM over whole payloads (metadata included, so even the encoding of a value is hidden).
 * Encrypts with the active key; decrypts with any key it holds, found by the id in each payload's
 * metadata, so keys can rotate while older histories stay readable. A payload that is not encrypted
 * is refused when encryption is required, else passed through decode untouched.
 */
export class EncryptionCodec implements PayloadCodec {
  private readonly keys: ReadonlyMap<string, Buffer>;
  readonly requireEncryption: boolean;
  private readonly passSdkPatchMarkers: boolean;

  constructor(
    keys: ReadonlyMap<string, Buffer>,
    readonly activeKeyId: string,
    options: EncryptionCodecOptions = {},
  ) {
    this.requireEncryption = options.requireEncryption ?? false;
    this.passSdkPatchMarkers = options.passSdkPatchMarkers ?? false;
    for (const [id, key] of keys) {
      if (key.length !== KEY_BYTES) throw new Error(`encryption key '${id}' has ${key.length} bytes; AES-256 needs ${KEY_BYTES}`);
    }
    if (!keys.has(activeKeyId)) throw new Error(`active encryption key '${activeKeyId}' is not among the keys (${[...keys.keys()].join(', ')})`);
    this.keys = new Map(keys);
  }

  get keyIds(): string[] {
    return [...this.keys.keys()];
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const key = this.keys.get(this.activeKeyId)!;
    return payloads.map((payload) => {
      const plain = PayloadMessage.encode(PayloadMessage.fromObject({ metadata: payload.metadata ?? {}, data: payload.data ?? new Uint8Array() })).finish();
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(aad(this.activeKeyId));
      const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return {
        metadata: { [METADATA_ENCODING_KEY]: Buffer.from(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: Buffer.from(this.activeKeyId) },
        data: sealed,
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => this.decodeOne(payload));
  }

  private decodeOne(payload: Payload): Payload {
    const encoding = payload.metadata?.[METADATA_ENCODING_KEY];
    if (!encoding || Buffer.from(encoding).toString() !== ENCRYPTED_ENCODING) {
      if (!this.requireEncryption || (this.passSdkPatchMarkers && isSdkPatchMarkerData(payload))) return payload;
      // The encoding names the kind of value (json/plain, binary/null), never the value itself.
      const kind = encoding ? `'${Buffer.from(encoding).toString().slice(0, 40)}'` : 'no encoding';
      throw new PlaintextPayloadError(
        `refused a payload that is not encrypted (${kind}): temporal.encryption.requireEncryption is on, so every payload must be ${ENCRYPTED_ENCODING}. ` +
          `It was written by a client without this environment's keys (a start or signal from the Temporal CLI or Web UI without the codec server, ` +
          `a client of another config) or before encryption was turned on; set requireEncryption: false to read such histories`,
      );
    }
    const idBytes = payload.metadata?.[KEY_ID_METADATA];
    if (!idBytes) throw new PayloadDecryptionError(`encrypted payload has no ${KEY_ID_METADATA} metadata; cannot tell which key to decrypt it with`);
    const keyId = Buffer.from(idBytes).toString();
    const key = this.keys.get(keyId);
    if (!key) {
      throw new PayloadDecryptionError(
        `payload was encrypted with key '${keyId}', which is not among this environment's keys (${this.keyIds.join(', ')}); ` +
          `add it to temporal.encryption.keys to read this history`,
      );
    }
    const sealed = Buffer.from(payload.data ?? []);
    if (sealed.length < IV_BYTES + TAG_BYTES) throw new PayloadDecryptionError(`payload encrypted with key '${keyId}' is truncated (${sealed.length} bytes)`);
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, IV_BYTES));
    decipher.setAAD(aad(keyId));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
    } catch {
      throw new PayloadDecryptionError(`payload encrypted with key '${keyId}' failed authentication: it was altered, or key '${keyId}' here is not the key it was encrypted with`);
    }
    const decoded = PayloadMessage.toObject(PayloadMessage.decode(plain), { bytes: Buffer as unknown as ArrayConstructor }) as {
      metadata?: Record<string, Buffer>;
      data?: Buffer;
    };
    return { metadata: decoded.metadata ?? {}, data: decoded.data ?? Buffer.alloc(0) };
  }
}
