import type { Command } from 'commander';
import { createS3Client, ObjectStore } from '../activities/s3';
import { EvidenceRecord, evidencePrefix, readChain, verifyChain } from '../evidence/log';
import { parseStatement, SIGNATURE_NAMESPACE } from '../identity/statement';
import { fingerprint, verifySignature } from '../identity/sshsig';
import { cliEnvironment, GlobalOptions, loadCliConfig, printJson, shown, UsageError } from './common';

function storeFor(g: GlobalOptions): { store: ObjectStore; prefix: string; environment: string } {
  const loaded = loadCliConfig(g);
  const { name, env } = cliEnvironment(loaded, g);
  if (!env.backups) throw new UsageError(`environment ${name} has no backups: section; the evidence log lives in the backup bucket`);
  return { store: new ObjectStore(createS3Client(loaded, env.backups), env.backups.bucket), prefix: evidencePrefix(env.backups.prefix, name), environment: name };
}

export interface DecisionRow {
  at: string;
  runbook: string;
  workflowId: string;
  runId: string;
  act: string;
  principal: string;
  fingerprint: string;
  gate: string;
  reason: string;
  /** The signature checked again now, over the statement kept in the log. */
  verified: boolean;
  problem?: string;
  outcome?: string;
  statement: string;
}

/** The decisions in the log, each signature verified again, joined with its run's outcome. */
export function decisionRows(records: EvidenceRecord[]): DecisionRow[] {
  const outcomes = new Map(records.filter((r) => r.kind === 'outcome').map((r) => [r.runId, `${r.outcome}${r.summary ? `: ${r.summary}` : ''}`]));
  return records
    .filter((r) => r.kind === 'decision')
    .map((r) => {
      let verified = false;
      let problem: string | undefined;
      let reason = '';
      let fp = r.fingerprint ?? '';
      try {
        const sig = verifySignature(r.signature ?? '', r.statement ?? '', SIGNATURE_NAMESPACE);
        const s = parseStatement(r.statement ?? '');
        reason = s.reason;
        fp = fingerprint(sig.publicKey);
        verified = s.by === r.principal && fp === r.fingerprint;
        if (!verified) problem = 'the record names another principal or key than the signed statement';
      } catch (err) {
        problem = (err as Error).message;
      }
      return { at: r.at, runbook: r.runbook, workflowId: r.workflowId, runId: r.runId, act: r.act ?? '', principal: r.principal ?? '', fingerprint: fp, gate: r.gate ?? '', reason, verified, problem, outcome: outcomes.get(r.runId), statement: r.statement ?? '' };
    });
}

const csvCell = (v: unknown) => {
  const t = String(v ?? '');
  return /[",\n\r]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
};

export function registerEvidence(program: Command, globals: () => GlobalOptions): void {
  program
    .command('decisions')
    .description('every signed decision in the evidence log (S3), with verified principal, key fingerprint, statement and the run\'s outcome')
    .option('--since <date>', 'only decisions at or after this date (2026-01-01 or an ISO time)')
    .option('--runbook <name>', 'only decisions on runs of this runbook')
    .option('--csv', 'CSV instead of text')
    .action(async (opts: { since?: string; runbook?: string; csv?: boolean }) => {
      const g = globals();
      const since = opts.since === undefined ? undefined : Date.parse(opts.since);
      if (since !== undefined && !Number.isFinite(since)) throw new UsageError(`--since: expected a date such as 2026-01-01, found ${shown(opts.since!)}`);
      if (opts.runbook !== undefined && !/^[A-Za-z]{1,40}$/.test(opts.runbook)) throw new UsageError(`--runbook: expected a runbook name such as drDrill, found ${shown(opts.runbook)}`);
      const { store, prefix } = storeFor(g);
      const rows = decisionRows((await readChain(store, prefix)).map((x) => x.record)).filter((r) => (since === undefined || Date.parse(r.at) >= since) && (!opts.runbook || r.runbook === opts.runbook));
      if (g.json) return printJson({ ok: true, decisions: rows });
      if (opts.csv) {
        const cols = ['at', 'runbook', 'workflowId', 'runId', 'gate', 'act', 'principal', 'fingerprint', 'verified', 'reason', 'outcome', 'statement'] as const;
        process.stdout.write(`${cols.join(',')}\n${rows.map((r) => cols.map((c) => csvCell(r[c])).join(',')).join('\n')}${rows.length ? '\n' : ''}`);
        return;
      }
      if (rows.length === 0) {
        process.stdout.write('no decisions in the evidence log\n');
        return;
      }
      for (const r of rows) {
        process.stdout.write(`${r.at}  ${r.runbook} ${r.workflowId}  ${r.act}${r.gate ? ` (${r.gate})` : ''} by ${r.principal} ${r.fingerprint} ${r.verified ? 'verified' : `NOT VERIFIED: ${r.problem}`}${r.reason ? `  "${r.reason}"` : ''}${r.outcome ? `  -> ${r.outcome}` : ''}\n`);
      }
    });

  program
    .command('evidence')
    .description('the evidence log of signed decisions and run outcomes')
    .command('verify')
    .description('check the hash chain of the evidence log: numbering, every record\'s hash, every link (exit 1 if broken)')
    .action(async () => {
      const g = globals();
      const { store, prefix, environment } = storeFor(g);
      const result = verifyChain(await readChain(store, prefix));
      if (g.json) printJson({ ...result, environment, prefix });
      else process.stdout.write(result.ok ? `evidence log of ${environment} intact: ${result.checked} record(s) chained\n` : `evidence log of ${environment} BROKEN (${result.checked} record(s)):\n${result.problems.map((p) => `  ${p}`).join('\n')}\n`);
      process.exitCode = result.ok ? 0 : 1;
    });
}
