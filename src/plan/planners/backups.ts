/**
 * Plan mode for the backup runbooks (backupDatabase, verifyBackup with its pgBackRest restore test,
 * restoreCanary): what each backup, retention, restore, validation, clean-up and report step would do,
 * answered as a successful real step would answer so the workflow carries on as in a real run.
 */
import { dumpBackupKeys, restoreReportKeys, retentionVerdict, type BackupListEntry, type RestoreCheck } from '../../activities/backups';
import { CANARY_TABLE } from '../../activities/canary';
import { scratchInstanceName } from '../../activities/dumpScratch';
import { failure } from '../../activities/errors';
import { physicalBackupArgs, physicalRestoreReportKeys, scratchInstanceDir, type BackupType, type RepositoryOverview } from '../../activities/pgbackrest';
import { SCRATCH_PREFIX } from '../../activities/pgbackrestContext';
import { physicalRestoreArgs } from '../../activities/pgbackrestRestore';
import { credentialFor } from '../../config/pgRoles';
import type { EnvironmentConfig } from '../../config/schema';
import type { PhysicalBackup } from '../../system/pgbackrest';
import { scratchPaths } from '../../system/scratch';
import type { PlanContext, Planners } from '../recording';
import type { PlannedChange } from '../types';

type Database = EnvironmentConfig['databases'][string];

function databaseOf(ctx: PlanContext, name: string): Database {
  const db = ctx.env.databases[name];
  if (!db) throw failure('InvalidInput', `database '${name}' is not configured for environment ${ctx.environment}; configured: ${Object.keys(ctx.env.databases).join(', ') || 'none'}`);
  return db;
}

function bucketOf(ctx: PlanContext): NonNullable<EnvironmentConfig['backups']> {
  if (!ctx.env.backups) throw failure('InvalidInput', `environment ${ctx.environment} has no backups: section; add a bucket to back up to`);
  return ctx.env.backups;
}

function pgbackrestOf(ctx: PlanContext, name: string): NonNullable<Database['backups']['pgbackrest']> {
  const b = databaseOf(ctx, name).backups.pgbackrest;
  if (!b) throw failure('InvalidInput', `database '${name}' is not backed up with pgBackRest in environment ${ctx.environment}`);
  return b;
}

const s3 = (bucket: string, key: string) => `s3://${bucket}/${key}`;

export function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  return `${n} bytes`;
}

export function formatSpan(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  return `${Math.round(ms / 60_000)}m`;
}

/** A read made once per plan run: later steps of the same plan see what the first one saw. */
async function once<T>(ctx: PlanContext, key: string, read: () => Promise<T>): Promise<T> {
  if (!(key in ctx.world)) ctx.world[key] = await read();
  return ctx.world[key] as T;
}

const listedDumps = (ctx: PlanContext, database: string) => once(ctx, `dumps:${database}`, () => ctx.reads.listBackups({ database }));
const repository = (ctx: PlanContext, database: string): Promise<RepositoryOverview> => once(ctx, `repository:${database}`, () => ctx.reads.inspectPhysicalRepository({ database }));
const preflight = (ctx: PlanContext, database: string) => once(ctx, `preflight:${database}`, () => ctx.reads.preflightBackupTarget({ database, environment: ctx.environment }));

/** Where a dump database's backups and restores connect: its service address, or the primary the topology names at run time. */
function sourceAddress(db: Database): { host: string; port: string } {
  return db.host ? { host: db.host, port: String(db.port) } : { host: '<current primary>', port: '<port>' };
}

/** Where a dump restore test makes its scratch database, in the words the plan uses and the pg_restore connection. */
function scratchDatabaseHome(db: Database, into: 'scratchInstance' | 'restoreServer' | 'sourceServer', scratchName: string) {
  const rt = db.restoreTest;
  if (into === 'scratchInstance') {
    const instance = scratchInstanceName(scratchName);
    const dir = scratchPaths(rt.scratchDir, instance).dir;
    return { where: `scratch instance ${instance} (${dir}) on the worker host that claimed the test`, instance, dir, host: `${dir}/socket`, port: '<free port>', user: credentialFor(db, 'backup').user };
  }
  const user = rt.user ?? db.user;
  if (into === 'restoreServer') return { where: `restore server ${rt.host}:${rt.port ?? db.port}`, host: rt.host!, port: String(rt.port ?? db.port), user };
  const a = sourceAddress(db);
  return { where: `the source server itself (${db.host ?? 'the current primary'}; the restore loads production)`, ...a, user };
}

/** The label pgBackRest gives a backup started now (its own clock decides the real one). */
export function physicalLabel(startedAt: Date, type: BackupType, full?: string): string {
  const stamp = startedAt.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return type === 'full' || !full ? `${stamp}F` : `${full}_${stamp}${type === 'diff' ? 'D' : 'I'}`;
}

/**
 * The backup pgBackRest would take: a differential needs a full to differ from, an incremental the
 * newest backup; without any full pgBackRest takes a full instead.
 */
export function nextPhysicalBackup(backups: readonly Pick<PhysicalBackup, 'label' | 'type' | 'reference'>[], requested: BackupType, startedAt: Date): { label: string; type: BackupType; prior: string | null; reference: string[] } {
  const full = [...backups].reverse().find((b) => b.type === 'full');
  if (requested === 'full' || !full) return { label: physicalLabel(startedAt, 'full'), type: 'full', prior: null, reference: [] };
  const prior = requested === 'diff' ? full : backups[backups.length - 1];
  const reference = requested === 'diff' ? [full.label] : [...new Set([...prior.reference, prior.label])];
  return { label: physicalLabel(startedAt, requested, full.label), type: requested, prior: prior.label, reference };
}

/**
 * What `pgbackrest expire` removes with count retention, on backups oldest first (as `info` lists them):
 * the fulls beyond the newest `full`; then, with `diff`, the differentials beyond the newest `diff` of the
 * remaining fulls and differentials counted together (a full expires only by full retention); each with
 * every backup that depends on it.
 */
export function expiredByRetention(backups: readonly Pick<PhysicalBackup, 'label' | 'type' | 'prior'>[], retention: { full: number; diff?: number }): string[] {
  const expired = new Set<string>();
  const expire = (label: string) => {
    expired.add(label);
    for (const b of backups) if (b.prior === label && !expired.has(b.label)) expire(b.label);
  };
  const fulls = backups.filter((b) => b.type === 'full');
  for (const f of fulls.slice(0, Math.max(0, fulls.length - retention.full))) expire(f.label);
  if (retention.diff !== undefined) {
    const counted = backups.filter((b) => b.type !== 'incr' && !expired.has(b.label));
    for (const b of counted.slice(0, Math.max(0, counted.length - retention.diff))) if (b.type === 'diff') expire(b.label);
  }
  return backups.filter((b) => expired.has(b.label)).map((b) => b.label);
}

const repositoryPath = (b: NonNullable<Database['backups']['pgbackrest']>, ...parts: string[]) => `s3://${b.repo.bucket}${b.repo.path.replace(/\/$/, '')}/${parts.join('/')}`;

function targetText(target: { type: 'immediate' | 'time' | 'end'; time?: string }, archiveMax?: string): string {
  if (target.type === 'immediate') return "the backup's consistent point";
  if (target.type === 'time') return target.time!;
  return `the end of the archive (${archiveMax ?? 'its newest segment'})`;
}

function assertionChecks(db: Database): RestoreCheck[] {
  return db.restoreTest.assertions.map((a) => ({ name: `assertion: ${a.name}`, passed: true, detail: `would run read-only and expect true: ${a.sql}` }));
}

export const backupPlanners: Planners = {
  async takeBackup(input, ctx) {
    const db = databaseOf(ctx, input.database);
    const { bucket, prefix } = bucketOf(ctx);
    const keys = dumpBackupKeys(prefix, input.database, input.backupId);
    const last = (await listedDumps(ctx, input.database))[0];
    const a = sourceAddress(db);
    const user = credentialFor(db, 'backup').user;
    const entry: BackupListEntry = { backupId: input.backupId, endedAt: new Date().toISOString(), bytes: 0, sha256: '', manifestKey: keys.manifest, dumpKey: keys.dump, tableCount: 0 };
    ctx.world[`planned-dump:${input.database}`] = entry;
    const planned: PlannedChange[] = [
      {
        kind: 'change',
        by: 'takeBackup',
        what: `dumps database ${db.database} (${a.host}:${a.port}, as ${user}) with pg_dump in custom format, from a snapshot held by a read-only transaction, and uploads it to ${s3(bucket, keys.dump)}; size and sha256 known after the run${last ? ` (the last dump, ${last.backupId}, was ${formatBytes(last.bytes)} with ${last.tableCount} tables)` : ''}`,
        detail: { key: keys.dump, command: `pg_dump -h ${a.host} -p ${a.port} -U ${user} -d ${db.database} -Fc --snapshot=<exported snapshot> --no-password` },
      },
    ];
    if (db.backups.globals) {
      planned.push({
        kind: 'change',
        by: 'takeBackup',
        what: `dumps the roles and other globals with pg_dumpall --globals-only (role passwords included where ${user} may read them) to ${s3(bucket, keys.globals)}`,
        detail: { key: keys.globals, command: `pg_dumpall -h ${a.host} -p ${a.port} -U ${user} -l ${db.database} --globals-only --no-password` },
      });
    }
    planned.push({
      kind: 'write',
      by: 'takeBackup',
      what: `writes the manifest (every table's row count and checksum from the same snapshot, owners and privileges, the dump's sha256) last, to ${s3(bucket, keys.manifest)}: from then on the backup is listed`,
      detail: { key: keys.manifest },
    });
    return { result: entry, planned };
  },

  async applyRetention(input, ctx) {
    const { bucket, prefix, retention } = bucketOf(ctx);
    const listed = await listedDumps(ctx, input.database);
    const taken = ctx.world[`planned-dump:${input.database}`] as BackupListEntry | undefined;
    // The dump this plan would have taken is the newest, as it would be in the real listing.
    const backups = taken && !listed.some((b) => b.backupId === taken.backupId) ? [taken, ...listed] : listed;
    const verdict = retentionVerdict(backups, { keepLast: retention.keepLast, maxAgeMs: retention.maxAge }, input.nowMs);
    const rule = [retention.keepLast !== undefined && `the newest ${retention.keepLast}`, retention.maxAge !== undefined && `those younger than ${formatSpan(retention.maxAge)}`].filter(Boolean).join(' and ');
    const planned = verdict.deleted.map((id): PlannedChange => {
      const b = backups.find((x) => x.backupId === id)!;
      const keys = dumpBackupKeys(prefix, input.database, id);
      return {
        kind: 'change',
        by: 'applyRetention',
        what: `deletes backup ${id} (ended ${b.endedAt}, ${formatBytes(b.bytes)}), outside retention (keeps ${rule} of ${backups.length}): its manifest ${s3(bucket, keys.manifest)} first, then every object under ${s3(bucket, keys.base)} (dump, globals, restore-test reports)`,
        detail: { manifest: keys.manifest, prefix: keys.base, dump: b.dumpKey },
      };
    });
    return { result: verdict, planned };
  },

  async restoreIntoScratchDatabase(input, ctx) {
    const db = databaseOf(ctx, input.database);
    const { bucket, prefix } = bucketOf(ctx);
    const into = (await preflight(ctx, input.database)).restoreInto;
    const backup = (await listedDumps(ctx, input.database)).find((b) => b.backupId === input.backupId);
    const dumpKey = backup?.dumpKey ?? dumpBackupKeys(prefix, input.database, input.backupId).dump;
    const home = scratchDatabaseHome(db, into, input.scratchName);
    const jobs = db.restoreTest.jobs;
    const withOwners = into === 'scratchInstance' && db.backups.globals;
    ctx.world[`scratch:${input.scratchName}`] = true;
    const planned: PlannedChange[] = [];
    if (into === 'scratchInstance') {
      planned.push({
        kind: 'change',
        by: 'restoreIntoScratchDatabase',
        what: `starts a fresh PostgreSQL instance ${home.instance} of the dump's major version in ${home.dir} (fsync off, shared_buffers ${db.restoreTest.scratchSharedBuffers}, on a free local port), removing what an earlier attempt left there${withOwners ? '; restores the backup\'s roles into it from its globals.sql first, when it has one' : ''}`,
        detail: { instance: home.instance, dir: home.dir },
      });
    }
    planned.push({
      kind: 'change',
      by: 'restoreIntoScratchDatabase',
      what: `creates database ${input.scratchName} on ${home.where} (dropping one of that name first) and restores backup ${input.backupId}${backup ? ` (${formatBytes(backup.bytes)})` : ''} from ${s3(bucket, dumpKey)} into it with pg_restore${jobs > 1 ? `, ${jobs} jobs on a spooled copy` : ', streamed'}, its tables unlogged where the restore user may create event triggers; the sha256 is checked against the manifest on the way`,
      detail: {
        scratchDatabase: input.scratchName,
        command: `pg_restore -h ${home.host} -p ${home.port} -U ${home.user} -d ${input.scratchName}${withOwners ? '' : ' --no-owner --no-privileges'} --exit-on-error --no-password${jobs > 1 ? ` -j ${jobs} <spooled dump file>` : ' < dump stream'}`,
      },
    });
    return {
      result: {
        bytes: backup?.bytes ?? 0,
        sha256: backup?.sha256 ?? '',
        durationMs: 0,
        mode: jobs <= 1 ? 'stream' : 'parallel',
        jobs,
        phasesMs: {},
        unloggedTables: into === 'scratchInstance' ? { enabled: true } : { enabled: false, reason: 'known after the run: needs a restore user that may create event triggers' },
      },
      planned,
    };
  },

  async validateRestoredDatabase(input, ctx) {
    const db = databaseOf(ctx, input.database);
    const into = (await preflight(ctx, input.database)).restoreInto;
    const backup = (await listedDumps(ctx, input.database)).find((b) => b.backupId === input.backupId);
    const tables = backup ? `${backup.tableCount}` : 'every';
    const globals = into === 'scratchInstance' && db.backups.globals;
    const checks: RestoreCheck[] = [];
    if (globals) checks.push({ name: 'roles and globals restored', passed: true, detail: 'would check that the backup\'s pg_dumpall --globals-only applied without errors' });
    checks.push({ name: 'schema present', passed: true, detail: `would look for all ${tables} tables of the manifest` });
    checks.push({ name: 'tables match the manifest', passed: true, detail: `would compare each of the ${tables} tables' row count and checksum with the manifest's` });
    if (globals) checks.push({ name: 'owners and privileges', passed: true, detail: "would compare each table's owner and grants with the source's" });
    if (ctx.env.temporal.cluster?.persistenceDatabase === input.database) checks.push({ name: 'Temporal schema version', passed: true, detail: "would compare schema_version with the running server's database" });
    checks.push(...assertionChecks(db));
    return {
      result: checks,
      planned: [
        {
          kind: 'wait',
          by: 'validateRestoredDatabase',
          what: `reads every table of ${input.scratchName} once and compares it with the manifest of backup ${input.backupId}, then runs ${db.restoreTest.assertions.length} configured assertion(s) read-only`,
          detail: { checks: checks.map((c) => c.name) },
        },
      ],
    };
  },

  async dropScratchDatabase(input, ctx) {
    const db = databaseOf(ctx, input.database);
    const into = (await preflight(ctx, input.database)).restoreInto;
    const home = scratchDatabaseHome(db, into, input.scratchName);
    const existed = ctx.world[`scratch:${input.scratchName}`] === true;
    delete ctx.world[`scratch:${input.scratchName}`];
    return {
      result: { dropped: existed },
      planned: [
        into === 'scratchInstance'
          ? { kind: 'change', by: 'dropScratchDatabase', what: `stops scratch instance ${home.instance} and removes its directory ${home.dir}, database ${input.scratchName} with it`, detail: { instance: home.instance, dir: home.dir } }
          : { kind: 'change', by: 'dropScratchDatabase', what: `drops database ${input.scratchName} on ${home.where}, ending its connections`, detail: { sql: `DROP DATABASE IF EXISTS ${input.scratchName} WITH (FORCE)` } },
      ],
    };
  },

  async writeRestoreReport(input, ctx) {
    const { bucket, prefix } = bucketOf(ctx);
    const { report } = input;
    const keys = restoreReportKeys(prefix, report.database, report.backupId, report.testId);
    return {
      result: keys,
      planned: [{ kind: 'write', by: 'writeRestoreReport', what: `writes the restore test's report (${report.passed ? 'passed' : 'failed'}) as JSON, Markdown and HTML to ${s3(bucket, keys.jsonKey.replace(/\.json$/, '.{json,md,html}'))}`, detail: keys }],
    };
  },

  async takePhysicalBackup(input, ctx) {
    const b = pgbackrestOf(ctx, input.database);
    const repo = await repository(ctx, input.database);
    const startedAt = new Date();
    const usable = repo.backups.filter((x) => !x.error);
    const next = nextPhysicalBackup(usable, input.type, startedAt);
    const node = repo.archiver.node;
    const databaseBytes = usable[usable.length - 1]?.databaseBytes ?? 0;
    const backup: PhysicalBackup = {
      ...next,
      startedAt: startedAt.toISOString(),
      stoppedAt: startedAt.toISOString(),
      lsnStart: '',
      lsnStop: '',
      walStart: '',
      walStop: '',
      databaseBytes,
      deltaBytes: next.type === 'full' ? databaseBytes : 0,
      repoBytes: 0,
      repoDeltaBytes: 0,
      annotation: { 'runbook-backup-id': input.backupId, 'runbook-node': node },
      error: false,
      pgVersion: repo.pgVersion ?? '',
    };
    ctx.world[`planned-physical:${input.database}`] = backup;
    const promoted = next.type !== input.type ? ` (asked for ${input.type}; with no full backup in the repository pgBackRest takes a full)` : '';
    const basis = next.prior ? `, changes since ${next.prior}` : '';
    return {
      result: { ...backup, node, durationMs: 0, alreadyDone: false },
      planned: [
        {
          kind: 'change',
          by: 'takePhysicalBackup',
          what: `takes a pgBackRest ${next.type} backup${promoted}${basis} of stanza ${b.stanza} from the primary ${node}, starting with an immediate checkpoint there, into ${repositoryPath(b, 'backup', b.stanza, next.label)} (label about ${next.label}; database ${formatBytes(databaseBytes)} at the last backup, the repository's share known after the run)`,
          detail: { label: next.label, prior: next.prior, node, command: `pgbackrest --stanza=${b.stanza} ${physicalBackupArgs(next.type, input.backupId, node).join(' ')}` },
        },
      ],
    };
  },

  async expirePhysicalBackups(input, ctx) {
    const b = pgbackrestOf(ctx, input.database);
    const repo = await repository(ctx, input.database);
    const taken = ctx.world[`planned-physical:${input.database}`] as PhysicalBackup | undefined;
    const backups = taken ? [...repo.backups, taken] : repo.backups;
    const expired = expiredByRetention(backups, b.retention);
    const kept = backups.map((x) => x.label).filter((l) => !expired.includes(l));
    const keeps = `retention keeps ${b.retention.full} full${b.retention.diff !== undefined ? ` and ${b.retention.diff} differential` : ''} backups`;
    const command = `pgbackrest --stanza=${b.stanza} --repo1-retention-full=${b.retention.full}${b.retention.diff !== undefined ? ` --repo1-retention-diff=${b.retention.diff}` : ''} expire`;
    const planned = expired.map((label): PlannedChange => {
      const x = backups.find((y) => y.label === label)!;
      return {
        kind: 'change',
        by: 'expirePhysicalBackups',
        what: `pgbackrest expire removes backup ${label} (${x.type}, ended ${x.stoppedAt}, ${formatBytes(x.repoDeltaBytes)} of its own in the repository) from ${repositoryPath(b, 'backup', b.stanza, label)}: ${keeps}`,
        detail: { label, command },
      };
    });
    const oldestFull = backups.find((x) => x.type === 'full' && !expired.includes(x.label));
    if (backups.some((x) => x.type === 'full' && expired.includes(x.label)) && oldestFull?.walStart) {
      planned.push({ kind: 'change', by: 'expirePhysicalBackups', what: `and the archived WAL before ${oldestFull.walStart} (needed only by expired backups) from ${repositoryPath(b, 'archive', b.stanza)}`, detail: { command } });
    }
    return { result: { kept, expired }, planned };
  },

  async restorePhysicalBackup(input, ctx) {
    const b = pgbackrestOf(ctx, input.database);
    const rt = databaseOf(ctx, input.database).restoreTest;
    const repo = await repository(ctx, input.database);
    const set = repo.backups.find((x) => x.label === input.target.set);
    const scratch = `${SCRATCH_PREFIX}${input.testId}`;
    const dir = scratchInstanceDir(rt.scratchDir, input.testId);
    ctx.world[`scratch:${scratch}`] = true;
    // The same estimate the real restore refuses on: a restored copy plus WAL to replay.
    const need = set ? Math.ceil(set.databaseBytes * 1.1) + 256 * 1024 * 1024 : undefined;
    const stoppedBecause = input.target.type === 'end' ? 'would replay every archived WAL segment' : `would stop at ${targetText(input.target)}`;
    return {
      result: { scratch, port: 0, restoreMs: 0, replayMs: 0, segmentsRestored: 0, stoppedBecause, replacedLeftover: false },
      planned: [
        {
          kind: 'change',
          by: 'restorePhysicalBackup',
          what: `restores pgBackRest backup ${input.target.set}${set ? ` (${set.type}, database ${formatBytes(set.databaseBytes)}, PostgreSQL ${set.pgVersion})` : ''} of stanza ${b.stanza} into a new scratch instance ${scratch} in ${dir} on the worker host that claimed the test${need ? ` (refused unless about ${formatBytes(need)} is free in ${rt.scratchDir})` : ''}, removing what an earlier attempt left there`,
          detail: { scratch, dir, command: `pgbackrest --stanza=${b.stanza} --pg1-path=${dir}/data ${physicalRestoreArgs(input.target).join(' ')}` },
        },
        {
          kind: 'change',
          by: 'restorePhysicalBackup',
          what: `starts ${scratch} on a free local port (shared_buffers ${rt.scratchSharedBuffers}, WAL fetched from the repository with pgbackrest archive-get, no primary_conninfo) and replays WAL to ${targetText(input.target, repo.archive?.max)}, then it is promoted`,
          detail: { target: input.target },
        },
      ],
    };
  },

  async validatePhysicalRestore(input, ctx) {
    const db = databaseOf(ctx, input.database);
    const scratch = `${SCRATCH_PREFIX}${input.testId}`;
    const checks: RestoreCheck[] = [];
    if (input.target.type === 'end' && input.archiveMax) checks.push({ name: 'replay reached the end of the archive', passed: true, detail: `would check that replay reached the newest archived segment ${input.archiveMax}` });
    const window = input.canaryWindow?.label ?? `the end of the archive (${input.archiveMax ?? '-'})`;
    checks.push({ name: 'restore canary', passed: true, detail: `would compare ${CANARY_TABLE} on the source with the restored copy: every row written before ${window} restored${input.canaryWindow ? ', none after' : ''}` });
    checks.push(...assertionChecks(db));
    return {
      result: checks,
      planned: [
        {
          kind: 'wait',
          by: 'validatePhysicalRestore',
          what: `proves the restored copy in ${scratch}: recovery reached ${targetText(input.target, input.archiveMax)}, the restore canary holds the rows written before ${window}, and ${db.restoreTest.assertions.length} configured assertion(s) hold (read-only)`,
          detail: { checks: checks.map((c) => c.name) },
        },
      ],
    };
  },

  async removeScratchInstance(input, ctx) {
    const rt = databaseOf(ctx, input.database).restoreTest;
    const scratch = `${SCRATCH_PREFIX}${input.testId}`;
    const existed = ctx.world[`scratch:${scratch}`] === true;
    delete ctx.world[`scratch:${scratch}`];
    const dir = scratchInstanceDir(rt.scratchDir, input.testId);
    return {
      result: { existed, wasRunning: existed },
      planned: [{ kind: 'change', by: 'removeScratchInstance', what: `stops scratch instance ${scratch} and removes its directory ${dir}`, detail: { scratch, dir } }],
    };
  },

  async writePhysicalRestoreReport(input, ctx) {
    const { bucket, prefix } = bucketOf(ctx);
    const { report } = input;
    pgbackrestOf(ctx, report.database);
    const keys = physicalRestoreReportKeys(prefix, report.database, report.testId);
    return {
      result: keys,
      planned: [{ kind: 'write', by: 'writePhysicalRestoreReport', what: `writes the restore test's report (${report.passed ? 'passed' : 'failed'}) as JSON, Markdown and HTML to ${s3(bucket, keys.jsonKey.replace(/\.json$/, '.{json,md,html}'))}`, detail: keys }],
    };
  },

  async writeRestoreCanary(input, ctx) {
    const db = databaseOf(ctx, input.database);
    pgbackrestOf(ctx, input.database);
    const repo = await repository(ctx, input.database);
    const node = repo.archiver.node;
    const keep = formatSpan(db.restoreTest.canary.keep);
    return {
      result: { row: { id: (repo.canary.newest?.id ?? 0) + 1, writtenAt: new Date().toISOString(), lsn: '' }, pruned: 0, node },
      planned: [
        {
          kind: 'change',
          by: 'writeRestoreCanary',
          what: `inserts one row (the server's time and WAL position) into ${CANARY_TABLE} of database ${db.database} on the primary ${node} as ${credentialFor(db, 'canary').user} (creating the table if it is missing), and deletes rows older than ${keep} (${repo.canary.rows} rows now; how many go known after the run)`,
          detail: { table: CANARY_TABLE, node },
        },
      ],
    };
  },
};
