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
    assert.match(stdout, /SUCCESS: 14 rules found/);
  });

  test('promtool unit tests: every alert fires when it should and not otherwise', async () => {
    // rules.test.yml evaluates every minute; rules.long.test.yml holds the alerts judged over hours and days, evaluated hourly.
    const files = ['rules.test.yml', 'rules.long.test.yml'];
    for (const file of files) {
      const { stdout, stderr } = await run('promtool', ['test', 'rules', join(dir, file)]).catch((err: { stdout: string; stderr: string }) => {
        assert.fail(`promtool test rules ${file} failed:\n${err.stdout}\n${err.stderr}`);
      });
      assert.match(stdout + stderr, /SUCCESS/, file);
    }
    const tested = new Set(files.flatMap((f) => readFileSync(join(dir, f), 'utf8').match(/alertname: (\w+)/g)!.map((m) => m.slice('alertname: '.length))));
    const alerts = readFileSync(join(dir, 'rules.yml'), 'utf8').match(/- alert: (\w+)/g)!.map((m) => m.slice('- alert: '.length));
    assert.deepEqual(alerts.filter((a) => !tested.has(a)), [], 'every alert has a unit test');
  });

  test("every runbook_* metric the rules and the dashboard use is one this project's worker exports", async () => {
    const exported = new Set((await new RunbookMetrics().registry.getMetricsAsJSON()).map((m) => m.name));
    for (const file of [join(dir, 'rules.yml'), join(dir, '..', 'grafana', 'runbooks.json')]) {
      const used = metricNames(readFileSync(file, 'utf8'), 'runbook_');
      assert.ok(used.length >= 5, file);
      assert.deepEqual(used.filter((n) => !exported.has(n)), [], file);
    }
  });

  test("the dashboard has the checklist's panels and a query in every panel", () => {
    const dashboard = JSON.parse(readFileSync(join(dir, '..', 'grafana', 'runbooks.json'), 'utf8')) as { panels: { type: string; title: string; targets?: { expr: string }[] }[] };
    const rows = dashboard.panels.filter((p) => p.type === 'row').map((p) => p.title);
    assert.deepEqual(rows, ['Cluster overview', 'Workflows by type', 'Activities', 'Queues and latency', 'Runbooks']);
    for (const p of dashboard.panels.filter((x) => x.type !== 'row')) assert.ok(p.targets?.length && p.targets.every((t) => t.expr.length > 0), p.title);
  });
});
