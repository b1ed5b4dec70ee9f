import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { createLogger, SdkLoggerAdapter, SECRET_FIELD_NAMES, scrubSecrets } from '../../src/observability/logger';

/** A logger writing into memory at the most verbose level, as a worker at debug level would. */
function capture() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { logger: createLogger('trace', sink), lines };
}

const secret = (label: string) => `${label}-${randomBytes(9).toString('hex')}`;

describe('log redaction', () => {
  test('every secret-bearing field name is redacted at the top level and nested, in objects and arrays; the fields around it stay', () => {
    const { logger, lines } = capture();
    const planted: string[] = [];
    for (const name of SECRET_FIELD_NAMES) {
      const values = [secret(`${name}-top`), secret(`${name}-nested`), secret(`${name}-deep`), secret(`${name}-array`)];
      planted.push(...values);
      logger.debug({ [name]: values[0], database: 'main', config: { [name]: values[1], host: 'db.internal' }, a: { b: { c: { [name]: values[2] } } }, list: [{ [name]: values[3] }] }, `field ${name}`);
    }
    assert.equal(lines.length, SECRET_FIELD_NAMES.length);
    for (const line of lines) {
      for (const value of planted) assert.ok(!line.includes(value), `a secret survived: ${line}`);
      const parsed = JSON.parse(line) as { database: string; config: { host: string }; msg: string };
      assert.equal(parsed.database, 'main');
      assert.equal(parsed.config.host, 'db.internal');
      assert.match(line, /\[redacted\]/);
    }
  });

  test('a secret field deeper than any fixed path list, in an error of its own, and in a child logger\'s bindings is redacted too; a value too deep to walk is dropped, not written', () => {
    const { logger, lines } = capture();
    const deep = secret('deep');
    const onError = secret('on-error');
    const bound = secret('bound');
    const tooDeep = secret('too-deep');
    let nested: Record<string, unknown> = { password: deep, keep: 'visible' };
    for (let i = 0; i < 6; i++) nested = { level: nested };
    const err = Object.assign(new Error('connect failed'), { token: onError, code: 'ECONNREFUSED' });
    let overflow: Record<string, unknown> = { note: tooDeep };
    for (let i = 0; i < 12; i++) overflow = { level: overflow };
    logger.child({ component: 'driver', apiKey: bound }).info({ nested, err, overflow }, 'deep fields');
    assert.equal(lines.length, 1);
    for (const value of [deep, onError, bound, tooDeep]) assert.ok(!lines[0].includes(value), `a secret survived: ${lines[0]}`);
    const parsed = JSON.parse(lines[0]) as { component: string; apiKey: string; err: { code: string; token: string } };
    assert.equal(parsed.component, 'driver');
    assert.equal(parsed.apiKey, '[redacted]');
    assert.equal(parsed.err.code, 'ECONNREFUSED');
    assert.equal(parsed.err.token, '[redacted]');
    assert.match(lines[0], /"keep":"visible"/);
    assert.match(lines[0], /\[too deep\]/);
  });

  test('the fields the runbooks log by name: database, TSIG, S3, Route 53, codec, webhook, SMTP, signing and Temporal credentials', () => {
    const { logger, lines } = capture();
    const values = {
      dbPassword: secret('pg'), restorePassword: secret('restore'), tsig: randomBytes(32).toString('base64'), s3Secret: secret('s3'), s3KeyId: `AKIA${randomBytes(8).toString('hex').toUpperCase()}`,
      r53Secret: secret('r53'), codecKey: randomBytes(32).toString('base64'), codecToken: secret('codec'), webhook: secret('hook'), smtp: secret('smtp'), signing: '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE\n-----END OPENSSH PRIVATE KEY-----', apiKey: secret('tmprl'), jwt: `eyJ${secret('jwt')}`,
    };
    logger.debug({ database: { host: 'db', user: 'runbook', password: values.dbPassword, restoreTest: { password: values.restorePassword } } }, 'database');
    logger.debug({ dns: { tsig: { name: 'runbook-key', algorithm: 'hmac-sha256', secret: values.tsig } } }, 'dns');
    logger.debug({ backups: { accessKeyId: values.s3KeyId, secretAccessKey: values.s3Secret }, route53: { credentials: { accessKeyId: values.s3KeyId, secretAccessKey: values.r53Secret } } }, 'clouds');
    logger.debug({ encryption: { keys: [{ id: 'k1', encryptionKey: values.codecKey }] }, codecServer: { tokens: [{ name: 'ui', token: values.codecToken }] } }, 'codec');
    logger.debug({ channel: { type: 'webhook', secret: values.webhook }, smtp: { auth: { user: 'ops', pass: values.smtp } } }, 'notifications');
    logger.debug({ signingKey: values.signing, temporal: { apiKey: values.apiKey }, headers: { authorization: `Bearer ${values.jwt}`, 'x-runbook-signature': 'sha256=abc' } }, 'identity');
    const text = lines.join('\n');
    for (const [name, value] of Object.entries(values)) assert.ok(!text.includes(value), `${name} leaked`);
    assert.match(text, /"user":"runbook"/);
    assert.match(text, /"name":"runbook-key"/);
  });

  test('passwords inside connection strings and key=value text are removed from fields, messages and errors; the rest stays for diagnosis', () => {
    const { logger, lines } = capture();
    const pw = secret('conn');
    logger.warn({ url: `postgresql://runbook:${pw}@db.internal:5432/app`, note: `host=db.internal password=${pw} dbname=app` }, `connecting to postgres://runbook:${pw}@db.internal/app`);
    logger.error({ err: new Error(`connect failed for redis://:${pw}@cache:6379 (token=${pw})`) }, 'failed');
    const sdk = new SdkLoggerAdapter(logger);
    sdk.error('Activity failed', { error: new Error(`smtp://ops:${pw}@mail.internal refused`), taskToken: 'opaque' });
    const text = lines.join('\n');
    assert.ok(!text.includes(pw), text);
    assert.match(text, /postgresql:\/\/runbook:\[redacted\]@db\.internal:5432\/app/);
    assert.match(text, /host=db\.internal password=\[redacted\] dbname=app/);
    assert.match(text, /redis:\/\/:\[redacted\]@cache:6379/);
    assert.ok(!text.includes('opaque'), 'the task token is dropped');
  });

  test('text without secrets is left alone', () => {
    for (const t of ['invalid token: alg none: unsigned tokens are refused', 'https://temporal-ui.example.com/namespaces/default', 'backup 20261125T030000Z-a1b2c3 of main: 1.2 MiB', 'the key id k1 is active']) assert.equal(scrubSecrets(t), t);
  });
});
