import type { Command } from 'commander';
import { WorkflowExecutionAlreadyStartedError, WorkflowFailedError, WorkflowHandle, WorkflowNotFoundError } from '@temporalio/client';
import { parseDuration } from '../config/duration';
import type { ReleaseReport } from '../reports/release';
import type { CompareSpec } from '../workflows/lib/analysis';
import { ReleaseInput, ReleaseResult, ReleaseStatus, releaseStatusQuery, validateReleaseInput } from '../workflows/release';
import { ConnectedClient, failureMessage, startRunbook } from './client';
import { checkPlanFlags, MARKDOWN_HELP, PLAN_FLAG, PLAN_HELP, printPlan, runPlan } from './plan';
import { GlobalOptions, printJson, shown, UsageError, withClient } from './common';
import { abortRun } from './drill';
import { waitWithProgress } from './progress';
import { checked, parseSteps, readAnalysis, readYamlFile } from './rollout';
import { decideGate, resolveSigner, Signer, signStart } from './sign';

const DEPLOYMENT = /^[a-z0-9]([-a-z0-9]{0,54}[a-z0-9])?$/;

/** One release per Deployment and environment at a time: the workflow id says which. */
export function releaseWorkflowId(environment: string, deployment: string): string {
  return `release-${environment}-${deployment}`;
}

export function seconds(flag: string, v: string | undefined, min = 1): number | undefined {
  if (v === undefined) return undefined;
  const ms = parseDuration(v);
  if (ms === undefined || ms < min * 1000) throw new UsageError(`${flag}: expected a duration such as 30s, 10m or 4h, found ${shown(v)}`);
  return Math.round(ms / 1000);
}

function parseDeployment(value: string): string {
  if (!DEPLOYMENT.test(value)) throw new UsageError(`DEPLOYMENT: expected a Deployment name (lower-case letters, digits and -, at most 56 characters), found ${shown(value)}`);
  return value;
}

export function renderReleaseStatus(s: ReleaseStatus, workflowId: string): string {
  const lines = [
    `release of ${s.deployment} to ${s.image} (workflow ${workflowId})${s.database ? `, database ${s.database}, on failure: ${s.policy}` : ''}`,
    `  phase ${s.phase}${s.outcome ? `: ${s.outcome}` : ''}${s.reason ? ` (${s.reason})` : ''}`,
  ];
  if (s.waitingFor) lines.push(`  waiting for ${s.waitingFor}`);
  if (s.children.backup) lines.push(`  backup        ${s.children.backup.workflowId}${s.backupId ? `: ${s.backupId}` : ''}`);
  if (s.children.restoreTest) lines.push(`  restore test  ${s.children.restoreTest.workflowId}`);
  if (s.migration) lines.push(`  migration     Job ${s.migration.job}${s.migration.succeeded === undefined ? '' : s.migration.succeeded ? ': succeeded' : `: FAILED (exit ${s.migration.exitCode ?? '?'})`}`);
  if (s.children.rollout) lines.push(`  rollout       ${s.children.rollout.workflowId} (runbook rollout status ${s.deployment})`);
  if (s.children.rollback) lines.push(`  rollback      ${s.children.rollback.workflowId}`);
  for (const g of s.approvals) lines.push(`  gate '${g.name}': ${g.outcome}${g.by ? ` by ${g.by}` : ''}${g.fingerprint ? ` (key ${g.fingerprint})` : ''}${g.reason ? ` ("${g.reason}")` : ''}${g.closedAt ? ` at ${g.closedAt}` : ''}`);
  return lines.join('\n');
}

export function describeReleaseReport(r: ReleaseReport, keys: string[]): string {
  const c = r.compensation;
  const lines = [
    r.passed ? `release RELEASED: ${r.deployment} runs ${r.image}, ${r.database} migrated` : `release ${r.outcome.toUpperCase()}: ${r.reason}`,
    r.backup && `  backup      ${r.backup.workflowId}: ${r.backup.backupId}`,
    r.restoreTest && `  restore     ${r.restoreTest.workflowId}: ${r.restoreTest.passed ? 'passed' : 'FAILED'}`,
    r.approval && `  approval    ${r.approval.outcome}${r.approval.by ? ` by ${r.approval.by}` : ''}`,
    r.migration && `  migration   Job ${r.migration.name}: ${r.migration.succeeded ? 'succeeded' : `FAILED (exit ${r.migration.exitCode ?? '?'})`}`,
    r.rollout && `  rollout     ${r.rollout.workflowId}: ${r.rollout.outcome}`,
    r.watch && `  watch       ${r.watch.passed ? 'quiet' : `alert: ${r.watch.reason}`}`,
    c?.rollback && `  rolled back ${c.rollback.workflowId} (by ${c.rollback.by})${c.rollback.error ? `: FAILED ${c.rollback.error}` : ''}`,
    c?.downMigration && `  down        Job ${c.downMigration.name}: ${c.downMigration.succeeded ? 'succeeded' : 'FAILED'}`,
    c?.restore && `  restore     of ${c.restore.backupId}: gate ${c.restore.gate.outcome}${c.restore.gate.by ? ` by ${c.restore.gate.by}` : ''}${c.restore.keptAside ? `; the database as it was is kept as ${c.restore.keptAside}` : ''}`,
    c?.forwardFix && `  forward fix ${c.forwardFix.gate.outcome}${c.forwardFix.gate.by ? ` by ${c.forwardFix.gate.by}` : ''}`,
    c && `  database    ${c.database}`,
    keys.length ? `  report      ${keys.join(', ')}` : undefined,
  ];
  return lines.filter(Boolean).join('\n');
}

async function handleFor(c: ConnectedClient, deployment: string): Promise<WorkflowHandle> {
  const id = releaseWorkflowId(c.environment, deployment);
  const handle = c.client.workflow.getHandle(id);
  try {
    await handle.describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new UsageError(`no release of ${deployment} in environment ${c.environment} (workflow ${id}); start one with: runbook release start ${deployment} --image IMAGE`);
    throw err;
  }
  return handle;
}

/** Starts a release, its start signed by the requester. */
export async function startRelease(c: ConnectedClient, input: ReleaseInput, signer?: Signer): Promise<{ handle: WorkflowHandle; workflowId: string }> {
  checked(validateReleaseInput, input);
  const workflowId = releaseWorkflowId(c.environment, input.deployment);
  if (signer) {
    const plain = JSON.parse(JSON.stringify({ ...input, start: undefined })) as Record<string, unknown>;
    input = { ...(plain as unknown as ReleaseInput), start: await signStart(c, signer, 'release', workflowId, plain) };
  }
  try {
    const { handle } = await startRunbook(c, 'release', [input], { workflowId, target: input.deployment });
    return { handle, workflowId };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new UsageError(`a release of ${input.deployment} is already running (workflow ${workflowId}); see runbook release status ${input.deployment}`);
    throw err;
  }
}

/** Signs and sends approve or reject for the gate a release waits at (its approval, a restore, a forward fix). */
export async function decideRelease(c: ConnectedClient, handle: WorkflowHandle, act: 'approve' | 'reject', signer: Signer, reason?: string) {
  return decideGate(c, handle, 'release', act, signer, reason);
}

/** The report a release left: its result, or the details of its failure. */
export async function awaitRelease(handle: WorkflowHandle, showProgress: boolean): Promise<{ ok: boolean; report?: ReleaseReport & { reportKeys?: string[] }; error?: string }> {
  try {
    const r = await waitWithProgress<ReleaseResult>(handle, showProgress);
    return { ok: true, report: r };
  } catch (err) {
    const report = err instanceof WorkflowFailedError ? ((err.cause as { details?: unknown[] } | undefined)?.details?.[0] as (ReleaseReport & { reportKeys?: string[] }) | undefined) : undefined;
    return { ok: false, report, error: failureMessage(err) };
  }
}

export function registerRelease(program: Command, globals: () => GlobalOptions): void {
  const release = program.command('release').description('releases of a service and its database: backup, migration Job, gated rollout, watch window; on failure the Deployment rolls back and the database follows its policy');
  const run = <T>(fn: (c: ConnectedClient, g: GlobalOptions) => Promise<T>): Promise<T> => {
    const g = globals();
    return withClient(g, (c) => fn(c, g));
  };
  const keyOptions = (cmd: Command) =>
    cmd
      .option('--key <file>', 'your SSH key that signs (default: $RUNBOOK_SIGNING_KEY, then signing.key in the config)')
      .option('--by <principal>', "the principal your key is listed for (default: the allowed signers' entry for the key)");

  keyOptions(
    release
      .command('start <deployment>')
      .description('start a release (environments.<env>.releases.<deployment> says the migration command and the database policy); it waits for approval after the backup')
      .requiredOption('--image <image>', 'the new image, with a tag or digest; the migration Job runs from it')
      .option('--strategy <strategy>', 'canary or rolling', 'canary')
      .option('--steps <spec>', 'rollout steps: a weight (25), pause, pause:<duration>, analysis, compare; default 25,pause,50,pause')
      .option('--analysis <file>', "the rollout's analysis (YAML or JSON); also the watch window's alert condition")
      .option('--background-analysis <file>', 'measured during every pause and bake of the rollout')
      .option('--comparison <file>', 'canary-versus-stable comparison for compare steps')
      .option('--health-timeout <duration>', 'how long each change may take to become healthy', '5m')
      .option('--gate-timeout <duration>', "how long the rollout's pauses wait for approval")
      .option('--on-gate-timeout <policy>', 'rollback or remind')
      .option('--approval-timeout <duration>', 'how long the release approval waits', '4h')
      .option('--decision-timeout <duration>', 'how long a restore approval or a forward-fix gate waits', '24h')
      .option('--wait', 'wait for the release to finish, showing progress (exit 0 only when released)')
      .option(PLAN_FLAG, PLAN_HELP)
      .option('--markdown', MARKDOWN_HELP),
  ).action(async (dep: string, opts: { image: string; strategy: string; steps?: string; analysis?: string; backgroundAnalysis?: string; comparison?: string; healthTimeout: string; gateTimeout?: string; onGateTimeout?: string; approvalTimeout: string; decisionTimeout: string; wait?: boolean; key?: string; by?: string; plan?: boolean; markdown?: boolean }) => {
    checkPlanFlags(opts);
    const deployment = parseDeployment(dep);
    if (opts.strategy !== 'canary' && opts.strategy !== 'rolling') throw new UsageError(`--strategy: expected canary or rolling, found ${shown(opts.strategy)}`);
    if (opts.onGateTimeout !== undefined && opts.onGateTimeout !== 'rollback' && opts.onGateTimeout !== 'remind') throw new UsageError(`--on-gate-timeout: expected rollback or remind, found ${shown(opts.onGateTimeout)}`);
    const input: ReleaseInput = {
      environment: '',
      deployment,
      image: opts.image,
      strategy: opts.strategy as 'canary' | 'rolling',
      steps: opts.steps ? parseSteps(opts.steps) : undefined,
      analysis: opts.analysis ? readAnalysis(opts.analysis) : undefined,
      backgroundAnalysis: opts.backgroundAnalysis ? readAnalysis(opts.backgroundAnalysis, '--background-analysis') : undefined,
      comparison: opts.comparison ? readYamlFile<CompareSpec>(opts.comparison, '--comparison') : undefined,
      healthTimeoutSeconds: seconds('--health-timeout', opts.healthTimeout, 5),
      gateTimeoutSeconds: seconds('--gate-timeout', opts.gateTimeout),
      onGateTimeout: opts.onGateTimeout as 'rollback' | 'remind' | undefined,
      approvalTimeoutSeconds: seconds('--approval-timeout', opts.approvalTimeout),
      decisionTimeoutSeconds: seconds('--decision-timeout', opts.decisionTimeout),
    };
    // Everything but the environment (known once connected) is checked first: bad input needs no server.
    checked(validateReleaseInput, { ...(JSON.parse(JSON.stringify(input)) as ReleaseInput), environment: 'environment' });
    await run(async (c, g) => {
      input.environment = c.environment;
      if (opts.plan) return printPlan(await runPlan(c, 'release', JSON.parse(JSON.stringify(input))), { json: g.json, markdown: opts.markdown });
      const signer = resolveSigner(c, opts);
      const { handle, workflowId } = await startRelease(c, JSON.parse(JSON.stringify(input)) as ReleaseInput, signer);
      if (!g.json) process.stderr.write(`release started by ${signer.principal}: workflow ${workflowId}\nfollow with: runbook release status ${deployment}; approve with: runbook release approve ${deployment} --key YOUR_KEY\n`);
      if (!opts.wait) return g.json ? printJson({ ok: true, workflowId }) : process.stdout.write(`${workflowId}\n`);
      const r = await awaitRelease(handle, !g.json);
      if (g.json) printJson({ ok: r.ok, workflowId, report: r.report, error: r.error });
      else process.stdout.write(`${r.report ? describeReleaseReport(r.report, r.report.reportKeys ?? []) : `release FAILED (workflow ${workflowId}): ${r.error}`}\n`);
      process.exitCode = r.ok ? 0 : 1;
    });
  });

  release
    .command('status <deployment>')
    .description('where the release of a Deployment is: phase, child runs, the migration Job, gates, what it waits for')
    .action(async (dep: string) => {
      const deployment = parseDeployment(dep);
      await run(async (c, g) => {
        const handle = await handleFor(c, deployment);
        const [status, description] = await Promise.all([handle.query(releaseStatusQuery), handle.describe()]);
        if (g.json) printJson({ ok: true, workflowId: handle.workflowId, state: description.status.name, status });
        else process.stdout.write(`${renderReleaseStatus(status, handle.workflowId)}\n`);
        if (status.phase === 'done') process.exitCode = status.outcome === 'released' ? 0 : 1;
      });
    });

  for (const act of ['approve', 'reject'] as const) {
    keyOptions(
      release
        .command(`${act} <deployment>`)
        .description(`${act} the gate the release waits at (the release approval, a restore of the database, a forward fix), signed`)
        .option('--comment <text>', 'why, for the record (signed)'),
    ).action(async (dep: string, opts: { key?: string; by?: string; comment?: string }) => {
      const deployment = parseDeployment(dep);
      if (opts.comment !== undefined && opts.comment.length > 1000) throw new UsageError(`--comment: expected text of at most 1000 characters, found ${opts.comment.length} characters`);
      await run(async (c, g) => {
        const handle = await handleFor(c, deployment);
        const gate = await decideRelease(c, handle, act, resolveSigner(c, opts), opts.comment);
        if (g.json) printJson({ ok: true, workflowId: handle.workflowId, gate });
        else process.stdout.write(`gate '${gate.name}' ${gate.outcome} by ${gate.by} (key ${gate.fingerprint})${gate.closedAt ? ` at ${gate.closedAt}` : ''}\n`);
      });
    });
  }

  keyOptions(
    release
      .command('abort <deployment>')
      .description('abort the release, signed: before the migration nothing changes; after it, the Deployment rolls back and the database follows its policy')
      .option('--reason <text>', 'why, for the record (signed)'),
  ).action(async (dep: string, opts: { key?: string; by?: string; reason?: string }) => {
    const deployment = parseDeployment(dep);
    if (opts.reason !== undefined && opts.reason.length > 1000) throw new UsageError(`--reason: expected text of at most 1000 characters, found ${opts.reason.length} characters`);
    await run(async (c, g) => {
      const handle = await handleFor(c, deployment);
      const act = await abortRun(c, 'release', handle.workflowId, resolveSigner(c, opts), opts.reason);
      if (g.json) printJson({ ok: true, workflowId: handle.workflowId, aborted: true, by: act.principal });
      else process.stdout.write(`abort accepted from ${act.principal} (key ${act.fingerprint}): runbook release status ${deployment}\n`);
    });
  });
}
