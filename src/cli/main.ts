import { Command, CommanderError } from 'commander';
import { GlobalOptions, reportError } from './common';
import { registerAudit } from './audit';
import { registerChecklist } from './checklist';
import { registerBackup } from './backup';
import { registerBench } from './bench';
import { registerCodecServer } from './codecServer';
import { registerConfig } from './config';
import { registerDemo } from './demo';
import { registerDrill } from './drill';
import { registerEvidence } from './evidence';
import { registerReport } from './report';
import { registerLoadTest } from './loadtest';
import { registerGoLive } from './golive';
import { registerRollout } from './rollout';
import { registerRelease } from './release';
import { registerPromotion } from './promotion';
import { registerSchedule } from './schedule';
import { registerSmoke } from './smoke';
import { registerStack } from './stack';
import { registerTemporalConfig } from './temporalConfig';
import { registerWorker } from './worker';
import { runtimeInfo } from '../observability/runtime';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('runbook')
    .description('Production runbooks as durable Temporal workflows')
    .option('-c, --config <file>', 'config file (default: $RUNBOOK_CONFIG, ./runbook.yaml, or the local stack\'s)')
    .option('-e, --env <name>', 'environment from the config file (default: $RUNBOOK_ENV or defaultEnvironment)')
    .option('--json', 'machine-readable output')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  const globals = () => program.opts<GlobalOptions>();
  registerWorker(program, globals);
  registerStack(program, globals);
  registerConfig(program, globals);
  registerSmoke(program, globals);
  registerBackup(program, globals);
  registerDrill(program, globals);
  registerRollout(program, globals);
  registerRelease(program, globals);
  registerPromotion(program, globals);
  registerSchedule(program, globals);
  registerDemo(program, globals);
  registerCodecServer(program, globals);
  registerAudit(program, globals);
  registerChecklist(program, globals);
  registerBench(program, globals);
  registerLoadTest(program, globals);
  registerGoLive(program, globals);
  registerEvidence(program, globals);
  registerReport(program, globals);
  registerTemporalConfig(program, globals);
  program
    .command('version')
    .description('the release of runbook, and the Node.js and Temporal SDK it runs on')
    .action(() => {
      const info = runtimeInfo();
      if (globals().json) process.stdout.write(`${JSON.stringify(info)}\n`);
      else process.stdout.write(`runbook ${info.runbook} (Node.js ${info.node}, Temporal TypeScript SDK ${info.temporalSdk})\n`);
    });
  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are successes; every other parse error is bad usage.
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0 ? 0 : 2;
    }
    return reportError(err, Boolean(program.opts<GlobalOptions>().json));
  }
}

if (require.main === module) {
  main(process.argv).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`runbook: ${String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
