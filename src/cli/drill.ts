import type { Command } from 'commander';
import { WorkflowFailedError, WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { DrillReport } from '../reports/drill';
import { MAX_WRITE_LOAD_RATE, type DrDrillResult } from '../workflows/drDrill';
import { parseDuration } from '../config/duration';
import { abortRunUpdate, GateRecord, gatesQuery } from '../workflows/lib/gate';
import type { SignedAct } from '../identity/policy';
import { timelineQuery } from '../workflows/lib/timeline';
import { ConnectedClient, failureMessage, newWorkflowId, startRunbook } from './client';
import { decideGate, resolveSigner, runIdOf, signAct, Signer, signStart } from './sign';
import { GlobalOptions, parseWorkflowId, printJson, shown, UsageError, withClient } from './common';
import { waitWithProgress } from './progress';
import { checkPlanFlags, MARKDOWN_HELP, PLAN_FLAG, PLAN_HELP, printPlan, runPlan } from './plan';
import { renderTimeline } from './render';

export interface DrillOutcome {
  ok: boolean;
  workflowId: string;
  report?: DrillReport & { reportKeys?: string[] };
  error?: string;
}

const secs = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`);

export function describeDrill(o: DrillOutcome): string {
  const r = o.report;
  if (!r) return `drill FAILED (workflow ${o.workflowId}): ${o.error}`;
  const lines = [
    `DR drill ${r.passed ? 'passed' : 'FAILED'}: ${r.environment}/${r.database} ${r.mode} (workflow ${o.workflowId})`,
    `  primary ${r.primaryBefore ?? '-'} -> ${r.primaryAfter ?? '-'}; approved by ${r.approval?.by ?? '-'}`,
    `  RTO ${secs(r.rto?.ms)} (target ${secs(r.rto?.targetMs)}), RPO ${secs(r.rpo?.ms)} (target ${secs(r.rpo?.targetMs)}), marker ${r.rpo ? (r.rpo.markerPresent ? 'present' : 'LOST') : '-'}`,
  ];
  if (r.driver) lines.push(`  driver ${r.driver}; service endpoint ${r.serviceEndpoint ?? '-'}`);
  const sp = r.rto?.split;
  if (sp) lines.push(`  RTO split: detection ${secs(sp.detectionMs)}${r.rto?.detectionBoundMs !== undefined ? ` (bound ${secs(r.rto.detectionBoundMs)})` : ''}, promotion ${secs(sp.promotionMs)}, endpoint ${secs(sp.endpointMs)}, first write ${secs(sp.firstWriteMs)}`);
  const w = r.rpo?.writes;
  if (w) lines.push(`  writes: ${w.acknowledged} acknowledged at ${w.rate}/s, ${w.lost} lost (${r.rpo?.synchronousMode ? 'synchronous' : 'asynchronous'} replication), ${r.rpo?.lostBytes ?? 0} bytes of WAL`);
  if (r.failback) {
    lines.push(`  failback: ${'skipped' in r.failback ? `skipped (${r.failback.skipped})` : `${r.failback.method}, replica streaming`}`);
    if ('keptAside' in r.failback && r.failback.keptAside) lines.push(`  the old data directory was kept at ${r.failback.keptAside.path} (last checkpoint ${r.failback.keptAside.lastLsn ?? '?'}, timeline ${r.failback.keptAside.timeline ?? '?'})`);
  }
  for (const c of r.compensation) lines.push(`  compensation: ${c.name}: ${c.ok ? 'done' : `FAILED (${c.error})`}`);
  for (const reason of r.reasons) lines.push(`  reason: ${reason}`);
  if (r.reportKeys?.length) lines.push(`  report: ${r.reportKeys.join(', ')}`);
  return lines.join('\n');
}

/** Waits for a drill, turning a failure that carries the drill report into an outcome with it. */
export async function awaitDrill(handle: WorkflowHandle, workflowId: string, showProgress: boolean): Promise<DrillOutcome> {
  try {
    const result = await waitWithProgress<DrDrillResult>(handle, showProgress);
    return { ok: true, workflowId, report: result };
  } catch (err) {
    const cause = err instanceof WorkflowFailedError ? err.cause : undefined;
    const report = cause instanceof ApplicationFailure ? (cause.details?.[0] as DrillReport | undefined) : undefined;
    return { ok: false, workflowId, report, error: failureMessage(err) };
  }
}

export interface DrillStartOptions {
  database: string;
  mode: 'failover' | 'switchover';
  failback: boolean;
  switchBack?: boolean;
  approvalTimeoutSeconds?: number;
  requireRestoreTestWithinDays?: number;
  writeLoad?: { rate: number; warmupSeconds?: number };
  targets?: { rpoMs?: number; rtoMs?: number };
}

/** A drill's input as the workflow takes it (unsigned), after the CLI's own checks against the config. */
export function drillInput(c: ConnectedClient, opts: DrillStartOptions): Record<string, unknown> {
  const db = c.env.databases[opts.database];
  if (!db) throw new UsageError(`--database: ${shown(opts.database)} is not configured for environment ${c.environment}; configured: ${Object.keys(c.env.databases).join(', ') || 'none'}`);
  if (!db.topology) throw new UsageError(`databases.${opts.database}.topology is not configured: the drill needs the cluster it acts on (driver local or patroni)`);
  return JSON.parse(
    JSON.stringify({
      environment: c.environment,
      database: opts.database,
      mode: opts.mode,
      failback: opts.failback,
      switchBack: opts.switchBack,
      approvalTimeoutSeconds: opts.approvalTimeoutSeconds,
      requireRestoreTestWithinDays: opts.requireRestoreTestWithinDays,
      writeLoad: opts.writeLoad,
      targets: opts.targets,
    }),
  );
}

/** Starts a drill with the requester's signed start statement (bound to the workflow id and the input). */
export async function startDrill(c: ConnectedClient, opts: DrillStartOptions & { signer: Signer; reason?: string }) {
  const input = drillInput(c, opts);
  const workflowId = newWorkflowId('drDrill', c.environment);
  input.start = await signStart(c, opts.signer, 'drDrill', workflowId, input, opts.reason);
  return startRunbook(c, 'drDrill', [input], { workflowId });
}

/** A target duration from the command line: 0 (nothing may be lost) or a duration such as 30s or 5m. */
function parseTarget(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (/^0(ms|s|m|h)?$/.test(text.trim())) return 0;
  const ms = parseDuration(text);
  if (ms === undefined) throw new UsageError(`${flag}: expected 0 or a duration such as 30s or 5m, found ${shown(text)}`);
  return ms;
}

/** Waits until a run's approval gate is open; returns early if the run ends first (e.g. in preflight). */
export async function waitForOpenGate(handle: WorkflowHandle, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const gates = await handle.query(gatesQuery).catch(() => []);
    if (gates.some((g) => g.outcome === 'waiting')) return;
    if ((await handle.describe()).status.name !== 'RUNNING') return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no approval gate opened in ${handle.workflowId} within ${timeoutMs} ms`);
}

/** Decides the open gate through the update with a signed statement, so a refusal (unsigned, unknown key, not an approver, no gate open) comes back at once. */
export async function decideDrill(c: ConnectedClient, workflowId: string, decision: 'approve' | 'reject', signer: Signer, reason?: string): Promise<GateRecord> {
  return decideGate(c, c.client.workflow.getHandle(workflowId), 'drDrill', decision, signer, reason);
}

/** A signed abort of any gated run (act abort, gate run), refused at once unless the signer may abort. */
export async function abortRun(c: ConnectedClient, runbook: string, workflowId: string, signer: Signer, reason?: string): Promise<SignedAct> {
  const handle = c.client.workflow.getHandle(workflowId);
  const signed = await signAct(c, signer, { runbook, workflowId, runId: await runIdOf(handle), gate: 'run', act: 'abort', reason });
  try {
    return await handle.executeUpdate(abortRunUpdate, { args: [signed] });
  } catch (err) {
    const cause = (err as { cause?: Error }).cause;
    throw new UsageError(`abort refused: ${cause?.message ?? (err as Error).message}`);
  }
}

function reasonOf(reason: string | undefined): string | undefined {
  if (reason !== undefined && reason.length > 1000) throw new UsageError(`--reason: expected text of at most 1000 characters, found ${reason.length} characters`);
  return reason;
}

export function registerDrill(program: Command, globals: () => GlobalOptions): void {
  const drill = program.command('drill').description('disaster-recovery drills: real failover, DNS switch, measured RTO/RPO, failback');
  const withDrillClient = <T>(fn: (c: ConnectedClient, g: GlobalOptions) => Promise<T>): Promise<T> => {
    const g = globals();
    return withClient(g, (c) => fn(c, g));
  };

  drill
    .command('start')
    .description('start a drill; it waits at the approval gate for an allowed approver')
    .option('--database <key>', 'database key from the config', 'main')
    .option('--mode <mode>', 'failover (the primary is lost) or switchover (planned)', 'failover')
    .option('--no-failback', 'leave the former primary stopped instead of rejoining it as a replica')
    .option('--switch-back', 'after failback, make the original primary lead again and point the service name back')
    .option('--approval-timeout <seconds>', 'end the drill unchanged if nobody decides within this time', '3600')
    .option('--require-restore-test-within <days>', 'preflight also requires a restore test that passed within this many days')
    .option('--write-load <rate>', `write numbered rows through the service endpoint at RATE per second (1-${MAX_WRITE_LOAD_RATE}) during the drill; the acknowledged rows lost are the RPO`)
    .option('--warmup <seconds>', 'how long the write load runs before the fault', '3')
    .option('--rpo-target <duration>', 'this drill\'s RPO target instead of targets.rpo: 0 (no acknowledged write may be lost) or a duration')
    .option('--rto-target <duration>', 'this drill\'s RTO target instead of targets.rto, e.g. 60s')
    .option('--key <file>', 'your SSH key that signs the start (default: $RUNBOOK_SIGNING_KEY, then signing.key in the config)')
    .option('--by <principal>', 'the principal your key is listed for (default: the allowed signers\' entry for the key)')
    .option('--reason <text>', 'why, for the record (signed)')
    .option('--wait', 'wait for the drill to finish, showing progress (exit 0 only if it passed)')
    .option(PLAN_FLAG, PLAN_HELP)
    .option('--markdown', MARKDOWN_HELP)
    .action(async (opts: { database: string; mode: string; failback: boolean; switchBack?: boolean; approvalTimeout: string; requireRestoreTestWithin?: string; writeLoad?: string; warmup: string; rpoTarget?: string; rtoTarget?: string; key?: string; by?: string; reason?: string; wait?: boolean; plan?: boolean; markdown?: boolean }) => {
      checkPlanFlags(opts);
      if (opts.switchBack && !opts.failback) throw new UsageError('--switch-back needs failback: drop --no-failback');
      const days = opts.requireRestoreTestWithin === undefined ? undefined : Number(opts.requireRestoreTestWithin);
      if (days !== undefined && (!Number.isFinite(days) || days <= 0 || days > 366)) throw new UsageError(`--require-restore-test-within: expected days from 1 to 366, found ${shown(opts.requireRestoreTestWithin!)}`);
      if (opts.mode !== 'failover' && opts.mode !== 'switchover') throw new UsageError(`--mode: expected failover or switchover, found ${shown(opts.mode)}`);
      const timeout = Number(opts.approvalTimeout);
      if (!Number.isInteger(timeout) || timeout < 1 || timeout > 604_800) throw new UsageError(`--approval-timeout: expected seconds from 1 to 604800, found ${shown(opts.approvalTimeout)}`);
      const rate = opts.writeLoad === undefined ? undefined : Number(opts.writeLoad);
      if (rate !== undefined && (!Number.isFinite(rate) || rate < 1 || rate > MAX_WRITE_LOAD_RATE)) throw new UsageError(`--write-load: expected rows per second from 1 to ${MAX_WRITE_LOAD_RATE}, found ${shown(opts.writeLoad!)}`);
      const warmup = Number(opts.warmup);
      if (!Number.isFinite(warmup) || warmup < 0 || warmup > 600) throw new UsageError(`--warmup: expected seconds from 0 to 600, found ${shown(opts.warmup)}`);
      const rpoMs = parseTarget('--rpo-target', opts.rpoTarget);
      const rtoMs = parseTarget('--rto-target', opts.rtoTarget);
      if (rtoMs === 0) throw new UsageError('--rto-target: expected a duration such as 60s; an RTO of 0 cannot be met');
      const targets = rpoMs === undefined && rtoMs === undefined ? undefined : { rpoMs, rtoMs };
      await withDrillClient(async (c, g) => {
        const start: DrillStartOptions = {
          database: opts.database,
          mode: opts.mode as 'failover' | 'switchover',
          failback: opts.failback,
          switchBack: opts.switchBack,
          approvalTimeoutSeconds: timeout,
          requireRestoreTestWithinDays: days,
          writeLoad: rate === undefined ? undefined : { rate, warmupSeconds: warmup },
          targets,
        };
        if (opts.plan) return printPlan(await runPlan(c, 'drDrill', drillInput(c, start)), { json: g.json, markdown: opts.markdown });
        const signer = resolveSigner(c, opts);
        const { handle, workflowId } = await startDrill(c, { ...start, signer, reason: reasonOf(opts.reason) });
        if (!g.json) process.stderr.write(`drill started by ${signer.principal}: workflow ${workflowId}\napprove with: runbook drill approve ${workflowId} --key YOUR_KEY\n`);
        if (!opts.wait) return g.json ? printJson({ ok: true, workflowId }) : process.stdout.write(`${workflowId}\n`);
        const outcome = await awaitDrill(handle, workflowId, !g.json);
        if (g.json) printJson(outcome);
        else process.stdout.write(`${describeDrill(outcome)}\n`);
        process.exitCode = outcome.ok ? 0 : 1;
      });
    });

  for (const decision of ['approve', 'reject'] as const) {
    drill
      .command(`${decision} <workflowId>`)
      .description(`${decision} a drill waiting at its gate with your signed decision (refused at once unless your key is allowed and you are an approver)`)
      .option('--key <file>', 'your SSH key (default: $RUNBOOK_SIGNING_KEY, then signing.key in the config)')
      .option('--by <principal>', 'the principal your key is listed for (default: the allowed signers\' entry for the key)')
      .option('--reason <text>', 'why, for the record (signed)')
      .action(async (id: string, opts: { key?: string; by?: string; reason?: string }) => {
        const workflowId = parseWorkflowId(id);
        const reason = reasonOf(opts.reason);
        await withDrillClient(async (c, g) => {
          const gate = await decideDrill(c, workflowId, decision, resolveSigner(c, opts), reason);
          if (g.json) printJson({ ok: true, gate });
          else process.stdout.write(gate.outcome === 'waiting' ? `approval by ${gate.by} (key ${gate.fingerprint}) counted: ${gate.approvals.length} of ${gate.required} needed; gate '${gate.name}' still waiting\n` : `gate '${gate.name}' ${gate.outcome} by ${gate.by} (key ${gate.fingerprint}) at ${gate.closedAt}\n`);
        });
      });
  }

  drill
    .command('abort <workflowId>')
    .description('abort a drill: before the fault nothing changes; after it, service is restored before it ends')
    .option('--key <file>', 'your SSH key (default: $RUNBOOK_SIGNING_KEY, then signing.key in the config)')
    .option('--by <principal>', 'the principal your key is listed for (default: the allowed signers\' entry for the key)')
    .option('--reason <text>', 'why, for the record (signed)')
    .action(async (id: string, opts: { key?: string; by?: string; reason?: string }) => {
      const workflowId = parseWorkflowId(id);
      const reason = reasonOf(opts.reason);
      await withDrillClient(async (c, g) => {
        const act = await abortRun(c, 'drDrill', workflowId, resolveSigner(c, opts), reason);
        if (g.json) printJson({ ok: true, workflowId, aborted: true, by: act.principal, fingerprint: act.fingerprint });
        else process.stdout.write(`aborted by ${act.principal} (key ${act.fingerprint}): ${workflowId}\n`);
      });
    });

  drill
    .command('status <workflowId>')
    .description('where a drill is: its steps so far and its gate')
    .action(async (id: string) => {
      const workflowId = parseWorkflowId(id);
      await withDrillClient(async (c, g) => {
        const handle = c.client.workflow.getHandle(workflowId);
        const [timeline, gates, description] = await Promise.all([handle.query(timelineQuery), handle.query(gatesQuery), handle.describe()]);
        if (g.json) return printJson({ ok: true, status: description.status.name, timeline, gates });
        process.stdout.write(`${workflowId}: ${description.status.name}\n${renderTimeline(timeline)}\n`);
        for (const gate of gates) {
          process.stdout.write(`  gate '${gate.name}' [${gate.id}]: ${gate.outcome}${gate.by ? ` by ${gate.by}` : ''}; ${gate.approvals.length} of ${gate.required} approval(s) (allowed: ${gate.allowed.join(', ')})\n`);
          for (const a of gate.approvals) process.stdout.write(`    signed ${a.act} by ${a.principal}, key ${a.fingerprint}, at ${a.signedAt}${a.reason ? `: ${a.reason}` : ''}\n`);
          for (const x of gate.ignored) process.stdout.write(`    refused (claimed by ${x.by}) at ${x.at}: ${x.problem}\n`);
        }
      });
    });

  drill
    .command('report <workflowId>')
    .description('wait for a drill to finish and print its report (exit 0 only if it passed)')
    .action(async (id: string) => {
      const workflowId = parseWorkflowId(id);
      await withDrillClient(async (c, g) => {
        const outcome = await awaitDrill(c.client.workflow.getHandle(workflowId), workflowId, !g.json);
        if (g.json) printJson(outcome);
        else process.stdout.write(`${describeDrill(outcome)}\n`);
        process.exitCode = outcome.ok ? 0 : 1;
      });
    });
}
