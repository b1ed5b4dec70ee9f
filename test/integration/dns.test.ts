import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateHostedZoneCommand, Route53Client } from '@aws-sdk/client-route-53';
import { ApplicationFailure } from '@temporalio/common';
import { Rfc2136Provider, Route53Provider } from '../../src/activities/dns';
import { DnsServerInfo, startDnsServer, stopDnsServer } from '../../src/sandbox/dns';
import { S3ServerInfo, startS3Server, stopS3Server } from '../../src/sandbox/s3';

const dir = mkdtempSync(join(tmpdir(), 'runbook-dns-test-'));
let bind: DnsServerInfo;
let moto: S3ServerInfo;

before(async () => {
  [bind, moto] = await Promise.all([startDnsServer({ dir, zone: 'sandbox.test', records: { db: '127.0.0.2' } }), startS3Server({ dir })]);
});
after(async () => {
  await Promise.all([stopDnsServer(bind.pid), stopS3Server(moto.pid)]);
  rmSync(dir, { recursive: true, force: true });
});

describe('DNS providers', () => {
  test('RFC 2136: a TSIG-signed update switches the record; the same update without the key is refused and changes nothing', async () => {
    const signed = new Rfc2136Provider({ host: bind.host, port: bind.port }, 'sandbox.test', { name: bind.tsigKeyName, algorithm: 'hmac-sha256', secret: () => bind.tsigSecret });
    const unsigned = new Rfc2136Provider({ host: bind.host, port: bind.port }, 'sandbox.test', undefined);
    const wrongKey = new Rfc2136Provider({ host: bind.host, port: bind.port }, 'sandbox.test', { name: bind.tsigKeyName, algorithm: 'hmac-sha256', secret: () => Buffer.alloc(32, 7).toString('base64') });
    assert.deepEqual(await signed.resolveA('db.sandbox.test'), ['127.0.0.2']);
    for (const refused of [unsigned, wrongKey]) {
      await assert.rejects(refused.upsertA('db.sandbox.test', '127.0.0.9', 30), (err: unknown) => err instanceof ApplicationFailure && err.type === 'PermissionDenied' && /refused the update of db\.sandbox\.test/.test(err.message));
    }
    assert.deepEqual(await signed.resolveA('db.sandbox.test'), ['127.0.0.2']);
    await signed.upsertA('db.sandbox.test', '127.0.0.3', 30);
    assert.deepEqual(await signed.resolveA('db.sandbox.test'), ['127.0.0.3']);
    await signed.upsertA('db.sandbox.test', '127.0.0.3', 30);
    assert.deepEqual(await signed.resolveA('db.sandbox.test'), ['127.0.0.3'], 'an upsert to the same value leaves one record');
  });

  test('names and addresses that could smuggle commands into an update are refused before anything is sent', async () => {
    const signed = new Rfc2136Provider({ host: bind.host, port: bind.port }, 'sandbox.test', { name: bind.tsigKeyName, algorithm: 'hmac-sha256', secret: () => bind.tsigSecret });
    for (const [name, address] of [['db.sandbox.test\nupdate delete sandbox.test', '127.0.0.3'], ['db.sandbox.test', '127.0.0.3\nsend'], ['../etc', '127.0.0.3'], ['db.sandbox.test', '999.0.0.1']]) {
      await assert.rejects(signed.upsertA(name, address, 30), (err: unknown) => err instanceof ApplicationFailure && err.type === 'InvalidInput');
    }
    assert.deepEqual(await signed.resolveA('db.sandbox.test'), ['127.0.0.3']);
  });

  test('Route 53: UPSERT switches a record in the hosted zone (moto server), found by zone name', async () => {
    const client = new Route53Client({ region: 'us-east-1', endpoint: moto.endpoint, credentials: { accessKeyId: moto.accessKeyId, secretAccessKey: moto.secretAccessKey } });
    await client.send(new CreateHostedZoneCommand({ Name: 'prod.example.', CallerReference: `runbook-test-${Date.now()}` }));
    const provider = new Route53Provider(client, 'prod.example');
    assert.deepEqual(await provider.resolveA('db.prod.example'), []);
    await provider.upsertA('db.prod.example', '127.0.0.2', 60);
    assert.deepEqual(await provider.resolveA('db.prod.example'), ['127.0.0.2']);
    await provider.upsertA('db.prod.example', '127.0.0.3', 60);
    assert.deepEqual(await provider.resolveA('db.prod.example'), ['127.0.0.3']);
    client.destroy();
  });
});
