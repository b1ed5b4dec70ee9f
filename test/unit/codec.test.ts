import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { defaultPayloadConverter, Payload } from '@temporalio/common';
import { EncryptionCodec, encryptionCodecFor, ENCRYPTED_ENCODING, FAILURE_CONVERTER_PATH, KEY_ID_METADATA, PayloadDecryptionError, PlaintextPayloadError, dataConverterFor } from '../../src/codec';
import { decodeKeyText } from '../../src/codec/keys';
import { checkSecretRefs, ConfigError, loadConfig } from '../../src/config/load';

const dir = mkdtempSync(join(tmpdir(), 'runbook-codec-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const keyA = randomBytes(32);
const keyB = randomBytes(32);
const codec = (keys: Record<string, Buffer>, active: string) => new EncryptionCodec(new Map(Object.entries(keys)), active);
const payload = (value: unknown): Payload => defaultPayloadConverter.toPayload(value);
const value = (p: Payload): unknown => defaultPayloadConverter.fromPayload(p);
const text = (bytes: Uint8Array | null | undefined) => Buffer.from(bytes ?? []).toString('latin1');

const MARKER = 'customer-ledger-4417-do-not-leak';

describe('the payload encryption codec', () => {
  test('a runbook input survives a round trip, and what is stored names the key but shows neither the value nor its encoding', async () => {
    const c = codec({ a: keyA }, 'a');
    const input = { environment: 'prod', note: MARKER, n: 42, nested: [1, null, 'x'] };
    const [sealed] = await c.encode([payload(input)]);
    assert.equal(text(sealed.metadata!.encoding), ENCRYPTED_ENCODING);
    assert.equal(text(sealed.metadata![KEY_ID_METADATA]), 'a');
    assert.deepEqual(Object.keys(sealed.metadata!).sort(), ['encoding', KEY_ID_METADATA].sort());
    assert.ok(!text(sealed.data).includes(MARKER));
    assert.ok(!text(sealed.data).includes('json/plain'));
    const [opened] = await c.decode([sealed]);
    assert.deepEqual(value(opened), input);
  });

  test('undefined, empty strings and binary payloads round trip too; the same value encrypts differently each time', async () => {
    const c = codec({ a: keyA }, 'a');
    const values = [undefined, '', new Uint8Array([0, 1, 2, 255]), 'x'.repeat(100_000)];
    const sealed = await c.encode(values.map(payload));
    const opened = await c.decode(sealed);
    assert.deepEqual(opened.map(value), values);
    const [x, y] = await c.encode([payload(MARKER), payload(MARKER)]);
    assert.notDeepEqual(Buffer.from(x.data!), Buffer.from(y.data!));
  });

  test('with requireEncryption off, payloads stored before encryption was turned on still decode (they pass through untouched)', async () => {
    const c = codec({ a: keyA }, 'a');
    const plain = payload({ old: true });
    const [out] = await c.decode([plain]);
    assert.equal(out, plain);
  });

  test('the SDK core\'s patch-marker data passes a codec that requires encryption only where it is asked to (the codec server), and only in its exact shape', async () => {
    const marker = payload({ id: 'one-mutating-run-per-target', deprecated: false });
    const strict = new EncryptionCodec(new Map([['a', keyA]]), 'a', { requireEncryption: true });
    await assert.rejects(strict.decode([marker]), PlaintextPayloadError);
    const server = new EncryptionCodec(new Map([['a', keyA]]), 'a', { requireEncryption: true, passSdkPatchMarkers: true });
    assert.equal((await server.decode([marker]))[0], marker);
    for (const other of [payload({ id: 'x', deprecated: 'no' }), payload({ id: 'x', deprecated: false, extra: 1 }), payload(['id', 'deprecated']), { metadata: { ...marker.metadata, extra: Buffer.from('1') }, data: marker.data }]) {
      await assert.rejects(server.decode([other]), PlaintextPayloadError);
    }
  });

  test('with requireEncryption, a plaintext payload is refused naming the setting and the encoding, never the value', async () => {
    const c = new EncryptionCodec(new Map([['a', keyA]]), 'a', { requireEncryption: true });
    const [sealed] = await c.encode([payload({ fine: true })]);
    assert.deepEqual(value((await c.decode([sealed]))[0]), { fine: true });
    for (const plain of [payload({ injected: MARKER }), payload(undefined), { metadata: {}, data: Buffer.from(MARKER) }]) {
      await assert.rejects(c.decode([sealed, plain]), (err: Error) => {
        assert.ok(err instanceof PlaintextPayloadError && err instanceof PayloadDecryptionError);
        assert.match(err.message, /refused a payload that is not encrypted \(('json\/plain'|'binary\/null'|no encoding)\): temporal\.encryption\.requireEncryption is on/);
        assert.ok(!err.message.includes(MARKER));
        return true;
      });
    }
  });

  test('key rotation: payloads encrypted with key A decode after B becomes active; new payloads use B', async () => {
    const before = codec({ a: keyA }, 'a');
    const [old] = await before.encode([payload({ written: 'under A' })]);
    const rotated = codec({ a: keyA, b: keyB }, 'b');
    assert.deepEqual(value((await rotated.decode([old]))[0]), { written: 'under A' });
    const [fresh] = await rotated.encode([payload({ written: 'under B' })]);
    assert.equal(text(fresh.metadata![KEY_ID_METADATA]), 'b');
    const onlyB = codec({ b: keyB }, 'b');
    assert.deepEqual(value((await onlyB.decode([fresh]))[0]), { written: 'under B' });
  });

  test('a payload whose key id is unknown here fails with an error naming that key id', async () => {
    const [old] = await codec({ '2025-q4': keyA }, '2025-q4').encode([payload('x')]);
    await assert.rejects(codec({ '2026-q1': keyB }, '2026-q1').decode([old]), (err: Error) => {
      assert.ok(err instanceof PayloadDecryptionError);
      assert.match(err.message, /encrypted with key '2025-q4', which is not among this environment's keys \(2026-q1\)/);
      return true;
    });
  });

  test('tampered ciphertext is refused, and so is a payload relabelled with another key id', async () => {
    const c = codec({ a: keyA, b: keyB }, 'a');
    const [sealed] = await c.encode([payload({ amount: 100 })]);
    for (const at of [0, 20, sealed.data!.length - 1]) {
      const flipped = Buffer.from(sealed.data!);
      flipped[at] ^= 0x01;
      await assert.rejects(c.decode([{ ...sealed, data: flipped }]), /key 'a' failed authentication: it was altered/);
    }
    await assert.rejects(c.decode([{ ...sealed, data: Buffer.from(sealed.data!).subarray(0, 10) }]), /truncated/);
    const relabelled = { ...sealed, metadata: { ...sealed.metadata, [KEY_ID_METADATA]: Buffer.from('b') } };
    await assert.rejects(c.decode([relabelled]), /key 'b' failed authentication/);
    const unlabelled = { ...sealed, metadata: { encoding: sealed.metadata!.encoding } };
    await assert.rejects(c.decode([unlabelled]), /no encryption-key-id metadata/);
  });

  test('a codec cannot be built with a short key or an active key it does not hold', () => {
    assert.throws(() => codec({ a: randomBytes(16) }, 'a'), /key 'a' has 16 bytes; AES-256 needs 32/);
    assert.throws(() => codec({ a: keyA }, 'b'), /active encryption key 'b' is not among the keys \(a\)/);
  });
});

describe('key text', () => {
  const cases: { name: string; text: string; ok: boolean; says?: RegExp }[] = [
    { name: '64 hex digits', text: keyA.toString('hex'), ok: true },
    { name: 'base64 of 32 bytes', text: keyA.toString('base64'), ok: true },
    { name: 'base64 with a trailing newline', text: `${keyA.toString('base64')}\n`, ok: true },
    { name: 'base64 of 16 bytes', text: randomBytes(16).toString('base64'), ok: false, says: /found base64 text of 16 bytes/ },
    { name: 'a passphrase', text: 'correct horse battery staple', ok: false, says: /neither hex nor base64/ },
    { name: '63 hex digits', text: keyA.toString('hex').slice(1), ok: false, says: /expected 32 bytes written as 64 hex digits or 44 base64/ },
  ];
  for (const c of cases) {
    test(`${c.name}: ${c.ok ? 'accepted' : 'refused without repeating it'}`, () => {
      const r = decodeKeyText(c.text);
      if (c.ok) {
        assert.ok('key' in r);
        assert.deepEqual(r.key, keyA);
      } else {
        assert.ok('problem' in r);
        assert.match(r.problem, c.says!);
        assert.ok(!r.problem.includes(c.text.trim()));
      }
    });
  }
});

describe('encryption config', () => {
  const file = (name: string, encryption: string) => {
    const path = join(dir, `${name}.yaml`);
    writeFileSync(path, `version: 1\nenvironments:\n  prod:\n    temporal:\n      encryption:\n${encryption}`);
    return path;
  };
  const malformed: { name: string; yaml: string; path: string; says: RegExp }[] = [
    { name: 'inline key', yaml: `        activeKey: a\n        keys: [{ id: a, key: ${keyA.toString('base64')} }]\n`, path: 'environments.prod.temporal.encryption.keys.0.key', says: /inline secret values are not allowed/ },
    { name: 'active key not listed', yaml: '        activeKey: c\n        keys: [{ id: a, key: env:KA }, { id: b, key: env:KB }]\n', path: 'environments.prod.temporal.encryption.activeKey', says: /names key 'c', which is not listed under keys \(listed: a, b\)/ },
    { name: 'duplicate key id', yaml: '        activeKey: a\n        keys: [{ id: a, key: env:KA }, { id: a, key: env:KB }]\n', path: 'environments.prod.temporal.encryption.keys.1.id', says: /duplicate key id 'a'/ },
    { name: 'no keys', yaml: '        activeKey: a\n        keys: []\n', path: 'environments.prod.temporal.encryption.keys', says: /at least one key/ },
    { name: 'bad key id', yaml: '        activeKey: "a b"\n        keys: [{ id: "a b", key: env:KA }]\n', path: 'environments.prod.temporal.encryption.keys.0.id', says: /key id of letters/ },
    { name: 'inline token', yaml: '        activeKey: a\n        keys: [{ id: a, key: env:KA }]\n        codecServer: { tokens: [{ name: ui, token: s3cr3t-s3cr3t-s3cr3t }] }\n', path: 'environments.prod.temporal.encryption.codecServer.tokens.0.token', says: /inline secret values/ },
    { name: 'requireEncryption not a boolean', yaml: '        activeKey: a\n        keys: [{ id: a, key: env:KA }]\n        requireEncryption: "yes"\n', path: 'environments.prod.temporal.encryption.requireEncryption', says: /expected boolean, found "yes"/ },
    { name: 'codec server nobody may use', yaml: '        activeKey: a\n        keys: [{ id: a, key: env:KA }]\n        codecServer: { allowedOrigins: ["https://ui.example.com"] }\n', path: 'environments.prod.temporal.encryption.codecServer', says: /nobody could use the codec server: configure tokens .* or jwt/ },
    { name: 'jwt with both a JWKS URL and a file', yaml: '        activeKey: a\n        keys: [{ id: a, key: env:KA }]\n        codecServer: { jwt: { issuer: "https://login.example.com/", audience: ui, jwksUrl: "https://login.example.com/jwks", jwksFile: "file:jwks.json" } }\n', path: 'environments.prod.temporal.encryption.codecServer.jwt', says: /either jwksUrl .* or jwksFile .*, exactly one/ },
    { name: 'jwt JWKS over plain http to another host', yaml: '        activeKey: a\n        keys: [{ id: a, key: env:KA }]\n        codecServer: { jwt: { issuer: "https://login.example.com/", audience: ui, jwksUrl: "http://login.example.com/jwks" } }\n', path: 'environments.prod.temporal.encryption.codecServer.jwt.jwksUrl', says: /expected an https:\/\/ URL \(plain http only on loopback\), found http:\/\/login.example.com/ },
    { name: 'jwt with a shared-secret algorithm', yaml: '        activeKey: a\n        keys: [{ id: a, key: env:KA }]\n        codecServer: { jwt: { issuer: "https://login.example.com/", audience: ui, jwksUrl: "https://login.example.com/jwks", algorithms: [HS256] } }\n', path: 'environments.prod.temporal.encryption.codecServer.jwt.algorithms.0', says: /asymmetric algorithms only: HS\* and none are never accepted/ },
    { name: 'jwt without an audience', yaml: '        activeKey: a\n        keys: [{ id: a, key: env:KA }]\n        codecServer: { jwt: { issuer: "https://login.example.com/", jwksUrl: "https://login.example.com/jwks" } }\n', path: 'environments.prod.temporal.encryption.codecServer.jwt.audience', says: /expected the audience the tokens are issued for/ },
    { name: 'origin with a path', yaml: '        activeKey: a\n        keys: [{ id: a, key: env:KA }]\n        codecServer: { tokens: [{ name: ui, token: env:T }], allowedOrigins: ["https://ui.example.com/namespaces"] }\n', path: 'environments.prod.temporal.encryption.codecServer.allowedOrigins.0', says: /web origin without a path/ },
  ];
  for (const c of malformed) {
    test(`refused: ${c.name}`, () => {
      const err = (() => {
        try {
          loadConfig(file(c.name.replace(/\W+/g, '-'), c.yaml));
        } catch (e) {
          return e;
        }
        assert.fail('accepted');
      })();
      assert.ok(err instanceof ConfigError);
      const problem = err.problems.find((p) => p.path === c.path);
      assert.ok(problem, `no problem at ${c.path}: ${err.message}`);
      assert.match(problem.message, c.says);
    });
  }

  test('keys from an env var (base64) and a file (hex) build a codec that decrypts what the other config encrypted', async () => {
    writeFileSync(join(dir, 'key-b.hex'), `${keyB.toString('hex')}\n`);
    process.env.RUNBOOK_TEST_CODEC_KEY_A = keyA.toString('base64');
    const loaded = loadConfig(file('good', '        activeKey: b\n        keys: [{ id: a, key: env:RUNBOOK_TEST_CODEC_KEY_A }, { id: b, key: file:key-b.hex }]\n'));
    checkSecretRefs(loaded, ['prod']);
    const c = encryptionCodecFor(loaded, 'prod', loaded.config.environments.prod.temporal)!;
    assert.equal(c.activeKeyId, 'b');
    assert.deepEqual(c.keyIds, ['a', 'b']);
    const [fromA] = await codec({ a: keyA }, 'a').encode([payload('old')]);
    assert.equal(value((await c.decode([fromA]))[0]), 'old');
  });

  test('a key of the wrong length is a config error naming the field and the key id, never the key', () => {
    const short = randomBytes(24).toString('base64');
    process.env.RUNBOOK_TEST_CODEC_SHORT = short;
    const loaded = loadConfig(file('short', '        activeKey: a\n        keys: [{ id: a, key: env:RUNBOOK_TEST_CODEC_SHORT }]\n'));
    for (const attempt of [() => checkSecretRefs(loaded, ['prod']), () => encryptionCodecFor(loaded, 'prod', loaded.config.environments.prod.temporal)]) {
      const err = (() => {
        try {
          attempt();
        } catch (e) {
          return e;
        }
        assert.fail('accepted');
      })();
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems[0].path, 'environments.prod.temporal.encryption.keys.0.key');
      assert.match(err.problems[0].message, /key 'a' \(env:RUNBOOK_TEST_CODEC_SHORT\): expected 32 bytes .* found base64 text of 24 bytes/);
      assert.ok(!err.message.includes(short));
    }
  });

  test('requireEncryption is on unless the config turns it off, and encrypted environments encode failure messages too', () => {
    process.env.RUNBOOK_TEST_CODEC_KEY_A = keyA.toString('base64');
    const on = loadConfig(file('require-default', '        activeKey: a\n        keys: [{ id: a, key: env:RUNBOOK_TEST_CODEC_KEY_A }]\n'));
    assert.equal(encryptionCodecFor(on, 'prod', on.config.environments.prod.temporal)!.requireEncryption, true);
    const converter = dataConverterFor(on, 'prod', on.config.environments.prod.temporal)!;
    assert.equal(converter.failureConverterPath, FAILURE_CONVERTER_PATH);
    const { failureConverter } = require(FAILURE_CONVERTER_PATH) as { failureConverter: { options: { encodeCommonAttributes: boolean } } };
    assert.equal(failureConverter.options.encodeCommonAttributes, true);
    const off = loadConfig(file('require-off', '        activeKey: a\n        keys: [{ id: a, key: env:RUNBOOK_TEST_CODEC_KEY_A }]\n        requireEncryption: false\n'));
    assert.equal(encryptionCodecFor(off, 'prod', off.config.environments.prod.temporal)!.requireEncryption, false);
  });

  test('an unset key variable is reported like any other unresolved secret', () => {
    delete process.env.RUNBOOK_TEST_CODEC_MISSING;
    const loaded = loadConfig(file('missing', '        activeKey: a\n        keys: [{ id: a, key: env:RUNBOOK_TEST_CODEC_MISSING }]\n'));
    assert.throws(() => checkSecretRefs(loaded, ['prod']), /temporal.encryption.keys.0.key: secret reference env:RUNBOOK_TEST_CODEC_MISSING cannot be resolved: environment variable RUNBOOK_TEST_CODEC_MISSING is not set/);
  });
});
