import type { Command } from 'commander';
import { WorkflowExecutionAlreadyStartedError, WorkflowFailedError, WorkflowHandle, WorkflowNotFoundError } from '@temporalio/client';
import { parseDuration } from '../config/duration';
import { GoLiveInput, GoLiveResult, GoLiveStatus, goLiveStatusQuery, GoLiveWaiver, validateGoLiveInput, WAIVER_GATE, waiveUpdate } from '../workflows/goLive';
import { decideUpdate } from '../workflows/lib/gate';
import type { GoLiveReport } from '../reports/golive';
import { ConnectedClient, failureMessage, startRunbook } from './client';
import { checkPlanFlags, MARKDOWN_HELP, PLAN_FLAG, PLAN_HELP, printPlan, runPlan } from './plan';
import { GlobalOptions, printJson, shown, UsageError, withClient } from './common';
import { openGate, resolveSigner, runIdOf, signAct, Signer, signStart } from './sign';
import { waitWithProgress } from './progress';
import { checked, parseSteps, readAnalysis } from './rollout';

const DEPLOYMENT = /^[a-z0-9]([-a-z0-9]{0,54}[a-z0-9])?$/;

/** One go-live per Deployment and environment at a time: the workflow id says which. */
export function goLiveWorkflowId(environment: string, deployment: string): string {
  return `golive-${environment}-${deployment}`;
}

function seconds(flag: string, v: string | undefined, min = 1): number | undefined {
  if (v === undefined) return undefined;
  const ms = parseDuration(v);
  if (ms === undefined || ms < min * 1000) throw new UsageError(`${flag}: expected a duration such as 30s, 10m or 4h, found ${shown(v)}`);
  return Math.round(ms / 1000);
}

function number(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag}: expected a number, found ${shown(v)}`);
  return n;
}

/** --waive ITEM=REASON, given once per item. */
export function parseWaivers(values: string[]): { item: string; reason: string }[] {
  return values.map((v) => {
    const at = v.indexOf('=');
    if (at <= 0 || at === v.length - 1) throw new UsageError(`--waive: expected ITEM=REASON (persistence-database="staging runs on SQLite until Q3"), found ${shown(v)}`);
    if (v.length > 1100) throw new UsageError(`--waive: the reason is longer than 1000 characters`);
    return { item: v.slice(0, at), reason: v.slice(at + 1) };
  });
}

/** Signs a waiver of one critical item at the go-live's audit gate; refused at once unless it verifies. Retries while the run is still reading its signers. */
export async function waive(c: ConnectedClient, handle: WorkflowHandle, signer: Signer, w: { item: string; reason: string }): Promise<GoLiveWaiver> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const signed = await signAct(c, signer, { runbook: 'goLive', workflowId: handle.workflowId, runId: await runIdOf(handle), gate: WAIVER_GATE, act: 'waive', item: w.item, reason: w.reason });
    try {
      return await handle.executeUpdate(waiveUpdate, { args: [signed] });
    } catch (err) {
      const message = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
      if (/has not read its signers yet/.test(message) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      throw new UsageError(`waiver of ${w.item} refused: ${message}`);
    }
  }
}

/** The go-live an argument names: a Deployment of this environment, a workflow id, or (none) the newest go-live here. */
async function handleFor(c: ConnectedClient, target: string | undefined): Promise<WorkflowHandle> {
  const candidates: string[] = [];
  if (target === undefined) {
    for await (const w of c.client.workflow.list({ query: `WorkflowType = 'goLive' AND WorkflowId STARTS_WITH 'golive-${c.environment}-'` })) {
      candidates.push(w.workflowId);
      break;
    }
    if (candidates.length === 0) throw new UsageError(`no go-live in environment ${c.environment}; start one with: runbook golive start DEPLOYMENT --image IMAGE`);
  } else {
    if (target.length === 0 || target.length > 1000 || /[\x00-\x1f\x7f]/.test(target)) throw new UsageError(`DEPLOYMENT|ID: expected a Deployment name or a workflow id, found ${shown(target)}`);
    if (DEPLOYMENT.test(target)) candidates.push(goLiveWorkflowId(c.environment, target));
    candidates.push(target);
  }
  for (const id of candidates) {
    const handle = c.client.workflow.getHandle(id);
    try {
      await handle.describe();
      return handle;
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
  }
  throw new UsageError(`no go-live ${shown(target!)} in environment ${c.environment} (looked for ${candidates.join(', ')})`);
}

export function renderGoLiveStatus(s: GoLiveStatus, workflowId: string): string {
  const lines = [`go-live of ${s.deployment} to ${s.image} (workflow ${workflowId})`, `  phase ${s.phase}${s.outcome ? `: ${s.outcome}` : ''}${s.reason ? ` (${s.reason})` : ''}`];
  if (s.waitingFor) lines.push(`  waiting for ${s.waitingFor}`);
  if (s.children.audit) lines.push(`  audit     ${s.children.audit.workflowId}`);
  for (const b of s.blocking ?? []) lines.push(`    not proved: ${b.id} (${b.status}): ${b.summary}`);
  for (const x of s.children.smoke) lines.push(`  smoke     ${x.workflowId} on ${x.queue}`);
  for (const g of s.approvals) lines.push(`  gate '${g.name}': ${g.outcome}${g.by ? ` by ${g.by}` : ''}${g.reason ? ` ("${g.reason}")` : ''}${g.closedAt ? ` at ${g.closedAt}` : ''}`);
  if (s.children.rollout) lines.push(`  rollout   ${s.children.rollout.workflowId} (runbook rollout status ${s.deployment})`);
  if (s.watch) lines.push(`  watch     ${s.watch.measurements} of ${s.watch.of} measurements${Object.keys(s.watch.failures).length ? `, failures ${JSON.stringify(s.watch.failures)}` : ''}`);
  if (s.children.rollback) lines.push(`  rollback  ${s.children.rollback.workflowId}`);
  return lines.join('\n');
}

function describeReport(r: GoLiveReport, keys: string[]): string {
  const head = r.passed ? `go-live LIVE: ${r.deployment} runs ${r.image}` : `go-live ${r.outcome.toUpperCase()}: ${r.reason}`;
  const runs = [
    r.audit && `  audit     ${r.audit.workflowId} (score ${(r.audit.score * 100).toFixed(0)}%${r.audit.waived.length ? `, waived: ${r.audit.waived.map((w) => `${w.id} by ${w.by}`).join(', ')}` : ''})`,
    ...r.smoke.map((s) => `  smoke     ${s.workflowId} on ${s.queue}: ${s.roundTripMs} ms`),
    r.rollout && `  rollout   ${r.rollout.workflowId}: ${r.rollout.outcome}`,
    r.watch && `  watch     ${r.watch.passed ? 'quiet' : `alert: ${r.watch.reason}`} (${r.watch.measurements} of ${r.watch.of})`,
    r.rollback && `  rollback  ${r.rollback.workflowId}${r.rollback.error ? `: FAILED ${r.rollback.error}` : ''}`,
    keys.length ? `  report    ${keys.join(', ')}` : undefined,
  ].filter(Boolean);
  return [head, ...runs].join('\n');
}

export async function startGoLive(c: ConnectedClient, input: GoLiveInput, signer?: Signer): Promise<{ handle: WorkflowHandle; workflowId: string }> {
  checked(validateGoLiveInput, input);
  const workflowId = goLiveWorkflowId(c.environment, input.deployment);
  if (signer) {
    const plain = JSON.parse(JSON.stringify({ ...input, start: undefined })) as Record<string, unknown>;
    input = { ...(plain as unknown as GoLiveInput), start: await signStart(c, signer, 'goLive', workflowId, plain) };
  }
  try {
    const { handle } = await startRunbook(c, 'goLive', [input], { workflowId, target: input.deployment });
    return { handle, workflowId };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new UsageError(`a go-live of ${input.deployment} is already running (workflow ${workflowId}); see runbook golive status ${input.deployment}`);
    throw err;
  }
}

export function registerGoLive(program: Command, globals: () => GlobalOptions): void {
  const golive = program.command('golive').description('go-live: readiness audit gate, smoke tests, approval, gated rollout, watch window with automatic rollback, report');
  const run = <T>(fn: (c: ConnectedClient, g: GlobalOptions) => Promise<T>): Promise<T> => {
    const g = globals();
    return withClient(g, (c) => fn(c, g));
  };
  const collect = (v: string, all: string[]) => [...all, v];

  golive
    .command('start <deployment>')
    .description('start a go-live; it stops at the audit gate unless every critical item is proved (or waived), then waits for approval')
    .requiredOption('--image <image>', 'the new image, with a tag or digest (registry/app:1.2.3)')
    .option('--container <name>', 'which container gets the image (default: the first)')
    .option('--strategy <strategy>', 'canary or rolling', 'canary')
    .option('--steps <spec>', 'rollout steps: a weight (25), pause, pause:<duration>, analysis; default 25,pause,50,pause')
    .option('--analysis <file>', "the rollout's analysis template (YAML or JSON); also the watch window's alert condition unless --watch-analysis")
    .option('--health-timeout <duration>', 'how long each change may take to become healthy', '5m')
    .option('--watch <duration>', 'watch window after the rollout', '30m')
    .option('--watch-interval <duration>', 'how often the watch window measures', '5m')
    .option('--watch-analysis <file>', 'the alert condition of the watch window (analysis template)')
    .option('--wait-attestations <duration>', 'let the readiness audit wait this long for attestations')
    .option('--check-timeout <seconds>', 'each audit check reports unknown after this long')
    .option('--certificate-min-days <n>', 'a serving certificate expiring within this many days fails the audit')
    .option('--waive <item=reason>', 'accept a critical item that is not proved, with the reason, signed with your key at the audit gate (repeatable)', collect, [])
    .option('--waiver-wait <duration>', 'when critical items block after the audit, wait this long for signed waivers (runbook golive waive) before stopping')
    .option('--key <file>', 'your SSH key that signs the start and the waivers (default: $RUNBOOK_SIGNING_KEY, then signing.key in the config)')
    .option('--by <principal>', "the principal your key is listed for (default: the allowed signers' entry for the key)")
    .option('--approval-timeout <duration>', 'how long the go-live approval waits', '4h')
    .option('--wait', 'wait for the go-live to finish, showing progress (exit 0 only if live)')
    .option(PLAN_FLAG, PLAN_HELP)
    .option('--markdown', MARKDOWN_HELP)
    .action(async (dep: string, opts: Record<string, string | string[] | boolean | undefined>) => {
      checkPlanFlags(opts as { plan?: boolean; markdown?: boolean });
      if (!DEPLOYMENT.test(dep)) throw new UsageError(`DEPLOYMENT: expected a Deployment name (lower-case letters, digits and -, at most 56 characters), found ${shown(dep)}`);
      const o = opts as { image: string; container?: string; strategy: string; steps?: string; analysis?: string; healthTimeout: string; watch: string; watchInterval: string; watchAnalysis?: string; waitAttestations?: string; checkTimeout?: string; certificateMinDays?: string; waive: string[]; waiverWait?: string; key?: string; by?: string; approvalTimeout: string; wait?: boolean };
      if (o.strategy !== 'canary' && o.strategy !== 'rolling') throw new UsageError(`--strategy: expected canary or rolling, found ${shown(o.strategy)}`);
      const analysis = o.analysis ? readAnalysis(o.analysis) : undefined;
      const watchAnalysis = o.watchAnalysis ? readAnalysis(o.watchAnalysis) : undefined;
      if (!analysis && !watchAnalysis) throw new UsageError('--watch-analysis: the watch window needs an alert condition: --watch-analysis FILE or --analysis FILE');
      const waitAttestations = seconds('--wait-attestations', o.waitAttestations);
      const waivers = parseWaivers(o.waive);
      const input: GoLiveInput = {
        environment: '',
        deployment: dep,
        image: o.image,
        container: o.container,
        strategy: o.strategy,
        steps: o.steps ? parseSteps(o.steps) : undefined,
        analysis,
        healthTimeoutSeconds: seconds('--health-timeout', o.healthTimeout, 5),
        watch: { durationSeconds: seconds('--watch', o.watch), intervalSeconds: seconds('--watch-interval', o.watchInterval), analysis: watchAnalysis },
        audit: { waitForAttestationsSeconds: waitAttestations, checkTimeoutSeconds: number('--check-timeout', o.checkTimeout), certificateMinDays: number('--certificate-min-days', o.certificateMinDays) },
        waiverWaitSeconds: o.waiverWait === undefined ? undefined : seconds('--waiver-wait', o.waiverWait),
        approvalTimeoutSeconds: seconds('--approval-timeout', o.approvalTimeout),
      };
      if ((input.watch!.intervalSeconds ?? 0) > (input.watch!.durationSeconds ?? 0)) throw new UsageError(`--watch-interval: ${o.watchInterval} is longer than the watch window (--watch ${o.watch})`);
      await run(async (c, g) => {
        input.environment = c.environment;
        if (opts.plan) {
          if (waivers.length) throw new UsageError('--waive: a plan takes no waivers (they are signed acts on a real run); plan without them');
          return printPlan(await runPlan(c, 'goLive', JSON.parse(JSON.stringify(input))), { json: g.json, markdown: Boolean(opts.markdown) });
        }
        const signer = resolveSigner(c, o);
        const { handle, workflowId } = await startGoLive(c, JSON.parse(JSON.stringify(input)) as GoLiveInput, signer);
        if (!g.json) process.stderr.write(`go-live started by ${signer.principal}: workflow ${workflowId}\nfollow with: runbook golive status ${dep}; approve with: runbook golive approve ${dep} --key YOUR_KEY\n`);
        for (const w of waivers) {
          const accepted = await waive(c, handle, signer, w);
          if (!g.json) process.stderr.write(`waiver of ${accepted.item} signed by ${accepted.by} (key ${accepted.fingerprint})\n`);
        }
        if (!o.wait) return g.json ? printJson({ ok: true, workflowId }) : process.stdout.write(`${workflowId}\n`);
        try {
          const r = await waitWithProgress<GoLiveResult>(handle, !g.json);
          if (g.json) printJson({ ok: true, workflowId, result: r });
          else process.stdout.write(`${describeReport(r, r.reportKeys)}\n`);
        } catch (err) {
          const details = err instanceof WorkflowFailedError ? ((err.cause as { details?: unknown[] } | undefined)?.details?.[0] as (GoLiveReport & { reportKeys: string[] }) | undefined) : undefined;
          if (g.json) printJson({ ok: false, workflowId, error: failureMessage(err), report: details });
          else process.stdout.write(`${details ? describeReport(details, details.reportKeys ?? []) : `go-live FAILED (workflow ${workflowId}): ${failureMessage(err)}`}\n`);
          process.exitCode = 1;
        }
      });
    });

  golive
    .command('status [target]')
    .description('where a go-live is (by Deployment or workflow id; default: the newest here): phase, child runs, what it waits for')
    .action(async (target: string | undefined) => {
      await run(async (c, g) => {
        const handle = await handleFor(c, target);
        const [status, description] = await Promise.all([handle.query(goLiveStatusQuery), handle.describe()]);
        if (g.json) printJson({ ok: true, workflowId: handle.workflowId, state: description.status.name, status });
        else process.stdout.write(`${renderGoLiveStatus(status, handle.workflowId)}\n`);
        if (status.phase === 'done') process.exitCode = status.outcome === 'live' ? 0 : 1;
      });
    });

  for (const decision of ['approve', 'reject'] as const) {
    golive
      .command(`${decision} [target]`)
      .description(`${decision} the go-live waiting for approval, signed (refused at once unless your key is allowed and you are an approver)`)
      .option('--key <file>', 'your SSH key (default: $RUNBOOK_SIGNING_KEY, then signing.key in the config)')
      .option('--by <principal>', "the principal your key is listed for (default: the allowed signers' entry for the key)")
      .option('--comment <text>', 'why, for the record (signed)')
      .action(async (target: string | undefined, opts: { key?: string; by?: string; comment?: string }) => {
        if (opts.comment !== undefined && opts.comment.length > 1000) throw new UsageError(`--comment: expected text of at most 1000 characters, found ${opts.comment.length} characters`);
        await run(async (c, g) => {
          const handle = await handleFor(c, target);
          const { runId, gate: open } = await openGate(handle);
          const signed = await signAct(c, resolveSigner(c, opts), { runbook: 'goLive', workflowId: handle.workflowId, runId, gate: open.id, act: decision, reason: opts.comment });
          let gate;
          try {
            gate = await handle.executeUpdate(decideUpdate, { args: [signed] });
          } catch (err) {
            const cause = (err as { cause?: Error }).cause;
            throw new UsageError(`${decision} refused: ${cause?.message ?? failureMessage(err)}`);
          }
          if (g.json) printJson({ ok: true, workflowId: handle.workflowId, gate });
          else process.stdout.write(`gate '${gate.name}' ${gate.outcome} by ${gate.by} (key ${gate.fingerprint})${gate.closedAt ? ` at ${gate.closedAt}` : ''}\n`);
        });
      });
  }

  golive
    .command('waive [target]')
    .description('waive a critical item that blocks the go-live at its audit gate, signed: you accept the risk, with the reason')
    .requiredOption('--item <id>', 'the critical checklist item (e.g. persistence-database)')
    .requiredOption('--reason <text>', 'why going live without it is acceptable (signed, in the report)')
    .option('--key <file>', 'your SSH key (default: $RUNBOOK_SIGNING_KEY, then signing.key in the config)')
    .option('--by <principal>', "the principal your key is listed for (default: the allowed signers' entry for the key)")
    .action(async (target: string | undefined, opts: { item: string; reason: string; key?: string; by?: string }) => {
      const [w] = parseWaivers([`${opts.item}=${opts.reason}`]);
      await run(async (c, g) => {
        const handle = await handleFor(c, target);
        const accepted = await waive(c, handle, resolveSigner(c, opts), w);
        if (g.json) printJson({ ok: true, workflowId: handle.workflowId, waiver: accepted });
        else process.stdout.write(`waiver of ${accepted.item} signed by ${accepted.by} (key ${accepted.fingerprint})\n`);
      });
    });
}
