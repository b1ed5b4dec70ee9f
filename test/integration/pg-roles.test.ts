import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { Client as PgClient } from 'pg';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { credentialFor, RUNBOOK_ROLE_PURPOSES, RunbookRolePurpose } from '../../src/config/pgRoles';
import { readSecret } from '../../src/config/secrets';
import { seedSampleDatabase } from '../../src/sandbox/seed';
import { startStack, stopStack, StackState } from '../../src/sandbox/stack';
import { findPgBinary } from '../../src/system/postgres';
import { superuserPassword } from '../helpers';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'runbook-pg-roles-test-'));
let stack: StackState;
let loaded: LoadedConfig;

const db = () => loaded.config.environments.sandbox.databases.main;
const login = (purpose: RunbookRolePurpose | 'owner') => {
  const c = credentialFor(db(), purpose);
  return { user: c.user, password: readSecret(c.password, loaded.baseDir) };
};

async function as<T>(purpose: RunbookRolePurpose | 'owner' | 'superuser', fn: (c: PgClient) => Promise<T>, database = 'app'): Promise<T> {
  const who = purpose === 'superuser' ? { user: 'postgres', password: superuserPassword(stack) } : login(purpose);
  const c = new PgClient({ host: stack.postgres!.host, port: stack.postgres!.port, ...who, database, connectionTimeoutMillis: 5_000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

const denied = (p: Promise<unknown>) => assert.rejects(p, /permission denied|must be superuser|must be owner|must have .*privilege/);

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['postgres'] });
  loaded = loadConfig(stack.configFile);
  // The application's tables, created as the application does: by the owner.
  await as('owner', (c) => seedSampleDatabase(c, { rows: 50 }));
});

after(async () => {
  await stopStack(stack);
  rmSync(dir, { recursive: true, force: true });
});

describe('least privilege below the worker: PostgreSQL roles per runbook', () => {
  test("the sandbox's config names no superuser and no superuser secret: every login it gives the runbooks is a plain role", async () => {
    const text = readFileSync(stack.configFile, 'utf8');
    assert.doesNotMatch(text, /postgres-password/, 'the superuser password is referenced nowhere in the config');
    const users = [db().user, ...RUNBOOK_ROLE_PURPOSES.map((p) => db().roles[p]!.user)];
    assert.deepEqual(new Set(users).size, 1 + RUNBOOK_ROLE_PURPOSES.length, 'one role per purpose, and the owner');
    const rows = await as('superuser', (c) => c.query<{ rolname: string; rolsuper: boolean; rolcreaterole: boolean; rolbypassrls: boolean }>('SELECT rolname, rolsuper, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = ANY($1)', [users]));
    assert.equal(rows.rows.length, users.length);
    for (const r of rows.rows) assert.deepEqual({ ...r, rolname: undefined }, { rolname: undefined, rolsuper: false, rolcreaterole: false, rolbypassrls: false }, r.rolname);
    // And every one of them logs in with the password the config points at.
    for (const p of ['owner', ...RUNBOOK_ROLE_PURPOSES] as const) assert.equal(await as(p, async (c) => (await c.query('SELECT current_user AS u')).rows[0].u), credentialFor(db(), p).user);
  });

  test('backup: pg_dump and the globals without passwords work; it writes nothing, reads no file and runs no program', async () => {
    const b = login('backup');
    const env = { ...process.env, PGPASSWORD: b.password };
    const conn = ['-h', stack.postgres!.host, '-p', String(stack.postgres!.port), '-U', b.user];
    const dump = await run(findPgBinary('pg_dump'), [...conn, '-d', 'app', '--schema-only'], { env, maxBuffer: 16 << 20 });
    assert.match(dump.stdout, /CREATE TABLE public\.orders/);
    const globals = await run(findPgBinary('pg_dumpall'), [...conn, '-l', 'app', '--globals-only', '--no-role-passwords'], { env });
    assert.match(globals.stdout, /CREATE ROLE runbook_backup/);
    assert.ok(Number((await as('backup', (c) => c.query('SELECT count(*)::int AS n FROM orders'))).rows[0].n) > 0, 'reads every table');
    await denied(as('backup', (c) => c.query('UPDATE customers SET id = id')));
    await denied(as('backup', (c) => c.query('DELETE FROM orders')));
    await denied(as('backup', (c) => c.query('CREATE TABLE public.runbook_backup_probe (id int)')));
    // pg_read_all_data covers the catalogs too (pg_authid's SCRAM verifiers among them: the README says so); files and programs stay out of reach.
    await denied(as('backup', (c) => c.query('SELECT pg_read_file($1)', ['postgresql.conf'])));
    await denied(as('backup', (c) => c.query("COPY (SELECT 1) TO PROGRAM 'true'")));
  });

  test('checks: statistics and settings, no table data and no writes', async () => {
    const r = await as('checks', (c) => c.query<{ archive_command: string; n: number }>("SELECT current_setting('archive_command') AS archive_command, (SELECT count(*)::int FROM pg_stat_activity WHERE query IS NOT NULL AND query <> '<insufficient privilege>') AS n"));
    assert.ok(r.rows[0].n >= 1, 'pg_monitor: the queries of other sessions are visible');
    await denied(as('checks', (c) => c.query('SELECT * FROM orders LIMIT 1')));
    await denied(as('checks', (c) => c.query('CREATE TABLE public.runbook_checks_probe (id int)')));
  });

  test('drill: its own marker tables, promotion and the rewind functions; no application data', async () => {
    await as('drill', (c) => c.query('CREATE TABLE IF NOT EXISTS runbook_drill_markers (drill_id text PRIMARY KEY)'));
    await as('drill', (c) => c.query("INSERT INTO runbook_drill_markers VALUES ('roles-test') ON CONFLICT DO NOTHING"));
    const fns = await as('drill', (c) => c.query<{ promote: boolean }>("SELECT has_function_privilege('pg_promote(boolean, integer)', 'EXECUTE') AS promote"));
    assert.equal(fns.rows[0].promote, true);
    const rewind = await as('drill', (c) => c.query<{ ok: boolean }>("SELECT has_function_privilege('pg_read_binary_file(text, bigint, bigint, boolean)', 'EXECUTE') AND has_function_privilege('pg_ls_dir(text, boolean, boolean)', 'EXECUTE') AS ok"), 'postgres');
    assert.equal(rewind.rows[0].ok, true, "pg_rewind's functions in the database it connects to");
    const attrs = await as('superuser', (c) => c.query<{ rolreplication: boolean }>("SELECT rolreplication FROM pg_roles WHERE rolname = 'runbook_drill'"));
    assert.equal(attrs.rows[0].rolreplication, true, 'pg_basebackup re-clones a node');
    await denied(as('drill', (c) => c.query('SELECT * FROM orders LIMIT 1')));
    await denied(as('drill', (c) => c.query('DROP TABLE orders')));
  });

  test('canary: its own table only', async () => {
    await as('canary', (c) => c.query('CREATE TABLE IF NOT EXISTS runbook_restore_canary_probe (id int)'));
    await denied(as('canary', (c) => c.query('SELECT * FROM customers LIMIT 1')));
    await denied(as('canary', (c) => c.query('SELECT * FROM runbook_drill_markers')));
  });

  test('owner: owns the application database (migrations, a release rollback creates and swaps databases), nothing beyond it', async () => {
    await as('owner', (c) => c.query('ALTER TABLE orders ADD COLUMN IF NOT EXISTS roles_test text'));
    await as('owner', async (c) => {
      await c.query('CREATE DATABASE app_roles_probe');
      await c.query('DROP DATABASE app_roles_probe');
    });
    await denied(as('owner', (c) => c.query('CREATE ROLE intruder')));
    await denied(as('owner', (c) => c.query("ALTER SYSTEM SET work_mem = '64MB'")));
    await denied(as('owner', (c) => c.query('SELECT pg_read_file($1)', ['postgresql.conf'])));
  });

  test('roles are created again idempotently, with the same passwords, when the stack restarts', async () => {
    const before = login('backup').password;
    await stopStack(stack);
    stack = await startStack({ dir: join(dir, 'stack'), components: ['postgres'] });
    loaded = loadConfig(stack.configFile);
    assert.equal(login('backup').password, before);
    for (const p of ['owner', ...RUNBOOK_ROLE_PURPOSES] as const) assert.equal(await as(p, async (c) => (await c.query('SELECT current_user AS u')).rows[0].u), credentialFor(db(), p).user);
    const owner = await as('superuser', (c) => c.query<{ owner: string }>("SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = 'app'"));
    assert.equal(owner.rows[0].owner, 'app_owner');
  });
});
