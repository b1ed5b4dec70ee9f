/**
 * What a run needs to judge signed acts, as the worker reads it from config at each gate: the allowed
 * signers (git's allowed_signers text, re-read so a revoked key stops counting), who may decide and
 * abort, and the policy. Plain data shared by the workflows and the activities.
 */
export interface GatePolicy {
  /** allowed_signers text of the environment. */
  signers: string;
  /** Who may approve this runbook's gates (approvers.<runbook>, else approvers.default). */
  approvers: string[];
  /** Who may abort: the approvers and the policy's abort list. */
  abort: string[];
  /** Distinct people who must agree to pass a gate (a signed requester who is an approver counts as one). */
  approvals: number;
  /** The signed requester of a run may not approve its gates. */
  fourEyes: boolean;
  /** How old a signed statement may be when it arrives. */
  maxAgeMs: number;
  rollout: {
    /** A rollout must pause for approval before any step sets a weight above this. */
    pauseBeforeWeight?: number;
    /** Distinct people who must sign promote --full before the remaining steps are skipped. */
    fullPromoteApprovals: number;
  };
  /** Longest an attestation counts, per checklist item (days), where the policy is stricter than the item. */
  attestationMaxDays: Record<string, number>;
  /** Freeze windows in force now or later, as the config lists them. */
  freezes: FreezeWindow[];
  /** Channel names per event, from notifications: in config (empty lists: nobody is told). */
  notify: { gates: string[]; failures: string[]; reminderEveryMs?: number; escalation?: { afterMs: number; channels: string[] } };
}

export type NotificationKind = 'gate opened' | 'gate reminder' | 'gate escalated' | 'gate decided' | 'run failed' | 'run rolled back' | 'run aborted';

/** What a notification says; the activity renders it for each channel (JSON, Slack text, email). */
export interface NotificationEvent {
  kind: NotificationKind;
  runbook: string;
  environment: string;
  namespace: string;
  workflowId: string;
  runId: string;
  /** One line for people. */
  summary: string;
  gate?: { id: string; name: string; outcome: string; required: number; approvals: string[]; allowed: string[]; by?: string; waitingSeconds?: number };
  at: string;
}

export interface FreezeWindow {
  name: string;
  fromMs: number;
  toMs: number;
  /** refuse: runs that would act inside it are refused at start; gate: they need the policy's approvals like a gate (an extra gate opens). */
  action: 'refuse' | 'gate';
  runbooks: string[];
}

/** The verified identity behind one act, as timelines, reports, metrics and the evidence log record it. */
export interface SignedAct {
  act: string;
  principal: string;
  fingerprint: string;
  reason: string;
  /** When it was signed, as the statement says. */
  signedAt: string;
  /** When the run accepted it (workflow time). */
  at: string;
  signatureHash: string;
  statement: string;
  signature: string;
}
