import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseAllowedSigners } from '../../src/identity/allowedSigners';
import { generateKey, signStatement, sshKeygen } from '../../src/identity/signer';
import { fingerprint, parsePublicKeyLine, verifySignature } from '../../src/identity/sshsig';
import { canonicalJson, Expectation, inputHash, Statement, StatementRefused, statementText, verifyStatement } from '../../src/identity/statement';

// Real keys and real signatures from OpenSSH's ssh-keygen; verification is the project's own pure code.
const dir = mkdtempSync(join(tmpdir(), 'runbook-sig-test-'));
const keys = { alice: join(dir, 'alice'), bob: join(dir, 'bob'), mallory: join(dir, 'mallory'), carol: join(dir, 'carol-ecdsa'), rsa: join(dir, 'rsa') };
const pub: Record<string, string> = {};
const NOW = Date.parse('2026-03-02T10:00:00Z');

before(async () => {
  pub.alice = await generateKey(keys.alice, 'alice');
  pub.bob = await generateKey(keys.bob, 'bob');
  pub.mallory = await generateKey(keys.mallory, 'mallory');
  execFileSync(sshKeygen(), ['-q', '-t', 'ecdsa', '-b', '256', '-N', '', '-C', 'carol', '-f', keys.carol]);
  pub.carol = readFileSync(`${keys.carol}.pub`, 'utf8').trim();
  execFileSync(sshKeygen(), ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-C', 'rsa', '-f', keys.rsa]);
  pub.rsa = readFileSync(`${keys.rsa}.pub`, 'utf8').trim();
});
after(() => rmSync(dir, { recursive: true, force: true }));

const signersText = () => [`alice ${pub.alice}`, `bob ${pub.bob}`, `carol ${pub.carol}`, `dave valid-before="20260101" ${pub.mallory.split(' ').slice(0, 2).join(' ')}`].join('\n');

const base = (over: Partial<Statement> = {}): Statement => ({
  v: 1,
  namespace: 'default',
  environment: 'production',
  runbook: 'drDrill',
  workflowId: 'drDrill-production-1',
  runId: 'run-1',
  gate: 'g1-start-the-drill',
  act: 'approve',
  by: 'alice',
  reason: 'quarterly drill',
  at: new Date(NOW - 60_000).toISOString(),
  ...over,
});
const want = (over: Partial<Expectation> = {}): Expectation => ({
  namespace: 'default',
  environment: 'production',
  runbook: 'drDrill',
  workflowId: 'drDrill-production-1',
  runId: 'run-1',
  gate: 'g1-start-the-drill',
  acts: ['approve', 'reject'],
  nowMs: NOW,
  ...over,
});
function refusedWith(code: StatementRefused['code'], pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof StatementRefused, String(err));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return true;
  };
}

describe('signed decisions', () => {
  test('a decision signed by a listed Ed25519 key verifies, naming the principal and the fingerprint ssh-keygen prints', async () => {
    const signed = await signStatement(base(), keys.alice);
    const v = verifyStatement(signed, parseAllowedSigners(signersText()), want());
    assert.equal(v.principal, 'alice');
    assert.equal(v.keyType, 'ssh-ed25519');
    const printed = execFileSync(sshKeygen(), ['-l', '-f', `${keys.alice}.pub`], { encoding: 'utf8' }).split(' ')[1];
    assert.equal(v.fingerprint, printed);
    assert.equal(v.statement.reason, 'quarterly drill');
    assert.match(v.signatureHash, /^[0-9a-f]{64}$/);
  });

  test('an ECDSA P-256 key verifies too, and ssh-keygen -Y verify agrees with the verifier', async () => {
    const signed = await signStatement(base({ by: 'carol' }), keys.carol);
    assert.equal(verifyStatement(signed, parseAllowedSigners(signersText()), want()).keyType, 'ecdsa-sha2-nistp256');
    // Cross-check: OpenSSH itself accepts the same signature for the same text.
    const sigFile = join(dir, 'carol.sig');
    const signersFile = join(dir, 'allowed');
    writeFileSync(sigFile, signed.signature);
    writeFileSync(signersFile, signersText());
    const out = execFileSync(sshKeygen(), ['-Y', 'verify', '-f', signersFile, '-I', 'carol', '-n', 'runbook-decision', '-s', sigFile], { input: signed.statement, encoding: 'utf8' });
    assert.match(out, /Good "runbook-decision" signature for carol/);
  });

  test('many ECDSA signatures verify (high-S signatures from OpenSSH are valid)', async () => {
    const signers = parseAllowedSigners(signersText());
    for (let i = 0; i < 12; i++) verifyStatement(await signStatement(base({ by: 'carol', reason: `round ${i}` }), keys.carol), signers, want());
  });

  test('the same statement replayed to another gate, run, workflow, act, environment or namespace is refused', async () => {
    const signed = await signStatement(base(), keys.alice);
    const signers = parseAllowedSigners(signersText());
    for (const [over, what] of [
      [{ gate: 'g2-continue' }, /statement is for gate "g1-start-the-drill", not "g2-continue"/],
      [{ runId: 'run-2' }, /for run "run-1", not "run-2"/],
      [{ workflowId: 'drDrill-production-2' }, /for workflow/],
      [{ acts: ['abort'] as const }, /says approve, this action needs abort/],
      [{ environment: 'staging' }, /for environment/],
      [{ namespace: 'prod' }, /for namespace/],
      [{ runbook: 'rollout' }, /for runbook/],
    ] as const) {
      assert.throws(() => verifyStatement(signed, signers, want(over as Partial<Expectation>)), refusedWith('wrong-binding', what));
    }
  });

  test('a typed name without signature, an unlisted key, a key listed for someone else, a tampered reason, and an old statement are refused with the reason', async () => {
    const signers = parseAllowedSigners(signersText());
    assert.throws(() => verifyStatement({ decision: 'approve', by: 'alice' }, signers, want()), refusedWith('malformed', /statement: expected the signed statement text/));
    assert.throws(() => verifyStatement({ statement: statementText(base()) }, signers, want()), refusedWith('unsigned', /unsigned/));
    assert.throws(() => verifyStatement('alice', signers, want()), refusedWith('unsigned', /expected a signed statement/));
    const byMallory = await signStatement(base({ by: 'mallory' }), keys.mallory);
    assert.throws(() => verifyStatement(byMallory, parseAllowedSigners(`alice ${pub.alice}`), want()), refusedWith('unknown-key', /is not in the allowed signers/));
    const posing = await signStatement(base({ by: 'alice' }), keys.bob);
    assert.throws(() => verifyStatement(posing, signers, want()), refusedWith('unknown-key', /is not listed for alice/));
    const signed = await signStatement(base(), keys.alice);
    const tampered = { ...signed, statement: signed.statement.replace('quarterly drill', 'anything goes') };
    assert.throws(() => verifyStatement(tampered, signers, want()), refusedWith('bad-signature', /does not match the statement/));
    const old = await signStatement(base({ at: new Date(NOW - 3_600_000).toISOString() }), keys.alice);
    assert.throws(() => verifyStatement(old, signers, want()), refusedWith('expired', /more than 900 s ago/));
    const future = await signStatement(base({ at: new Date(NOW + 3_600_000).toISOString() }), keys.alice);
    assert.throws(() => verifyStatement(future, signers, want()), refusedWith('expired', /in the future/));
    // dave's entry expired on 2026-01-01: the key no longer signs for him.
    const dave = await signStatement(base({ by: 'dave' }), keys.mallory);
    assert.throws(() => verifyStatement(dave, signers, want()), refusedWith('unknown-key', /expired at 2026-01-01/));
  });

  test('a signature in another SSH namespace (a git commit signature) is refused', async () => {
    const text = statementText(base());
    const sig = execFileSync(sshKeygen(), ['-Y', 'sign', '-n', 'git', '-f', keys.alice, '-q'], { input: text, encoding: 'utf8' });
    assert.throws(() => verifyStatement({ statement: text, signature: sig }, parseAllowedSigners(signersText()), want()), refusedWith('bad-signature', /namespace "git", not runbook-decision/));
  });

  test('RSA keys are refused by name (the pure verifier supports Ed25519 and ECDSA P-256)', async () => {
    const text = statementText(base());
    const sig = execFileSync(sshKeygen(), ['-Y', 'sign', '-n', 'runbook-decision', '-f', keys.rsa, '-q'], { input: text, encoding: 'utf8' });
    assert.throws(() => verifySignature(sig, text, 'runbook-decision'), /key type "ssh-rsa" is not supported; use ssh-ed25519/);
    assert.throws(() => parseAllowedSigners(`alice ${pub.rsa}`), /line 1: key type "ssh-rsa" is not supported/);
  });

  test('malformed signatures and huge statements are refused before any cryptography', () => {
    const signers = parseAllowedSigners(signersText());
    const st = statementText(base());
    for (const [signature, pattern] of [
      ['not a signature', /expected an armored SSH signature/],
      ['-----BEGIN SSH SIGNATURE-----\n!!!!\n-----END SSH SIGNATURE-----', /not valid base64/],
      ['-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----', /truncated/],
      ['-----BEGIN SSH SIGNATURE-----\nQUJDREVGAAAAAQ==\n-----END SSH SIGNATURE-----', /does not start with SSHSIG/],
      [`-----BEGIN SSH SIGNATURE-----\n${'A'.repeat(10_000)}\n-----END SSH SIGNATURE-----`, /at most 4096/],
    ] as const) {
      assert.throws(() => verifyStatement({ statement: st, signature }, signers, want()), refusedWith('bad-signature', pattern));
    }
    assert.throws(() => verifyStatement({ statement: 'x'.repeat(100_000), signature: 'sig' }, signers, want()), refusedWith('malformed', /100000 characters; a statement is at most 4096/));
    assert.throws(() => verifyStatement({ statement: '{"v":1}', signature: 'sig' }, signers, want()), refusedWith('malformed', /statement.namespace/));
    assert.throws(() => verifyStatement({ statement: statementText(base()).replace('"v":1', '"v":1,"extra":true'), signature: 'sig' }, signers, want()), refusedWith('malformed', /statement.extra: unknown field/));
  });

  test('allowed_signers: options, comments, wildcards; unusable lines are errors naming the line', () => {
    const k = pub.alice.split(' ').slice(0, 2).join(' ');
    const parsed = parseAllowedSigners(`# the team\n\nalice,*@ops.example.com namespaces="runbook-decision,git",valid-after="20250101" ${k} alice@laptop\n`);
    assert.equal(parsed.length, 1);
    assert.deepEqual(parsed[0].principals, ['alice', '*@ops.example.com']);
    assert.deepEqual(parsed[0].namespaces, ['runbook-decision', 'git']);
    assert.equal(parsed[0].fingerprint, fingerprint(parsePublicKeyLine(k)));
    assert.throws(() => parseAllowedSigners(`\nalice cert-authority ${k}`), /line 2: cert-authority: certificates are not supported/);
    assert.throws(() => parseAllowedSigners('alice ssh-ed25519 AAAA!!'), /line 1: not valid base64/);
    assert.throws(() => parseAllowedSigners(`alice frobnicate ${k}`), /unknown option "frobnicate"/);
    assert.throws(() => parseAllowedSigners(`al;ce ${k}`), /principal "al;ce"/);
    assert.throws(() => parseAllowedSigners(`alice ssh-ed25519 ${k.split(' ')[1].slice(0, 20)}`), /line 1: the public key is truncated/);
  });

  test('the input hash of a start ignores key order and the start field itself', () => {
    assert.equal(inputHash({ b: 1, a: { y: 2, x: [1, { d: 1, c: 2 }] } }), inputHash({ a: { x: [1, { c: 2, d: 1 }], y: 2 }, b: 1, start: { statement: 's', signature: 'x' } }));
    assert.notEqual(inputHash({ a: 1 }), inputHash({ a: 2 }));
    assert.equal(canonicalJson({ b: undefined, a: 1 }), '{"a":1}');
  });
});
