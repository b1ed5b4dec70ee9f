import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { credentialFor, ROLE_PRIVILEGES, roleStatements, RUNBOOK_ROLE_PURPOSES } from '../../src/config/pgRoles';

describe('PostgreSQL roles per runbook', () => {
  const db = { user: 'app_owner', password: 'file:owner' as const, roles: { backup: { user: 'runbook_backup', password: 'env:B' as const } } };

  test('a purpose with a role connects as it; one without falls back to the database user', () => {
    assert.deepEqual(credentialFor(db, 'backup'), { user: 'runbook_backup', password: 'env:B' });
    assert.deepEqual(credentialFor(db, 'drill'), { user: 'app_owner', password: 'file:owner' });
    assert.deepEqual(credentialFor(db, 'owner'), { user: 'app_owner', password: 'file:owner' });
    assert.deepEqual(credentialFor({ user: 'u', password: 'env:P' }, 'checks'), { user: 'u', password: 'env:P' });
  });

  test('every role is created NOSUPERUSER with LOGIN, and no statement grants superuser, role creation or file access', () => {
    for (const purpose of ['owner', ...RUNBOOK_ROLE_PURPOSES] as const) {
      const sql = roleStatements(purpose, `r_${purpose}`, 'app').map((s) => s.sql);
      assert.match(sql[1], /^ALTER ROLE "r_\w+" LOGIN NOSUPERUSER/);
      for (const s of sql) assert.doesNotMatch(s, /\bSUPERUSER\b(?<!NOSUPERUSER)|CREATEROLE|pg_read_server_files|pg_write_server_files|pg_execute_server_program|BYPASSRLS/, `${purpose}: ${s}`);
    }
  });

  test('role and database names are checked before they reach SQL', () => {
    assert.throws(() => roleStatements('backup', 'x"; DROP ROLE postgres; --', 'app'), /not a plain lower-case identifier/);
    assert.throws(() => roleStatements('backup', 'runbook_backup', 'App'), /not a plain lower-case identifier/);
  });

  test("the README's roles table gives each purpose's grants as the code creates them", () => {
    const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');
    for (const purpose of ['owner', ...RUNBOOK_ROLE_PURPOSES] as const) {
      for (const s of roleStatements(purpose, `runbook_${purpose}`, 'app').slice(1)) {
        const text = s.sql.replaceAll(`"runbook_${purpose}"`, '<role>').replaceAll('"app"', '<database>');
        assert.ok(readme.includes(text), `README lacks ${purpose}: ${text}`);
      }
      assert.ok(readme.includes(ROLE_PRIVILEGES[purpose].why), `README lacks why ${purpose}`);
    }
  });
});
