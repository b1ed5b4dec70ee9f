import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, chmodSync, writeFileSync } from 'node:fs';
import { ApplicationFailure } from '@temporalio/common';
import { createTopologyDriver } from '../../src/topology';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Client as PgClient } from 'pg';
import { loadConfig } from '../../src/config/load';
import { readStackState } from '../../src/sandbox/stack';
import { patroniApi, patroniCluster, patroniPids } from '../../src/sandbox/patroni';
import { memberUp } from '../../src/topology/patroniApi';
import { processesInGroup, runCli, superuserPassword, waitFor } from '../helpers';

const root = mkdtempSync(join(tmpdir(), 'runbook-patroni-stack-'));
chmodSync(root, 0o755);
after(() => rmSync(root, { recursive: true, force: true }));

async function sql<T extends Record<string, unknown>>(host: string, port: number, password: string, text: string, database = 'app'): Promise<T[]> {
  const pg = new PgClient({ host, port, user: 'postgres', password, database, connectionTimeoutMillis: 5_000 });
  await pg.connect();
  try {
    return (await pg.query<T>(text)).rows;
  } finally {
    await pg.end();
  }
}

function ownerOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
}

describe('the Patroni cluster in the sandbox', () => {
  test('runbook stack up --with-patroni starts etcd, three Patroni nodes and HAProxy; writes go to the leader through HAProxy; the REST API wants TLS and credentials; stack down leaves nothing running', async () => {
    const dir = join(root, 'stack');
    const up = await runCli(['stack', 'up', '--dir', dir, '--only', 'patroni', '--with-patroni', '--headless', '--json'], { timeoutMs: 180_000 });
    assert.equal(up.code, 0, up.stderr);
    const state = readStackState(dir)!;
    const p = state.patroni!;
    let pids: number[] = [];
    try {
      pids = patroniPids(p);
      assert.equal(pids.length, 5, 'etcd, HAProxy and three Patroni processes');
      // PostgreSQL refuses to run as root: Patroni and its PostgreSQL run as the postgres user.
      if (process.getuid?.() === 0) for (const n of p.nodes) assert.notEqual(ownerOf(Number(readFileSync(n.pidFile, 'utf8'))), 0, `${n.name}'s Patroni runs as root`);
      assert.deepEqual(p.nodes.map((n) => n.host), ['127.0.0.11', '127.0.0.12', '127.0.0.13']);

      const cluster = await patroniCluster(p);
      assert.deepEqual(cluster.members.map((m) => m.role).sort(), ['leader', 'replica', 'replica']);
      assert.ok(cluster.members.every((m) => memberUp(m.state)), JSON.stringify(cluster.members));

      // The config the stack wrote describes the cluster as the drill and the backups use it.
      const loaded = loadConfig(state.configFile);
      const db = loaded.config.environments.sandbox.databases.ha;
      assert.equal(db.topology?.driver, 'patroni');
      assert.equal(db.host, p.haproxy.host);
      assert.equal(db.port, p.haproxy.writePort);
      const password = superuserPassword(state, 'patroni-postgres-password');
      // The runbooks log in as the sandbox's least-privilege roles, created on the leader and replicated.
      const logins = [db.user, ...Object.values(db.roles).map((r) => r!.user)];
      assert.equal(logins.length, 5);
      const roles = await sql<{ rolname: string; rolsuper: boolean }>(p.haproxy.host, p.haproxy.writePort, password, `SELECT rolname, rolsuper FROM pg_roles WHERE rolname IN (${logins.map((l) => `'${l}'`).join(', ')})`);
      assert.deepEqual(roles.map((r) => r.rolsuper), logins.map(() => false));

      // The write port reaches the leader (a write commits there); the read port a replica.
      const leader = cluster.members.find((m) => m.role === 'leader')!;
      const [w] = await sql<{ addr: string; rec: boolean }>(p.haproxy.host, p.haproxy.writePort, password, 'SELECT host(inet_server_addr()) AS addr, pg_is_in_recovery() AS rec');
      assert.deepEqual(w, { addr: leader.host, rec: false });
      await sql(p.haproxy.host, p.haproxy.writePort, password, 'CREATE TABLE probe (id int); INSERT INTO probe VALUES (1)');
      const [r] = await sql<{ addr: string; rec: boolean }>(p.haproxy.host, p.haproxy.readPort, password, 'SELECT host(inet_server_addr()) AS addr, pg_is_in_recovery() AS rec');
      assert.equal(r.rec, true);
      assert.notEqual(r.addr, leader.host);

      // The REST API speaks HTTPS and wants its credentials: the driver passes with the config's CA and
      // password; without the CA the certificate is refused, and with a wrong password Patroni refuses the switchover.
      const driver = createTopologyDriver(db, loaded.baseDir)!;
      const healthy = await driver.describe();
      assert.deepEqual(healthy.problems, []);
      assert.equal(healthy.primary, leader.name);
      assert.equal(healthy.dcs?.reachable, true);
      const t = db.topology!;
      assert.equal(t.driver, 'patroni');
      if (t.driver === 'patroni') {
        const noCa = await createTopologyDriver({ ...db, topology: { ...t, api: { ...t.api, tls: undefined } } }, loaded.baseDir)!.describe();
        assert.match(noCa.problems.join('; '), /self-signed certificate|unable to verify|certificate/);
        writeFileSync(join(dir, 'secrets', 'wrong-api-password'), 'not-the-password\n', { mode: 0o600 });
        const wrongPassword = createTopologyDriver({ ...db, topology: { ...t, api: { ...t.api, password: 'file:secrets/wrong-api-password' } } }, loaded.baseDir)!;
        const replica = cluster.members.find((m) => m.role !== 'leader')!.name;
        await assert.rejects(wrongPassword.switchover({ from: leader.name, to: replica, progress: () => undefined }), (err: ApplicationFailure) => err.type === 'AuthenticationFailed' && /credentials were refused/.test(err.message));
        assert.equal((await driver.describe()).primary, leader.name, 'nothing switched over');
      }

      // A DCS that stalls for a moment (etcd frozen, as a starved etcd would be) puts the leader in
      // failsafe mode; a reading taken then is confirmed by reading again, and the blip is not
      // reported as a DCS outage once the leader reaches etcd again.
      process.kill(p.etcd.pid, 'SIGSTOP');
      let resumed = false;
      try {
        await waitFor('the leader to enter failsafe mode', async () => (await patroniApi(p).status(p.nodes.find((n) => n.name === leader.name)!.apiUrl)).failsafe_mode_is_active === true, 60_000, 250);
        const reading = driver.describe();
        await new Promise((r) => setTimeout(r, 300));
        process.kill(p.etcd.pid, 'SIGCONT');
        resumed = true;
        const blip = await reading;
        assert.equal(blip.dcs?.reachable, true, blip.dcs?.detail);
        assert.match(blip.dcs!.detail, /^reachable from every member again after [\d.]+ s \(first reading: .*(not reachable from|GET \/cluster failed)/);
        assert.deepEqual(blip.problems, []);
      } finally {
        if (!resumed) process.kill(p.etcd.pid, 'SIGCONT');
      }

      const status = await runCli(['stack', 'status', '--dir', dir, '--json']);
      assert.equal(status.code, 0, status.stdout);
      const components = (JSON.parse(status.stdout) as { components: { component: string; running: boolean }[] }).components;
      assert.deepEqual(components.map((c) => c.component), ['etcd', 'haproxy', 'patroni pg-1', 'patroni pg-2', 'patroni pg-3']);
      assert.ok(components.every((c) => c.running));
    } finally {
      const down = await runCli(['stack', 'down', '--dir', dir, '--json'], { timeoutMs: 120_000 });
      assert.equal(down.code, 0, down.stderr);
    }
    for (const pid of pids) assert.deepEqual(processesInGroup(pid), [], `process group ${pid} is gone`);
    for (const n of p.nodes) assert.equal(existsSync(join(n.dataDir, 'postmaster.pid')), false, `${n.name}'s PostgreSQL stopped cleanly`);
    assert.equal(existsSync(p.etcd.dataDir), false, "etcd's in-memory data is removed");
  });
});
