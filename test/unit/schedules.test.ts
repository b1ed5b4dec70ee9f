import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config/load';
import { desiredSchedules } from '../../src/schedules/plan';
import { renderRestoreReportMarkdown, RestoreReport } from '../../src/activities/reports';

const config = (schedules: string) =>
  parseConfig(
    `version: 1\nenvironments:\n  staging:\n    temporal: { taskQueues: { batch: nightly-jobs } }\n  prod: {}\nschedules:\n${schedules}`,
    'runbook.yaml',
  );

const refuseBadDatabase = (input: unknown) => {
  if ((input as { database?: string }).database === 'bad') throw new Error('database: expected a database key');
  return input;
};

const refuseMissingImage = (input: unknown) => {
  if (!(input as { image?: string }).image) throw new Error('image: expected an image reference with a tag');
  return input;
};

describe('schedule plan', () => {
  test('a schedule becomes a definition with the runbook queue, policies and a stable hash', () => {
    const loaded = config('  - { id: nightly, runbook: verifyBackup, environment: staging, cron: "0 3 * * *", timezone: UTC, input: { database: main }, jitter: 5m }\n');
    const [d] = desiredSchedules(loaded, {});
    assert.equal(d.taskQueue, 'nightly-jobs');
    assert.equal(d.overlap, 'SKIP');
    assert.equal(d.catchupWindowMs, 3_600_000);
    assert.equal(d.jitterMs, 300_000);
    assert.deepEqual(d.input, { database: 'main', environment: 'staging' });
    assert.equal(d.hash, desiredSchedules(loaded, {})[0].hash, 'the same config gives the same hash');
    const other = config('  - { id: nightly, runbook: verifyBackup, environment: staging, cron: "0 4 * * *", timezone: UTC, input: { database: main }, jitter: 5m }\n');
    assert.notEqual(desiredSchedules(other, {})[0].hash, d.hash, 'a changed cron changes the hash');
  });

  test('--env keeps only that environment', () => {
    const loaded = config('  - { id: a, runbook: smokeTest, environment: staging, cron: "0 * * * *" }\n  - { id: b, runbook: smokeTest, environment: prod, cron: "0 * * * *" }\n');
    assert.deepEqual(desiredSchedules(loaded, {}, 'prod').map((d) => d.scheduleId), ['b']);
  });

  test('every bad entry is reported at once, naming the entry, and nothing is planned', () => {
    const loaded = config(
      '  - { id: ok, runbook: smokeTest, environment: staging, cron: "0 * * * *" }\n' +
        '  - { id: rollout, runbook: rollout, environment: staging, cron: "0 9 * * 1", input: { deployment: web } }\n' +
        '  - { id: restore, runbook: verifyBackup, environment: staging, cron: "0 3 * * *", input: { database: bad } }\n',
    );
    assert.throws(
      () => desiredSchedules(loaded, { verifyBackup: refuseBadDatabase, rollout: refuseMissingImage }),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.problems.length === 2 &&
        err.problems[0].path === 'schedules.1.input' &&
        /image: expected an image reference/.test(err.problems[0].message) &&
        err.problems[1].path === 'schedules.2.input' &&
        /no schedule was changed/.test(err.problems[1].message),
    );
  });
});

describe('restore report', () => {
  const report: RestoreReport = {
    testId: 'abc123def0',
    workflowId: 'verifyBackup-prod-x',
    environment: 'prod',
    database: 'main',
    passed: false,
    reasons: ['RPO violated: the newest backup is 3.0h old, the target is 15m'],
    selection: 'latest',
    backupId: '20261125T030000Z-a1b2c3',
    backupEndedAt: '2026-11-25T03:00:10Z',
    backupAgeMs: 10_800_000,
    rpo: { limitMs: 900_000, newestBackupAgeMs: 10_800_000, met: false },
    restore: { bytes: 1234, durationMs: 2_500, mode: 'stream', jobs: 1 },
    checks: [
      { name: 'restore completed', passed: true, detail: 'pg_restore exited 0' },
      { name: 'table public.orders', passed: false, detail: 'expected 10 rows | found 9' },
    ],
    scratchDatabase: 'restore_test_abc123def0',
    scratchDropped: true,
    startedAt: '2026-11-25T06:00:00Z',
    endedAt: '2026-11-25T06:00:05Z',
  };

  test('renders the verdict, the reasons and one table row per check, escaping pipes', () => {
    const md = renderRestoreReportMarkdown(report);
    assert.match(md, /^# Restore test FAILED: prod \/ main$/m);
    assert.match(md, /RPO: newest backup 3\.0 h old, target 15\.0 min: VIOLATED/);
    assert.match(md, /## Why it failed\n\n- RPO violated/);
    assert.match(md, /\| table public\.orders \| \*\*FAIL\*\* \| expected 10 rows \\\| found 9 \|/);
    assert.match(md, /Scratch database `restore_test_abc123def0`: dropped/);
  });
});
