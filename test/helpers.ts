import { spawn, ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const REPO = join(__dirname, '..');
export const RUNBOOK_BIN = join(REPO, 'bin', 'runbook');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the runbook CLI as a user would, from the given directory. */
export function runCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(RUNBOOK_BIN, args, { cwd: opts.cwd ?? REPO, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`runbook ${args.join(' ')} did not finish in ${opts.timeoutMs ?? 120_000} ms\n${stdout}\n${stderr}`));
    }, opts.timeoutMs ?? 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Starts the CLI as a long-running process (a worker), collecting its output. */
export function startCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const child: ChildProcess = spawn(RUNBOOK_BIN, args, { cwd: opts.cwd ?? REPO, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  child.stdout!.on('data', (d) => (output.stdout += d));
  child.stderr!.on('data', (d) => (output.stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  return { child, output, exited };
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value !== undefined && value !== false) return value as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export async function httpStatus(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(3_000) });
  return { status: res.status, body: await res.text() };
}

/** Live (non-zombie) processes in a process group, read from /proc: the stack runs each service in its own group. */
export function processesInGroup(pgid: number): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const [state, , pgrp] = stat.slice(close + 2).split(' ');
      if (Number(pgrp) === pgid && state !== 'Z') found.push(`${entry} ${comm}`);
    } catch {
      /* the process ended while we looked */
    }
  }
  return found;
}

/** JSON log lines from a process's output. */
export function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        return {};
      }
    });
}

/** Metric names a rules or dashboard file refers to, without histogram suffixes. */
export function metricNames(text: string, prefix: string): string[] {
  const names = text.match(new RegExp(`\\b${prefix}[a-z0-9_]+`, 'g')) ?? [];
  return [...new Set(names.map((n) => n.replace(/_(bucket|sum|count)$/, '')))].sort();
}

/** The sandbox operator's key as the CLI signs with it (keys made by stack up). */
export function operator(stack: { dir: string }, who: 'sandbox-operator' | 'sandbox-reviewer' = 'sandbox-operator'): { keyFile: string; principal: string } {
  return { keyFile: join(stack.dir, 'keys', who), principal: who };
}

/**
 * Live processes whose environment carries RUNBOOK_TEST_TAG=tag: everything a command started with
 * that variable, however detached, and nothing another test file running at the same time started.
 */
export function taggedProcesses(tag: string): string[] {
  const found: string[] = [];
  const marker = `RUNBOOK_TEST_TAG=${tag}\0`;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      if (!readFileSync(`/proc/${entry}/environ`, 'utf8').includes(marker)) continue;
      found.push(`${entry} ${readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ').slice(0, 80)}`);
    } catch {
      /* the process ended while we looked */
    }
  }
  return found;
}

/**
 * The password of a sandbox PostgreSQL superuser, for a test's own setup and inspection (the stack's
 * config connects the runbooks as their least-privilege roles, never as the superuser).
 */
export function superuserPassword(stack: { dir: string }, secret: 'postgres-password' | 'temporal-postgres-password' | 'patroni-postgres-password' = 'postgres-password'): string {
  return readFileSync(join(stack.dir, 'secrets', secret), 'utf8').trim();
}
