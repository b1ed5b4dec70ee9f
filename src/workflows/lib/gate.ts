import { isPlanRun, recordPlanned } from './plan';
import { ApplicationFailure, condition, defineQuery, defineSignal, defineUpdate, log, proxyActivities, proxySinks, setHandler, workflowInfo } from '@temporalio/workflow';
import type { IdentityActivities } from '../../activities/identity';
import { AllowedSigner, parseAllowedSigners } from '../../identity/allowedSigners';
import type { GatePolicy, NotificationEvent, NotificationKind, SignedAct } from '../../identity/policy';
import type { NotifyActivities } from '../../activities/notify';
import type { EvidenceActivities } from '../../activities/evidence';
import type { EvidenceBody } from '../../evidence/log';
import type { Timeline } from './timeline';
import { Act, inputHash, SignedStatement, StatementRefused, verifyStatement, VerifiedStatement } from '../../identity/statement';
import { PERMANENT_FAILURES } from './failures';
import type { RunbookSinks } from './sinks';

const sinks = proxySinks<RunbookSinks>();
// Reading the signers and policy from the worker's config: quick, retried a few times.
const identity = proxyActivities<IdentityActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 5, nonRetryableErrorTypes: PERMANENT_FAILURES },
});

// One delivery of one notification: a few quick tries; a channel still down is recorded and the run goes on.
const notifier = proxyActivities<NotifyActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: PERMANENT_FAILURES },
});

// Appending to the evidence log in S3: retried like any S3 write; a log that cannot be written is noted on the timeline.
const evidence = proxyActivities<EvidenceActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 5, nonRetryableErrorTypes: PERMANENT_FAILURES },
});

/** A decision at a gate: a statement (act approve or reject) signed with the person's SSH key. */
export type GateDecision = SignedStatement;

export interface GateRecord {
  /** The gate's id, which a signed decision names: g<n>-<name>. */
  id: string;
  name: string;
  openedAt: string;
  closedAt?: string;
  outcome: 'waiting' | 'approved' | 'rejected' | 'timed out' | 'aborted';
  /** The principal whose act closed the gate (the last approver, the rejecter, the aborter). */
  by?: string;
  fingerprint?: string;
  reason?: string;
  /** Distinct people who must agree, the signed requester included when the policy lets them count. */
  required: number;
  /** Every signed approval so far, verified. */
  approvals: SignedAct[];
  /** The principals who may decide. */
  allowed: string[];
  /** Acts refused while the gate was open (unsigned, bad signature, unknown key, another gate's statement, ...), kept as evidence. */
  ignored: { by: string; at: string; signal?: 'decide' | 'abort'; problem: string }[];
  /** Reminders sent while the gate waited past its timeout (policy "remind"). */
  reminders?: number;
}

export interface GatesView {
  requester?: SignedAct;
  startedBy: 'signed request' | 'schedule' | 'unsigned start';
  aborted?: SignedAct;
  gates: GateRecord[];
  /** Refused acts outside any open gate (aborts, decisions with no gate open). */
  ignored: GateRecord['ignored'];
}

/** The fire-and-forget way to decide (no answer to the sender); a refused one is recorded. */
export const decideSignal = defineSignal<[GateDecision]>('decide');
/** The way the CLI decides: the validator refuses at once what does not verify, or when no gate is open. */
export const decideUpdate = defineUpdate<GateRecord, [GateDecision]>('decide');
/** Abort at any step, signed (act abort, gate "run"): before the fault nothing changes; after it, service is restored first. */
export const abortSignal = defineSignal<[SignedStatement]>('abort');
export const abortRunUpdate = defineUpdate<SignedAct, [SignedStatement]>('abortRun');
export const gatesQuery = defineQuery<GateRecord[]>('gates');
export const signedActsQuery = defineQuery<GatesView>('signedActs');

const ABORT_GATE = 'run';
const DECISION_ACTS: readonly Act[] = ['approve', 'reject'];
const slug = (name: string) => name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40);

/** Who the statement claims to be, for the record of a refused act (never trusted). */
function claimed(payload: unknown): string {
  try {
    const by = (JSON.parse(String((payload as { statement?: unknown } | null)?.statement)) as { by?: unknown }).by;
    return typeof by === 'string' ? by.slice(0, 128) : '?';
  } catch {
    const by = (payload as { by?: unknown } | null)?.by;
    return typeof by === 'string' ? by.slice(0, 128) : '?';
  }
}

/**
 * Approval gates of one run, decided by signed statements only. Each act is verified in the update
 * validator (refused at once), then again against the signers re-read from config before it counts,
 * so a key revoked while the gate is open cannot decide it. Only one gate is open at a time.
 */
export class Gates {
  private readonly records: GateRecord[] = [];
  private readonly runIgnored: GateRecord['ignored'] = [];
  private open?: GateRecord;
  private policy?: GatePolicy;
  private signers: AllowedSigner[] = [];
  private used = new Set<string>();
  private serial: Promise<unknown> = Promise.resolve();
  private timeline?: Timeline;
  private deliveries: Promise<void>[] = [];
  requester?: SignedAct;
  startedBy: GatesView['startedBy'] = 'unsigned start';
  aborted?: SignedAct;
  /** A line for the evidence log's outcome record of a run that succeeded (e.g. "rolled back: ..."). */
  outcomeSummary?: string;
  /** Called with every signed act the run accepts (the evidence log, notifications). */
  onAct?: (act: SignedAct, gate?: GateRecord) => Promise<void>;
  /** Called when a gate opens and when it closes. */
  onGate?: (event: 'opened' | 'reminder' | 'closed', gate: GateRecord) => Promise<void>;

  constructor(
    readonly runbook: string,
    readonly environment: string,
  ) {
    setHandler(gatesQuery, () => this.list());
    setHandler(signedActsQuery, () => ({ requester: this.requester, startedBy: this.startedBy, aborted: this.aborted, gates: this.list(), ignored: [...this.runIgnored] }));
    setHandler(decideUpdate, (d) => this.applyDecision(d), { validator: (d) => this.checkDecision(d) });
    setHandler(decideSignal, (d) => this.applyDecision(d).then(() => undefined, () => undefined));
    setHandler(abortRunUpdate, (a) => this.applyAbort(a), { validator: (a) => this.checkAbort(a) });
    setHandler(abortSignal, (a) =>
      this.serialised(async () => {
        const problem = this.problem(() => this.checkAbort(a));
        if (problem) return this.ignore('abort', a, problem);
        await this.abort(a);
      }).catch((err) => this.ignore('abort', a, messageOf(err))),
    );
  }

  /**
   * Connects the gates to the run's timeline: failed notifications are noted on it, and when the run
   * ends, the failure channels are told (a failure or an abort) and pending deliveries are awaited.
   */
  attach(timeline: Timeline): void {
    this.timeline = timeline;
    timeline.onFinish = async (outcome, reason, err) => {
      // Input the worker refused is not a run of the procedure: nobody is told, nothing is logged as evidence.
      if (err instanceof ApplicationFailure && err.type === 'InvalidInput') return;
      if (outcome !== 'succeeded' && this.policy) this.announce(this.aborted ? 'run aborted' : 'run failed', (reason ?? outcome).slice(0, 500));
      if (this.policy) this.appendEvidence({ kind: 'outcome', outcome: this.aborted ? 'aborted' : outcome, summary: (reason ?? this.outcomeSummary ?? outcome).slice(0, 1000) });
      // Deliveries started by others while waiting are awaited too.
      for (let i = 0; i < this.deliveries.length; i++) await this.deliveries[i];
    };
  }

  /** Appends a record to the evidence log in the background; the run awaits it before it ends. */
  appendEvidence(fields: Omit<EvidenceBody, 'at' | 'environment' | 'runbook' | 'workflowId' | 'runId'>): void {
    const info = workflowInfo();
    const body: EvidenceBody = { at: new Date(Date.now()).toISOString(), environment: this.environment, runbook: this.runbook, workflowId: info.workflowId, runId: info.runId, ...fields };
    this.deliveries.push(
      evidence.appendEvidence({ body }).then(
        () => undefined,
        (err: unknown) => {
          const error = err instanceof Error && err.cause instanceof Error ? err.cause.message : messageOf(err);
          log.warn('evidence not appended', { kind: fields.kind, error: error.slice(0, 300) });
          this.timeline?.note(`evidence log: ${fields.kind}`, 'failed', { error: error.slice(0, 300) });
        },
      ),
    );
  }

  /** Tells the failure channels how the run ended (failed, aborted, rolled back), in the background. */
  announce(kind: Extract<NotificationKind, 'run failed' | 'run rolled back' | 'run aborted'>, summary: string): void {
    if (this.policy) this.fire(kind, summary, this.policy.notify.failures);
  }

  private fire(kind: NotificationKind, summary: string, channels: string[], gate?: GateRecord): void {
    if (channels.length === 0) return;
    const info = workflowInfo();
    const event: NotificationEvent = {
      kind,
      runbook: this.runbook,
      environment: this.environment,
      namespace: info.namespace,
      workflowId: info.workflowId,
      runId: info.runId,
      summary,
      at: new Date(Date.now()).toISOString(),
      gate: gate && {
        id: gate.id,
        name: gate.name,
        outcome: gate.outcome,
        required: gate.required,
        approvals: gate.approvals.map((a) => `${a.principal} (${a.fingerprint})`),
        allowed: gate.allowed,
        by: gate.by,
        waitingSeconds: Math.round((Date.now() - Date.parse(gate.openedAt)) / 1000),
      },
    };
    for (const channel of channels) {
      this.deliveries.push(
        notifier.deliverNotification({ channel, event }).then(
          () => sinks.runbookMetrics.notificationSent(this.environment, channel),
          (err: unknown) => {
            const error = err instanceof Error && err.cause instanceof Error ? err.cause.message : messageOf(err);
            log.warn('notification not delivered', { channel, kind, error: error.slice(0, 300) });
            sinks.runbookMetrics.notificationFailed(this.environment, channel);
            this.timeline?.note(`notify ${channel}: ${kind}`, 'failed', { channel, kind, error: error.slice(0, 300), gate: gate?.id ?? null });
          },
        ),
      );
    }
  }

  /** Every gate of the run so far, copied. */
  list(): GateRecord[] {
    return this.records.map((r) => ({ ...r, approvals: [...r.approvals], ignored: [...r.ignored] }));
  }

  /** Acts refused while no gate was open. */
  ignoredOutsideGates(): GateRecord['ignored'] {
    return [...this.runIgnored];
  }

  /** The gate waiting for a decision, if any. */
  get current(): GateRecord | undefined {
    return this.open;
  }

  /** The policy as last read (loaded by start()). */
  get rules(): GatePolicy {
    if (!this.policy) throw new Error('the run has not read its signers yet; try again in a moment');
    return this.policy;
  }

  serialised<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.serial.then(fn, fn);
    this.serial = next.catch(() => undefined);
    return next;
  }

  /** Reads the signers and policy from the worker's config (again), so revocations take effect. */
  async refresh(): Promise<GatePolicy> {
    this.policy = await identity.describeGatePolicy({ environment: this.environment, runbook: this.runbook });
    this.signers = parseAllowedSigners(this.policy.signers);
    return this.policy;
  }

  /**
   * Reads the policy and checks the start: a signed start (act start, bound to the workflow id and the
   * input's hash) names the requester; a run a schedule started has none; a bad start signature refuses
   * the run before anything runs.
   */
  async start(input: Record<string, unknown>, freezeTimeoutMs = 3_600_000): Promise<void> {
    await this.refresh();
    const info = workflowInfo();
    const now = Date.now();
    const freeze = this.rules.freezes.find((f) => f.runbooks.includes(this.runbook) && now >= f.fromMs && now < f.toMs);
    if (freeze?.action === 'refuse') {
      throw ApplicationFailure.create({ type: 'StartRefused', message: `the start of this ${this.runbook} run is refused before anything ran: change freeze '${freeze.name}' (until ${new Date(freeze.toMs).toISOString()}) refuses ${this.runbook} runs`, nonRetryable: true });
    }
    await this.verifyStart(input, info);
    if (freeze?.action === 'gate') {
      const g = await this.wait(`change freeze ${freeze.name}: run inside it`, freezeTimeoutMs);
      if (g.outcome !== 'approved') throw ApplicationFailure.create({ type: 'StartRefused', message: `change freeze '${freeze.name}': the run was ${g.outcome}${g.by ? ` by ${g.by}` : ''} at its freeze gate; nothing was changed`, nonRetryable: true });
    }
  }

  private async verifyStart(input: Record<string, unknown>, info: ReturnType<typeof workflowInfo>): Promise<void> {
    if (isPlanRun() && input.start === undefined) {
      recordPlanned([{ kind: 'gate', by: 'start', what: 'the real run is started with a signed start statement (runbook ... start signs it) or by a schedule' }]);
      return;
    }
    if (input.start === undefined) {
      this.startedBy = info.searchAttributes?.TemporalScheduledById ? 'schedule' : 'unsigned start';
      return;
    }
    try {
      const v = verifyStatement(input.start, this.signers, {
        namespace: info.namespace,
        environment: this.environment,
        runbook: this.runbook,
        workflowId: info.workflowId,
        runId: '',
        gate: 'start',
        acts: ['start'],
        nowMs: Date.now(),
        maxAgeMs: this.rules.maxAgeMs,
        inputHash: inputHash(input),
      });
      this.requester = this.toAct(v, input.start as SignedStatement);
      this.startedBy = 'signed request';
    } catch (err) {
      throw ApplicationFailure.create({ type: 'StartRefused', message: `the start of this ${this.runbook} run is refused before anything ran: ${messageOf(err)}`, nonRetryable: true });
    }
    await this.onAct?.(this.requester);
  }

  private toAct(v: VerifiedStatement, s: SignedStatement): SignedAct {
    sinks.runbookMetrics.actAccepted(this.runbook, this.environment, v.statement.act, v.principal);
    this.appendEvidence({ kind: 'decision', act: v.statement.act, principal: v.principal, fingerprint: v.fingerprint, gate: v.statement.gate, statement: s.statement, signature: s.signature });
    return { act: v.statement.act, principal: v.principal, fingerprint: v.fingerprint, reason: v.statement.reason, signedAt: v.statement.at, at: new Date(Date.now()).toISOString(), signatureHash: v.signatureHash, statement: s.statement, signature: s.signature };
  }

  /** Verifies a signed act against the current signers and what it must say; throws the refusal. */
  verify(signed: unknown, gate: string, acts: readonly Act[], extra: { item?: string; maxAgeMs?: number; anyRun?: { workflowId: string; runId: string } } = {}): VerifiedStatement {
    if (!this.policy) throw new Error('the run has not read its signers yet; try again in a moment');
    const info = workflowInfo();
    return verifyStatement(signed, this.signers, {
      namespace: info.namespace,
      environment: this.environment,
      runbook: this.runbook,
      workflowId: extra.anyRun?.workflowId ?? info.workflowId,
      runId: extra.anyRun?.runId ?? info.runId,
      gate,
      acts,
      nowMs: Date.now(),
      maxAgeMs: extra.maxAgeMs ?? this.policy.maxAgeMs,
      item: extra.item,
    });
  }

  /** Like verify, and the principal must be one of `allowed`, and the signature not used before in this run. */
  verifyAct(signed: unknown, gate: string, acts: readonly Act[], allowed: readonly string[], extra: { item?: string } = {}): VerifiedStatement {
    const v = this.verify(signed, gate, acts, extra);
    if (!allowed.includes(v.principal)) throw new StatementRefused('not-allowed', `${v.principal} (key ${v.fingerprint}) may not ${v.statement.act} here; allowed: ${allowed.join(', ') || 'nobody'}`);
    if (this.used.has(v.signatureHash)) throw new StatementRefused('wrong-binding', 'this signature was already used in this run; sign a new statement');
    return v;
  }

  /** The validator of a decision at the open gate (approve, reject, or a rollout's promote): throws when it may not be taken now. */
  checkDecision(d: GateDecision, acts: readonly Act[] = DECISION_ACTS): void {
    if (!this.open) throw new Error('no approval gate is open right now');
    const v = this.verifyAct(d, this.open.id, acts, this.open.allowed);
    this.checkFourEyes(v, this.open);
  }

  /** Applies a decision after checking it again against the signers re-read now; a refusal is recorded and thrown. */
  applyDecision(d: GateDecision, acts: readonly Act[] = DECISION_ACTS): Promise<GateRecord> {
    return this.serialised(() => this.decide(d, acts));
  }

  checkFourEyes(v: VerifiedStatement, gate: { name: string; required: number; approvals: SignedAct[] }): void {
    if (v.statement.act === 'reject' || v.statement.act === 'abort') return;
    if (this.rules.fourEyes && this.requester?.principal === v.principal) throw new StatementRefused('not-allowed', `four-eyes: ${v.principal} requested this run and may not approve it; another approver must`);
    if (gate.approvals.some((a) => a.principal === v.principal)) throw new StatementRefused('not-allowed', `${v.principal} has already approved gate '${gate.name}'; it needs ${gate.required} distinct people`);
  }

  private problem(fn: () => void): string | undefined {
    try {
      fn();
      return undefined;
    } catch (err) {
      return messageOf(err);
    }
  }

  /** The handler: re-reads the signers (a key revoked since the validator ran no longer counts), then applies. */
  private async decide(d: GateDecision, acts: readonly Act[]): Promise<GateRecord> {
    const gate = this.open;
    if (!gate) {
      this.ignore('decide', d, 'no approval gate is open right now');
      throw ApplicationFailure.create({ type: 'DecisionRefused', message: 'no approval gate is open right now', nonRetryable: true });
    }
    // Checked against the signers already read first, so a bad signal costs no activity; then again after re-reading them.
    try {
      this.checkDecision(d, acts);
    } catch (err) {
      this.ignore('decide', d, messageOf(err));
      throw ApplicationFailure.create({ type: 'DecisionRefused', message: messageOf(err), nonRetryable: true });
    }
    await this.refresh();
    gate.allowed = [...this.rules.approvers];
    let v: VerifiedStatement;
    try {
      if (this.open !== gate) throw new Error('the gate closed while the decision was checked');
      v = this.verifyAct(d, gate.id, acts, gate.allowed);
      this.checkFourEyes(v, gate);
    } catch (err) {
      this.ignore('decide', d, messageOf(err));
      throw ApplicationFailure.create({ type: 'DecisionRefused', message: messageOf(err), nonRetryable: true });
    }
    this.used.add(v.signatureHash);
    const act = this.toAct(v, d);
    if (v.statement.act === 'reject') {
      this.close(gate, 'rejected', act);
    } else {
      gate.approvals.push(act);
      Object.assign(gate, { by: act.principal, fingerprint: act.fingerprint, reason: act.reason });
      if (this.agreed(gate) >= gate.required) this.close(gate, 'approved', act);
    }
    await this.onAct?.(act, gate);
    return { ...gate, approvals: [...gate.approvals], ignored: [...gate.ignored] };
  }

  /** Distinct people who agree: the gate's approvers, plus the signed requester when the policy lets them count. */
  agreed(gate: { allowed: string[]; approvals: SignedAct[] }): number {
    const people = new Set(gate.approvals.map((a) => a.principal));
    // The signed requester agreed by asking; with four-eyes they count but may not approve themselves.
    if (this.requester && gate.allowed.includes(this.requester.principal)) people.add(this.requester.principal);
    return people.size;
  }

  close(gate: GateRecord, outcome: GateRecord['outcome'], act?: SignedAct): void {
    gate.outcome = outcome;
    if (act) Object.assign(gate, { by: act.principal, fingerprint: act.fingerprint, reason: act.reason });
    gate.closedAt = new Date(Date.now()).toISOString();
    if (this.open === gate) this.open = undefined;
    if (this.policy) this.fire('gate decided', `gate '${gate.name}' ${outcome}${gate.by && outcome !== 'timed out' ? ` by ${gate.by}` : ''}`, this.policy.notify.gates, gate);
  }

  checkAbort(a: SignedStatement): void {
    if (!this.policy) throw new Error('the run has not read its signers yet; try again in a moment');
    if (this.aborted) throw new Error(`already aborted by ${this.aborted.principal}`);
    this.verifyAct(a, ABORT_GATE, ['abort'], this.rules.abort);
  }

  applyAbort(a: SignedStatement): Promise<SignedAct> {
    return this.serialised(() => this.abort(a));
  }

  private async abort(a: SignedStatement): Promise<SignedAct> {
    if (this.aborted) return this.aborted;
    await this.refresh();
    let v: VerifiedStatement;
    try {
      v = this.verifyAct(a, ABORT_GATE, ['abort'], this.rules.abort);
    } catch (err) {
      this.ignore('abort', a, messageOf(err));
      throw ApplicationFailure.create({ type: 'DecisionRefused', message: messageOf(err), nonRetryable: true });
    }
    this.used.add(v.signatureHash);
    this.aborted = this.toAct(v, a);
    log.warn('run aborted', { by: v.principal, fingerprint: v.fingerprint, reason: v.statement.reason.slice(0, 300) });
    await this.onAct?.(this.aborted, this.open);
    return this.aborted;
  }

  /** Records an act that did not count, with why, on the open gate (or the run). */
  ignore(signal: 'decide' | 'abort', payload: unknown, problem: string): void {
    const entry = { by: claimed(payload), at: new Date(Date.now()).toISOString(), signal, problem: problem.slice(0, 300) };
    log.warn('signed act refused', { signal, by: entry.by, problem: entry.problem });
    sinks.runbookMetrics.actRefused(this.runbook, this.environment, signal);
    (this.open?.ignored ?? this.runIgnored).push(entry);
  }

  /** Accepts a signed act outside the gates (a waiver, an attestation, a full promotion) as used, once. */
  accept(v: VerifiedStatement, s: SignedStatement): SignedAct {
    this.used.add(v.signatureHash);
    return this.toAct(v, s);
  }

  /**
   * A plan run's gate: what the real run would wait for, recorded on the step; the gate is passed as
   * approved by nobody, so the plan goes on to show what the approval would let happen.
   */
  private planned(gate: GateRecord, rules: GatePolicy, timeoutMs: number, remind?: { everyMs: number }): GateRecord {
    const who = gate.allowed.length ? gate.allowed.join(', ') : 'nobody (no approvers are configured: the real run could not pass this gate)';
    const until = remind ? `waiting past ${Math.round(timeoutMs / 1000)} s with a reminder every ${Math.round(remind.everyMs / 1000)} s` : `up to ${Math.round(timeoutMs / 1000)} s, then the run ends as timed out`;
    recordPlanned([
      {
        kind: 'gate',
        by: 'gate',
        what: `waits at gate '${gate.name}' for ${gate.required} signed approval${gate.required === 1 ? '' : 's'} from ${who} (${until})`,
        detail: { gate: gate.id, required: gate.required, allowed: gate.allowed, timeoutMs, notify: rules.notify.gates },
      },
    ]);
    gate.outcome = 'approved';
    gate.by = 'nobody: a plan does not wait';
    gate.closedAt = new Date(Date.now()).toISOString();
    return gate;
  }

  /**
   * Opens a gate and waits until enough distinct approvers have signed, someone rejects or aborts, or
   * the timeout passes (a rejection). The signers are read again as the gate opens.
   */
  async wait(name: string, timeoutMs: number, remind?: { everyMs: number }): Promise<GateRecord> {
    await this.refresh();
    const rules = this.rules;
    const gate: GateRecord = {
      id: `g${this.records.length + 1}-${slug(name)}`,
      name,
      openedAt: new Date(Date.now()).toISOString(),
      outcome: 'waiting',
      required: rules.approvals,
      approvals: [],
      allowed: [...rules.approvers],
      ignored: [],
    };
    this.records.push(gate);
    if (this.aborted) {
      this.close(gate, 'aborted', this.aborted);
      return gate;
    }
    if (isPlanRun()) return this.planned(gate, rules, timeoutMs, remind);
    this.open = gate;
    sinks.runbookMetrics.gateOpened(this.runbook, this.environment, Date.now());
    const notify = rules.notify;
    this.fire('gate opened', `waiting for ${gate.required > 1 ? `${gate.required} approvers` : 'approval'}: ${name}`, notify.gates, gate);
    await this.onGate?.('opened', gate);
    const settled = () => gate.outcome !== 'waiting' || this.aborted !== undefined;
    const opened = Date.now();
    let escalated = false;
    const remindNow = (waitingMs: number) => {
      gate.reminders = (gate.reminders ?? 0) + 1;
      log.warn('approval gate still waiting', { runbook: this.runbook, environment: this.environment, gate: name, waitingMs, allowed: gate.allowed.join(', ') });
      sinks.runbookMetrics.gateReminder(this.runbook, this.environment);
      this.fire('gate reminder', `still waiting after ${Math.round(waitingMs / 1000)} s: ${name}`, notify.gates, gate);
    };
    // The next moment something is due while the gate waits: a reminder, the escalation, or the deadline.
    const nextWake = (deadline: number, lastReminder: number) => {
      const now = Date.now();
      let next = deadline - now;
      if (notify.reminderEveryMs) next = Math.min(next, lastReminder + notify.reminderEveryMs - now);
      if (notify.escalation && !escalated) next = Math.min(next, opened + notify.escalation.afterMs - now);
      return Math.max(1, next);
    };
    let decided = false;
    try {
      if (remind) {
        // Keep waiting past the timeout, reminding every interval, until someone decides or aborts.
        let next = timeoutMs;
        for (;;) {
          decided = await condition(settled, next);
          if (decided) break;
          remindNow(Date.now() - opened);
          next = remind.everyMs;
        }
      } else if (!notify.reminderEveryMs && !notify.escalation) {
        decided = await condition(settled, timeoutMs);
      } else {
        const deadline = opened + timeoutMs;
        let lastReminder = opened;
        for (;;) {
          if (Date.now() >= deadline) break;
          decided = await condition(settled, nextWake(deadline, lastReminder));
          if (decided) break;
          const now = Date.now();
          if (notify.escalation && !escalated && now >= opened + notify.escalation.afterMs) {
            escalated = true;
            this.fire('gate escalated', `nobody decided within ${Math.round(notify.escalation.afterMs / 1000)} s: ${name}`, notify.escalation.channels, gate);
          }
          if (notify.reminderEveryMs && now >= lastReminder + notify.reminderEveryMs && now < deadline) {
            lastReminder = now;
            remindNow(now - opened);
          }
        }
      }
    } catch (err) {
      // The run's scope was cancelled (an abort): close the gate rather than leave it open.
      sinks.runbookMetrics.gateClosed(this.runbook, this.environment);
      if (gate.outcome === 'waiting') this.close(gate, 'aborted', this.aborted);
      throw err;
    }
    sinks.runbookMetrics.gateClosed(this.runbook, this.environment);
    if (gate.outcome === 'waiting') this.close(gate, decided ? 'aborted' : 'timed out', decided ? this.aborted : undefined);
    await this.onGate?.('closed', gate);
    return gate;
  }
}

function messageOf(err: unknown): string {
  if (err instanceof ApplicationFailure) return err.message;
  return err instanceof Error ? err.message : String(err);
}

/** The start field every gated runbook accepts: the requester's signed start statement, checked for shape here and verified by the run. */
export function startFieldProblem(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  const s = v as Partial<SignedStatement> | null;
  if (s === null || typeof s !== 'object' || Array.isArray(s) || typeof s.statement !== 'string' || typeof s.signature !== 'string') return 'start: expected the signed start statement { statement, signature } (the CLI writes it)';
  if (s.statement.length > 4096 || s.signature.length > 4096) return 'start: the signed start statement is larger than 4096 characters';
  return undefined;
}
