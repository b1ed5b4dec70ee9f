import type { Command } from 'commander';
import { QUEUE_KINDS } from '../config/schema';
import { GlobalOptions, loadCliConfig, shown, UsageError } from './common';

export function registerWorker(program: Command, globals: () => GlobalOptions): void {
  program
    .command('worker')
    .description('run a worker for one environment: polls its task queues, serves /health, /ready and /metrics')
    .option('--queues <list>', 'comma-separated task queue kinds to serve: critical,standard,batch (default: all)')
    .option('--http-port <port>', 'port for /health, /ready, /metrics (default: worker.http.port, 9464)')
    .option('--load-generator', "be the environment's load generator only: run the loadTest runbook's phases and fault commands (task queue <batch>-load-generator), no runbook queue")
    .action(async (opts: { queues?: string; httpPort?: string; loadGenerator?: boolean }) => {
      const g = globals();
      let httpPort: number | undefined;
      if (opts.httpPort !== undefined) {
        httpPort = Number(opts.httpPort);
        if (!Number.isInteger(httpPort) || httpPort < 0 || httpPort > 65535) throw new UsageError(`--http-port: expected a port number 0-65535, found "${opts.httpPort}"`);
      }
      const loaded = loadCliConfig(g);
      const queues = opts.queues?.split(',').map((q) => q.trim()).filter(Boolean);
      const unknown = queues?.filter((q) => !(QUEUE_KINDS as readonly string[]).includes(q)) ?? [];
      if (queues && (queues.length === 0 || unknown.length > 0)) {
        throw new UsageError(`--queues: expected a comma-separated list of ${QUEUE_KINDS.join(', ')}, found ${shown(opts.queues!)}${unknown.length ? ` (unknown: ${unknown.map((q) => shown(q)).join(', ')})` : ''}`);
      }
      if (opts.loadGenerator && queues) throw new UsageError('--load-generator: a load generator serves no runbook queue; drop --queues (run production workers as processes of their own)');
      // Loaded here, not at the top: the worker SDK takes a second to load, which no other command needs.
      const { runWorkerUntilSignalled } = await import('../worker');
      const code = await runWorkerUntilSignalled({ loaded, environment: g.env ?? process.env.RUNBOOK_ENV, queues: opts.loadGenerator ? [] : queues, loadGenerator: opts.loadGenerator, httpPort });
      // Everything is drained and closed; exit now rather than wait on a stray handle (a client channel).
      process.exit(code);
    });
}
