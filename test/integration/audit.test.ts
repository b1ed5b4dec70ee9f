import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, connect as tcpConnect, Server as TcpServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, Server as TlsServer } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import { parse, stringify } from 'yaml';
import { CheckDeps, createCheckActivities } from '../../src/activities/checks';
import { createS3Client, ObjectStore } from '../../src/activities/s3';
import { ConnectedClient, connectClient, startRunbook } from '../../src/cli/client';
import { runSmokeTest } from '../../src/cli/smoke';
import { temporalConnectionSettings } from '../../src/config/connection';
import { loadConfig, LoadedConfig } from '../../src/config/load';
import { createLogger } from '../../src/observability/logger';
import type { AuditItemResult } from '../../src/reports/audit';
import { freePort } from '../../src/system/process';
import { startPrometheus, stopPrometheus } from '../../src/sandbox/prometheus';
import { StackState, startStack, stopStack } from '../../src/sandbox/stack';
import { CertFiles, createCa, issueCert, TlsFront } from '../../src/sandbox/tls';
import { ATTESTATION_GATE, attestSignal, attestUpdate, auditStatusQuery, closeAttestationsSignal, ReadinessAuditResult } from '../../src/workflows/readinessAudit';
import { signAct, Signer } from '../../src/cli/sign';
import { generateKey, signStatement } from '../../src/identity/signer';
import type { SignedStatement } from '../../src/identity/statement';
import { RunbookWorker } from '../../src/worker';
import { REPO, runCli, waitFor } from '../helpers';
import { Browser, keepPage } from '../browser';

const dir = mkdtempSync(join(tmpdir(), 'runbook-audit-test-'));
chmodSync(dir, 0o755);
const LITERAL_SECRET = 'hunter2-literal-value';
const CONFIGMAP_PASSWORD = 'configmap-pw-7731';
const CONFIGMAP_URL = `postgres://app:${CONFIGMAP_PASSWORD}@db.internal:5432/app`;
const CONFIGMAP_KEY = ['-----BEGIN', 'RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n'].join(' ');
let stack: StackState;
let front: TlsFront;
let ca: CertFiles;
let serverCert: CertFiles;
let auditConfig: string;
let loaded: LoadedConfig;
let worker: RunbookWorker;
let c: ConnectedClient;
let store: ObjectStore;
let workerPort: number;
const closers: (() => Promise<unknown>)[] = [];

function deployment(name: string, opts: { replicas: number; compliant: boolean }): k8s.V1Deployment {
  const probe = { httpGet: { path: '/health', port: 8080 }, periodSeconds: 10 };
  const container: k8s.V1Container = opts.compliant
    ? {
        name: 'app',
        image: 'app:1.0',
        livenessProbe: probe,
        readinessProbe: { httpGet: { path: '/ready', port: 8080 } },
        startupProbe: { ...probe, failureThreshold: 30 },
        resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1', memory: '512Mi' } },
        env: [{ name: 'DB_PASSWORD', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } }, { name: 'LOG_LEVEL', value: 'info' }],
        // Settings without secrets, from a ConfigMap read by env and mounted: nothing to report.
        envFrom: [{ configMapRef: { name: 'web-settings' } }],
      }
    : { name: 'app', image: 'app:1.0', env: [{ name: 'DB_PASSWORD', value: LITERAL_SECRET }], envFrom: [{ configMapRef: { name: 'web-bad-env' } }] };
  const volumes: k8s.V1Volume[] = opts.compliant ? [{ name: 'settings', configMap: { name: 'web-settings' } }] : [{ name: 'certs', projected: { sources: [{ configMap: { name: 'web-bad-files' } }] } }];
  return {
    metadata: { name, labels: { app: name } },
    spec: { replicas: opts.replicas, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [container], volumes } } },
  };
}

/** The sandbox config, changed the way an operator would for a production-like environment. */
function writeConfig(file: string, change: (env: Record<string, any>) => void): string {
  const doc = parse(readFileSync(stack.configFile, 'utf8'));
  change(doc.environments.sandbox);
  doc.schedules = [];
  writeFileSync(file, stringify(doc));
  return file;
}

async function closedPort(): Promise<number> {
  return freePort();
}

before(async () => {
  stack = await startStack({ dir: join(dir, 'stack'), components: ['temporal', 'postgres', 'replica', 's3', 'dns', 'kubernetes'] });
  const [host, port] = stack.temporal!.address.split(':');
  const pki = join(dir, 'pki');
  ca = await createCa(pki);
  serverCert = await issueCert(pki, ca, 'frontend', { usage: 'server', dnsNames: ['temporal.sandbox.test'], ips: ['127.0.0.1'] });
  const client = await issueCert(pki, ca, 'audit-worker', { usage: 'client' });
  front = new TlsFront({ ca: ca.cert, serverCert, upstream: { host, port: Number(port) } });
  const tlsAddress = await front.listen();

  const kc = new k8s.KubeConfig();
  kc.loadFromFile(stack.kubernetes!.kubeconfig);
  const namespace = 'default';
  const core = kc.makeApiClient(k8s.CoreV1Api);
  await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'web-settings' }, data: { LOG_FORMAT: 'json', 'app.yaml': 'database:\n  host: db.internal\n  password: ${DB_PASSWORD}\n' } } });
  await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'web-bad-env' }, data: { DATABASE_URL: CONFIGMAP_URL, LOG_FORMAT: 'json' } } });
  await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'web-bad-files' }, data: { 'tls.key': CONFIGMAP_KEY } } });
  await kc.makeApiClient(k8s.AppsV1Api).createNamespacedDeployment({ namespace, body: deployment('web-good', { replicas: 2, compliant: true }) });
  await kc.makeApiClient(k8s.AppsV1Api).createNamespacedDeployment({ namespace, body: deployment('web-bad', { replicas: 1, compliant: false }) });
  await kc.makeApiClient(k8s.PolicyV1Api).createNamespacedPodDisruptionBudget({ namespace, body: { metadata: { name: 'web-good' }, spec: { minAvailable: 1, selector: { matchLabels: { app: 'web-good' } } } } });
  await kc.makeApiClient(k8s.AutoscalingV2Api).createNamespacedHorizontalPodAutoscaler({
    namespace,
    body: { metadata: { name: 'web-good' }, spec: { scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'web-good' }, minReplicas: 2, maxReplicas: 6 } },
  });
  await kc.makeApiClient(k8s.NetworkingV1Api).createNamespacedNetworkPolicy({
    namespace,
    body: { metadata: { name: 'web-good' }, spec: { podSelector: { matchLabels: { app: 'web-good' } }, policyTypes: ['Ingress'], ingress: [{ _from: [{ podSelector: { matchLabels: { role: 'frontend' } } }] }] } },
  });

  // The auditor and mallory have keys in the allowed signers; only the auditor is on the approver list.
  for (const who of ['auditor', 'mallory'] as const) {
    keys[who] = { keyFile: join(dir, who), principal: who };
    appendFileSync(join(stack.dir, 'keys', 'allowed_signers'), `${who} ${(await generateKey(keys[who].keyFile, who)).split(' ').slice(0, 2).join(' ')}\n`);
  }
  workerPort = await freePort();
  auditConfig = writeConfig(join(stack.dir, 'audit.yaml'), (env) => {
    env.temporal = {
      address: `127.0.0.1:${tlsAddress.port}`,
      namespace: 'default',
      tls: { serverCa: `file:${ca.cert}`, clientCert: `file:${client.cert}`, clientKey: `file:${client.key}`, serverName: 'temporal.sandbox.test' },
    };
    env.kubernetes.deployments = ['web-good', 'web-bad'];
    env.approvers = { default: ['sandbox-operator'], readinessAudit: ['auditor'] };
    env.monitoring = { prometheusUrl: 'http://127.0.0.1:9', workerUrls: [`http://127.0.0.1:${workerPort}`] };
  });
  loaded = loadConfig(auditConfig);
  worker = new RunbookWorker({ loaded, httpPort: workerPort, logger: createLogger('warn') });
  await worker.start();
  await worker.waitUntilReady();
  c = await connectClient(loaded, 'sandbox', loaded.config.environments.sandbox);
  const backups = loaded.config.environments.sandbox.backups!;
  store = new ObjectStore(createS3Client(loaded, backups), backups.bucket);
});

after(async () => {
  for (const close of closers) await close().catch(() => undefined);
  await c?.close();
  await worker?.shutdown();
  await front?.close();
  if (stack) await stopStack(stack);
  if (!process.env.RUNBOOK_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
});

const itemOf = (r: ReadinessAuditResult, id: string): AuditItemResult => {
  const found = r.sections.flatMap((s) => s.items).find((i) => i.id === id);
  assert.ok(found, `item ${id} in the report`);
  return found;
};
const checkEvidence = (i: AuditItemResult, check: string) => i.evidence[check] as Record<string, any>;
const keys = {} as Record<'auditor' | 'mallory', Signer>;
let firstAudit: ReadinessAuditResult | undefined;
/** A signed attestation for an audit run. */
async function attestation(handle: { workflowId: string; describe(): Promise<{ runId: string }> }, who: 'auditor' | 'mallory', item: string, comment: string): Promise<SignedStatement> {
  return signAct(c, keys[who], { runbook: 'readinessAudit', workflowId: handle.workflowId, runId: (await handle.describe()).runId, gate: ATTESTATION_GATE, act: 'attest', item, reason: comment });
}
const refusal = (err: unknown) => `${(err as Error).message} ${((err as Error).cause as Error | undefined)?.message ?? ''}`;

/** Check activities built the way the worker builds them, for an environment changed from the audit's. */
async function checksFor(change: (env: Record<string, any>) => void, name: string) {
  const l = loadConfig(writeConfig(join(stack.dir, `${name}.yaml`), change));
  const env = l.config.environments.sandbox;
  const s = temporalConnectionSettings(l, env.temporal);
  let client: Promise<Client> | undefined;
  const deps: CheckDeps = {
    environment: 'sandbox',
    env,
    baseDir: l.baseDir,
    temporalSettings: () => temporalConnectionSettings(l, env.temporal),
    temporal: () =>
      (client ??= Connection.connect({ address: s.address, tls: s.tls, connectTimeout: 5_000 }).then((connection) => {
        closers.push(() => connection.close());
        return new Client({ connection, namespace: s.namespace });
      })),
  };
  return createCheckActivities(deps);
}

describe('the readiness audit', () => {
  test('an audit over mTLS proves items by checks, runbook runs and attestations; an unknown person and an automated item cannot be attested; unreachable Prometheus is unknown, not a failure', async () => {
    const smoke = await runSmokeTest(c, { queue: 'standard' });
    assert.equal(smoke.ok, true, smoke.error);
    await waitFor('the smoke test in visibility', async () => {
      for await (const w of c.client.workflow.list({ query: `WorkflowId = '${smoke.workflowId}' AND ExecutionStatus = 'Completed'` })) return w.workflowId;
      return undefined;
    });

    const { handle } = await startRunbook(c, 'readinessAudit', [{ environment: 'sandbox', waitForAttestationsSeconds: 300, certificateMinDays: 1 }], {});
    await waitFor('the audit to accept attestations', async () => (await handle.query(auditStatusQuery)).approvers !== undefined, 30_000);

    await assert.rejects(handle.executeUpdate(attestUpdate, { args: [await attestation(handle, 'mallory', 'on-call-rotation', 'trust me')] }), (err) => /mallory \(key SHA256:\S+\) may not attest here; allowed: auditor/.test(refusal(err)));
    await assert.rejects(handle.executeUpdate(attestUpdate, { args: [await attestation(handle, 'auditor', 'tls-enabled', 'looks fine')] }), (err) => /tls-enabled is proved by automated checks, not by attestation/.test(refusal(err)));
    await assert.rejects(handle.executeUpdate(attestUpdate, { args: [await attestation(handle, 'auditor', 'no-such-item', 'x')] }), (err) => /no-such-item is not a checklist item/.test(refusal(err)));
    const accepted = await handle.executeUpdate(attestUpdate, { args: [await attestation(handle, 'auditor', 'on-call-rotation', 'rota for the next 4 weeks is staffed in the pager tool')] });
    assert.equal(accepted.by, 'auditor');
    assert.match(accepted.fingerprint ?? '', /^SHA256:/);
    assert.equal(Date.parse(accepted.expiresAt) - Date.parse(accepted.at), 30 * 86_400_000, 'on-call attestations count for 30 days');
    await handle.signal(attestSignal, await attestation(handle, 'mallory', 'communication-plan', 'signal form'));
    await waitFor('the refused signal to be handled', async () => (await handle.query(auditStatusQuery)).attestations.length === 1, 5_000);
    await handle.signal(closeAttestationsSignal, { by: 'auditor' });
    const r = (await handle.result()) as ReadinessAuditResult;

    // Temporal: a dev server behind an mTLS front. What the client sees is TLS with client certificates;
    // behind the front, the dev server's own services speak plaintext, and the audit says so.
    assert.equal(itemOf(r, 'temporal-version').status, 'pass');
    assert.match(checkEvidence(itemOf(r, 'temporal-version'), 'checkTemporalVersion').serverVersion, /^1\.\d+\.\d+/);
    for (const id of ['min-tls-version', 'tls-certificates', 'client-auth']) assert.equal(itemOf(r, id).status, 'pass', `${id}: ${itemOf(r, id).summary}`);
    assert.equal(itemOf(r, 'tls-enabled').status, 'fail');
    assert.match(itemOf(r, 'tls-enabled').summary, /^services speak plaintext: .*frontend 127\.0\.0\.1:\d+/);
    for (const id of ['mtls-configured', 'mtls-enforced']) {
      assert.equal(itemOf(r, id).status, 'fail', id);
      assert.match(itemOf(r, id).summary, /services that serve a client without a certificate: .*\(plaintext\)/, id);
    }
    assert.equal(checkEvidence(itemOf(r, 'mtls-enforced'), 'checkTemporalMtls').connectionWithoutClientCertificate, 'refused', 'the front itself refuses anonymous clients');
    assert.equal(itemOf(r, 'high-availability').status, 'fail');
    assert.match(itemOf(r, 'high-availability').summary, /too few hosts for high availability: frontend 1 \(at least 2\), history 1/);
    assert.match(checkEvidence(itemOf(r, 'min-tls-version'), 'checkTemporalTlsVersion').tls11, /^refused/);
    assert.equal(checkEvidence(itemOf(r, 'tls-certificates'), 'checkTemporalCertificate').chainValid, true);
    assert.ok(front.connections.some((x) => x.clientName === 'audit-worker'));
    const retention = itemOf(r, 'namespace-retention');
    assert.equal(retention.status, 'fail');
    assert.equal(checkEvidence(retention, 'checkNamespaceRetention').retentionDays, 1);
    assert.equal(itemOf(r, 'history-shards').status, 'fail');
    const persistence = itemOf(r, 'persistence-database');
    assert.equal(persistence.status, 'fail', 'the dev server keeps its state in SQLite');
    assert.equal(checkEvidence(persistence, 'checkTemporalPersistence').persistenceStore, 'sqlite');
    // The auditing worker is the only one polling: it does not count itself as a deployed worker.
    assert.equal(itemOf(r, 'worker-assignment').status, 'fail');
    assert.match(itemOf(r, 'worker-assignment').summary, /no deployed worker polls: critical, standard, batch/);

    // Kubernetes: web-good complies, web-bad does not.
    for (const id of ['worker-replicas', 'liveness-probe', 'startup-probe', 'cpu-limits', 'memory-limits', 'pdb-configured', 'hpa-configured', 'network-policies']) {
      const item = itemOf(r, id);
      assert.equal(item.status, 'fail', id);
      const deployments = (Object.values(item.evidence)[0] as { deployments: Record<string, string> }).deployments;
      assert.equal(deployments['web-good'], 'ok', `${id}: web-good`);
      assert.notEqual(deployments['web-bad'], 'ok', `${id}: web-bad`);
    }
    assert.match(itemOf(r, 'worker-replicas').summary, /web-bad: 1 replica/);
    const secrets = itemOf(r, 'no-hardcoded-secrets');
    assert.equal(secrets.status, 'fail');
    assert.match(secrets.summary, /web-bad: app sets DB_PASSWORD to a literal value holding a secret by its name/);
    // In the ConfigMaps it reads and mounts, by shape: the object, the field and the kind, never the value.
    assert.match(secrets.summary, /app takes its env from ConfigMap web-bad-env, whose key DATABASE_URL holds a password in a connection string/);
    assert.match(secrets.summary, /volume certs mounts ConfigMap web-bad-files, whose file tls\.key holds a private key/);
    assert.doesNotMatch(secrets.summary, /web-good/, 'settings and a password by reference are not secrets');
    for (const value of [LITERAL_SECRET, CONFIGMAP_PASSWORD, 'MIIEowIBAAKCAQEA']) assert.ok(!JSON.stringify(r).includes(value), 'the secret value itself is never evidence');
    // Readiness: probes missing on web-bad fail it, while the worker's own /ready answers.
    const readiness = itemOf(r, 'readiness-probe');
    assert.equal(readiness.status, 'fail');
    assert.equal(checkEvidence(readiness, 'checkWorkerHealth').status, 'pass');

    // PostgreSQL, DNS, targets. The app's replica is not Temporal's: without temporal.cluster the audit cannot tell which database is Temporal's.
    assert.equal(itemOf(r, 'db-read-replicas').status, 'unknown');
    assert.match(itemOf(r, 'db-read-replicas').summary, /no temporal.cluster.persistenceDatabase for environment sandbox/);
    assert.equal(itemOf(r, 'dns-configured').status, 'pass');
    assert.deepEqual(checkEvidence(itemOf(r, 'dns-configured'), 'checkDnsRecords').answers, { 'db.sandbox.test': ['127.0.0.2'] });
    assert.equal(itemOf(r, 'rpo-defined').status, 'pass');
    assert.equal(itemOf(r, 'backup-strategy').status, 'fail', 'no backup has been taken');

    // Unreachable Prometheus: unknown with the reason.
    for (const id of ['prometheus-configured', 'alert-service-down', 'metrics-retention']) {
      assert.equal(itemOf(r, id).status, 'unknown', id);
      assert.match(itemOf(r, id).summary, /could not check: (fetch failed|.*ECONNREFUSED)/, id);
    }

    // Runbook runs found through visibility.
    assert.equal(itemOf(r, 'smoke-tests').status, 'pass');
    assert.equal((itemOf(r, 'smoke-tests').evidence.lastRun as { workflowId: string }).workflowId, smoke.workflowId);
    assert.equal(itemOf(r, 'dr-drills-quarterly').status, 'fail');
    assert.match(itemOf(r, 'dr-drills-quarterly').summary, /no completed drDrill run found/);
    assert.equal(itemOf(r, 'rollback-tested').status, 'fail');

    // Attestations.
    const onCall = itemOf(r, 'on-call-rotation');
    assert.equal(onCall.status, 'attested');
    assert.equal(onCall.evidence.by, 'auditor');
    assert.equal(onCall.evidence.expiresAt, accepted.expiresAt);
    assert.equal(itemOf(r, 'communication-plan').status, 'unknown');
    assert.equal(r.refusedAttestations.length, 1);
    assert.match(r.refusedAttestations[0].problem, /mallory \(key SHA256:\S+\) may not attest here/);

    // The report: sections, scores, readiness, files, metric.
    assert.deepEqual(r.sections.map((s) => s.name), ['Infrastructure Prerequisites', 'Cluster Configuration', 'Worker Deployment', 'Security Configuration', 'Monitoring Setup', 'Disaster Recovery', 'Performance Tuning', 'Pre-Go-Live', 'Post-Deployment']);
    assert.equal(Object.values(r.counts).reduce((a, b) => a + b, 0), 106);
    assert.equal(r.ready, false);
    assert.ok(r.blocking.some((b) => b.id === 'dr-drills-quarterly'));
    assert.ok(!r.blocking.some((b) => b.id === 'on-call-rotation'), 'an attested critical item does not block');
    const dr = r.sections.find((s) => s.name === 'Disaster Recovery')!;
    assert.equal(dr.score, Number(((dr.counts.pass + dr.counts.attested) / dr.items.length).toFixed(4)));
    assert.deepEqual(r.reportKeys, [`sandbox/audits/${r.auditId}/report.json`, `sandbox/audits/${r.auditId}/report.md`, `sandbox/audits/${r.auditId}/report.html`]);
    // The coverage line counts every item once, by how it stands and what proved it.
    const all = r.sections.flatMap((s) => s.items);
    const cov = r.coverage!;
    assert.equal(cov.byChecks + cov.byRunbookRuns + cov.attested + cov.failing + cov.unknown, 106);
    assert.equal(cov.total, 106);
    assert.deepEqual([cov.byChecks + cov.byRunbookRuns, cov.attested, cov.failing, cov.unknown], [r.counts.pass, r.counts.attested, r.counts.fail, r.counts.unknown]);
    assert.equal(cov.byRunbookRuns, all.filter((i) => i.proof === 'runbook' && i.status === 'pass').length);
    assert.ok(cov.byChecks > 0 && cov.byRunbookRuns > 0 && cov.attested > 0, JSON.stringify(cov));
    // The first audit kept in this bucket: its trend is itself.
    assert.deepEqual(r.trend, [{ auditId: r.auditId, endedAt: r.endedAt, score: r.score, ready: false }]);
    firstAudit = r;
    const md = await store.s3.send(new (await import('@aws-sdk/client-s3')).GetObjectCommand({ Bucket: store.bucket, Key: r.reportKeys[1] }));
    const markdown = await md.Body!.transformToString();
    assert.match(markdown, /^# Readiness audit: sandbox NOT READY/);
    assert.match(markdown, /\| Disaster Recovery \| \d+% \|/);
    assert.match(markdown, new RegExp(`^- Coverage: proved by checks ${cov.byChecks}, by runbook runs ${cov.byRunbookRuns}, attested ${cov.attested}; failing ${cov.failing}, unknown ${cov.unknown} \\(of 106 items\\)$`, 'm'));
    assert.match(markdown, new RegExp(`^- Score trend: ${Math.round(r.score * 100)}% \\(the last 1 audit, oldest first\\)$`, 'm'));
    // The page, opened in a real browser: no errors, the verdict and score first, one row per item, the blocking items listed.
    const page = await store.getText(r.reportKeys[2]);
    const browser = await Browser.launch();
    try {
      const tab = await browser.open(keepPage('audit-report', page).url);
      assert.deepEqual(tab.errors, []);
      assert.equal(await tab.evaluate<string>('document.querySelector("h1 .verdict").textContent'), 'NOT READY');
      assert.equal(await tab.evaluate<string>('[...document.querySelectorAll("table.summary th")].find((th) => th.textContent === "Score").nextElementSibling.textContent'), `${Math.round(r.score * 100)}%`);
      assert.equal(await tab.evaluate<number>('document.querySelectorAll("h2 + svg + table tr").length'), 106 + r.sections.length, 'a header row per section and a row per item');
      assert.equal(await tab.evaluate<number>('document.querySelectorAll("ul.reasons li").length'), r.blocking.length);
      await tab.screenshot('audit-report');
    } finally {
      await browser.close();
    }
    assert.equal((await store.getJson<{ by: string }>('sandbox/attestations/on-call-rotation.json')).by, 'auditor');
    const metric = await worker.metrics.registry.getSingleMetricAsString('runbook_readiness_score');
    assert.match(metric, new RegExp(`runbook_readiness_score\\{section="Disaster Recovery",environment="sandbox"\\} ${dr.score}`));
    assert.match(metric, /runbook_readiness_score\{section="overall",environment="sandbox"\} /);
  });

  test('runbook audit through the CLI: a stored attestation keeps counting, an expired one does not, and an unknown person is refused with exit 2', async () => {
    const past = Date.now() - 200 * 86_400_000;
    // A properly signed attestation from an earlier audit, signed 200 days ago: the item counts one for 180 days at most.
    const old = await signStatement({ v: 1, namespace: 'default', environment: 'sandbox', runbook: 'readinessAudit', workflowId: 'an-earlier-audit', runId: 'r1', gate: ATTESTATION_GATE, act: 'attest', by: 'auditor', reason: 'stakeholder list reviewed', at: new Date(past).toISOString(), item: 'communication-plan' }, keys.auditor.keyFile);
    await store.putJson('sandbox/attestations/communication-plan.json', {
      item: 'communication-plan',
      by: 'auditor',
      comment: 'stakeholder list reviewed',
      at: new Date(past).toISOString(),
      expiresAt: new Date(past + 180 * 86_400_000).toISOString(),
      workflowId: 'an-earlier-audit',
      ...old,
    });
    const ok = await runCli(['--config', auditConfig, '--json', 'audit', '--attest', 'rollback-criteria', '--key', keys.auditor.keyFile, '--comment', 'criteria agreed with product', '--valid-for', '60']);
    assert.equal(ok.code, 1, `not ready (critical items fail), but ran: ${ok.stderr}`);
    const out = JSON.parse(ok.stdout);
    assert.equal(out.attestation.item, 'rollback-criteria');
    assert.equal(Date.parse(out.attestation.expiresAt) - Date.parse(out.attestation.at), 60 * 86_400_000);
    const item = (id: string) => (out.report.sections as { items: AuditItemResult[] }[]).flatMap((s) => s.items).find((i) => i.id === id)!;
    assert.equal(item('rollback-criteria').status, 'attested');
    assert.equal(item('on-call-rotation').status, 'attested', 'the attestation stored by the earlier audit still counts');
    assert.notEqual(item('on-call-rotation').evidence.workflowId, out.workflowId);
    // The score trend, read from the reports kept in S3: the first test's audit, then this one.
    assert.deepEqual(out.report.trend.map((t: { auditId: string }) => t.auditId), [firstAudit!.auditId, out.report.auditId]);
    assert.equal(out.report.trend[0].score, firstAudit!.score);
    assert.equal(item('communication-plan').status, 'unknown');
    assert.match(item('communication-plan').summary, /the attestation by auditor expired at/);

    const refused = await runCli(['--config', auditConfig, 'audit', '--attest', 'on-call-rotation', '--key', keys.mallory.keyFile, '--comment', 'trust me']);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stdout, /attestation refused: mallory \(key SHA256:\S+\) may not attest here; allowed: auditor/);
    assert.match(refused.stdout, /Readiness audit of sandbox: \d+%/);
    assert.match(refused.stdout, /^coverage: proved by checks \d+, by runbook runs \d+, attested \d+; failing \d+, unknown \d+ \(of 106 items\)$/m);
    assert.match(refused.stdout, /^score trend: \d+% -> \d+% -> \d+% \(the last 3 audits, oldest first\)$/m);
    const bad = await runCli(['--config', auditConfig, 'audit', '--attest', 'tls-enabled', '--comment', 'x', '--key', keys.auditor.keyFile]);
    assert.equal(bad.code, 2);
  });

  test('checks on their own: plaintext Temporal fails the TLS items with evidence, a frontend without client-certificate checks fails mTLS, a compliant Deployment passes, a short-lived certificate fails, a silent Prometheus times out as unknown', async () => {
    const plain = await checksFor((env) => {
      env.temporal = { address: stack.temporal!.address, namespace: 'default' };
      env.kubernetes.deployments = ['web-good'];
    }, 'plain');
    const tls = await plain.checkTemporalTls({});
    assert.equal(tls.status, 'fail');
    assert.equal(tls.evidence.tlsConfigured, false);
    assert.match(String(tls.evidence.frontendTlsHandshake), /^failed/);
    assert.equal((await plain.checkTemporalMtls({})).status, 'fail');
    const auth = await plain.checkTemporalClientAuth({});
    assert.equal(auth.status, 'fail');
    assert.equal(auth.evidence.method, 'none');
    for (const id of ['checkKubernetesReplicas', 'checkKubernetesPdb', 'checkKubernetesHpa', 'checkKubernetesCpuLimits', 'checkKubernetesMemoryLimits', 'checkKubernetesLivenessProbes', 'checkKubernetesReadinessProbes', 'checkKubernetesStartupProbes', 'checkKubernetesNetworkPolicies', 'checkKubernetesSecretEnv'] as const) {
      const result = await plain[id]({});
      assert.equal(result.status, 'pass', `${id}: ${result.summary}`);
    }

    // A TLS front that does not ask for client certificates.
    const [host, port] = stack.temporal!.address.split(':');
    const open: TlsServer = createTlsServer({ cert: readFileSync(serverCert.cert), key: readFileSync(serverCert.key), ALPNProtocols: ['h2'], minVersion: 'TLSv1.2' }, (s) => {
      const up = tcpConnect(Number(port), host);
      s.pipe(up).pipe(s);
      s.on('error', () => up.destroy());
      up.on('error', () => s.destroy());
    });
    await new Promise<void>((resolve) => open.listen(0, '127.0.0.1', () => resolve()));
    closers.push(() => new Promise((resolve) => open.close(resolve)));
    const openPort = (open.address() as { port: number }).port;
    // A Prometheus that accepts connections and never answers.
    const sockets: Socket[] = [];
    const silent: TcpServer = createTcpServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
    closers.push(() => new Promise((resolve) => { for (const s of sockets) s.destroy(); silent.close(resolve); }));
    const serverOnly = await checksFor((env) => {
      env.temporal = { address: `127.0.0.1:${openPort}`, namespace: 'default', tls: { serverCa: `file:${ca.cert}`, serverName: 'temporal.sandbox.test' } };
      env.monitoring = { prometheusUrl: `http://127.0.0.1:${(silent.address() as { port: number }).port}` };
    }, 'server-only-tls');
    const serverOnlyTls = await serverOnly.checkTemporalTls({});
    assert.equal(serverOnlyTls.status, 'fail', 'the frontend answers with TLS, the services behind it do not');
    assert.match(String(serverOnlyTls.evidence.protocol), /^TLSv1\.[23]$/);
    assert.match(serverOnlyTls.summary, /^services speak plaintext/);
    const mtls = await serverOnly.checkTemporalMtls({});
    assert.equal(mtls.status, 'fail');
    assert.equal(mtls.evidence.connectionWithoutClientCertificate, 'answered');
    assert.match(mtls.summary, /accepts connections without a client certificate/);
    const cert = await serverOnly.checkTemporalCertificate({});
    assert.equal(cert.status, 'fail', 'the sandbox certificates live two days, less than the default 30');
    assert.match(cert.summary, /expires in [\d.]+ days \(less than 30\)/);
    const slow = await serverOnly.checkPrometheusTargets({ timeoutMs: 500 });
    assert.equal(slow.status, 'unknown');
    assert.equal(slow.summary, 'no answer within 500 ms');
    const refusedPort = await closedPort();

    // A real Prometheus scraping the worker with the project's alert rules.
    const prom = await startPrometheus({ dir: join(dir, 'prometheus'), targets: [`127.0.0.1:${workerPort}`], ruleFiles: [join(REPO, 'deploy', 'prometheus', 'rules.yml')] });
    closers.push(() => stopPrometheus(prom.pid));
    const monitored = await checksFor((env) => (env.monitoring = { prometheusUrl: prom.url }), 'prometheus');
    await waitFor('Prometheus to scrape the worker', async () => (await monitored.checkPrometheusTargets({})).status === 'pass', 30_000, 500);
    const targets = await monitored.checkPrometheusTargets({});
    assert.deepEqual((targets.evidence.targets as { job: string; health: string }[]).map((t) => [t.job, t.health]), [['runbook-worker', 'up']]);
    // Every alert check against the project's rules (pass), against a Prometheus that loaded only the
    // runbooks' group (fail, naming what is missing) and against a closed port (unknown).
    const rulesText = readFileSync(join(REPO, 'deploy', 'prometheus', 'rules.yml'), 'utf8');
    const partialRules = join(dir, 'rules-runbooks-only.yml');
    writeFileSync(partialRules, `groups:\n${rulesText.slice(rulesText.indexOf('  - name: runbooks'), rulesText.indexOf('  - name: resources'))}`);
    // Beside the worker, a target whose server latency histogram has three coarse buckets (a p99 can only be 0.1, 1 or 10 s).
    const coarse = createHttpServer((_req, res) => {
      res.setHeader('content-type', 'text/plain; version=0.0.4');
      res.end(['# TYPE service_latency histogram', ...['0.1', '1', '10', '+Inf'].map((le, i) => `service_latency_bucket{operation="StartWorkflowExecution",le="${le}"} ${i + 1}`), 'service_latency_sum 3', 'service_latency_count 4', ''].join('\n'));
    });
    await new Promise<void>((resolve) => coarse.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise<void>((resolve) => coarse.close(() => resolve())));
    const partialProm = await startPrometheus({ dir: join(dir, 'prometheus-partial'), targets: [`127.0.0.1:${workerPort}`, `127.0.0.1:${(coarse.address() as { port: number }).port}`], ruleFiles: [partialRules] });
    closers.push(() => stopPrometheus(partialProm.pid));
    const partial = await checksFor((env) => (env.monitoring = { prometheusUrl: partialProm.url }), 'prometheus-partial');
    const noProm = await checksFor((env) => (env.monitoring = { prometheusUrl: `http://127.0.0.1:${refusedPort}` }), 'no-prometheus-alerts');
    const alertTable = {
      checkAlertServiceDown: 'TemporalFrontendDown',
      checkAlertFailureRate: 'HighWorkflowFailureRate',
      checkAlertLatency: 'LongScheduleToStartLatency',
      checkAlertQueueBuildup: 'TaskQueueBacklogBuildup',
      checkAlertResources: 'ContainerMemoryNearLimit, ContainerCpuThrottled, DiskSpaceLow',
    } as const;
    for (const [id, missing] of Object.entries(alertTable) as [keyof typeof alertTable, string][]) {
      const ok = await monitored[id]({});
      assert.equal(ok.status, 'pass', `${id}: ${ok.summary}`);
      const without = await partial[id]({});
      assert.equal(without.status, 'fail', `${id} with the runbooks' rules only: ${without.summary}`);
      assert.equal(without.summary, `alert rules not loaded in Prometheus: ${missing}`);
      const unreachable = await noProm[id]({ timeoutMs: 2_000 });
      assert.equal(unreachable.status, 'unknown', `${id} without Prometheus: ${unreachable.summary}`);
    }
    // Histogram buckets: the worker's latency histograms (the SDK's with this project's bucket overrides) pass;
    // the coarse server histogram beside them fails by name; without Prometheus, unknown.
    let lastBuckets: unknown;
    const buckets = await waitFor('Prometheus to hold the worker\'s latency histograms', async () => {
      const r = await monitored.checkHistogramBuckets({});
      lastBuckets = r;
      return r.status === 'pass' ? r : false;
    }, 30_000, 500).catch((err: Error) => assert.fail(`${err.message}; the check said: ${JSON.stringify(lastBuckets)}`));
    assert.ok('temporal_request_latency_seconds_bucket' in (buckets.evidence.histograms as object), JSON.stringify(buckets.evidence));
    const coarseBuckets = await waitFor('Prometheus to scrape the coarse histogram', async () => {
      const r = await partial.checkHistogramBuckets({});
      return r.status === 'fail' && 'service_latency_bucket' in ((r.evidence.histograms as object) ?? {}) ? r : false;
    }, 30_000, 500);
    assert.equal(coarseBuckets.summary, 'latency histograms too coarse for percentiles: service_latency_bucket: 3 finite buckets (at least 8)');
    assert.equal((await noProm.checkHistogramBuckets({ timeoutMs: 2_000 })).status, 'unknown');
    const serviceDown = await monitored.checkAlertServiceDown({});
    assert.deepEqual(Object.keys(serviceDown.evidence.loaded as object).sort(), ['RunbookWorkerNotReady', 'TemporalFrontendDown']);
    assert.deepEqual(Object.keys((await partial.checkAlertServiceDown({})).evidence.loaded as object), ['RunbookWorkerNotReady'], 'the runbooks group is loaded, the rest is not');
    const retentionCheck = await monitored.checkPrometheusRetention({});
    assert.equal(retentionCheck.status, 'fail', 'Prometheus keeps 15 days by default, less than the 30 asked for');
    assert.equal(retentionCheck.evidence.retentionDays, 15);
    const unreachable = await (await checksFor((env) => (env.monitoring = { prometheusUrl: `http://127.0.0.1:${refusedPort}` }), 'no-prometheus')).checkPrometheusRetention({});
    assert.equal(unreachable.status, 'unknown');
  });
});
