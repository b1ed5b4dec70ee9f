import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { freePort } from '../../src/system/process';
import { httpStatus, REPO, runCli, startCli, waitFor } from '../helpers';

// The release the project pins and the bootstrap installs; a silent fall-back to another major fails here.
const pinned = readFileSync(join(REPO, '.node-version'), 'utf8').trim();
const pinnedMajor = pinned.split('.')[0];
const major = (version: string) => version.replace(/^v/, '').split('.')[0];

/** Every `node` on PATH, in PATH order, other than the project's own. */
function otherNodesOnPath(): string[] {
  const found: string[] = [];
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'node');
    try {
      const version = execFileSync(candidate, ['--version'], { encoding: 'utf8' }).trim();
      if (major(version) !== pinnedMajor) found.push(candidate);
    } catch {
      /* no node here */
    }
  }
  return found;
}

const dir = mkdtempSync(join(tmpdir(), 'runbook-runtime-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('the supported runtime', () => {
  test(`the test runner runs on the pinned Node.js major (${pinnedMajor}, release ${pinned})`, () => {
    assert.equal(major(process.versions.node), pinnedMajor, `the suite runs on Node.js ${process.versions.node}; run it through npm test (scripts/node-env)`);
  });

  test('the CLI runs on the pinned major even when an older Node.js comes first on PATH', async () => {
    // The machine's own Node.js (20 on the CI machine) placed first on PATH, as a user's shell would have it.
    const older = otherNodesOnPath();
    const path = [...older.map((n) => dirname(n)), process.env.PATH ?? ''].join(delimiter);
    const r = await runCli(['--json', 'version'], { env: { PATH: path } });
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as { runbook: string; node: string; temporalSdk: string };
    assert.equal(major(info.node), pinnedMajor, `bin/runbook ran on Node.js ${info.node} with ${older.join(', ') || 'no other node'} first on PATH`);
    assert.match(info.temporalSdk, /^1\.\d+\.\d+$/, 'the Temporal SDK stays on 1.x');
    const human = await runCli(['version'], { env: { PATH: path } });
    assert.match(human.stdout, new RegExp(`^runbook \\d+\\.\\d+\\.\\d+ \\(Node\\.js ${pinnedMajor}\\.`));
  });

  test('the worker runs on the pinned major and says so on /health and /metrics', async () => {
    const httpPort = await freePort();
    const configFile = join(dir, 'runbook.yaml');
    // Nothing listens on the Temporal port: /health answers while the worker keeps trying to connect.
    writeFileSync(configFile, `version: 1\nenvironments:\n  ci:\n    temporal: { address: "127.0.0.1:${await freePort()}" }\nworker:\n  http: { host: 127.0.0.1, port: ${httpPort} }\n`);
    const older = otherNodesOnPath();
    const path = [...older.map((n) => dirname(n)), process.env.PATH ?? ''].join(delimiter);
    const worker = startCli(['--config', configFile, 'worker'], { env: { PATH: path } });
    try {
      const health = await waitFor('/health', async () => {
        const r = await httpStatus(`http://127.0.0.1:${httpPort}/health`);
        return r.status === 200 && (JSON.parse(r.body) as { runtime: { node: string } });
      });
      assert.equal(major(health.runtime.node), pinnedMajor, `the worker runs on Node.js ${health.runtime.node}`);
      const metrics = (await httpStatus(`http://127.0.0.1:${httpPort}/metrics`)).body;
      assert.match(metrics, new RegExp(`runbook_build_info\\{[^}]*node="${pinnedMajor}\\.`));
    } finally {
      worker.child.kill('SIGKILL');
      await worker.exited;
    }
  });
});
