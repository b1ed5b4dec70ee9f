import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, Socket } from 'node:net';
import { join } from 'node:path';
import { createServer, Server, TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { findBinary } from '../system/process';

const run = promisify(execFile);

function openssl(): string {
  return findBinary('openssl', { hint: 'Install OpenSSL (apt-get install openssl).' });
}

export interface CertFiles {
  cert: string;
  key: string;
}

/** A throwaway certificate authority for the sandbox: EC P-256, valid for two days unless told. */
export async function createCa(dir: string, name = 'runbook-sandbox-ca', days = 2): Promise<CertFiles> {
  mkdirSync(dir, { recursive: true });
  const files = { cert: join(dir, 'ca.pem'), key: join(dir, 'ca.key') };
  await run(openssl(), [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', files.key, '-out', files.cert, '-days', String(days), '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return files;
}

/**
 * Issues a leaf certificate signed by the CA: a server certificate for the given DNS names and IP
 * addresses, a client certificate whose common name identifies the caller, or one for both roles
 * (a Temporal service is a server to its peers and their client at once). Valid two days unless told.
 */
export async function issueCert(
  dir: string,
  ca: CertFiles,
  name: string,
  opts: { usage: 'server' | 'client' | 'server-client'; dnsNames?: string[]; ips?: string[]; commonName?: string; organization?: string; days?: number },
): Promise<CertFiles> {
  mkdirSync(dir, { recursive: true });
  const files = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  const san = [...(opts.dnsNames ?? []).map((d) => `DNS:${d}`), ...(opts.ips ?? []).map((i) => `IP:${i}`)];
  writeFileSync(
    ext,
    [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature',
      `extendedKeyUsage=${{ server: 'serverAuth', client: 'clientAuth', 'server-client': 'serverAuth,clientAuth' }[opts.usage]}`,
      ...(san.length ? [`subjectAltName=${san.join(',')}`] : []),
    ].join('\n'),
  );
  await run(openssl(), ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', files.key, '-out', csr, '-subj', `${opts.organization ? `/O=${opts.organization}` : ''}/CN=${opts.commonName ?? name}`]);
  await run(openssl(), ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', files.cert, '-days', String(opts.days ?? 2), '-extfile', ext]);
  return files;
}

export interface TlsFrontConnection {
  clientName: string | undefined;
  openedAt: number;
  closedAt?: number;
}

/**
 * A TLS front for the dev server (which speaks plaintext only): terminates TLS 1.2+ with the server
 * certificate, requires a client certificate signed by the CA (mTLS), and relays bytes to the
 * upstream address. Records which client certificate each connection used.
 */
export class TlsFront {
  readonly connections: TlsFrontConnection[] = [];
  private server?: Server;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly opts: { ca: string; serverCert: CertFiles; upstream: { host: string; port: number }; host?: string },
  ) {}

  async listen(port = 0): Promise<{ host: string; port: number }> {
    const host = this.opts.host ?? '127.0.0.1';
    this.server = createServer(
      {
        cert: readFileSync(this.opts.serverCert.cert),
        key: readFileSync(this.opts.serverCert.key),
        ca: readFileSync(this.opts.ca),
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
        ALPNProtocols: ['h2'],
      },
      (tlsSocket: TLSSocket) => this.relay(tlsSocket),
    );
    await new Promise<void>((resolve) => this.server!.listen(port, host, () => resolve()));
    const address = this.server.address();
    return { host, port: typeof address === 'object' && address ? address.port : port };
  }

  private relay(tlsSocket: TLSSocket): void {
    const cn = tlsSocket.getPeerCertificate()?.subject?.CN;
    const record: TlsFrontConnection = { clientName: Array.isArray(cn) ? cn.join(',') : cn, openedAt: Date.now() };
    this.connections.push(record);
    const upstream = connect(this.opts.upstream.port, this.opts.upstream.host);
    this.sockets.add(tlsSocket).add(upstream);
    tlsSocket.pipe(upstream).pipe(tlsSocket);
    const close = () => {
      record.closedAt ??= Date.now();
      tlsSocket.destroy();
      upstream.destroy();
      this.sockets.delete(tlsSocket);
      this.sockets.delete(upstream);
    };
    tlsSocket.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
