import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, KeyObject, randomBytes, sign as cryptoSign, constants } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { defaultPayloadConverter, Payload } from '@temporalio/common';
import { EncryptionCodec } from '../../src/codec';
import { FileJwks, JwtRejected, JwtVerifier } from '../../src/codec/jwt';
import { jsonLines, startCli, waitFor } from '../helpers';

/**
 * The codec server as the Temporal Web UI meets it: the browser forwards the signed-in user's access
 * token, a JWT signed by the identity provider, and the server verifies it against the provider's
 * JWKS, served here by a real HTTP server with keys made for this run. The CLI's static token keeps working.
 */
const dir = mkdtempSync(join(tmpdir(), 'runbook-codec-jwt-test-'));
const ISSUER = 'https://login.example.test/';
const AUDIENCE = 'temporal-ui';
const STATIC_TOKEN = randomBytes(24).toString('hex');
const codecKey = randomBytes(32);
const keyEnv = { RUNBOOK_JWT_TEST_CODEC_KEY: codecKey.toString('base64') };
const SECRET_VALUE = `ledger-${randomBytes(6).toString('hex')}`;

type Alg = 'RS256' | 'ES256' | 'PS256';
interface SigningKey {
  kid: string;
  alg: Alg;
  privateKey: KeyObject;
  jwk: Record<string, unknown>;
}
function makeKey(kid: string, alg: Alg): SigningKey {
  const { privateKey, publicKey } = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { kid, alg, privateKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg } };
}
const rsa = makeKey('rsa-2026-01', 'RS256');
const ec = makeKey('ec-2026-01', 'ES256');
const rotated = makeKey('ec-2026-07', 'ES256');
const outsider = makeKey('rsa-2026-01', 'RS256'); // claims rsa's kid, signs with another key

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
function jwt(key: SigningKey, claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  const h = b64({ alg: key.alg, typ: 'JWT', kid: key.kid, ...header });
  const p = b64(claims);
  const data = Buffer.from(`${h}.${p}`);
  const sig =
    key.alg === 'ES256'
      ? cryptoSign('sha256', data, { key: key.privateKey, dsaEncoding: 'ieee-p1363' })
      : key.alg === 'PS256'
        ? cryptoSign('sha256', data, { key: key.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST })
        : cryptoSign('sha256', data, key.privateKey);
  return `${h}.${p}.${sig.toString('base64url')}`;
}
const now = () => Math.floor(Date.now() / 1000);
const claims = (over: Record<string, unknown> = {}) => ({ iss: ISSUER, aud: [AUDIENCE, 'account'], sub: 'u-1001', email: 'alice@example.test', iat: now() - 5, nbf: now() - 5, exp: now() + 300, ...over });

let jwks: { keys: Record<string, unknown>[] } = { keys: [rsa.jwk, ec.jwk] };
let jwksRequests = 0;
let jwksServer: Server;
let server: ReturnType<typeof startCli>;
let url: string;
let sealed: Payload[];

const asJson = (p: Payload) => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  data: Buffer.from(p.data ?? []).toString('base64'),
});
const decodeWith = (authorization: string | undefined, payloads: Payload[] = sealed) =>
  fetch(`${url}/decode`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
    body: JSON.stringify({ payloads: payloads.map(asJson) }),
    signal: AbortSignal.timeout(10_000),
  });
const bearer = (token: string) => `Bearer ${token}`;

before(async () => {
  jwksServer = createServer((req, res) => {
    if (req.url !== '/.well-known/jwks.json') return void res.writeHead(404).end();
    jwksRequests++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwks));
  });
  await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
  const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
  writeFileSync(join(dir, 'cli-token'), `${STATIC_TOKEN}\n`);
  writeFileSync(
    join(dir, 'runbook.yaml'),
    `version: 1
environments:
  prod:
    temporal:
      encryption:
        activeKey: k1
        keys: [{ id: k1, key: env:RUNBOOK_JWT_TEST_CODEC_KEY }]
        codecServer:
          tokens: [{ name: sre-cli, token: file:cli-token }]
          jwt:
            issuer: "${ISSUER}"
            audience: ${AUDIENCE}
            jwksUrl: "${jwksUrl}"
            algorithms: [RS256, ES256]
            clockTolerance: 30s
            refreshAtMost: 1s
            userClaim: email
`,
  );
  sealed = await new EncryptionCodec(new Map([['k1', codecKey]]), 'k1').encode([defaultPayloadConverter.toPayload({ secret: SECRET_VALUE })]);
  server = startCli(['--config', join(dir, 'runbook.yaml'), 'codec-server', '--port', '0'], { env: keyEnv });
  url = await waitFor('the codec server to listen', async () => jsonLines(server.output.stdout).find((l) => l.msg === 'codec server listening')?.url as string | undefined, 180_000);
  // It reads the JWKS at start, so a wrong URL shows at once.
  await waitFor('the JWKS to be read at start', async () => jsonLines(server.output.stdout).find((l) => l.msg === 'JWKS read'), 60_000);
});

after(async () => {
  server?.child.kill('SIGTERM');
  await server?.exited;
  await new Promise<void>((r) => (jwksServer ? jwksServer.close(() => r()) : r()));
  rmSync(dir, { recursive: true, force: true });
});

async function decodedValue(res: Response): Promise<unknown> {
  const body = (await res.json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
  const p = body.payloads[0];
  return defaultPayloadConverter.fromPayload({ metadata: Object.fromEntries(Object.entries(p.metadata).map(([k, v]) => [k, Buffer.from(v, 'base64')])), data: Buffer.from(p.data, 'base64') });
}

describe('runbook codec-server with the Web UI\'s forwarded access tokens', () => {
  test('GET /health answers the probes without credentials and reveals nothing else', async () => {
    const res = await fetch(`${url}/health`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'serving' });
  });

  test('a signed-in user\'s RS256 token decodes, and the audit log names the user from the configured claim', async () => {
    const res = await decodeWith(bearer(jwt(rsa, claims())));
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await decodedValue(res), { secret: SECRET_VALUE });
    await waitFor('the audit line', async () => jsonLines(server.output.stdout).some((l) => l.msg === 'codec request' && l.user === 'alice@example.test' && l.via === 'jwt'));
  });

  test('an ES256 token from the same provider decodes too; a token without the user claim falls back to sub', async () => {
    const res = await decodeWith(bearer(jwt(ec, claims({ email: undefined, sub: 'u-2002' }))));
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await decodedValue(res), { secret: SECRET_VALUE });
    await waitFor('the audit line', async () => jsonLines(server.output.stdout).some((l) => l.msg === 'codec request' && l.user === 'u-2002'));
  });

  test('the CLI\'s static token is still accepted beside the JWTs', async () => {
    const res = await decodeWith(bearer(STATIC_TOKEN));
    assert.equal(res.status, 200);
    await waitFor('the audit line', async () => jsonLines(server.output.stdout).some((l) => l.msg === 'codec request' && l.user === 'sre-cli' && l.via === 'token'));
  });

  const unsigned = () => `${b64({ alg: 'none', typ: 'JWT', kid: rsa.kid })}.${b64(claims())}.`;
  const tampered = () => {
    const [h, , s] = jwt(rsa, claims()).split('.');
    return `${h}.${b64(claims({ email: 'mallory@example.test', sub: 'u-666' }))}.${s}`;
  };
  const hmacWithPublicKey = () => {
    const h = b64({ alg: 'HS256', typ: 'JWT', kid: rsa.kid });
    const p = b64(claims());
    const pem = rsa.privateKey.export({ format: 'pem', type: 'pkcs1' }).toString();
    return `${h}.${p}.${createHmac('sha256', pem).update(`${h}.${p}`).digest('base64url')}`;
  };
  const refusals: { name: string; token: () => string; status: number; says: RegExp }[] = [
    { name: 'an expired token', token: () => jwt(rsa, claims({ exp: now() - 600, iat: now() - 4000, nbf: now() - 4000 })), status: 401, says: /the token expired at \d{4}-/ },
    { name: 'a token not valid yet', token: () => jwt(rsa, claims({ nbf: now() + 600 })), status: 401, says: /not valid before/ },
    { name: 'a token for another audience', token: () => jwt(rsa, claims({ aud: 'payments-api' })), status: 401, says: /audience 'payments-api' does not include the configured audience 'temporal-ui'/ },
    { name: 'a token from another issuer', token: () => jwt(rsa, claims({ iss: 'https://evil.example.test/' })), status: 401, says: /issuer 'https:\/\/evil.example.test\/' is not the configured issuer 'https:\/\/login.example.test\/'/ },
    { name: 'a token from an issuer spelled with non-ASCII characters (the header stays valid)', token: () => jwt(rsa, claims({ iss: 'https://lögin.example.test/' })), status: 401, says: /issuer 'https:\/\/lögin.example.test\/' is not the configured issuer/ },
    { name: 'a token whose header is not JSON', token: () => `${Buffer.from('{alg:').toString('base64url')}.${b64(claims())}.c2ln`, status: 401, says: /header is not base64url JSON/ },
    { name: 'a token signed by a key the provider does not publish (unknown kid)', token: () => jwt({ ...outsider, kid: 'ghost-1' }, claims()), status: 401, says: /unknown kid 'ghost-1': the JWKS \(http:\/\/127\.0\.0\.1:\d+\/\.well-known\/jwks\.json.*\) has no RS256 key with that id/ },
    { name: 'an unsigned token (alg none)', token: unsigned, status: 401, says: /alg none: unsigned tokens are refused/ },
    { name: 'a tampered token (claims changed after signing)', token: tampered, status: 401, says: /bad signature/ },
    { name: 'a token signed by another key under a published kid', token: () => jwt(outsider, claims()), status: 401, says: /bad signature/ },
    { name: 'an HS256 token keyed with the public key (algorithm confusion)', token: hmacWithPublicKey, status: 401, says: /alg HS256 is not accepted; expected one of RS256, ES256/ },
    { name: 'an RS256 token relabelled PS256 (not a configured algorithm)', token: () => jwt({ ...rsa, alg: 'PS256' }, claims()), status: 401, says: /alg PS256 is not accepted/ },
    { name: 'a token that never expires', token: () => jwt(rsa, claims({ exp: undefined })), status: 401, says: /no exp claim/ },
    { name: 'a random token that is neither configured nor a JWT', token: () => randomBytes(24).toString('hex'), status: 403, says: /neither a configured token nor a JWT/ },
  ];
  for (const r of refusals) {
    test(`refused with the reason: ${r.name} (${r.status}), and nothing is decoded`, async () => {
      const res = await decodeWith(bearer(r.token()));
      const body = await res.text();
      assert.equal(res.status, r.status, body);
      assert.match(body, r.says);
      assert.ok(!body.includes(SECRET_VALUE));
      if (r.status === 401) assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="runbook codec server", error="invalid_token", error_description="/);
    });
  }

  test('the refusals are in the log with their reasons, and no token is', async () => {
    const refused = jsonLines(server.output.stdout).filter((l) => l.msg === 'codec request refused');
    assert.ok(refused.some((l) => /expired/.test(String(l.reason))));
    assert.ok(refused.some((l) => /alg none/.test(String(l.reason))));
    assert.ok(!server.output.stdout.includes(STATIC_TOKEN));
    assert.ok(!server.output.stdout.includes(jwt(rsa, claims()).split('.')[2].slice(0, 20)));
  });

  test('when the provider rotates, a token under the new kid reads the JWKS again and verifies', async () => {
    const before = jwksRequests;
    assert.equal((await decodeWith(bearer(jwt(rotated, claims())))).status, 401, 'not published yet');
    jwks = { keys: [rsa.jwk, ec.jwk, rotated.jwk] };
    // An unknown kid re-reads the JWKS at most every refreshAtMost (1 s here).
    await new Promise((r) => setTimeout(r, 1_200));
    const res = await decodeWith(bearer(jwt(rotated, claims())));
    assert.equal(res.status, 200, await res.clone().text());
    assert.ok(jwksRequests > before);
  });

  test('a burst of tokens with made-up kids reads the JWKS at most once per refreshAtMost', async () => {
    await new Promise((r) => setTimeout(r, 1_200));
    const before = jwksRequests;
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => decodeWith(bearer(jwt({ ...outsider, kid: `made-up-${i}` }, claims())))));
    assert.deepEqual([...new Set(answers.map((a) => a.status))], [401]);
    assert.ok(jwksRequests - before <= 2, `${jwksRequests - before} JWKS reads for 20 made-up kids`);
  });

  test('a plaintext payload is refused by /decode with the reason (requireEncryption is on by default); the SDK\'s own patch-marker data passes', async () => {
    const res = await decodeWith(bearer(STATIC_TOKEN), [defaultPayloadConverter.toPayload({ injected: true })]);
    const body = await res.text();
    assert.equal(res.status, 400, body);
    assert.match(body, /refused a payload that is not encrypted \('json\/plain'\).*requireEncryption/);
    // What the SDK core writes into a core_patch marker, which no codec ever encoded: a whole history sent by the Web UI decodes.
    const marker = defaultPayloadConverter.toPayload({ id: 'one-mutating-run-per-target', deprecated: false });
    const withMarker = await decodeWith(bearer(STATIC_TOKEN), [...sealed, marker]);
    assert.equal(withMarker.status, 200, await withMarker.clone().text());
    // Anything more than that shape is not the marker.
    const lookalike = await decodeWith(bearer(STATIC_TOKEN), [defaultPayloadConverter.toPayload({ id: 'x', deprecated: false, approve: true })]);
    assert.equal(lookalike.status, 400);
  });
});

describe('JWKS from a file', () => {
  test('a JWKS file verifies tokens, and a changed file is read again', async () => {
    const file = join(dir, 'jwks.json');
    writeFileSync(file, JSON.stringify({ keys: [ec.jwk] }));
    const verifier = new JwtVerifier({ issuer: ISSUER, audiences: [AUDIENCE], algorithms: ['RS256', 'ES256'], clockToleranceMs: 0, userClaim: 'email', jwks: new FileJwks(file) });
    assert.equal((await verifier.verify(jwt(ec, claims()))).user, 'alice@example.test');
    await assert.rejects(verifier.verify(jwt(rsa, claims())), (e: Error) => e instanceof JwtRejected && /unknown kid 'rsa-2026-01'/.test(e.message));
    writeFileSync(file, JSON.stringify({ keys: [ec.jwk, rsa.jwk, { kty: 'oct', k: 'c2hhcmVkLXNlY3JldA', kid: 'hmac' }] }));
    assert.equal((await verifier.verify(jwt(rsa, claims()))).user, 'alice@example.test');
  });

  test('a missing file is a 503-kind refusal (the token may be fine), not a bad token', async () => {
    const verifier = new JwtVerifier({ issuer: ISSUER, audiences: [AUDIENCE], algorithms: ['ES256'], clockToleranceMs: 0, userClaim: 'sub', jwks: new FileJwks(join(dir, 'absent.json')) });
    await assert.rejects(verifier.verify(jwt(ec, claims())), (e: Error) => e instanceof JwtRejected && e.status === 503 && /cannot be read/.test(e.message));
  });
});
