/**
 * `runbook codec-server`: decodes (and encodes) one environment's encrypted payloads for the Temporal
 * Web UI and CLI.
 *
 * It is a process of its own rather than a path on the worker's HTTP server: that server answers
 * probes and Prometheus scrapes, is reachable by whatever scrapes it, and lives and scales with the
 * workers, while this one hands out plaintext to browsers and belongs next to the Web UI, behind its
 * own address, tokens and TLS terminator, running only while operators need it. Keeping them apart
 * means /metrics never sits beside a decryption endpoint.
 */
import type { Command } from 'commander';
import { encryptionCodecFor } from '../codec';
import { FileJwks, JwtVerifier, UrlJwks } from '../codec/jwt';
import { startCodecServer } from '../codec/server';
import { checkSecretRefs, ConfigError } from '../config/load';
import { readSecret, secretFilePath } from '../config/secrets';
import { createLogger } from '../observability/logger';
import { cliEnvironment, GlobalOptions, loadCliConfig, UsageError } from './common';

const MIN_TOKEN_CHARS = 16;

export function registerCodecServer(program: Command, globals: () => GlobalOptions): void {
  program
    .command('codec-server')
    .description("serve Temporal's codec-server protocol (POST /encode, /decode) for the environment's encrypted payloads, to holders of a configured bearer token or a verified JWT")
    .option('--port <port>', 'port to listen on', '8888')
    .option('--host <host>', 'address to listen on (put TLS in front for anything beyond this machine)', '127.0.0.1')
    .action(async (opts: { port: string; host: string }) => {
      const g = globals();
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port: expected a port number 0-65535, found "${opts.port}"`);
      const loaded = loadCliConfig(g);
      const { name, env } = cliEnvironment(loaded, g);
      const enc = env.temporal.encryption;
      if (!enc) throw new UsageError(`environment ${name} does not encrypt payloads: there is no temporal.encryption block to serve`);
      if (!enc.codecServer) throw new UsageError(`environment ${name}: temporal.encryption.codecServer is not configured, so nobody may use the codec server; add tokens (for the CLI) or jwt (for the Web UI)`);
      // Only what this process reads: the keys and its tokens, never the worker's database or cloud credentials.
      checkSecretRefs(loaded, [name], 'codec-server');
      // It decodes whole histories for the Web UI and the Temporal CLI, patch markers included.
      const codec = encryptionCodecFor(loaded, name, env.temporal, { passSdkPatchMarkers: true })!;
      const tokens = (enc.codecServer.tokens ?? []).map((t, i) => {
        const token = readSecret(t.token, loaded.baseDir);
        if (token.trim().length < MIN_TOKEN_CHARS || /\s/.test(token.trim())) {
          throw new ConfigError(loaded.file, [
            { path: `environments.${name}.temporal.encryption.codecServer.tokens.${i}.token`, message: `token '${t.name}' (${t.token}) must be at least ${MIN_TOKEN_CHARS} characters without spaces (make one with: openssl rand -hex 32)` },
          ]);
        }
        return { name: t.name, token: token.trim() };
      });
      const logger = createLogger(loaded.config.worker.logLevel);
      const jwtConfig = enc.codecServer.jwt;
      let jwt: JwtVerifier | undefined;
      let jwks: UrlJwks | FileJwks | undefined;
      if (jwtConfig) {
        jwks = jwtConfig.jwksUrl
          ? new UrlJwks(jwtConfig.jwksUrl, {
              cacheForMs: jwtConfig.cacheFor,
              refreshAtMostMs: jwtConfig.refreshAtMost,
              onStale: (err) => logger.warn({ jwksUrl: jwtConfig.jwksUrl, err: err.message }, 'cannot read the JWKS again; verifying with the keys already held'),
            })
          : new FileJwks(secretFilePath(jwtConfig.jwksFile as `file:${string}`, loaded.baseDir));
        jwt = new JwtVerifier({
          issuer: jwtConfig.issuer,
          audiences: Array.isArray(jwtConfig.audience) ? jwtConfig.audience : [jwtConfig.audience],
          algorithms: jwtConfig.algorithms,
          clockToleranceMs: jwtConfig.clockTolerance,
          userClaim: jwtConfig.userClaim,
          jwks,
        });
      }
      const namespace = process.env.TEMPORAL_NAMESPACE || env.temporal.namespace;
      const server = await startCodecServer({ codec, namespace, tokens, jwt, allowedOrigins: enc.codecServer.allowedOrigins, host: opts.host, port, logger });
      logger.info(
        {
          url: server.url,
          environment: name,
          namespace,
          keys: codec.keyIds,
          activeKey: codec.activeKeyId,
          requireEncryption: codec.requireEncryption,
          staticTokenNames: tokens.map((t) => t.name),
          webUiUsers: jwtConfig ? { issuer: jwtConfig.issuer, audience: jwtConfig.audience, jwks: jwks!.description, algorithms: jwtConfig.algorithms } : undefined,
          allowedOrigins: enc.codecServer.allowedOrigins,
        },
        'codec server listening',
      );
      // Read the keys once now, so a wrong JWKS location shows at start rather than at the first user's request.
      if (jwks) {
        jwks
          .keys(false)
          .then(({ keys }) => logger.info({ jwks: jwks.description, keys: keys.map((k) => k.kid ?? '(no kid)') }, 'JWKS read'))
          .catch((err: Error) => logger.error({ jwks: jwks.description, err: err.message }, 'cannot read the JWKS: Web UI tokens cannot be verified until it can be read'));
      }
      await new Promise<void>((resolve) => {
        process.once('SIGTERM', () => resolve());
        process.once('SIGINT', () => resolve());
      });
      await server.close();
      logger.info('codec server stopped');
      process.exit(0);
    });
}
