import type { WorkflowHandle } from '@temporalio/client';
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { allowedSignersText } from '../activities/identity';
import { parseAllowedSigners } from '../identity/allowedSigners';
import { signStatement } from '../identity/signer';
import { parsePublicKeyLine, sameKey } from '../identity/sshsig';
import { Act, inputHash, SignedStatement, Statement } from '../identity/statement';
import { decideUpdate, GateRecord, gatesQuery } from '../workflows/lib/gate';
import { ConnectedClient, failureMessage } from './client';
import { shown, UsageError } from './common';

/** Who signs: the key file (--key, $RUNBOOK_SIGNING_KEY, signing.key in the config) and the principal (--by, else the allowed signers' entry for that key). */
export interface Signer {
  keyFile: string;
  principal: string;
}

const CONTROL = /[\x00-\x1f\x7f]/;

export function resolveSigner(c: Pick<ConnectedClient, 'env' | 'loaded'>, opts: { key?: string; by?: string }): Signer {
  const configured = c.env.signing.key && (isAbsolute(c.env.signing.key) ? c.env.signing.key : join(c.loaded.baseDir, c.env.signing.key));
  const keyFile = opts.key ?? process.env.RUNBOOK_SIGNING_KEY ?? configured;
  if (!keyFile) throw new UsageError('--key: every decision is signed with your SSH key: pass --key FILE (a private key, or the .pub of a key in ssh-agent), set RUNBOOK_SIGNING_KEY, or signing.key in the config');
  if (!existsSync(keyFile)) throw new UsageError(`--key: ${shown(keyFile)} does not exist`);
  if (opts.by !== undefined) {
    if (!/^[A-Za-z0-9._@+-]{1,128}$/.test(opts.by) || CONTROL.test(opts.by)) throw new UsageError(`--by: expected the principal your key is listed for (alice, alice@example.com), found ${shown(opts.by)}`);
    return { keyFile, principal: opts.by };
  }
  const pubFile = keyFile.endsWith('.pub') ? keyFile : `${keyFile}.pub`;
  if (!existsSync(pubFile)) throw new UsageError(`--by: cannot tell who ${shown(keyFile)} belongs to without ${pubFile}; pass --by PRINCIPAL`);
  const key = parsePublicKeyLine(readFileSync(pubFile, 'utf8'));
  const signers = parseAllowedSigners(allowedSignersText(c.env, c.loaded.baseDir, c.loaded.file));
  const entry = signers.find((s) => sameKey(s.key, key));
  const principal = entry?.principals.find((p) => !/[*?]/.test(p));
  if (!principal) throw new UsageError(`--key: ${shown(pubFile)} is not listed in this environment's allowed signers (signing.allowedSigners); ask an administrator to add it, or pass --by PRINCIPAL`);
  return { keyFile, principal };
}

/** Signs one act about a run: the statement binds namespace, environment, runbook, workflow, run, gate, act, reason and now. */
export async function signAct(
  c: Pick<ConnectedClient, 'namespace' | 'environment'>,
  signer: Signer,
  fields: { runbook: string; workflowId: string; runId: string; gate: string; act: Act; reason?: string; item?: string; validForDays?: number; inputHash?: string },
): Promise<SignedStatement> {
  const statement: Statement = {
    v: 1,
    namespace: c.namespace,
    environment: c.environment,
    runbook: fields.runbook,
    workflowId: fields.workflowId,
    runId: fields.runId,
    gate: fields.gate,
    act: fields.act,
    by: signer.principal,
    reason: fields.reason ?? '',
    at: new Date().toISOString(),
    item: fields.item,
    validForDays: fields.validForDays,
    inputHash: fields.inputHash,
  };
  try {
    return await signStatement(statement, signer.keyFile);
  } catch (err) {
    throw new UsageError(`signing failed: ${(err as Error).message}`);
  }
}

/** The signed start of a run, bound to its workflow id and its input (without the start field). */
export async function signStart(c: Pick<ConnectedClient, 'namespace' | 'environment'>, signer: Signer, runbook: string, workflowId: string, input: Record<string, unknown>, reason?: string): Promise<SignedStatement> {
  return signAct(c, signer, { runbook, workflowId, runId: '', gate: 'start', act: 'start', reason, inputHash: inputHash(JSON.parse(JSON.stringify(input)) as Record<string, unknown>) });
}

/** The run id and the open gate of a run, which a decision must name. */
export async function openGate(handle: WorkflowHandle): Promise<{ runId: string; gate: GateRecord }> {
  const [description, gates] = await Promise.all([handle.describe(), handle.query(gatesQuery)]);
  const gate = gates.find((g) => g.outcome === 'waiting');
  if (!gate) throw new UsageError(`${handle.workflowId} is not waiting at an approval gate (${description.status.name.toLowerCase()})`);
  return { runId: description.runId, gate };
}

export async function runIdOf(handle: WorkflowHandle): Promise<string> {
  return (await handle.describe()).runId;
}

/**
 * Signs approve or reject for the gate a run waits at now and sends it through the update, so a
 * refusal (unsigned, unknown key, not an approver, four-eyes, no gate open) comes back at once.
 */
export async function decideGate(c: Pick<ConnectedClient, 'namespace' | 'environment'>, handle: WorkflowHandle, runbook: string, act: 'approve' | 'reject', signer: Signer, reason?: string): Promise<GateRecord> {
  const signed = await signedDecision(c, handle, runbook, act, signer, reason);
  try {
    return await handle.executeUpdate(decideUpdate, { args: [signed] });
  } catch (err) {
    throw new UsageError(`${act} refused: ${(err as { cause?: Error }).cause?.message ?? failureMessage(err)}`);
  }
}

/** A signed decision (approve or reject) for the gate a run waits at now. */
export async function signedDecision(c: Pick<ConnectedClient, 'namespace' | 'environment'>, handle: WorkflowHandle, runbook: string, act: 'approve' | 'reject' | 'promote', signer: Signer, reason?: string): Promise<SignedStatement> {
  const { runId, gate } = await openGate(handle);
  return signAct(c, signer, { runbook, workflowId: handle.workflowId, runId, gate: gate.id, act, reason });
}
