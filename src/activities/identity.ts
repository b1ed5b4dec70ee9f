import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import type { LoadedConfig } from '../config/load';
import { selectEnvironment } from '../config/load';
import type { EnvironmentConfig } from '../config/schema';
import { parseAllowedSigners } from '../identity/allowedSigners';
import type { GatePolicy } from '../identity/policy';
import { checkServedEnvironment, failure } from './errors';

/** The allowed_signers text of an environment: the file read now (so edits and revocations count at once), or the inline lines. */
export function allowedSignersText(env: EnvironmentConfig, baseDir: string, file: string): string {
  const a = env.signing.allowedSigners;
  if (a === undefined) return '';
  if (Array.isArray(a)) return a.join('\n');
  const path = a.slice('file:'.length);
  const full = isAbsolute(path) ? path : join(baseDir, path);
  let text: string;
  try {
    text = readFileSync(full, 'utf8');
  } catch (err) {
    throw failure('InvalidInput', `signing.allowedSigners: cannot read ${full} (from ${file}): ${(err as Error).message}`);
  }
  try {
    parseAllowedSigners(text, full);
  } catch (err) {
    throw failure('InvalidInput', `signing.allowedSigners: ${(err as Error).message}`);
  }
  return text;
}

/** The gate policy of one runbook in one environment, merged from policies.default and policies.<runbook>. */
export function gatePolicyFor(loaded: LoadedConfig, environment: string, runbook: string): GatePolicy {
  const { env } = selectEnvironment(loaded, environment);
  const approvers = env.approvers[runbook] ?? env.approvers.default ?? [];
  const p = { ...env.policies.default, ...env.policies[runbook] };
  const approvals = p.approvals ?? 1;
  return {
    signers: allowedSignersText(env, loaded.baseDir, loaded.file),
    approvers,
    abort: [...new Set([...approvers, ...(p.abort ?? [])])],
    approvals,
    fourEyes: p.fourEyes ?? false,
    maxAgeMs: env.signing.maxAge,
    rollout: { pauseBeforeWeight: p.pauseBeforeWeight, fullPromoteApprovals: p.fullPromoteApprovals ?? approvals },
    attestationMaxDays: { ...p.attestationMaxDays },
    notify: {
      gates: env.notifications?.gates ?? [],
      failures: env.notifications?.failures ?? [],
      reminderEveryMs: env.notifications?.reminderEvery,
      escalation: env.notifications?.escalation && { afterMs: env.notifications.escalation.after, channels: env.notifications.escalation.channels },
    },
    freezes: env.freezes.map((f) => ({ name: f.name, fromMs: Date.parse(f.from), toMs: Date.parse(f.to), action: f.action, runbooks: f.runbooks })),
  };
}

/** What workflows read to judge signed acts: re-read from the config at each call. */
export function createIdentityActivities(deps: { loaded: LoadedConfig; environment: string }) {
  return {
    async describeGatePolicy(input: { environment: string; runbook: string }): Promise<GatePolicy> {
      checkServedEnvironment(input.environment, deps.environment);
      const policy = gatePolicyFor(deps.loaded, deps.environment, input.runbook);
      if (policy.signers.trim() === '') throw failure('InvalidInput', `signing.allowedSigners: environment ${deps.environment} lists no allowed signers in ${deps.loaded.file}; every decision is signed, so add the approvers' SSH public keys`);
      return policy;
    },
  };
}

export type IdentityActivities = ReturnType<typeof createIdentityActivities>;
