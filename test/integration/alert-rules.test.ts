import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { RunbookMetrics } from '../../src/observability/metrics';
import { metricNames } from '../helpers';

const run = promisify(execFile);
const dir = join(__dirname, '..', '..', 'deploy', 'prometheus');

describe('Prometheus alert rules (deploy/prometheus)', () => {
  test('promtool accepts the rules', async () => {
    const { stdout } = await run('promtool', ['check', 'rules', join(dir, 'rules.yml')]);
    assert.match(stdout, /SUCCESS: 9 rules found/);
  });

  test('promtool unit tests: every alert fires when it should and not otherwise', async () => {
    const { stdout, stderr } = await run('promtool', ['test', 'rules', join(dir, 'rules.test.yml')]).catch((err: { stdout: string; stderr: string }) => {
      assert.fail(`promtool test rules failed:\n${err.stdout}\n${err.stderr}`);
    });
    assert.match(stdout + stderr, /SUCCESS/);
    const tested = new Set(readFileSync(join(dir, 'rules.test.yml'), 'utf8').match(/alertname: (\w+)/g)!.map((m) => m.slice('alertname: '.length)));
    const alerts = readFileSync(join(dir, 'rules.yml'), 'utf8').match(/- alert: (\w+)/g)!.map((m) => m.slice('- alert: '.length));
    assert.deepEqual(alerts.filter((a) => !tested.has(a)), [], 'every alert has a unit test');
  });

  test("every runbook_* metric the rules use is one this project's worker exports", async () => {
    const exported = new Set((await new RunbookMetrics().registry.getMetricsAsJSON()).map((m) => m.name));
    const used = metricNames(readFileSync(join(dir, 'rules.yml'), 'utf8'), 'runbook_');
    assert.ok(used.length >= 5);
    assert.deepEqual(used.filter((n) => !exported.has(n)), []);
  });
});
