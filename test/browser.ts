/**
 * Headless Chromium (Debian's package, installed by the bootstrap) driven over the DevTools protocol
 * with Node's own WebSocket: open a page, collect what its console and the runtime report as errors,
 * evaluate expressions in it, click, and keep a screenshot as a test artefact.
 */
import { spawn, ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where screenshots and the pages themselves are kept (RUNBOOK_TEST_ARTIFACTS, else under the temp directory). */
export const ARTIFACTS = process.env.RUNBOOK_TEST_ARTIFACTS ?? join(tmpdir(), 'runbook-test-artifacts');

interface Pending {
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: Error) => void;
}

export interface OpenedPage {
  /** Console errors, uncaught exceptions and failed loads, as text. */
  errors: string[];
  evaluate<T>(expression: string): Promise<T>;
  screenshot(name: string): Promise<string>;
}

export class Browser {
  private constructor(
    private readonly proc: ChildProcess,
    private readonly ws: WebSocket,
    private readonly profile: string,
  ) {
    ws.addEventListener('message', (e) => this.onMessage(String(e.data)));
  }

  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(msg: { method: string; params: Record<string, unknown>; sessionId?: string }) => void>();

  static async launch(): Promise<Browser> {
    const profile = mkdtempSync(join(tmpdir(), 'runbook-chromium-'));
    const proc = spawn('chromium', ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--remote-debugging-port=0', `--user-data-dir=${profile}`, 'about:blank'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const url = await new Promise<string>((resolve, reject) => {
      let err = '';
      const timer = setTimeout(() => reject(new Error(`chromium did not open its DevTools port within 30 s: ${err.slice(-500)}`)), 30_000);
      proc.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      proc.once('exit', (code) => reject(new Error(`chromium exited (${code}) before it listened: ${err.slice(-500)}`)));
    });
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => resolve(), { once: true });
      ws.addEventListener('error', () => reject(new Error(`could not connect to ${url}`)), { once: true });
    });
    return new Browser(proc, ws, profile);
  }

  private onMessage(text: string): void {
    const msg = JSON.parse(text) as { id?: number; result?: Record<string, unknown>; error?: { message: string }; method?: string; params?: Record<string, unknown>; sessionId?: string };
    if (msg.id !== undefined) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error) p?.reject(new Error(msg.error.message));
      else p?.resolve(msg.result ?? {});
    } else if (msg.method) {
      for (const l of this.listeners) l({ method: msg.method, params: msg.params ?? {}, sessionId: msg.sessionId });
    }
  }

  private send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  /** Opens a file or URL in a new tab and waits for its load event. */
  async open(url: string): Promise<OpenedPage> {
    const { targetId } = (await this.send('Target.createTarget', { url: 'about:blank' })) as { targetId: string };
    const { sessionId } = (await this.send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string };
    const errors: string[] = [];
    let loaded: () => void = () => undefined;
    const load = new Promise<void>((r) => (loaded = r));
    this.listeners.add(({ method, params, sessionId: s }) => {
      if (s !== sessionId) return;
      if (method === 'Runtime.exceptionThrown') errors.push(`exception: ${JSON.stringify((params.exceptionDetails as { text?: string; exception?: { description?: string } })?.exception?.description ?? params.exceptionDetails)}`);
      if (method === 'Runtime.consoleAPICalled' && (params.type === 'error' || params.type === 'assert')) errors.push(`console.${params.type}: ${JSON.stringify(params.args)}`);
      if (method === 'Log.entryAdded') {
        const e = params.entry as { level: string; text: string; url?: string };
        if (e.level === 'error') errors.push(`log: ${e.text}${e.url ? ` (${e.url})` : ''}`);
      }
      if (method === 'Page.loadEventFired') loaded();
    });
    await Promise.all([this.send('Page.enable', {}, sessionId), this.send('Runtime.enable', {}, sessionId), this.send('Log.enable', {}, sessionId)]);
    await this.send('Page.navigate', { url }, sessionId);
    await Promise.race([load, new Promise((_, reject) => setTimeout(() => reject(new Error(`${url} did not load within 30 s`)), 30_000))]);
    return {
      errors,
      evaluate: async <T>(expression: string) => {
        const r = (await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, sessionId)) as { result: { value?: T }; exceptionDetails?: { text: string } };
        if (r.exceptionDetails) throw new Error(`${expression}: ${r.exceptionDetails.text}`);
        return r.result.value as T;
      },
      screenshot: async (name: string) => {
        const { data } = (await this.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true }, sessionId)) as { data: string };
        mkdirSync(ARTIFACTS, { recursive: true });
        const file = join(ARTIFACTS, `${name}.png`);
        writeFileSync(file, Buffer.from(data, 'base64'));
        return file;
      },
    };
  }

  async close(): Promise<void> {
    await this.send('Browser.close').catch(() => undefined);
    this.ws.close();
    await new Promise<void>((resolve) => {
      if (this.proc.exitCode !== null) return resolve();
      const t = setTimeout(() => {
        this.proc.kill('SIGKILL');
        resolve();
      }, 5_000);
      this.proc.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
    rmSync(this.profile, { recursive: true, force: true });
  }
}

/** Writes a page to the artefacts directory and returns its file URL. */
export function keepPage(name: string, html: string): { file: string; url: string } {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = join(ARTIFACTS, `${name}.html`);
  writeFileSync(file, html);
  return { file, url: `file://${file}` };
}
