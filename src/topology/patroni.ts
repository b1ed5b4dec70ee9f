/**
 * The Patroni topology driver. It reads the cluster through Patroni's REST API, hands leadership over
 * with POST /switchover, and for an unplanned failover only kills the leader (through a configured
 * command, e.g. `ssh HOST sudo systemctl kill -s SIGKILL patroni postgresql`) and then watches:
 * Patroni itself must notice the dead leader and elect a new one. It never touches a data directory
 * itself; when a rewind is impossible, a configured keep-aside command moves the old one out of the
 * way before Patroni clones a fresh replica, and without that command the drill stops rather than
 * letting Patroni delete it.
 */
import { execFile } from 'node:child_process';
import { connect as tcpConnect } from 'node:net';
import { promisify } from 'node:util';
import { connectPg, PgServer } from '../activities/pg';
import { classify, failure } from '../activities/errors';
import { sleep } from '../system/process';
import { memberUp, PatroniApi, PatroniApiAuth, PatroniApiError, PatroniClusterJson, PatroniConfigJson, PatroniStatusJson } from './patroniApi';
import { Address, ClusterState, FailoverSettings, FaultResult, KeptDataDirectory, lsnText, MemberState, NewPrimary, Progress, RejoinResult, TopologyDriver } from './types';

const execFileAsync = promisify(execFile);

export interface PatroniMember {
  name: string;
  /** Host of the member's machine: the {host} of the commands, and where PostgreSQL listens. */
  host: string;
  port: number;
  /** Base URL of the member's Patroni REST API, e.g. https://db-1.example.com:8008 */
  api: string;
}

export interface PatroniDriverOptions {
  members: PatroniMember[];
  api: PatroniApiAuth;
  /** User and password for PostgreSQL itself (to prove the new leader commits a write). */
  credentials: Omit<PgServer, 'host' | 'port'>;
  database: string;
  /**
   * Commands run on the worker's host as argument lists, with {member}, {host} and {suffix} replaced:
   * fault kills a member's Patroni and PostgreSQL hard; recover starts its Patroni again; keepAside
   * renames its (stopped) data directory and may print JSON {keptAt, lastLsn, timeline}.
   */
  commands: { fault: string[]; recover: string[]; keepAside?: string[] };
  /** How long a rejoining member may take to stream before its rewind is judged impossible. */
  rejoinTimeoutMs: number;
}

/** Heartbeat-friendly shorthand for "now" as ISO text. */
const now = () => new Date().toISOString();

function tcpOpen(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host, port, timeout: timeoutMs });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.on('connect', () => done(true));
    s.on('timeout', () => done(false));
    s.on('error', () => done(false));
  });
}

export function expandCommand(template: string[], values: Record<string, string>): string[] {
  return template.map((arg) => arg.replace(/\{(member|host|suffix)\}/g, (_, k: string) => values[k] ?? ''));
}

export function createPatroniDriver(opts: PatroniDriverOptions): TopologyDriver {
  const api = new PatroniApi(opts.api);
  const member = (name: string): PatroniMember => {
    const m = opts.members.find((x) => x.name === name);
    if (!m) throw failure('InvalidInput', `member '${name}' is not in the Patroni topology (${opts.members.map((x) => x.name).join(', ')})`);
    return m;
  };

  const apiFailure = (err: unknown, what: string) => {
    if (err instanceof PatroniApiError && (err.status === 401 || err.status === 403)) return failure('AuthenticationFailed', `${what}: ${err.message}`);
    return failure('ServerUnreachable', `${what}: ${(err as Error).message}`);
  };

  /** /cluster from the first member that answers it (skipping some), with the URL that answered. */
  async function readCluster(skip: string[] = []): Promise<{ cluster: PatroniClusterJson; url: string }> {
    const errors: string[] = [];
    for (const m of opts.members.filter((x) => !skip.includes(x.name))) {
      try {
        return { cluster: await api.cluster(m.api), url: m.api };
      } catch (err) {
        if (err instanceof PatroniApiError && (err.status === 401 || err.status === 403)) throw apiFailure(err, 'reading the Patroni cluster');
        errors.push(`${m.name}: ${(err as Error).message}`);
      }
    }
    throw failure('ServerUnreachable', `no Patroni member answers GET /cluster (${errors.join('; ')})`);
  }

  const leaderOf = (c: PatroniClusterJson) => c.members.find((m) => m.role === 'leader' || m.role === 'standby_leader');
  const addressOf = (c: PatroniClusterJson | undefined, name: string): Address => {
    const fromCluster = c?.members.find((m) => m.name === name);
    const m = member(name);
    return { name, host: fromCluster?.host ?? m.host, port: fromCluster?.port ?? m.port };
  };

  async function settingsFrom(url: string): Promise<FailoverSettings> {
    const c: PatroniConfigJson = await api.config(url).catch(() => ({}));
    return {
      ttl: c.ttl ?? 30,
      loopWait: c.loop_wait ?? 10,
      retryTimeout: c.retry_timeout ?? 10,
      synchronousMode: c.synchronous_mode === true,
      maximumLagOnFailover: c.maximum_lag_on_failover ?? 1_048_576,
      failsafeMode: c.failsafe_mode === true,
      usePgRewind: c.postgresql?.use_pg_rewind === true,
    };
  }

  async function runCommand(kind: 'fault' | 'recover' | 'keepAside', m: PatroniMember, suffix = ''): Promise<{ argv: string[]; stdout: string }> {
    const template = opts.commands[kind];
    if (!template) throw failure('InvalidInput', `topology.patroni.commands.${kind} is not configured`);
    const argv = expandCommand(template, { member: m.name, host: m.host, suffix });
    try {
      const { stdout } = await execFileAsync(argv[0], argv.slice(1), { timeout: 120_000, maxBuffer: 1 << 20 });
      return { argv, stdout };
    } catch (err) {
      const e = err as { stderr?: string; code?: number | string; message: string };
      throw failure('CommandFailed', `the ${kind} command for ${m.name} failed (${e.code ?? 'error'}): ${(e.stderr || e.message).trim().split('\n').slice(-3).join(' ')}`);
    }
  }

  /** A member counts as down when neither its Patroni API nor its PostgreSQL port answers. */
  async function isDown(m: PatroniMember, c?: PatroniClusterJson): Promise<boolean> {
    const a = addressOf(c, m.name);
    const [health, pg] = await Promise.all([api.health(m.api, 'health'), tcpOpen(a.host, a.port)]);
    return health === 0 && !pg;
  }

  async function writable(a: Address): Promise<boolean> {
    try {
      const c = await connectPg({ host: a.host, port: a.port, user: opts.credentials.user, password: opts.credentials.password }, opts.database, 'runbook-topology');
      try {
        const rec = (await c.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec')).rows[0].rec;
        if (rec) return false;
        // Writable means a transaction commits (with synchronous mode, a standby confirmed it).
        await c.query("SET statement_timeout = '5s'");
        await c.query('SELECT txid_current()');
        return true;
      } finally {
        await c.end().catch(() => undefined);
      }
    } catch {
      return false;
    }
  }

  /** Whether the member streams from the leader, read from the leader's own pg_stat_replication. */
  async function streamingTo(leader: string, name: string): Promise<boolean> {
    try {
      const s = await api.status(member(leader).api);
      return (s.replication ?? []).some((r) => r.application_name === name && r.state === 'streaming');
    } catch {
      return false;
    }
  }

  async function waitForStreaming(name: string, timeoutMs: number, progress: Progress): Promise<{ leader: string; timeline?: number } | undefined> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const c = await readCluster().catch(() => undefined);
      const leader = c && leaderOf(c.cluster);
      const m = c?.cluster.members.find((x) => x.name === name);
      last = m ? `${m.role} ${m.state} timeline ${m.timeline ?? '?'}` : 'not registered';
      progress({ waitingForStreaming: name, member: last, leader: leader?.name ?? null });
      if (leader && m && m.role !== 'leader' && memberUp(m.state) && (await streamingTo(leader.name, name))) {
        // Streaming on the leader's timeline, not on an old one it forked from.
        if (m.timeline === undefined || leader.timeline === undefined || m.timeline === leader.timeline) return { leader: leader.name, timeline: m.timeline };
      }
      await sleep(500);
    }
    return undefined;
  }

  /** One reading of the cluster, the members' own status and whether each member reaches the DCS. */
  async function sample() {
    // The members' own status first and side by side with /cluster (which waits on the DCS), so
    // both describe the same moment.
    const reading = Promise.all(opts.members.map((m) => api.status(m.api).then((s) => ({ m, s }), (err: Error) => ({ m, s: undefined as PatroniStatusJson | undefined, error: err.message }))));
    let cluster: PatroniClusterJson | undefined;
    let url = opts.members[0].api;
    let clusterError: string | undefined;
    try {
      ({ cluster, url } = await readCluster());
    } catch (err) {
      clusterError = (err as Error).message;
    }
    const settings = await settingsFrom(url);
    const statuses = await reading;
    // A member that has not heard from the DCS for longer than a loop and its retries cannot reach it.
    const staleAfter = (settings.loopWait ?? 10) + (settings.retryTimeout ?? 10) + 5;
    const nowS = Date.now() / 1000;
    // A leader in failsafe mode keeps running only because it cannot reach the DCS (replicas keep the
    // flag for a ttl after the leader's last failsafe call, so theirs is not a sign of an outage now).
    const dcsProblems = statuses
      .filter((x) => x.s && ((x.s.failsafe_mode_is_active && x.s.role === 'master') || (x.s.dcs_last_seen !== undefined && nowS - x.s.dcs_last_seen > staleAfter)))
      .map((x) => `${x.m.name} (last heard from the DCS ${x.s!.dcs_last_seen ? Math.round(nowS - x.s!.dcs_last_seen) : '?'} s ago${x.s!.failsafe_mode_is_active ? ', failsafe mode active' : ''})`);
    const dcsReachable = !clusterError && dcsProblems.length === 0;
    const dcsDetail = clusterError ? `GET /cluster failed: ${clusterError}` : dcsProblems.length ? `not reachable from ${dcsProblems.join(', ')}` : 'reachable from every member';
    return { cluster, settings, statuses, dcsReachable, dcsDetail };
  }

  async function describe(): Promise<ClusterState> {
    const problems: string[] = [];
    const started = Date.now();
    let reading = await sample();
    if (!reading.dcsReachable) {
      // One reading can catch a leader between a missed DCS call and its next loop (a busy etcd, a
      // lease renewed late): read again for up to a ttl (at most 15 s, all readings included, so the
      // answer comes well within the activity's timeout) before calling the DCS unreachable.
      const first = reading.dcsDetail;
      const windowMs = Math.min(Math.max(reading.settings.ttl ?? 30, 5), 15) * 1000;
      let took = Date.now() - started;
      while (!reading.dcsReachable && Date.now() - started + 1_000 + took < windowMs) {
        await sleep(1_000);
        const t0 = Date.now();
        reading = await sample();
        took = Date.now() - t0;
      }
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      reading.dcsDetail = reading.dcsReachable ? `reachable from every member again after ${seconds} s (first reading: ${first})` : `${reading.dcsDetail}, still after ${seconds} s`;
    }
    const { cluster, settings, statuses, dcsReachable, dcsDetail } = reading;
    if (!dcsReachable) problems.push(`the DCS is not reachable: ${dcsDetail}; Patroni could neither fail over nor be trusted to`);
    const leader = cluster && leaderOf(cluster);
    const leaderStatus = leader && statuses.find((x) => x.m.name === leader.name)?.s;
    const streaming = new Set((leaderStatus?.replication ?? []).filter((r) => r.state === 'streaming').map((r) => r.application_name));
    const sync = new Set((leaderStatus?.replication ?? []).filter((r) => r.sync_state === 'sync' || r.sync_state === 'quorum').map((r) => r.application_name));
    const members: MemberState[] = opts.members.map((m) => {
      const c = cluster?.members.find((x) => x.name === m.name);
      const st = statuses.find((x) => x.m.name === m.name)!;
      const a = addressOf(cluster, m.name);
      if (!c || !memberUp(c.state)) {
        return { name: m.name, host: a.host, port: a.port, role: 'down', state: c?.state ?? 'not registered', timeline: c?.timeline, error: !c ? (st.s ? 'not registered in the DCS' : `API not answering: ${(st as { error?: string }).error}`) : `state ${c.state}` };
      }
      const isLeader = c.role === 'leader';
      const xlog = st.s?.xlog;
      const lsnNum = isLeader ? xlog?.location : xlog?.replayed_location;
      return {
        name: m.name,
        host: a.host,
        port: a.port,
        role: isLeader ? 'primary' : 'replica',
        state: c.state,
        timeline: c.timeline,
        lsn: lsnNum === undefined ? undefined : lsnText(lsnNum),
        ...(isLeader ? {} : { lagBytes: typeof c.lag === 'number' ? c.lag : undefined, streaming: streaming.has(m.name), synchronous: sync.has(m.name) || c.role === 'sync_standby' }),
      };
    });
    if (cluster?.pause) problems.push('Patroni is paused (maintenance mode): it would not fail over by itself');
    if (cluster && !leader) problems.push('the cluster has no leader');
    for (const m of members) if (m.role === 'down') problems.push(`member ${m.name} (${m.host}:${m.port}) is down: ${m.error}`);
    const replicas = members.filter((m) => m.role === 'replica');
    if (leader && replicas.length === 0) problems.push('no replica is running: nothing could take over');
    for (const r of replicas) if (!r.streaming) problems.push(`replica ${r.name} is not streaming from ${leader?.name}`);
    const unknown = cluster?.members.filter((c) => !opts.members.some((m) => m.name === c.name)) ?? [];
    for (const u of unknown) problems.push(`member ${u.name} is in the Patroni cluster but not in topology.patroni.members: add it, so the drill can act on it`);
    return { driver: 'patroni', primary: leader?.state === 'running' ? leader.name : undefined, members, problems, settings, dcs: { reachable: dcsReachable, detail: dcsDetail } };
  }

  async function currentLeader(skip: string[] = []): Promise<{ cluster: PatroniClusterJson; leader?: PatroniClusterJson['members'][number] }> {
    const { cluster } = await readCluster(skip);
    return { cluster, leader: leaderOf(cluster) };
  }

  async function switchoverTo(from: string, to: string): Promise<{ switched: boolean; detail: Record<string, unknown> }> {
    const { leader } = await currentLeader();
    if (leader?.name === to) return { switched: false, detail: { leader: to } };
    if (leader?.name !== from) throw failure('InvalidInput', `the leader is ${leader?.name ?? 'nobody'}, not ${from}: refusing to switch over from a member that does not lead`);
    let r;
    try {
      r = await api.switchover(member(from).api, from, to);
    } catch (err) {
      throw apiFailure(err, `POST /switchover on ${from}`);
    }
    if (r.status === 200) return { switched: true, detail: { request: `POST ${member(from).api}/switchover {"leader":"${from}","candidate":"${to}"}`, answer: r.text.trim() } };
    if (r.status === 401 || r.status === 403) throw failure('AuthenticationFailed', `POST /switchover on ${from}: HTTP ${r.status}: the API credentials were refused`);
    // 412: no good candidate / not in sync; 400: a malformed request. Retrying changes nothing.
    if (r.status === 412 || r.status === 400) throw failure('PatroniRefused', `Patroni refused the switchover from ${from} to ${to}: HTTP ${r.status} ${r.text.trim()}`);
    throw failure('ConnectionLost', `switchover from ${from} to ${to} did not complete: HTTP ${r.status} ${r.text.trim()}`);
  }

  return {
    kind: 'patroni',
    describe,

    faultPlan({ member: name, candidate, mode }) {
      const m = member(name);
      if (mode === 'switchover') return [`POST ${m.api}/switchover {"leader":"${name}","candidate":"${candidate}"}: Patroni stops ${name} cleanly and promotes ${candidate}`];
      return [
        `kill ${name} hard (Patroni and PostgreSQL, as if its machine died): ${expandCommand(opts.commands.fault, { member: name, host: m.host }).join(' ')}`,
        `then wait for Patroni to notice (the leader key expires after ttl) and elect a new leader; writes resume through the service endpoint`,
      ];
    },

    async injectFault({ member: name, candidate, mode, progress }): Promise<FaultResult> {
      if (mode === 'switchover') {
        progress({ switchover: `${name} -> ${candidate}` });
        const s = await switchoverTo(name, candidate);
        return { acted: s.switched, detail: s.detail };
      }
      const m = member(name);
      if (await isDown(m)) return { acted: false, detail: { member: name, alreadyDown: true } };
      const { argv, stdout } = await runCommand('fault', m);
      for (let i = 0; i < 50 && !(await isDown(m)); i++) await sleep(200);
      if (!(await isDown(m))) throw failure('CommandFailed', `the fault command for ${name} ran (${argv.join(' ')}), but ${name} still answers`);
      return { acted: true, detail: { member: name, command: argv.join(' '), output: stdout.trim().slice(-300) } };
    },

    async awaitNewPrimary({ formerPrimary, timeoutMs, progress }): Promise<NewPrimary> {
      const deadline = Date.now() + timeoutMs;
      let detectedAt: string | undefined;
      let seen: PatroniClusterJson['members'][number] | undefined;
      let lastState = '';
      while (Date.now() < deadline) {
        const c = await readCluster([formerPrimary]).catch((err: Error) => {
          lastState = err.message;
          return undefined;
        });
        const leader = c && leaderOf(c.cluster);
        if (leader && leader.name !== formerPrimary) {
          detectedAt ??= now();
          seen = leader;
          const a = addressOf(c.cluster, leader.name);
          if (leader.state === 'running' && (await writable(a))) {
            return { ...a, detectedAt, writableAt: now(), timeline: leader.timeline, detail: { electedBy: 'patroni', leaderState: leader.state } };
          }
        }
        lastState = leader ? `leader ${leader.name} (${leader.state})` : 'no leader';
        progress({ waitingForNewLeader: true, formerPrimary, seen: lastState, detectedAt: detectedAt ?? null });
        await sleep(100);
      }
      throw failure('ConnectionLost', `no new leader accepted writes within ${timeoutMs} ms of the fault (${seen ? `Patroni elected ${seen.name}, but it did not commit a write` : `last seen: ${lastState}`})`);
    },

    async switchPoint(primary) {
      const m = member(primary);
      const c = await readCluster().catch(() => undefined);
      const tl = c?.cluster.members.find((x) => x.name === primary)?.timeline;
      if (!tl || tl < 2) return undefined;
      // Patroni records the ended timeline a moment after the promotion.
      for (let i = 0; i < 30; i++) {
        const h = await api.history(m.api).catch(() => []);
        const entry = h.find((e) => e[0] === tl - 1);
        if (entry) return lsnText(entry[1]);
        await sleep(500);
      }
      return undefined;
    },

    async rejoin({ member: name, primary, keepAsideSuffix, progress }): Promise<RejoinResult> {
      const m = member(name);
      const { cluster, leader } = await currentLeader();
      if (leader?.name !== primary) throw failure('InvalidInput', `the leader is ${leader?.name ?? 'nobody'}, not ${primary}: refusing to rejoin ${name} to a member that does not lead`);
      const c = cluster.members.find((x) => x.name === name);
      if (c && memberUp(c.state) && c.timeline === leader.timeline && (await streamingTo(primary, name))) return { method: 'already a replica', streaming: true };
      let recovered: string[] | undefined;
      if ((await api.health(m.api, 'health')) === 0) recovered = (await runCommand('recover', m)).argv;
      const streamed = await waitForStreaming(name, opts.rejoinTimeoutMs, progress);
      if (streamed) return { method: 'patroni rejoin', streaming: true, detail: { recoverCommand: recovered?.join(' ') ?? null, timeline: streamed.timeline ?? null, note: 'Patroni rewinds a diverged former leader with pg_rewind before it streams' } };

      // The member does not stream from the new leader's timeline: its rewind failed or is not allowed.
      if (!opts.commands.keepAside) {
        throw failure(
          'RejoinFailed',
          `${name} did not stream from ${primary} within ${opts.rejoinTimeoutMs} ms (a rewind is impossible or failed); its data directory was left untouched on ${m.host}. ` +
            'Configure topology.patroni.commands.keepAside so the drill can keep it aside before Patroni clones a fresh replica, or save it and reinitialize the member by hand',
        );
      }
      progress({ keepingAside: name });
      await runCommand('fault', m);
      for (let i = 0; i < 50 && !(await isDown(m)); i++) await sleep(200);
      const kept = await runCommand('keepAside', m, keepAsideSuffix);
      let keptAside: KeptDataDirectory = { path: `(as the keepAside command names it, suffix ${keepAsideSuffix})` };
      try {
        const j = JSON.parse(kept.stdout.trim().split('\n').pop() ?? '') as { keptAt?: string; lastLsn?: string; timeline?: number };
        if (j.keptAt) keptAside = { path: j.keptAt, lastLsn: j.lastLsn || undefined, timeline: j.timeline ?? undefined };
      } catch {
        /* a command that prints no JSON is fine: the suffix says where */
      }
      // With an empty data directory, Patroni clones the member from the leader (pg_basebackup).
      await runCommand('recover', m);
      const cloned = await waitForStreaming(name, opts.rejoinTimeoutMs + 120_000, progress);
      if (!cloned) throw failure('RejoinFailed', `${name} did not stream from ${primary} after its data directory was kept aside (${keptAside.path}) and Patroni was started to clone it`);
      return { method: 'patroni clone', streaming: true, keptAside, detail: { keepAsideCommand: kept.argv.join(' '), timeline: cloned.timeline ?? null } };
    },

    async switchover({ from, to, progress }) {
      progress({ switchover: `${from} -> ${to}` });
      return switchoverTo(from, to);
    },

    async restoreWritablePrimary({ progress }) {
      // Within the 3 minutes the drill gives the activity.
      const deadline = Date.now() + 150_000;
      const started: string[] = [];
      while (Date.now() < deadline) {
        const c = await readCluster().catch(() => undefined);
        const leader = c && leaderOf(c.cluster);
        if (leader && leader.state === 'running') {
          const a = addressOf(c.cluster, leader.name);
          if (await writable(a)) return { ...a, action: started.length ? `started ${started.join(', ')}; ${leader.name} leads` : `${leader.name} already leads` };
        }
        // Members that are down are started again, so Patroni has someone to elect.
        for (const m of opts.members) {
          if (started.includes(m.name) || (await api.health(m.api, 'health')) !== 0) continue;
          await runCommand('recover', m);
          started.push(m.name);
        }
        progress({ waitingForLeader: true, started });
        await sleep(500);
      }
      throw failure('ConnectionLost', `no writable leader within 150 s (started: ${started.join(', ') || 'none'})`);
    },

    async primaryAddress() {
      try {
        const c = await readCluster();
        const leader = leaderOf(c.cluster);
        if (leader && leader.state === 'running') return addressOf(c.cluster, leader.name);
      } catch (err) {
        // Without the DCS a member still knows whether it leads.
        for (const m of opts.members) if ((await api.health(m.api, 'primary')) === 200) return { name: m.name, host: m.host, port: m.port };
        throw classify(err, 'finding the Patroni leader');
      }
      throw failure('ServerUnreachable', 'the Patroni cluster has no running leader');
    },
  };
}
