import { ChangeResourceRecordSetsCommand, GetChangeCommand, ListHostedZonesByNameCommand, ListResourceRecordSetsCommand, Route53Client } from '@aws-sdk/client-route-53';
import { execFile } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { childEnv, findBinary } from '../system/process';
import { failure } from './errors';

const run = promisify(execFile);

/** A DNS backend the drill can switch a record on, and ask (authoritatively) what a record says. */
export interface DnsProvider {
  readonly kind: 'rfc2136' | 'route53';
  /** Addresses of an A record as the authoritative source answers now. */
  resolveA(fqdn: string): Promise<string[]>;
  /** Sets an A record to exactly one address; resolves once the change is accepted. */
  upsertA(fqdn: string, address: string, ttl: number): Promise<void>;
}

const FQDN = /^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/** Names and addresses go into nsupdate scripts and API calls: hold them to their grammars first. */
export function checkRecord(fqdn: string, address?: string): void {
  if (fqdn.length > 253 || !FQDN.test(fqdn)) throw failure('InvalidInput', `DNS name '${fqdn.slice(0, 300)}' is not a valid host name (RFC 1123 labels, at most 253 characters)`);
  if (address !== undefined && !IPV4.test(address)) throw failure('InvalidInput', `'${address}' is not an IPv4 address`);
}

/** RFC 2136 dynamic updates signed with TSIG (BIND, PowerDNS, Knot, Windows DNS), via nsupdate. */
export class Rfc2136Provider implements DnsProvider {
  readonly kind = 'rfc2136' as const;
  constructor(
    private readonly server: { host: string; port: number },
    private readonly zone: string,
    private readonly tsig: { name: string; algorithm: string; secret: () => string } | undefined,
  ) {}

  async resolveA(fqdn: string): Promise<string[]> {
    checkRecord(fqdn);
    const resolver = new Resolver({ timeout: 2_000, tries: 2 });
    resolver.setServers([`${this.server.host}:${this.server.port}`]);
    try {
      return (await resolver.resolve4(fqdn)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOTFOUND' || (err as NodeJS.ErrnoException).code === 'ENODATA') return [];
      throw failure('ServerUnreachable', `DNS server ${this.server.host}:${this.server.port} did not answer for ${fqdn}: ${(err as Error).message}`);
    }
  }

  async upsertA(fqdn: string, address: string, ttl: number): Promise<void> {
    checkRecord(fqdn, address);
    // The secret is read from a file or variable: only base64 may reach the key file's syntax.
    const secret = this.tsig?.secret().trim();
    if (secret !== undefined && !/^[A-Za-z0-9+/]+={0,2}$/.test(secret)) throw failure('InvalidInput', 'dns.tsig.secret: expected a base64 TSIG secret (as tsig-keygen writes)');
    // The key goes in a private file, never on a command line where ps would show it.
    const dir = mkdtempSync(join(tmpdir(), 'runbook-nsupdate-'));
    try {
      const args: string[] = [];
      if (this.tsig) {
        const keyFile = join(dir, 'tsig.key');
        writeFileSync(keyFile, `key "${this.tsig.name}" {\n  algorithm ${this.tsig.algorithm};\n  secret "${secret}";\n};\n`, { mode: 0o600 });
        args.push('-k', keyFile);
      }
      const script = `server ${this.server.host} ${this.server.port}\nzone ${this.zone}\nupdate delete ${fqdn}. A\nupdate add ${fqdn}. ${ttl} A ${address}\nsend\n`;
      const child = run(findBinary('nsupdate', { hint: 'Install bind9-dnsutils (scripts/bootstrap does).' }), [...args, '-t', '10'], { timeout: 30_000, env: childEnv() });
      child.child.stdin?.end(script);
      await child;
    } catch (err) {
      const text = `${(err as { stderr?: string }).stderr ?? ''} ${(err as Error).message}`;
      if (/REFUSED|NOTAUTH|tsig verify failure|BADKEY|BADSIG/i.test(text)) {
        throw failure('PermissionDenied', `DNS server ${this.server.host}:${this.server.port} refused the update of ${fqdn}: ${text.trim().split('\n')[0]} (check dns.tsig)`);
      }
      throw failure('ServerUnreachable', `updating ${fqdn} on ${this.server.host}:${this.server.port} failed: ${text.trim().split('\n')[0]}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** Amazon Route 53: UPSERT through the API, then wait until the change is INSYNC. */
export class Route53Provider implements DnsProvider {
  readonly kind = 'route53' as const;
  private zoneId?: string;
  constructor(
    private readonly client: Route53Client,
    private readonly zone: string,
    hostedZoneId?: string,
  ) {
    this.zoneId = hostedZoneId;
  }

  private async hostedZone(): Promise<string> {
    if (this.zoneId) return this.zoneId;
    const res = await this.client.send(new ListHostedZonesByNameCommand({ DNSName: `${this.zone}.` }));
    const zone = res.HostedZones?.find((z) => z.Name === `${this.zone}.`);
    if (!zone?.Id) throw failure('InvalidInput', `Route 53 has no hosted zone ${this.zone} (set dns.route53.hostedZoneId or create the zone)`);
    this.zoneId = zone.Id.replace(/^\/hostedzone\//, '');
    return this.zoneId;
  }

  async resolveA(fqdn: string): Promise<string[]> {
    checkRecord(fqdn);
    const res = await this.client.send(new ListResourceRecordSetsCommand({ HostedZoneId: await this.hostedZone(), StartRecordName: `${fqdn}.`, StartRecordType: 'A', MaxItems: 1 }));
    const set = res.ResourceRecordSets?.find((r) => r.Name === `${fqdn}.` && r.Type === 'A');
    return (set?.ResourceRecords ?? []).map((r) => r.Value ?? '').filter(Boolean).sort();
  }

  async upsertA(fqdn: string, address: string, ttl: number): Promise<void> {
    checkRecord(fqdn, address);
    const res = await this.client.send(
      new ChangeResourceRecordSetsCommand({
        HostedZoneId: await this.hostedZone(),
        ChangeBatch: { Comment: 'runbook DNS switch', Changes: [{ Action: 'UPSERT', ResourceRecordSet: { Name: `${fqdn}.`, Type: 'A', TTL: ttl, ResourceRecords: [{ Value: address }] } }] },
      }),
    );
    const changeId = res.ChangeInfo?.Id;
    for (let i = 0; changeId && i < 60; i++) {
      const status = await this.client.send(new GetChangeCommand({ Id: changeId }));
      if (status.ChangeInfo?.Status === 'INSYNC') return;
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }
}
