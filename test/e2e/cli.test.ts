import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { after, describe, test } from 'node:test';
import { freePort } from '../../src/system/process';
import { processesInGroup, runCli, startCli, taggedProcesses, waitFor, httpStatus } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'runbook-e2e-'));
chmodSync(dir, 0o755);
after(() => rmSync(dir, { recursive: true, force: true }));

describe('runbook config check', () => {
  test('a good file passes with a summary; exit 0', async () => {
    const res = await runCli(['config', 'check', 'runbook.example.yaml', '--no-secrets']);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /runbook\.example\.yaml: ok \(2 environments, 7 schedules\)/);
    assert.match(res.stdout, /staging: .*RPO 15m RTO 1h/);
  });

  test('a bad file names each field and exits 2 without a stack trace; --json carries the problems', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'version: 1\nenvironments:\n  prod:\n    targets: { rpo: soon }\n    databases:\n      main: { host: h, database: app, user: u, password: s3cret }\n');
    const res = await runCli(['config', 'check', file]);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /bad\.yaml:4: environments\.prod\.targets\.rpo: expected 0 \(nothing may be lost\) or a positive duration .* found "soon"/);
    assert.match(res.stderr, /bad\.yaml:6: environments\.prod\.databases\.main\.password: inline secret values are not allowed/);
    assert.doesNotMatch(res.stderr, /\n\s+at /);
    const json = await runCli(['--json', 'config', 'check', file]);
    assert.equal(json.code, 2);
    const body = JSON.parse(json.stdout);
    assert.equal(body.ok, false);
    assert.deepEqual(body.error.problems.map((p: { path: string }) => p.path).sort(), ['environments.prod.databases.main.password', 'environments.prod.targets.rpo']);
  });

  test('unresolvable secret references are reported for the environment checked', async () => {
    const file = join(dir, 'refs.yaml');
    writeFileSync(file, 'version: 1\nenvironments:\n  prod:\n    temporal: { apiKey: env:RUNBOOK_E2E_UNSET_KEY }\n');
    const res = await runCli(['config', 'check', file]);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /environments\.prod\.temporal\.apiKey: secret reference env:RUNBOOK_E2E_UNSET_KEY cannot be resolved: environment variable RUNBOOK_E2E_UNSET_KEY is not set/);
    const ok = await runCli(['config', 'check', file], { env: { RUNBOOK_E2E_UNSET_KEY: 'x' } });
    assert.equal(ok.code, 0, ok.stderr);
  });
});

describe('bad command-line input is refused before anything runs', () => {
  const cases: { args: string[]; says: RegExp }[] = [
    { args: ['smoke', '--queue', 'urgent'], says: /--queue: expected one of critical, standard, batch, found "urgent"/ },
    { args: ['smoke', '--hold', '-5'], says: /--hold: expected a number of seconds from 0 to 3600, found "-5"/ },
    { args: ['smoke', '--hold', 'forever'], says: /--hold: expected a number of seconds/ },
    { args: ['worker', '--http-port', '99999'], says: /--http-port: expected a port number/ },
    { args: ['--config', 'runbook.example.yaml', '--env', 'prod', 'smoke'], says: /unknown environment 'prod'; defined: staging, production/ },
    { args: ['--config', '/nonexistent/runbook.yaml', 'smoke'], says: /\/nonexistent\/runbook\.yaml: .*file not found/ },
    { args: ['stack', 'up', '--only', 'postgres,mysql'], says: /--only: unknown component mysql/ },
  ];
  for (const c of cases) {
    test(c.args.join(' '), async () => {
      const res = await runCli(c.args);
      assert.equal(res.code, 2, `exit code 2 (stdout ${res.stdout}, stderr ${res.stderr})`);
      assert.match(res.stderr, c.says);
    });
  }
});

describe('an operator session: stack up, worker, smoke, status, stack down', () => {
  test('the whole cycle works from the command line and leaves nothing running', async () => {
    const stackDir = join(dir, 'stack');
    const up = await runCli(['--json', 'stack', 'up', '--dir', stackDir, '--headless']);
    assert.equal(up.code, 0, up.stderr);
    const state = JSON.parse(up.stdout).stack;
    const pids: number[] = [state.temporal.pid, state.postgres.pid, state.postgresReplica.pid, state.s3.pid, state.dns.pid];
    const configFile = state.configFile as string;
    let worker: ReturnType<typeof startCli> | undefined;
    try {
      // Starting twice from the same directory is refused, the running stack untouched.
      const again = await runCli(['stack', 'up', '--dir', stackDir, '--headless']);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /already running/);

      const status = await runCli(['--json', 'stack', 'status', '--dir', stackDir]);
      assert.equal(status.code, 0, status.stderr);
      assert.deepEqual(JSON.parse(status.stdout).components.map((c: { component: string; running: boolean }) => [c.component, c.running]), [
        ['temporal', true],
        ['postgres', true],
        ['replica', true],
        ['s3', true],
        ['dns', true],
      ]);

      const httpPort = await freePort();
      worker = startCli(['--config', configFile, 'worker', '--http-port', String(httpPort), '--queues', 'standard,critical']);
      await waitFor('worker ready', async () => (await httpStatus(`http://127.0.0.1:${httpPort}/ready`)).status === 200, 180_000, 200);

      const smoke = await runCli(['--config', configFile, 'smoke']);
      assert.equal(smoke.code, 0, smoke.stderr);
      assert.match(smoke.stdout, /smoke test passed on standard-queue/);
      assert.match(smoke.stdout, /\[ok  \] execute activity round trip/);
      const workflowId = /workflow (smokeTest-sandbox-\S+)\)/.exec(smoke.stdout)![1];
      const timeline = await runCli(['--config', configFile, '--json', 'timeline', workflowId]);
      assert.equal(timeline.code, 0, timeline.stderr);
      assert.equal(JSON.parse(timeline.stdout).steps[0].outcome, 'succeeded');

      // A queue no worker serves: the run is ended by the server at the timeout, and the CLI says why.
      const unserved = await runCli(['--config', configFile, 'smoke', '--queue', 'batch', '--timeout', '3']);
      assert.equal(unserved.code, 1);
      assert.match(unserved.stderr, /no worker has polled task queue batch-queue/);
      assert.match(unserved.stdout, /no worker completed the smoke test on batch-queue within 3s/);

      // A drill from the command line, signed with the sandbox's keys: started by sandbox-operator (the
      // config's signing.key), whose own approval four-eyes refuses; sandbox-reviewer approves.
      const started = await runCli(['--config', configFile, 'drill', 'start', '--mode', 'switchover']);
      assert.equal(started.code, 0, started.stderr);
      const drillId = started.stdout.trim();
      assert.match(drillId, /^drDrill-sandbox-/);
      await waitFor('the drill gate', async () => {
        const st = await runCli(['--config', configFile, '--json', 'drill', 'status', drillId]);
        return st.code === 0 && JSON.parse(st.stdout).gates.some((g: { outcome: string }) => g.outcome === 'waiting');
      }, 60_000, 500);
      const refused = await runCli(['--config', configFile, 'drill', 'approve', drillId]);
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /approve refused: four-eyes: sandbox-operator requested this run and may not approve it/);
      const reviewerKey = join(dirname(configFile), 'keys', 'sandbox-reviewer');
      const approved = await runCli(['--config', configFile, 'drill', 'approve', drillId, '--key', reviewerKey, '--reason', 'e2e']);
      assert.equal(approved.code, 0, approved.stderr);
      assert.match(approved.stdout, /gate 'start the drill' approved by sandbox-reviewer \(key SHA256:\S+\)/);
      const report = await runCli(['--config', configFile, 'drill', 'report', drillId], { timeoutMs: 180_000 });
      assert.equal(report.code, 0, report.stderr + report.stdout);
      assert.match(report.stdout, /DR drill passed: sandbox\/main switchover/);
      assert.match(report.stdout, /primary pg-a -> pg-b; approved by sandbox-reviewer/);
      assert.match(report.stdout, /RTO [\d.]+ s \(target 1800\.0 s\), RPO 0\.0 s/);

      worker.child.kill('SIGTERM');
      assert.equal((await worker.exited).code, 0);
      // The worker used every secret of the sandbox (database, S3, TSIG) and logged none of them.
      const { readdirSync, readFileSync } = await import('node:fs');
      const secretsDir = join(stackDir, 'secrets');
      const secrets = readdirSync(secretsDir).map((f) => readFileSync(join(secretsDir, f), 'utf8').trim()).filter((v) => v.length >= 8);
      assert.ok(secrets.length >= 3);
      for (const secret of secrets) assert.ok(!(worker.output.stdout + worker.output.stderr).includes(secret), 'a secret value appears in the worker log');
    } finally {
      if (worker && worker.child.exitCode === null) worker.child.kill('SIGKILL');
      const down = await runCli(['stack', 'down', '--dir', stackDir]);
      assert.equal(down.code, 0, down.stderr);
      assert.match(down.stdout, /stopped temporal, postgres, replica, s3, dns/);
    }
    for (const pid of pids) assert.deepEqual(processesInGroup(pid), [], `nothing left of process group ${pid}`);
    const after = await runCli(['stack', 'status', '--dir', stackDir]);
    assert.equal(after.code, 1);
    assert.match(after.stdout, /no stack is running/);
  });
});

describe('runbook demo', () => {
  test('brings the stack up, runs the runbooks the Quickstart lists through a worker (13 runs), reports, and leaves nothing running', async () => {
    // Everything the demo starts inherits this tag, so processes of test files running alongside do not count.
    const tag = `demo-${process.pid}-${Date.now()}`;
    const res = await runCli(['--json', 'demo'], { timeoutMs: 900_000, env: { RUNBOOK_TEST_TAG: tag } });
    // With --json an error is printed as JSON on stdout: both streams say why a demo failed.
    assert.equal(res.code, 0, `${res.stderr}\n${res.stdout.slice(-3000)}`);
    const report = JSON.parse(res.stdout);
    assert.equal(report.ok, true);
    assert.match(report.temporalUi, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.deepEqual(report.runs.map((r: { runbook: string; queue: string; ok: boolean }) => [r.runbook, r.queue, r.ok]), [
      ['smokeTest', 'critical-queue', true],
      ['smokeTest', 'standard-queue', true],
      ['smokeTest', 'batch-queue', true],
      ['backupDatabase', 'batch-queue', true],
      ['verifyBackup', 'batch-queue', true],
      ['drDrill', 'critical-queue', true],
      ['rollout', 'critical-queue', true],
      ['release', 'critical-queue', true],
      ['promotion', 'critical-queue', true],
      ['rollback', 'critical-queue', true],
      ['readinessAudit', 'standard-queue', true],
      ['goLive', 'critical-queue', true],
      ['loadTest', 'batch-queue', true],
    ]);
    const rollout = report.runs[6].detail.result;
    assert.equal(rollout.outcome, 'promoted');
    assert.deepEqual(rollout.finalImages, [{ name: 'web', image: 'registry.sandbox.test/web:1.1' }]);
    assert.deepEqual(rollout.status.approvals.map((g: { outcome: string; by: string }) => [g.outcome, g.by]), [['approved', 'sandbox-reviewer'], ['approved', 'sandbox-reviewer']]);
    // The release: backup, the reviewer's signed approval, the migration Job that ran psql for real, the canary.
    const release = report.runs[7].detail.result;
    assert.equal(release.outcome, 'released');
    assert.match(release.backup.backupId, /^\d{8}T\d{6}Z-/);
    assert.equal(release.approval.by, 'sandbox-reviewer');
    assert.equal(release.migration.exitCode, 0);
    assert.match(release.migration.logTail, /ALTER TABLE/);
    assert.equal(release.rollout.outcome, 'promoted');
    // The promotion: a rollout in each environment, the approval between them signed by the reviewer.
    const promotion = report.runs[8].detail.result;
    assert.equal(promotion.outcome, 'promoted');
    assert.deepEqual(promotion.stages.map((s: { environment: string; state: string }) => [s.environment, s.state]), [['sandbox', 'promoted'], ['sandbox-prod', 'promoted']]);
    const approval = promotion.timeline.steps.find((s: { name: string }) => /approv/.test(s.name));
    assert.equal(approval?.evidence?.by, 'sandbox-reviewer', JSON.stringify(promotion.timeline.steps.map((s: { name: string }) => s.name)));
    const drill = report.runs[5].detail.report;
    assert.equal(drill.rpo.markerPresent, true);
    // The drill's plan, made just before it, named the steps the drill then ran.
    assert.equal(report.drillPlan.ok, true, JSON.stringify(report.drillPlan.problems));
    assert.deepEqual(report.drillPlan.steps.map((s: { name: string }) => s.name), drill.steps.map((s: { name: string }) => s.name));
    assert.ok(drill.rto.ms > 0);
    // The rollback: web back from the promotion's 1.3 to the release's 1.2, verified by its pods.
    const rollback = report.runs[9].detail.result;
    assert.equal(rollback.changed, true);
    assert.equal(rollback.verified, true);
    assert.deepEqual([rollback.from.images, rollback.to.images], [[{ name: 'web', image: 'registry.sandbox.test/web:1.3' }], [{ name: 'web', image: 'registry.sandbox.test/web:1.2' }]]);
    // The audit reports every catalog item; the sandbox is not production-ready, and its score line says so.
    const audit = report.runs[10].detail;
    const c = audit.result.counts;
    assert.equal(c.pass + c.fail + c.attested + c.unknown, 106);
    assert.equal(audit.result.ready, false);
    assert.match(audit.text, new RegExp(`^Readiness audit of sandbox: ${Math.round(audit.result.score * 100)}% \\(${c.pass + c.attested} of 106 items pass or are attested\\); NOT READY: \\d+ critical items? not proved`));
    // The go-live: every blocking item waived by the reviewer (signed), approved by the reviewer, rolled out, watched.
    const golive = report.runs[11].detail.result;
    assert.equal(golive.outcome, 'live');
    assert.ok(golive.audit.waived.length > 0);
    assert.deepEqual(golive.audit.blocking, []);
    assert.ok(golive.audit.waived.every((w: { by: string }) => w.by === 'sandbox-reviewer'));
    assert.equal(golive.approval.by, 'sandbox-reviewer');
    assert.equal(golive.rollout.outcome, 'promoted');
    assert.deepEqual(golive.rollout.finalImages, [{ name: 'shop', image: 'registry.sandbox.test/shop:1.1' }]);
    assert.equal(golive.watch.passed, true);
    // The load test: four phases, nothing lost; the failure phase (workers stopped) misses its SLA by design.
    const load = report.runs[12].detail.result;
    assert.equal(load.passed, true);
    assert.deepEqual(load.phases.map((p: { phase: string; verdict: { held: boolean; nothingLost: boolean } }) => [p.phase, p.verdict.held, p.verdict.nothingLost]), [
      ['baseline', true, true],
      ['peak', true, true],
      ['failure', false, true],
      ['recovery', true, true],
    ]);
    assert.deepEqual(taggedProcesses(tag), [], 'nothing the demo started is still running');
  });
});
