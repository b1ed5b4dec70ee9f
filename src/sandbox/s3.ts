import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { request } from 'node:http';
import { join } from 'node:path';
import { findBinary, freePort, spawnService, stopService, waitUntil } from '../system/process';

export interface S3ServerInfo {
  pid: number;
  endpoint: string;
  region: string;
  /** moto accepts any credentials; these are written to files and referenced like real ones. */
  accessKeyId: string;
  secretAccessKey: string;
  logFile: string;
}

export function findMotoServer(): string {
  return findBinary('moto_server', {
    envVar: 'MOTO_SERVER_PATH',
    pythonScripts: true,
    hint: "Run scripts/bootstrap (it installs the pinned 'moto[server]' package), or set MOTO_SERVER_PATH.",
  });
}

function httpAnswers(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'GET', timeout: 1_000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

export async function startS3Server(opts: { dir: string; host?: string; port?: number; buckets?: string[] }): Promise<S3ServerInfo> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? (await freePort(host));
  const logFile = join(opts.dir, 's3.log');
  const service = spawnService('s3 (moto)', findMotoServer(), ['-H', host, '-p', String(port)], logFile);
  const endpoint = `http://${host}:${port}`;
  try {
    await waitUntil('S3 server (moto)', () => httpAnswers(`${endpoint}/moto-api/`), { timeoutMs: 30_000, pid: service.pid, logFile, intervalMs: 200 });
  } catch (err) {
    await stopService(service.pid);
    throw err;
  }
  const info: S3ServerInfo = { pid: service.pid, endpoint, region: 'us-east-1', accessKeyId: 'sandbox', secretAccessKey: 'sandbox-secret', logFile };
  if (opts.buckets?.length) {
    const s3 = new S3Client({ endpoint, region: info.region, forcePathStyle: true, credentials: { accessKeyId: info.accessKeyId, secretAccessKey: info.secretAccessKey } });
    try {
      for (const Bucket of opts.buckets) await s3.send(new CreateBucketCommand({ Bucket }));
    } finally {
      s3.destroy();
    }
  }
  return info;
}

export function stopS3Server(pid: number): Promise<void> {
  return stopService(pid, 'SIGTERM', 10_000);
}
