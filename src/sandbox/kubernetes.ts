import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { AppsV1Api } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { MissingBinaryError, freePort, groupAlive, spawnService, stopService, waitUntil } from '../system/process';
import { CertFiles, createCa, issueCert } from './tls';

const run = promisify(execFile);

/**
 * The Kubernetes test control plane: etcd, kube-apiserver, kube-controller-manager and kube-scheduler
 * built from the Kubernetes Go modules (scripts/k8s/build), and kwok playing the kubelet for fake
 * nodes. Deployments, ReplicaSets, rollout status and the scheduler are the real ones; only the
 * nodes and the containers on them are simulated (see src/sandbox/kwok-stages.yaml), except the pods of
 * Jobs, whose commands src/sandbox/jobRunner.ts runs as local processes.
 */
export interface KubernetesInfo {
  dir: string;
  /** https://127.0.0.1:<port> */
  server: string;
  /** Admin kubeconfig (system:masters client certificate). */
  kubeconfig: string;
  nodes: string[];
  pids: { etcd: number; apiserver: number; controllerManager: number; scheduler: number; kwok: number; jobRunner: number };
  logDir: string;
  versions: Record<string, string>;
}

export interface KubernetesOptions {
  dir: string;
  /** Fake nodes run by kwok (default 3). */
  nodes?: number;
  host?: string;
}

const BINARIES = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kwok'] as const;
type Binary = (typeof BINARIES)[number];

const projectRoot = resolve(__dirname, '..', '..');
const buildScript = join(projectRoot, 'scripts', 'k8s', 'build');

/**
 * Where the control-plane binaries are: RUNBOOK_K8S_BIN, or the build cache that scripts/k8s/build
 * fills (it returns at once when the cache is complete; otherwise it builds, which takes minutes once).
 */
export function kubernetesBinDir(opts: { build?: boolean } = {}): string {
  const explicit = process.env.RUNBOOK_K8S_BIN;
  const dir = explicit
    ? explicit
    : (() => {
        try {
          const out = execFileSync(buildScript, [], {
            encoding: 'utf8',
            stdio: ['ignore', 'pipe', opts.build === false ? 'ignore' : 'inherit'],
            env: { ...process.env, ...(opts.build === false ? { RUNBOOK_K8S_CHECK_ONLY: '1' } : {}) },
          });
          return out.trim().split('\n').pop() ?? '';
        } catch {
          return '';
        }
      })();
  for (const b of BINARIES) {
    if (!dir || !existsSync(join(dir, b))) {
      throw new MissingBinaryError(b, 'Run scripts/k8s/build (it builds the Kubernetes test control plane once from the Go module proxy and caches it), or set RUNBOOK_K8S_BIN to a directory holding etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok.');
    }
  }
  return dir;
}

function versionsOf(binDir: string): Record<string, string> {
  const file = join(binDir, '.complete');
  if (!existsSync(file)) return {};
  return Object.fromEntries(
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => l.split('=', 2) as [string, string]),
  );
}

async function issueClientCert(dir: string, ca: CertFiles, file: string, user: string, group?: string): Promise<CertFiles> {
  return issueCert(dir, ca, file, { usage: 'client', commonName: user, organization: group });
}

function kubeconfig(path: string, server: string, ca: string, client: CertFiles, user: string): void {
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'sandbox', cluster: { server, 'certificate-authority': ca } }],
    users: [{ name: user, user: { 'client-certificate': client.cert, 'client-key': client.key } }],
    contexts: [{ name: 'sandbox', context: { cluster: 'sandbox', user, namespace: 'default' } }],
    'current-context': 'sandbox',
  };
  writeFileSync(path, stringify(doc), { mode: 0o600 });
}

/** One HTTPS request with the admin client certificate; resolves with status and body. */
export function apiRequest(info: Pick<KubernetesInfo, 'server' | 'dir'>, method: 'GET' | 'POST' | 'PATCH', path: string, body?: unknown, timeoutMs = 3000, contentType = 'application/json'): Promise<{ status: number; body: string }> {
  const pki = join(info.dir, 'pki');
  return new Promise((resolvePromise, reject) => {
    const req = request(
      `${info.server}${path}`,
      {
        method,
        ca: readFileSync(join(pki, 'ca.pem')),
        cert: readFileSync(join(pki, 'admin.pem')),
        key: readFileSync(join(pki, 'admin.key')),
        headers: body === undefined ? {} : { 'content-type': contentType },
        timeout: timeoutMs,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

export function apiGet(info: Pick<KubernetesInfo, 'server' | 'dir'>, path: string, timeoutMs = 3000): Promise<{ status: number; body: string }> {
  return apiRequest(info, 'GET', path, undefined, timeoutMs);
}

/** A fake node for kwok to play: the annotation is how kwok knows it manages it. */
async function createNode(info: Pick<KubernetesInfo, 'server' | 'dir'>, name: string, ip: string): Promise<void> {
  const res = await apiRequest(info, 'POST', '/api/v1/nodes', {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', type: 'kwok' },
    },
    spec: {},
    status: { addresses: [{ type: 'InternalIP', address: ip }] },
  }, 5000);
  if (res.status !== 201 && res.status !== 409) throw new Error(`creating node ${name}: HTTP ${res.status} ${res.body}`);
}

/**
 * Starts the control plane on loopback and waits until it is usable: the API answers, the default
 * service account exists and every fake node is Ready. A failed start stops what already started.
 */
export async function startKubernetes(opts: KubernetesOptions): Promise<KubernetesInfo> {
  const binDir = kubernetesBinDir();
  const bin = (b: Binary) => join(binDir, b);
  const host = opts.host ?? '127.0.0.1';
  const dir = join(resolve(opts.dir), 'kubernetes');
  const pki = join(dir, 'pki');
  const logDir = join(dir, 'logs');
  mkdirSync(logDir, { recursive: true });
  const nodeCount = opts.nodes ?? 3;

  const apiPort = await freePort(host);
  let etcdPort = 0;
  let etcdPeerPort = 0;
  const server = `https://${host}:${apiPort}`;

  const ca = await createCa(pki, 'runbook-kubernetes-ca');
  const serving = await issueCert(pki, ca, 'apiserver', {
    usage: 'server',
    dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'],
    ips: [host, '10.96.0.1'],
  });
  const admin = await issueClientCert(pki, ca, 'admin', 'runbook-admin', 'system:masters');
  // One controller-manager identity for all controllers (no per-controller service-account credentials), so it
  // needs the cluster-wide rights the per-controller roles would otherwise split up.
  const controllerManager = await issueClientCert(pki, ca, 'controller-manager', 'system:kube-controller-manager', 'system:masters');
  const scheduler = await issueClientCert(pki, ca, 'scheduler', 'system:kube-scheduler');
  // kwok plays every kubelet; it needs to update nodes, pods and leases across the cluster.
  const kwok = await issueClientCert(pki, ca, 'kwok', 'kwok-controller', 'system:masters');
  const saKey = join(pki, 'service-account.key');
  const saPub = join(pki, 'service-account.pub');
  await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', saKey]);
  await run('openssl', ['ec', '-in', saKey, '-pubout', '-out', saPub]);

  const kubeconfigs = {
    admin: join(dir, 'admin.kubeconfig'),
    controllerManager: join(dir, 'controller-manager.kubeconfig'),
    scheduler: join(dir, 'scheduler.kubeconfig'),
    kwok: join(dir, 'kwok.kubeconfig'),
  };
  kubeconfig(kubeconfigs.admin, server, ca.cert, admin, 'runbook-admin');
  kubeconfig(kubeconfigs.controllerManager, server, ca.cert, controllerManager, 'system:kube-controller-manager');
  kubeconfig(kubeconfigs.scheduler, server, ca.cert, scheduler, 'system:kube-scheduler');
  kubeconfig(kubeconfigs.kwok, server, ca.cert, kwok, 'kwok-controller');

  const pids: Partial<KubernetesInfo['pids']> = {};
  const info = (): KubernetesInfo => ({
    dir,
    server,
    kubeconfig: kubeconfigs.admin,
    nodes: Array.from({ length: nodeCount }, (_, i) => `kwok-node-${i + 1}`),
    pids: pids as KubernetesInfo['pids'],
    logDir,
    versions: versionsOf(binDir),
  });
  try {
    // A free port can be taken by another process before etcd binds it (test files start stacks side by
    // side): then etcd starts again on other ports.
    for (let attempt = 1; ; attempt++) {
      [etcdPort, etcdPeerPort] = [await freePort(host), await freePort(host)];
      // What a failed attempt left (it never served) goes; the data of a cluster that ran stays.
      if (attempt > 1) rmSync(join(dir, 'etcd'), { recursive: true, force: true });
      const etcd = spawnService('etcd', bin('etcd'), [
        '--name', 'sandbox',
        '--data-dir', join(dir, 'etcd'),
        '--listen-client-urls', `http://${host}:${etcdPort}`,
        '--advertise-client-urls', `http://${host}:${etcdPort}`,
        '--listen-peer-urls', `http://${host}:${etcdPeerPort}`,
        '--initial-advertise-peer-urls', `http://${host}:${etcdPeerPort}`,
        '--initial-cluster', `sandbox=http://${host}:${etcdPeerPort}`,
        '--initial-cluster-state', 'new',
        // Throwaway test data: skipping fsync keeps a 2-core machine responsive.
        '--unsafe-no-fsync',
        '--log-level', 'warn',
      ], join(logDir, 'etcd.log'));
      pids.etcd = etcd.pid;
      try {
        await waitUntil('etcd', async () => (await fetch(`http://${host}:${etcdPort}/health`)).ok, { timeoutMs: 30_000, pid: etcd.pid, logFile: etcd.logFile });
        break;
      } catch (err) {
        if (attempt >= 3 || !/address already in use/.test((err as Error).message)) throw err;
        await stopService(etcd.pid).catch(() => undefined);
        pids.etcd = undefined;
      }
    }

    const apiserver = spawnService('kube-apiserver', bin('kube-apiserver'), [
      '--etcd-servers', `http://${host}:${etcdPort}`,
      '--bind-address', host,
      '--advertise-address', host,
      '--secure-port', String(apiPort),
      '--tls-cert-file', serving.cert,
      '--tls-private-key-file', serving.key,
      '--client-ca-file', ca.cert,
      '--service-account-key-file', saPub,
      '--service-account-signing-key-file', saKey,
      '--service-account-issuer', 'https://kubernetes.default.svc.cluster.local',
      '--service-cluster-ip-range', '10.96.0.0/16',
      '--authorization-mode', 'Node,RBAC',
      '--allow-privileged=true',
      '--enable-priority-and-fairness=false',
      '--endpoint-reconciler-type', 'none',
      '--cert-dir', join(pki, 'apiserver-generated'),
      '--v', '0',
    ], join(logDir, 'kube-apiserver.log'));
    pids.apiserver = apiserver.pid;
    await waitUntil('kube-apiserver', async () => (await apiGet(info(), '/readyz')).status === 200, {
      timeoutMs: 90_000,
      pid: apiserver.pid,
      logFile: apiserver.logFile,
      intervalMs: 250,
    });

    const cm = spawnService('kube-controller-manager', bin('kube-controller-manager'), [
      '--kubeconfig', kubeconfigs.controllerManager,
      '--authentication-kubeconfig', kubeconfigs.controllerManager,
      '--authorization-kubeconfig', kubeconfigs.controllerManager,
      '--bind-address', host,
      '--secure-port', String(await freePort(host)),
      '--cert-dir', join(pki, 'controller-manager-generated'),
      '--leader-elect=false',
      '--use-service-account-credentials=false',
      '--service-account-private-key-file', saKey,
      '--root-ca-file', ca.cert,
      '--cluster-name', 'sandbox',
      '--v', '0',
    ], join(logDir, 'kube-controller-manager.log'));
    pids.controllerManager = cm.pid;

    const sched = spawnService('kube-scheduler', bin('kube-scheduler'), [
      '--kubeconfig', kubeconfigs.scheduler,
      '--authentication-kubeconfig', kubeconfigs.scheduler,
      '--authorization-kubeconfig', kubeconfigs.scheduler,
      '--bind-address', host,
      '--secure-port', String(await freePort(host)),
      '--cert-dir', join(pki, 'scheduler-generated'),
      '--leader-elect=false',
      '--v', '0',
    ], join(logDir, 'kube-scheduler.log'));
    pids.scheduler = sched.pid;

    const kwokConfig = join(dir, 'kwok.yaml');
    writeFileSync(kwokConfig, readFileSync(join(__dirname, 'kwok-stages.yaml'), 'utf8'));
    const kwokProc = spawnService('kwok', bin('kwok'), [
      '--kubeconfig', kubeconfigs.kwok,
      '--config', kwokConfig,
      '--manage-all-nodes=false',
      '--manage-nodes-with-annotation-selector', 'kwok.x-k8s.io/node=fake',
      '--node-lease-duration-seconds', '40',
      '--cidr', '10.244.0.0/16',
      '--node-ip', host,
      '--server-address', `${host}:${await freePort(host)}`,
    ], join(logDir, 'kwok.log'));
    pids.kwok = kwokProc.pid;

    // kwok leaves the pods of Jobs alone: this runs their commands for real (see jobRunner.ts).
    const runner = spawnService('job-runner', process.execPath, ['--import', 'tsx', join(__dirname, 'jobRunner.ts'), '--cluster-dir', dir, '--server', server, '--dir', join(dir, 'jobs')], join(logDir, 'job-runner.log'), { cwd: projectRoot });
    pids.jobRunner = runner.pid;

    const names = info().nodes;
    for (const [i, name] of names.entries()) await createNode(info(), name, `10.0.${i + 1}.1`);

    await waitUntil(
      'Kubernetes nodes Ready',
      async () => {
        const res = await apiGet(info(), '/api/v1/nodes');
        if (res.status !== 200) return false;
        const items = (JSON.parse(res.body) as { items: Array<{ metadata: { name: string }; status?: { conditions?: Array<{ type: string; status: string }> } }> }).items;
        const ready = items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
        return ready.length >= names.length;
      },
      { timeoutMs: 60_000, pid: kwokProc.pid, logFile: kwokProc.logFile, intervalMs: 250 },
    );
    await waitUntil(
      'the default service account',
      async () => (await apiGet(info(), '/api/v1/namespaces/default/serviceaccounts/default')).status === 200,
      { timeoutMs: 60_000, pid: cm.pid, logFile: cm.logFile, intervalMs: 250 },
    );
    for (const [name, pid] of [['kube-scheduler', sched.pid], ['kube-controller-manager', cm.pid], ['job-runner', runner.pid]] as const) {
      if (!groupAlive(pid)) throw new Error(`${name} exited during start-up; see ${join(logDir, `${name}.log`)}`);
    }
    return info();
  } catch (err) {
    await stopKubernetes(info()).catch(() => undefined);
    throw err;
  }
}

/** Stops the control plane: kwok and the controllers first, the API server, then etcd. Safe to call twice. */
export async function stopKubernetes(info: Pick<KubernetesInfo, 'pids'>): Promise<void> {
  const p = info.pids;
  await Promise.all([p.jobRunner, p.kwok, p.scheduler, p.controllerManager].filter((x): x is number => x !== undefined).map((pid) => stopService(pid)));
  if (p.apiserver !== undefined) await stopService(p.apiserver);
  if (p.etcd !== undefined) await stopService(p.etcd);
}

export function kubernetesPids(info: Pick<KubernetesInfo, 'pids'>): number[] {
  return Object.values(info.pids).filter((x): x is number => x !== undefined);
}

export async function kubernetesAnswers(info: Pick<KubernetesInfo, 'server' | 'dir'>): Promise<boolean> {
  try {
    return (await apiGet(info, '/readyz', 1500)).status === 200;
  } catch {
    return false;
  }
}

/**
 * A sample application for the sandbox cluster: a Deployment `name` whose pods carry `app: <name>`,
 * rolling one pod at a time (maxSurge 1, maxUnavailable 0); resolves once every replica is available.
 */
export async function createSampleDeployment(
  apps: AppsV1Api,
  opts: { name: string; image: string; replicas: number; container?: string; namespace?: string },
): Promise<void> {
  const { name, image, replicas } = opts;
  const namespace = opts.namespace ?? 'default';
  await apps.createNamespacedDeployment({
    namespace,
    body: {
      metadata: { name, labels: { app: name } },
      spec: {
        replicas,
        selector: { matchLabels: { app: name } },
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
        template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: opts.container ?? 'app', image }] } },
      },
    },
  });
  await waitForDeploymentAvailable(apps, namespace, name, replicas);
}

/** Waits until every replica of a Deployment runs its current template and is available (60 s at most). */
export async function waitForDeploymentAvailable(apps: AppsV1Api, namespace: string, name: string, replicas: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const d = await apps.readNamespacedDeployment({ name, namespace });
    if ((d.status?.availableReplicas ?? 0) === replicas && (d.status?.updatedReplicas ?? 0) === replicas) return;
    if (Date.now() > deadline) throw new Error(`the Deployment ${namespace}/${name} did not become available within 60 s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
