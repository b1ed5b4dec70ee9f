/**
 * Restores of pgBackRest backups into scratch PostgreSQL instances, the proof of what they restored,
 * and their removal. These run on the worker host that holds the instance (its host queue).
 */
import { CancelledFailure, Context, log } from '@temporalio/activity';
import { formatLsn, parseLsn, parseSegmentName, PgBackRestPg, pgbackrestEnv, pgbackrestError, segmentName, segmentOfLsn } from '../system/pgbackrest';
import { MissingBinaryError, freePort, sleep } from '../system/process';
import { freeBytes, pgBinDirFor, prepareScratch, processAlive, readMarker, removeScratch, ScratchInstance, scratchLog, scratchPaths, startScratch, thisCreator } from '../system/scratch';
import { CANARY_COMMIT_MARGIN_MS, judgeCanary, readCanaryRows } from './canary';
import { classify, failure } from './errors';
import { heartbeater, withHeartbeat } from './heartbeat';
import { LABEL, pgbackrestFailure, PhysicalContext } from './pgbackrestContext';

export interface PhysicalRestoreTarget {
  /** Backup set to restore (pgBackRest label). */
  set: string;
  /** immediate: the backup's consistent point; time: replay to a moment; end: replay every archived segment. */
  type: 'immediate' | 'time' | 'end';
  time?: string;
}

export interface PhysicalRestoreResult {
  scratch: string;
  port: number;
  restoreMs: number;
  replayMs: number;
  replayFrom?: string;
  replayTo?: string;
  walReplayedBytes?: number;
  segmentsRestored: number;
  stoppedBecause: string;
  lastTransactionAt?: string;
  replacedLeftover: boolean;
}

/** pgBackRest's restore command for a target (the set's label is checked by the caller). */
export function physicalRestoreArgs(target: PhysicalRestoreTarget): string[] {
  const args = ['restore', `--set=${target.set}`, '--archive-mode=off', '--log-level-console=warn'];
  // With a target, promote once it is reached; without one (the end of the archive) recovery promotes by itself.
  if (target.type !== 'end') args.push('--target-action=promote');
  if (target.type === 'immediate') args.push('--type=immediate');
  // PostgreSQL's recovery_target_time does not take the ISO 8601 "T" form: "2026-11-25 03:00:00.000+00".
  else if (target.type === 'time') args.push('--type=time', `--target=${new Date(target.time!).toISOString().replace('T', ' ').replace('Z', '+00')}`);
  else args.push('--type=default');
  return args;
}

export function createPhysicalRestoreActivities(ctx: PhysicalContext) {
  const { target, options, pgbackrest, info, primaryNode, withSource, validateConnection, scratchName } = ctx;
  return {
    /**
     * Restores a backup set into a fresh scratch instance (whatever an earlier attempt of the same test
     * left is stopped and removed first), starts it on a free port with settings that keep it away from
     * production, and waits while it replays WAL to the target and promotes. A recovery that ends in an
     * error fails with the server's own words (RecoveryFailed).
     */
    async restorePhysicalBackup(input: { database: string; testId: string; workflowId?: string; target: PhysicalRestoreTarget }): Promise<PhysicalRestoreResult> {
      const t = target(input.database);
      if (!LABEL.test(input.target.set)) throw failure('InvalidInput', `'${input.target.set}' is not a pgBackRest backup label`);
      const hb = heartbeater();
      const name = scratchName(input.testId);
      try {
        const repo = await info(t, hb.signal);
        const set = repo.backups.find((b) => b.label === input.target.set);
        if (!set) throw failure('BackupNotFound', `backup ${input.target.set} is not in the repository of stanza ${t.stanza}`);
        const binDir = pgBinDirFor(set.pgVersion);
        const port = await freePort('127.0.0.1');
        const attempt = Context.current().info.attempt;
        const { paths, leftover } = await prepareScratch(t.restore.scratchDir, { name, database: input.database, workflowId: input.workflowId, port, pgMajor: set.pgVersion, kind: 'physical', creator: { ...thisCreator(), attempt } });
        if (leftover) log.info('removed what an earlier attempt left of the scratch instance', { scratch: name });
        const inst: ScratchInstance = { ...paths, port, binDir };
        // A restored copy is the database's size plus WAL to replay: refuse early rather than fill the volume.
        const need = Math.ceil(set.databaseBytes * 1.1) + 256 * 1024 * 1024;
        const free = freeBytes(t.restore.scratchDir);
        if (free < need) {
          throw failure('InsufficientScratchSpace', `restoring ${set.label} needs about ${(need / 1e9).toFixed(1)} GB in ${t.restore.scratchDir}; ${(free / 1e9).toFixed(1)} GB are free (restoreTest.scratchDir)`);
        }
        const pg: PgBackRestPg = { dataDir: inst.dataDir, port };
        const args = physicalRestoreArgs(input.target);
        hb.beat({ phase: 'restore', set: set.label, scratch: name });
        const restore = await pgbackrest(t, args, { pg, signal: hb.signal });
        if (hb.signal.aborted) throw new CancelledFailure('restore cancelled; pgbackrest stopped');
        if (restore.code !== 0) {
          const e = pgbackrestError(restore);
          // A file whose content does not match its checksum: the backup is corrupt, no retry helps.
          if (/checksum|FormatError|data error|\[029\]|\[039\]|\[044\]/i.test(`${e.code ? `[0${e.code}]` : ''} ${e.message}`)) {
            throw failure('BackupChecksumMismatch', `restoring ${set.label} failed: a file of the backup is corrupt: ${e.message}`);
          }
          throw pgbackrestFailure(`restoring ${set.label} into ${name}`, restore);
        }
        // Replay: restore_command fetches each segment from the repository with the worker's repository settings.
        const env = pgbackrestEnv(options(t, pg));
        const settings: Record<string, string> = {
          shared_buffers: t.restore.sharedBuffers,
          restore_command: 'pgbackrest archive-get %f "%p"',
          primary_conninfo: '',
          hot_standby: 'on',
        };
        const replayStarted = Date.now();
        const pid = startScratch(inst, settings, env);
        let segments = 0;
        for (;;) {
          if (hb.signal.aborted) throw new CancelledFailure('restore cancelled during replay');
          const text = scratchLog(inst);
          segments = (text.match(/restored log file "/g) ?? []).length;
          const failed = /aborting startup due to startup process failure|startup process \(PID \d+\) (exited with exit code|was terminated)/.test(text);
          if (failed || !processAlive(pid)) {
            // The startup process's own words; connection refusals while it starts are not the reason.
            const lines = text
              .split('\n')
              .filter((l) => /(FATAL|PANIC|ERROR):/.test(l) && !/the database system is (starting up|not yet accepting connections|shutting down)/.test(l))
              .map((l) => l.replace(/^.*?(FATAL|PANIC|ERROR):\s+/, '$1: '));
            throw failure('RecoveryFailed', `the scratch instance's recovery of ${set.label} failed: ${lines.slice(-4).join('; ') || 'the server exited'}`, { log: text.split('\n').slice(-20).join('\n') });
          }
          if (/database system is ready to accept connections/.test(text)) {
            const promoted = await validateConnection(inst, t, async (c) => (await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0].r === false).catch(() => false);
            if (promoted) break;
          }
          hb.beat({ phase: 'replay', set: set.label, scratch: name, segmentsRestored: segments });
          await sleep(300);
        }
        const replayMs = Date.now() - replayStarted;
        const log2 = scratchLog(inst);
        const from = /redo starts at ([0-9A-F]+\/[0-9A-F]+)/.exec(log2)?.[1];
        const to = /redo done at ([0-9A-F]+\/[0-9A-F]+)/.exec(log2)?.[1];
        const stop = /(recovery stopping [^\n]*)/.exec(log2)?.[1] ?? (/redo done at/.test(log2) ? 'replayed every archived WAL segment' : 'consistent after the backup');
        const lastTx = /last completed transaction was at log time ([^\n]+)/.exec(log2)?.[1];
        return {
          scratch: name,
          port,
          restoreMs: restore.durationMs,
          replayMs,
          replayFrom: from,
          replayTo: to,
          walReplayedBytes: from && to ? Number(parseLsn(to) - parseLsn(from)) : undefined,
          segmentsRestored: segments,
          stoppedBecause: stop,
          lastTransactionAt: lastTx ? new Date(lastTx.replace(' ', 'T').replace(/\+00$/, 'Z')).toISOString() : undefined,
          replacedLeftover: leftover,
        };
      } catch (err) {
        if (err instanceof MissingBinaryError) throw failure('ProgramMissing', err.message);
        throw classify(err, `restoring into ${name}`);
      } finally {
        hb.stop();
      }
    },

    /**
     * Proves the restored copy: recovery reached where it should (the target, or the archive's end),
     * the canary holds exactly the rows written before the target, and the configured SQL checks hold.
     */
    async validatePhysicalRestore(input: {
      database: string;
      testId: string;
      target: PhysicalRestoreTarget;
      /** Canary rows before this must be there, none after `after`; without it (replay to the end), every row in the archive must be. */
      canaryWindow?: { before: string; after: string; label: string };
      replay: { replayTo?: string };
      archiveMax?: string;
    }): Promise<{ name: string; passed: boolean; detail: string }[]> {
      const t = target(input.database);
      return withHeartbeat(async () => {
        const p = scratchPaths(t.restore.scratchDir, scratchName(input.testId));
        const marker = readMarker(t.restore.scratchDir, p.name);
        if (!marker) throw failure('RecoveryFailed', `the scratch instance ${p.name} is gone`);
        const inst = { socketDir: p.socketDir, port: marker.port };
        const checks: { name: string; passed: boolean; detail: string }[] = [];
        const { node, walSegmentBytes } = await primaryNode(t);
        if (input.target.type === 'end' && input.archiveMax && input.replay.replayTo) {
          // Replay that stops early (a segment the archive cannot give) ends recovery silently: compare where it ended.
          const endSeg = segmentOfLsn(input.replay.replayTo, walSegmentBytes);
          const maxSeg = parseSegmentName(input.archiveMax, walSegmentBytes).segno;
          checks.push({
            name: 'replay reached the end of the archive',
            passed: endSeg >= maxSeg,
            detail:
              endSeg >= maxSeg
                ? `replayed to ${input.replay.replayTo}, in the newest archived segment ${input.archiveMax}`
                : `replay ended at ${input.replay.replayTo} (segment ${segmentName(parseSegmentName(input.archiveMax, walSegmentBytes).timeline, endSeg, walSegmentBytes)}), but the archive reaches ${input.archiveMax}: the WAL from ${formatLsn((endSeg + 1n) * BigInt(walSegmentBytes))} on was not replayed`,
          });
        }
        const source = (await withSource(t, node, (c) => readCanaryRows(c))) ?? [];
        const restored = await validateConnection(inst, t, (c) => readCanaryRows(c));
        let window: { before: number; after: number; label: string };
        if (input.canaryWindow) window = { before: Date.parse(input.canaryWindow.before), after: Date.parse(input.canaryWindow.after), label: input.canaryWindow.label };
        else {
          // Replayed to the end: every row whose WAL lies in a segment before the newest archived one committed in the archive.
          const maxSeg = input.archiveMax ? parseSegmentName(input.archiveMax, walSegmentBytes).segno : -1n;
          const inArchive = source.filter((r) => segmentOfLsn(r.lsn, walSegmentBytes) < maxSeg);
          const last = inArchive[inArchive.length - 1];
          window = { before: last ? Date.parse(last.writtenAt) + CANARY_COMMIT_MARGIN_MS + 1 : 0, after: Number.POSITIVE_INFINITY, label: `the end of the archive (${input.archiveMax ?? '-'})` };
        }
        const verdict = judgeCanary(source, restored ?? [], window, window.label);
        checks.push({ name: 'restore canary', passed: verdict.passed, detail: verdict.detail });
        await validateConnection(inst, t, async (client) => {
          for (const assertion of t.restore.assertions) {
            try {
              await client.query('BEGIN READ ONLY');
              await client.query("SET LOCAL statement_timeout = '60s'");
              const res = await client.query({ text: assertion.sql, rowMode: 'array' });
              await client.query('ROLLBACK');
              const value = res.rows[0]?.[0];
              checks.push({ name: `assertion: ${assertion.name}`, passed: value === true, detail: value === true ? 'returned true' : `returned ${JSON.stringify(value ?? null)}, expected true` });
            } catch (err) {
              await client.query('ROLLBACK').catch(() => undefined);
              checks.push({ name: `assertion: ${assertion.name}`, passed: false, detail: `failed: ${(err as Error).message}` });
            }
          }
        });
        return checks;
      });
    },

    /** Stops and removes a restore test's scratch instance; removing one that does not exist is a no-op. */
    async removeScratchInstance(input: { database: string; testId: string }): Promise<{ existed: boolean; wasRunning: boolean }> {
      const t = target(input.database);
      return withHeartbeat(() => removeScratch(t.restore.scratchDir, scratchName(input.testId)));
    },
  };
}
