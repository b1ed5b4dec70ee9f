import type { Command } from 'commander';
import { WorkflowExecutionAlreadyStartedError, WorkflowHandle, WorkflowNotFoundError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { parseDuration } from '../config/duration';
import type { AnalysisSpec, CompareSpec } from '../workflows/lib/analysis';
import type { PodTemplateChange } from '../activities/kubernetes';
import { RollbackResult, validateRollbackInput } from '../workflows/rollback';
import { abortUpdate, describeStep, promoteUpdate, RolloutInput, RolloutResult, RolloutStatus, rolloutStatusQuery, RolloutStep, validateRolloutInput } from '../workflows/rollout';
import { ConnectedClient, failureMessage, startRunbook } from './client';
import { checkPlanFlags, MARKDOWN_HELP, PLAN_FLAG, PLAN_HELP, printPlan, runPlan } from './plan';
import { GlobalOptions, printJson, shown, UsageError, withClient } from './common';
import { openGate, resolveSigner, runIdOf, signAct, Signer, signStart } from './sign';
import { waitWithProgress } from './progress';

const DEPLOYMENT = /^[a-z0-9]([-a-z0-9]{0,54}[a-z0-9])?$/;

function parseDeployment(value: string): string {
  if (!DEPLOYMENT.test(value)) throw new UsageError(`DEPLOYMENT: expected a Deployment name (lower-case letters, digits and -, at most 56 characters), found ${shown(value)}`);
  return value;
}

/** One rollout per Deployment and environment at a time: the workflow id says which. */
export function rolloutWorkflowId(environment: string, deployment: string): string {
  return `rollout-${environment}-${deployment}`;
}

/** "25,pause,50,pause:10m,analysis" as rollout steps. */
export function parseSteps(spec: string): RolloutStep[] {
  return spec.split(',').map((raw, i) => {
    const part = raw.trim();
    if (/^\d+%?$/.test(part)) return { setWeight: Number(part.replace('%', '')) };
    if (part === 'pause') return { pause: {} };
    const bake = /^pause[:=](.+)$/.exec(part);
    if (bake) {
      const ms = parseDuration(bake[1]);
      if (ms === undefined || ms < 1000) throw new UsageError(`--steps: step ${i + 1} ${shown(part)}: expected a bake time such as pause:10m`);
      return { pause: { durationSeconds: Math.round(ms / 1000) } };
    }
    if (part === 'analysis') return { analysis: {} };
    if (part === 'compare') return { compare: {} };
    throw new UsageError(`--steps: step ${i + 1} is ${shown(part)}; expected a weight (25), pause, pause:<duration>, analysis or compare, separated by commas`);
  });
}

export function readAnalysis(file: string, flag = '--analysis'): AnalysisSpec {
  return readYamlFile<AnalysisSpec>(file, flag);
}

/** A YAML or JSON file an option names (an analysis, a comparison, a pod-template change). */
export function readYamlFile<T>(file: string, flag: string): T {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${flag}: cannot read ${shown(file)}: ${(err as Error).message}`);
  }
  try {
    return parse(text) as T;
  } catch (err) {
    throw new UsageError(`${flag}: ${shown(file)} is not YAML or JSON: ${(err as Error).message}`);
  }
}

/** The workflow's own input check, run before anything is started, so bad input is exit 2 with the field named. */
export function checked<T>(validate: (v: unknown) => T, input: unknown): T {
  try {
    return validate(input);
  } catch (err) {
    if (err instanceof ApplicationFailure) throw new UsageError(err.message);
    throw err;
  }
}

function reasonOf(reason: string | undefined, flag = '--comment'): string | undefined {
  if (reason !== undefined && reason.length > 1000) throw new UsageError(`${flag}: expected text of at most 1000 characters, found ${reason.length} characters`);
  return reason;
}

const keyOptions = (cmd: Command) =>
  cmd
    .option('--key <file>', 'your SSH key that signs (default: $RUNBOOK_SIGNING_KEY, then signing.key in the config)')
    .option('--by <principal>', "the principal your key is listed for (default: the allowed signers' entry for the key)");

/** Signs and sends promote (the open pause), promote-full, or abort to a rollout; a refusal comes back at once. */
export async function actOnRollout(c: ConnectedClient, handle: WorkflowHandle, act: 'promote' | 'promote-full' | 'abort', signer: Signer, reason?: string): Promise<RolloutStatus> {
  const gate = act === 'promote' ? (await openGate(handle)).gate.id : act === 'promote-full' ? 'promote-full' : 'run';
  const signed = await signAct(c, signer, { runbook: 'rollout', workflowId: handle.workflowId, runId: await runIdOf(handle), gate, act, reason });
  return operatorUpdate(() => handle.executeUpdate(act === 'abort' ? abortUpdate : promoteUpdate, { args: [signed] }), act === 'promote-full' ? 'promote --full' : act === 'promote' ? 'approve' : 'abort');
}

export function renderStatus(s: RolloutStatus, workflowId: string): string {
  const lines = [
    `rollout of ${s.deployment} to ${s.image} (${s.strategy}, workflow ${workflowId})`,
    `  phase ${s.phase}${s.outcome ? `: ${s.outcome}` : ''}${s.reason ? ` (${s.reason})` : ''}`,
    `  weight ${s.weight}%  replicas stable ${s.replicas.stable} canary ${s.replicas.canary} of ${s.replicas.total}`,
  ];
  s.steps.forEach((step, i) => {
    const mark = s.currentStep === i ? '>' : s.currentStep !== undefined && i < s.currentStep ? 'x' : s.phase === 'done' || s.phase === 'promoting' ? (s.outcome === 'promoted' || s.phase === 'promoting' ? 'x' : ' ') : ' ';
    lines.push(`  [${mark}] ${i + 1}. ${describeStep(step)}`);
  });
  if (s.waitingFor) lines.push(`  waiting for ${s.waitingFor}`);
  for (const g of s.approvals) {
    lines.push(`  gate '${g.name}': ${g.outcome}${g.by ? ` by ${g.by}` : ''}${g.fingerprint ? ` (key ${g.fingerprint})` : ''}${g.reason ? ` ("${g.reason}")` : ''}${g.closedAt ? ` at ${g.closedAt}` : ''}; ${g.approvals.length} of ${g.required} approval(s)`);
    for (const x of g.ignored) lines.push(`    refused (claimed by ${x.by}): ${x.problem}`);
  }
  for (const a of s.analyses) {
    const last = a.measurements[a.measurements.length - 1];
    lines.push(`  analysis '${a.name}': ${a.reason ?? (a.passed ? 'passed' : `${Object.values(a.failures).reduce((x, y) => x + y, 0)} failed measurement(s) so far`)}`);
    for (const r of last?.results ?? []) lines.push(`    ${r.phase.padEnd(6)} ${r.name}: ${r.detail}`);
  }
  if (s.background) lines.push(`  background analysis: ${s.background.measurements.length ? `${Object.values(s.background.failures).reduce((x, y) => x + y, 0)} failed, ${Object.values(s.background.inconclusive ?? {}).reduce((x, y) => x + y, 0)} without data` : 'not measured yet'}`);
  for (const j of s.comparisons ?? []) {
    lines.push(`  comparison at step ${j.step}: ${j.verdict}${j.score !== undefined ? ` (score ${j.score})` : ''}: ${j.reason}`);
    for (const m of j.metrics) lines.push(`    ${m.result.padEnd(6)} ${m.name}: ${m.reason}`);
  }
  if (s.autoscaler) {
    const a = s.autoscaler;
    lines.push(`  autoscaler ${a.name}: ${a.original.minReplicas}-${a.original.maxReplicas}${a.bounds ? `, held at ${a.bounds.minReplicas}-${a.bounds.maxReplicas} for the stable share` : ''}${a.restored ? ', restored' : ''}; the canary followed it ${a.follows.length} time(s)`);
  }
  if (s.gitops) lines.push(`  managed by ${s.gitops.tool} (${s.gitops.marker}); policy ${s.gitops.policy}`);
  if (s.rollback) lines.push(`  rollback ${s.rollback.workflowId}${s.rollback.error ? `: FAILED ${s.rollback.error}` : s.rollback.verified !== undefined ? `: verified ${s.rollback.verified ?? 'without analysis'}` : ''}`);
  if (s.promotedFull) lines.push(`  promoted in full by ${s.promotedFull.by} at ${s.promotedFull.at}`);
  return lines.join('\n');
}

function describeResult(r: RolloutResult, workflowId: string): string {
  const head =
    r.outcome === 'promoted'
      ? `rollout promoted: ${r.deployment} runs ${r.image} (revision ${r.revision})`
      : r.outcome === 'unchanged'
        ? `rollout unchanged: ${r.reason}`
        : `rollout ${r.outcome.toUpperCase()}: ${r.reason}; ${r.deployment} runs ${r.finalImages.map((c) => c.image).join(', ')}`;
  return `${head}\n${renderStatus(r.status, workflowId)}`;
}

async function handleFor(c: ConnectedClient, deployment: string): Promise<WorkflowHandle> {
  const id = rolloutWorkflowId(c.environment, deployment);
  const handle = c.client.workflow.getHandle(id);
  try {
    await handle.describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new UsageError(`no rollout of ${deployment} in environment ${c.environment} (workflow ${id}); start one with: runbook rollout start ${deployment} --image IMAGE`);
    throw err;
  }
  return handle;
}

async function operatorUpdate<T>(fn: () => Promise<T>, what: string): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const cause = (err as { cause?: Error }).cause;
    throw new UsageError(`${what} refused: ${cause?.message ?? (err as Error).message}`);
  }
}

/** Starts a rollout; with a signer, the start is signed (the requester, whom four-eyes keeps from approving). */
export async function startRollout(c: ConnectedClient, input: RolloutInput, signer?: Signer): Promise<{ handle: WorkflowHandle; workflowId: string }> {
  checked(validateRolloutInput, input);
  const workflowId = rolloutWorkflowId(c.environment, input.deployment);
  if (signer) {
    const plain = JSON.parse(JSON.stringify({ ...input, start: undefined })) as Record<string, unknown>;
    input = { ...(plain as unknown as RolloutInput), start: await signStart(c, signer, 'rollout', workflowId, plain) };
  }
  try {
    const { handle } = await startRunbook(c, 'rollout', [input], { workflowId, target: input.deployment });
    return { handle, workflowId };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new UsageError(`a rollout of ${input.deployment} is already running (workflow ${workflowId}); see runbook rollout status ${input.deployment}, or abort it first`);
    }
    throw err;
  }
}

export function registerRollout(program: Command, globals: () => GlobalOptions): void {
  const rollout = program.command('rollout').description('gated progressive rollouts of Kubernetes Deployments: canary steps, approvals, analysis, automatic rollback');
  const run = <T>(fn: (c: ConnectedClient, g: GlobalOptions) => Promise<T>): Promise<T> => {
    const g = globals();
    return withClient(g, (c) => fn(c, g));
  };

  rollout
    .command('start <deployment>')
    .description('start a rollout; it pauses at each pause step until an approver promotes it')
    .option('--image <image>', 'the new image, with a tag or digest (registry/app:1.2.3)')
    .option('--container <name>', 'which container gets the image (default: the first)')
    .option('--change <file>', 'any other pod-template change (YAML or JSON): containers [{ name, image, env }], podAnnotations, or a whole template')
    .option('--strategy <strategy>', 'canary (a <name>-canary Deployment stepped through weights) or rolling (the Deployment itself, in batches)', 'canary')
    .option('--steps <spec>', 'comma-separated steps: a weight (25), pause (wait for approval), pause:<duration> (bake), analysis, compare; default 25,pause,50,pause for canary, pause for rolling')
    .option('--analysis <file>', 'analysis template (YAML or JSON): intervalSeconds, count, failureLimit, inconclusiveLimit, http, prometheus, pods')
    .option('--background-analysis <file>', 'an analysis measured all through every pause and bake; a failure rolls back at once')
    .option('--comparison <file>', 'canary-versus-stable comparison for compare steps: metrics [{ name, address, query with {{track}} }], windowSeconds, minSamples, thresholds')
    .option('--health-timeout <duration>', 'how long each change may take to become healthy', '5m')
    .option('--gate-timeout <duration>', 'how long a pause waits for approval (default: kubernetes.rollout.gateTimeout from config)')
    .option('--on-gate-timeout <policy>', 'rollback or remind (default: kubernetes.rollout.onGateTimeout from config)')
    .option('--wait', 'wait for the rollout to finish, showing progress (exit 0 only if promoted)')
    .option('--key <file>', 'your SSH key that signs the start (default: $RUNBOOK_SIGNING_KEY, then signing.key in the config)')
    .option('--by <principal>', "the principal your key is listed for (default: the allowed signers' entry for the key)")
    .option(PLAN_FLAG, PLAN_HELP)
    .option('--markdown', MARKDOWN_HELP)
    .action(async (dep: string, opts: { image?: string; container?: string; change?: string; strategy: string; steps?: string; analysis?: string; backgroundAnalysis?: string; comparison?: string; healthTimeout: string; gateTimeout?: string; onGateTimeout?: string; wait?: boolean; key?: string; by?: string; plan?: boolean; markdown?: boolean }) => {
      checkPlanFlags(opts);
      const deployment = parseDeployment(dep);
      const seconds = (flag: string, v: string | undefined) => {
        if (v === undefined) return undefined;
        const ms = parseDuration(v);
        if (ms === undefined || ms < 1000) throw new UsageError(`${flag}: expected a duration such as 30s, 10m or 4h, found ${shown(v)}`);
        return Math.round(ms / 1000);
      };
      if (opts.strategy !== 'canary' && opts.strategy !== 'rolling') throw new UsageError(`--strategy: expected canary or rolling, found ${shown(opts.strategy)}`);
      if (opts.onGateTimeout !== undefined && opts.onGateTimeout !== 'rollback' && opts.onGateTimeout !== 'remind') throw new UsageError(`--on-gate-timeout: expected rollback or remind, found ${shown(opts.onGateTimeout)}`);
      const steps = opts.steps ? parseSteps(opts.steps) : undefined;
      const analysis = opts.analysis ? readAnalysis(opts.analysis) : undefined;
      if (opts.image === undefined && opts.change === undefined) throw new UsageError('--image: give the new image (--image registry/app:1.2.3), or another change of the pod template (--change FILE)');
      await run(async (c, g) => {
        const input: RolloutInput = {
          environment: c.environment,
          deployment,
          image: opts.image,
          container: opts.container,
          change: opts.change ? readYamlFile<PodTemplateChange>(opts.change, '--change') : undefined,
          strategy: opts.strategy as 'canary' | 'rolling',
          steps,
          analysis,
          backgroundAnalysis: opts.backgroundAnalysis ? readAnalysis(opts.backgroundAnalysis, '--background-analysis') : undefined,
          comparison: opts.comparison ? readYamlFile<CompareSpec>(opts.comparison, '--comparison') : undefined,
          healthTimeoutSeconds: seconds('--health-timeout', opts.healthTimeout),
          gateTimeoutSeconds: seconds('--gate-timeout', opts.gateTimeout),
          onGateTimeout: opts.onGateTimeout as 'rollback' | 'remind' | undefined,
        };
        if (opts.plan) return printPlan(await runPlan(c, 'rollout', checked(validateRolloutInput, input)), { json: g.json, markdown: opts.markdown });
        const signer = resolveSigner(c, opts);
        const { handle, workflowId } = await startRollout(c, input, signer);
        if (!g.json) process.stderr.write(`rollout started by ${signer.principal}: workflow ${workflowId}\nfollow with: runbook rollout status ${deployment} --watch; approve with: runbook rollout approve ${deployment} --key YOUR_KEY\n`);
        if (!opts.wait) return g.json ? printJson({ ok: true, workflowId }) : process.stdout.write(`${workflowId}\n`);
        try {
          const r = await waitWithProgress<RolloutResult>(handle, !g.json);
          if (g.json) printJson({ ok: r.outcome === 'promoted' || r.outcome === 'unchanged', workflowId, result: r });
          else process.stdout.write(`${describeResult(r, workflowId)}\n`);
          process.exitCode = r.outcome === 'promoted' || r.outcome === 'unchanged' ? 0 : 1;
        } catch (err) {
          if (g.json) printJson({ ok: false, workflowId, error: failureMessage(err) });
          else process.stdout.write(`rollout FAILED (workflow ${workflowId}): ${failureMessage(err)}\n`);
          process.exitCode = 1;
        }
      });
    });

  rollout
    .command('status <deployment>')
    .description('where the rollout of a Deployment is: step, weights, replicas, analyses, approvals, what it waits for')
    .option('--watch', 'keep showing the status until the rollout ends')
    .action(async (dep: string, opts: { watch?: boolean }) => {
      const deployment = parseDeployment(dep);
      await run(async (c, g) => {
        const handle = await handleFor(c, deployment);
        let last = '';
        for (;;) {
          const [status, description] = await Promise.all([handle.query(rolloutStatusQuery), handle.describe()]);
          const text = renderStatus(status, handle.workflowId);
          if (g.json) printJson({ ok: true, workflowId: handle.workflowId, state: description.status.name, status });
          else if (text !== last) process.stdout.write(`${opts.watch ? `--- ${new Date().toISOString()}\n` : ''}${text}\n`);
          last = text;
          if (!opts.watch || description.status.name !== 'RUNNING' || g.json) {
            if (status.phase === 'done') process.exitCode = status.outcome === 'promoted' || status.outcome === 'unchanged' ? 0 : 1;
            return;
          }
          await new Promise((r) => setTimeout(r, 1000));
        }
      });
    });

  keyOptions(
    rollout
      .command('approve <deployment>')
      .description('approve the pause the rollout waits at, signed (refused at once unless your key is allowed and you are an approver)')
      .option('--comment <text>', 'why, for the record (signed)'),
  ).action(async (dep: string, opts: { key?: string; by?: string; comment?: string }) => {
    const deployment = parseDeployment(dep);
    const reason = reasonOf(opts.comment);
    await run(async (c, g) => {
      const handle = await handleFor(c, deployment);
      const s = await actOnRollout(c, handle, 'promote', resolveSigner(c, opts), reason);
      const gate = s.approvals[s.approvals.length - 1];
      if (g.json) printJson({ ok: true, gate, status: s });
      else process.stdout.write(gate?.outcome === 'waiting' ? `approval by ${gate.by} (key ${gate.fingerprint}) counted: ${gate.approvals.length} of ${gate.required}; gate '${gate.name}' still waiting\n` : `gate '${gate?.name}' approved by ${gate?.by} (key ${gate?.fingerprint}) at ${gate?.closedAt}\n`);
    });
  });

  keyOptions(
    rollout
      .command('promote <deployment>')
      .description('approve the current pause; with --full, sign for skipping every remaining step (the policy may need several people)')
      .option('--comment <text>', 'why, for the record (signed)')
      .option('--full', 'skip the remaining steps'),
  ).action(async (dep: string, opts: { key?: string; by?: string; comment?: string; full?: boolean }) => {
    const deployment = parseDeployment(dep);
    const reason = reasonOf(opts.comment);
    await run(async (c, g) => {
      const handle = await handleFor(c, deployment);
      const signer = resolveSigner(c, opts);
      const s = await actOnRollout(c, handle, opts.full ? 'promote-full' : 'promote', signer, reason);
      if (g.json) printJson({ ok: true, status: s });
      else if (opts.full && !s.promotedFull) process.stdout.write(`promote --full by ${signer.principal} counted (${s.fullPromoteVotes?.length ?? 0} signed); more approvers must sign promote --full\n`);
      else process.stdout.write(`${opts.full ? 'promoted in full' : 'promoted'} by ${signer.principal}\n`);
    });
  });

  keyOptions(
    rollout
      .command('abort <deployment>')
      .description('abort the rollout, signed: it rolls back and ends as aborted')
      .option('--reason <text>', 'why, for the record (signed)'),
  ).action(async (dep: string, opts: { key?: string; by?: string; reason?: string }) => {
    const deployment = parseDeployment(dep);
    const reason = reasonOf(opts.reason, '--reason');
    await run(async (c, g) => {
      const handle = await handleFor(c, deployment);
      await actOnRollout(c, handle, 'abort', resolveSigner(c, opts), reason);
      if (g.json) printJson({ ok: true, workflowId: handle.workflowId, aborted: true });
      else process.stdout.write(`abort accepted: ${deployment} is rolling back (runbook rollout status ${deployment} --watch)\n`);
    });
  });

  rollout
    .command('list')
    .description('running rollouts of this environment: phase, weight and what each waits for')
    .action(async () => {
      await run(async (c, g) => {
        const rows: { workflowId: string; deployment: string; phase: string; weight: number; waitingFor?: string; startedAt?: string }[] = [];
        for await (const w of c.client.workflow.list({ query: `WorkflowType = 'rollout' AND ExecutionStatus = 'Running' AND WorkflowId STARTS_WITH 'rollout-${c.environment}-'` })) {
          const s = await c.client.workflow.getHandle(w.workflowId).query(rolloutStatusQuery).catch(() => undefined);
          rows.push({ workflowId: w.workflowId, deployment: s?.deployment ?? w.workflowId.slice(`rollout-${c.environment}-`.length), phase: s?.phase ?? '?', weight: s?.weight ?? 0, waitingFor: s?.waitingFor, startedAt: w.startTime.toISOString() });
        }
        if (g.json) return printJson({ ok: true, rollouts: rows });
        if (rows.length === 0) return process.stdout.write(`no rollout is running in ${c.environment}\n`);
        for (const r of rows) process.stdout.write(`${r.deployment.padEnd(24)} ${r.phase.padEnd(12)} ${String(r.weight).padStart(3)}%  ${r.waitingFor ? `waiting for ${r.waitingFor}` : ''}\n`);
      });
    });

  program
    .command('rollback <deployment>')
    .description('return a Deployment to its previous revision (or --to-revision N, or --to-image X), wait healthy, verify')
    .option('--to-revision <n>', 'the ReplicaSet revision to go back to')
    .option('--to-image <image>', 'set the container to this image instead')
    .option('--container <name>', 'with --to-image: which container (default: the first)')
    .option('--analysis <file>', 'verify with this analysis template after the rollback')
    .option('--health-timeout <duration>', 'how long the Deployment may take to become healthy', '5m')
    .option('--reason <text>', 'why, for the record')
    .option(PLAN_FLAG, PLAN_HELP)
    .option('--markdown', MARKDOWN_HELP)
    .action(async (dep: string, opts: { toRevision?: string; toImage?: string; container?: string; analysis?: string; healthTimeout: string; reason?: string; plan?: boolean; markdown?: boolean }) => {
      checkPlanFlags(opts);
      const deployment = parseDeployment(dep);
      const revision = opts.toRevision === undefined ? undefined : Number(opts.toRevision);
      if (revision !== undefined && !(Number.isInteger(revision) && revision >= 1)) throw new UsageError(`--to-revision: expected a revision number, found ${shown(opts.toRevision!)}`);
      const ms = parseDuration(opts.healthTimeout);
      if (ms === undefined) throw new UsageError(`--health-timeout: expected a duration such as 5m, found ${shown(opts.healthTimeout)}`);
      const analysis = opts.analysis ? readAnalysis(opts.analysis) : undefined;
      await run(async (c, g) => {
        const requestedBy = process.env.RUNBOOK_OPERATOR ?? process.env.USER;
        const input = checked(validateRollbackInput, {
          environment: c.environment,
          deployment,
          toRevision: revision,
          toImage: opts.toImage,
          container: opts.container,
          analysis,
          healthTimeoutSeconds: Math.round(ms / 1000),
          reason: opts.reason,
          requestedBy: requestedBy && /^[A-Za-z0-9._@+-]{1,128}$/.test(requestedBy) ? requestedBy : undefined,
        });
        if (opts.plan) return printPlan(await runPlan(c, 'rollback', input), { json: g.json, markdown: opts.markdown });
        const { handle, workflowId } = await startRunbook(c, 'rollback', [input], { target: deployment });
        try {
          const r = await waitWithProgress<RollbackResult>(handle, !g.json);
          if (g.json) printJson({ ok: true, workflowId, result: r });
          else {
            const imgs = (x: { images: { image: string }[] }) => x.images.map((i) => i.image).join(', ');
            process.stdout.write(`rollback ${r.changed ? 'done' : 'not needed'}: ${deployment} revision ${r.from.revision} (${imgs(r.from)}) -> ${r.to.revision} (${imgs(r.to)}); verified: ${r.verified === null ? 'no analysis given' : r.verified} (workflow ${workflowId})\n`);
          }
        } catch (err) {
          if (g.json) printJson({ ok: false, workflowId, error: failureMessage(err) });
          else process.stdout.write(`rollback FAILED (workflow ${workflowId}): ${failureMessage(err)}\n`);
          process.exitCode = 1;
        }
      });
    });
}
