import assert from 'node:assert/strict';
import { primaryLocator, reachServer } from '../../src/activities/primary';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client as PgClient } from 'pg';
import { loadConfig } from '../../src/config/load';
import { freePort } from '../../src/system/process';
import { seedSampleDatabase } from '../../src/sandbox/seed';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { httpStatus, runCli, startCli, waitFor } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-backup-cli-'));
chmodSync(dir, 0o755);
let stack: StackState;
let worker: ReturnType<typeof startCli>;

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 's3'] });
  const loaded = loadConfig(stack.configFile);
  const db = loaded.config.environments.sandbox.databases.main;
  const pg = new PgClient({ ...(await reachServer(primaryLocator(loaded.baseDir, db, db.user, db.password))), database: db.database });
  await pg.connect();
  await seedSampleDatabase(pg, { rows: 20_000 });
  await pg.end();
  const httpPort = await freePort();
  worker = startCli(['--config', stack.configFile, 'worker', '--http-port', String(httpPort)]);
  await waitFor('worker ready', async () => (await httpStatus(`http://127.0.0.1:${httpPort}/ready`)).status === 200, 180_000, 200);
});

after(async () => {
  worker?.child.kill('SIGTERM');
  await worker?.exited;
  await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
});

describe('runbook backup, as an operator runs it', () => {
  test('run, list, verify by key; exit codes follow the outcome', async () => {
    const run = await runCli(['--config', stack.configFile, 'backup', 'run']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /backup of main started: workflow backupDatabase-sandbox-/);
    const backupId = /backup (\d{8}T\d{6}Z-[a-z0-9]+) of main written: [\d.]+ MB, 4 tables/.exec(run.stdout)?.[1];
    assert.ok(backupId, run.stdout);

    const list = await runCli(['--config', stack.configFile, '--json', 'backup', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(JSON.parse(list.stdout).backups.map((b: { backupId: string }) => b.backupId), [backupId]);

    const verify = await runCli(['--config', stack.configFile, 'backup', 'verify', '--key', backupId]);
    assert.equal(verify.code, 0, verify.stderr + verify.stdout);
    assert.match(verify.stdout, /restore test passed for main/);
    assert.match(verify.stdout, /\[ok  \] table public\.orders: 20000 rows, checksum matches/);

    const missing = await runCli(['--config', stack.configFile, '--json', 'backup', 'verify', '--key', '20200101T000000Z-abcdef']);
    assert.equal(missing.code, 1);
    const body = JSON.parse(missing.stdout);
    assert.equal(body.ok, false);
    assert.deepEqual(body.result.reasons, ['backup 20200101T000000Z-abcdef not found (1 backups exist)']);
  });

  const refused: { args: string[]; says: RegExp }[] = [
    { args: ['backup', 'verify', '--key', '../../etc/passwd'], says: /--key: expected a backup id/ },
    { args: ['backup', 'verify', '--latest', '--random'], says: /choose one of --latest, --random, --key/ },
    { args: ['backup', 'verify', '--at', 'noon'], says: /--at: expected a time with its zone such as 2026-11-25T03:00:00Z, found "noon"/ },
    { args: ['backup', 'verify', '--within', '7d'], says: /--within goes with --random-time/ },
    { args: ['backup', 'verify', '--random-time'], says: /main is backed up with pg_dump: --label, --at and --random-time need a pgBackRest database/ },
    { args: ['backup', 'run', '--type', 'full'], says: /--type: main is backed up with pg_dump/ },
    { args: ['backup', 'run', '--database', 'nosuch'], says: /--database: "nosuch" is not configured for environment sandbox; configured: main/ },
    { args: ['backup', 'list', '--database', 'nosuch'], says: /--database: "nosuch" is not configured/ },
  ];
  for (const r of refused) {
    test(`refused before anything runs: ${r.args.join(' ')}`, async () => {
      const res = await runCli(['--config', stack.configFile, ...r.args]);
      assert.equal(res.code, 2, res.stdout + res.stderr);
      assert.match(res.stderr, r.says);
    });
  }
});
