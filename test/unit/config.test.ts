import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { checkSecretRefs, ConfigError, loadConfig, selectEnvironment } from '../../src/config/load';
import { formatDuration, parseDuration } from '../../src/config/duration';

const dir = mkdtempSync(join(tmpdir(), 'runbook-config-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function writeConfig(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** Loads a file expected to be rejected; returns the error for inspection. */
function rejected(file: string): ConfigError {
  try {
    loadConfig(file);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail(`${file} was accepted`);
}

const base = (env: string) => `version: 1\nenvironments:\n  sandbox:\n${env}`;

// Each case: a malformed file, the field path the error must name, and words the message must contain.
const MALFORMED: { name: string; yaml: string; path: string; says: RegExp }[] = [
  { name: 'port is a string', yaml: base('    databases:\n      main: { host: h, port: "five", database: app, user: u, password: env:P }\n'), path: 'environments.sandbox.databases.main.port', says: /expected number, found "five"/ },
  { name: 'inline password', yaml: base('    databases:\n      main: { host: h, database: app, user: u, password: hunter2 }\n'), path: 'environments.sandbox.databases.main.password', says: /inline secret values are not allowed.*env:NAME or file:/ },
  { name: 'a role for an unknown purpose', yaml: base('    databases:\n      main: { host: h, database: app, user: u, password: env:P, roles: { restore: { user: r, password: env:R } } }\n'), path: 'environments.sandbox.databases.main.roles.restore', says: /unknown field 'restore'/ },
  { name: 'a role without its password', yaml: base('    databases:\n      main: { host: h, database: app, user: u, password: env:P, roles: { backup: { user: runbook_backup } } }\n'), path: 'environments.sandbox.databases.main.roles.backup.password', says: /expected string|required/i },
  { name: 'a role with an inline password', yaml: base('    databases:\n      main: { host: h, database: app, user: u, password: env:P, roles: { checks: { user: c, password: hunter2 } } }\n'), path: 'environments.sandbox.databases.main.roles.checks.password', says: /inline secret values are not allowed/ },
  { name: 'inline private key anywhere', yaml: base('    kubernetes: { context: "-----BEGIN RSA PRIVATE KEY-----abc" }\n'), path: 'environments.sandbox.kubernetes.context', says: /inline key or credential/ },
  { name: 'bad duration', yaml: base('    targets: { rpo: fifteen minutes }\n'), path: 'environments.sandbox.targets.rpo', says: /positive duration.*found "fifteen minutes"/ },
  { name: 'negative duration', yaml: base('    targets: { rto: -5m }\n'), path: 'environments.sandbox.targets.rto', says: /positive duration.*found "-5m"/ },
  { name: 'unknown default environment', yaml: `${base('    {}\n')}defaultEnvironment: prod\n`, path: 'defaultEnvironment', says: /unknown environment 'prod'; defined: sandbox/ },
  { name: 'schedule for unknown environment', yaml: `${base('    {}\n')}schedules:\n  - { id: nightly, runbook: verifyBackup, environment: staging, cron: "0 3 * * *" }\n`, path: 'schedules.0.environment', says: /unknown environment 'staging'/ },
  { name: 'misspelled field', yaml: base('    temporal: { adress: 127.0.0.1:7233 }\n'), path: 'environments.sandbox.temporal.adress', says: /unknown field 'adress'/ },
  { name: 'missing version', yaml: 'environments:\n  sandbox: {}\n', path: 'version', says: /expected version: 1/ },
  { name: 'address without port', yaml: base('    temporal: { address: temporal.internal }\n'), path: 'environments.sandbox.temporal.address', says: /host:port.*found "temporal.internal"/ },
  { name: 'client cert without key', yaml: base('    temporal:\n      tls: { clientCert: file:/etc/c.pem }\n'), path: 'environments.sandbox.temporal.tls', says: /clientCert and clientKey go together/ },
  { name: 'unknown runbook in schedule', yaml: `${base('    {}\n')}schedules:\n  - { id: x, runbook: deleteEverything, environment: sandbox, cron: "0 3 * * *" }\n`, path: 'schedules.0.runbook', says: /expected one of 'smokeTest'.*found "deleteEverything"/ },
  { name: 'SQL injection in database name', yaml: base('    databases:\n      main: { host: h, database: "app; DROP DATABASE app", user: u, password: env:P }\n'), path: 'environments.sandbox.databases.main.database', says: /lower-case identifier/ },
  { name: 'newline in DNS record name', yaml: base('    dns:\n      provider: rfc2136\n      server: 127.0.0.1:53\n      zone: sandbox.test\n      records: { db: { name: "db\\nevil" } }\n'), path: 'environments.sandbox.dns.records.db.name', says: /DNS name/ },
  { name: 'database names an undefined DNS record', yaml: base('    databases:\n      main: { host: h, database: app, user: u, password: env:P, dnsRecord: primary }\n'), path: 'environments.sandbox.databases.main.dnsRecord', says: /not defined under dns.records/ },
  { name: 'not YAML', yaml: 'version: 1\nenvironments: [unclosed\n', path: '', says: /not valid YAML/ },
  { name: 'no environments', yaml: 'version: 1\nenvironments: {}\n', path: 'environments', says: /at least one environment/ },
  { name: "Temporal's persistence database not under databases", yaml: base('    temporal:\n      cluster: { persistenceDatabase: temporal }\n'), path: 'environments.sandbox.temporal.cluster.persistenceDatabase', says: /names database 'temporal', which is not defined under databases/ },
  {
    name: "a drill topology on Temporal's own persistence database",
    yaml: base(
      '    temporal:\n      cluster: { persistenceDatabase: temporal }\n    databases:\n      temporal:\n        host: h\n        database: temporal\n        user: u\n        password: env:P\n        topology:\n          driver: local\n          nodes: [{ name: a, host: h, dataDir: /a }, { name: b, host: h2, dataDir: /b }]\n',
    ),
    path: 'environments.sandbox.databases.temporal.topology',
    says: /persistence of this environment's own Temporal.*drill it from an environment whose temporal: is another \(ops\) Temporal/,
  },
  { name: 'no frontend at all for high availability', yaml: base('    temporal:\n      cluster: { persistenceDatabase: t, minimumHosts: { frontend: 0 } }\n    databases:\n      t: { host: h, database: temporal, user: u, password: env:P }\n'), path: 'environments.sandbox.temporal.cluster.minimumHosts.frontend', says: />=1|at least 1|too small/ },
  { name: 'database with neither a service address nor a topology', yaml: base('    databases:\n      main: { database: app, user: u, password: env:P }\n'), path: 'environments.sandbox.databases.main.host', says: /set host .*or topology/ },
  { name: 'a words RPO target', yaml: base('    targets: { rpo: none }\n'), path: 'environments.sandbox.targets.rpo', says: /expected 0 \(nothing may be lost\) or a positive duration.*found "none"/ },
  { name: 'unknown topology driver', yaml: base('    databases:\n      main: { host: h, database: app, user: u, password: env:P, topology: { driver: kubernetes } }\n'), path: 'environments.sandbox.databases.main.topology.driver', says: /expected driver: local or driver: patroni/ },
  { name: 'Patroni topology without its commands', yaml: base('    databases:\n      ha:\n        host: haproxy\n        database: app\n        user: u\n        password: env:P\n        topology:\n          driver: patroni\n          members:\n            - { name: pg-1, host: h1, api: "https://h1:8008" }\n            - { name: pg-2, host: h2, api: "https://h2:8008" }\n'), path: 'environments.sandbox.databases.ha.topology.commands', says: /expected object/ },
  { name: 'Patroni member API that is not a URL', yaml: base('    databases:\n      ha:\n        host: haproxy\n        database: app\n        user: u\n        password: env:P\n        topology:\n          driver: patroni\n          members:\n            - { name: pg-1, host: h1, api: "h1:8008" }\n            - { name: pg-2, host: h2, api: "https://h2:8008" }\n          commands: { fault: [ssh, "{host}", kill], recover: [ssh, "{host}", start] }\n'), path: 'environments.sandbox.databases.ha.topology.members.0.api', says: /base URL of a Patroni REST API/ },
  { name: 'Patroni topology with one member', yaml: base('    databases:\n      ha:\n        host: haproxy\n        database: app\n        user: u\n        password: env:P\n        topology:\n          driver: patroni\n          members:\n            - { name: pg-1, host: h1, api: "https://h1:8008" }\n          commands: { fault: [ssh, "{host}", kill], recover: [ssh, "{host}", start] }\n'), path: 'environments.sandbox.databases.ha.topology.members', says: /list every member/ },
  { name: 'Patroni API user without a password', yaml: base('    databases:\n      ha:\n        host: haproxy\n        database: app\n        user: u\n        password: env:P\n        topology:\n          driver: patroni\n          members:\n            - { name: pg-1, host: h1, api: "https://h1:8008" }\n            - { name: pg-2, host: h2, api: "https://h2:8008" }\n          commands: { fault: [ssh, "{host}", kill], recover: [ssh, "{host}", start] }\n          api: { username: runbook }\n'), path: 'environments.sandbox.databases.ha.topology.api', says: /username and password go together/ },
  { name: 'Patroni fault command as one shell string', yaml: base('    databases:\n      ha:\n        host: haproxy\n        database: app\n        user: u\n        password: env:P\n        topology:\n          driver: patroni\n          members:\n            - { name: pg-1, host: h1, api: "https://h1:8008" }\n            - { name: pg-2, host: h2, api: "https://h2:8008" }\n          commands: { fault: "ssh h kill", recover: [start] }\n'), path: 'environments.sandbox.databases.ha.topology.commands.fault', says: /expected array/ },
  { name: 'inline Patroni API password', yaml: base('    databases:\n      ha:\n        host: haproxy\n        database: app\n        user: u\n        password: env:P\n        topology:\n          driver: patroni\n          members:\n            - { name: pg-1, host: h1, api: "https://h1:8008" }\n            - { name: pg-2, host: h2, api: "https://h2:8008" }\n          commands: { fault: [ssh, "{host}", kill], recover: [ssh, "{host}", start] }\n          api: { username: runbook, password: hunter2 }\n'), path: 'environments.sandbox.databases.ha.topology.api.password', says: /inline secret values are not allowed/ },
  { name: 'huge string in approver list', yaml: base(`    approvers: { default: ["${'a'.repeat(5000)}"] }\n`), path: 'environments.sandbox.approvers.default.0', says: /approver id.*5000 characters/ },
];

describe('a malformed config file is refused with an error naming the field', () => {
  for (const c of MALFORMED) {
    test(c.name, () => {
      const file = writeConfig(`${c.name.replace(/\W+/g, '-')}.yaml`, c.yaml);
      const err = rejected(file);
      const problem = err.problems.find((p) => p.path === c.path);
      assert.ok(problem, `no problem reported at '${c.path}'; got: ${err.message}`);
      assert.match(problem.message, c.says);
      assert.ok(err.message.startsWith(`${file}: `), 'the message starts with the file name');
      assert.ok(!/\n\s+at /.test(err.message), 'no stack trace in the message');
      if (c.path) assert.ok(problem.line && problem.line >= 1, 'the problem carries a line number');
    });
  }
});

describe('secret references', () => {
  test('a file: reference to a missing file is refused, naming the field and the path', () => {
    const file = writeConfig('missing-secret.yaml', base('    databases:\n      main: { host: h, database: app, user: u, password: file:secrets/nope }\n'));
    const loaded = loadConfig(file);
    assert.throws(
      () => checkSecretRefs(loaded, ['sandbox']),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.problems[0].path === 'environments.sandbox.databases.main.password' &&
        err.problems[0].message.includes(join(dir, 'secrets/nope')) &&
        err.problems[0].message.includes('does not exist'),
    );
  });

  test('an env: reference to an unset variable is refused; once set, it resolves', () => {
    const file = writeConfig('env-secret.yaml', base('    temporal: { apiKey: env:RUNBOOK_TEST_API_KEY_X }\n'));
    const loaded = loadConfig(file);
    delete process.env.RUNBOOK_TEST_API_KEY_X;
    assert.throws(() => checkSecretRefs(loaded, ['sandbox']), /RUNBOOK_TEST_API_KEY_X is not set/);
    process.env.RUNBOOK_TEST_API_KEY_X = 'k';
    try {
      checkSecretRefs(loaded, ['sandbox']);
    } finally {
      delete process.env.RUNBOOK_TEST_API_KEY_X;
    }
  });
});

describe('a valid config', () => {
  test('the example config loads with defaults applied and durations in milliseconds', () => {
    const loaded = loadConfig(join(__dirname, '../../runbook.example.yaml'));
    const staging = loaded.config.environments.staging;
    assert.equal(staging.targets.rpo, 15 * 60_000);
    assert.equal(staging.targets.rto, 3_600_000);
    assert.equal(staging.databases.main.port, 5432);
    assert.equal(loaded.config.environments.production.temporal.taskQueues.critical, 'critical-queue');
    assert.equal(loaded.config.worker.tuning.shutdownGraceTime, 30_000);
    assert.deepEqual(loaded.config.schedules.map((s) => s.id), [
      'nightly-backup',
      'nightly-restore-test',
      'ledger-restore-canary',
      'ledger-nightly-backup',
      'ledger-weekly-full-backup',
      'ledger-nightly-pitr-restore-test',
      'quarterly-dr-drill',
    ]);
    assert.equal(staging.databases.ledger.backups.method, 'pgbackrest');
    assert.equal(staging.databases.ledger.backups.pgbackrest!.compressType, 'lz4');
    const prod = loaded.config.environments.production;
    assert.equal(prod.targets.rpo, 0, 'rpo: 0 is a target of no loss');
    assert.equal(prod.databases.main.roles.drill?.user, 'runbook_drill');
    assert.equal(prod.databases.main.roles.canary, undefined, 'a purpose without a role falls back to user');
    const t = prod.databases.main.topology!;
    assert.equal(t.driver, 'patroni');
    if (t.driver === 'patroni') {
      assert.equal(t.members.length, 3);
      assert.equal(t.electionTimeout, 120_000);
      assert.equal(t.rejoinTimeout, 600_000);
    }
  });

  test('environment selection: explicit, then default; an unknown name lists the defined ones', () => {
    const loaded = loadConfig(join(__dirname, '../../runbook.example.yaml'));
    assert.equal(selectEnvironment(loaded).name, 'staging');
    assert.equal(selectEnvironment(loaded, 'production').name, 'production');
    assert.throws(() => selectEnvironment(loaded, 'prod'), /unknown environment 'prod'; defined: staging, production/);
  });
});

describe('durations', () => {
  const cases: [string, number | undefined][] = [
    ['30s', 30_000],
    ['15m', 900_000],
    ['1h30m', 5_400_000],
    ['90d', 7_776_000_000],
    ['500ms', 500],
    ['1.5h', 5_400_000],
    ['0s', undefined],
    ['-5m', undefined],
    ['5', undefined],
    ['5 minutes', undefined],
    ['', undefined],
  ];
  for (const [text, ms] of cases) test(`"${text}" -> ${ms}`, () => assert.equal(parseDuration(text), ms));
  test('formatting round-trips compact forms', () => {
    assert.equal(formatDuration(5_400_000), '1h30m');
    assert.equal(formatDuration(250), '250ms');
  });
});
