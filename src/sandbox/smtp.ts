import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { findBinary, freePort, spawnService, stopService, waitUntil } from '../system/process';

export interface SmtpServerInfo {
  pid: number;
  host: string;
  port: number;
  /** Delivered messages land here, one file each (Maildir: new/). */
  maildir: string;
  logFile: string;
}

/** A real SMTP server (aiosmtpd from Debian's python3-aiosmtpd) that keeps every message it takes in a Maildir. */
export async function startSmtpServer(opts: { dir: string; host?: string }): Promise<SmtpServerInfo> {
  const binary = findBinary('aiosmtpd', { envVar: 'AIOSMTPD_PATH', dirs: ['/usr/bin'], hint: 'Install the SMTP test server (scripts/bootstrap does: apt-get install python3-aiosmtpd).' });
  const host = opts.host ?? '127.0.0.1';
  const port = await freePort(host);
  const maildir = join(opts.dir, 'maildir');
  mkdirSync(opts.dir, { recursive: true });
  const logFile = join(opts.dir, 'smtp.log');
  const service = spawnService('aiosmtpd', binary, ['-n', '-l', `${host}:${port}`, '-c', 'aiosmtpd.handlers.Mailbox', maildir], logFile);
  const answers = () =>
    new Promise<boolean>((resolve) => {
      const s = connect({ host, port }, () => {
        s.once('data', (d) => {
          s.end('QUIT\r\n');
          resolve(d.toString().startsWith('220'));
        });
      });
      s.on('error', () => resolve(false));
    });
  try {
    await waitUntil('the SMTP server', answers, { timeoutMs: 20_000, pid: service.pid, logFile, intervalMs: 100 });
  } catch (err) {
    await stopService(service.pid);
    throw err;
  }
  return { pid: service.pid, host, port, maildir, logFile };
}

/** The messages delivered so far, as raw text. */
export function deliveredMail(info: SmtpServerInfo): string[] {
  const dir = join(info.maildir, 'new');
  try {
    return readdirSync(dir).sort().map((f) => readFileSync(join(dir, f), 'utf8'));
  } catch {
    return [];
  }
}

export function stopSmtpServer(pid: number): Promise<void> {
  return stopService(pid, 'SIGTERM', 10_000);
}
