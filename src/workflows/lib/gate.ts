import { condition, defineQuery, defineSignal, defineUpdate, log, proxySinks, setHandler } from '@temporalio/workflow';
import { describe } from './input';
import type { RunbookSinks } from './sinks';

const sinks = proxySinks<RunbookSinks>();

/** What an approver sends: approve or reject, who they are, and why. */
export interface GateDecision {
  decision: 'approve' | 'reject';
  by: string;
  reason?: string;
}

export interface GateRecord {
  name: string;
  openedAt: string;
  closedAt?: string;
  outcome: 'waiting' | 'approved' | 'rejected' | 'timed out' | 'aborted';
  by?: string;
  reason?: string;
  allowed: string[];
  /** Signals refused while the gate was open (a decision from someone not allowed, a malformed payload), kept as evidence. */
  ignored: { by: string; at: string; signal?: 'decide' | 'abort'; problem?: string }[];
  /** Reminders sent while the gate waited past its timeout (policy "remind"). */
  reminders?: number;
}

/** The fire-and-forget way to decide (no answer to the sender). */
export const decideSignal = defineSignal<[GateDecision]>('decide');
/** The way the CLI decides: the validator refuses at once who may not approve, or when no gate is open. */
export const decideUpdate = defineUpdate<GateRecord, [GateDecision]>('decide');
/** Abort the runbook at any step: before the fault nothing changes; after it, service is restored first. */
export const abortSignal = defineSignal<[{ by: string; reason?: string }]>('abort');
export const gatesQuery = defineQuery<GateRecord[]>('gates');

/**
 * Approval gates of one run. Only one gate is open at a time; each is recorded with who decided,
 * when and why. Abort is tracked here too, since an abort at a gate is a rejection.
 */
export class Gates {
  private readonly records: GateRecord[] = [];
  private open?: GateRecord;
  aborted?: { by: string; reason?: string; at: string };
  /** Every gate of the run so far, copied. */
  list(): GateRecord[] {
    return this.records.map((r) => ({ ...r, ignored: [...r.ignored] }));
  }

  /** The gate waiting for a decision, if any. */
  get current(): GateRecord | undefined {
    return this.open;
  }

  constructor(
    private readonly runbook: string,
    private readonly environment: string,
  ) {
    setHandler(gatesQuery, () => this.records.map((r) => ({ ...r, ignored: [...r.ignored] })));
    setHandler(
      decideUpdate,
      (d) => {
        this.apply(d);
        return { ...this.records[this.records.length - 1] };
      },
      { validator: (d) => this.validate(d) },
    );
    setHandler(decideSignal, (d) => {
      try {
        this.validate(d);
        this.apply(d);
      } catch (err) {
        this.ignore('decide', d, (err as Error).message);
      }
    });
    // A signal has no answer to refuse with: a malformed abort is recorded and ignored, never half-applied.
    setHandler(abortSignal, (a) => {
      const problem = actorProblem(a);
      if (problem) return this.ignore('abort', a, problem);
      this.aborted ??= { by: a.by, reason: a.reason, at: new Date(Date.now()).toISOString() };
    });
  }

  private ignore(signal: 'decide' | 'abort', payload: unknown, problem: string): void {
    const by = String((payload as { by?: unknown } | null)?.by ?? '?').slice(0, 128);
    log.warn('signal ignored', { signal, problem: problem.slice(0, 300) });
    this.open?.ignored.push({ by, at: new Date(Date.now()).toISOString(), signal, problem: problem.slice(0, 300) });
  }

  /** Throws when the decision may not be taken now (no open gate, a person not allowed, a malformed payload). */
  validate(d: GateDecision): void {
    if (!d || (d.decision !== 'approve' && d.decision !== 'reject')) throw new Error(`decision: expected approve or reject, found ${describe((d as unknown as { decision?: unknown } | null)?.decision)}`);
    const problem = actorProblem(d);
    if (problem) throw new Error(problem);
    if (!this.open) throw new Error('no approval gate is open right now');
    if (!this.open.allowed.includes(d.by)) throw new Error(`${d.by} may not decide gate '${this.open.name}'; allowed: ${this.open.allowed.join(', ')}`);
  }

  apply(d: GateDecision): void {
    const g = this.open!;
    g.outcome = d.decision === 'approve' ? 'approved' : 'rejected';
    g.by = d.by;
    g.reason = d.reason;
    g.closedAt = new Date(Date.now()).toISOString();
    this.open = undefined;
  }

  /** Opens a gate and waits for a decision, an abort, or the timeout (which counts as a rejection). */
  async wait(name: string, allowed: string[], timeoutMs: number, remind?: { everyMs: number }): Promise<GateRecord> {
    const gate: GateRecord = { name, openedAt: new Date(Date.now()).toISOString(), outcome: 'waiting', allowed: [...allowed], ignored: [] };
    this.records.push(gate);
    if (this.aborted) {
      gate.outcome = 'aborted';
      gate.closedAt = gate.openedAt;
      return gate;
    }
    this.open = gate;
    sinks.runbookMetrics.gateOpened(this.runbook, this.environment, Date.now());
    const settled = () => gate.outcome !== 'waiting' || this.aborted !== undefined;
    let decided = false;
    try {
      if (remind) {
        // Keep waiting past the timeout, reminding every interval, until someone decides or aborts.
        const opened = Date.now();
        let next = timeoutMs;
        for (;;) {
          decided = await condition(settled, next);
          if (decided) break;
          gate.reminders = (gate.reminders ?? 0) + 1;
          log.warn('approval gate still waiting', { runbook: this.runbook, environment: this.environment, gate: name, waitingMs: Date.now() - opened, allowed: gate.allowed.join(', ') });
          sinks.runbookMetrics.gateReminder(this.runbook, this.environment);
          next = remind.everyMs;
        }
      } else {
        decided = await condition(settled, timeoutMs);
      }
    } catch (err) {
      // The run's scope was cancelled (an abort): close the gate rather than leave it open.
      sinks.runbookMetrics.gateClosed(this.runbook, this.environment);
      if (gate.outcome === 'waiting') {
        gate.outcome = 'aborted';
        const aborted = this.aborted as Gates['aborted'];
        if (aborted) Object.assign(gate, { by: aborted.by, reason: aborted.reason });
        gate.closedAt = new Date(Date.now()).toISOString();
        this.open = undefined;
      }
      throw err;
    }
    sinks.runbookMetrics.gateClosed(this.runbook, this.environment);
    if (gate.outcome === 'waiting') {
      gate.outcome = decided ? 'aborted' : 'timed out';
      // Set by the abort handler while we waited (the compiler cannot see that).
      const aborted = this.aborted as Gates['aborted'];
      if (aborted) Object.assign(gate, { by: aborted.by, reason: aborted.reason });
      gate.closedAt = new Date(Date.now()).toISOString();
      this.open = undefined;
    }
    return gate;
  }
}

/** Who acts and why, as every decision and abort must say: by 1-128 characters, reason at most 1000. */
function actorProblem(p: unknown): string | undefined {
  const v = p as { by?: unknown; reason?: unknown } | null;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return `expected { by, reason? }, found ${describe(p)}`;
  if (typeof v.by !== 'string' || v.by.length === 0 || v.by.length > 128) return `by: expected the approver id (1-128 characters), found ${describe(v.by)}`;
  if (v.reason !== undefined && (typeof v.reason !== 'string' || v.reason.length > 1000)) return `reason: expected text of at most 1000 characters, found ${describe(v.reason)}`;
  return undefined;
}
