import { Context, log } from '@temporalio/activity';
import type { Client } from 'pg';
import { keepDataDirAside, nodeFiles, nodeRunning, rebuildNode, rewindNode, startNode, stopNode } from '../system/postgres';
import type { DnsProvider } from './dns';
import { checkServedEnvironment, classify, failure } from './errors';
import { withHeartbeat } from './heartbeat';
import { connectPg, PgServer } from './pg';
import type { ObjectStore } from './s3';

export interface TopologyNode {
  name: string;
  host: string;
  port: number;
  dataDir: string;
}

/**
 * The drill activities as they were before the topology drivers (src/topology/): drills started by
 * that code replay their history against the legacy workflow path (src/workflows/drDrillLegacy.ts)
 * and call these, by the same names and with the same inputs, until they finish. Local topology only.
 *
 * How a drill acts on a node's processes. The local driver runs pg_ctl on the worker's machine (the
 * sandbox); a Kubernetes StatefulSet driver (scale to zero, delete the pod) implements the same.
 */
export interface NodeDriver {
  stop(node: TopologyNode, mode: 'fast' | 'immediate'): Promise<{ wasRunning: boolean }>;
  start(node: TopologyNode): Promise<void>;
  isRunning(node: TopologyNode): boolean;
  /** Make a node a replica of the primary: rewind if possible, else a fresh copy. */
  rejoinAsReplica(node: TopologyNode, primary: TopologyNode, credentials: PgServer): Promise<'pg_rewind' | 'base backup'>;
  /** Replace the node's data with a fresh copy of the primary, as a replica. */
  rebuildAsReplica(node: TopologyNode, primary: TopologyNode, credentials: PgServer): Promise<'base backup'>;
}

export const localDriver: NodeDriver = {
  async stop(node, mode) {
    const wasRunning = nodeRunning(node.dataDir);
    await stopNode(node.dataDir, mode);
    return { wasRunning };
  },
  async start(node) {
    await startNode({ ...node, ...nodeFiles(node.dataDir) }, { adopt: false });
  },
  isRunning(node) {
    return nodeRunning(node.dataDir);
  },
  async rejoinAsReplica(node, primary, credentials) {
    const source = { host: primary.host, port: primary.port, user: credentials.user, password: credentials.password };
    await stopNode(node.dataDir, 'fast');
    let method: 'pg_rewind' | 'base backup' = 'pg_rewind';
    try {
      await rewindNode(node.dataDir, node.name, source);
    } catch (err) {
      log.warn('pg_rewind failed; keeping the data directory aside and taking a fresh base backup', { node: node.name, error: (err as Error).message });
      await keepDataDirAside(node.dataDir, `${Date.now()}`);
      await rebuildNode(node.dataDir, node.name, source);
      method = 'base backup';
    }
    await startNode({ ...node, ...nodeFiles(node.dataDir) }, { adopt: false });
    return method;
  },
  async rebuildAsReplica(node, primary, credentials) {
    await stopNode(node.dataDir, 'fast');
    await keepDataDirAside(node.dataDir, `${Date.now()}`);
    await rebuildNode(node.dataDir, node.name, { host: primary.host, port: primary.port, user: credentials.user, password: credentials.password });
    await startNode({ ...node, ...nodeFiles(node.dataDir) }, { adopt: false });
    return 'base backup';
  },
};

export interface DrillTarget {
  /** Credentials and database name; host/port come from each node. */
  credentials: PgServer;
  database: string;
  nodes: [TopologyNode, TopologyNode];
  /** Fully qualified service name clients use, and its TTL. */
  serviceName?: { fqdn: string; ttl: number };
  healthChecks: { name: string; sql: string }[];
}

export interface DrillDeps {
  environment: string;
  targets: Record<string, DrillTarget>;
  dns?: DnsProvider;
  driver: NodeDriver;
  approvers: string[];
  rpoMs?: number;
  rtoMs?: number;
  reports?: { store: ObjectStore; prefix: string };
}

export interface NodeState {
  name: string;
  host: string;
  port: number;
  reachable: boolean;
  role: 'primary' | 'replica' | 'down';
  /** Primary: current WAL position. Replica: last replayed position. */
  lsn?: string;
  lastReplayAt?: string;
  /** On the primary: replicas streaming from it, by address, with bytes of replay lag. */
  replicas?: { name: string; state: string; lagBytes: number; replayLagMs: number }[];
  error?: string;
}

const SCRATCH_TABLE = 'runbook_drill_markers';

async function withNode<T>(target: DrillTarget, node: TopologyNode, fn: (c: Client) => Promise<T>, appName = 'runbook-drill'): Promise<T> {
  const c = await connectPg({ ...target.credentials, host: node.host, port: node.port, password: target.credentials.password }, target.database, appName);
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function inspect(target: DrillTarget, node: TopologyNode): Promise<NodeState> {
  const base = { name: node.name, host: node.host, port: node.port };
  try {
    return await withNode(target, node, async (c) => {
      const r = await c.query<{ rec: boolean; lsn: string; replay: string | null; at: Date | null }>(
        'SELECT pg_is_in_recovery() AS rec, CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END AS lsn, pg_last_wal_replay_lsn()::text AS replay, pg_last_xact_replay_timestamp() AS at',
      );
      const row = r.rows[0];
      if (row.rec) return { ...base, reachable: true, role: 'replica' as const, lsn: row.lsn, lastReplayAt: row.at?.toISOString() };
      // Replicas are known by the name they report (cluster_name / application_name), not by address.
      const reps = await c.query<{ name: string; state: string; lag: string; lag_ms: string }>(
        `SELECT application_name AS name, state, coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::text AS lag,
                (coalesce(extract(epoch FROM replay_lag), 0) * 1000)::bigint::text AS lag_ms
           FROM pg_stat_replication`,
      );
      return {
        ...base,
        reachable: true,
        role: 'primary' as const,
        lsn: row.lsn,
        replicas: reps.rows.map((x) => ({ name: x.name, state: x.state, lagBytes: Number(x.lag), replayLagMs: Number(x.lag_ms) })),
      };
    });
  } catch (err) {
    return { ...base, reachable: false, role: 'down', error: (err as Error).message };
  }
}

export function createLegacyDrillActivities(deps: DrillDeps) {
  const target = (database: string): DrillTarget => {
    const t = deps.targets[database];
    if (!t) throw failure('InvalidInput', `database '${database}' has no drill topology in environment ${deps.environment} (databases.${database}.topology); configured: ${Object.keys(deps.targets).join(', ') || 'none'}`);
    return t;
  };
  const node = (t: DrillTarget, name: string): TopologyNode => {
    const n = t.nodes.find((x) => x.name === name);
    if (!n) throw failure('InvalidInput', `node '${name}' is not in the topology (${t.nodes.map((x) => x.name).join(', ')})`);
    return n;
  };
  const dns = (): DnsProvider => {
    if (!deps.dns) throw failure('InvalidInput', `environment ${deps.environment} has no dns: section; the drill switches the service name through it`);
    return deps.dns;
  };
  const service = (t: DrillTarget) => {
    if (!t.serviceName) throw failure('InvalidInput', 'the database has no dnsRecord: the drill needs the service name clients use');
    return t.serviceName;
  };

  return {
    async describeDrillTarget(input: { database: string; environment?: string }) {
      checkServedEnvironment(input.environment, deps.environment);
      const t = target(input.database);
      return {
        nodes: t.nodes.map((n) => ({ name: n.name, host: n.host, port: n.port })),
        serviceName: t.serviceName?.fqdn,
        dnsProvider: deps.dns?.kind,
        approvers: deps.approvers,
        rpoMs: deps.rpoMs,
        rtoMs: deps.rtoMs,
        reports: Boolean(deps.reports),
      };
    },

    async inspectNodes(input: { database: string }): Promise<NodeState[]> {
      const t = target(input.database);
      return Promise.all(t.nodes.map((n) => inspect(t, n)));
    },

    async resolveServiceName(input: { database: string }): Promise<string[]> {
      return dns().resolveA(service(target(input.database)).fqdn);
    },

    /** A row naming the drill, written on the primary; idempotent by drill id. Returns its LSN and time. */
    async writeDrillMarker(input: { database: string; node: string; drillId: string }): Promise<{ lsn: string; writtenAt: string }> {
      const t = target(input.database);
      try {
        return await withHeartbeat(() => withNode(t, node(t, input.node), async (c) => {
          await c.query(`CREATE TABLE IF NOT EXISTS ${SCRATCH_TABLE} (drill_id text PRIMARY KEY, kind text NOT NULL, written_at timestamptz NOT NULL DEFAULT clock_timestamp())`);
          await c.query(`INSERT INTO ${SCRATCH_TABLE} (drill_id, kind) VALUES ($1, 'marker') ON CONFLICT (drill_id) DO NOTHING`, [input.drillId]);
          const r = await c.query<{ lsn: string; at: Date }>(`SELECT pg_current_wal_lsn()::text AS lsn, written_at AS at FROM ${SCRATCH_TABLE} WHERE drill_id = $1`, [input.drillId]);
          return { lsn: r.rows[0].lsn, writtenAt: r.rows[0].at.toISOString() };
        }));
      } catch (err) {
        throw classify(err, `writing the drill marker on ${input.node}`);
      }
    },

    /** Stops a node (immediate = the machine died; fast = a clean shutdown). Stopping a stopped node is a no-op. */
    async stopDatabaseNode(input: { database: string; node: string; mode: 'fast' | 'immediate' }): Promise<{ wasRunning: boolean; stoppedAt: string }> {
      const t = target(input.database);
      const r = await withHeartbeat(() => deps.driver.stop(node(t, input.node), input.mode));
      log.info('node stopped', { node: input.node, mode: input.mode, wasRunning: r.wasRunning });
      return { ...r, stoppedAt: new Date().toISOString() };
    },

    /** Switchover: waits until the replica has replayed everything up to the given LSN. */
    async waitForReplay(input: { database: string; node: string; lsn: string; timeoutMs: number }): Promise<{ replayedLsn: string }> {
      const t = target(input.database);
      const deadline = Date.now() + input.timeoutMs;
      for (;;) {
        const r = await withNode(t, node(t, input.node), (c) =>
          c.query<{ done: boolean; lsn: string }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done, pg_last_wal_replay_lsn()::text AS lsn', [input.lsn]),
        );
        Context.current().heartbeat({ replayed: r.rows[0].lsn, target: input.lsn });
        if (r.rows[0].done) return { replayedLsn: r.rows[0].lsn };
        if (Date.now() > deadline) throw failure('InvalidInput', `replica ${input.node} had replayed only ${r.rows[0].lsn} of ${input.lsn} after ${input.timeoutMs} ms`);
        await new Promise((res) => setTimeout(res, 200));
      }
    },

    /** The state of a node that must be down before another is promoted (fencing in failover mode). */
    async confirmNodeDown(input: { database: string; node: string }): Promise<{ down: true }> {
      const t = target(input.database);
      const n = node(t, input.node);
      const state = await inspect(t, n);
      if (state.reachable || deps.driver.isRunning(n)) throw failure('InvalidInput', `node ${input.node} still answers: refusing to promote another node while it may accept writes`);
      return { down: true };
    },

    /** Promotes a replica and waits until it accepts writes; promoting a primary is a no-op. */
    async promoteNode(input: { database: string; node: string }): Promise<{ promoted: boolean; writableAt: string }> {
      const t = target(input.database);
      try {
        return await withHeartbeat(() => withNode(t, node(t, input.node), async (c) => {
          const rec = (await c.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec')).rows[0].rec;
          if (rec) {
            const ok = (await c.query<{ ok: boolean }>('SELECT pg_promote(true, 60) AS ok')).rows[0].ok;
            if (!ok) throw failure('ConnectionLost', `pg_promote on ${input.node} did not finish within 60 s`);
          }
          // Writable means a write commits, not only that recovery ended.
          await c.query(`CREATE TABLE IF NOT EXISTS ${SCRATCH_TABLE} (drill_id text PRIMARY KEY, kind text NOT NULL, written_at timestamptz NOT NULL DEFAULT clock_timestamp())`);
          return { promoted: rec, writableAt: new Date().toISOString() };
        }));
      } catch (err) {
        throw classify(err, `promoting ${input.node}`);
      }
    },

    /** Points the service name at an address and waits until the authoritative source answers it. Idempotent. */
    async switchServiceName(input: { database: string; address: string }): Promise<{ changed: boolean; previous: string[]; answeredAt: string }> {
      const t = target(input.database);
      const name = service(t);
      const provider = dns();
      const previous = await provider.resolveA(name.fqdn);
      // Check before acting: after a crash and retry, a record already switched is not updated again.
      const changed = !(previous.length === 1 && previous[0] === input.address);
      if (changed) await withHeartbeat(() => provider.upsertA(name.fqdn, input.address, name.ttl));
      for (let i = 0; i < 100; i++) {
        Context.current().heartbeat({ waitingFor: input.address });
        const now = await provider.resolveA(name.fqdn);
        if (now.length === 1 && now[0] === input.address) return { changed, previous, answeredAt: new Date().toISOString() };
        await new Promise((r) => setTimeout(r, 200));
      }
      throw failure('ServerUnreachable', `${name.fqdn} still does not answer ${input.address} 20 s after the update`);
    },

    /**
     * What a client sees: resolve the service name, connect there, look for the marker, write a row,
     * run the health checks. The write's commit time is the end of the outage.
     */
    async verifyThroughServiceName(input: { database: string; drillId: string; markerDrillId: string }) {
      const t = target(input.database);
      const addresses = await dns().resolveA(service(t).fqdn);
      if (addresses.length !== 1) throw failure('ConnectionLost', `${service(t).fqdn} answers ${JSON.stringify(addresses)}, expected one address`);
      const n = t.nodes.find((x) => x.host === addresses[0]);
      if (!n) throw failure('InvalidInput', `${service(t).fqdn} points at ${addresses[0]}, which is no node of the topology`);
      try {
        return await withHeartbeat(() => withNode(t, n, async (c) => {
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
          return { address: addresses[0], node: n.name, markerPresent: marker.rowCount === 1, writeAt, checks };
        }));
      } catch (err) {
        throw classify(err, `verifying through ${service(t).fqdn} (${addresses[0]})`);
      }
    },

    /** Failback: the former primary becomes a streaming replica of the new one. A node already replicating is left as it is. */
    async rejoinAsReplica(input: { database: string; node: string; primary: string }): Promise<{ method: 'pg_rewind' | 'base backup' | 'already a replica'; streaming: boolean }> {
      const t = target(input.database);
      const n = node(t, input.node);
      const p = node(t, input.primary);
      const before = await inspect(t, p);
      if (before.role === 'primary' && before.replicas?.some((r) => r.name === n.name && r.state === 'streaming')) return { method: 'already a replica', streaming: true };
      const streams = async (seconds: number) => {
        for (let i = 0; i < seconds * 5; i++) {
          const s = await inspect(t, p);
          Context.current().heartbeat({ waitingForStreaming: n.name });
          if (s.replicas?.some((r) => r.name === n.name && r.state === 'streaming')) return true;
          await new Promise((r) => setTimeout(r, 200));
        }
        return false;
      };
      const method = await deps.driver.rejoinAsReplica(n, p, t.credentials);
      if (await streams(8)) return { method, streaming: true };
      // pg_rewind can judge "no rewind required" for a node whose WAL went past the fork point
      // (its last checkpoint is before it); such a node never streams. A fresh copy always does.
      log.warn('rejoined node does not stream; replacing it with a fresh base backup', { node: n.name, method });
      const rebuilt = await deps.driver.rebuildAsReplica(n, p, t.credentials);
      if (await streams(30)) return { method: rebuilt, streaming: true };
      throw failure('ConnectionLost', `${n.name} did not start streaming from ${p.name}, neither after ${method} nor after a fresh base backup`);
    },

    /**
     * Compensation: make sure some node is a writable primary and return it. Prefers a node that is
     * already primary; else starts the node that was primary before the fault; else promotes the other.
     */
    async ensureWritablePrimary(input: { database: string; formerPrimary: string }): Promise<{ primary: string; address: string; action: string }> {
      const t = target(input.database);
      const states = await Promise.all(t.nodes.map((n) => inspect(t, n)));
      const primary = states.find((s) => s.role === 'primary');
      if (primary) return { primary: primary.name, address: primary.host, action: 'already primary' };
      const former = node(t, input.formerPrimary);
      const other = t.nodes.find((n) => n.name !== former.name)!;
      const otherState = states.find((s) => s.name === other.name)!;
      if (otherState.role === 'replica') {
        await withHeartbeat(() => withNode(t, other, (c) => c.query('SELECT pg_promote(true, 60)')));
        return { primary: other.name, address: other.host, action: `promoted ${other.name}` };
      }
      await withHeartbeat(() => deps.driver.start(former));
      const s = await inspect(t, former);
      if (s.role !== 'primary') throw failure('ConnectionLost', `could not restore a writable primary: ${former.name} is ${s.role}`);
      return { primary: former.name, address: former.host, action: `restarted ${former.name}` };
    },

    async writeDrillReport(input: { drillId: string; json: unknown; markdown: string; html: string }): Promise<{ keys: string[] }> {
      if (!deps.reports) return { keys: [] };
      if (!/^[a-z0-9-]{4,80}$/.test(input.drillId)) throw failure('InvalidInput', `drill id '${input.drillId}' is not a plain id`);
      const base = `${deps.reports.prefix}drills/${input.drillId}/report`;
      await deps.reports.store.putJson(`${base}.json`, input.json);
      await deps.reports.store.putText(`${base}.md`, input.markdown, 'text/markdown');
      await deps.reports.store.putText(`${base}.html`, input.html, 'text/html');
      return { keys: [`${base}.json`, `${base}.md`, `${base}.html`] };
    },
  };
}

export type LegacyDrillActivities = ReturnType<typeof createLegacyDrillActivities>;
