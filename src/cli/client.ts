import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { defineSearchAttributeKey, SearchAttributePair, SearchAttributeType } from '@temporalio/common';
import { randomBytes } from 'node:crypto';
import { dataConverterFor } from '../codec';
import { temporalConnectionSettings } from '../config/connection';
import type { LoadedConfig } from '../config/load';
import type { EnvironmentConfig, QueueKind } from '../config/schema';
import { RUNBOOK_DEFAULT_QUEUE, ImplementedRunbook, targetOf } from '../workflows/catalog';

export const RUNBOOK_NAME_KEY = defineSearchAttributeKey('RunbookName', SearchAttributeType.KEYWORD);
export const RUNBOOK_ENVIRONMENT_KEY = defineSearchAttributeKey('RunbookEnvironment', SearchAttributeType.KEYWORD);
export const RUNBOOK_TARGET_KEY = defineSearchAttributeKey('RunbookTarget', SearchAttributeType.KEYWORD);

export interface ConnectedClient {
  client: Client;
  connection: Connection;
  namespace: string;
  env: EnvironmentConfig;
  environment: string;
  /** The config the client was made from (signing keys and allowed signers are found relative to it). */
  loaded: LoadedConfig;
  close(): Promise<void>;
}

export async function connectClient(loaded: LoadedConfig, environment: string, env: EnvironmentConfig): Promise<ConnectedClient> {
  const settings = temporalConnectionSettings(loaded, env.temporal);
  // Keys are checked before connecting: a bad key is a config error, not a connection failure.
  const dataConverter = dataConverterFor(loaded, environment, env.temporal);
  let connection: Connection;
  try {
    connection = await Connection.connect({ address: settings.address, tls: settings.tls, apiKey: settings.apiKey, connectTimeout: 5_000 });
  } catch (err) {
    throw new Error(
      `cannot connect to Temporal at ${settings.address} (environment ${environment}): ${(err as Error).message}. ` +
        `Is the server running? For the local sandbox: runbook stack up.`,
    );
  }
  const client = new Client({ connection, namespace: settings.namespace, dataConverter });
  return { client, connection, namespace: settings.namespace, env, environment, loaded, close: () => connection.close() };
}

/**
 * The search attributes that let visibility find a run by runbook, environment and target (the
 * readiness audit's proofs, the worker's freshness metrics). Set only where the namespace defines them
 * (the sandbox does; see "Running against real infrastructure" for a cluster).
 */
export async function searchAttributesFor(c: Pick<ConnectedClient, 'connection' | 'namespace' | 'environment'>, runbook: string, target?: string): Promise<SearchAttributePair[]> {
  try {
    const res = await c.connection.operatorService.listSearchAttributes({ namespace: c.namespace });
    const defined = res.customAttributes ?? {};
    const pairs: SearchAttributePair[] = [];
    if ('RunbookName' in defined) pairs.push({ key: RUNBOOK_NAME_KEY, value: runbook });
    if ('RunbookEnvironment' in defined) pairs.push({ key: RUNBOOK_ENVIRONMENT_KEY, value: c.environment });
    if (target !== undefined && 'RunbookTarget' in defined) pairs.push({ key: RUNBOOK_TARGET_KEY, value: target });
    return pairs;
  } catch {
    return [];
  }
}

export function newWorkflowId(runbook: string, environment: string, at = new Date()): string {
  const stamp = at.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${runbook}-${environment}-${stamp}-${randomBytes(3).toString('hex')}`;
}

export function taskQueueFor(env: EnvironmentConfig, runbook: ImplementedRunbook, override?: QueueKind): string {
  return env.temporal.taskQueues[override ?? RUNBOOK_DEFAULT_QUEUE[runbook]];
}

/** Number of workers polling a task queue recently, so the CLI can say "no worker" instead of waiting forever. */
export async function pollerCount(c: ConnectedClient, taskQueue: string): Promise<number> {
  const res = await c.connection.workflowService.describeTaskQueue({ namespace: c.namespace, taskQueue: { name: taskQueue }, taskQueueType: 1 });
  return res.pollers?.length ?? 0;
}

export async function startRunbook<A extends unknown[]>(
  c: ConnectedClient,
  runbook: ImplementedRunbook,
  args: A,
  opts: { queue?: QueueKind; timeoutMs?: number; workflowId?: string; target?: string },
) {
  const taskQueue = taskQueueFor(c.env, runbook, opts.queue);
  const workflowId = opts.workflowId ?? newWorkflowId(runbook, c.environment);
  const handle = await c.client.workflow.start(runbook, {
    taskQueue,
    workflowId,
    args,
    workflowExecutionTimeout: opts.timeoutMs,
    typedSearchAttributes: await searchAttributesFor(c, runbook, opts.target ?? targetOf(runbook, args[0])),
  });
  return { handle, taskQueue, workflowId };
}

/** The message of a failed run, down to its root cause, for one-line human output. */
export function failureMessage(err: unknown): string {
  if (err instanceof WorkflowFailedError) {
    const parts: string[] = [];
    let cause: unknown = err.cause;
    while (cause instanceof Error) {
      parts.push(cause.message);
      cause = (cause as Error & { cause?: unknown }).cause;
    }
    return parts.length ? parts.join(': ') : err.message;
  }
  return err instanceof Error ? err.message : String(err);
}
