import { allHandlersFinished, ApplicationFailure, condition, defineQuery, defineSignal, defineUpdate, log, patched, proxyActivities, proxySinks, setHandler, uuid4, workflowInfo } from '@temporalio/workflow';
import type { AuditActivities } from '../activities/audit';
import type { CheckActivities } from '../activities/checks';
import type { createVisibilityActivities, ProvingRun } from '../activities/visibility';
import { Attestation, attestationDays, attestationProblem, recordAttestation } from '../checklist/attestation';
import { parseStatement, SignedStatement } from '../identity/statement';
import { Gates } from './lib/gate';
import { CHECKLIST, CheckId, CheckInput, CheckResult, ChecklistItem, checksInUse, combineChecks, DEFAULT_RPO_WINDOW_MS, ItemStatus, runProofKey, runProofsInUse, RUN_REQUIREMENTS, SECTIONS } from '../checklist/catalog';
import { AuditItemResult, coverageOf, ReadinessReport, renderAuditHtml, renderAuditMarkdown, scoreOf } from '../reports/audit';
import { PERMANENT_FAILURES } from './lib/failures';
import { describe, ENVIRONMENT_NAME, InputChecker } from './lib/input';
import type { RunbookSinks } from './lib/sinks';
import { runRunbook, Timeline, TimelineSnapshot } from './lib/timeline';

// Reads of config, visibility and the bucket: quick, retried a few times.
const inspect = proxyActivities<AuditActivities & ReturnType<typeof createVisibilityActivities>>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
});
// Writing an attestation or the report: idempotent puts of the same key.
const write = proxyActivities<AuditActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 5, nonRetryableErrorTypes: PERMANENT_FAILURES },
});

const sinks = proxySinks<RunbookSinks>();

/**
 * Audits started before Temporal's own checks read their real targets (its membership, its persistence
 * database and replica) and before configuration backups had a runbook ran these checks and looked up
 * these runbooks, in this order; replaying such a run keeps them (the two retired checks now answer
 * unknown, as an unregistered activity).
 */
const TEMPORAL_TARGETS_PATCH = 'temporal-checks-read-their-targets';
const RESTORE_TESTED_PATCH = 'database-backups-need-a-restore-test';
/** alert-queue-buildup and alert-resources read the alert rules Prometheus has loaded, histogram-buckets its latency histograms. */
const ALERT_CHECKS_PATCH = 'queue-and-resource-alert-checks';
const ALERT_CHECKS: readonly CheckId[] = ['checkAlertQueueBuildup', 'checkAlertResources', 'checkHistogramBuckets'];
/** The load items are proved by loadTest runs whose phases held their SLAs; audits started before read no loadTest run. */
const LOAD_TEST_PROOFS_PATCH = 'load-items-proved-by-load-tests';
const CHECKS_BEFORE_TEMPORAL_TARGETS = [
  'checkTemporalVersion', 'checkKubernetesReplicas', 'checkTemporalPersistence', 'checkPostgresVersion', 'checkTemporalVisibilityStore', 'checkNamespaceArchival',
  'checkTemporalTls', 'checkTemporalMtls', 'checkKubernetesNetworkPolicies', 'checkDnsRecords', 'checkPostgresConnections', 'checkPostgresTimeouts', 'checkPostgresReplica',
  'checkRecentBackups', 'checkTemporalNamespace', 'checkNamespaceRetention', 'checkKubernetesCpuLimits', 'checkKubernetesMemoryLimits', 'checkKubernetesHpa', 'checkKubernetesPdb',
  'checkKubernetesLivenessProbes', 'checkKubernetesReadinessProbes', 'checkWorkerHealth', 'checkKubernetesStartupProbes', 'checkQueueIsolation', 'checkQueuePollers',
  'checkTemporalCertificate', 'checkTemporalTlsVersion', 'checkTemporalClientAuth', 'checkKubernetesSecretEnv', 'checkPrometheusTargets', 'checkPrometheusKeyMetrics',
  'checkPrometheusRetention', 'checkAlertServiceDown', 'checkAlertFailureRate', 'checkAlertLatency', 'checkRtoDefined', 'checkRpoDefined', 'checkHistoryShards',
] as CheckId[];
const RUNBOOKS_BEFORE_TEMPORAL_TARGETS = ['verifyBackup', 'drDrill', 'smokeTest', 'rollback'];

export interface ReadinessAuditInput {
  environment: string;
  /** Wait up to this long for attestations of items nobody has vouched for yet (default 0: report at once). */
  waitForAttestationsSeconds?: number;
  /** Each check reports unknown after this long (default 10). */
  checkTimeoutSeconds?: number;
  /** Checks run at the same time (default 4). */
  concurrency?: number;
  /** A serving certificate expiring within this many days fails (default 30). */
  certificateMinDays?: number;
}

export type ReadinessAuditResult = ReadinessReport & { runbook: 'readinessAudit'; reportKeys: string[]; timeline: TimelineSnapshot };

export interface AuditStatus {
  phase: 'loading' | 'checking' | 'waiting for attestations' | 'reporting' | 'done';
  /** Set once the audit has read who may attest; attestations are refused before that. */
  approvers?: string[];
  /** Attestable items without an attestation that counts. */
  pending: string[];
  attestations: Attestation[];
  waitUntil?: string;
}

/** The gate id an attestation statement names. */
export const ATTESTATION_GATE = 'attestations';
/**
 * Vouch for an item: a statement (act attest, gate attestations, the item, the comment as reason,
 * validForDays) signed by an approver; refused at once unless it verifies and the item is attestable.
 */
export const attestUpdate = defineUpdate<Attestation, [SignedStatement]>('attest');
/** Fire-and-forget form; a refused one is kept in the report with the reason. */
export const attestSignal = defineSignal<[SignedStatement]>('attest');
/** Stop waiting for attestations and report now. */
export const closeAttestationsSignal = defineSignal<[{ by?: string }]>('closeAttestations');
export const auditStatusQuery = defineQuery<AuditStatus>('auditStatus');

export function validateReadinessAuditInput(input: unknown): ReadinessAuditInput {
  const check = InputChecker.of('readinessAudit', input);
  check.matches('environment', ENVIRONMENT_NAME, 'an environment name');
  const v = check.value;
  const range = (field: string, min: number, max: number) => {
    const x = v[field];
    if (x !== undefined && (typeof x !== 'number' || !Number.isFinite(x) || x < min || x > max)) check.problem(`${field}: expected a number from ${min} to ${max}, found ${describe(x)}`);
  };
  range('waitForAttestationsSeconds', 0, 7 * 86_400);
  range('checkTimeoutSeconds', 1, 120);
  range('concurrency', 1, 16);
  range('certificateMinDays', 0, 365);
  if (v.concurrency !== undefined && !Number.isInteger(v.concurrency)) check.problem(`concurrency: expected a whole number, found ${describe(v.concurrency)}`);
  check.done();
  return v as unknown as ReadinessAuditInput;
}

/** Runs fn over items, at most limit at a time, keeping the order of results. */
async function bounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

const daysText = (ms: number) => `${(ms / 86_400_000).toFixed(ms < 86_400_000 ? 2 : 1)} days`;

/**
 * The readiness audit: every checklist item proved by an automated check, by a recent run of one of
 * this project's runbooks, or by a person's attestation; a report grouped by the checklist's sections
 * with a score per section, written next to the backups and exported as a metric.
 */
export async function readinessAudit(rawInput: ReadinessAuditInput): Promise<ReadinessAuditResult> {
  const input = validateReadinessAuditInput(rawInput);
  const { workflowId } = workflowInfo();
  const status: AuditStatus = { phase: 'loading', pending: [], attestations: [] };
  const current = new Map<string, Attestation>();
  const expired = new Map<string, Attestation>();
  const refused: ReadinessReport['refusedAttestations'] = [];
  let closed = false;
  let writes: Promise<unknown> = Promise.resolve();
  const attestable = CHECKLIST.filter((i) => i.proof.kind === 'attested').map((i) => i.id);
  const refresh = () => {
    status.pending = attestable.filter((id) => !current.has(id));
    status.attestations = [...current.values()];
  };

  const gates = new Gates('readinessAudit', input.environment);
  const DAY = 86_400_000;
  /** Verifies a signed attestation for this run: signature, key, approver, item, validity; returns the record it makes. */
  const judgeNew = (r: SignedStatement): Attestation => {
    if (!status.approvers) throw new Error('the audit has not read its configuration yet; try again in a moment');
    if (status.phase === 'reporting' || status.phase === 'done') throw new Error('the audit is writing its report; attestations are closed');
    const st = parseStatement(String((r as Partial<SignedStatement> | null)?.statement ?? ''));
    const v = gates.verifyAct(r, ATTESTATION_GATE, ['attest'], status.approvers, { item: st.item ?? '(none)' });
    const request = { item: v.statement.item ?? '', by: v.principal, comment: v.statement.reason, validForDays: v.statement.validForDays };
    const p = attestationProblem(request, status.approvers, gates.rules.attestationMaxDays[request.item]);
    if (p) throw new Error(p);
    const info = workflowInfo();
    return recordAttestation(request, Date.now(), workflowId, { runId: info.runId, fingerprint: v.fingerprint, statement: r.statement, signature: r.signature }, gates.rules.attestationMaxDays[request.item]);
  };
  /**
   * A kept attestation counts only if its signed statement still verifies: the signature, a key still in
   * the allowed signers, a principal still on the approver list, the item, and a validity within the
   * item's and the policy's limits counted from when it was signed. Anything else is refused, with why.
   */
  const judgeStored = (raw: unknown, now: number): { ok: Attestation } | { expired: Attestation } | { refused: ReadinessReport['refusedAttestations'][number] } => {
    const a = (raw ?? {}) as Partial<Attestation> & { key?: string };
    const keyItem = typeof a.key === 'string' ? a.key.replace(/^.*\//, '').replace(/\.json$/, '') : '?';
    const refuse = (problem: string) => ({ refused: { by: String(a.by ?? '?').slice(0, 128), item: keyItem.slice(0, 64), at: String(a.at ?? '?').slice(0, 40), problem: `stored attestation refused: ${problem}`.slice(0, 300) } });
    if (typeof a.statement !== 'string' || typeof a.signature !== 'string') return refuse('unsigned (no signed statement kept with it)');
    try {
      const st = parseStatement(a.statement);
      if (st.item !== keyItem) return refuse(`the statement is for ${st.item}, kept as ${keyItem}`);
      const v = gates.verify({ statement: a.statement, signature: a.signature }, ATTESTATION_GATE, ['attest'], { item: keyItem, maxAgeMs: 3660 * DAY, anyRun: { workflowId: st.workflowId, runId: st.runId } });
      if (!status.approvers!.includes(v.principal)) return refuse(`${v.principal} is no longer allowed to attest (not on the approver list)`);
      const p = attestationProblem({ item: keyItem, by: v.principal, comment: v.statement.reason, validForDays: v.statement.validForDays }, status.approvers!, gates.rules.attestationMaxDays[keyItem]);
      if (p) return refuse(p);
      const signedAt = Date.parse(v.statement.at);
      const record: Attestation = {
        item: keyItem,
        by: v.principal,
        comment: v.statement.reason,
        at: new Date(signedAt).toISOString(),
        expiresAt: new Date(signedAt + attestationDays(keyItem, v.statement.validForDays, gates.rules.attestationMaxDays[keyItem]) * DAY).toISOString(),
        workflowId: st.workflowId,
        runId: st.runId,
        fingerprint: v.fingerprint,
        statement: a.statement,
        signature: a.signature,
      };
      return Date.parse(record.expiresAt) > now ? { ok: record } : { expired: record };
    } catch (err) {
      return refuse((err as Error).message);
    }
  };
  const accept = async (r: SignedStatement): Promise<Attestation> =>
    gates.serialised(async () => {
      await gates.refresh();
      let a: Attestation;
      try {
        a = judgeNew(r);
      } catch (err) {
        gates.ignore('decide', r, (err as Error).message);
        throw ApplicationFailure.create({ type: 'DecisionRefused', message: (err as Error).message, nonRetryable: true });
      }
      current.set(a.item, a);
      expired.delete(a.item);
      refresh();
      // One write at a time, in the order accepted, so the newest attestation of an item is the one kept.
      const saved = writes.then(() => write.saveAttestation(a));
      writes = saved.catch(() => undefined);
      await saved;
      return a;
    });
  setHandler(auditStatusQuery, () => ({ ...status, pending: [...status.pending], attestations: [...status.attestations] }));
  setHandler(attestUpdate, accept, {
    validator: (r) => {
      judgeNew(r);
    },
  });
  setHandler(attestSignal, async (r) => {
    try {
      judgeNew(r);
    } catch (err) {
      const p = (err as Error).message;
      let item = '?';
      try {
        item = parseStatement(String(r?.statement)).item ?? '?';
      } catch {
        /* a malformed statement names no item */
      }
      log.warn('attestation refused', { problem: p.slice(0, 300) });
      refused.push({ by: '?', item: item.slice(0, 64), at: new Date(Date.now()).toISOString(), problem: p.slice(0, 300) });
      return;
    }
    await accept(r).catch((err) => log.warn('attestation not saved', { error: String(err) }));
  });
  setHandler(closeAttestationsSignal, () => {
    closed = true;
  });

  return runRunbook('readinessAudit', input.environment, async (timeline: Timeline) => {
    const auditId = `audit-${uuid4().replace(/-/g, '').slice(0, 12)}`;
    const startedAt = new Date(Date.now()).toISOString();

    const target = await timeline.step('load configuration and attestations', async (evidence) => {
      const t = await inspect.describeAuditTarget({ environment: input.environment });
      await gates.refresh();
      const stored = await inspect.loadAttestations();
      const now = Date.now();
      status.approvers = t.approvers;
      for (const raw of stored) {
        const j = judgeStored(raw, now);
        if ('refused' in j) refused.push(j.refused);
        else if ('expired' in j) {
          if (!current.has(j.expired.item)) expired.set(j.expired.item, j.expired);
        } else if (!current.has(j.ok.item)) current.set(j.ok.item, j.ok);
      }
      refresh();
      Object.assign(evidence, { approvers: t.approvers, attestationsKept: t.attestationsKept, storedAttestations: stored.length, expired: [...expired.keys()], refused: refused.map((r) => `${r.item}: ${r.problem}`) });
      return t;
    });

    status.phase = 'checking';
    const readsTargets = patched(TEMPORAL_TARGETS_PATCH);
    // database-backups needs a restore test of each database (checkRestoreTested): audits started before keep their checks.
    // The queue-buildup, resource-alert and histogram checks: audits started before them keep their checks too.
    const checkIds = readsTargets
      ? checksInUse().filter((id) => (id !== 'checkRestoreTested' || patched(RESTORE_TESTED_PATCH)) && (!ALERT_CHECKS.includes(id) || patched(ALERT_CHECKS_PATCH)))
      : CHECKS_BEFORE_TEMPORAL_TARGETS;
    const timeoutMs = (input.checkTimeoutSeconds ?? 10) * 1000;
    const checks = proxyActivities<CheckActivities>({
      // The check itself gives up at timeoutMs with `unknown`; this is the backstop for a lost worker.
      startToCloseTimeout: timeoutMs + 15_000,
      retry: { initialInterval: '1 second', maximumAttempts: 2, nonRetryableErrorTypes: PERMANENT_FAILURES },
    });
    const checkInput: CheckInput = { timeoutMs, certificateMinDays: input.certificateMinDays };
    const results = new Map<CheckId, CheckResult>();
    await timeline.step('automated checks', async (evidence) => {
      const found = await bounded(checkIds, input.concurrency ?? 4, async (id): Promise<CheckResult> => {
        try {
          return await checks[id](checkInput);
        } catch (err) {
          const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err);
          return { check: id, status: 'unknown', summary: `the check did not complete: ${cause}`, evidence: { error: cause }, durationMs: 0 };
        }
      });
      for (const r of found) results.set(r.check, r);
      const count = (st: CheckResult['status']) => found.filter((r) => r.status === st).length;
      Object.assign(evidence, { checks: found.length, pass: count('pass'), fail: count('fail'), unknown: count('unknown') });
    });

    // A rollback found by an audit started before requirements carries its Deployment at the top.
    const runs = new Map<string, (ProvingRun & { deployment?: string }) | null | { error: string }>();
    await timeline.step('runbook evidence', async (evidence) => {
      const wanted = readsTargets
        ? runProofsInUse().filter((p) => p.runbook !== 'loadTest' || patched(LOAD_TEST_PROOFS_PATCH))
        : RUNBOOKS_BEFORE_TEMPORAL_TARGETS.map((runbook) => {
            const requires = runbook === 'rollback' ? ('verifiedChange' as const) : undefined;
            return { key: runProofKey({ runbook, requires }), runbook, requires };
          });
      for (const p of wanted) {
        // A rollback proves rollback-tested only when it changed a Deployment and its analysis verified the
        // result; a load test proves a load item only when its phases held (RUN_REQUIREMENTS).
        runs.set(p.key, await inspect.lastSuccessfulRun({ runbook: p.runbook, ...(p.requires ? { requires: p.requires } : {}) }).catch((err: unknown) => ({ error: err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err) })));
      }
      Object.assign(evidence, Object.fromEntries(runs));
    });

    const waitMs = (input.waitForAttestationsSeconds ?? 0) * 1000;
    if (waitMs > 0 && status.pending.length > 0 && !closed) {
      await timeline.step('wait for attestations', async (evidence) => {
        status.phase = 'waiting for attestations';
        status.waitUntil = new Date(Date.now() + waitMs).toISOString();
        const before = current.size;
        const allIn = await condition(() => closed || status.pending.length === 0, waitMs);
        Object.assign(evidence, { received: current.size - before, stillPending: status.pending.length, ended: allIn ? (closed ? 'closed' : 'all attested') : 'deadline' });
      });
    } else {
      timeline.skip('wait for attestations', waitMs > 0 ? 'nothing pending' : 'not asked to wait');
    }
    status.phase = 'reporting';
    await writes;

    const now = Date.now();
    const rpoWindowMs = target.rpoMs ?? DEFAULT_RPO_WINDOW_MS;
    const judge = (item: ChecklistItem): Pick<AuditItemResult, 'status' | 'summary' | 'evidence'> => {
      const p = item.proof;
      if (p.kind === 'automated') {
        // Only the checks this run scheduled (a run started before a check existed judges without it).
        const found = p.checks.filter((c) => (checkIds as readonly string[]).includes(c)).map((c) => results.get(c));
        const st = combineChecks(found);
        const shown = found.filter((r): r is CheckResult => r !== undefined);
        const notes = st === 'pass' ? shown.map((r) => r.summary) : shown.filter((r) => r.status !== 'pass').map((r) => r.summary);
        return { status: st, summary: notes.join('; '), evidence: Object.fromEntries(shown.map((r) => [r.check, { status: r.status, summary: r.summary, ...r.evidence }])) };
      }
      if (p.kind === 'runbook') {
        const windowMs = p.within === 'rpo' ? rpoWindowMs : p.within.days * 86_400_000;
        const window = p.within === 'rpo' ? `the RPO window (${daysText(windowMs)})` : `${p.within.days} days`;
        const key = runProofKey(p);
        const asked = p.requires ? ` ${RUN_REQUIREMENTS[p.requires]}` : '';
        if (!runs.has(key)) return { status: 'unknown', summary: `this audit started before ${p.runbook} runs proved this item`, evidence: { runbook: p.runbook, requires: p.requires } };
        const run = runs.get(key);
        if (run && 'error' in run) return { status: 'unknown', summary: `cannot search Temporal visibility: ${run.error}`, evidence: { runbook: p.runbook, error: run.error } };
        if (!run) return { status: 'fail', summary: `no completed ${p.runbook} run${asked} found`, evidence: { runbook: p.runbook, ...(p.requires ? { requires: p.requires } : {}), windowDays: windowMs / 86_400_000, lastRun: null } };
        const ageMs = now - Date.parse(run.closedAt);
        const evidence = { runbook: p.runbook, ...(p.requires ? { requires: p.requires } : {}), windowDays: Number((windowMs / 86_400_000).toFixed(4)), lastRun: run, ageDays: Number((ageMs / 86_400_000).toFixed(4)) };
        return ageMs <= windowMs
          ? { status: 'pass', summary: `${p.runbook} ${run.workflowId}${p.requires === 'verifiedChange' ? ` of ${String(run.proved?.deployment ?? run.deployment)}, changed and verified,` : p.requires ? `${asked},` : ''} completed ${daysText(ageMs)} ago (within ${window})`, evidence }
          : { status: 'fail', summary: `the last completed ${p.runbook} run${asked} is ${daysText(ageMs)} old, older than ${window}`, evidence };
      }
      const a = current.get(item.id);
      if (a) return { status: 'attested', summary: `attested by ${a.by} at ${a.at} until ${a.expiresAt}: ${a.comment}`, evidence: { ...a } };
      const old = expired.get(item.id);
      if (old) return { status: 'unknown', summary: `the attestation by ${old.by} expired at ${old.expiresAt}`, evidence: { expired: { ...old } } };
      return { status: 'unknown', summary: 'nobody has attested this item', evidence: { validForDays: p.validForDays } };
    };

    const items: AuditItemResult[] = CHECKLIST.map((item) => ({
      id: item.id,
      section: item.section,
      subsection: item.subsection,
      title: item.title,
      text: item.text,
      severity: item.severity,
      proof: item.proof.kind,
      ...judge(item),
    }));
    const sections = SECTIONS.map((name) => {
      const its = items.filter((i) => i.section === name);
      return { name, items: its, ...scoreOf(its) };
    });
    const overall = scoreOf(items);
    const proved = (s: ItemStatus) => s === 'pass' || s === 'attested';
    const report: ReadinessReport = {
      auditId,
      workflowId,
      environment: input.environment,
      startedAt,
      endedAt: '',
      score: overall.score,
      counts: overall.counts,
      ready: items.every((i) => i.severity !== 'critical' || proved(i.status)),
      blocking: items.filter((i) => i.severity === 'critical' && !proved(i.status)).map((i) => ({ id: i.id, status: i.status, summary: i.summary })),
      sections,
      attestations: [...current.values()],
      refusedAttestations: refused,
    };
    for (const s of sections) sinks.runbookMetrics.readinessScored(input.environment, s.name, s.score);
    sinks.runbookMetrics.readinessScored(input.environment, 'overall', overall.score);

    report.coverage = coverageOf(items);
    const reportKeys = await timeline.step('write report', async (evidence) => {
      report.endedAt = new Date(Date.now()).toISOString();
      // Runs started before the trend existed write their report without it.
      if (patched('audit-score-trend')) {
        // A trend that cannot be read leaves this audit's own point; the report is still written.
        const before = await write.readScoreTrend({ limit: 9 }).catch(() => []);
        report.trend = [...before.filter((t) => t.auditId !== auditId), { auditId, endedAt: report.endedAt, score: report.score, ready: report.ready }];
      }
      const { keys } = await write.writeAuditReport({ auditId, json: report, markdown: renderAuditMarkdown(report), html: renderAuditHtml(report) });
      Object.assign(evidence, { keys, score: report.score, ready: report.ready, ...report.counts });
      return keys;
    });
    status.phase = 'done';
    // Attestations still being saved finish before the run completes.
    await condition(allHandlersFinished);
    return { ...report, runbook: 'readinessAudit' as const, reportKeys };
  });
}
