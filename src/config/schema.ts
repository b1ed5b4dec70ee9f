import { z } from 'zod';
import { parseDuration } from './duration';
import { isSecretRef, SecretRef } from './secrets';
import { loadTestSchema } from './loadTest';
import { parseAllowedSigners } from '../identity/allowedSigners';
import { JWT_ALGORITHMS, jwksUrlProblem } from '../codec/jwt';
import { gitopsSchema, promotionSchema, releaseSchema } from './releases';
import { RUNBOOK_ROLE_PURPOSES, RunbookRolePurpose } from './pgRoles';

/** A duration written as text ("15m", "1h30m", "90d"), held in milliseconds. */
const duration = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `expected a positive duration such as "30s", "15m" or "90d", found "${text}"` });
    return z.NEVER;
  }
  return ms;
});

/** An RPO target: a duration, or 0 ("0", "0s") for no acknowledged write lost at all. */
const rpoTarget = z.string().transform((text, ctx) => {
  if (/^\s*0(ms|s|m|h)?\s*$/.test(text)) return 0;
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `expected 0 (nothing may be lost) or a positive duration such as "30s" or "15m", found "${text}"` });
    return z.NEVER;
  }
  return ms;
});

const secretRef = z.string().refine(
  (value): value is SecretRef => isSecretRef(value),
  {
    error: (issue) =>
      `inline secret values are not allowed; write a reference instead, env:NAME or file:/path/to/secret (found a ${String(issue.input).length}-character literal)`,
  },
);

const hostname = z
  .string()
  .regex(/^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/, 'expected a host name or IPv4 address such as 127.0.0.1 or db.example.com');

const port = z.number().int().min(1).max(65535);

/** host:port, as Temporal and DNS servers are addressed. */
const address = z.string().regex(/^[A-Za-z0-9.-]+:\d{1,5}$/, 'expected host:port, such as 127.0.0.1:7233');

/** Names that reach SQL, DNS or Kubernetes are held to a conservative grammar. */
const identifier = z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'expected a lower-case identifier (letters, digits, _; at most 63 characters)');
/** RFC 1123 host names: labels of 1-63 letters, digits and inner hyphens; at most 253 characters in all. */
const dnsLabel = z
  .string()
  .max(253, 'expected a DNS name of at most 253 characters')
  .regex(/^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?$/, 'expected a DNS name of lower-case labels (each 1-63 letters, digits, inner -), such as db or db.example.com');
/** One SQL statement: the runbook runs it as it is, so a second statement could change data. */
const singleStatement = z
  .string()
  .min(1)
  .max(10_000)
  .refine((q) => !/;\s*\S/.test(q), 'expected a single SQL statement (no ; between statements)');
const k8sName = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'expected a Kubernetes name (lower-case letters, digits, -)');
/** A data directory the local topology driver hands to pg_ctl: absolute, so it never depends on the worker's cwd. */
const dataDir = z
  .string()
  .min(1)
  .max(1024)
  .refine((d) => d.startsWith('/') && !d.split('/').includes('..') && !/[\x00-\x1f\x7f]/.test(d), 'expected an absolute directory path without .. segments or control characters');

export const QUEUE_KINDS = ['critical', 'standard', 'batch'] as const;
export type QueueKind = (typeof QUEUE_KINDS)[number];

const tlsSchema = z
  .object({
    serverCa: secretRef.optional(),
    clientCert: secretRef.optional(),
    clientKey: secretRef.optional(),
    serverName: hostname.optional(),
  })
  .strict()
  .refine((tls) => (tls.clientCert === undefined) === (tls.clientKey === undefined), {
    message: 'clientCert and clientKey go together for mTLS: set both or neither',
  });

const keyId = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'expected a key id of letters, digits, ., _ and - (at most 64), such as 2026-01');
const webOrigin = z.string().regex(/^https?:\/\/[^/\s]+$/, 'expected a web origin without a path, such as https://temporal-ui.example.com or http://localhost:8233');

/**
 * Access tokens of the Web UI's signed-in users, verified as JWTs against the identity provider's JSON
 * Web Key Set, fetched from jwksUrl (cached, read again for an unknown key id) or read from jwksFile.
 */
const codecJwtSchema = z
  .object({
    issuer: z.string().min(1, 'expected the identity provider\'s issuer, exactly as its tokens carry it in iss (e.g. https://login.example.com/)'),
    audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)], { error: 'expected the audience the tokens are issued for (aud), or a list of them' }),
    jwksUrl: z
      .string()
      .superRefine((url, ctx) => {
        const problem = jwksUrlProblem(url);
        if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
      })
      .optional(),
    jwksFile: z.string().regex(/^file:.+/, 'expected file:path/to/jwks.json (relative to the config file)').optional(),
    algorithms: z.array(z.enum(JWT_ALGORITHMS, { error: `expected one of ${JWT_ALGORITHMS.join(', ')} (asymmetric algorithms only: HS* and none are never accepted)` })).min(1).default(['RS256', 'ES256']),
    /** Allowed clock difference with the identity provider for exp, nbf and iat. */
    clockTolerance: duration.prefault('60s'),
    /** How long fetched keys are used before the JWKS is read again. */
    cacheFor: duration.prefault('10m'),
    /** An unknown key id reads the JWKS again, but at most this often. */
    refreshAtMost: duration.prefault('30s'),
    /** The claim that names the user in the audit log (sub when absent from a token). */
    userClaim: z.string().min(1).default('sub'),
  })
  .strict()
  .refine((j) => (j.jwksUrl === undefined) !== (j.jwksFile === undefined), { message: 'give either jwksUrl (the provider\'s JWKS endpoint) or jwksFile (a JWKS document on disk), exactly one' });

/**
 * Payload encryption: every key listed can decrypt; only the active one encrypts. Each key is a secret
 * reference to 32 bytes written as hex or base64 (checked where the reference is resolved).
 */
const encryptionSchema = z
  .object({
    activeKey: keyId,
    keys: z.array(z.object({ id: keyId, key: secretRef }).strict()).min(1, 'list at least one key: [{ id, key: env:NAME or file:/path }]'),
    /**
     * Refuse payloads that are not encrypted (worker, CLI and codec server alike). Turn off only while
     * histories written before encryption was turned on must still be read.
     */
    requireEncryption: z.boolean().default(true),
    /** Who may ask `runbook codec-server` to decode (or encode) this environment's payloads, and from which web origins. */
    codecServer: z
      .object({
        /** Static bearer tokens, for the Temporal CLI (--codec-auth) and scripts. */
        tokens: z
          .array(z.object({ name: z.string().regex(/^[A-Za-z0-9._@+-]{1,128}$/, 'expected a name such as alice or temporal-ui'), token: secretRef }).strict())
          .min(1, 'list at least one bearer token: [{ name, token: env:NAME or file:/path }], or leave tokens out and configure jwt')
          .optional(),
        /** The Web UI's signed-in users: their access token (a JWT the UI forwards), verified against the identity provider's keys. */
        jwt: codecJwtSchema.optional(),
        allowedOrigins: z.array(webOrigin).default(['http://localhost:8233', 'http://127.0.0.1:8233']),
      })
      .strict()
      .refine((c) => c.tokens !== undefined || c.jwt !== undefined, {
        message: 'nobody could use the codec server: configure tokens (static bearer tokens for the CLI) or jwt (the Web UI\'s signed-in users), or both',
      })
      .optional(),
  })
  .strict()
  .superRefine((enc, ctx) => {
    const seen = new Set<string>();
    enc.keys.forEach((k, i) => {
      if (seen.has(k.id)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['keys', i, 'id'], message: `duplicate key id '${k.id}': each id names one key for good` });
      seen.add(k.id);
    });
    if (!seen.has(enc.activeKey)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['activeKey'], message: `names key '${enc.activeKey}', which is not listed under keys (listed: ${[...seen].join(', ')})` });
    }
    const names = new Set<string>();
    enc.codecServer?.tokens?.forEach((t, i) => {
      if (names.has(t.name)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['codecServer', 'tokens', i, 'name'], message: `duplicate token name '${t.name}'` });
      names.add(t.name);
    });
  });

const hostCount = z.number().int().min(1).max(100);

/**
 * The Temporal cluster itself, as the readiness audit and the config backup runbooks read it. Its
 * settings and membership come from the cluster's own API at temporal.address; these fields say where
 * the rest is: its persistence database (a key of databases:), its SQL visibility database, its dynamic
 * config file, and what high availability means here.
 */
const temporalClusterSchema = z
  .object({
    /** A key of databases: Temporal's own persistence database, backed up and restore-tested like the others. */
    persistenceDatabase: identifier,
    /** The SQL visibility database on the same server, when visibility is SQL (its schema version is read and backed up). */
    visibilityDatabase: identifier.optional(),
    /** The dynamic config file every server reads (relative to this file); audited and kept by backupTemporalConfig. */
    dynamicConfigFile: z.string().min(1).optional(),
    /** Fewest hosts per service role the cluster's membership must show for high availability. */
    minimumHosts: z
      .object({ frontend: hostCount.default(2), history: hostCount.default(2), matching: hostCount.default(2), worker: hostCount.default(2) })
      .strict()
      .prefault({}),
    /** The newest configuration backup a restore test accepts (a nightly backup plus slack). */
    configBackupMaxAge: duration.prefault('26h'),
  })
  .strict();

const temporalSchema = z
  .object({
    address: address.default('127.0.0.1:7233'),
    namespace: z.string().min(1).default('default'),
    apiKey: secretRef.optional(),
    tls: tlsSchema.optional(),
    encryption: encryptionSchema.optional(),
    cluster: temporalClusterSchema.optional(),
    taskQueues: z
      .object({
        critical: z.string().min(1).default('critical-queue'),
        standard: z.string().min(1).default('standard-queue'),
        batch: z.string().min(1).default('batch-queue'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/** A PostgreSQL setting's size, as postgresql.conf writes it. */
const pgSize = z.string().regex(/^\d+(kB|MB|GB)$/, 'expected a size such as 128MB or 2GB');

/** Where backups are restored for testing, and what a restored copy must satisfy. */
const restoreTestSchema = z
  .object({
    /**
     * Where a dump is restored: a scratch PostgreSQL instance the worker starts (the default without a
     * host), a dedicated restore server (the default with a host), or a scratch database on the source
     * server itself (an explicit choice: it loads production). Physical backups always restore into a
     * scratch instance.
     */
    into: z.enum(['scratchInstance', 'restoreServer', 'sourceServer'], { error: 'expected scratchInstance, restoreServer (with host) or sourceServer' }).optional(),
    /** Server for scratch databases (into: restoreServer). */
    host: hostname.optional(),
    port: port.optional(),
    user: identifier.optional(),
    password: secretRef.optional(),
    /** Where scratch instances get their data directories; it must hold a whole restored copy. */
    scratchDir: dataDir.default('/var/tmp/runbook-scratch'),
    /** shared_buffers of a scratch instance (a restored configuration may ask for production's memory). */
    scratchSharedBuffers: pgSize.default('128MB'),
    /** pg_restore parallel jobs where the archive can be read with seeks (not from a stream). */
    jobs: z.number().int().min(1).max(32).default(1),
    /** How far back `random` recovery-point selection reaches, and the default window of a random point in time. */
    randomWindow: duration.prefault('7d'),
    /** Each query must return a single true value on the restored copy. */
    assertions: z
      .array(
        z
          .object({
            name: z.string().min(1).max(200),
            sql: singleStatement,
          })
          .strict(),
      )
      .default([]),
    /** A restore test fails when the newest backup is older than this; defaults to targets.rpo. */
    maxBackupAge: duration.optional(),
    /** pgBackRest: a restore test fails when the newest archived WAL segment is older than this; defaults to targets.rpo. */
    maxArchiveAge: duration.optional(),
    /** pgBackRest: WAL segments waiting to be archived on the source beyond which a restore test fails. */
    maxArchiveBacklog: z.number().int().min(1).max(100_000).default(8),
    /** pgBackRest: run `pgbackrest verify` (reads every file of the repository) before restoring. */
    verifyRepository: z.boolean().default(true),
    /** The restore canary: a row with a timestamp written to the source on a schedule (restoreCanary runbook). */
    canary: z
      .object({
        /** Rows older than this are deleted by the canary runbook; keep it longer than the oldest backup you keep. */
        keep: duration.prefault('40d'),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .refine((r) => (r.user === undefined) === (r.password === undefined), { message: 'user and password go together: set both, or neither to use the database credentials' })
  .superRefine((r, ctx) => {
    if (r.into === 'restoreServer' && r.host === undefined) ctx.addIssue({ code: 'custom', path: ['host'], message: 'into: restoreServer needs host (and port, user, password) of the restore server' });
    if (r.into !== undefined && r.into !== 'restoreServer' && (r.host !== undefined || r.port !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['host'], message: `host and port name a restore server; with into: ${r.into} drop them, or set into: restoreServer` });
    }
  });

/** An S3 key prefix-safe path inside a bucket: pgBackRest's repo1-path. */
const repoPath = z
  .string()
  .max(512)
  .regex(/^\/[A-Za-z0-9_.\/-]*$/, 'expected an absolute repository path such as /pgbackrest')
  .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'expected a repository path without . or .. segments');

/** A file on the worker (absolute, or relative to the config file). */
const filePath = z
  .string()
  .min(1)
  .max(1024)
  .refine((p) => !/[\x00-\x1f\x7f]/.test(p), 'expected a file path without control characters');

/**
 * pgBackRest to an S3 repository. `access` says where pgBackRest reads the database cluster's files:
 * `local`, the worker runs on the database host (as the data directory's owner); `tls`, through the
 * database host's pgBackRest TLS server (the worker is the repository host).
 */
const pgbackrestSchema = z
  .object({
    stanza: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected a stanza name of letters, digits, _, . and -'),
    repo: z
      .object({
        bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'expected an S3 bucket name (3-63 lower-case letters, digits, dots, hyphens)'),
        path: repoPath.default('/pgbackrest'),
        endpoint: z
          .string()
          .url('expected an https URL such as https://s3.eu-west-1.amazonaws.com')
          .refine((u) => !u.startsWith('http://'), 'pgBackRest 2.45 speaks S3 only over HTTPS (plain HTTP arrived in 2.58, pgbackrest#2612): give the S3 server a TLS endpoint and write https://')
          .refine((u) => /^https:\/\/[^/?#]+\/?$/.test(u), 'expected https://host or https://host:port, without a path')
          .default('https://s3.amazonaws.com'),
        region: z.string().min(1).default('us-east-1'),
        uriStyle: z.enum(['path', 'host']).default('host'),
        /** CA bundle the S3 endpoint's certificate is verified against (the system's when omitted); it is always verified. */
        caFile: filePath.optional(),
        accessKeyId: secretRef.optional(),
        secretAccessKey: secretRef.optional(),
        /** Repository encryption (aes-256-cbc) with this passphrase. */
        cipherPass: secretRef.optional(),
      })
      .strict()
      .refine((r) => (r.accessKeyId === undefined) === (r.secretAccessKey === undefined), {
        message: 'accessKeyId and secretAccessKey go together: set both, or neither for the instance or pod role',
      }),
    access: z.enum(['local', 'tls'], { error: 'expected local (on the database host) or tls (through the database host\'s pgBackRest TLS server)' }).default('local'),
    /**
     * The cluster's nodes. Backups and checks run against whichever is primary at the time, so they follow
     * the leader after a failover. Default: the topology's nodes, else the database's host and port.
     */
    nodes: z
      .array(
        z
          .object({
            name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,30}$/, 'expected a node name of lower-case letters, digits and -').optional(),
            host: hostname,
            port: port.default(5432),
            dataDir: dataDir.optional(),
            socketDir: dataDir.optional(),
          })
          .strict(),
      )
      .min(1)
      .optional(),
    /** pg1-path: the data directory on the database host (for nodes that do not give their own). */
    dataDir: dataDir.optional(),
    /** The directory of the server's Unix socket on the database host. */
    socketDir: dataDir.default('/var/run/postgresql'),
    /** The role pgBackRest connects as (over the socket, on the database host). */
    dbUser: identifier.default('postgres'),
    /** access: tls: the database hosts' pgBackRest TLS servers, and this worker's client certificate. */
    tls: z
      .object({
        port: port.default(8432),
        caFile: filePath,
        certFile: filePath,
        keyFile: filePath,
      })
      .strict()
      .optional(),
    processMax: z.number().int().min(1).max(64).default(2),
    compressType: z.enum(['lz4', 'zst', 'gz', 'bz2', 'none']).default('lz4'),
    /** Small files bundled into larger repository objects (far fewer S3 requests). */
    bundle: z.boolean().default(true),
    retention: z
      .object({
        /** Full backups kept (with the differentials, incrementals and WAL they need). */
        full: z.number().int().min(1, 'retention.full must be at least 1').default(2),
        diff: z.number().int().min(1).optional(),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((b, ctx) => {
    if (b.access === 'tls' && !b.tls) ctx.addIssue({ code: 'custom', path: ['tls'], message: 'access: tls needs tls: { caFile, certFile, keyFile } for the database hosts\' pgBackRest TLS servers' });
    b.nodes?.forEach((n, i) => {
      if (!n.dataDir && !b.dataDir) ctx.addIssue({ code: 'custom', path: ['nodes', i, 'dataDir'], message: 'give each node its dataDir, or dataDir for all' });
    });
  });

/** How a database is backed up: logical dumps (pg_dump to S3), or pgBackRest with WAL archiving. */
const databaseBackupsSchema = z
  .object({
    method: z.enum(['dump', 'pgbackrest'], { error: 'expected dump (pg_dump to S3) or pgbackrest (physical backups and WAL archiving)' }).default('dump'),
    /** dump: roles and other globals (pg_dumpall --globals-only) beside each dump, so a restore test can check owners and privileges. */
    globals: z.boolean().default(false),
    pgbackrest: pgbackrestSchema.optional(),
  })
  .strict()
  .superRefine((b, ctx) => {
    if (b.method === 'pgbackrest' && !b.pgbackrest) ctx.addIssue({ code: 'custom', path: ['pgbackrest'], message: 'method: pgbackrest needs a pgbackrest: block (stanza, repo, dataDir or nodes)' });
    if (b.method !== 'pgbackrest' && b.pgbackrest) ctx.addIssue({ code: 'custom', path: ['method'], message: 'a pgbackrest: block is given, but method is dump: set method: pgbackrest' });
    if (b.method === 'pgbackrest' && b.globals) ctx.addIssue({ code: 'custom', path: ['globals'], message: 'globals applies to dumps; a pgBackRest backup holds the whole cluster, roles included' });
  });

const memberName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,30}$/, 'expected a node name of lower-case letters, digits and -');
const httpUrl = z.string().regex(/^https?:\/\/[^\s/]+\/?$/, 'expected the base URL of a Patroni REST API, such as https://db-1.example.com:8008');
/** A command as an argument list (no shell): {member}, {host} and {suffix} are replaced. */
const commandArgv = z.array(z.string().min(1).max(1024).refine((a) => !/[\x00\n\r]/.test(a), 'expected an argument without NUL or line breaks')).min(1, 'expected a command as a list of arguments, e.g. [ssh, "{host}", sudo, systemctl, start, patroni]');

const localTopologySchema = z
  .object({
    driver: z.literal('local'),
    nodes: z
      .array(z.object({ name: memberName, host: hostname, port: port.default(5432), dataDir }).strict())
      .length(2, 'a drill needs exactly two nodes: the primary and its replica'),
  })
  .strict();

const patroniTopologySchema = z
  .object({
    driver: z.literal('patroni'),
    /** Every member of the cluster: its name in Patroni, its host, PostgreSQL's port and the REST API's base URL. */
    members: z
      .array(z.object({ name: memberName, host: hostname, port: port.default(5432), api: httpUrl }).strict())
      .min(2, 'list every member of the Patroni cluster (at least two): { name, host, port, api }'),
    api: z
      .object({
        username: z.string().min(1).max(128).optional(),
        password: secretRef.optional(),
        tls: z.object({ ca: secretRef.optional(), cert: secretRef.optional(), key: secretRef.optional(), serverName: hostname.optional() }).strict().optional(),
      })
      .strict()
      .refine((a) => (a.username === undefined) === (a.password === undefined), { error: 'username and password go together (restapi.authentication of Patroni): set both or neither' })
      .refine((a) => (a.tls?.cert === undefined) === (a.tls?.key === undefined), { error: 'tls.cert and tls.key go together for a client certificate: set both or neither' })
      .prefault({}),
    /**
     * fault: kills a member's Patroni and PostgreSQL hard (shown in the plan before approval);
     * recover: starts its Patroni again; keepAside (optional): renames its stopped data directory,
     * so a member that cannot be rewound is cloned afresh without losing the old directory.
     */
    commands: z
      .object({ fault: commandArgv, recover: commandArgv, keepAside: commandArgv.optional() })
      .strict(),
    /** How long the drill waits for Patroni to elect a new leader after the fault. */
    electionTimeout: duration.prefault('2m'),
    /** How long a rejoining former leader may take to stream before its rewind is judged impossible. */
    rejoinTimeout: duration.prefault('5m'),
  })
  .strict()
  .superRefine((t, ctx) => {
    const seen = new Set<string>();
    t.members.forEach((m, i) => {
      if (seen.has(m.name)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['members', i, 'name'], message: `duplicate member '${m.name}'` });
      seen.add(m.name);
    });
    if (t.members.some((m) => m.api.startsWith('https:')) !== (t.api.tls !== undefined) && t.api.tls !== undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['api', 'tls'], message: 'tls is set, but no member api URL uses https://' });
    }
  });

/** A PostgreSQL login: a role name and a reference to its password. */
const pgCredentialSchema = z.object({ user: identifier, password: secretRef }).strict();

const databaseSchema = z
  .object({
    /**
     * The service address clients use (a DNS name that follows the primary, an HAProxy or a VIP).
     * Without it, the runbooks reach the current primary through the topology driver.
     */
    host: hostname.optional(),
    port: port.default(5432),
    database: identifier,
    user: identifier,
    password: secretRef,
    replica: z.object({ host: hostname, port: port.default(5432) }).strict().optional(),
    /**
     * Least privilege: the role each runbook connects with (see src/config/pgRoles.ts and the README's
     * "PostgreSQL roles"). A purpose without a role here uses user/password.
     */
    roles: z
      .object(Object.fromEntries(RUNBOOK_ROLE_PURPOSES.map((p) => [p, pgCredentialSchema.optional()])) as Record<RunbookRolePurpose, z.ZodOptional<typeof pgCredentialSchema>>)
      .strict()
      .prefault({}),
    /** The DNS record (a key of dns.records) clients use to reach the primary. */
    dnsRecord: z.string().optional(),
    restoreTest: restoreTestSchema.prefault({}),
    /** The backup method of this database: dumps (default) or pgBackRest. */
    backups: databaseBackupsSchema.prefault({}),
    /** Queries that must return true on a healthy primary (the drill runs them through the service name). */
    healthChecks: z
      .array(z.object({ name: z.string().min(1).max(200), sql: singleStatement }).strict())
      .default([]),
    /**
     * The cluster behind the database, for the DR drill and for every runbook that must reach the
     * current primary. `local`: two nodes whose data directories are on the worker's host (pg_ctl,
     * pg_rewind, pg_basebackup); `patroni`: a Patroni cluster, through its REST API.
     */
    topology: z.discriminatedUnion('driver', [localTopologySchema, patroniTopologySchema], { error: 'expected driver: local or driver: patroni' }).optional(),
  })
  .strict()
  .refine((db) => db.host !== undefined || db.topology !== undefined, {
    error: 'set host (the service address that follows the primary, e.g. a DNS name or an HAProxy) or topology (so the runbooks find the current primary through it)',
    path: ['host'],
  });

const backupsSchema = z
  .object({
    bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'expected an S3 bucket name (3-63 lower-case letters, digits, dots, hyphens)'),
    prefix: z
      .string()
      .max(512)
      .regex(/^[A-Za-z0-9!_.*'()/-]*$/, 'expected an S3 key prefix without spaces or special characters')
      // Some S3-compatible servers and proxies resolve dot segments, which would put keys outside the prefix.
      .refine((p) => !p.startsWith('/') && !p.includes('//') && !p.split('/').some((s) => s === '.' || s === '..'), 'expected a relative S3 key prefix such as backups/ (no leading /, no empty, . or .. segments)')
      .default(''),
    region: z.string().min(1).default('us-east-1'),
    endpoint: z.string().url('expected a URL such as http://127.0.0.1:9000').optional(),
    forcePathStyle: z.boolean().default(false),
    accessKeyId: secretRef.optional(),
    secretAccessKey: secretRef.optional(),
    /** Dumps are uploaded in parts that grow with the dump; S3 allows at most 10,000 parts (lower it only to test). */
    multipart: z
      .object({ maxParts: z.number().int().min(2, 'maxParts must be at least 2').max(10_000, 'S3 allows at most 10,000 parts per object').default(10_000) })
      .strict()
      .prefault({}),
    /** Evidence log records are written with S3 Object Lock (COMPLIANCE) retention this long; the bucket must have Object Lock enabled. */
    evidenceRetention: duration.optional(),
    retention: z
      .object({
        keepLast: z.number().int().min(1, 'keepLast must be at least 1: the newest good backup is never deleted').optional(),
        maxAge: duration.optional(),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .refine((b) => (b.accessKeyId === undefined) === (b.secretAccessKey === undefined), {
    message: 'accessKeyId and secretAccessKey go together: set both, or neither to use the default AWS credential chain',
  });

const dnsSchema = z
  .object({
    provider: z.enum(['rfc2136', 'route53']),
    server: address.optional(),
    zone: dnsLabel,
    tsig: z
      .object({ name: dnsLabel, algorithm: z.enum(['hmac-sha256', 'hmac-sha512']).default('hmac-sha256'), secret: secretRef })
      .strict()
      .optional(),
    records: z.record(dnsLabel, z.object({ name: dnsLabel, ttl: z.number().int().min(1).max(86_400).default(30) }).strict()).prefault({}),
    route53: z
      .object({
        /** Looked up by zone name when omitted. */
        hostedZoneId: z.string().regex(/^[A-Z0-9/]+$/, 'expected a hosted zone id such as Z123ABC').optional(),
        region: z.string().min(1).default('us-east-1'),
        /** For Route 53-compatible endpoints (the test suite's moto server). */
        endpoint: z.string().url().optional(),
        accessKeyId: secretRef.optional(),
        secretAccessKey: secretRef.optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((dns, ctx) => {
    if (dns.provider === 'rfc2136' && !dns.server) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['server'], message: 'rfc2136 needs server: host:port of the primary name server' });
    // A name with a dot is taken as fully qualified: it must lie inside the zone the updates are sent to.
    const zone = dns.zone.replace(/\.$/, '');
    for (const [key, record] of Object.entries(dns.records)) {
      const absolute = record.name.includes('.');
      const fqdn = absolute ? record.name.replace(/\.$/, '') : `${record.name}.${zone}`;
      if (absolute && fqdn !== zone && !fqdn.endsWith(`.${zone}`)) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['records', key, 'name'], message: `'${record.name}' is outside the zone ${zone}; write a name relative to the zone (e.g. db) or one ending in .${zone}` });
      } else if (fqdn.length > 253 && zone.length <= 253) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['records', key, 'name'], message: `'${fqdn}' is longer than the 253 characters a DNS name may have` });
      }
    }
  });

const kubernetesSchema = z
  .object({
    kubeconfig: z.string().optional(),
    context: z.string().optional(),
    namespace: k8sName.default('default'),
    /** When not empty, the only Deployments the rollout and rollback runbooks may change. */
    deployments: z.array(k8sName).default([]),
    /** What an approval gate of a rollout does when nobody decides in time. */
    rollout: z
      .object({
        gateTimeout: duration.prefault('4h'),
        onGateTimeout: z.enum(['rollback', 'remind'], { error: 'expected rollback (undo the rollout) or remind (keep waiting, reminding every remindEvery)' }).default('remind'),
        remindEvery: duration.prefault('30m'),
        /** With a HorizontalPodAutoscaler on the Deployment: how often a canary's share follows the autoscaler's count during pauses. */
        autoscalerCheckEvery: duration.prefault('30s'),
      })
      .strict()
      .prefault({}),
    /** Deployments managed by Argo CD or Flux: refuse (default), proceed, or suspend Flux reconciliation during a rollout. */
    gitops: gitopsSchema.prefault({}),
  })
  .strict();

/** Where the readiness audit looks for monitoring: a Prometheus server and the workers' health endpoints. */
const monitoringSchema = z
  .object({
    prometheusUrl: z.string().url('expected a URL such as http://prometheus.example.com:9090').optional(),
    /** Base URLs of workers whose /health and /ready must answer 200, e.g. http://worker-0:9464. */
    workerUrls: z.array(z.string().url('expected a URL such as http://127.0.0.1:9464')).default([]),
    /** Prometheus must keep metrics at least this long for trending. */
    minRetention: duration.prefault('30d'),
  })
  .strict();

const approverSchema = z.string().regex(/^[A-Za-z0-9._@+-]{1,128}$/, 'expected an approver id such as alice or alice@example.com');

const runbookKey = z.string().refine((k) => k === 'default' || (RUNBOOK_NAMES as readonly string[]).includes(k), { error: (issue) => `unknown runbook '${String(issue.input)}'; expected default or one of ${RUNBOOK_NAMES.join(', ')}` });

/**
 * Who may sign decisions: git's allowed_signers form (principal [options] keytype key), in a file
 * (re-read at every gate, so removing a line revokes the key) or inline.
 */
const signingSchema = z
  .object({
    allowedSigners: z
      .union([
        z.string().regex(/^file:.+/, 'expected file:path/to/allowed_signers (relative to the config file) or a list of "principal keytype key" lines'),
        z.array(z.string().max(4096)).min(1, 'list at least one "principal ssh-ed25519 AAAA..." line'),
      ])
      .optional(),
    /** The CLI's default signing key (a private key, or the .pub of a key in ssh-agent), relative to the config file; $RUNBOOK_SIGNING_KEY and --key override it. */
    key: z.string().min(1).optional(),
    /** How old a signed statement may be when it reaches the run. */
    maxAge: duration.prefault('15m'),
  })
  .strict()
  .superRefine((s, ctx) => {
    if (!Array.isArray(s.allowedSigners)) return;
    try {
      parseAllowedSigners(s.allowedSigners.join('\n'), 'allowedSigners');
    } catch (err) {
      const m = /line (\d+): (.*)$/s.exec((err as Error).message);
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['allowedSigners', m ? Number(m[1]) - 1 : 0], message: m ? m[2] : (err as Error).message });
    }
  });

const policySchema = z
  .object({
    /** Distinct people who must agree at each gate (a signed requester on the approver list counts as one). */
    approvals: z.number().int().min(1).max(10).optional(),
    /** The signed requester may not approve their own run. */
    fourEyes: z.boolean().optional(),
    /** People who may abort besides the approvers. */
    abort: z.array(z.string().regex(/^[A-Za-z0-9._@+-]{1,128}$/, 'expected a principal such as alice or alice@example.com')).optional(),
    /** Rollouts: an approval pause must come before any step sets a weight above this. */
    pauseBeforeWeight: z.number().int().min(1).max(100).optional(),
    /** Rollouts: distinct people who must sign promote --full (default: approvals). */
    fullPromoteApprovals: z.number().int().min(1).max(10).optional(),
    /** When another mutating run holds the same database or Deployment: wait for it (up to busyTargetWait), or refuse at once. */
    onBusyTarget: z.enum(['wait', 'refuse'], { error: 'expected wait (for the other run, up to busyTargetWait) or refuse' }).optional(),
    /** How long a run waits for a busy target before it is refused (default 15m). */
    busyTargetWait: duration.optional(),
    /** Readiness audit: the longest an attestation of an item counts, in days. */
    attestationMaxDays: z.record(z.string().regex(/^[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$/, 'expected a checklist item id'), z.number().int().min(1).max(366)).optional(),
  })
  .strict();

/** A change freeze: runs of the listed runbooks inside it are refused, or need an extra signed approval gate. */
const freezeSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9 ._-]{1,64}$/, 'expected a short name such as "year-end"'),
    from: z.iso.datetime({ offset: true, error: 'expected an ISO 8601 time such as 2026-12-20T00:00:00Z' }),
    to: z.iso.datetime({ offset: true, error: 'expected an ISO 8601 time such as 2027-01-04T00:00:00Z' }),
    action: z.enum(['refuse', 'gate'], { error: 'expected refuse (runs are refused) or gate (runs need an extra approval gate)' }).default('refuse'),
    runbooks: z.array(z.enum(['drDrill', 'rollout', 'rollback', 'goLive', 'backupDatabase', 'release', 'promotion'])).default(['drDrill', 'rollout', 'rollback', 'goLive', 'release', 'promotion']),
  })
  .strict()
  .refine((f) => Date.parse(f.from) < Date.parse(f.to), { message: 'from must be before to', path: ['to'] });

const channelName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'expected a channel name of lower-case letters, digits and -');
const emailAddress = z.string().regex(/^[^\s@<>]{1,64}@[A-Za-z0-9.-]{1,253}$/, 'expected an email address such as ops@example.com');
/** Where gate and failure notifications go: a generic webhook (HMAC-SHA256 signed), a Slack-compatible incoming webhook, or email over SMTP. */
const channelSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('webhook'), name: channelName, url: z.string().url('expected a URL such as https://hooks.example.com/runbook'), secret: secretRef }).strict(),
  z.object({ type: z.literal('slack'), name: channelName, url: secretRef }).strict(),
  z
    .object({
      type: z.literal('email'),
      name: channelName,
      host: hostname,
      port: port.default(25),
      /** TLS from the first byte (port 465); otherwise STARTTLS is used when the server offers it. */
      secure: z.boolean().default(false),
      username: z.string().min(1).optional(),
      password: secretRef.optional(),
      from: emailAddress,
      to: z.array(emailAddress).min(1, 'list at least one recipient'),
    })
    .strict(),
]);
const notificationsSchema = z
  .object({
    channels: z.array(channelSchema).default([]),
    /** Channels told when a gate opens, is reminded and is decided. */
    gates: z.array(channelName).default([]),
    /** Channels told when a gated runbook fails, is aborted or rolls back. */
    failures: z.array(channelName).default([]),
    /** While a gate waits, remind the gate channels this often. */
    reminderEvery: duration.optional(),
    /** After a gate has waited this long, tell these channels too (once). */
    escalation: z.object({ after: duration, channels: z.array(channelName).min(1) }).strict().optional(),
    /** The Temporal Web UI, for links in messages (e.g. https://temporal.example.com). */
    temporalUiUrl: z.string().url().optional(),
  })
  .strict()
  .superRefine((n, ctx) => {
    const names = n.channels.map((c) => c.name);
    n.channels.forEach((c, i) => {
      if (names.indexOf(c.name) !== i) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['channels', i, 'name'], message: `duplicate channel name '${c.name}'` });
    });
    const check = (list: string[], path: (string | number)[]) =>
      list.forEach((name, i) => {
        if (!names.includes(name)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [...path, i], message: `unknown channel '${name}'; defined: ${names.join(', ') || 'none (add it under notifications.channels)'}` });
      });
    check(n.gates, ['gates']);
    check(n.failures, ['failures']);
    if (n.escalation) check(n.escalation.channels, ['escalation', 'channels']);
  });

const environmentSchema = z
  .object({
    temporal: temporalSchema.prefault({}),
    databases: z.record(identifier, databaseSchema).prefault({}),
    backups: backupsSchema.optional(),
    dns: dnsSchema.optional(),
    kubernetes: kubernetesSchema.optional(),
    monitoring: monitoringSchema.optional(),
    /** The loadTest runbook's phases and SLAs. */
    loadTest: loadTestSchema.optional(),
    /** This environment serves production: runbooks that inject faults for a test refuse it unless their config allows it. */
    production: z.boolean({ error: 'expected true or false' }).default(false),
    /** rpo 0 means no acknowledged write may be lost (a synchronous cluster); rto is how long a failover may take, end to end. */
    targets: z.object({ rpo: z.preprocess((v) => (v === 0 ? "0" : v), rpoTarget).optional(), rto: duration.optional() }).strict().prefault({}),
    /** Who may approve gates, per runbook; "default" applies to runbooks without their own list. */
    approvers: z
      .record(
        z.string().refine((k) => k === 'default' || (RUNBOOK_NAMES as readonly string[]).includes(k), { error: (issue) => `unknown runbook '${String(issue.input)}'; expected default or one of ${RUNBOOK_NAMES.join(', ')}` }),
        z.array(approverSchema).min(1, 'an approver list needs at least one person'),
      )
      .prefault({}),
    signing: signingSchema.prefault({}),
    /** Gate policies per runbook; default applies to runbooks without their own entry (merged field by field). */
    policies: z.record(runbookKey, policySchema).prefault({}),
    freezes: z.array(freezeSchema).default([]),
    notifications: notificationsSchema.optional(),
    /** Releases per Deployment: the migration Job, the database policy on failure, the watch window (the release runbook). */
    releases: z.record(k8sName, releaseSchema).prefault({}),
  })
  .strict()
  .superRefine((env, ctx) => {
    const own = env.temporal.cluster?.persistenceDatabase;
    if (own !== undefined && !(own in env.databases)) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['temporal', 'cluster', 'persistenceDatabase'],
        message: `names database '${own}', which is not defined under databases; add Temporal's persistence database there (host, port, database, user, password, replica)`,
      });
    } else if (own !== undefined && env.databases[own].topology) {
      // A drill stops the primary the cluster runs on, with the drill's own workflow on that cluster.
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['databases', own, 'topology'],
        message: `database '${own}' holds the persistence of this environment's own Temporal, so a drill of it cannot run here: remove topology, and drill it from an environment whose temporal: is another (ops) Temporal`,
      });
      }
    for (const [deployment, r] of Object.entries(env.releases)) {
      if (!(r.database in env.databases)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['releases', deployment, 'database'], message: `names database '${r.database}', which is not defined under databases (defined: ${Object.keys(env.databases).join(', ') || 'none'})` });
      if (!env.backups) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['releases', deployment], message: 'a release backs its database up first: add a backups: section' });
      if (!env.kubernetes) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['releases', deployment], message: 'a release rolls out a Deployment: add a kubernetes: section' });
      else if (env.kubernetes.deployments.length > 0 && !env.kubernetes.deployments.includes(deployment)) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['releases', deployment], message: `${deployment} is not one of kubernetes.deployments (${env.kubernetes.deployments.join(', ')}), which the runbooks may change` });
      }
    }
    for (const [runbook, p] of Object.entries(env.policies)) {
      const approvers = env.approvers[runbook] ?? env.approvers.default ?? [];
      const need = p.approvals ?? env.policies.default?.approvals ?? 1;
      if (p.approvals !== undefined && approvers.length > 0 && need > approvers.length) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['policies', runbook, 'approvals'], message: `${need} approvals can never be reached: approvers.${env.approvers[runbook] ? runbook : 'default'} lists ${approvers.length}; add approvers or lower the count` });
      }
    }
    for (const [name, db] of Object.entries(env.databases)) {
      if (db.backups.method === 'pgbackrest' && !env.backups) {
        ctx.addIssue({ code: 'custom', path: ['databases', name, 'backups', 'method'], message: 'a pgBackRest database writes its restore-test reports to the environment\'s backups bucket: add a backups: section' });
      }
      if (db.backups.pgbackrest && !db.backups.pgbackrest.nodes && !db.backups.pgbackrest.dataDir && !db.topology) {
        ctx.addIssue({ code: 'custom', path: ['databases', name, 'backups', 'pgbackrest', 'dataDir'], message: 'pgBackRest needs the data directory on the database host: give dataDir (or nodes, or a topology)' });
      }
      if (db.dnsRecord !== undefined && !(env.dns && db.dnsRecord in env.dns.records)) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: ['databases', name, 'dnsRecord'],
          message: `names DNS record '${db.dnsRecord}', which is not defined under dns.records`,
        });
      }
    }
  });

const tuningSchema = z
  .object({
    maxConcurrentActivityTaskExecutions: z.number().int().min(1).optional(),
    maxConcurrentLocalActivityExecutions: z.number().int().min(1).optional(),
    maxConcurrentWorkflowTaskExecutions: z.number().int().min(2).optional(),
    maxConcurrentWorkflowTaskPolls: z.number().int().min(1).optional(),
    maxConcurrentActivityTaskPolls: z.number().int().min(1).optional(),
    maxCachedWorkflows: z.number().int().min(0).optional(),
    shutdownGraceTime: duration.optional(),
  })
  .strict();

const workerSchema = z
  .object({
    environment: z.string().optional(),
    taskQueues: z.array(z.enum(QUEUE_KINDS)).min(1).optional(),
    http: z.object({ host: z.string().default('127.0.0.1'), port: z.number().int().min(0).max(65535).default(9464) }).strict().prefault({}),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
    tuning: tuningSchema.prefault({}),
    /** How often the worker reads the runbooks' freshness (newest runs per target, schedules, open gates) from Temporal for /metrics. */
    freshnessInterval: duration.prefault('60s'),
    /** Where a drill's write load logs the commits it had acknowledged (default: runbook-drill-writes in the system temp directory). */
    drillWriteLogDir: z
      .string()
      .refine((d) => d.startsWith('/') && !d.split('/').includes('..'), 'expected an absolute directory path without .. segments')
      .optional(),
  })
  .strict();

export const RUNBOOK_NAMES = ['smokeTest', 'backupDatabase', 'verifyBackup', 'restoreCanary', 'drDrill', 'rollout', 'rollback', 'goLive', 'readinessAudit', 'loadTest', 'backupTemporalConfig', 'verifyTemporalConfig', 'release', 'promotion'] as const;

/** A calendar field: a number, a list, or a range written "1-7". */
const calendarField = (min: number, max: number) =>
  z.union([
    z.number().int().min(min).max(max),
    z.array(z.number().int().min(min).max(max)).min(1),
    z
      .string()
      .regex(/^\d+-\d+$/, `expected a number, a list, or a range such as "${min}-${max}"`)
      .refine((r) => {
        const [a, b] = r.split('-').map(Number);
        return a >= min && b <= max && a <= b;
      }, `range must lie within ${min}-${max}`),
  ]);
export const WEEKDAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'] as const;

/** Calendar specs say what cron cannot, e.g. "the first Tuesday of each quarter": day of month and weekday both hold. */
const calendarSchema = z
  .object({
    month: calendarField(1, 12).optional(),
    dayOfMonth: calendarField(1, 31).optional(),
    dayOfWeek: z.union([z.enum(WEEKDAYS), z.array(z.enum(WEEKDAYS)).min(1)]).optional(),
    hour: calendarField(0, 23).default(0),
    minute: calendarField(0, 59).default(0),
  })
  .strict();
export type CalendarConfig = z.output<typeof calendarSchema>;

const scheduleSchema = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'expected a schedule id of lower-case letters, digits and -'),
    runbook: z.enum(RUNBOOK_NAMES),
    environment: z.string(),
    cron: z.string().regex(/^(\S+\s+){4}\S+$/, 'expected a five-field cron expression such as "0 3 * * *"').optional(),
    calendar: calendarSchema.optional(),
    timezone: z.string().optional(),
    input: z.record(z.string(), z.unknown()).prefault({}),
    paused: z.boolean().default(false),
    /** What happens when a run is still going at the next start time: skip it (default), queue one, or run both. */
    overlap: z.enum(['skip', 'bufferOne', 'bufferAll', 'cancelOther', 'terminateOther', 'allowAll']).default('skip'),
    /** How late a missed start (server down) may still run. */
    catchupWindow: duration.prefault('1h'),
    /** Random delay added to each start, so many schedules do not fire in the same second. */
    jitter: duration.optional(),
  })
  .strict()
  .refine((s) => (s.cron === undefined) !== (s.calendar === undefined), { message: 'give either cron or calendar (exactly one)' });

export const configSchema = z
  .object({
    version: z.literal(1, { error: 'expected version: 1' }),
    defaultEnvironment: z.string().optional(),
    environments: z.record(z.string().regex(/^[a-z][a-z0-9-]{0,30}$/, 'environment names are lower-case letters, digits and -'), environmentSchema).refine((envs) => Object.keys(envs).length > 0, {
      message: 'define at least one environment',
    }),
    worker: workerSchema.prefault({}),
    schedules: z.array(scheduleSchema).default([]),
    /** Releases or rollouts promoted across environments in order (the promotion runbook). */
    promotions: z.record(z.string().regex(/^[a-z0-9][a-z0-9-]{0,40}$/, 'expected a promotion name of lower-case letters, digits and -'), promotionSchema).prefault({}),
  })
  .strict()
  .superRefine((config, ctx) => {
    for (const [name, p] of Object.entries(config.promotions)) {
      const first = config.environments[p.stages[0].environment]?.temporal;
      const queues = new Map<string, string>();
      p.stages.forEach((stage, i) => {
        const path = ['promotions', name, 'stages', i, 'environment'];
        const env = config.environments[stage.environment];
        if (!env) return ctx.addIssue({ code: z.ZodIssueCode.custom, path, message: `unknown environment '${stage.environment}'; defined: ${Object.keys(config.environments).join(', ')}` });
        if (!env.kubernetes) ctx.addIssue({ code: z.ZodIssueCode.custom, path, message: `${stage.environment} has no kubernetes: section to roll ${p.deployment} out to` });
        if (p.runbook === 'release' && !env.releases[p.deployment]) ctx.addIssue({ code: z.ZodIssueCode.custom, path, message: `${stage.environment} has no releases.${p.deployment} to run` });
        // Each environment's run is a child workflow on that environment's task queue: one namespace, distinct queues.
        if (first && (env.temporal.address !== first.address || env.temporal.namespace !== first.namespace)) {
          ctx.addIssue({ code: z.ZodIssueCode.custom, path, message: `${stage.environment} uses Temporal ${env.temporal.address}/${env.temporal.namespace}, ${p.stages[0].environment} ${first.address}/${first.namespace}: a promotion runs its environments' runs as child workflows, so they share one Temporal namespace` });
        }
        const other = queues.get(env.temporal.taskQueues.critical);
        if (other) ctx.addIssue({ code: z.ZodIssueCode.custom, path, message: `${stage.environment} and ${other} share the task queue ${env.temporal.taskQueues.critical}: give each environment its own temporal.taskQueues, so each run reaches that environment's workers` });
        queues.set(env.temporal.taskQueues.critical, stage.environment);
      });
    }
    const known = Object.keys(config.environments);
    const unknownEnv = (name: string, path: (string | number)[]) =>
      ctx.addIssue({ code: z.ZodIssueCode.custom, path, message: `unknown environment '${name}'; defined: ${known.join(', ')}` });
    if (config.defaultEnvironment !== undefined && !known.includes(config.defaultEnvironment)) unknownEnv(config.defaultEnvironment, ['defaultEnvironment']);
    if (config.worker.environment !== undefined && !known.includes(config.worker.environment)) unknownEnv(config.worker.environment, ['worker', 'environment']);
    const ids = new Set<string>();
    config.schedules.forEach((s, i) => {
      if (!known.includes(s.environment)) unknownEnv(s.environment, ['schedules', i, 'environment']);
      if (ids.has(s.id)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['schedules', i, 'id'], message: `duplicate schedule id '${s.id}'` });
      ids.add(s.id);
    });
  });

export type RunbookConfig = z.output<typeof configSchema>;
export type EnvironmentConfig = RunbookConfig['environments'][string];
export type TemporalConfig = EnvironmentConfig['temporal'];
export type EncryptionConfig = NonNullable<TemporalConfig['encryption']>;
export type WorkerConfig = RunbookConfig['worker'];
export type RunbookName = (typeof RUNBOOK_NAMES)[number];
