/**
 * `runbook checklist`: the production checklist as the readiness audit proves it, item by item, read
 * from the catalog alone (no config, no server): its id, section, severity, and how it is proved.
 */
import type { Command } from 'commander';
import { CHECKLIST, ChecklistItem, DEFAULT_RPO_WINDOW_MS, Proof, RUN_REQUIREMENTS, SECTIONS, Severity } from '../checklist/catalog';
import { GlobalOptions, printJson, shown, UsageError } from './common';

const PROOF_KINDS = ['automated', 'runbook', 'attested'] as const;
const SEVERITIES: Severity[] = ['critical', 'high', 'normal'];

/** How an item is proved, in words. */
export function describeProof(p: Proof): string {
  if (p.kind === 'automated') return `${p.checks.length === 1 ? 'check' : 'checks'} ${p.checks.join(', ')}`;
  if (p.kind === 'runbook') {
    const window = p.within === 'rpo' ? `within the environment's RPO (${DEFAULT_RPO_WINDOW_MS / 3_600_000} h without one)` : `within ${p.within.days} days`;
    return `a completed ${p.runbook} run ${window}${p.requires ? ` ${RUN_REQUIREMENTS[p.requires]}` : ''}`;
  }
  return `attested by an approver, valid ${p.validForDays} days`;
}

/** Items per proof kind, over the given items. */
export function coverage(items: readonly ChecklistItem[]): { items: number; automated: number; runbook: number; attested: number } {
  const count = (k: Proof['kind']) => items.filter((i) => i.proof.kind === k).length;
  return { items: items.length, automated: count('automated'), runbook: count('runbook'), attested: count('attested') };
}

export function registerChecklist(program: Command, globals: () => GlobalOptions): void {
  program
    .command('checklist')
    .description('list every production checklist item with its section, severity and how the readiness audit proves it (no server needed)')
    .option('--section <name>', `only this section (${SECTIONS.join('; ')})`)
    .option('--proof <kind>', 'only items proved this way: automated, runbook or attested')
    .option('--severity <level>', 'only items of this severity: critical, high or normal')
    .action((opts: { section?: string; proof?: string; severity?: string }) => {
      const g = globals();
      if (opts.proof !== undefined && !(PROOF_KINDS as readonly string[]).includes(opts.proof)) {
        throw new UsageError(`--proof: ${shown(opts.proof)} is not a proof kind; use automated, runbook or attested`);
      }
      if (opts.severity !== undefined && !(SEVERITIES as string[]).includes(opts.severity)) {
        throw new UsageError(`--severity: ${shown(opts.severity)} is not a severity; use critical, high or normal`);
      }
      const section = opts.section === undefined ? undefined : SECTIONS.find((s) => s.toLowerCase() === opts.section!.trim().toLowerCase());
      if (opts.section !== undefined && !section) throw new UsageError(`--section: ${shown(opts.section)} is not a checklist section; sections: ${SECTIONS.join('; ')}`);
      const items = CHECKLIST.filter((i) => (!section || i.section === section) && (!opts.proof || i.proof.kind === opts.proof) && (!opts.severity || i.severity === opts.severity));
      const totals = coverage(items);
      if (g.json) {
        printJson({
          items: items.map((i) => ({ id: i.id, section: i.section, subsection: i.subsection, title: i.title, text: i.text, severity: i.severity, proof: i.proof, provedBy: describeProof(i.proof) })),
          coverage: totals,
        });
        return;
      }
      let heading = '';
      for (const i of items) {
        const h = `${i.section} / ${i.subsection}`;
        if (h !== heading) process.stdout.write(`${heading ? '\n' : ''}${h}\n`);
        heading = h;
        process.stdout.write(`  ${i.id.padEnd(34)} ${i.severity.padEnd(8)} ${describeProof(i.proof)}\n`);
      }
      process.stdout.write(`\n${totals.items} items: ${totals.automated} proved by automated checks, ${totals.runbook} by runbook runs, ${totals.attested} by attestation\n`);
    });
}
