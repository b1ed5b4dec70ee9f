import type { DataConverter } from '@temporalio/common';
import { ConfigError, LoadedConfig } from '../config/load';
import type { TemporalConfig } from '../config/schema';
import { readSecret } from '../config/secrets';
import { EncryptionCodec } from './encryption';
import { decodeKeyText } from './keys';

export { EncryptionCodec, isSdkPatchMarkerData, PayloadDecryptionError, PlaintextPayloadError, ENCRYPTED_ENCODING, KEY_ID_METADATA } from './encryption';

/**
 * The module whose `failureConverter` encodes failure messages and stack traces, for the worker's
 * workflow bundle and every data converter of an encrypted environment.
 */
export const FAILURE_CONVERTER_PATH = require.resolve('./failureConverter');

/**
 * The environment's encryption codec, keys read from their secret references now; undefined when
 * the environment does not encrypt. A key that is not 32 bytes is a config error naming the field.
 */
export function encryptionCodecFor(loaded: LoadedConfig, environment: string, temporal: TemporalConfig, options: { passSdkPatchMarkers?: boolean } = {}): EncryptionCodec | undefined {
  const enc = temporal.encryption;
  if (!enc) return undefined;
  const keys = new Map<string, Buffer>();
  const problems = enc.keys.flatMap((k, i) => {
    const path = `environments.${environment}.temporal.encryption.keys.${i}.key`;
    let text: string;
    try {
      text = readSecret(k.key, loaded.baseDir);
    } catch (err) {
      return [{ path, message: (err as Error).message }];
    }
    const decoded = decodeKeyText(text);
    if ('problem' in decoded) return [{ path, message: `key '${k.id}' (${k.key}): ${decoded.problem}` }];
    keys.set(k.id, decoded.key);
    return [];
  });
  if (problems.length > 0) throw new ConfigError(loaded.file, problems);
  return new EncryptionCodec(keys, enc.activeKey, { requireEncryption: enc.requireEncryption, passSdkPatchMarkers: options.passSdkPatchMarkers });
}

/**
 * What the worker and every client of the environment pass as `dataConverter`; the SDK's default when
 * unencrypted. Encrypted environments also encode failures' messages and stack traces, so the codec
 * encrypts them with the rest (a worker must bundle its workflows with the same failure converter).
 */
export function dataConverterFor(loaded: LoadedConfig, environment: string, temporal: TemporalConfig): DataConverter | undefined {
  const codec = encryptionCodecFor(loaded, environment, temporal);
  return codec ? { payloadCodecs: [codec], failureConverterPath: FAILURE_CONVERTER_PATH } : undefined;
}
