import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Connection } from '@temporalio/client';
import { connectClient } from '../../src/cli/client';
import { runSmokeTest } from '../../src/cli/smoke';
import { loadConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import { createCa, issueCert, TlsFront } from '../../src/sandbox/tls';
import { startTemporalDevServer, stopTemporalDevServer, TemporalDevServerInfo } from '../../src/sandbox/temporal';
import { RunbookWorker } from '../../src/worker';
import { waitFor } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-tls-test-'));
let temporal: TemporalDevServerInfo | undefined;
let front: TlsFront | undefined;
let worker: RunbookWorker | undefined;
after(async () => {
  await worker?.shutdown().catch(() => undefined);
  await front?.close();
  if (temporal) await stopTemporalDevServer(temporal.pid);
  rmSync(dir, { recursive: true, force: true });
});

/** Replaces a file the way a certificate manager does: write beside it, then rename over it. */
function replaceFile(from: string, to: string): void {
  copyFileSync(from, `${to}.new`);
  renameSync(`${to}.new`, to);
}

describe('mTLS to Temporal', () => {
  test('the worker connects with a client certificate, a client without one is refused, and a rotated certificate is picked up without a restart', async () => {
    temporal = await startTemporalDevServer({ dir });
    const [host, port] = temporal.address.split(':');
    const pki = join(dir, 'pki');
    const ca = await createCa(pki);
    const serverCert = await issueCert(pki, ca, 'temporal-frontend', { usage: 'server', dnsNames: ['temporal.sandbox.test'], ips: ['127.0.0.1'] });
    const first = await issueCert(pki, ca, 'worker-1', { usage: 'client' });
    const second = await issueCert(pki, ca, 'worker-2', { usage: 'client' });
    const operator = await issueCert(pki, ca, 'operator', { usage: 'client' });
    front = new TlsFront({ ca: ca.cert, serverCert, upstream: { host, port: Number(port) } });
    const tlsAddress = await front.listen();

    // The worker's files, as a certificate manager would keep them.
    const tlsDir = join(dir, 'tls');
    mkdirSync(tlsDir);
    copyFileSync(ca.cert, join(tlsDir, 'ca.pem'));
    copyFileSync(first.cert, join(tlsDir, 'client.pem'));
    copyFileSync(first.key, join(tlsDir, 'client.key'));
    const tlsBlock = (certDir: string) =>
      `      tls:\n        serverCa: file:${certDir}/ca.pem\n        clientCert: file:${certDir}/client.pem\n        clientKey: file:${certDir}/client.key\n        serverName: temporal.sandbox.test\n`;
    const workerConfig = join(dir, 'worker.yaml');
    writeFileSync(workerConfig, `version: 1\nenvironments:\n  secure:\n    temporal:\n      address: "127.0.0.1:${tlsAddress.port}"\n${tlsBlock('tls')}`);

    worker = new RunbookWorker({ loaded: loadConfig(workerConfig), httpPort: 0, logger: createLogger('warn') });
    await worker.start();
    await worker.waitUntilReady(60_000);
    assert.ok(front.connections.some((c) => c.clientName === 'worker-1'), 'the worker connected with its client certificate');

    // The operator's CLI connects the same way, with its own certificate.
    const cliDir = join(dir, 'cli-tls');
    mkdirSync(cliDir);
    copyFileSync(ca.cert, join(cliDir, 'ca.pem'));
    copyFileSync(operator.cert, join(cliDir, 'client.pem'));
    copyFileSync(operator.key, join(cliDir, 'client.key'));
    const cliConfig = join(dir, 'cli.yaml');
    writeFileSync(cliConfig, `version: 1\nenvironments:\n  secure:\n    temporal:\n      address: "127.0.0.1:${tlsAddress.port}"\n${tlsBlock('cli-tls')}`);
    const loaded = loadConfig(cliConfig);
    const c = await connectClient(loaded, 'secure', loaded.config.environments.secure);
    try {
      const before = await runSmokeTest(c, { queue: 'standard' });
      assert.equal(before.ok, true, before.error);

      // Server authentication alone is not enough: a client without a certificate is refused.
      await assert.rejects(
        Connection.connect({
          address: `127.0.0.1:${tlsAddress.port}`,
          tls: { serverRootCACertificate: readFileSync(ca.cert), serverNameOverride: 'temporal.sandbox.test' },
          connectTimeout: 5_000,
        }),
      );
      assert.ok(!front.connections.some((c2) => c2.clientName === undefined), 'no unauthenticated connection was relayed');

      // Rotation: new certificate and key land on disk; the worker reconnects with them and drains the old connection.
      replaceFile(second.key, join(tlsDir, 'client.key'));
      replaceFile(second.cert, join(tlsDir, 'client.pem'));
      await waitFor('a connection with the rotated certificate', async () => front!.connections.some((x) => x.clientName === 'worker-2'), 30_000, 200);
      await waitFor('the old connection to close', async () => front!.connections.filter((x) => x.clientName === 'worker-1').every((x) => x.closedAt !== undefined), 30_000, 200);
      await worker.waitUntilReady(30_000);
      const afterRotation = await runSmokeTest(c, { queue: 'critical' });
      assert.equal(afterRotation.ok, true, afterRotation.error);
      assert.equal(afterRotation.result!.worker.pid, process.pid, 'answered by the same worker process, never restarted');
    } finally {
      await c.close();
    }
  });
});
