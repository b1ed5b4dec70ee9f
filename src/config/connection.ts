import type { TLSConfig } from '@temporalio/client';
import type { LoadedConfig } from './load';
import { readSecret, secretFilePath, SecretRef } from './secrets';
import type { TemporalConfig } from './schema';

export interface TemporalConnectionSettings {
  address: string;
  namespace: string;
  tls?: TLSConfig;
  apiKey?: string;
}

/**
 * Connection settings for one environment, with TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE overriding
 * the file. Certificate files are read on every call, so a caller that reconnects after a rotation
 * gets the new certificates.
 */
export function temporalConnectionSettings(loaded: LoadedConfig, temporal: TemporalConfig): TemporalConnectionSettings {
  const read = (ref: SecretRef | undefined) => (ref ? Buffer.from(readSecret(ref, loaded.baseDir)) : undefined);
  const tlsConfig = temporal.tls;
  let tls: TLSConfig | undefined;
  if (tlsConfig) {
    const crt = read(tlsConfig.clientCert);
    const key = read(tlsConfig.clientKey);
    tls = {
      serverNameOverride: tlsConfig.serverName,
      serverRootCACertificate: read(tlsConfig.serverCa),
      clientCertPair: crt && key ? { crt, key } : undefined,
    };
  }
  const apiKey = temporal.apiKey ? readSecret(temporal.apiKey, loaded.baseDir) : undefined;
  // An API key is sent as a bearer token: Temporal Cloud and most servers require TLS with it.
  if (apiKey && !tls) tls = {};
  return {
    address: process.env.TEMPORAL_ADDRESS || temporal.address,
    namespace: process.env.TEMPORAL_NAMESPACE || temporal.namespace,
    tls,
    apiKey,
  };
}

/** Files whose change means the connection should be re-established (certificates, API key file). */
export function credentialFiles(loaded: LoadedConfig, temporal: TemporalConfig): string[] {
  const refs = [temporal.tls?.serverCa, temporal.tls?.clientCert, temporal.tls?.clientKey, temporal.apiKey];
  return refs.filter((r): r is SecretRef => r !== undefined && r.startsWith('file:')).map((r) => secretFilePath(r, loaded.baseDir));
}
