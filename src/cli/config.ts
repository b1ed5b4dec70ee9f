import type { Command } from 'commander';
import { checkSecretRefs, loadConfig } from '../config/load';
import { formatDuration } from '../config/duration';
import { GlobalOptions, printJson, shown, UsageError } from './common';

export function registerConfig(program: Command, globals: () => GlobalOptions): void {
  const config = program.command('config').description('configuration files');
  config
    .command('check <file>')
    .description('validate a config file: structure, durations, references between sections, and that secret references resolve here')
    .option('--no-secrets', 'skip checking that env:/file: secret references resolve on this machine')
    .action((file: string, opts: { secrets: boolean }) => {
      const g = globals();
      const loaded = loadConfig(file);
      const names = g.env ? [g.env] : Object.keys(loaded.config.environments);
      for (const name of names) {
        if (!(name in loaded.config.environments)) {
          throw new UsageError(`--env: unknown environment ${shown(name)}; defined: ${Object.keys(loaded.config.environments).join(', ')}`);
        }
      }
      if (opts.secrets) checkSecretRefs(loaded, names);
      const summary = names.map((name) => {
        const env = loaded.config.environments[name];
        return {
          environment: name,
          temporal: env.temporal.address,
          namespace: env.temporal.namespace,
          databases: Object.keys(env.databases),
          backups: env.backups ? `s3://${env.backups.bucket}/${env.backups.prefix}` : undefined,
          dns: env.dns ? `${env.dns.provider} ${env.dns.zone}` : undefined,
          rpo: env.targets.rpo !== undefined ? formatDuration(env.targets.rpo) : undefined,
          rto: env.targets.rto !== undefined ? formatDuration(env.targets.rto) : undefined,
        };
      });
      if (g.json) printJson({ ok: true, file, environments: summary, schedules: loaded.config.schedules.length });
      else {
        process.stdout.write(`${file}: ok (${names.length} environment${names.length === 1 ? '' : 's'}, ${loaded.config.schedules.length} schedules)\n`);
        for (const s of summary) {
          process.stdout.write(`  ${s.environment}: temporal ${s.temporal}/${s.namespace}; databases: ${s.databases.join(', ') || 'none'}; backups: ${s.backups ?? 'none'}; dns: ${s.dns ?? 'none'}; RPO ${s.rpo ?? '-'} RTO ${s.rto ?? '-'}\n`);
        }
      }
    });
}
