import type { Command } from 'commander';
import { WorkflowExecutionAlreadyStartedError, WorkflowFailedError, WorkflowHandle, WorkflowNotFoundError } from '@temporalio/client';
import type { CompareSpec } from '../workflows/lib/analysis';
import { PromotionInput, PromotionReport, PromotionResult, PromotionStatus, promotionStatusQuery, validatePromotionInput } from '../workflows/promotion';
import { ConnectedClient, connectClient, failureMessage, startRunbook } from './client';
import { GlobalOptions, loadCliConfig, printJson, shown, UsageError } from './common';
import { abortRun } from './drill';
import { waitWithProgress } from './progress';
import { seconds } from './release';
import { checked, parseSteps, readAnalysis, readYamlFile } from './rollout';
import { decideGate, resolveSigner, Signer, signStart } from './sign';

const NAME = /^[a-z0-9][a-z0-9-]{0,40}$/;

export function promotionWorkflowId(name: string): string {
  return `promotion-${name}`;
}

/**
 * A promotion runs on the workers of its first environment, so the command connects to that
 * environment's Temporal whatever --env says.
 */
export async function withPromotionClient<T>(g: GlobalOptions, name: string, fn: (c: ConnectedClient) => Promise<T>): Promise<T> {
  if (!NAME.test(name)) throw new UsageError(`NAME: expected a promotion name from the config (promotions:), found ${shown(name)}`);
  const loaded = loadCliConfig(g);
  const p = loaded.config.promotions[name];
  if (!p) {
    const known = Object.keys(loaded.config.promotions);
    throw new UsageError(`NAME: ${loaded.file} has no promotions.${name}; ${known.length ? `configured: ${known.join(', ')}` : 'add one (see the configuration reference)'}`);
  }
  const environment = p.stages[0].environment;
  const c = await connectClient(loaded, environment, loaded.config.environments[environment]);
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

export function renderPromotionStatus(s: PromotionStatus, workflowId: string): string {
  const lines = [`promotion ${s.promotion}: ${s.runbook ?? '?'} of ${s.deployment ?? '?'} to ${s.image} (workflow ${workflowId})`, `  phase ${s.phase}${s.outcome ? `: ${s.outcome}` : ''}${s.reason ? ` (${s.reason})` : ''}`];
  if (s.waitingFor) lines.push(`  waiting for ${s.waitingFor}`);
  s.stages.forEach((st, i) => {
    lines.push(`  ${s.current === i && s.phase === 'promoting' ? '>' : ' '} ${st.environment.padEnd(16)} ${st.state}${st.outcome ? ` (${st.outcome})` : ''}${st.run ? `  ${st.run.workflowId}` : ''}${st.bake?.until && st.state === 'baking' ? `  until ${st.bake.until}` : ''}`);
    if (st.rollback) lines.push(`      rollback ${st.rollback.workflowId}${st.rollback.error ? `: FAILED ${st.rollback.error}` : ''}${st.rollback.database ? `; ${st.rollback.database}` : ''}`);
  });
  for (const g of s.approvals) lines.push(`  gate '${g.name}': ${g.outcome}${g.by ? ` by ${g.by}` : ''}${g.closedAt ? ` at ${g.closedAt}` : ''}`);
  return lines.join('\n');
}

export async function startPromotion(c: ConnectedClient, input: PromotionInput, signer?: Signer): Promise<{ handle: WorkflowHandle; workflowId: string }> {
  checked(validatePromotionInput, input);
  const workflowId = promotionWorkflowId(input.promotion);
  if (signer) {
    const plain = JSON.parse(JSON.stringify({ ...input, start: undefined })) as Record<string, unknown>;
    input = { ...(plain as unknown as PromotionInput), start: await signStart(c, signer, 'promotion', workflowId, plain) };
  }
  try {
    const { handle } = await startRunbook(c, 'promotion', [input], { workflowId });
    return { handle, workflowId };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new UsageError(`promotion ${input.promotion} is already running (workflow ${workflowId}); see runbook promotion status ${input.promotion}`);
    throw err;
  }
}

async function handleFor(c: ConnectedClient, name: string): Promise<WorkflowHandle> {
  const handle = c.client.workflow.getHandle(promotionWorkflowId(name));
  try {
    await handle.describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new UsageError(`no promotion ${name} has run (workflow ${promotionWorkflowId(name)}); start one with: runbook promotion start ${name} --image IMAGE`);
    throw err;
  }
  return handle;
}

export function describePromotionReport(r: PromotionReport): string {
  return [`promotion ${r.outcome.toUpperCase()}: ${r.promotion}${r.reason ? `: ${r.reason}` : ''}`, ...r.stages.map((s) => `  ${s.environment.padEnd(16)} ${s.state}${s.run ? `  ${s.run.workflowId}` : ''}${s.rollback ? `  rolled back by ${s.rollback.workflowId}${s.rollback.error ? ` (FAILED: ${s.rollback.error})` : ''}` : ''}`)].join('\n');
}

export async function awaitPromotion(handle: WorkflowHandle, showProgress: boolean): Promise<{ ok: boolean; report?: PromotionReport; error?: string }> {
  try {
    const r = await waitWithProgress<PromotionResult>(handle, showProgress);
    return { ok: r.outcome === 'promoted', report: r };
  } catch (err) {
    const report = err instanceof WorkflowFailedError ? ((err.cause as { details?: unknown[] } | undefined)?.details?.[0] as PromotionReport | undefined) : undefined;
    return { ok: false, report, error: failureMessage(err) };
  }
}

export function registerPromotion(program: Command, globals: () => GlobalOptions): void {
  const promotion = program.command('promotion').description('promote a release or rollout across environments in the configured order, with bake times and approvals; an abort rolls back what was promoted');
  const keyOptions = (cmd: Command) =>
    cmd
      .option('--key <file>', 'your SSH key that signs (default: $RUNBOOK_SIGNING_KEY, then signing.key in the config)')
      .option('--by <principal>', "the principal your key is listed for (default: the allowed signers' entry for the key)");

  keyOptions(
    promotion
      .command('start <name>')
      .description('start the promotion promotions.<name> of the config; each environment runs its release or rollout in turn')
      .requiredOption('--image <image>', 'the new image, with a tag or digest')
      .option('--strategy <strategy>', 'canary or rolling', 'canary')
      .option('--steps <spec>', "each environment's rollout steps: a weight (25), pause, pause:<duration>, analysis, compare")
      .option('--analysis <file>', "each environment's rollout analysis (YAML or JSON)")
      .option('--comparison <file>', 'canary-versus-stable comparison for compare steps')
      .option('--health-timeout <duration>', 'how long each change may take to become healthy', '5m')
      .option('--approval-timeout <duration>', 'how long each approval between environments waits', '4h')
      .option('--wait', 'wait for the promotion to finish (exit 0 only when every environment is promoted)'),
  ).action(async (name: string, opts: { image: string; strategy: string; steps?: string; analysis?: string; comparison?: string; healthTimeout: string; approvalTimeout: string; wait?: boolean; key?: string; by?: string }) => {
    if (opts.strategy !== 'canary' && opts.strategy !== 'rolling') throw new UsageError(`--strategy: expected canary or rolling, found ${shown(opts.strategy)}`);
    const g = globals();
    await withPromotionClient(g, name, async (c) => {
      const input: PromotionInput = {
        environment: c.environment,
        promotion: name,
        image: opts.image,
        strategy: opts.strategy as 'canary' | 'rolling',
        steps: opts.steps ? parseSteps(opts.steps) : undefined,
        analysis: opts.analysis ? readAnalysis(opts.analysis) : undefined,
        comparison: opts.comparison ? readYamlFile<CompareSpec>(opts.comparison, '--comparison') : undefined,
        healthTimeoutSeconds: seconds('--health-timeout', opts.healthTimeout, 5),
        approvalTimeoutSeconds: seconds('--approval-timeout', opts.approvalTimeout),
      };
      const signer = resolveSigner(c, opts);
      const { handle, workflowId } = await startPromotion(c, JSON.parse(JSON.stringify(input)) as PromotionInput, signer);
      if (!g.json) process.stderr.write(`promotion started by ${signer.principal}: workflow ${workflowId}\nfollow with: runbook promotion status ${name}\n`);
      if (!opts.wait) return g.json ? printJson({ ok: true, workflowId }) : process.stdout.write(`${workflowId}\n`);
      const r = await awaitPromotion(handle, !g.json);
      if (g.json) printJson({ ok: r.ok, workflowId, report: r.report, error: r.error });
      else process.stdout.write(`${r.report ? describePromotionReport(r.report) : `promotion FAILED: ${r.error}`}\n`);
      process.exitCode = r.ok ? 0 : 1;
    });
  });

  promotion
    .command('status <name>')
    .description('where a promotion is: each environment, its run, bake and rollback, the gates')
    .action(async (name: string) => {
      const g = globals();
      await withPromotionClient(g, name, async (c) => {
        const handle = await handleFor(c, name);
        const [status, description] = await Promise.all([handle.query(promotionStatusQuery), handle.describe()]);
        if (g.json) printJson({ ok: true, workflowId: handle.workflowId, state: description.status.name, status });
        else process.stdout.write(`${renderPromotionStatus(status, handle.workflowId)}\n`);
        if (status.phase === 'done') process.exitCode = status.outcome === 'promoted' ? 0 : 1;
      });
    });

  for (const act of ['approve', 'reject'] as const) {
    keyOptions(promotion.command(`${act} <name>`).description(`${act} the promotion to the next environment, signed`).option('--comment <text>', 'why, for the record (signed)')).action(async (name: string, opts: { key?: string; by?: string; comment?: string }) => {
      if (opts.comment !== undefined && opts.comment.length > 1000) throw new UsageError(`--comment: expected text of at most 1000 characters, found ${opts.comment.length} characters`);
      const g = globals();
      await withPromotionClient(g, name, async (c) => {
        const handle = await handleFor(c, name);
        const decided = await decideGate(c, handle, 'promotion', act, resolveSigner(c, opts), opts.comment);
        if (g.json) printJson({ ok: true, workflowId: handle.workflowId, gate: decided });
        else process.stdout.write(`gate '${decided.name}' ${decided.outcome} by ${decided.by} (key ${decided.fingerprint})\n`);
      });
    });
  }

  keyOptions(promotion.command('abort <name>').description('abort the promotion, signed: the remaining environments are skipped and, by policy, the promoted ones rolled back').option('--reason <text>', 'why, for the record (signed)')).action(
    async (name: string, opts: { key?: string; by?: string; reason?: string }) => {
      if (opts.reason !== undefined && opts.reason.length > 1000) throw new UsageError(`--reason: expected text of at most 1000 characters, found ${opts.reason.length} characters`);
      const g = globals();
      await withPromotionClient(g, name, async (c) => {
        const handle = await handleFor(c, name);
        const act = await abortRun(c, 'promotion', handle.workflowId, resolveSigner(c, opts), opts.reason);
        if (g.json) printJson({ ok: true, workflowId: handle.workflowId, aborted: true, by: act.principal });
        else process.stdout.write(`abort accepted from ${act.principal} (key ${act.fingerprint}): runbook promotion status ${name}\n`);
      });
    },
  );
}
