import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { startTemporalDevServer, stopTemporalDevServer, TemporalDevServerInfo } from '../../src/sandbox/temporal';
import { runCli } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-schedule-test-'));
let temporal: TemporalDevServerInfo;
let connection: Connection;
let client: Client;

before(async () => {
  temporal = await startTemporalDevServer({ dir });
  connection = await Connection.connect({ address: temporal.address });
  client = new Client({ connection });
});
after(async () => {
  await connection?.close();
  await stopTemporalDevServer(temporal.pid);
  rmSync(dir, { recursive: true, force: true });
});

function config(schedules: string): string {
  const file = join(dir, `runbook-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(
    file,
    `version: 1
environments:
  sandbox:
    temporal: { address: "${temporal.address}" }
    databases:
      main: { host: 127.0.0.2, database: app, user: postgres, password: env:UNUSED_IN_THIS_TEST }
    backups: { bucket: runbook-backups }
schedules:
${schedules}`,
  );
  return file;
}

const BACKUP = `  - { id: nightly-backup, runbook: backupDatabase, environment: sandbox, cron: "0 1 * * *", timezone: Europe/Berlin, input: { database: main } }\n`;
const RESTORE = `  - { id: nightly-restore-test, runbook: verifyBackup, environment: sandbox, cron: "0 3 * * *", input: { database: main, selection: { mode: random } }, jitter: 10m, catchupWindow: 2h }\n`;

async function apply(file: string, ...extra: string[]): Promise<Record<string, string>> {
  const res = await runCli(['--config', file, '--json', 'schedule', 'apply', ...extra]);
  assert.equal(res.code, 0, res.stderr + res.stdout);
  return Object.fromEntries(JSON.parse(res.stdout).results.map((r: { scheduleId: string; action: string }) => [r.scheduleId, r.action]));
}

describe('schedules from config', () => {
  test('apply twice creates the schedules once with the expected specs; list shows them; a change updates; removal deletes only with --prune', async () => {
    const file = config(BACKUP + RESTORE);
    assert.deepEqual(await apply(file), { 'nightly-backup': 'created', 'nightly-restore-test': 'created' });
    assert.deepEqual(await apply(file), { 'nightly-backup': 'unchanged', 'nightly-restore-test': 'unchanged' });

    const backup = await client.schedule.getHandle('nightly-backup').describe();
    assert.equal(backup.spec.timezone, 'Europe/Berlin');
    assert.deepEqual(backup.spec.calendars?.[0]?.hour, [{ start: 1, end: 1, step: 1 }]);
    assert.equal(backup.policies.overlap, 'SKIP');
    assert.equal(backup.action.type, 'startWorkflow');
    if (backup.action.type === 'startWorkflow') {
      assert.equal(backup.action.workflowType, 'backupDatabase');
      assert.equal(backup.action.taskQueue, 'batch-queue');
      assert.deepEqual(backup.action.args, [{ database: 'main', environment: 'sandbox' }]);
    }
    const restore = await client.schedule.getHandle('nightly-restore-test').describe();
    assert.equal(restore.spec.jitter, 600_000);
    assert.equal(restore.policies.catchupWindow, 7_200_000);

    const list = await runCli(['--config', file, 'schedule', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /nightly-backup {2}backupDatabase on sandbox\n {2}next: \d{4}-\d\d-\d\dT/);
    assert.match(list.stdout, /nightly-restore-test {2}verifyBackup on sandbox\n {2}next: .*\n {2}last: never run/);

    const changed = config(BACKUP.replace('"0 1 * * *"', '"30 1 * * *"') + RESTORE);
    assert.deepEqual(await apply(changed), { 'nightly-backup': 'updated', 'nightly-restore-test': 'unchanged' });
    assert.deepEqual((await client.schedule.getHandle('nightly-backup').describe()).spec.calendars?.[0]?.minute, [{ start: 30, end: 30, step: 1 }]);

    const fewer = config(BACKUP.replace('"0 1 * * *"', '"30 1 * * *"'));
    assert.deepEqual(await apply(fewer), { 'nightly-backup': 'unchanged', 'nightly-restore-test': 'would delete' });
    await client.schedule.getHandle('nightly-restore-test').describe();
    assert.deepEqual(await apply(fewer, '--prune'), { 'nightly-backup': 'unchanged', 'nightly-restore-test': 'deleted' });
    await assert.rejects(client.schedule.getHandle('nightly-restore-test').describe());
  });

  test('an entry the runbook would refuse stops the whole apply, and nothing changes', async () => {
    const current = BACKUP.replace('"0 1 * * *"', '"30 1 * * *"');
    assert.deepEqual(await apply(config(current)), { 'nightly-backup': 'unchanged' });
    const bad = config(
      BACKUP.replace('"0 1 * * *"', '"45 1 * * *"') +
        `  - { id: bad-restore, runbook: verifyBackup, environment: sandbox, cron: "0 4 * * *", input: { database: "main; DROP" } }\n` +
        `  - { id: golive, runbook: goLive, environment: sandbox, cron: "0 9 1 1,4,7,10 *" }\n`,
    );
    const res = await runCli(['--config', bad, 'schedule', 'apply']);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /schedules\.1\.input: bad-restore: invalid verifyBackup input: database: expected a database key/);
    assert.match(res.stderr, /schedules\.2\.input: golive: invalid goLive input: deployment: expected a Deployment name/);
    assert.match(res.stderr, /no schedule was changed/);
    assert.deepEqual((await client.schedule.getHandle('nightly-backup').describe()).spec.calendars?.[0]?.minute, [{ start: 30, end: 30, step: 1 }]);
    await assert.rejects(client.schedule.getHandle('bad-restore').describe());
  });
});

describe('the quarterly drill schedule', () => {
  test('first Tuesday of January, April, July and October at 10:00 in the configured time zone, as a calendar spec', async () => {
    const file = config(
      `  - id: quarterly-dr-drill\n    runbook: drDrill\n    environment: sandbox\n    timezone: Europe/Berlin\n` +
        `    calendar: { month: [1, 4, 7, 10], dayOfMonth: "1-7", dayOfWeek: TUE, hour: 10, minute: 0 }\n` +
        `    input: { database: main, mode: failover, approvalTimeoutSeconds: 86400 }\n`,
    );
    assert.equal((await apply(file))['quarterly-dr-drill'], 'created');
    const d = await client.schedule.getHandle('quarterly-dr-drill').describe();
    const cal = d.spec.calendars![0];
    assert.deepEqual(cal.month?.map((m) => m.start), ['JANUARY', 'APRIL', 'JULY', 'OCTOBER']);
    assert.deepEqual(cal.dayOfMonth, [{ start: 1, end: 7, step: 1 }]);
    assert.deepEqual(cal.dayOfWeek, [{ start: 'TUESDAY', end: 'TUESDAY', step: 1 }]);
    assert.deepEqual(cal.hour, [{ start: 10, end: 10, step: 1 }]);
    assert.equal(d.spec.timezone, 'Europe/Berlin');
    assert.equal(d.action.type === 'startWorkflow' && d.action.taskQueue, 'critical-queue');
    // The next run is a Tuesday in one of those months, between the 1st and the 7th, at 10:00 Berlin time.
    const next = d.info.nextActionTimes[0];
    const berlin = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', weekday: 'short', day: 'numeric', month: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false }).formatToParts(next);
    const part = (t: string) => berlin.find((p) => p.type === t)!.value;
    assert.equal(part('weekday'), 'Tue');
    assert.ok(Number(part('day')) <= 7);
    assert.ok([1, 4, 7, 10].includes(Number(part('month'))));
    assert.equal(`${part('hour')}:${part('minute')}`, '10:00');
  });
});
