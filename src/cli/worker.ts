import type { Command } from 'commander';
import { runWorkerUntilSignalled } from '../worker';
import { GlobalOptions, loadCliConfig, UsageError } from './common';

export function registerWorker(program: Command, globals: () => GlobalOptions): void {
  program
    .command('worker')
    .description('run a worker for one environment: polls its task queues, serves /health, /ready and /metrics')
    .option('--queues <list>', 'comma-separated task queue kinds to serve: critical,standard,batch (default: all)')
    .option('--http-port <port>', 'port for /health, /ready, /metrics (default: worker.http.port, 9464)')
    .action(async (opts: { queues?: string; httpPort?: string }) => {
      const g = globals();
      let httpPort: number | undefined;
      if (opts.httpPort !== undefined) {
        httpPort = Number(opts.httpPort);
        if (!Number.isInteger(httpPort) || httpPort < 0 || httpPort > 65535) throw new UsageError(`--http-port: expected a port number 0-65535, found "${opts.httpPort}"`);
      }
      const loaded = loadCliConfig(g);
      const queues = opts.queues?.split(',').map((q) => q.trim()).filter(Boolean);
      const code = await runWorkerUntilSignalled({ loaded, environment: g.env ?? process.env.RUNBOOK_ENV, queues, httpPort });
      // Everything is drained and closed; exit now rather than wait on a stray handle (a client channel).
      process.exit(code);
    });
}
