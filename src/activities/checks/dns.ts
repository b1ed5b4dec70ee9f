/**
 * The readiness audit's DNS check: every configured service name resolves, asked of the configured
 * server (RFC 2136) or the system resolver (Route 53).
 */
import { Resolver } from 'node:dns/promises';
import type { CheckId } from '../../checklist/catalog';
import { CheckDeps, fail, pass, unknown, VerdictFn } from './support';

export function createDnsChecks(deps: CheckDeps): Record<Extract<CheckId, 'checkDnsRecords'>, VerdictFn> {
  const { env } = deps;
  return {
    async checkDnsRecords(timeoutMs) {
      const dns = env.dns;
      if (!dns || Object.keys(dns.records).length === 0) return unknown(`no dns.records for environment ${deps.environment}`);
      const resolver = new Resolver({ timeout: Math.min(timeoutMs, 2_000), tries: 1 });
      if (dns.provider === 'rfc2136' && dns.server) resolver.setServers([dns.server]);
      const zone = dns.zone.replace(/\.$/, '');
      const answers: Record<string, unknown> = {};
      const problems: string[] = [];
      for (const [key, r] of Object.entries(dns.records)) {
        const fqdn = r.name.includes('.') ? r.name.replace(/\.$/, '') : `${r.name}.${zone}`;
        try {
          answers[fqdn] = await resolver.resolve4(fqdn);
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code !== 'ENOTFOUND' && code !== 'ENODATA') throw err;
          answers[fqdn] = null;
          problems.push(`${key} (${fqdn}) has no A record`);
        }
      }
      const evidence = { server: dns.provider === 'rfc2136' ? dns.server : 'system resolver', answers };
      return problems.length === 0 ? pass(`every service name resolves (${Object.keys(answers).length})`, evidence) : fail(problems.join('; '), evidence);
    },
  };
}
