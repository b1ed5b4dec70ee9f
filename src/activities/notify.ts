import { createHmac } from 'node:crypto';
import type { LoadedConfig } from '../config/load';
import { selectEnvironment } from '../config/load';
import { readSecret } from '../config/secrets';
import type { NotificationEvent } from '../identity/policy';
import { checkServedEnvironment, failure } from './errors';

/** The header a generic webhook's body is signed in: sha256=<hex HMAC-SHA256 of the raw body with the channel's secret>. */
export const SIGNATURE_HEADER = 'X-Runbook-Signature';

/** The command a person runs to decide what waits, as the message shows it. */
export function approveCommand(e: NotificationEvent): string | undefined {
  if (!e.gate || e.gate.outcome !== 'waiting') return undefined;
  const env = `--env ${e.environment}`;
  if (e.runbook === 'drDrill') return `runbook ${env} drill approve ${e.workflowId} --key YOUR_KEY`;
  if (e.runbook === 'goLive') return `runbook ${env} golive approve ${e.workflowId} --key YOUR_KEY`;
  if (e.runbook === 'rollout') return `runbook ${env} rollout approve ${e.workflowId.replace(`rollout-${e.environment}-`, '')} --key YOUR_KEY`;
  if (e.runbook === 'release') return `runbook ${env} release approve ${e.workflowId.replace(`release-${e.environment}-`, '')} --key YOUR_KEY`;
  if (e.runbook === 'promotion') return `runbook promotion approve ${e.workflowId.replace(/^promotion-/, '')} --key YOUR_KEY`;
  return undefined;
}

export function uiLink(base: string | undefined, e: NotificationEvent): string | undefined {
  return base && `${base.replace(/\/$/, '')}/namespaces/${encodeURIComponent(e.namespace)}/workflows/${encodeURIComponent(e.workflowId)}/${encodeURIComponent(e.runId)}/history`;
}

/** The message for people: what happened, what waits, the exact command, the link. */
export function messageText(e: NotificationEvent, ui?: string): string {
  const lines = [`[${e.environment}] ${e.runbook} ${e.workflowId}: ${e.summary}`];
  if (e.gate) {
    lines.push(`gate '${e.gate.name}' (${e.gate.id}): ${e.gate.outcome}${e.gate.by ? ` by ${e.gate.by}` : ''}; ${e.gate.approvals.length} of ${e.gate.required} signed approval(s)${e.gate.approvals.length ? ` (${e.gate.approvals.join(', ')})` : ''}`);
    if (e.gate.outcome === 'waiting') lines.push(`may approve: ${e.gate.allowed.join(', ')}`);
  }
  const command = approveCommand(e);
  if (command) lines.push(`approve with: ${command}`);
  const link = uiLink(ui, e);
  if (link) lines.push(`Temporal UI: ${link}`);
  return lines.join('\n');
}

async function post(url: string, body: string, headers: Record<string, string>, what: string): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers }, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw failure('ServerUnreachable', `${what}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`);
  }
  await res.arrayBuffer().catch(() => undefined);
  if (res.status >= 400) throw failure(res.status === 401 || res.status === 403 ? 'PermissionDenied' : 'ServerUnreachable', `${what}: HTTP ${res.status}`);
}

/**
 * Delivers notifications of gates and failures to the channels in config. Each call delivers one
 * event to one channel and throws when it cannot (the workflow's retry policy tries again; the
 * workflow records a delivery that still fails and carries on — a channel never blocks a runbook).
 */
export function createNotifyActivities(deps: { loaded: LoadedConfig; environment: string }) {
  return {
    async deliverNotification(input: { channel: string; event: NotificationEvent }): Promise<{ channel: string; type: string }> {
      checkServedEnvironment(input.event.environment, deps.environment);
      const { env } = selectEnvironment(deps.loaded, deps.environment);
      const channel = env.notifications?.channels.find((c) => c.name === input.channel);
      if (!channel) throw failure('InvalidInput', `notifications: no channel '${input.channel}' in ${deps.loaded.file}`);
      const ui = env.notifications?.temporalUiUrl;
      const text = messageText(input.event, ui);
      const what = `channel ${channel.name} (${channel.type})`;
      if (channel.type === 'webhook') {
        const body = JSON.stringify({ ...input.event, text, approveCommand: approveCommand(input.event), temporalUi: uiLink(ui, input.event) });
        const mac = createHmac('sha256', readSecret(channel.secret, deps.loaded.baseDir)).update(body).digest('hex');
        await post(channel.url, body, { [SIGNATURE_HEADER]: `sha256=${mac}` }, what);
      } else if (channel.type === 'slack') {
        await post(readSecret(channel.url, deps.loaded.baseDir), JSON.stringify({ text }), {}, what);
      } else {
        // Loaded on the first email: most processes never send one.
        const { createTransport } = await import('nodemailer');
        const transport = createTransport({
          host: channel.host,
          port: channel.port,
          secure: channel.secure,
          auth: channel.username ? { user: channel.username, pass: channel.password ? readSecret(channel.password, deps.loaded.baseDir) : '' } : undefined,
          connectionTimeout: 10_000,
          socketTimeout: 10_000,
        });
        try {
          await transport.sendMail({ from: channel.from, to: channel.to, subject: `[${input.event.environment}] ${input.event.runbook}: ${input.event.summary}`.slice(0, 200), text });
        } catch (err) {
          throw failure('ServerUnreachable', `${what}: ${(err as Error).message}`);
        } finally {
          transport.close();
        }
      }
      return { channel: channel.name, type: channel.type };
    },
  };
}

export type NotifyActivities = ReturnType<typeof createNotifyActivities>;
