import type { Command } from 'commander';
import type { WorkflowHandle } from '@temporalio/client';
import type { Attestation } from '../checklist/attestation';
import { ITEM_ID } from '../checklist/attestation';
import { checklistItem } from '../checklist/catalog';
import { parseDuration } from '../config/duration';
import { coverageText, ReadinessReport, trendText } from '../reports/audit';
import { ATTESTATION_GATE, attestUpdate, auditStatusQuery, closeAttestationsSignal, ReadinessAuditResult } from '../workflows/readinessAudit';
import { resolveSigner, runIdOf, signAct, Signer } from './sign';
import { ConnectedClient, failureMessage, startRunbook } from './client';
import { GlobalOptions, parseWorkflowId, printJson, shown, UsageError, withClient } from './common';
import { waitWithProgress } from './progress';

export interface AuditOptions {
  waitForAttestationsSeconds?: number;
  checkTimeoutSeconds?: number;
  certificateMinDays?: number;
  attest?: { item: string; signer: Signer; comment: string; validForDays?: number };
}

export interface AuditOutcome {
  ok: boolean;
  workflowId: string;
  attestation?: Attestation;
  attestationRefused?: string;
  report?: ReadinessAuditResult;
  error?: string;
}

/** Waits until the audit has read who may attest (attestations sent earlier would be refused). */
async function waitUntilAttestable(handle: WorkflowHandle, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const status = await handle.query(auditStatusQuery).catch(() => undefined);
    if (status?.approvers) return;
    if ((await handle.describe()).status.name !== 'RUNNING') throw new Error(`audit ${handle.workflowId} ended before it accepted attestations: ${failureMessage(await handle.result().then(() => 'completed', (e: unknown) => e))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`audit ${handle.workflowId} did not accept attestations within ${timeoutMs} ms (is a worker polling the standard queue?)`);
}

/** Signs an attestation bound to this audit run and records it through the update, so a refusal (unknown item, key or approver) comes back at once. */
export async function attest(c: ConnectedClient, handle: WorkflowHandle, request: NonNullable<AuditOptions['attest']>): Promise<Attestation> {
  const signed = await signAct(c, request.signer, { runbook: 'readinessAudit', workflowId: handle.workflowId, runId: await runIdOf(handle), gate: ATTESTATION_GATE, act: 'attest', item: request.item, reason: request.comment, validForDays: request.validForDays });
  try {
    return await handle.executeUpdate(attestUpdate, { args: [signed] });
  } catch (err) {
    const cause = (err as { cause?: Error }).cause;
    throw new UsageError(`attestation refused: ${cause?.message ?? (err as Error).message}`);
  }
}

/**
 * Starts a readiness audit and waits for its report. With an attestation, the audit is held open
 * until the attestation is recorded (or refused), then closed unless asked to wait for others.
 */
export async function runAudit(c: ConnectedClient, opts: AuditOptions, showProgress: boolean): Promise<AuditOutcome> {
  const wait = opts.waitForAttestationsSeconds ?? 0;
  const { handle, workflowId } = await startRunbook(
    c,
    'readinessAudit',
    [{ environment: c.environment, waitForAttestationsSeconds: opts.attest ? Math.max(wait, 300) : wait, checkTimeoutSeconds: opts.checkTimeoutSeconds, certificateMinDays: opts.certificateMinDays }],
    {},
  );
  if (showProgress) process.stderr.write(`audit started: workflow ${workflowId}\n`);
  const outcome: AuditOutcome = { ok: false, workflowId };
  if (opts.attest) {
    try {
      await waitUntilAttestable(handle);
      outcome.attestation = await attest(c, handle, opts.attest);
    } catch (err) {
      outcome.attestationRefused = (err as Error).message;
    }
    if (wait === 0) await handle.signal(closeAttestationsSignal, { by: opts.attest.signer.principal });
  }
  try {
    outcome.report = await waitWithProgress<ReadinessAuditResult>(handle, showProgress);
    outcome.ok = outcome.report.ready && !outcome.attestationRefused;
  } catch (err) {
    outcome.error = failureMessage(err);
  }
  return outcome;
}

const pct = (x: number) => `${Math.round(x * 100)}%`;

export function describeAudit(o: AuditOutcome): string {
  const lines: string[] = [];
  if (o.attestation) lines.push(`attested ${o.attestation.item} by ${o.attestation.by} (key ${o.attestation.fingerprint}) at ${o.attestation.at}, valid until ${o.attestation.expiresAt}`);
  if (o.attestationRefused) lines.push(o.attestationRefused);
  const r: ReadinessReport | undefined = o.report;
  if (!r) return [...lines, `audit FAILED (workflow ${o.workflowId}): ${o.error}`].join('\n');
  const proved = r.counts.pass + r.counts.attested;
  const total = proved + r.counts.fail + r.counts.unknown;
  lines.push(`Readiness audit of ${r.environment}: ${pct(r.score)} (${proved} of ${total} items pass or are attested); ${r.ready ? 'READY' : `NOT READY: ${r.blocking.length} critical item${r.blocking.length === 1 ? '' : 's'} not proved`} (workflow ${o.workflowId})`);
  if (r.coverage) lines.push(`coverage: ${coverageText(r.coverage)}`);
  if (r.trend?.length) lines.push(`score trend: ${trendText(r.trend)}`);
  const width = Math.max(...r.sections.map((s) => s.name.length));
  for (const s of r.sections) lines.push(`  ${s.name.padEnd(width)}  ${pct(s.score).padStart(4)}  pass ${s.counts.pass}, fail ${s.counts.fail}, attested ${s.counts.attested}, unknown ${s.counts.unknown}`);
  if (r.blocking.length) {
    lines.push('critical items not proved:');
    for (const b of r.blocking) lines.push(`  ${b.id} (${b.status}): ${b.summary}`);
  }
  const failing = r.sections.flatMap((s) => s.items).filter((i) => i.status === 'fail' && i.severity !== 'critical');
  if (failing.length) {
    lines.push('other failing items:');
    for (const i of failing) lines.push(`  ${i.id}: ${i.summary}`);
  }
  if (o.report?.reportKeys.length) lines.push(`report: ${o.report.reportKeys.join(', ')}`);
  return lines.join('\n');
}

function parseWait(text: string): number {
  const ms = /^\d+$/.test(text) ? Number(text) * 1000 : parseDuration(text);
  if (text === '0') return 0;
  if (ms === undefined || ms > 7 * 86_400_000) throw new UsageError(`--wait-attestations: expected a duration up to 7d such as 10m or 600 (seconds), found ${shown(text)}`);
  return Math.round(ms / 1000);
}

function parseNumber(text: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`${flag}: expected a number from ${min} to ${max}, found ${shown(text)}`);
  return n;
}

export function registerAudit(program: Command, globals: () => GlobalOptions): void {
  program
    .command('audit')
    .description('readiness audit: every checklist item proved by a check, a recent runbook run or an attestation; report by section with a score')
    .option('--wait-attestations <duration>', 'wait up to this long (10m, 1h) for attestations of items nobody has vouched for', '0')
    .option('--attest <item>', 'vouch for a checklist item (e.g. on-call-rotation) in this audit')
    .option('--comment <text>', 'what you checked (required with --attest)')
    .option('--key <file>', 'your SSH key that signs the attestation (default: $RUNBOOK_SIGNING_KEY, then signing.key in the config)')
    .option('--by <principal>', "the principal your key is listed for (default: the allowed signers' entry for the key); must be an approver")
    .option('--valid-for <days>', "how long the attestation counts (at most the item's own limit)")
    .option('--workflow <id>', 'attest into an audit that is already running (waiting for attestations) instead of starting one')
    .option('--check-timeout <seconds>', 'each check reports unknown after this long', '10')
    .option('--certificate-min-days <days>', 'a TLS certificate expiring within this many days fails', '30')
    .action(async (opts: { waitAttestations: string; attest?: string; comment?: string; key?: string; by?: string; validFor?: string; workflow?: string; checkTimeout: string; certificateMinDays: string }) => {
      const g = globals();
      const options: AuditOptions = {
        waitForAttestationsSeconds: parseWait(opts.waitAttestations),
        checkTimeoutSeconds: parseNumber(opts.checkTimeout, '--check-timeout', 1, 120),
        certificateMinDays: parseNumber(opts.certificateMinDays, '--certificate-min-days', 0, 365),
      };
      if (opts.attest !== undefined) {
        if (!ITEM_ID.test(opts.attest) || !checklistItem(opts.attest)) throw new UsageError(`--attest: ${shown(opts.attest)} is not a checklist item id (see docs/production-checklist.md and src/checklist/catalog.ts)`);
        if (!opts.comment || opts.comment.trim() === '') throw new UsageError('--comment: say what you checked when you attest');
        if (opts.comment.length > 1000) throw new UsageError(`--comment: expected text of at most 1000 characters, found ${opts.comment.length} characters`);
        options.attest = { item: opts.attest, signer: undefined as unknown as Signer, comment: opts.comment, validForDays: parseNumber(opts.validFor, '--valid-for', 1, 366) };
      } else if (opts.comment !== undefined || opts.validFor !== undefined || opts.workflow !== undefined) {
        throw new UsageError('--comment, --valid-for and --workflow go with --attest ITEM');
      }

      await withClient(g, async (c) => {
        if (options.attest) options.attest.signer = resolveSigner(c, opts);
        if (opts.workflow !== undefined) {
          const handle = c.client.workflow.getHandle(parseWorkflowId(opts.workflow));
          const a = await attest(c, handle, options.attest!);
          if (g.json) printJson({ ok: true, workflowId: handle.workflowId, attestation: a });
          else process.stdout.write(`attested ${a.item} by ${a.by} at ${a.at}, valid until ${a.expiresAt} (audit ${handle.workflowId})\n`);
          return;
        }
        const outcome = await runAudit(c, options, !g.json);
        if (g.json) printJson(outcome);
        else process.stdout.write(`${describeAudit(outcome)}\n`);
        // A refused attestation is bad input (2); otherwise 0 only when every critical item is proved.
        process.exitCode = outcome.attestationRefused ? 2 : outcome.ok ? 0 : 1;
      });
    });
}
