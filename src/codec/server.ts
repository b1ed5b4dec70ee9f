import type { Payload, PayloadCodec } from '@temporalio/common';
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AppLogger } from '../observability/logger';
import { JwtRejected, JwtVerifier, looksLikeJwt } from './jwt';

/**
 * Temporal's codec-server protocol: POST /encode and /decode (also under /{namespace}/), a JSON body
 * `{ "payloads": [...] }` in proto3 JSON form, so each payload's `data` and every metadata value is
 * base64; the answer has the same shape. The Web UI calls it from the browser, hence CORS; the
 * Temporal CLI calls it with `--codec-endpoint` and `--codec-auth`. GET /health answers probes without
 * credentials and says nothing but that the process serves.
 */
export interface CodecServerOptions {
  codec: PayloadCodec;
  /** The one namespace whose keys this server holds; requests naming another are refused. */
  namespace: string;
  /** Bearer tokens allowed to use the server, each with a name for the audit log. */
  tokens: { name: string; token: string }[];
  /** Verifies the Web UI's forwarded access tokens (JWTs); without it only the static tokens are accepted. */
  jwt?: JwtVerifier;
  /** Web UI origins that may call it from a browser. */
  allowedOrigins: string[];
  host: string;
  port: number;
  logger: AppLogger;
}

export interface RunningCodecServer {
  url: string;
  close(): Promise<void>;
}

interface JsonPayload {
  metadata?: Record<string, string> | null;
  data?: string | null;
}

const MAX_BODY_BYTES = 16 * 1024 * 1024;
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function fromJson(p: unknown, i: number): Payload {
  if (!p || typeof p !== 'object' || Array.isArray(p)) throw new HttpError(400, `payloads[${i}]: expected an object with metadata and data`);
  const { metadata, data } = p as JsonPayload;
  const bytes = (value: unknown, where: string): Buffer => {
    if (typeof value !== 'string' || !BASE64.test(value)) throw new HttpError(400, `payloads[${i}].${where}: expected base64 text`);
    return Buffer.from(value, 'base64');
  };
  const out: Payload = { metadata: {} };
  if (metadata !== undefined && metadata !== null) {
    if (typeof metadata !== 'object' || Array.isArray(metadata)) throw new HttpError(400, `payloads[${i}].metadata: expected an object of base64 values`);
    for (const [k, v] of Object.entries(metadata)) out.metadata![k] = bytes(v, `metadata.${k}`);
  }
  if (data !== undefined && data !== null) out.data = bytes(data, 'data');
  return out;
}

function toJson(p: Payload): JsonPayload {
  return {
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    data: Buffer.from(p.data ?? []).toString('base64'),
  };
}

const digest = (text: string) => createHash('sha256').update(text).digest();

const CHALLENGE = 'Bearer realm="runbook codec server"';

/** RFC 6750: a token that does not verify is 401 invalid_token, and the header says why (printable ASCII only, quotes cannot break it). */
function invalidToken(reason: string): HttpError {
  return new HttpError(401, `invalid token: ${reason}`, { 'www-authenticate': `${CHALLENGE}, error="invalid_token", error_description="${reason.replace(/[^\x20-\x7e]/g, '?').replace(/["\\]/g, "'")}"` });
}

/**
 * Who presented the request: a static token's name (compared in constant time), or the user a verified
 * JWT names. 401 without a bearer token or with a JWT that does not verify (the reason is given); 403
 * for a token that is neither configured nor a JWT this server accepts; 503 when the JWKS cannot be read.
 */
async function authorise(req: IncomingMessage, tokens: { name: string; digest: Buffer }[], jwt: JwtVerifier | undefined): Promise<{ user: string; via: 'token' | 'jwt' }> {
  const header = req.headers.authorization;
  const challenge = { 'www-authenticate': CHALLENGE };
  if (!header) throw new HttpError(401, 'authorization required: send Authorization: Bearer <token>', challenge);
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) throw new HttpError(401, 'authorization must be a bearer token: Authorization: Bearer <token>', challenge);
  const presented = digest(match[1]);
  let who: string | undefined;
  for (const t of tokens) if (timingSafeEqual(presented, t.digest)) who = t.name;
  if (who) return { user: who, via: 'token' };
  if (jwt && looksLikeJwt(match[1])) {
    try {
      return { user: (await jwt.verify(match[1])).user, via: 'jwt' };
    } catch (err) {
      if (err instanceof JwtRejected && err.status === 503) throw new HttpError(503, err.message, { 'retry-after': '30' });
      if (err instanceof JwtRejected) throw invalidToken(err.message);
      throw err;
    }
  }
  throw new HttpError(403, jwt ? 'this token is not allowed to use the codec server: it is neither a configured token nor a JWT' : 'this token is not allowed to use the codec server');
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      // Past the limit the rest is read and dropped, so the refusal can still be answered.
      if (size > MAX_BODY_BYTES) reject(new HttpError(413, `request body larger than ${MAX_BODY_BYTES} bytes`, { connection: 'close' }));
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function startCodecServer(options: CodecServerOptions): Promise<RunningCodecServer> {
  const tokens = options.tokens.map((t) => ({ name: t.name, digest: digest(t.token) }));
  const log = options.logger.child({ component: 'codec-server' });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const origin = req.headers.origin;
    if (origin !== undefined) {
      if (!options.allowedOrigins.includes(origin)) throw new HttpError(403, `origin ${origin} is not allowed; add it to temporal.encryption.codecServer.allowedOrigins`);
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('access-control-allow-credentials', 'true');
      res.setHeader('vary', 'Origin');
    }
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/health' && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      return void res.end(req.method === 'HEAD' ? undefined : JSON.stringify({ status: 'serving' }));
    }
    const route = /^(?:\/([^/]+))?\/(encode|decode)\/?$/.exec(path);
    if (!route) throw new HttpError(404, `no such endpoint ${path}; POST /encode or /decode`);
    // A browser's preflight carries no credentials; it only learns what the real request may send.
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'access-control-allow-methods': 'POST, OPTIONS',
        'access-control-allow-headers': 'authorization, content-type, x-namespace',
        'access-control-max-age': '600',
      });
      return void res.end();
    }
    if (req.method !== 'POST') throw new HttpError(405, `${req.method} not allowed; use POST`, { allow: 'POST, OPTIONS' });
    const { user: who, via } = await authorise(req, tokens, options.jwt);
    const namespaceHeader = req.headers['x-namespace'];
    const namespace = route[1] ? decodeURIComponent(route[1]) : Array.isArray(namespaceHeader) ? namespaceHeader[0] : namespaceHeader;
    if (namespace !== undefined && namespace !== '' && namespace !== options.namespace) {
      throw new HttpError(403, `this codec server holds the keys of namespace ${options.namespace} only, not ${namespace}`);
    }
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req)).toString('utf8'));
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw new HttpError(400, 'body is not JSON; expected {"payloads": [...]}');
    }
    const raw = (body as { payloads?: unknown } | null)?.payloads;
    if (!Array.isArray(raw)) throw new HttpError(400, 'expected a JSON body {"payloads": [...]}');
    const payloads = raw.map(fromJson);
    const action = route[2] as 'encode' | 'decode';
    let result: Payload[];
    try {
      result = action === 'encode' ? await options.codec.encode(payloads) : await options.codec.decode(payloads);
    } catch (err) {
      throw new HttpError(400, `${action} failed: ${(err as Error).message}`);
    }
    // Who read what (how many payloads, in which namespace) is kept; the payloads and tokens never are.
    log.info({ action, user: who, via, namespace: namespace || options.namespace, payloads: payloads.length }, 'codec request');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ payloads: result.map(toJson) }));
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      const message = err instanceof HttpError ? err.message : 'internal error';
      if (status >= 500) log.error({ err: (err as Error).message, path: req.url }, 'codec request failed');
      else log.warn({ status, path: req.url, method: req.method, reason: message }, 'codec request refused');
      if (res.headersSent) return void res.destroy();
      res.writeHead(status, { 'content-type': 'application/json', ...(err instanceof HttpError ? err.headers : {}) });
      res.end(JSON.stringify({ error: message }));
    });
  });

  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`codec server cannot listen on ${options.host}:${options.port}: ${err.message}`)));
    server.listen(options.port, options.host, () => {
      const { port } = server.address() as AddressInfo;
      const url = `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`;
      resolve({
        url,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
