/**
 * A small client for Patroni's REST API (3.0): cluster state (/cluster, /patroni, /config, /history),
 * health endpoints (/primary, /replica, /health) and the actions a drill takes (/switchover). Basic
 * auth and TLS (a private CA, client certificates, a server name) come from config.
 */
import { request as httpRequest, RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface PatroniApiAuth {
  username?: string;
  password?: () => string;
  /** PEM text of the CA that signed the API's certificate; the system CAs otherwise. */
  ca?: () => string;
  cert?: () => string;
  key?: () => string;
  serverName?: string;
}

export interface PatroniResponse<T> {
  status: number;
  body: T;
  text: string;
}

/** GET /cluster */
export interface PatroniClusterJson {
  members: { name: string; role: 'leader' | 'replica' | 'sync_standby' | 'standby_leader'; state: string; api_url?: string; host?: string; port?: number; timeline?: number; lag?: number | 'unknown'; tags?: Record<string, unknown> }[];
  pause?: boolean;
  scheduled_switchover?: Record<string, string>;
}

/**
 * Whether a member in /cluster is up: a leader shows "running"; a replica shows "running" up to
 * Patroni 3.0.3 and "streaming" (or "in archive recovery" while it replays from the archive) from
 * 3.0.4 on.
 */
export function memberUp(state: string | undefined): boolean {
  return state === 'running' || state === 'streaming' || state === 'in archive recovery';
}

/** GET /patroni (the member's own status) */
export interface PatroniStatusJson {
  state: string;
  role: string;
  timeline?: number;
  xlog?: { location?: number; received_location?: number; replayed_location?: number; paused?: boolean };
  replication?: { usename: string; application_name: string; client_addr: string; state: string; sync_state: string }[];
  dcs_last_seen?: number;
  failsafe_mode_is_active?: boolean;
  cluster_unlocked?: boolean;
  pause?: boolean;
  patroni?: { version: string; scope: string };
  sync_standby?: boolean;
}

/** GET /config: the dynamic configuration kept in the DCS. */
export interface PatroniConfigJson {
  ttl?: number;
  loop_wait?: number;
  retry_timeout?: number;
  maximum_lag_on_failover?: number;
  synchronous_mode?: boolean;
  synchronous_mode_strict?: boolean;
  failsafe_mode?: boolean;
  postgresql?: { use_pg_rewind?: boolean; parameters?: Record<string, unknown> };
}

/** GET /history: [timeline, switch LSN (bytes), reason, time, new leader] per ended timeline. */
export type PatroniHistoryJson = [number, number, string, string?, string?][];

export class PatroniApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'PatroniApiError';
  }
}

export class PatroniApi {
  constructor(
    private readonly auth: PatroniApiAuth,
    private readonly timeoutMs = 5_000,
  ) {}

  /** One request to a member's API; resolves with any HTTP status, rejects when the member does not answer. */
  call<T = unknown>(baseUrl: string, method: string, path: string, body?: unknown, timeoutMs = this.timeoutMs): Promise<PatroniResponse<T>> {
    const url = new URL(path, baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`);
    const https = url.protocol === 'https:';
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    if (this.auth.username && this.auth.password) headers.authorization = `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password()}`).toString('base64')}`;
    const options: RequestOptions & { ca?: string; cert?: string; key?: string; servername?: string } = { method, headers, timeout: timeoutMs };
    if (https) {
      if (this.auth.ca) options.ca = this.auth.ca();
      if (this.auth.cert) options.cert = this.auth.cert();
      if (this.auth.key) options.key = this.auth.key();
      if (this.auth.serverName) options.servername = this.auth.serverName;
    }
    return new Promise((resolve, reject) => {
      const req = (https ? httpsRequest : httpRequest)(url, options, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            /* Patroni answers some actions in plain text */
          }
          resolve({ status: res.statusCode ?? 0, body: parsed as T, text });
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new PatroniApiError(`${method} ${url.href}: no answer within ${timeoutMs} ms`, undefined, 'ETIMEDOUT')));
      req.on('error', (err: NodeJS.ErrnoException) => reject(err instanceof PatroniApiError ? err : new PatroniApiError(`${method} ${url.href}: ${err.message}`, undefined, err.code)));
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  async json<T>(baseUrl: string, path: string, timeoutMs?: number): Promise<T> {
    const r = await this.call<T>(baseUrl, 'GET', path, undefined, timeoutMs);
    if (r.status === 401 || r.status === 403) throw new PatroniApiError(`GET ${path} on ${baseUrl}: HTTP ${r.status}: the credentials were refused`, r.status);
    if (r.status >= 300) throw new PatroniApiError(`GET ${path} on ${baseUrl}: HTTP ${r.status} ${r.text.slice(0, 200)}`, r.status);
    return r.body;
  }

  cluster = (url: string) => this.json<PatroniClusterJson>(url, 'cluster');
  status = (url: string) => this.json<PatroniStatusJson>(url, 'patroni');
  config = (url: string) => this.json<PatroniConfigJson>(url, 'config');
  history = (url: string) => this.json<PatroniHistoryJson>(url, 'history');

  /** A health endpoint (primary, replica, health, read-write, ...): its HTTP status, or 0 when the member does not answer. */
  async health(url: string, endpoint: string): Promise<number> {
    try {
      return (await this.call(url, 'GET', endpoint, undefined, 3_000)).status;
    } catch {
      return 0;
    }
  }

  /** POST /switchover: Patroni waits for the new leader itself and answers 200 with what happened, or 4xx/5xx with why not. */
  switchover(url: string, leader: string, candidate: string): Promise<PatroniResponse<string>> {
    return this.call<string>(url, 'POST', 'switchover', { leader, candidate }, 60_000);
  }
}
