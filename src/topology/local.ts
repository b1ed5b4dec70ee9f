/**
 * The local topology driver: a primary and its replica whose data directories are on the worker's own
 * host (the sandbox pair, or hosts where the worker runs beside PostgreSQL). It acts with PostgreSQL's
 * tools: pg_ctl to stop and start, pg_promote, pg_rewind, and pg_basebackup into an empty directory
 * after the old one was kept aside. Nothing notices a failure by itself: the drill is the detector.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from 'pg';
import { connectPg, PgServer } from '../activities/pg';
import { classify, failure } from '../activities/errors';
import { keepDataDirAside, newestTimeline, nodeFiles, nodeRunning, rebuildNode, rewindNode, startNode, stopNode, controlData, timelineSwitchPoint } from '../system/postgres';
import { rmSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { processAlive, sleep } from '../system/process';
import type { ClusterState, DrillMode, FaultResult, MemberState, NewPrimary, Progress, RejoinResult, TopologyDriver } from './types';

export interface LocalNode {
  name: string;
  host: string;
  port: number;
  dataDir: string;
}

export interface LocalDriverOptions {
  nodes: LocalNode[];
  /** User and password the driver connects with (host and port come from each node). */
  credentials: Omit<PgServer, 'host' | 'port'>;
  database: string;
}

async function withNode<T>(opts: LocalDriverOptions, node: LocalNode, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = await connectPg({ host: node.host, port: node.port, user: opts.credentials.user, password: opts.credentials.password }, opts.database, 'runbook-topology');
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

const timelineOfWalFile = (walFile: string) => parseInt(walFile.slice(0, 8), 16);

async function inspectNode(opts: LocalDriverOptions, node: LocalNode): Promise<MemberState & { cause?: unknown; replicas?: { name: string; state: string; lagBytes: number; replayLagMs: number; sync: boolean }[] }> {
  const base = { name: node.name, host: node.host, port: node.port };
  try {
    return await withNode(opts, node, async (c) => {
      const rec = (await c.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec')).rows[0].rec;
      if (rec) {
        const r = await c.query<{ lsn: string; tli: number | null }>('SELECT pg_last_wal_replay_lsn()::text AS lsn, (SELECT received_tli FROM pg_stat_wal_receiver) AS tli');
        return { ...base, role: 'replica' as const, state: 'running', lsn: r.rows[0].lsn, timeline: r.rows[0].tli ?? undefined };
      }
      const p = await c.query<{ lsn: string; walfile: string }>('SELECT pg_current_wal_lsn()::text AS lsn, pg_walfile_name(pg_current_wal_lsn()) AS walfile');
      // Replicas are known by the name they report (cluster_name / application_name), not by address:
      // on loopback every connection comes from 127.0.0.1.
      const reps = await c.query<{ name: string; state: string; lag: string; lag_ms: string; sync: string }>(
        `SELECT application_name AS name, state, coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::text AS lag,
                (coalesce(extract(epoch FROM replay_lag), 0) * 1000)::bigint::text AS lag_ms, sync_state AS sync
           FROM pg_stat_replication`,
      );
      return {
        ...base,
        role: 'primary' as const,
        state: 'running',
        lsn: p.rows[0].lsn,
        timeline: timelineOfWalFile(p.rows[0].walfile),
        replicas: reps.rows.map((x) => ({ name: x.name, state: x.state, lagBytes: Number(x.lag), replayLagMs: Number(x.lag_ms), sync: x.sync === 'sync' || x.sync === 'quorum' })),
      };
    });
  } catch (err) {
    // The error itself rides along unserialised (not enumerable), for callers that classify it.
    return Object.defineProperty({ ...base, role: 'down' as const, state: nodeRunning(node.dataDir) ? 'not answering' : 'stopped', error: (err as Error).message }, 'cause', { value: err, enumerable: false });
  }
}

/** Rejoins under way in this process, by data directory. */
const rejoinsHere = new Map<string, Promise<void>>();

/**
 * Runs fn as the only rejoin of a data directory: in this process (an attempt the server gave up on
 * can still be running when the retry starts) and across processes (a lock file beside the data
 * directory, holding the pid; a dead holder's lock is taken over). A later attempt waits for the
 * earlier one, so two attempts never stop, keep aside and copy the same directory at once.
 */
async function exclusively<T>(dataDir: string, progress: Progress, fn: () => Promise<T>): Promise<T> {
  for (let earlier = rejoinsHere.get(dataDir); earlier; earlier = rejoinsHere.get(dataDir)) {
    progress({ waitingForEarlierRejoin: dataDir, holder: process.pid });
    await earlier;
  }
  let release!: () => void;
  rejoinsHere.set(dataDir, new Promise<void>((r) => (release = r)));
  const lock = join(dirname(dataDir), `.${basename(dataDir)}.rejoin.lock`);
  try {
    const deadline = Date.now() + 15 * 60_000;
    for (;;) {
      try {
        writeFileSync(lock, `${process.pid}\n`, { flag: 'wx' });
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const holder = Number(readFileSync(lock, 'utf8').trim());
        // No rejoin of this process holds it (checked above): a lock with our pid is a leftover.
        if (!Number.isInteger(holder) || holder <= 0 || holder === process.pid || !processAlive(holder)) {
          rmSync(lock, { force: true });
          continue;
        }
        if (Date.now() > deadline) throw failure('ConnectionLost', `another rejoin of ${dataDir} (process ${holder}, lock ${lock}) still runs after 15 minutes`);
        progress({ waitingForEarlierRejoin: dataDir, holder });
        await sleep(1000);
      }
    }
    try {
      return await fn();
    } finally {
      rmSync(lock, { force: true });
    }
  } finally {
    rejoinsHere.delete(dataDir);
    release();
  }
}

export function createLocalDriver(opts: LocalDriverOptions): TopologyDriver {
  const node = (name: string): LocalNode => {
    const n = opts.nodes.find((x) => x.name === name);
    if (!n) throw failure('InvalidInput', `node '${name}' is not in the topology (${opts.nodes.map((x) => x.name).join(', ')})`);
    return n;
  };
  const source = (primary: LocalNode) => ({ host: primary.host, port: primary.port, user: opts.credentials.user, password: opts.credentials.password });
  const start = (n: LocalNode) => startNode({ ...n, ...nodeFiles(n.dataDir) }, { adopt: false });

  async function describe(): Promise<ClusterState> {
    const states = await Promise.all(opts.nodes.map((n) => inspectNode(opts, n)));
    const problems: string[] = [];
    for (const s of states) if (s.role === 'down') problems.push(`node ${s.name} (${s.host}:${s.port}) is not reachable: ${s.error}`);
    const primaries = states.filter((s) => s.role === 'primary');
    if (primaries.length !== 1) problems.push(`expected exactly one primary, found ${primaries.length}`);
    const primary = primaries.length === 1 ? primaries[0] : undefined;
    const members: MemberState[] = states.map(({ replicas: _r, ...s }) => {
      const stream = primary?.replicas?.find((r) => r.name === s.name);
      return s.role === 'replica' ? { ...s, streaming: stream?.state === 'streaming', lagBytes: stream?.lagBytes, replayLagMs: stream?.replayLagMs, synchronous: stream?.sync } : s;
    });
    const replicas = members.filter((m) => m.role === 'replica');
    if (replicas.length === 0 && primaries.length > 0) problems.push('no replica found');
    for (const r of replicas) if (primary && !r.streaming) problems.push(`replica ${r.name} is not streaming from ${primary.name}`);
    return { driver: 'local', primary: primary?.name, members, problems, settings: { synchronousMode: replicas.some((r) => r.synchronous) } };
  }

  /** Waits until the node has replayed everything up to the LSN (a switchover must lose nothing). */
  async function waitForReplay(n: LocalNode, lsn: string, timeoutMs: number, progress: Progress): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await withNode(opts, n, (c) => c.query<{ done: boolean; lsn: string }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done, pg_last_wal_replay_lsn()::text AS lsn', [lsn]));
      progress({ replayed: r.rows[0].lsn, target: lsn });
      if (r.rows[0].done) return r.rows[0].lsn;
      if (Date.now() > deadline) throw failure('InvalidInput', `replica ${n.name} had replayed only ${r.rows[0].lsn} of ${lsn} after ${timeoutMs} ms`);
      await sleep(200);
    }
  }

  /** Stops a primary cleanly and waits until the other node has replayed its shutdown checkpoint. */
  async function drainInto(from: LocalNode, to: LocalNode, progress: Progress): Promise<{ finalLsn?: string; replayedLsn?: string; wasRunning: boolean }> {
    const wasRunning = nodeRunning(from.dataDir);
    await stopNode(from.dataDir, 'fast');
    const ctl = await controlData(from.dataDir);
    if (ctl.state !== 'shut down') throw failure('InvalidInput', `${from.name} is '${ctl.state}', not cleanly shut down: its last WAL position is not known, so a switchover cannot prove nothing is lost`);
    const replayedLsn = ctl.checkpointLsn ? await waitForReplay(to, ctl.checkpointLsn, 120_000, progress) : undefined;
    return { finalLsn: ctl.checkpointLsn, replayedLsn, wasRunning };
  }

  async function promote(n: LocalNode): Promise<{ promoted: boolean; timeline?: number }> {
    try {
      return await withNode(opts, n, async (c) => {
        const rec = (await c.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec')).rows[0].rec;
        if (rec) {
          const ok = (await c.query<{ ok: boolean }>('SELECT pg_promote(true, 60) AS ok')).rows[0].ok;
          if (!ok) throw failure('ConnectionLost', `pg_promote on ${n.name} did not finish within 60 s`);
        }
        // Writable means a transaction commits, not only that recovery ended.
        await c.query('SELECT txid_current()');
        const w = await c.query<{ walfile: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS walfile');
        return { promoted: rec, timeline: timelineOfWalFile(w.rows[0].walfile) };
      });
    } catch (err) {
      throw classify(err, `promoting ${n.name}`);
    }
  }

  async function streamsFrom(n: LocalNode, primary: LocalNode, seconds: number, progress: Progress): Promise<boolean> {
    for (let i = 0; i < seconds * 5; i++) {
      const s = await inspectNode(opts, primary);
      progress({ waitingForStreaming: n.name });
      if (s.replicas?.some((r) => r.name === n.name && r.state === 'streaming')) return true;
      await sleep(200);
    }
    return false;
  }

  /**
   * A rejoined node streams before it is consistent: it serves reads only once replay passes the point
   * pg_rewind or the base backup left it at. On an idle primary that point can lie past the newest
   * record (at the next WAL page's header), so each try commits an empty transaction on the primary
   * (txid_current) to give replay a record to pass.
   */
  async function readable(n: LocalNode, primary: LocalNode, seconds: number, progress: Progress): Promise<number | undefined> {
    const begun = Date.now();
    for (;;) {
      if ((await inspectNode(opts, n)).role === 'replica') return Date.now() - begun;
      if (Date.now() - begun > seconds * 1000) return undefined;
      progress({ waitingForConsistency: n.name });
      await withNode(opts, primary, (c) => c.query('SELECT txid_current()')).catch(() => undefined);
      await sleep(500);
    }
  }

  /** The rejoin's result once the node serves reads; a node that streams but never gets consistent fails the step (retryable). */
  async function consistent(n: LocalNode, p: LocalNode, r: RejoinResult, progress: Progress): Promise<RejoinResult> {
    const ms = await readable(n, p, 120, progress);
    if (ms === undefined) throw failure('ConnectionLost', `${n.name} streams from ${p.name} but did not reach a consistent state within 120 s (it still refuses connections: "the database system is not yet accepting connections")`);
    return { ...r, detail: { ...(r.detail ?? {}), consistentAfterMs: ms } };
  }

  /**
   * Whether the node really follows the primary: it replays a commit made on the primary after it
   * joined. A node whose own WAL went past the fork point can show as streaming for a moment at each
   * reconnection and serve reads from its own WAL, yet never follow.
   */
  async function follows(n: LocalNode, p: LocalNode, seconds: number, progress: Progress): Promise<number | undefined> {
    const begun = Date.now();
    const target = await withNode(opts, p, async (c) => {
      await c.query('SELECT txid_current()');
      // The insert position: a transaction that only took an xid commits without waiting for its
      // WAL to be written, so the write position (pg_current_wal_lsn) can still be before its commit.
      return (await c.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')).rows[0].lsn;
    });
    for (;;) {
      const ok = await withNode(opts, p, (c) => c.query<{ ok: boolean }>("SELECT replay_lsn >= $1::pg_lsn AS ok FROM pg_stat_replication WHERE application_name = $2 AND state = 'streaming'", [target, n.name])).then(
        (r) => r.rows.some((x) => x.ok),
        () => false,
      );
      if (ok) return Date.now() - begun;
      if (Date.now() - begun > seconds * 1000) return undefined;
      progress({ waitingForReplay: n.name, lsn: target });
      await sleep(250);
    }
  }

  /** Consistent, and replaying the primary's new commits; otherwise undefined (the caller makes a fresh copy). */
  async function joined(n: LocalNode, p: LocalNode, r: RejoinResult, progress: Progress): Promise<RejoinResult | undefined> {
    const c = await consistent(n, p, r, progress);
    const ms = await follows(n, p, 20, progress);
    return ms === undefined ? undefined : { ...c, detail: { ...(c.detail ?? {}), replayedNewCommitAfterMs: ms } };
  }

  /** The rejoin itself (one at a time per node: see exclusively). */
  async function rejoinNode(n: LocalNode, p: LocalNode, keepAsideSuffix: string, progress: Progress): Promise<RejoinResult> {
    const before = await inspectNode(opts, p);
    if (before.role === 'primary' && before.replicas?.some((r) => r.name === n.name && r.state === 'streaming')) {
      // Already a replica (a retried rejoin): done if it follows; otherwise it is rewound or copied again below.
      const done = await joined(n, p, { method: 'already a replica', streaming: true }, progress);
      if (done) return done;
    }
    await stopNode(n.dataDir, 'fast');
    let method = 'pg_rewind' as RejoinResult['method'];
    let rewindError: string | undefined;
    try {
      await rewindNode(n.dataDir, n.name, source(p));
    } catch (err) {
      rewindError = (err as Error).message;
    }
    let keptAside: RejoinResult['keptAside'];
    const rebuild = async (why: string) => {
      try {
        await stopNode(n.dataDir, 'fast');
        // The old directory may hold commits that never reached the new primary: it is kept, never deleted.
        keptAside = (await keepDataDirAside(n.dataDir, keepAsideSuffix)) ?? keptAside;
        await rebuildNode(n.dataDir, n.name, source(p));
      } catch (err) {
        throw new Error(`making a fresh copy of ${n.name} from ${p.name} (${why}): ${(err as Error).message}`);
      }
      method = 'base backup';
    };
    if (rewindError) await rebuild(rewindError);
    // A rewound node that cannot start (its WAL is not on the primary's timeline history) gets a fresh copy too.
    let startError: string | undefined;
    try {
      await start(n);
    } catch (err) {
      if (method === 'base backup') throw err;
      startError = (err as Error).message.split('\n')[0];
    }
    // A rewound node replays from its last checkpoint before it connects: on a busy host that takes a while.
    if (!startError && (await streamsFrom(n, p, 20, progress))) {
      const done = await joined(n, p, { method, streaming: true, keptAside, detail: rewindError ? { rewindError } : undefined }, progress);
      if (done) return done;
    }
    if (method === 'base backup') throw failure('ConnectionLost', `${n.name} did not start following ${p.name} (streaming and replaying its commits) after a fresh base backup`);
    // pg_rewind can judge "no rewind required" for a node whose WAL went past the fork point (its
    // last checkpoint is before it); such a node never follows (at most it shows as streaming for a
    // moment at each reconnection). A fresh copy always does.
    rewindError = startError
      ? `pg_rewind finished, but the node did not start: ${startError}`
      : 'pg_rewind finished, but the node did not follow the primary within 20 s (streaming and replaying a new commit): its WAL went past the point where the timelines forked';
    await rebuild(rewindError);
    await start(n);
    if (await streamsFrom(n, p, 30, progress)) {
      const done = await joined(n, p, { method, streaming: true, keptAside, detail: { rewindError } }, progress);
      if (done) return done;
    }
    throw failure('ConnectionLost', `${n.name} did not start following ${p.name}, neither after pg_rewind nor after a fresh base backup`);
  }

  return {
    kind: 'local',
    describe,

    faultPlan({ member, candidate, mode }) {
      const n = node(member);
      return mode === 'failover'
        ? [`stop ${member} hard: pg_ctl stop -m immediate -D ${n.dataDir} (as if its machine died)`, `then fence it (it must not answer) and promote ${candidate} with pg_promote()`]
        : [`stop ${member} cleanly: pg_ctl stop -m fast -D ${n.dataDir}`, `wait until ${candidate} has replayed its shutdown checkpoint, then promote ${candidate} with pg_promote()`];
    },

    async injectFault({ member, candidate, mode, progress }): Promise<FaultResult> {
      const n = node(member);
      if (mode === 'failover') {
        const wasRunning = nodeRunning(n.dataDir);
        await stopNode(n.dataDir, 'immediate');
        return { acted: wasRunning, detail: { stopped: member, how: 'pg_ctl stop -m immediate', wasRunning } };
      }
      const d = await drainInto(n, node(candidate), progress);
      return { acted: d.wasRunning, detail: { stopped: member, how: 'pg_ctl stop -m fast', finalLsn: d.finalLsn, replayedLsn: d.replayedLsn, wasRunning: d.wasRunning } };
    },

    async awaitNewPrimary({ formerPrimary, candidate, progress }): Promise<NewPrimary> {
      const former = node(formerPrimary);
      const c = node(candidate);
      // Never two writable nodes: the former primary must be down before the replica is promoted.
      const state = await inspectNode(opts, former);
      if (state.role !== 'down' || nodeRunning(former.dataDir)) throw failure('InvalidInput', `node ${formerPrimary} still answers: refusing to promote another node while it may accept writes`);
      const detectedAt = new Date().toISOString();
      const before = await inspectNode(opts, c);
      progress({ promoting: candidate });
      const p = await promote(c);
      return { name: c.name, host: c.host, port: c.port, detectedAt, writableAt: new Date().toISOString(), timeline: p.timeline, detail: { fenced: formerPrimary, promoted: p.promoted, replayedLsn: before.lsn ?? null } };
    },

    async switchPoint(primary) {
      const n = node(primary);
      const s = await inspectNode(opts, n);
      const tli = s.timeline ?? newestTimeline(n.dataDir);
      return tli > 1 ? timelineSwitchPoint(n.dataDir, tli) : undefined;
    },

    async rejoin({ member, primary, keepAsideSuffix, progress }): Promise<RejoinResult> {
      const n = node(member);
      const p = node(primary);
      return exclusively(n.dataDir, progress, () => rejoinNode(n, p, keepAsideSuffix, progress));
    },

    async switchover({ from, to, progress }) {
      const f = node(from);
      const t = node(to);
      const [fs, ts] = await Promise.all([inspectNode(opts, f), inspectNode(opts, t)]);
      if (ts.role === 'primary' && fs.role !== 'primary') return { switched: false, detail: { primary: to } };
      const d = fs.role === 'down' ? { finalLsn: undefined, replayedLsn: undefined } : await drainInto(f, t, progress);
      const p = await promote(t);
      return { switched: true, detail: { stopped: from, finalLsn: d.finalLsn ?? null, replayedLsn: d.replayedLsn ?? null, promoted: p.promoted } };
    },

    async restoreWritablePrimary({ formerPrimary }) {
      const states = await Promise.all(opts.nodes.map((n) => inspectNode(opts, n)));
      const primary = states.find((s) => s.role === 'primary');
      if (primary) return { name: primary.name, host: primary.host, port: primary.port, action: 'already primary' };
      const former = node(formerPrimary);
      const other = opts.nodes.find((n) => n.name !== former.name)!;
      if (states.find((s) => s.name === other.name)?.role === 'replica') {
        await promote(other);
        return { name: other.name, host: other.host, port: other.port, action: `promoted ${other.name}` };
      }
      await start(former);
      const s = await inspectNode(opts, former);
      if (s.role !== 'primary') throw failure('ConnectionLost', `could not restore a writable primary: ${former.name} is ${s.role}`);
      return { name: former.name, host: former.host, port: former.port, action: `restarted ${former.name}` };
    },

    async primaryAddress() {
      const states = await Promise.all(opts.nodes.map((n) => inspectNode(opts, n)));
      const primaries = states.filter((s) => s.role === 'primary');
      // A node's error that no retry can fix (refused credentials, a missing database) is that error,
      // classified as every activity's is, not a missing primary.
      if (primaries.length === 0) {
        for (const s of states) {
          const f = s.cause === undefined ? undefined : classify(s.cause, `${s.name} (${s.host}:${s.port})`);
          if (f instanceof ApplicationFailure && f.nonRetryable) throw f;
        }
      }
      if (primaries.length !== 1) {
        throw failure('ServerUnreachable', `no single primary among ${states.map((s) => `${s.name}=${s.role}`).join(', ')}: ${states.map((s) => s.error).filter(Boolean).join('; ')}`);
      }
      return { name: primaries[0].name, host: primaries[0].host, port: primaries[0].port };
    },
  };
}

export type { DrillMode };
