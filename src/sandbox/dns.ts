import { randomBytes } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findBinary, freePort, spawnService, stopService, waitUntil } from '../system/process';

export interface DnsServerInfo {
  pid: number;
  host: string;
  port: number;
  zone: string;
  tsigKeyName: string;
  tsigAlgorithm: 'hmac-sha256';
  /** base64 TSIG secret; written to a file and referenced from config like any other secret. */
  tsigSecret: string;
  logFile: string;
}

export interface DnsServerOptions {
  dir: string;
  host?: string;
  port?: number;
  zone?: string;
  /** Initial A records, by name relative to the zone (e.g. { db: '127.0.0.2' }). */
  records?: Record<string, string>;
}

export function findNamed(): string {
  return findBinary('named', {
    envVar: 'NAMED_PATH',
    dirs: ['/usr/sbin'],
    hint: 'Install BIND 9 (scripts/bootstrap does: apt-get install bind9 bind9-utils bind9-dnsutils), or set NAMED_PATH.',
  });
}

function zoneFile(zone: string, records: Record<string, string>): string {
  const lines = [
    '$TTL 30',
    `@ IN SOA ns.${zone}. hostmaster.${zone}. ( 1 60 30 3600 30 )`,
    `@ IN NS ns.${zone}.`,
    'ns IN A 127.0.0.1',
    ...Object.entries(records).map(([name, address]) => `${name} IN A ${address}`),
  ];
  return `${lines.join('\n')}\n`;
}

/** BIND 9 serving one zone on loopback; dynamic updates (RFC 2136) are accepted only when signed with the TSIG key. */
export async function startDnsServer(opts: DnsServerOptions): Promise<DnsServerInfo> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? (await freePort(host));
  const zone = (opts.zone ?? 'sandbox.test').replace(/\.$/, '');
  const dir = join(opts.dir, 'named');
  mkdirSync(dir, { recursive: true });
  const tsigKeyName = 'runbook-update';
  const tsigSecret = randomBytes(32).toString('base64');
  const conf = `
options {
  directory "${dir}";
  pid-file "${join(dir, 'named.pid')}";
  session-keyfile "${join(dir, 'session.key')}";
  listen-on port ${port} { ${host}; };
  listen-on-v6 { none; };
  recursion no;
  dnssec-validation no;
  notify no;
};
controls { };
key "${tsigKeyName}" {
  algorithm hmac-sha256;
  secret "${tsigSecret}";
};
zone "${zone}" {
  type primary;
  file "${join(dir, `${zone}.zone`)}";
  allow-update { key "${tsigKeyName}"; };
};
`;
  writeFileSync(join(dir, 'named.conf'), conf);
  writeFileSync(join(dir, `${zone}.zone`), zoneFile(zone, opts.records ?? {}));
  // The zone is written afresh: a journal of updates to the previous one would not apply to it (a restart).
  rmSync(join(dir, `${zone}.zone.jnl`), { force: true });
  const logFile = join(opts.dir, 'named.log');
  // -g: foreground, log to stderr; -u bind is skipped so the zone journal is writable in our directory.
  const service = spawnService('dns (named)', findNamed(), ['-g', '-n', '1', '-c', join(dir, 'named.conf')], logFile);
  const resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([`${host}:${port}`]);
  try {
    await waitUntil(
      'DNS server (BIND)',
      async () => {
        await resolver.resolveSoa(zone);
        return true;
      },
      { timeoutMs: 20_000, pid: service.pid, logFile, intervalMs: 200 },
    );
  } catch (err) {
    await stopService(service.pid);
    throw err;
  }
  return { pid: service.pid, host, port, zone, tsigKeyName, tsigAlgorithm: 'hmac-sha256', tsigSecret, logFile };
}

export function stopDnsServer(pid: number): Promise<void> {
  return stopService(pid, 'SIGTERM', 10_000);
}
