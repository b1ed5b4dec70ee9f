import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { judgeCanary, CANARY_COMMIT_MARGIN_MS } from '../../src/activities/canary';
import { majorVersion } from '../../src/activities/dumpScratch';
import { DEFAULT_PART_BYTES, partSize, planCapacity, planParts, S3_MAX_PART_BYTES } from '../../src/activities/multipart';
import { ConfigError, loadConfig } from '../../src/config/load';
import { parseInfo, parseLsn, parseSegmentName, parseVerify, requiredSegments, segmentName, segmentOfLsn } from '../../src/system/pgbackrest';
import { validateVerifyBackupInput } from '../../src/workflows/verifyBackup';

const MIB = 1024 * 1024;
const SEG = 16 * MIB;

describe('dump uploads: part sizes grow with the dump', () => {
  test('fixed 8 MiB parts would cap a dump near 78 GiB; the plan for a 5 TB database fits within 10,000 parts', () => {
    assert.equal(planCapacity({ maxParts: 10_000, baseBytes: DEFAULT_PART_BYTES }) > 78 * 1024 * MIB, true);
    const plan = planParts(5e12);
    assert.ok(plan.baseBytes > DEFAULT_PART_BYTES);
    assert.ok(planCapacity(plan) >= 5e12, 'the estimate fits');
    // The first half of the parts alone hold the estimate, so memory stays at about two parts of ~1 GB.
    assert.ok(plan.baseBytes * 5_000 >= 5e12);
    assert.ok(plan.baseBytes <= 1.1e9);
  });

  test('an estimate several times too small still fits: each later quarter, eighth, ... doubles the part size, never above 5 GiB', () => {
    const plan = planParts(10 * 1024 * MIB);
    assert.ok(planCapacity(plan) >= 8 * 10 * 1024 * MIB);
    const sizes = Array.from({ length: 10_000 }, (_, i) => partSize(plan, i));
    for (let i = 1; i < sizes.length; i++) assert.ok(sizes[i] >= sizes[i - 1], 'sizes never shrink');
    assert.equal(sizes[0], plan.baseBytes);
    assert.equal(sizes[5_000], plan.baseBytes * 2);
    assert.equal(sizes[7_500], plan.baseBytes * 4);
    assert.ok(Math.max(...sizes) <= S3_MAX_PART_BYTES);
  });

  test('with the part limit lowered to 4, the parts of a 40 MB dump are larger than 8 MiB and there are at most 4', () => {
    const plan = planParts(40 * MIB, 4);
    let left = 40 * MIB;
    let parts = 0;
    while (left > 0) left -= partSize(plan, parts++);
    assert.ok(parts <= 4);
    assert.ok(plan.baseBytes > 8 * MIB);
    assert.throws(() => planParts(1, 1), /at least 2/);
  });

  test('the major version of a dump is read from server_version', () => {
    assert.equal(majorVersion('15.18 (Debian 15.18-0+deb12u1)'), '15');
    assert.equal(majorVersion('9.6.24'), '9.6');
  });
});

describe('WAL arithmetic for the archive scan', () => {
  test('segments, LSNs and names agree with PostgreSQL (16 MB segments)', () => {
    assert.equal(parseLsn('0/3000028'), 0x3000028n);
    assert.equal(segmentOfLsn('0/3000028', SEG), 3n);
    assert.equal(segmentName(1, 3n, SEG), '000000010000000000000003');
    assert.equal(segmentName(1, 256n, SEG), '000000010000000100000000');
    assert.deepEqual(parseSegmentName('00000002000000010000000A', SEG), { timeline: 2, segno: 266n });
    // 64 MB segments: 64 per 4 GB, so the low part never exceeds 3F.
    assert.equal(segmentName(1, 64n, 64 * MIB), '000000010000000100000000');
  });

  test('a range that crosses a timeline switch reads the switch segment and those after it from the new timeline', () => {
    const history = [{ timeline: 1, switchLsn: '0/5000100' }];
    assert.deepEqual(requiredSegments(3n, 7n, 2, history, SEG), [
      '000000010000000000000003',
      '000000010000000000000004',
      '000000020000000000000005',
      '000000020000000000000006',
      '000000020000000000000007',
    ]);
    assert.deepEqual(requiredSegments(3n, 4n, 1, [], SEG), ['000000010000000000000003', '000000010000000000000004']);
  });
});

describe('what pgBackRest prints', () => {
  test('verify: a backup with an invalid file fails even though pgBackRest 2.45 exits 0', () => {
    const text = [
      'stanza: main',
      'status: error',
      '  archiveId: 15-1, total WAL checked: 11, total valid WAL: 11',
      '    missing: 0, checksum invalid: 0, size invalid: 0, other: 0',
      '  backup: 20261201-112143F, status: invalid, total files checked: 966, total valid files: 965',
      '    missing: 0, checksum invalid: 1, size invalid: 0, other: 0',
      '  backup: 20261201-112248F, status: valid, total files checked: 966, total valid files: 966',
      '    missing: 0, checksum invalid: 0, size invalid: 0, other: 0',
    ].join('\n');
    const v = parseVerify(text);
    assert.equal(v.ok, false);
    assert.equal(v.backupsChecked, 2);
    assert.deepEqual(v.problems, ['backup 20261201-112143F is invalid (965 of 966 files valid)', 'backup 20261201-112143F: 1 with an invalid checksum']);
    assert.equal(parseVerify(text.replace('status: error', 'status: ok').replace(/invalid, total files checked: 966, total valid files: 965\n {4}missing: 0, checksum invalid: 1/, 'valid, total files checked: 966, total valid files: 966\n    missing: 0, checksum invalid: 0')).ok, true);
  });

  test('info: the system id survives JSON (it exceeds 2^53), backups keep their annotations', () => {
    const json = `[{"name":"app","status":{"code":0,"message":"ok"},"db":[{"id":1,"system-id":7714293084716161521,"version":"15"}],"archive":[{"database":{"id":1},"id":"15-1","min":"000000010000000000000001","max":"000000010000000000000009"}],"backup":[{"label":"20261201-112143F","type":"full","prior":null,"reference":null,"timestamp":{"start":1796124103,"stop":1796124154},"lsn":{"start":"0/3000028","stop":"0/3000138"},"archive":{"start":"000000010000000000000003","stop":"000000010000000000000003"},"info":{"size":23123694,"delta":23123694,"repository":{"size":3052700,"delta":3052700}},"annotation":{"runbook-backup-id":"x"},"database":{"id":1}}]}]`;
    const info = parseInfo(json, 'app');
    assert.equal(info.systemId, '7714293084716161521');
    assert.deepEqual(info.archive, { id: '15-1', min: '000000010000000000000001', max: '000000010000000000000009' });
    assert.equal(info.backups[0].annotation['runbook-backup-id'], 'x');
    assert.equal(info.backups[0].stoppedAt, new Date(1796124154_000).toISOString());
    assert.equal(parseInfo(json, 'other').status.message, 'missing stanza path');
  });
});

describe('the restore canary', () => {
  const row = (id: number, at: string) => ({ id, writtenAt: at, lsn: '0/1' });
  const source = [row(1, '2026-01-01T00:00:00.000Z'), row(2, '2026-01-01T00:05:00.000Z'), row(3, '2026-01-01T00:10:00.000Z')];
  const target = Date.parse('2026-01-01T00:07:00.000Z');

  test('exactly the rows written before the target pass', () => {
    const v = judgeCanary(source, source.slice(0, 2), { before: target, after: target }, 'the target');
    assert.equal(v.passed, true, v.detail);
    assert.equal(v.expected, 2);
  });

  test('a row missing, a row from after the target, or a row the source never had fails, naming it', () => {
    assert.match(judgeCanary(source, source.slice(0, 1), { before: target, after: target }, 'the target').detail, /1 row\(s\) written before the target are missing: #2/);
    assert.match(judgeCanary(source, source, { before: target, after: target }, 'the target').detail, /1 row\(s\) written after the target are present: #3/);
    assert.match(judgeCanary(source, [...source.slice(0, 2), row(9, '2026-01-01T00:06:00.000Z')], { before: target, after: target }, 'the target').detail, /the source never had: #9/);
  });

  test('a row written just before the target may have committed after it: it is not judged; no row at all proves nothing', () => {
    const close = Date.parse(source[1].writtenAt) + CANARY_COMMIT_MARGIN_MS / 2;
    assert.equal(judgeCanary(source, source.slice(0, 1), { before: close, after: close }, 'the target').passed, true);
    assert.equal(judgeCanary(source, source.slice(0, 2), { before: close, after: close }, 'the target').passed, true);
    assert.match(judgeCanary(source, [], { before: Date.parse('2025-01-01T00:00:00Z'), after: Date.parse('2025-01-01T00:00:00Z') }, 'the target').detail, /no canary row was written before the target/);
  });
});

describe('input and config for point-in-time restore tests', () => {
  const dir = mkdtempSync(join(tmpdir(), 'runbook-pgbackrest-unit-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const bad: { name: string; selection: unknown; says: RegExp }[] = [
    { name: 'a time without its zone', selection: { mode: 'time', at: '2026-01-01 03:00' }, says: /selection\.at: expected a time with its zone/ },
    { name: 'a time in the future', selection: { mode: 'time', at: '2999-01-01T00:00:00Z' }, says: /is in the future/ },
    { name: 'a label with a path in it', selection: { mode: 'label', label: '../../backup' }, says: /selection\.label: expected a pgBackRest backup label/ },
    { name: 'a window that is not a duration', selection: { mode: 'randomTime', within: 'a week' }, says: /selection\.within: expected a duration/ },
    { name: 'a window of ten years', selection: { mode: 'randomTime', within: '3650d' }, says: /at most 400d/ },
    { name: 'an unknown mode', selection: { mode: 'whenever' }, says: /expected latest, random, key, label, time or randomTime/ },
  ];
  for (const b of bad) {
    test(`refused: ${b.name}`, () => {
      assert.throws(() => validateVerifyBackupInput({ environment: 'sandbox', database: 'pitr', selection: b.selection }), b.says);
    });
  }
  test('accepted: a time with an offset, a label of an incremental backup, a random time within 36h', () => {
    for (const selection of [{ mode: 'time', at: '2026-01-01T03:00:00+02:00' }, { mode: 'label', label: '20261125-030000F_20261126-030000I' }, { mode: 'randomTime', within: '36h' }]) {
      validateVerifyBackupInput({ environment: 'sandbox', database: 'pitr', selection });
    }
  });

  const db = (extra: string) => `version: 1\nenvironments:\n  sandbox:\n    backups: { bucket: bkp }\n    databases:\n      pitr: { host: h, database: app, user: u, password: env:P${extra} }\n`;
  const cases: { name: string; yaml: string; path: string; says: RegExp }[] = [
    {
      name: 'a plain-HTTP S3 endpoint',
      yaml: db(', backups: { method: pgbackrest, pgbackrest: { stanza: app, dataDir: /var/lib/pg, repo: { bucket: bkp, endpoint: "http://127.0.0.1:9000" } } }'),
      path: 'environments.sandbox.databases.pitr.backups.pgbackrest.repo.endpoint',
      says: /pgBackRest 2\.45 speaks S3 only over HTTPS.*pgbackrest#2612/,
    },
    { name: 'pgbackrest without its block', yaml: db(', backups: { method: pgbackrest }'), path: 'environments.sandbox.databases.pitr.backups.pgbackrest', says: /method: pgbackrest needs a pgbackrest: block/ },
    { name: 'pgbackrest without a data directory', yaml: db(', backups: { method: pgbackrest, pgbackrest: { stanza: app, repo: { bucket: bkp } } }'), path: 'environments.sandbox.databases.pitr.backups.pgbackrest.dataDir', says: /needs the data directory/ },
    { name: 'tls access without certificates', yaml: db(', backups: { method: pgbackrest, pgbackrest: { stanza: app, dataDir: /d, access: tls, repo: { bucket: bkp } } }'), path: 'environments.sandbox.databases.pitr.backups.pgbackrest.tls', says: /access: tls needs tls/ },
    { name: 'a restore server choice without a host', yaml: db(', restoreTest: { into: restoreServer }'), path: 'environments.sandbox.databases.pitr.restoreTest.host', says: /into: restoreServer needs host/ },
    { name: 'a host with a scratch instance', yaml: db(', restoreTest: { into: scratchInstance, host: db2 }'), path: 'environments.sandbox.databases.pitr.restoreTest.host', says: /drop them, or set into: restoreServer/ },
    { name: 'a relative scratch directory', yaml: db(', restoreTest: { scratchDir: scratch }'), path: 'environments.sandbox.databases.pitr.restoreTest.scratchDir', says: /absolute directory path/ },
    { name: 'globals with pgBackRest', yaml: db(', backups: { method: pgbackrest, globals: true, pgbackrest: { stanza: app, dataDir: /d, repo: { bucket: bkp } } }'), path: 'environments.sandbox.databases.pitr.backups.globals', says: /globals applies to dumps/ },
  ];
  for (const c of cases) {
    test(`config refused: ${c.name}`, () => {
      const file = join(dir, `${c.name.replace(/\W+/g, '-')}.yaml`);
      writeFileSync(file, c.yaml);
      let err: unknown;
      try {
        loadConfig(file);
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof ConfigError, String(err));
      const problem = err.problems.find((p) => p.path === c.path);
      assert.ok(problem, `no problem at ${c.path}: ${err.message}`);
      assert.match(problem.message, c.says);
    });
  }
  test('config: a dump database restores into a scratch instance unless it names a restore server', () => {
    const file = join(dir, 'defaults.yaml');
    writeFileSync(file, db(''));
    const rt = loadConfig(file).config.environments.sandbox.databases.pitr.restoreTest;
    assert.equal(rt.into, undefined);
    assert.equal(rt.host, undefined);
    assert.equal(rt.scratchDir, '/var/tmp/runbook-scratch');
  });
});
