import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { findBinary, freePort, groupAlive, spawnService, stopService, tailFile, waitUntil } from '../system/process';
import { CertFiles, issueCert } from './tls';

export interface S3ServerInfo {
  pid: number;
  endpoint: string;
  region: string;
  /** moto accepts any credentials; these are written to files and referenced like real ones. */
  accessKeyId: string;
  secretAccessKey: string;
  logFile: string;
  /**
   * The same server behind a TLS endpoint (HAProxy terminating TLS with a certificate from the
   * sandbox CA), for clients that speak S3 only over HTTPS: pgBackRest before 2.58.
   */
  tls?: S3TlsEndpoint;
}

export interface S3TlsEndpoint {
  /** https://localhost:<port>: the name the certificate is issued for (pgBackRest checks DNS names, not IP addresses). */
  endpoint: string;
  host: string;
  port: number;
  caFile: string;
  pid: number;
  logFile: string;
}

export function findHaproxy(): string {
  return findBinary('haproxy', { dirs: ['/usr/sbin'], hint: 'Install HAProxy (scripts/bootstrap does: apt-get install haproxy).' });
}

function ipv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: '::1', port: 0 }, () => server.close(() => resolve(true)));
  });
}

/** True once a TLS handshake with the endpoint verifies against the CA. */
function tlsAnswers(port: number, ca: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: readFileSync(ca), timeout: 1_000 }, () => {
      socket.end();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
    socket.on('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/**
 * Puts a TLS endpoint in front of the S3 server: HAProxy in HTTP mode (keep-alive towards the client,
 * so a backup of a thousand files is not a thousand handshakes), with a server certificate for
 * localhost issued by the sandbox CA. Listens on 127.0.0.1 and, where the machine has it, ::1, since
 * localhost may resolve to either.
 */
export async function startS3TlsEndpoint(opts: { dir: string; ca: CertFiles; upstreamPort: number }): Promise<S3TlsEndpoint> {
  const cert = await issueCert(join(opts.dir, 'tls'), opts.ca, 's3-localhost', { usage: 'server', dnsNames: ['localhost'], ips: ['127.0.0.1', '::1'] });
  const combined = join(opts.dir, 'tls', 's3-localhost.combined.pem');
  writeFileSync(combined, `${readFileSync(cert.cert, 'utf8')}${readFileSync(cert.key, 'utf8')}`, { mode: 0o600 });
  const port = await freePort('127.0.0.1');
  const binds = [`  bind 127.0.0.1:${port} ssl crt ${combined}`];
  if (await ipv6Loopback()) binds.push(`  bind ::1:${port} ssl crt ${combined}`);
  const cfg = join(opts.dir, 's3-tls.haproxy.cfg');
  writeFileSync(
    cfg,
    [
      'global',
      '  maxconn 1024',
      'defaults',
      '  mode http',
      '  option http-keep-alive',
      '  timeout connect 5s',
      '  timeout client 10m',
      '  timeout server 10m',
      'frontend s3_tls',
      ...binds,
      '  default_backend moto',
      'backend moto',
      `  server moto 127.0.0.1:${opts.upstreamPort}`,
      '',
    ].join('\n'),
  );
  const logFile = join(opts.dir, 's3-tls.log');
  const service = spawnService('s3 TLS endpoint (haproxy)', findHaproxy(), ['-f', cfg, '-db'], logFile);
  try {
    await waitUntil('S3 TLS endpoint (haproxy)', () => tlsAnswers(port, opts.ca.cert), { timeoutMs: 15_000, pid: service.pid, logFile, intervalMs: 100 });
  } catch (err) {
    await stopService(service.pid);
    throw err;
  }
  return { endpoint: `https://localhost:${port}`, host: 'localhost', port, caFile: opts.ca.cert, pid: service.pid, logFile };
}

export function findMotoServer(): string {
  return findBinary('moto_server', {
    envVar: 'MOTO_SERVER_PATH',
    pythonScripts: true,
    hint: "Run scripts/bootstrap (it installs the pinned 'moto[server]' package), or set MOTO_SERVER_PATH.",
  });
}

function httpAnswers(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'GET', timeout: 1_000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

export async function startS3Server(opts: { dir: string; host?: string; port?: number; buckets?: string[]; tlsCa?: CertFiles }): Promise<S3ServerInfo> {
  const host = opts.host ?? '127.0.0.1';
  const logFile = join(opts.dir, 's3.log');
  let port: number;
  let service: { pid: number };
  let endpoint: string;
  for (let attempt = 1; ; attempt++) {
    port = opts.port ?? (await freePort(host));
    service = spawnService('s3 (moto)', findMotoServer(), ['-H', host, '-p', String(port)], logFile);
    endpoint = `http://${host}:${port}`;
    try {
      await waitUntil('S3 server (moto)', () => httpAnswers(`${endpoint}/moto-api/`), { timeoutMs: 30_000, pid: service.pid, logFile, intervalMs: 200 });
      break;
    } catch (err) {
      await stopService(service.pid);
      // A free port found by binding port 0 can be taken by another process before moto binds it
      // (stacks start side by side): a port we chose ourselves is chosen again, twice at most.
      if (opts.port === undefined && attempt < 3 && /Address already in use|is in use by another program/.test(tailFile(logFile))) continue;
      throw err;
    }
  }
  const info: S3ServerInfo = { pid: service.pid, endpoint, region: 'us-east-1', accessKeyId: 'sandbox', secretAccessKey: 'sandbox-secret', logFile };
  if (opts.tlsCa) {
    try {
      info.tls = await startS3TlsEndpoint({ dir: opts.dir, ca: opts.tlsCa, upstreamPort: port });
    } catch (err) {
      await stopService(service.pid);
      throw err;
    }
  }
  if (opts.buckets?.length) {
    const s3 = new S3Client({ endpoint, region: info.region, forcePathStyle: true, credentials: { accessKeyId: info.accessKeyId, secretAccessKey: info.secretAccessKey } });
    try {
      for (const Bucket of opts.buckets) await s3.send(new CreateBucketCommand({ Bucket }));
    } finally {
      s3.destroy();
    }
  }
  return info;
}

export async function stopS3Server(pid: number, tls?: { pid: number }): Promise<void> {
  await Promise.all([stopService(pid, 'SIGTERM', 10_000), tls && groupAlive(tls.pid) ? stopService(tls.pid, 'SIGTERM', 5_000) : undefined]);
}
