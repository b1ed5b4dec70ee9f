import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { Rfc2136Provider } from '../../src/activities/dns';
import { ConfigError, parseConfig } from '../../src/config/load';
import { BASE_CONFIG, CONFIG_CASES, configWith, fieldOf } from '../fixtures/bad-input/corpus';
import { stringify } from 'yaml';

const related = (path: string, field: string) => path === field || field.startsWith(`${path}.`) || path.startsWith(`${field}.`);

describe('the bad-input corpus: config files through the loader', () => {
  test('the base config of the corpus is valid, so each case breaks only the field it changes', () => {
    const loaded = parseConfig(stringify(BASE_CONFIG), 'base.yaml');
    assert.equal(loaded.config.environments.sandbox.databases.main.database, 'app');
  });

  for (const c of CONFIG_CASES) {
    test(`refused, naming ${fieldOf(c)}: ${c.name}`, () => {
      const file = 'bad-input.yaml';
      let err: unknown;
      try {
        parseConfig(configWith(c), file);
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
      const field = fieldOf(c);
      const problem = err.problems.find((p) => p.path === field);
      assert.ok(problem, `no problem reported at '${field}'; got: ${err.message.slice(0, 2000)}`);
      assert.match(problem.message, c.says);
      for (const p of err.problems) assert.ok(related(p.path, field), `unrelated problem at ${p.path}: ${p.message}`);
      assert.ok(problem.line && problem.line >= 1, 'the problem carries a line number');
      assert.ok(!/\n\s+at /.test(err.message), 'no stack trace in the message');
      assert.ok(err.message.length < 5_000, `the message stays readable (${err.message.length} characters)`);
    });
  }
});

describe('secrets that reach DNS tooling', () => {
  test('a TSIG secret that is not base64 is refused before nsupdate runs, naming dns.tsig.secret', async () => {
    // Port 9 on loopback: were the update sent, it would fail as unreachable, not as invalid input.
    const provider = new Rfc2136Provider({ host: '127.0.0.1', port: 9 }, 'sandbox.test', { name: 'runbook-update', algorithm: 'hmac-sha256', secret: () => 'abc";\n};\ninclude "/etc/shadow' });
    await assert.rejects(provider.upsertA('db.sandbox.test', '127.0.0.2', 30), (err: unknown) => err instanceof ApplicationFailure && err.type === 'InvalidInput' && /dns\.tsig\.secret/.test(err.message));
  });

  test('a record name longer than 253 characters is refused before any DNS traffic', async () => {
    const provider = new Rfc2136Provider({ host: '127.0.0.1', port: 9 }, 'sandbox.test', undefined);
    const name = `${Array(4).fill('a'.repeat(63)).join('.')}.sandbox.test`;
    await assert.rejects(provider.resolveA(name), (err: unknown) => err instanceof ApplicationFailure && err.type === 'InvalidInput' && /at most 253 characters/.test(err.message));
  });
});
