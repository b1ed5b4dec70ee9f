/**
 * Temporal's own configuration as data, for the checklist's "configuration backups (namespace
 * configs, schemas)": every namespace with its retention, archival, custom search attributes and
 * schedules (spec, action, policies, state, memo), the dynamic config file, and the schema versions
 * of the persistence and visibility databases. A backup is one JSON document in S3 with a manifest
 * written last; a restore test applies it to fresh scratch namespaces, reads them back and compares.
 *
 * Schedules are kept as the server's own protobuf objects (JSON form), so their action's payloads
 * stay exactly as stored (encrypted, where the environment encrypts) and are restored byte for byte.
 */
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { TemporalConnectionSettings } from '../config/connection';
import type { EnvironmentConfig } from '../config/schema';
import { checkServedEnvironment, classify, failure } from './errors';
import { withHeartbeat } from './heartbeat';
import { connectPg, PgServer } from './pg';
import type { ServerLocator } from './backups';
import { reachServer } from './primary';
import type { ObjectStore } from './s3';

const INDEXED_VALUE_TYPES = ['Unspecified', 'Text', 'Keyword', 'Int', 'Double', 'Bool', 'Datetime', 'KeywordList'] as const;
const GRPC_ALREADY_EXISTS = 6;
const GRPC_NOT_FOUND = 5;
const CONFIG_BACKUP_ID = /^\d{8}T\d{6}Z-[a-z0-9]{4,16}$/;
/** Scratch namespaces of restore tests: never backed up, and the only ones a restore test deletes. */
export const RESTORE_TEST_NAMESPACE = /^restore-test-[a-z0-9]{6,16}-\d{1,3}$/;
/** The data key marking a scratch namespace as made by one restore test (so a retried apply knows its own). */
const RESTORE_MARKER = 'runbook.restore-test';
const SYSTEM_NAMESPACES = new Set(['temporal-system']);
/** Schedule search attributes the server sets itself; a client may not set them. */
const SYSTEM_SEARCH_ATTRIBUTE = /^Temporal/;

export interface ScheduleBackup {
  scheduleId: string;
  /** temporal.api.schedule.v1.Schedule in protobuf JSON form: spec, action, policies, state. */
  schedule: Record<string, unknown>;
  /** temporal.api.common.v1.Memo (JSON form), or null. */
  memo: Record<string, unknown> | null;
  /** Custom search attributes of the schedule (temporal.api.common.v1.SearchAttributes, JSON form), or null. */
  searchAttributes: Record<string, unknown> | null;
}

export interface NamespaceBackup {
  name: string;
  description: string;
  ownerEmail: string;
  data: Record<string, string>;
  retentionSeconds: number;
  historyArchival: { state: 'enabled' | 'disabled'; uri: string };
  visibilityArchival: { state: 'enabled' | 'disabled'; uri: string };
  /** Custom search attributes: name -> type (Keyword, Int, ...). */
  searchAttributes: Record<string, string>;
  schedules: ScheduleBackup[];
}

export interface SchemaVersions {
  persistence: { database: string; version: string | null } | null;
  visibility: { database: string; version: string | null } | null;
}

export interface TemporalConfigDocument {
  formatVersion: 1;
  environment: string;
  backupId: string;
  takenAt: string;
  serverVersion: string;
  clusterId: string;
  namespaces: NamespaceBackup[];
  dynamicConfig: { file: string; sha256: string; text: string } | null;
  schemaVersions: SchemaVersions;
}

export interface TemporalConfigManifest {
  formatVersion: 1;
  backupId: string;
  environment: string;
  takenAt: string;
  documentKey: string;
  bytes: number;
  sha256: string;
  namespaces: { name: string; schedules: number; searchAttributes: number }[];
  dynamicConfigSha256: string | null;
  schemaVersions: SchemaVersions;
}

export interface ConfigBackupEntry {
  backupId: string;
  takenAt: string;
  manifestKey: string;
  documentKey: string;
  sha256: string;
  bytes: number;
}

/** One difference between two configurations, by path (e.g. default.retentionSeconds). */
export interface ConfigDifference {
  path: string;
  expected: unknown;
  found: unknown;
}

export interface TemporalConfigDeps {
  environment: string;
  settings: () => TemporalConnectionSettings;
  cluster?: NonNullable<EnvironmentConfig['temporal']['cluster']>;
  /** Temporal's persistence database server (from databases:), for the schema versions. */
  persistence?: { server: ServerLocator; database: string };
  baseDir: string;
  backups?: { store: ObjectStore; prefix: string };
}

// ---------------------------------------------------------------- comparison (pure)

const stable = (v: unknown): unknown => {
  if (Array.isArray(v)) return v.map(stable);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, stable((v as Record<string, unknown>)[k])]));
  return v;
};
const same = (a: unknown, b: unknown) => JSON.stringify(stable(a)) === JSON.stringify(stable(b));

/** What of a namespace a restore must reproduce; the name and server-side bookkeeping are not compared. */
function comparable(ns: NamespaceBackup): Record<string, unknown> {
  const data = Object.fromEntries(Object.entries(ns.data).filter(([k]) => k !== RESTORE_MARKER));
  return {
    description: ns.description,
    ownerEmail: ns.ownerEmail,
    data,
    retentionSeconds: ns.retentionSeconds,
    historyArchival: ns.historyArchival,
    visibilityArchival: ns.visibilityArchival,
    searchAttributes: ns.searchAttributes,
  };
}

/**
 * Differences between an expected namespace configuration and one found, field by field and
 * schedule by schedule. A schedule's server bookkeeping (its info: run counts, next times) is not
 * configuration and is not compared.
 */
export function compareNamespaces(expected: NamespaceBackup, found: NamespaceBackup, label = expected.name): ConfigDifference[] {
  const out: ConfigDifference[] = [];
  const e = comparable(expected);
  const f = comparable(found);
  for (const key of Object.keys(e)) {
    if (key === 'searchAttributes') continue;
    if (!same(e[key], f[key])) out.push({ path: `${label}.${key}`, expected: e[key], found: f[key] });
  }
  for (const name of new Set([...Object.keys(expected.searchAttributes), ...Object.keys(found.searchAttributes)])) {
    if (expected.searchAttributes[name] !== found.searchAttributes[name]) {
      out.push({ path: `${label}.searchAttributes.${name}`, expected: expected.searchAttributes[name] ?? null, found: found.searchAttributes[name] ?? null });
    }
  }
  const byId = (list: ScheduleBackup[]) => new Map(list.map((s) => [s.scheduleId, s]));
  const es = byId(expected.schedules);
  const fs = byId(found.schedules);
  for (const id of new Set([...es.keys(), ...fs.keys()])) {
    const a = es.get(id);
    const b = fs.get(id);
    if (!a || !b) {
      out.push({ path: `${label}.schedules.${id}`, expected: a ? 'present' : 'absent', found: b ? 'present' : 'absent' });
      continue;
    }
    for (const part of ['spec', 'action', 'policies', 'state'] as const) {
      if (!same(a.schedule[part] ?? null, b.schedule[part] ?? null)) out.push({ path: `${label}.schedules.${id}.${part}`, expected: a.schedule[part] ?? null, found: b.schedule[part] ?? null });
    }
    if (!same(a.memo, b.memo)) out.push({ path: `${label}.schedules.${id}.memo`, expected: a.memo, found: b.memo });
    if (!same(a.searchAttributes, b.searchAttributes)) out.push({ path: `${label}.schedules.${id}.searchAttributes`, expected: a.searchAttributes, found: b.searchAttributes });
  }
  return out;
}

export const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

// ---------------------------------------------------------------- reading and writing Temporal

const enumState = (x: unknown): 'enabled' | 'disabled' => (x === 2 || x === 'ARCHIVAL_STATE_ENABLED' ? 'enabled' : 'disabled');
const seconds = (d: { seconds?: unknown } | null | undefined) => Number(String(d?.seconds ?? 0));
const jsonOf = (type: { toObject(m: never, o: object): Record<string, unknown> }, message: unknown) =>
  type.toObject(message as never, { longs: String, enums: String, bytes: String, defaults: false });

function withoutSystemAttributes(sa: temporal.api.common.v1.ISearchAttributes | null | undefined): Record<string, unknown> | null {
  const fields = Object.entries(sa?.indexedFields ?? {}).filter(([name]) => !SYSTEM_SEARCH_ATTRIBUTE.test(name));
  if (fields.length === 0) return null;
  return jsonOf(temporal.api.common.v1.SearchAttributes, temporal.api.common.v1.SearchAttributes.create({ indexedFields: Object.fromEntries(fields) }));
}

async function readNamespace(connection: Connection, name: string, withSchedules: boolean, heartbeat?: () => void): Promise<NamespaceBackup> {
  const ns = await connection.workflowService.describeNamespace({ namespace: name });
  const sa = await connection.operatorService.listSearchAttributes({ namespace: name });
  const schedules: ScheduleBackup[] = [];
  if (withSchedules) {
    let token: Uint8Array | undefined;
    do {
      const page = await connection.workflowService.listSchedules({ namespace: name, maximumPageSize: 100, nextPageToken: token });
      for (const entry of page.schedules ?? []) {
        const scheduleId = entry.scheduleId ?? '';
        const d = await connection.workflowService.describeSchedule({ namespace: name, scheduleId });
        schedules.push({
          scheduleId,
          schedule: jsonOf(temporal.api.schedule.v1.Schedule, d.schedule),
          memo: d.memo && Object.keys(d.memo.fields ?? {}).length ? jsonOf(temporal.api.common.v1.Memo, d.memo) : null,
          searchAttributes: withoutSystemAttributes(d.searchAttributes),
        });
        heartbeat?.();
      }
      token = page.nextPageToken && page.nextPageToken.length ? page.nextPageToken : undefined;
    } while (token);
    schedules.sort((a, b) => a.scheduleId.localeCompare(b.scheduleId));
  }
  return {
    name,
    description: ns.namespaceInfo?.description ?? '',
    ownerEmail: ns.namespaceInfo?.ownerEmail ?? '',
    data: { ...(ns.namespaceInfo?.data ?? {}) },
    retentionSeconds: seconds(ns.config?.workflowExecutionRetentionTtl),
    historyArchival: { state: enumState(ns.config?.historyArchivalState), uri: ns.config?.historyArchivalUri ?? '' },
    visibilityArchival: { state: enumState(ns.config?.visibilityArchivalState), uri: ns.config?.visibilityArchivalUri ?? '' },
    searchAttributes: Object.fromEntries(
      Object.entries(sa.customAttributes ?? {})
        .map(([k, v]) => [k, INDEXED_VALUE_TYPES[Number(v)] ?? String(v)] as const)
        .sort(([a], [b]) => a.localeCompare(b)),
    ),
    schedules,
  };
}

async function listUserNamespaces(connection: Connection): Promise<string[]> {
  const names: string[] = [];
  let token: Uint8Array | undefined;
  do {
    const page = await connection.workflowService.listNamespaces({ pageSize: 100, nextPageToken: token });
    for (const n of page.namespaces ?? []) {
      const name = n.namespaceInfo?.name ?? '';
      const registered = n.namespaceInfo?.state === 1 || (n.namespaceInfo?.state as unknown) === 'NAMESPACE_STATE_REGISTERED';
      if (name && registered && !SYSTEM_NAMESPACES.has(name) && !RESTORE_TEST_NAMESPACE.test(name)) names.push(name);
    }
    token = page.nextPageToken && page.nextPageToken.length ? page.nextPageToken : undefined;
  } while (token);
  return names.sort();
}

async function schemaVersion(server: PgServer, database: string): Promise<string | null> {
  const client = await connectPg(server, database, 'runbook-temporal-config');
  try {
    const rows = (await client.query<{ curr_version: string }>('SELECT curr_version FROM schema_version WHERE db_name = $1', [database])).rows;
    return rows[0]?.curr_version ?? null;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function createTemporalConfigActivities(deps: TemporalConfigDeps) {
  const prefix = () => `${deps.backups!.prefix}temporal-config/`;
  const keysFor = (backupId: string) => ({ document: `${prefix()}${backupId}/config.json`, manifest: `${prefix()}${backupId}/manifest.json` });
  const requireBackups = () => {
    if (!deps.backups) throw failure('InvalidInput', `environment ${deps.environment} has no backups: section; add a bucket for configuration backups`);
    return deps.backups;
  };
  const connect = async (): Promise<Connection> => {
    const s = deps.settings();
    try {
      return await Connection.connect({ address: s.address, tls: s.tls, apiKey: s.apiKey, connectTimeout: 10_000 });
    } catch (err) {
      throw failure('ServerUnreachable', `cannot reach Temporal at ${s.address}: ${(err as Error).message}`);
    }
  };
  const withTemporal = async <T>(fn: (c: Connection) => Promise<T>): Promise<T> => {
    const c = await connect();
    try {
      return await fn(c);
    } finally {
      await c.close().catch(() => undefined);
    }
  };
  const dynamicConfigFile = () => {
    const f = deps.cluster?.dynamicConfigFile;
    return f ? (isAbsolute(f) ? f : join(deps.baseDir, f)) : undefined;
  };
  const readDynamicConfig = (): TemporalConfigDocument['dynamicConfig'] => {
    const file = dynamicConfigFile();
    if (!file) return null;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw failure('InvalidInput', `temporal.cluster.dynamicConfigFile: cannot read ${file}: ${(err as Error).message}`);
    }
    return { file, sha256: sha256(text), text };
  };
  const readSchemaVersions = async (): Promise<SchemaVersions> => {
    if (!deps.persistence) return { persistence: null, visibility: null };
    const { database } = deps.persistence;
    const visibilityDb = deps.cluster?.visibilityDatabase;
    const server = await reachServer(deps.persistence.server).catch((err: unknown) => {
      throw classify(err, `finding the primary of Temporal's database ${database}`);
    });
    try {
      return {
        persistence: { database, version: await schemaVersion(server, database) },
        visibility: visibilityDb ? { database: visibilityDb, version: await schemaVersion(server, visibilityDb) } : null,
      };
    } catch (err) {
      throw classify(err, `reading the schema versions of Temporal's databases on ${server.host}:${server.port}`);
    }
  };

  async function listConfigBackups(): Promise<ConfigBackupEntry[]> {
    const b = requireBackups();
    const manifests = (await b.store.list(prefix())).filter((o) => o.key.endsWith('/manifest.json')).map((o) => o.key);
    const out: ConfigBackupEntry[] = [];
    for (const key of manifests) {
      const m = await b.store.getJson<TemporalConfigManifest>(key);
      out.push({ backupId: m.backupId, takenAt: m.takenAt, manifestKey: key, documentKey: m.documentKey, sha256: m.sha256, bytes: m.bytes });
    }
    return out.sort((a, b) => b.backupId.localeCompare(a.backupId));
  }

  return {
    /** The bucket answers and Temporal answers, before anything is written. */
    async preflightTemporalConfig(input: { environment?: string }): Promise<{ serverVersion: string; namespaces: string[]; dynamicConfigFile: string | null; maxBackupAgeMs: number }> {
      checkServedEnvironment(input.environment, deps.environment);
      const b = requireBackups();
      await b.store.checkBucket().catch((err: unknown) => {
        throw classify(err, `bucket of environment ${deps.environment}`);
      });
      return withTemporal(async (c) => ({
        serverVersion: (await c.workflowService.getSystemInfo({})).serverVersion ?? '',
        namespaces: await listUserNamespaces(c),
        dynamicConfigFile: dynamicConfigFile() ?? null,
        maxBackupAgeMs: deps.cluster?.configBackupMaxAge ?? 26 * 3_600_000,
      }));
    },

    /** Reads the whole configuration and writes it with its manifest (last); the same id again after success is a no-op. */
    async backupTemporalConfiguration(input: { backupId: string }): Promise<ConfigBackupEntry & { namespaces: number; schedules: number; searchAttributes: number }> {
      if (!CONFIG_BACKUP_ID.test(input.backupId)) throw failure('InvalidInput', `'${input.backupId}' is not a backup id`);
      const b = requireBackups();
      const keys = keysFor(input.backupId);
      const summarise = (m: TemporalConfigManifest) => ({
        backupId: m.backupId,
        takenAt: m.takenAt,
        manifestKey: keys.manifest,
        documentKey: m.documentKey,
        sha256: m.sha256,
        bytes: m.bytes,
        namespaces: m.namespaces.length,
        schedules: m.namespaces.reduce((n, x) => n + x.schedules, 0),
        searchAttributes: m.namespaces.reduce((n, x) => n + x.searchAttributes, 0),
      });
      if (await b.store.exists(keys.manifest)) return summarise(await b.store.getJson<TemporalConfigManifest>(keys.manifest));
      return withHeartbeat(async () => {
        const document = await withTemporal(async (c) => {
          const info = await c.workflowService.getClusterInfo({});
          const namespaces: NamespaceBackup[] = [];
          for (const name of await listUserNamespaces(c)) namespaces.push(await readNamespace(c, name, true));
          return {
            formatVersion: 1 as const,
            environment: deps.environment,
            backupId: input.backupId,
            takenAt: new Date().toISOString(),
            serverVersion: info.serverVersion ?? '',
            clusterId: info.clusterId ?? '',
            namespaces,
            dynamicConfig: readDynamicConfig(),
            schemaVersions: await readSchemaVersions(),
          };
        });
        const text = `${JSON.stringify(document, null, 2)}\n`;
        const manifest: TemporalConfigManifest = {
          formatVersion: 1,
          backupId: input.backupId,
          environment: deps.environment,
          takenAt: document.takenAt,
          documentKey: keys.document,
          bytes: Buffer.byteLength(text),
          sha256: sha256(text),
          namespaces: document.namespaces.map((n) => ({ name: n.name, schedules: n.schedules.length, searchAttributes: Object.keys(n.searchAttributes).length })),
          dynamicConfigSha256: document.dynamicConfig?.sha256 ?? null,
          schemaVersions: document.schemaVersions,
        };
        try {
          await b.store.putText(keys.document, text, 'application/json');
          // Written last: a backup without a manifest is incomplete and never listed.
          await b.store.putJson(keys.manifest, manifest);
        } catch (err) {
          throw classify(err, `writing configuration backup ${input.backupId}`);
        }
        return summarise(manifest);
      });
    },

    /** Complete configuration backups, newest first. */
    async listTemporalConfigBackups(): Promise<ConfigBackupEntry[]> {
      return listConfigBackups();
    },

    /**
     * Reads a backup and checks it against its manifest. The document is returned only as a summary;
     * the restore and comparison activities read it again themselves (it may be large).
     */
    async checkTemporalConfigBackup(input: { backupId: string }): Promise<{ sha256Matches: boolean; expectedSha256: string; foundSha256: string; namespaces: string[] }> {
      if (!CONFIG_BACKUP_ID.test(input.backupId)) throw failure('InvalidInput', `'${input.backupId}' is not a backup id`);
      const b = requireBackups();
      const keys = keysFor(input.backupId);
      try {
        const manifest = await b.store.getJson<TemporalConfigManifest>(keys.manifest);
        const text = await b.store.getText(manifest.documentKey);
        const doc = JSON.parse(text) as TemporalConfigDocument;
        return { sha256Matches: sha256(text) === manifest.sha256, expectedSha256: manifest.sha256, foundSha256: sha256(text), namespaces: doc.namespaces.map((n) => n.name) };
      } catch (err) {
        throw classify(err, `reading configuration backup ${input.backupId}`);
      }
    },

    /**
     * Applies one namespace of a backup to a fresh scratch namespace: registers it with the backup's
     * settings, adds its search attributes, creates its schedules. Idempotent: a scratch namespace
     * already made by this test is completed, not made again; any other existing namespace is refused.
     */
    async restoreNamespaceConfig(input: { backupId: string; namespace: string; scratchNamespace: string; testId: string }): Promise<{ schedules: number; searchAttributes: number }> {
      if (!RESTORE_TEST_NAMESPACE.test(input.scratchNamespace)) throw failure('InvalidInput', `'${input.scratchNamespace}' is not a restore-test namespace name`);
      const b = requireBackups();
      const doc = JSON.parse(await b.store.getText((await b.store.getJson<TemporalConfigManifest>(keysFor(input.backupId).manifest)).documentKey)) as TemporalConfigDocument;
      const ns = doc.namespaces.find((n) => n.name === input.namespace);
      if (!ns) throw failure('BackupNotFound', `backup ${input.backupId} has no namespace ${input.namespace}`);
      return withHeartbeat(() =>
        withTemporal(async (c) => {
          try {
            await c.workflowService.registerNamespace({
              namespace: input.scratchNamespace,
              description: ns.description,
              ownerEmail: ns.ownerEmail,
              data: { ...ns.data, [RESTORE_MARKER]: input.testId },
              workflowExecutionRetentionPeriod: msToTs(ns.retentionSeconds * 1000),
              historyArchivalState: ns.historyArchival.state === 'enabled' ? 2 : 1,
              historyArchivalUri: ns.historyArchival.uri,
              visibilityArchivalState: ns.visibilityArchival.state === 'enabled' ? 2 : 1,
              visibilityArchivalUri: ns.visibilityArchival.uri,
            });
          } catch (err) {
            if ((err as { code?: number }).code !== GRPC_ALREADY_EXISTS) throw err;
            const existing = await c.workflowService.describeNamespace({ namespace: input.scratchNamespace });
            if (existing.namespaceInfo?.data?.[RESTORE_MARKER] !== input.testId) {
              throw failure('InvalidInput', `namespace ${input.scratchNamespace} exists and was not made by restore test ${input.testId}; not touched`);
            }
          }
          const present = (await c.operatorService.listSearchAttributes({ namespace: input.scratchNamespace })).customAttributes ?? {};
          const missing = Object.entries(ns.searchAttributes).filter(([name]) => !(name in present));
          if (missing.length) {
            await c.operatorService.addSearchAttributes({
              namespace: input.scratchNamespace,
              searchAttributes: Object.fromEntries(missing.map(([name, type]) => [name, Math.max(0, INDEXED_VALUE_TYPES.indexOf(type as (typeof INDEXED_VALUE_TYPES)[number]))])),
            });
          }
          for (const s of ns.schedules) {
            try {
              await c.workflowService.createSchedule({
                namespace: input.scratchNamespace,
                scheduleId: s.scheduleId,
                schedule: temporal.api.schedule.v1.Schedule.fromObject(s.schedule),
                memo: s.memo ? temporal.api.common.v1.Memo.fromObject(s.memo) : undefined,
                searchAttributes: s.searchAttributes ? temporal.api.common.v1.SearchAttributes.fromObject(s.searchAttributes) : undefined,
                identity: `runbook restore test ${input.testId}`,
                requestId: randomUUID(),
              });
            } catch (err) {
              if ((err as { code?: number }).code !== GRPC_ALREADY_EXISTS) throw err;
            }
          }
          return { schedules: ns.schedules.length, searchAttributes: missing.length };
        }),
      );
    },

    /**
     * Compares a backup with what is there now: each scratch namespace with the backup (was it
     * restored faithfully?) and with the live namespace it came from (does the backup still describe
     * the cluster?); the dynamic config and schema versions with the live ones.
     */
    async compareTemporalConfig(input: { backupId: string; scratch: { namespace: string; scratchNamespace: string }[] }): Promise<{ restored: ConfigDifference[]; live: ConfigDifference[] }> {
      const b = requireBackups();
      const doc = JSON.parse(await b.store.getText((await b.store.getJson<TemporalConfigManifest>(keysFor(input.backupId).manifest)).documentKey)) as TemporalConfigDocument;
      return withHeartbeat(() =>
        withTemporal(async (c) => {
          const restored: ConfigDifference[] = [];
          const live: ConfigDifference[] = [];
          const liveNames = await listUserNamespaces(c);
          for (const ns of doc.namespaces) {
            const pair = input.scratch.find((s) => s.namespace === ns.name);
            if (pair) restored.push(...compareNamespaces(ns, await readNamespace(c, pair.scratchNamespace, true), ns.name));
            if (liveNames.includes(ns.name)) live.push(...compareNamespaces(ns, await readNamespace(c, ns.name, true), ns.name));
            else live.push({ path: ns.name, expected: 'present', found: 'absent' });
          }
          for (const name of liveNames.filter((n) => !doc.namespaces.some((ns) => ns.name === n))) live.push({ path: name, expected: 'absent', found: 'present' });
          const dc = readDynamicConfig();
          if ((doc.dynamicConfig?.sha256 ?? null) !== (dc?.sha256 ?? null)) {
            live.push({ path: 'dynamicConfig', expected: doc.dynamicConfig ? `sha256 ${doc.dynamicConfig.sha256}` : null, found: dc ? `sha256 ${dc.sha256}` : null });
          } else if (dc) {
            // Same bytes; still prove they parse, as the servers must read them.
            try {
              parseYaml(dc.text);
            } catch (err) {
              live.push({ path: 'dynamicConfig', expected: 'valid YAML', found: (err as Error).message });
            }
          }
          const versions = await readSchemaVersions();
          for (const which of ['persistence', 'visibility'] as const) {
            if (!same(doc.schemaVersions[which], versions[which])) live.push({ path: `schemaVersions.${which}`, expected: doc.schemaVersions[which], found: versions[which] });
          }
          return { restored, live };
        }),
      );
    },

    /**
     * Deletes a scratch namespace of a restore test (its schedules first); only restore-test names,
     * and only one this test made. Deleting one already gone is a no-op.
     */
    async deleteScratchNamespace(input: { scratchNamespace: string; testId: string }): Promise<{ deleted: boolean }> {
      if (!RESTORE_TEST_NAMESPACE.test(input.scratchNamespace)) throw failure('InvalidInput', `'${input.scratchNamespace}' is not a restore-test namespace name`);
      return withHeartbeat(() =>
        withTemporal(async (c) => {
          let ns;
          try {
            ns = await c.workflowService.describeNamespace({ namespace: input.scratchNamespace });
          } catch (err) {
            if ((err as { code?: number }).code === GRPC_NOT_FOUND) return { deleted: false };
            throw err;
          }
          if (ns.namespaceInfo?.data?.[RESTORE_MARKER] !== input.testId) {
            throw failure('InvalidInput', `namespace ${input.scratchNamespace} was not made by restore test ${input.testId}; not deleted`);
          }
          let token: Uint8Array | undefined;
          do {
            const page = await c.workflowService.listSchedules({ namespace: input.scratchNamespace, maximumPageSize: 100, nextPageToken: token });
            for (const s of page.schedules ?? []) {
              await c.workflowService.deleteSchedule({ namespace: input.scratchNamespace, scheduleId: s.scheduleId, identity: `runbook restore test ${input.testId}` }).catch((err: { code?: number }) => {
                if (err.code !== GRPC_NOT_FOUND) throw err;
              });
            }
            token = page.nextPageToken && page.nextPageToken.length ? page.nextPageToken : undefined;
          } while (token);
          try {
            await c.operatorService.deleteNamespace({ namespace: input.scratchNamespace });
          } catch (err) {
            if ((err as { code?: number }).code !== GRPC_NOT_FOUND) throw err;
          }
          return { deleted: true };
        }),
      );
    },

    async writeTemporalConfigReport(input: { backupId: string; testId: string; json: unknown; markdown: string }): Promise<{ jsonKey: string; markdownKey: string }> {
      if (!CONFIG_BACKUP_ID.test(input.backupId) || !/^[a-z0-9]{6,16}$/.test(input.testId)) throw failure('InvalidInput', 'not a backup id and test id');
      const b = requireBackups();
      const base = `${prefix()}${input.backupId}/restore-tests/${input.testId}`;
      await b.store.putJson(`${base}.json`, input.json);
      await b.store.putText(`${base}.md`, input.markdown, 'text/markdown');
      return { jsonKey: `${base}.json`, markdownKey: `${base}.md` };
    },
  };
}

export type TemporalConfigActivities = ReturnType<typeof createTemporalConfigActivities>;
