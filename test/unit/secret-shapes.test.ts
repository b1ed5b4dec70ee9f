import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { namedSecretKind, secretKind } from '../../src/activities/checks/secretShapes';

// Values assembled at run time, so no literal in this file looks like a credential to a scanner.
const aws = ['AK', 'IA', 'Z7Q2WXYV4N6PLM3R'].join('');
const jwt = ['eyJhbGciOiJIUzI1NiJ9', 'eyJzdWIiOiJ3b3JrZXIifQ', 'c2lnbmF0dXJlLXNpZ25hdHVyZQ'].join('.');
const pem = ['-----BEGIN', 'RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----'].join(' ');
const ghToken = `ghp_${'a1B2c3D4e5'.repeat(4)}`;

describe('secrets by shape', () => {
  const cases: [what: string, value: string, kind: string | undefined][] = [
    ['a private key', pem, 'a private key'],
    ['an AWS key id inside other text', `aws_access_key_id = ${aws}`, 'an AWS access key id'],
    ['a URL with a password', 'postgres://app:s3cr3t-pw@db.internal:5432/app', 'a password in a connection string'],
    ['a libpq connection string', 'host=db.internal user=app password=s3cr3t-pw dbname=app', 'a password in a connection string'],
    ['a JWT', `Authorization: Bearer ${jwt}`, 'a JSON Web Token'],
    ['a GitHub token', `token: ${ghToken}`, 'an API token'],
    ['a YAML password line', 'database:\n  host: db\n  password: hunter2hunter2\n', 'a password or token in a config file'],
    ['a properties token line', 'service.api_key=abcd1234efgh', 'a password or token in a config file'],
    ['a URL without a password', 'postgres://app@db.internal:5432/app', undefined],
    ['a password from a variable', 'password: ${DB_PASSWORD}', undefined],
    ['a password from a file reference', 'password: file:/run/secrets/db', undefined],
    ['a libpq string with the password from the environment', 'host=db user=app password=$PGPASSWORD', undefined],
    ['plain settings', 'LOG_LEVEL=info\nWORKERS=4\n', undefined],
    ['a word that merely contains token', 'tokenizer: whitespace', undefined],
  ];
  for (const [what, value, kind] of cases) test(what, () => assert.equal(secretKind(value), kind));
});

describe('secrets by name', () => {
  test('a literal under a secret-like name is a secret; a reference or an empty value is not', () => {
    assert.equal(namedSecretKind('DB_PASSWORD', 'hunter2'), 'a secret by its name');
    assert.equal(namedSecretKind('STRIPE_API_KEY', 'x1'), 'a secret by its name');
    assert.equal(namedSecretKind('DB_PASSWORD', '${DB_PASSWORD}'), undefined);
    assert.equal(namedSecretKind('DB_PASSWORD', '$(DB_PASSWORD)'), undefined);
    assert.equal(namedSecretKind('DB_PASSWORD', 'file:/run/secrets/db'), undefined);
    assert.equal(namedSecretKind('DB_PASSWORD', ''), undefined);
    assert.equal(namedSecretKind('DB_PASSWORD', undefined), undefined);
    assert.equal(namedSecretKind('LOG_LEVEL', 'info'), undefined);
  });
  test('a shape wins over the name: any variable holding a connection string with a password is reported as such', () => {
    assert.equal(namedSecretKind('DATABASE_URL', 'postgres://app:s3cr3t-pw@db/app'), 'a password in a connection string');
  });
});
