import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { dumpBackupKeys, restoreReportKeys, retentionVerdict } from '../../src/activities/backups';
import { physicalBackupArgs, physicalRestoreReportKeys } from '../../src/activities/pgbackrest';
import { physicalRestoreArgs } from '../../src/activities/pgbackrestRestore';
import { expiredByRetention, nextPhysicalBackup, physicalLabel } from '../../src/plan/planners/backups';

const F1 = '20261101-030000F';
const F2 = '20261108-030000F';
const F3 = '20261115-030000F';
const b = (label: string, type: 'full' | 'diff' | 'incr', prior: string | null) => ({ label, type, prior, reference: prior ? [prior] : [] });

describe('plan of a pgBackRest backup: the backup pgBackRest would take', () => {
  const at = new Date('2026-11-25T03:00:00Z');

  test('an incremental follows the newest backup, a differential the newest full', () => {
    const repo = [b(F1, 'full', null), b(`${F1}_20261102-030000I`, 'incr', F1)];
    assert.deepEqual(nextPhysicalBackup(repo, 'incr', at), { label: `${F1}_20261125-030000I`, type: 'incr', prior: `${F1}_20261102-030000I`, reference: [F1, `${F1}_20261102-030000I`] });
    assert.deepEqual(nextPhysicalBackup(repo, 'diff', at), { label: `${F1}_20261125-030000D`, type: 'diff', prior: F1, reference: [F1] });
  });

  test('without a full in the repository an incremental becomes a full, as pgBackRest does', () => {
    assert.deepEqual(nextPhysicalBackup([], 'incr', at), { label: '20261125-030000F', type: 'full', prior: null, reference: [] });
    assert.equal(physicalLabel(at, 'full'), '20261125-030000F');
  });
});

describe('plan of pgbackrest expire: what count retention removes', () => {
  test('a third full with retention.full 2 expires the oldest full and everything that depends on it', () => {
    const repo = [b(F1, 'full', null), b(`${F1}_20261102-030000D`, 'diff', F1), b(`${F1}_20261103-030000I`, 'incr', `${F1}_20261102-030000D`), b(F2, 'full', null), b(F3, 'full', null)];
    assert.deepEqual(expiredByRetention(repo, { full: 2 }), [F1, `${F1}_20261102-030000D`, `${F1}_20261103-030000I`]);
    assert.deepEqual(expiredByRetention(repo, { full: 3 }), []);
  });

  test('retention.diff counts fulls and differentials together but expires only differentials, with their incrementals', () => {
    const d1 = `${F1}_20261102-030000D`;
    const d2 = `${F1}_20261103-030000D`;
    const repo = [b(F1, 'full', null), b(d1, 'diff', F1), b(`${d1.slice(0, 16)}_20261102-120000I`, 'incr', d1), b(d2, 'diff', F1), b(F2, 'full', null)];
    assert.deepEqual(expiredByRetention(repo, { full: 2, diff: 2 }), [d1, `${F1}_20261102-120000I`]);
  });
});

describe('plan keys and commands are the real activities\' own', () => {
  test('a dump, its report and retention', () => {
    assert.deepEqual(dumpBackupKeys('backups/', 'main', '20261125T030000Z-a1b2c3'), {
      base: 'backups/main/20261125T030000Z-a1b2c3/',
      dump: 'backups/main/20261125T030000Z-a1b2c3/dump.pgcustom',
      manifest: 'backups/main/20261125T030000Z-a1b2c3/manifest.json',
      globals: 'backups/main/20261125T030000Z-a1b2c3/globals.sql',
    });
    assert.equal(restoreReportKeys('backups/', 'main', undefined, 'abcd1234').jsonKey, 'backups/main/restore-tests/abcd1234.json');
    assert.equal(restoreReportKeys('', 'main', '20261125T030000Z-a1b2c3', 'abcd1234').htmlKey, 'main/20261125T030000Z-a1b2c3/restore-tests/abcd1234.html');
    assert.equal(physicalRestoreReportKeys('backups/', 'main', 'abcd1234').markdownKey, 'backups/main/pgbackrest/restore-tests/abcd1234.md');
  });

  test('retention keeps the newest always, the newest keepLast and the young ones', () => {
    const now = Date.parse('2026-11-25T00:00:00Z');
    const day = 86_400_000;
    const list = [0, 1, 2, 3, 4].map((d) => ({ backupId: `b${d}`, endedAt: new Date(now - d * day - 1).toISOString() }));
    assert.deepEqual(retentionVerdict(list, { keepLast: 2 }, now), { kept: ['b0', 'b1'], deleted: ['b2', 'b3', 'b4'] });
    assert.deepEqual(retentionVerdict(list, { keepLast: 1, maxAgeMs: 3 * day }, now), { kept: ['b0', 'b1', 'b2'], deleted: ['b3', 'b4'] });
    assert.deepEqual(retentionVerdict(list, {}, now), { kept: ['b0', 'b1', 'b2', 'b3', 'b4'], deleted: [] });
    assert.deepEqual(retentionVerdict(list.slice(4), { maxAgeMs: day }, now), { kept: ['b4'], deleted: [] });
  });

  test('pgbackrest backup and restore command lines', () => {
    assert.deepEqual(physicalBackupArgs('incr', 'id1', 'node-1'), ['backup', '--type=incr', '--start-fast', '--no-expire-auto', '--log-level-console=detail', '--annotation=runbook-backup-id=id1', '--annotation=runbook-node=node-1']);
    assert.deepEqual(physicalRestoreArgs({ set: F1, type: 'time', time: '2026-11-25T03:00:00Z' }), ['restore', `--set=${F1}`, '--archive-mode=off', '--log-level-console=warn', '--target-action=promote', '--type=time', '--target=2026-11-25 03:00:00.000+00']);
    assert.deepEqual(physicalRestoreArgs({ set: F1, type: 'end' }), ['restore', `--set=${F1}`, '--archive-mode=off', '--log-level-console=warn', '--type=default']);
  });
});
