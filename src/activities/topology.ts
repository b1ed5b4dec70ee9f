/**
 * The DR drill's activities. Everything that depends on how the cluster is run goes through the
 * database's topology driver (src/topology/: local or patroni); what a client sees goes through the
 * service endpoint: a DNS name the drill switches, or an address that follows the leader by itself
 * (HAProxy with Patroni's health checks, a VIP), which the drill only watches.
 */
import { isRunReport } from '../reports/html';
import { DrillReport, renderDrillHtml } from '../reports/drill';
import type { ReportLinks } from '../reports/html';
import { Context, log } from '@temporalio/activity';
import type { Client } from 'pg';
import type { ClusterState, DrillMode, TopologyDriver } from '../topology';
import type { DnsProvider } from './dns';
import { checkServedEnvironment, classify, failure } from './errors';
import { withHeartbeat } from './heartbeat';
import { connectPg, PgServer } from './pg';
import type { ObjectStore } from './s3';
import { createWriteLoadActivities, WRITES_TABLE_DDL } from './writeLoad';

/** How clients reach the primary, and so how the drill switches and verifies it. */
export type ServiceEndpoint =
  | { kind: 'dns'; fqdn: string; ttl: number }
  /** An address that follows the leader by itself: HAProxy routed by Patroni's health checks, a VIP. */
  | { kind: 'proxy'; host: string; port: number }
  /** No service address is configured: the drill reaches the primary through the driver. */
  | { kind: 'driver' };

export interface DrillTarget {
  /** Credentials and database name; hosts and ports come from the members or the endpoint. */
  credentials: Omit<PgServer, 'host' | 'port'>;
  database: string;
  driver: TopologyDriver;
  members: { name: string; host: string; port: number }[];
  endpoint: ServiceEndpoint;
  healthChecks: { name: string; sql: string }[];
  electionTimeoutMs: number;
}

export interface DrillDeps {
  environment: string;
  targets: Record<string, DrillTarget>;
  dns?: DnsProvider;
  approvers: string[];
  rpoMs?: number;
  rtoMs?: number;
  reports?: { store: ObjectStore; prefix: string; links?: ReportLinks };
  /** Where the write load records acknowledged commits (one file per drill), outside any worker's memory. */
  ackLogDir: string;
}

const SCRATCH_TABLE = 'runbook_drill_markers';
const SCRATCH_TABLE_DDL = `CREATE TABLE IF NOT EXISTS ${SCRATCH_TABLE} (drill_id text PRIMARY KEY, kind text NOT NULL, written_at timestamptz NOT NULL DEFAULT clock_timestamp())`;

export function describeEndpoint(e: ServiceEndpoint): string {
  return e.kind === 'dns' ? `DNS name ${e.fqdn}` : e.kind === 'proxy' ? `${e.host}:${e.port} (follows the leader by itself)` : 'the primary as the topology driver finds it';
}

export function createDrillActivities(deps: DrillDeps) {
  const target = (database: string): DrillTarget => {
    const t = deps.targets[database];
    if (!t) throw failure('InvalidInput', `database '${database}' has no drill topology in environment ${deps.environment} (databases.${database}.topology); configured: ${Object.keys(deps.targets).join(', ') || 'none'}`);
    return t;
  };
  const member = (t: DrillTarget, name: string) => {
    const m = t.members.find((x) => x.name === name);
    if (!m) throw failure('InvalidInput', `node '${name}' is not in the topology (${t.members.map((x) => x.name).join(', ')})`);
    return m;
  };
  const dns = (): DnsProvider => {
    if (!deps.dns) throw failure('InvalidInput', `environment ${deps.environment} has no dns: section; the drill switches the service name through it`);
    return deps.dns;
  };
  const server = (t: DrillTarget, host: string, port: number): PgServer => ({ host, port, user: t.credentials.user, password: t.credentials.password });

  /** Where a client connecting to the service endpoint lands right now (address only; nothing is checked). */
  async function endpointAddress(t: DrillTarget): Promise<{ host: string; port: number; answers?: string[] }> {
    if (t.endpoint.kind === 'proxy') return { host: t.endpoint.host, port: t.endpoint.port };
    if (t.endpoint.kind === 'driver') return t.driver.primaryAddress();
    const answers = await dns().resolveA(t.endpoint.fqdn);
    if (answers.length !== 1) throw failure('ConnectionLost', `${t.endpoint.fqdn} answers ${JSON.stringify(answers)}, expected one address`);
    const m = t.members.find((x) => x.host === answers[0]);
    if (!m) throw failure('InvalidInput', `${t.endpoint.fqdn} points at ${answers[0]}, which is no node of the topology`);
    return { host: answers[0], port: m.port, answers };
  }

  async function throughEndpoint<T>(t: DrillTarget, appName: string, fn: (c: Client, reached: { member?: string; writable: boolean; address: string }) => Promise<T>): Promise<T> {
    const a = await endpointAddress(t);
    const c = await connectPg(server(t, a.host, a.port), t.database, appName);
    try {
      // The node behind a proxy says who it is: the address and port it accepted the connection on.
      const r = await c.query<{ addr: string | null; port: number | null; rec: boolean }>('SELECT host(inet_server_addr()) AS addr, inet_server_port() AS port, pg_is_in_recovery() AS rec');
      const row = r.rows[0];
      const m = t.members.find((x) => x.host === row.addr && x.port === row.port) ?? t.members.find((x) => x.host === row.addr);
      return await fn(c, { member: m?.name, writable: !row.rec, address: `${a.host}:${a.port}` });
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  return {
    ...createWriteLoadActivities({ ackLogDir: deps.ackLogDir, target: (database) => target(database), endpointAddress }),

    /** What the drill acts on, for the plan shown before approval. */
    async describeDrillTarget(input: { database: string; environment?: string }) {
      checkServedEnvironment(input.environment, deps.environment);
      const t = target(input.database);
      return {
        driver: t.driver.kind,
        nodes: t.members,
        serviceEndpoint: describeEndpoint(t.endpoint),
        endpointKind: t.endpoint.kind,
        serviceName: t.endpoint.kind === 'dns' ? t.endpoint.fqdn : undefined,
        dnsProvider: deps.dns?.kind,
        approvers: deps.approvers,
        rpoMs: deps.rpoMs,
        rtoMs: deps.rtoMs,
        electionTimeoutMs: t.electionTimeoutMs,
        reports: Boolean(deps.reports),
      };
    },

    /** The cluster as its driver sees it: members, roles, lag, timelines, the DCS, the failover settings, and what is wrong. */
    async describeCluster(input: { database: string }): Promise<ClusterState> {
      return withHeartbeat(() => target(input.database).driver.describe());
    },

    /** Which member the service endpoint reaches now, and whether it accepts writes there. */
    async locateServiceEndpoint(input: { database: string }): Promise<{ endpoint: string; reaches?: string; writable?: boolean; address?: string; answers?: string[]; error?: string }> {
      const t = target(input.database);
      const endpoint = describeEndpoint(t.endpoint);
      try {
        const answers = t.endpoint.kind === 'dns' ? await dns().resolveA(t.endpoint.fqdn) : undefined;
        return await throughEndpoint(t, 'runbook-drill', async (_c, r) => ({ endpoint, reaches: r.member, writable: r.writable, address: r.address, answers }));
      } catch (err) {
        return { endpoint, error: (err as Error).message };
      }
    },

    /** The fault and promotion the drill will carry out, in words and commands, for the approver. */
    async planDrillFault(input: { database: string; member: string; candidate: string; mode: DrillMode }): Promise<string[]> {
      const t = target(input.database);
      return t.driver.faultPlan(input);
    },

    /** A row naming the drill, written on the primary; idempotent by drill id. Returns its LSN and time. */
    async writeDrillMarker(input: { database: string; node: string; drillId: string }): Promise<{ lsn: string; writtenAt: string }> {
      const t = target(input.database);
      const m = member(t, input.node);
      try {
        return await withHeartbeat(async () => {
          const c = await connectPg(server(t, m.host, m.port), t.database, 'runbook-drill');
          try {
            await c.query(SCRATCH_TABLE_DDL);
            await c.query(WRITES_TABLE_DDL);
            await c.query(`INSERT INTO ${SCRATCH_TABLE} (drill_id, kind) VALUES ($1, 'marker') ON CONFLICT (drill_id) DO NOTHING`, [input.drillId]);
            const r = await c.query<{ lsn: string; at: Date }>(`SELECT pg_current_wal_lsn()::text AS lsn, written_at AS at FROM ${SCRATCH_TABLE} WHERE drill_id = $1`, [input.drillId]);
            return { lsn: r.rows[0].lsn, writtenAt: r.rows[0].at.toISOString() };
          } finally {
            await c.end().catch(() => undefined);
          }
        });
      } catch (err) {
        throw classify(err, `writing the drill marker on ${input.node}`);
      }
    },

    /**
     * The fault: failover kills the primary hard; switchover hands over in order. A retried attempt
     * finds the fault done and does nothing (acted: false); the drill's RTO clock is its own, set
     * once in the workflow before the first attempt, so a retry cannot move it.
     */
    async injectFault(input: { database: string; member: string; candidate: string; mode: DrillMode }) {
      const t = target(input.database);
      const ctx = Context.current();
      const startedAt = new Date().toISOString();
      const r = await withHeartbeat(() => t.driver.injectFault({ ...input, progress: (d) => ctx.heartbeat(d) }));
      log.info('fault injected', { member: input.member, mode: input.mode, acted: r.acted, attempt: ctx.info.attempt });
      return { ...r, startedAt, endedAt: new Date().toISOString(), attempt: ctx.info.attempt };
    },

    /** Waits for a new primary that commits a write: Patroni elects one; the local driver fences and promotes. */
    async awaitNewPrimary(input: { database: string; formerPrimary: string; candidate: string; mode: DrillMode }) {
      const t = target(input.database);
      const ctx = Context.current();
      return withHeartbeat(() => t.driver.awaitNewPrimary({ ...input, timeoutMs: t.electionTimeoutMs, progress: (d) => ctx.heartbeat(d) }));
    },

    /**
     * Makes the service endpoint reach the new primary: a DNS record is switched (and waited for at
     * the authoritative source); a proxy is watched until a connection through it lands on the new
     * primary and may write. Idempotent.
     */
    async switchServiceEndpoint(input: { database: string; primary: string }): Promise<{ kind: ServiceEndpoint['kind']; changed: boolean; previous: string[]; reachedAt: string }> {
      const t = target(input.database);
      const p = member(t, input.primary);
      const ctx = Context.current();
      if (t.endpoint.kind === 'dns') {
        const { fqdn, ttl } = t.endpoint;
        const provider = dns();
        const previous = await provider.resolveA(fqdn);
        // Check before acting: after a crash and retry, a record already switched is not updated again.
        const changed = !(previous.length === 1 && previous[0] === p.host);
        if (changed) await withHeartbeat(() => provider.upsertA(fqdn, p.host, ttl));
        for (let i = 0; i < 100; i++) {
          ctx.heartbeat({ waitingFor: p.host });
          const now = await provider.resolveA(fqdn);
          if (now.length === 1 && now[0] === p.host) return { kind: 'dns', changed, previous, reachedAt: new Date().toISOString() };
          await new Promise((r) => setTimeout(r, 200));
        }
        throw failure('ServerUnreachable', `${fqdn} still does not answer ${p.host} 20 s after the update`);
      }
      if (t.endpoint.kind === 'driver') return { kind: 'driver', changed: false, previous: [], reachedAt: new Date().toISOString() };
      const deadline = Date.now() + 60_000;
      let last = '';
      while (Date.now() < deadline) {
        try {
          const r = await throughEndpoint(t, 'runbook-drill', async (_c, reached) => reached);
          if (r.member === p.name && r.writable) return { kind: 'proxy', changed: false, previous: [], reachedAt: new Date().toISOString() };
          last = `reaches ${r.member ?? 'an unknown node'}${r.writable ? '' : ' (read-only)'}`;
        } catch (err) {
          last = (err as Error).message;
        }
        ctx.heartbeat({ waitingFor: p.name, endpoint: describeEndpoint(t.endpoint), last });
        await new Promise((r) => setTimeout(r, 100));
      }
      throw failure('ConnectionLost', `${describeEndpoint(t.endpoint)} did not reach the new primary ${p.name} within 60 s (last: ${last})`);
    },

    /**
     * What a client sees: connect through the service endpoint, look for the marker, write a row, run
     * the health checks. The write's commit time is the end of the outage.
     */
    async verifyThroughServiceEndpoint(input: { database: string; drillId: string; markerDrillId: string }) {
      const t = target(input.database);
      try {
        return await withHeartbeat(() =>
          throughEndpoint(t, 'runbook-drill', async (c, reached) => {
            // The table itself may be among what a failover lost (created just before the fault).
            await c.query(SCRATCH_TABLE_DDL);
            const marker = await c.query(`SELECT 1 FROM ${SCRATCH_TABLE} WHERE drill_id = $1`, [input.markerDrillId]);
            await c.query(`INSERT INTO ${SCRATCH_TABLE} (drill_id, kind) VALUES ($1, 'verify') ON CONFLICT (drill_id) DO NOTHING`, [input.drillId]);
            const writeAt = new Date().toISOString();
            const checks: { name: string; passed: boolean; detail: string }[] = [];
            for (const h of t.healthChecks) {
              try {
                const r = await c.query({ text: h.sql, rowMode: 'array' });
                checks.push({ name: h.name, passed: r.rows[0]?.[0] === true, detail: `returned ${JSON.stringify(r.rows[0]?.[0] ?? null)}` });
              } catch (err) {
                checks.push({ name: h.name, passed: false, detail: (err as Error).message });
              }
            }
            return { address: reached.address, node: reached.member ?? 'unknown', markerPresent: marker.rowCount === 1, writeAt, checks };
          }),
        );
      } catch (err) {
        throw classify(err, `verifying through ${describeEndpoint(t.endpoint)}`);
      }
    },

    /** Failback: the former primary becomes a streaming replica of the new one; its data is kept aside, never deleted, when a rewind is impossible. */
    async rejoinFormerPrimary(input: { database: string; member: string; primary: string; drillId: string }) {
      const t = target(input.database);
      const ctx = Context.current();
      return withHeartbeat(() => t.driver.rejoin({ member: input.member, primary: input.primary, keepAsideSuffix: input.drillId, progress: (d) => ctx.heartbeat(d) }));
    },

    /** A planned switchover between two members (switching back after a drill). Idempotent. */
    async switchPrimary(input: { database: string; from: string; to: string }) {
      const t = target(input.database);
      const ctx = Context.current();
      return withHeartbeat(() => t.driver.switchover({ from: input.from, to: input.to, progress: (d) => ctx.heartbeat(d) }));
    },

    /** The LSN where the given primary's timeline began: what the old primary wrote after it is lost. */
    async timelineSwitchPoint(input: { database: string; primary: string }): Promise<{ lsn?: string }> {
      const t = target(input.database);
      return { lsn: await withHeartbeat(() => t.driver.switchPoint(input.primary)) };
    },

    /** Compensation: some member is a writable primary afterwards, and the service endpoint reaches it. */
    async restoreWritablePrimary(input: { database: string; formerPrimary: string }): Promise<{ primary: string; host: string; action: string }> {
      const t = target(input.database);
      const ctx = Context.current();
      const p = await withHeartbeat(() => t.driver.restoreWritablePrimary({ formerPrimary: input.formerPrimary, progress: (d) => ctx.heartbeat(d) }));
      return { primary: p.name, host: p.host, action: p.action };
    },

    async writeDrillReport(input: { drillId: string; json: unknown; markdown: string; html: string }): Promise<{ keys: string[] }> {
      if (!deps.reports) return { keys: [] };
      if (!/^[a-z0-9-]{4,80}$/.test(input.drillId)) throw failure('InvalidInput', `drill id '${input.drillId}' is not a plain id`);
      const base = `${deps.reports.prefix}drills/${input.drillId}/report`;
      await deps.reports.store.putJson(`${base}.json`, input.json);
      await deps.reports.store.putText(`${base}.md`, input.markdown, 'text/markdown');
      // The page is drawn here, where the Temporal UI's address is known; the workflow's own is kept for a report without steps.
      const html = isRunReport(input.json) ? renderDrillHtml(input.json as DrillReport, deps.reports.links) : input.html;
      await deps.reports.store.putText(`${base}.html`, html, 'text/html');
      return { keys: [`${base}.json`, `${base}.md`, `${base}.html`] };
    },
  };
}

export type DrillActivities = ReturnType<typeof createDrillActivities>;
