/**
 * Scratch PostgreSQL instances for dump restore tests: a fresh cluster of the dump's major version on
 * a free port, built for a throwaway restore (no fsync, minimal WAL), reached over its own socket,
 * removed after the test. The restore never touches the production servers.
 */
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { join } from 'node:path';
import { freePort } from '../system/process';
import { initScratch, pgBinDirFor, prepareScratch, readMarker, removeScratch, ScratchInstance, scratchPaths, startScratch, thisCreator, waitForScratch } from '../system/scratch';
import type { PgServer } from './pg';

/** Dump restore tests use the same naming as physical ones: restore_test_<id> becomes restore-test-<id>. */
export function scratchInstanceName(scratchDatabase: string): string {
  return scratchDatabase.replace(/_/g, '-');
}

/** The major version from server_version ("15.18 (Debian 15.18-0+deb12u1)" gives 15; "9.6.24" gives 9.6). */
export function majorVersion(serverVersion: string): string {
  const m = /^(\d+)(?:\.(\d+))?/.exec(serverVersion.trim());
  if (!m) return serverVersion;
  return Number(m[1]) >= 10 ? m[1] : `${m[1]}.${m[2]}`;
}

export async function startDumpScratch(opts: { root: string; scratchDatabase: string; database: string; superuser: string; serverVersion: string; sharedBuffers: string; attempt?: number }): Promise<{ inst: ScratchInstance; server: PgServer; replaced: boolean }> {
  const name = scratchInstanceName(opts.scratchDatabase);
  const major = majorVersion(opts.serverVersion);
  const binDir = pgBinDirFor(major);
  const port = await freePort('127.0.0.1');
  const { paths, leftover } = await prepareScratch(opts.root, { name, database: opts.database, port, pgMajor: major, kind: 'dump', creator: { ...thisCreator(), attempt: opts.attempt } });
  const inst: ScratchInstance = { ...paths, port, binDir };
  await initScratch(inst, opts.superuser);
  // A throwaway copy: durability buys nothing, speed does.
  const pid = startScratch(inst, { shared_buffers: opts.sharedBuffers, fsync: 'off', full_page_writes: 'off', synchronous_commit: 'off', wal_level: 'minimal', max_wal_senders: '0', max_wal_size: '4GB' }, { PATH: process.env.PATH });
  await waitForScratch(inst, pid, 120_000);
  return { inst, server: { host: inst.socketDir, port, user: opts.superuser, password: '' }, replaced: leftover };
}

/** The running scratch instance of a dump restore test, as its marker records it. */
export function dumpScratchServer(root: string, scratchDatabase: string, user: string): PgServer | undefined {
  const name = scratchInstanceName(scratchDatabase);
  const marker = readMarker(root, name);
  if (!marker) return undefined;
  return { host: scratchPaths(root, name).socketDir, port: marker.port, user, password: '' };
}

export function removeDumpScratch(root: string, scratchDatabase: string) {
  return removeScratch(root, scratchInstanceName(scratchDatabase));
}

/**
 * Roles and other globals (pg_dumpall --globals-only) into a scratch instance, read from a stream.
 * "already exists" for the instance's own superuser is expected; tablespaces are left out (their
 * directories belong to the production host). Returns the statements that failed otherwise.
 */
export async function restoreGlobals(psqlDir: string, server: PgServer, sql: Readable, env: NodeJS.ProcessEnv): Promise<{ errors: string[] }> {
  const child = spawn(join(psqlDir, 'psql'), ['-h', server.host, '-p', String(server.port), '-U', server.user, '-d', 'postgres', '-X', '-q', '-v', 'ON_ERROR_STOP=0'], { env, stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-64_000)));
  const done = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
  let pending = '';
  for await (const chunk of sql as AsyncIterable<Buffer>) {
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    const kept = lines.filter((l) => !/^\s*(CREATE|ALTER|DROP) TABLESPACE /i.test(l));
    if (!child.stdin.write(`${kept.join('\n')}\n`)) await new Promise((r) => child.stdin.once('drain', r));
  }
  if (pending && !/^\s*(CREATE|ALTER|DROP) TABLESPACE /i.test(pending)) child.stdin.write(pending);
  child.stdin.end();
  const code = await done;
  const errors = stderr
    .split('\n')
    .filter((l) => /ERROR:/.test(l))
    .filter((l) => !new RegExp(`role "${server.user}" already exists`).test(l));
  if (code !== 0 && errors.length === 0) errors.push(`psql exited with ${code}: ${stderr.trim().split('\n').slice(-2).join(' ')}`);
  return { errors };
}
