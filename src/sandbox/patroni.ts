/**
 * A Patroni cluster on loopback, the way self-hosted PostgreSQL HA is usually run: etcd as the DCS,
 * three Patroni-managed PostgreSQL 15 nodes on their own addresses, and HAProxy in front with a write
 * port routed to the leader by Patroni's health checks (OPTIONS /primary) and a read port to replicas.
 *
 * Everything comes from Debian packages (patroni 3.0, etcd-server 3.4, haproxy 2.6), started as plain
 * processes; PostgreSQL refuses to run as root, so as root Patroni runs as the postgres user. A small
 * control script beside the cluster kills a node hard, starts it again, or keeps a data directory
 * aside; the sandbox config names it as the Patroni topology's fault, recover and keep-aside command,
 * exactly where a real deployment names `ssh host systemctl ...`.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client as PgClient } from 'pg';
import { stringify } from 'yaml';
import { ownDir, postgresOwner, reachableClusterDir, stopNode } from '../system/postgres';
import { archiveCommand, createStanza, SandboxPgBackRest, writeHostConfig } from './pgbackrest';
import type { S3ServerInfo } from './s3';
import { memberUp, PatroniApi, PatroniClusterJson } from '../topology/patroniApi';
import { createCa, issueCert } from './tls';
import { adopt, disown, findBinary, freePort, groupAlive, spawnService, stopService, waitUntil } from '../system/process';

const execFileAsync = promisify(execFile);

export interface PatroniSettings {
  /** Leader key TTL (s): a dead leader is noticed at most this long after its last renewal. */
  ttl: number;
  loopWait: number;
  retryTimeout: number;
  synchronousMode: boolean;
  /** Bytes a replica may lag and still be promoted on failover. */
  maximumLagOnFailover: number;
}

export const SANDBOX_PATRONI_SETTINGS: PatroniSettings = { ttl: 10, loopWait: 1, retryTimeout: 4, synchronousMode: false, maximumLagOnFailover: 64 * 1024 * 1024 };

export interface PatroniNodeInfo {
  name: string;
  host: string;
  pgPort: number;
  apiPort: number;
  apiUrl: string;
  dir: string;
  dataDir: string;
  configFile: string;
  logFile: string;
  /** Holds the process group id of the node's Patroni (the control script rewrites it on a restart). */
  pidFile: string;
}

export interface PatroniClusterInfo {
  scope: string;
  dir: string;
  database: string;
  superuser: string;
  apiUser: string;
  /** Secret file names under the stack's secrets/ directory. */
  secrets: { postgresPassword: string; apiPassword: string };
  secretsDir: string;
  /** The REST API speaks HTTPS with certificates from this throwaway CA. */
  ca: string;
  etcd: { pid: number; host: string; port: number; dataDir: string; logFile: string; args: string[] };
  haproxy: { pid: number; host: string; writePort: number; readPort: number; statsPort: number; configFile: string; logFile: string };
  nodes: PatroniNodeInfo[];
  /** The node control script: kill | start | keep-aside | stall-wal | resume-wal, then a member name. */
  control: string;
  /** One line per control action taken (time, action, member), for tests that count faults. */
  controlLog: string;
  settings: PatroniSettings;
  /** WAL archiving into a pgBackRest stanza of the cluster's own, from whichever member leads (when started with an S3 server). */
  pgbackrest?: SandboxPgBackRest;
}

export interface PatroniClusterOptions {
  dir: string;
  /** Secrets directory (the stack's secrets/); passwords are written there as files. */
  secretsDir: string;
  /** Address of etcd and HAProxy (default 127.0.0.10); node i gets the next addresses (127.0.0.11, .12, .13). */
  host?: string;
  nodeHosts?: string[];
  settings?: Partial<PatroniSettings>;
  database?: string;
  /**
   * The sandbox S3 server (with its TLS endpoint): the cluster archives WAL with pgBackRest into the
   * stanza `ha` under a repository path of its own (each stack up bootstraps a new cluster, with a new
   * system identifier), and the stanza is created on the first leader.
   */
  archiveTo?: S3ServerInfo;
}

/** The stanza the sandbox Patroni cluster archives into. */
export const PATRONI_STANZA = 'ha';

const PATRONI_HINT = 'Install Patroni 3.0 (scripts/bootstrap does: apt-get install patroni), or set PATRONI_PATH.';

export function findPatroni(): string {
  return findBinary('patroni', { envVar: 'PATRONI_PATH', dirs: ['/usr/bin'], hint: PATRONI_HINT });
}
export function findEtcd(): string {
  return findBinary('etcd', { envVar: 'ETCD_PATH', dirs: ['/usr/bin'], hint: 'Install etcd 3.4 (scripts/bootstrap does: apt-get install etcd-server), or set ETCD_PATH.' });
}
export function findHaproxy(): string {
  return findBinary('haproxy', { envVar: 'HAPROXY_PATH', dirs: ['/usr/sbin'], hint: 'Install HAProxy 2.6 (scripts/bootstrap does: apt-get install haproxy), or set HAPROXY_PATH.' });
}

function secret(dir: string, name: string): string {
  const path = join(dir, name);
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const value = randomBytes(18).toString('base64url');
  writeFileSync(path, `${value}\n`, { mode: 0o600 });
  return value;
}

function chownToPostgres(path: string): void {
  const user = postgresOwner();
  if (user) chownSync(path, user.uid, user.gid);
}

function nextAddress(host: string, offset: number): string {
  const parts = host.split('.').map(Number);
  parts[3] += offset;
  return parts.join('.');
}

function patroniConfig(
  scope: string,
  node: PatroniNodeInfo,
  etcd: string,
  settings: PatroniSettings,
  pw: { postgres: string; replication: string; api: string },
  ca: string,
  archive?: string,
): string {
  const conf = {
    scope,
    namespace: '/runbook/',
    name: node.name,
    log: { level: 'INFO', format: '%(asctime)s %(levelname)s: %(message)s' },
    restapi: {
      listen: `${node.host}:${node.apiPort}`,
      connect_address: `${node.host}:${node.apiPort}`,
      authentication: { username: 'runbook', password: pw.api },
      certfile: join(node.dir, 'api.pem'),
      keyfile: join(node.dir, 'api.key'),
    },
    // Patroni's own calls to the other members' APIs (in a leader race) carry the same credentials and trust the CA.
    ctl: { authentication: { username: 'runbook', password: pw.api }, cacert: ca },
    etcd3: { hosts: [etcd] },
    bootstrap: {
      dcs: {
        ttl: settings.ttl,
        loop_wait: settings.loopWait,
        retry_timeout: settings.retryTimeout,
        maximum_lag_on_failover: settings.maximumLagOnFailover,
        synchronous_mode: settings.synchronousMode,
        // A DCS outage alone must not demote a healthy leader that still reaches every member.
        failsafe_mode: true,
        postgresql: {
          use_pg_rewind: true,
          use_slots: true,
          parameters: {
            wal_level: 'replica',
            hot_standby: 'on',
            wal_log_hints: 'on',
            max_wal_senders: 10,
            max_replication_slots: 10,
            wal_keep_size: '256MB',
            max_connections: 50,
            shared_buffers: '32MB',
            // Sandbox nodes are killed as processes, never as machines: the OS page cache survives, so
            // fsync buys nothing here and costs a shared two-core machine a lot.
            fsync: 'off',
            // Every member carries the same archive_command; PostgreSQL runs it only on the leader.
            ...(archive ? { archive_mode: 'on', archive_command: archive, archive_timeout: '60s' } : {}),
          },
        },
      },
      initdb: [{ encoding: 'UTF8' }, { locale: 'C' }],
      pg_hba: ['local all all trust', 'host replication replicator 127.0.0.0/8 scram-sha-256', 'host all all 127.0.0.0/8 scram-sha-256'],
    },
    postgresql: {
      listen: `${node.host}:${node.pgPort}`,
      connect_address: `${node.host}:${node.pgPort}`,
      data_dir: node.dataDir,
      bin_dir: '/usr/lib/postgresql/15/bin',
      pgpass: join(node.dir, 'pgpass'),
      authentication: {
        superuser: { username: 'postgres', password: pw.postgres },
        replication: { username: 'replicator', password: pw.replication },
        rewind: { username: 'postgres', password: pw.postgres },
      },
      parameters: { unix_socket_directories: join(node.dir, 'socket'), password_encryption: 'scram-sha-256' },
    },
    tags: { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
  };
  return stringify(conf);
}

function haproxyConfig(info: Pick<PatroniClusterInfo['haproxy'], 'host' | 'writePort' | 'readPort' | 'statsPort'>, nodes: PatroniNodeInfo[], dir: string, caFile: string): string {
  // Patroni answers OPTIONS /primary with 200 only on the leader and /replica only on a running
  // replica (over HTTPS, its certificate checked against the sandbox CA); HAProxy polls every 500 ms and closes sessions to a node it marks down, so clients
  // reconnect to the new leader instead of writing into a demoted or dead one.
  const servers = (check: string) =>
    [`    option httpchk OPTIONS ${check}`, '    http-check expect status 200', '    default-server inter 500ms fastinter 250ms fall 2 rise 1 on-marked-down shutdown-sessions']
      .concat(nodes.map((n) => `    server ${n.name} ${n.host}:${n.pgPort} maxconn 100 check port ${n.apiPort} check-ssl verify required ca-file ${caFile}`))
      .join('\n');
  return `# runbook sandbox: HAProxy in front of the Patroni cluster
global
    maxconn 200
    pidfile ${join(dir, 'haproxy.pid')}
    stats socket ${join(dir, 'haproxy.sock')} mode 600 level admin

defaults
    mode tcp
    retries 2
    timeout client 30m
    timeout server 30m
    timeout connect 2s
    timeout check 1s

listen stats
    mode http
    bind ${info.host}:${info.statsPort}
    stats enable
    stats uri /

listen primary
    bind ${info.host}:${info.writePort}
${servers('/primary')}

listen replicas
    bind ${info.host}:${info.readPort}
    balance roundrobin
${servers('/replica')}
`;
}

/**
 * The node control script: what a real deployment does with systemctl over SSH, done on the local
 * processes. `kill` takes Patroni and PostgreSQL down at once with SIGKILL (the machine died);
 * `start` starts the node's Patroni again (as the postgres user when run as root); `keep-aside`
 * renames a stopped node's data directory and prints where it went, with its last checkpoint LSN
 * and timeline; `stall-wal` / `resume-wal` stop and continue the primary's WAL senders (used by
 * tests to make replicas fall behind, so an asynchronous failover really loses commits).
 */
function controlScript(info: { dir: string; nodes: PatroniNodeInfo[]; controlLog: string }): string {
  const patroni = findPatroni();
  const cases = info.nodes.map((n) => `  ${n.name}) dir=${n.dir}; data=${n.dataDir}; conf=${n.configFile}; log=${n.logFile}; pidfile=${n.pidFile} ;;`).join('\n');
  return `#!/bin/bash
# runbook sandbox: control one Patroni node like a host. Usage: node-control ACTION MEMBER [ARG]
set -uo pipefail
action=\${1:?action}; member=\${2:?member}
case "$member" in
${cases}
  *) echo "unknown member $member" >&2; exit 2 ;;
esac
now() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }
record() { echo "$(now) $1 $member" >> ${info.controlLog}; }
# Killed processes can stay zombies for a while before they are reaped: those do not count as running.
group_alive() { ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'; }
pid_alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$s" ] && [ "\${s:0:1}" != Z ]; }
patroni_pgid() { local p; p=$(cat "$pidfile" 2>/dev/null) || return 1; group_alive "$p" && echo "$p"; }
postmaster_pid() { local p; p=$(head -1 "$data/postmaster.pid" 2>/dev/null) || return 1; pid_alive "$p" && echo "$p"; }
case "$action" in
  kill)
    pg=$(patroni_pgid); pm=$(postmaster_pid)
    if [ -z "$pg" ] && [ -z "$pm" ]; then echo '{"acted":false}'; exit 0; fi
    record kill
    # Every backend of a PostgreSQL node leads a process group of its own: each is killed by pid,
    # the stopped ones included (a stalled WAL sender would otherwise hold the shared memory forever).
    children=""; [ -n "$pm" ] && children=$(pgrep -P "$pm")
    [ -n "$pg" ] && kill -KILL -- "-$pg" 2>/dev/null
    [ -n "$pm" ] && kill -KILL "$pm" $children 2>/dev/null
    echo '{"acted":true}' ;;
  start)
    if patroni_pgid >/dev/null; then echo '{"acted":false}'; exit 0; fi
    record start
    cd "$dir"
    runas=(); [ "$(id -u)" = 0 ] && runas=(setpriv --reuid=postgres --regid=postgres --init-groups)
    setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$pidfile" "\${runas[@]}" env HOME="$dir" ${patroni} "$conf" >> "$log" 2>&1 < /dev/null &
    for _ in $(seq 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
    echo '{"acted":true}' ;;
  keep-aside)
    if postmaster_pid >/dev/null; then echo "PostgreSQL of $member is running; refusing to move its data directory" >&2; exit 1; fi
    if [ ! -f "$data/PG_VERSION" ]; then echo '{"acted":false}'; exit 0; fi
    kept="$data.kept-\${3:-$(date -u +%Y%m%dT%H%M%SZ)}"
    if [ -e "$kept" ]; then echo "$kept exists already" >&2; exit 1; fi
    ctl=$(/usr/lib/postgresql/15/bin/pg_controldata "$data" 2>/dev/null)
    lsn=$(sed -n 's/^Latest checkpoint location: *//p' <<<"$ctl"); tli=$(sed -n "s/^Latest checkpoint's TimeLineID: *//p" <<<"$ctl")
    mv "$data" "$kept" || exit 1
    record keep-aside
    printf '{"acted":true,"keptAt":"%s","lastLsn":"%s","timeline":%s}\\n' "$kept" "$lsn" "\${tli:-null}" ;;
  stall-wal|resume-wal)
    sig=STOP; [ "$action" = resume-wal ] && sig=CONT
    pm=$(postmaster_pid) || { echo "PostgreSQL of $member is not running" >&2; exit 1; }
    n=0
    for p in $(pgrep -P "$pm" -f walsender); do kill -$sig "$p" && n=$((n+1)); done
    record "$action"
    echo "{\\"walsenders\\":$n}" ;;
  *) echo "unknown action $action (kill, start, keep-aside, stall-wal, resume-wal)" >&2; exit 2 ;;
esac
`;
}

function httpStatus(url: string, method = 'GET'): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url, { method, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** A client for the cluster's REST API, as the drill's driver builds one: HTTPS with the CA, basic auth. */
export function patroniApi(info: PatroniClusterInfo): PatroniApi {
  return new PatroniApi({ username: info.apiUser, password: () => readFileSync(join(info.secretsDir, info.secrets.apiPassword), 'utf8').trim(), ca: () => readFileSync(info.ca, 'utf8') });
}

/** Runs the node control script as the worker would, returning its JSON answer. */
export async function controlNode(info: PatroniClusterInfo, action: 'kill' | 'start' | 'keep-aside' | 'stall-wal' | 'resume-wal', member: string): Promise<Record<string, unknown>> {
  const { stdout } = await execFileAsync(info.control, [action, member]);
  const last = stdout.trim().split('\n').pop() ?? '{}';
  const result = JSON.parse(last) as Record<string, unknown>;
  if (action === 'start' && result.acted) {
    const node = info.nodes.find((n) => n.name === member)!;
    const pgid = readPid(node.pidFile);
    if (pgid) adopt(pgid, `patroni ${member}`);
  }
  return result;
}

/** The cluster as Patroni sees it (GET /cluster from the first member that answers). */
export async function patroniCluster(info: PatroniClusterInfo): Promise<PatroniClusterJson> {
  let last: unknown;
  for (const n of info.nodes) {
    try {
      return await patroniApi(info).cluster(n.apiUrl);
    } catch (err) {
      last = err;
    }
  }
  throw new Error(`no Patroni member answers: ${String(last)}`);
}

/** Waits until one leader runs, every other member streams from it, and every member reports itself running. */
export async function waitForPatroniHealthy(info: PatroniClusterInfo, timeoutMs = 90_000): Promise<string> {
  let leader = '';
  await waitUntil(
    'the Patroni cluster (a leader and every replica streaming)',
    async () => {
      const c = await patroniCluster(info);
      const l = c.members.find((m) => m.role === 'leader' && m.state === 'running');
      if (!l || c.members.length !== info.nodes.length) return false;
      // A replica's own Patroni reports its state to the DCS once per loop: PostgreSQL can stream
      // while the member still shows "starting" or "creating replica" in /cluster.
      if (!c.members.every((m) => memberUp(m.state))) return false;
      const status = await patroniApi(info).status(info.nodes.find((n) => n.name === l.name)!.apiUrl);
      const streaming = new Set((status.replication ?? []).filter((r) => r.state === 'streaming').map((r) => r.application_name));
      leader = l.name;
      return info.nodes.every((n) => n.name === l.name || streaming.has(n.name));
    },
    { timeoutMs, intervalMs: 250 },
  );
  return leader;
}

async function startPatroniNode(info: PatroniClusterInfo, node: PatroniNodeInfo): Promise<void> {
  const user = postgresOwner();
  const service = spawnService(`patroni ${node.name}`, findPatroni(), [node.configFile], node.logFile, { uid: user?.uid, gid: user?.gid, cwd: node.dir, env: { ...process.env, HOME: node.dir } });
  writeFileSync(node.pidFile, `${service.pid}\n`);
}

/**
 * Starts etcd, three Patroni nodes (the first bootstraps the cluster, the others clone it) and
 * HAProxy, waits until the write port reaches a writable leader and both replicas stream, and creates
 * the sample database. A failed start stops what already started.
 */
export async function startPatroniCluster(opts: PatroniClusterOptions): Promise<PatroniClusterInfo> {
  const host = opts.host ?? '127.0.0.10';
  const nodeHosts = opts.nodeHosts ?? [1, 2, 3].map((i) => nextAddress(host, i));
  const settings = { ...SANDBOX_PATRONI_SETTINGS, ...opts.settings };
  const base = join(reachableClusterDir(opts.dir), 'patroni');
  // Every stack up bootstraps a fresh cluster (new scope, new ports): the last one's nodes are removed.
  rmSync(base, { recursive: true, force: true });
  mkdirSync(base, { recursive: true, mode: 0o755 });
  chmodSync(base, 0o755);
  const pw = { postgres: secret(opts.secretsDir, 'patroni-postgres-password'), replication: secret(opts.secretsDir, 'patroni-replication-password'), api: secret(opts.secretsDir, 'patroni-api-password') };
  // etcd's fsyncs on a busy shared disk can stall a lease renewal past the TTL and fail a healthy
  // leader over; its data is throwaway, so it lives in memory when the machine has /dev/shm.
  const etcdData = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/runbook-etcd-') : join(base, 'etcd');
  const [etcdPort, etcdPeerPort, writePort, readPort, statsPort] = [await freePort(host), await freePort(host), await freePort(host), await freePort(host), await freePort(host)];
  const nodes: PatroniNodeInfo[] = [];
  for (const [i, h] of nodeHosts.entries()) {
    const name = `pg-${i + 1}`;
    const dir = join(base, name);
    const apiPort = await freePort(h);
    nodes.push({ name, host: h, pgPort: await freePort(h), apiPort, apiUrl: `https://${h}:${apiPort}`, dir, dataDir: join(dir, 'data'), configFile: join(dir, 'patroni.yml'), logFile: join(dir, 'patroni.log'), pidFile: join(dir, 'patroni.pid') });
  }
  const info: PatroniClusterInfo = {
    scope: `sandbox-${randomBytes(3).toString('hex')}`,
    dir: base,
    database: opts.database ?? 'app',
    superuser: 'postgres',
    apiUser: 'runbook',
    secrets: { postgresPassword: 'patroni-postgres-password', apiPassword: 'patroni-api-password' },
    secretsDir: opts.secretsDir,
    ca: join(base, 'pki', 'ca.pem'),
    etcd: { pid: 0, host, port: etcdPort, dataDir: etcdData, logFile: join(base, 'etcd.log'), args: [] },
    haproxy: { pid: 0, host, writePort, readPort, statsPort, configFile: join(base, 'haproxy.cfg'), logFile: join(base, 'haproxy.log') },
    nodes,
    control: join(base, 'node-control'),
    controlLog: join(base, 'control.log'),
    settings,
  };
  try {
    info.etcd.args = [
      '--name', 'sandbox',
      '--data-dir', etcdData,
      '--listen-client-urls', `http://${host}:${etcdPort}`,
      '--advertise-client-urls', `http://${host}:${etcdPort}`,
      '--listen-peer-urls', `http://${host}:${etcdPeerPort}`,
      '--initial-advertise-peer-urls', `http://${host}:${etcdPeerPort}`,
      '--initial-cluster', `sandbox=http://${host}:${etcdPeerPort}`,
      '--initial-cluster-state', 'new',
      '--log-level', 'warn',
      '--logger', 'zap',
    ];
    const etcd = spawnService('etcd', findEtcd(), info.etcd.args, info.etcd.logFile);
    info.etcd.pid = etcd.pid;
    await waitUntil('etcd', async () => (await httpStatus(`http://${host}:${etcdPort}/health`)) === 200, { timeoutMs: 30_000, pid: etcd.pid, logFile: etcd.logFile });

    writeFileSync(info.controlLog, '');
    if (opts.archiveTo) info.pgbackrest = writeHostConfig(join(base, 'pgbackrest'), opts.archiveTo, { stanza: PATRONI_STANZA, repoPath: `/patroni/${info.scope}` });
    const ca = await createCa(join(base, 'pki'), 'runbook-patroni-ca');
    chmodSync(join(base, 'pki'), 0o755);
    chmodSync(ca.cert, 0o644);
    for (const node of nodes) {
      mkdirSync(node.dir, { recursive: true, mode: 0o700 });
      chownToPostgres(node.dir);
      ownDir(join(node.dir, 'socket'));
      const cert = await issueCert(join(base, 'pki'), ca, `api-${node.name}`, { usage: 'server', dnsNames: ['localhost'], ips: [node.host] });
      copyFileSync(cert.cert, join(node.dir, 'api.pem'));
      copyFileSync(cert.key, join(node.dir, 'api.key'));
      for (const f of ['api.pem', 'api.key']) {
        chmodSync(join(node.dir, f), 0o600);
        chownToPostgres(join(node.dir, f));
      }
      writeFileSync(node.configFile, patroniConfig(info.scope, node, `${host}:${etcdPort}`, settings, pw, ca.cert, info.pgbackrest && archiveCommand(info.pgbackrest)), { mode: 0o600 });
      chownToPostgres(node.configFile);
      writeFileSync(node.logFile, '', { flag: 'a' });
      chownToPostgres(node.logFile);
    }
    writeFileSync(info.control, controlScript(info), { mode: 0o700 });
    // The first node bootstraps the cluster alone, so it is certain to be the first leader; the others clone it.
    await startPatroniNode(info, nodes[0]);
    await waitUntil(`Patroni ${nodes[0].name} leading`, async () => (await patroniApi(info).health(nodes[0].apiUrl, 'primary')) === 200, { timeoutMs: 60_000, logFile: nodes[0].logFile, intervalMs: 200 });
    for (const node of nodes.slice(1)) await startPatroniNode(info, node);

    writeFileSync(info.haproxy.configFile, haproxyConfig(info.haproxy, nodes, base, ca.cert));
    const haproxy = spawnService('haproxy', findHaproxy(), ['-f', info.haproxy.configFile, '-db'], info.haproxy.logFile);
    info.haproxy.pid = haproxy.pid;

    await waitForPatroniHealthy(info);
    await waitUntil(
      'HAProxy write port reaching the leader',
      async () => {
        const c = new PgClient({ host, port: writePort, user: 'postgres', password: pw.postgres, database: 'postgres', connectionTimeoutMillis: 2_000 });
        c.on('error', () => undefined);
        try {
          await c.connect();
          const rec = (await c.query<{ rec: boolean }>('SELECT pg_is_in_recovery() AS rec')).rows[0].rec;
          if (rec) return false;
          const exists = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [info.database]);
          if (exists.rowCount === 0) await c.query(`CREATE DATABASE "${info.database}"`);
          return true;
        } finally {
          await c.end().catch(() => undefined);
        }
      },
      { timeoutMs: 30_000, pid: haproxy.pid, logFile: haproxy.logFile, intervalMs: 250 },
    );
    // Replicas replay the new database a moment later; reads through the read port need it there.
    await waitUntil(
      `database ${info.database} on every member`,
      async () => {
        for (const n of nodes) {
          const c = new PgClient({ host: n.host, port: n.pgPort, user: 'postgres', password: pw.postgres, database: info.database, connectionTimeoutMillis: 2_000 });
          c.on('error', () => undefined);
          try {
            await c.connect();
          } finally {
            await c.end().catch(() => undefined);
          }
        }
        return true;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    if (info.pgbackrest) {
      const leader = (await patroniCluster(info)).members.find((m) => m.role === 'leader');
      const node = nodes.find((n) => n.name === leader?.name);
      if (!node) throw new Error('the Patroni cluster has no leader to create its pgBackRest stanza on');
      await createStanza(info.pgbackrest, { dataDir: node.dataDir, port: node.pgPort, socketDir: join(node.dir, 'socket') });
    }
    return info;
  } catch (err) {
    await stopPatroniCluster(info).catch(() => undefined);
    throw err;
  }
}

/** The DCS goes down: etcd is killed (its data stays, so startDcs brings the same cluster back). */
export async function stopDcs(info: PatroniClusterInfo): Promise<void> {
  await stopService(info.etcd.pid, 'SIGKILL', 5_000);
}

/** etcd again, on the same address and data; resolves once it answers. */
export async function startDcs(info: PatroniClusterInfo): Promise<void> {
  const etcd = spawnService('etcd', findEtcd(), info.etcd.args, info.etcd.logFile);
  info.etcd.pid = etcd.pid;
  await waitUntil('etcd', async () => (await httpStatus(`http://${info.etcd.host}:${info.etcd.port}/health`)) === 200, { timeoutMs: 30_000, pid: etcd.pid, logFile: etcd.logFile });
}

/** Changes Patroni's dynamic configuration (PATCH /config), e.g. { synchronous_mode: true }. */
export async function patchPatroniConfig(info: PatroniClusterInfo, secretsDir: string, patch: Record<string, unknown>): Promise<void> {
  void secretsDir;
  const body = JSON.stringify(patch);
  let status = 0;
  // Any member that answers will do: the configuration lives in the DCS.
  for (const n of info.nodes) {
    status = (await patroniApi(info).call(n.apiUrl, 'PATCH', 'config', patch).catch(() => ({ status: 0 }))).status;
    if (status !== 0) break;
  }
  if (status !== 200) throw new Error(`PATCH /config ${body}: HTTP ${status}`);
}

export function patroniPids(info: PatroniClusterInfo): number[] {
  return [info.etcd.pid, info.haproxy.pid, ...info.nodes.map((n) => readPid(n.pidFile))].filter((p): p is number => p !== undefined && p > 0);
}

/** Detaches the cluster's processes from this process's exit clean-up (runbook stack up). */
export function disownPatroni(info: PatroniClusterInfo): void {
  for (const pid of patroniPids(info)) disown(pid);
}

/**
 * Stops the sandbox cluster quickly: HAProxy and every Patroni at once with SIGKILL (all members go
 * together, so there is nobody to fail over to and nothing to wait for), then each PostgreSQL with
 * a clean fast shutdown, then etcd, whose in-memory data is removed. The data directories stay until
 * the next stack up, which starts a fresh cluster. Safe to call twice.
 */
export async function stopPatroniCluster(info: PatroniClusterInfo): Promise<void> {
  if (info.haproxy.pid) await stopService(info.haproxy.pid, 'SIGKILL', 5_000);
  await Promise.all(
    info.nodes.map(async (n) => {
      const pgid = readPid(n.pidFile);
      if (pgid && groupAlive(pgid)) await stopService(pgid, 'SIGKILL', 5_000);
      await stopNode(n.dataDir, 'fast').catch(() => undefined);
    }),
  );
  if (info.etcd.pid) await stopService(info.etcd.pid, 'SIGTERM', 10_000);
  if (info.etcd.dataDir.startsWith('/dev/shm/runbook-etcd-')) rmSync(info.etcd.dataDir, { recursive: true, force: true });
}

/** Whether each part runs: etcd, HAProxy, and each node's Patroni. */
export async function patroniStatus(info: PatroniClusterInfo): Promise<{ component: string; pid: number; running: boolean; endpoint: string }[]> {
  const out = [
    { component: 'etcd', pid: info.etcd.pid, running: groupAlive(info.etcd.pid) && (await httpStatus(`http://${info.etcd.host}:${info.etcd.port}/health`)) === 200, endpoint: `${info.etcd.host}:${info.etcd.port}` },
    { component: 'haproxy', pid: info.haproxy.pid, running: groupAlive(info.haproxy.pid), endpoint: `${info.haproxy.host}:${info.haproxy.writePort} (write) ${info.haproxy.host}:${info.haproxy.readPort} (read)` },
  ];
  for (const n of info.nodes) {
    const pid = readPid(n.pidFile) ?? 0;
    out.push({ component: `patroni ${n.name}`, pid, running: pid > 0 && groupAlive(pid) && (await patroniApi(info).health(n.apiUrl, 'health')) !== 0, endpoint: `${n.host}:${n.pgPort} api ${n.apiUrl}` });
  }
  return out;
}
