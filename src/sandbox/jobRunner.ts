/**
 * The sandbox's kubelet for Job pods. kwok plays the kubelet of every other pod and runs nothing; a
 * migration Job whose pod kwok flipped to Succeeded would prove nothing, so kwok leaves pods of Jobs
 * alone (src/sandbox/kwok-stages.yaml) and this process runs them: for each Job pod scheduled on a
 * fake node it marks the pod Running, runs the container's command and args as a local process (the
 * image is not pulled: the command runs with this machine's tools, e.g. psql against the sandbox
 * PostgreSQL) with the container's environment resolved as a kubelet would (values, Secret and
 * ConfigMap keys, envFrom, the pod's name and namespace), then marks the pod Succeeded or Failed with
 * the exit code and the tail of the output as the container's termination message (what a kubelet
 * writes with terminationMessagePolicy: FallbackToLogsOnError). The real Job controller turns that
 * into the Job's status. The whole output is kept in <dir>/<namespace>_<pod>.log.
 *
 *   node --import tsx src/sandbox/jobRunner.ts --cluster-dir DIR --server URL --dir LOGDIR
 */
import { spawn, ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { findPgBinary } from '../system/postgres';
import { apiRequest } from './kubernetes';

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean }; configMapKeyRef?: { name: string; key: string; optional?: boolean }; fieldRef?: { fieldPath: string } };
}
interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  envFrom?: { secretRef?: { name: string }; configMapRef?: { name: string }; prefix?: string }[];
  workingDir?: string;
}
interface Pod {
  metadata: { name: string; namespace: string; uid: string; deletionTimestamp?: string; labels?: Record<string, string> };
  spec: { nodeName?: string; containers: Container[]; activeDeadlineSeconds?: number };
  status?: { phase?: string };
}

const MESSAGE_BYTES = 2048;
const MESSAGE_LINES = 80;

/** The last 80 lines / 2 KB of the output, as a kubelet puts a failed container's log into its termination message. */
export function messageTail(output: string): string {
  const lines = output.replace(/\s+$/, '').split('\n').slice(-MESSAGE_LINES).join('\n');
  return Buffer.byteLength(lines) <= MESSAGE_BYTES ? lines : Buffer.from(lines).subarray(-MESSAGE_BYTES).toString('utf8');
}

function arg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || !process.argv[i + 1]) throw new Error(`jobRunner: --${name} is required`);
  return process.argv[i + 1];
}

async function main(): Promise<void> {
  const cluster = { dir: arg('cluster-dir'), server: arg('server') };
  const logDir = arg('dir');
  mkdirSync(logDir, { recursive: true });
  const running = new Map<string, { child: ChildProcess; pod: Pod }>();
  const finished = new Set<string>();
  let pgBin = '';
  try {
    pgBin = dirname(findPgBinary('psql'));
  } catch {
    /* PostgreSQL's client tools are not installed: commands that need them fail as they would in a container without them */
  }
  const path = [pgBin, process.env.PATH ?? ''].filter(Boolean).join(delimiter);

  const call = async (method: 'GET' | 'PATCH', p: string, body?: unknown) => {
    const res = await apiRequest(cluster, method, p, body, 5000, method === 'PATCH' ? 'application/merge-patch+json' : undefined);
    if (res.status >= 300) throw new Error(`${method} ${p}: HTTP ${res.status} ${res.body.slice(0, 300)}`);
    return JSON.parse(res.body) as unknown;
  };
  const patchStatus = (pod: Pod, status: Record<string, unknown>) => call('PATCH', `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/status`, { status });
  const read = async (kind: 'secrets' | 'configmaps', ns: string, name: string): Promise<Record<string, string>> => {
    const o = (await call('GET', `/api/v1/namespaces/${ns}/${kind}/${name}`)) as { data?: Record<string, string> };
    const data = o.data ?? {};
    return kind === 'secrets' ? Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')])) : data;
  };

  async function environment(pod: Pod, c: Container): Promise<NodeJS.ProcessEnv> {
    const env: NodeJS.ProcessEnv = { PATH: path, HOME: tmpdir(), HOSTNAME: pod.metadata.name, LANG: 'C.UTF-8' };
    const ns = pod.metadata.namespace;
    for (const from of c.envFrom ?? []) {
      const data = from.secretRef ? await read('secrets', ns, from.secretRef.name) : from.configMapRef ? await read('configmaps', ns, from.configMapRef.name) : {};
      for (const [k, v] of Object.entries(data)) env[`${from.prefix ?? ''}${k}`] = v;
    }
    for (const e of c.env ?? []) {
      if (e.value !== undefined || !e.valueFrom) env[e.name] = (e.value ?? '').replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, n: string) => env[n] ?? m);
      else if (e.valueFrom.secretKeyRef || e.valueFrom.configMapKeyRef) {
        const ref = (e.valueFrom.secretKeyRef ?? e.valueFrom.configMapKeyRef)!;
        const data = await read(e.valueFrom.secretKeyRef ? 'secrets' : 'configmaps', ns, ref.name).catch((err: Error) => {
          if (ref.optional) return {} as Record<string, string>;
          throw new Error(`env ${e.name}: ${err.message}`);
        });
        if (data[ref.key] === undefined && !ref.optional) throw new Error(`env ${e.name}: key ${ref.key} not found in ${e.valueFrom.secretKeyRef ? 'Secret' : 'ConfigMap'} ${ref.name}`);
        if (data[ref.key] !== undefined) env[e.name] = data[ref.key];
      } else if (e.valueFrom.fieldRef) {
        const f = e.valueFrom.fieldRef.fieldPath;
        env[e.name] = f === 'metadata.name' ? pod.metadata.name : f === 'metadata.namespace' ? ns : f === 'spec.nodeName' ? pod.spec.nodeName : '';
      }
    }
    return env;
  }

  async function finish(pod: Pod, c: Container, exitCode: number, output: string, startedAt: string, reason?: string): Promise<void> {
    const now = new Date().toISOString();
    const ok = exitCode === 0;
    await patchStatus(pod, {
      phase: ok ? 'Succeeded' : 'Failed',
      conditions: [
        { type: 'Initialized', status: 'True', lastTransitionTime: startedAt },
        { type: 'ContainersReady', status: 'False', reason: 'PodCompleted', lastTransitionTime: now },
        { type: 'Ready', status: 'False', reason: 'PodCompleted', lastTransitionTime: now },
      ],
      containerStatuses: [
        { name: c.name, image: c.image ?? '', imageID: '', ready: false, started: false, restartCount: 0, state: { terminated: { exitCode, reason: reason ?? (ok ? 'Completed' : 'Error'), message: messageTail(output), startedAt, finishedAt: now } } },
      ],
    }).catch((err: Error) => log(`cannot report ${pod.metadata.name}: ${err.message}`));
  }

  const log = (text: string) => process.stdout.write(`${new Date().toISOString()} ${text}\n`);

  async function run(pod: Pod): Promise<void> {
    const c = pod.spec.containers[0];
    const startedAt = new Date().toISOString();
    const logFile = join(logDir, `${pod.metadata.namespace}_${pod.metadata.name}.log`);
    await patchStatus(pod, {
      phase: 'Running',
      startTime: startedAt,
      hostIP: '127.0.0.1',
      conditions: [
        { type: 'Initialized', status: 'True', lastTransitionTime: startedAt },
        { type: 'ContainersReady', status: 'True', lastTransitionTime: startedAt },
        { type: 'Ready', status: 'True', lastTransitionTime: startedAt },
      ],
      containerStatuses: [{ name: c.name, image: c.image ?? '', imageID: '', ready: true, started: true, restartCount: 0, state: { running: { startedAt } } }],
    });
    const argv = [...(c.command ?? []), ...(c.args ?? [])];
    let env: NodeJS.ProcessEnv;
    try {
      if (argv.length === 0) throw new Error('the container has no command: the sandbox runs the command a Job names, it has no image entrypoint to fall back on');
      env = await environment(pod, c);
    } catch (err) {
      appendFileSync(logFile, `${(err as Error).message}\n`);
      await finish(pod, c, 128, (err as Error).message, startedAt, 'CreateContainerConfigError');
      return;
    }
    const work = mkdtempSync(join(tmpdir(), 'runbook-job-'));
    log(`running ${pod.metadata.namespace}/${pod.metadata.name}: ${argv.join(' ').slice(0, 200)}`);
    let output = '';
    const child = spawn(argv[0], argv.slice(1), { env, cwd: c.workingDir ?? work, stdio: ['ignore', 'pipe', 'pipe'] });
    running.set(pod.metadata.uid, { child, pod });
    const collect = (d: Buffer) => {
      appendFileSync(logFile, d);
      output = (output + d.toString()).slice(-64 * 1024);
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    const code = await new Promise<number>((resolve) => {
      child.on('error', (err) => {
        collect(Buffer.from(`${err.message}\n`));
        resolve(127);
      });
      child.on('close', (code, signal) => resolve(code ?? (signal ? 137 : 1)));
    });
    running.delete(pod.metadata.uid);
    finished.add(pod.metadata.uid);
    rmSync(work, { recursive: true, force: true });
    log(`${pod.metadata.namespace}/${pod.metadata.name} exited ${code}`);
    await finish(pod, c, code, output, startedAt);
  }

  for (;;) {
    try {
      const list = (await call('GET', '/api/v1/pods?labelSelector=batch.kubernetes.io%2Fjob-name')) as { items: Pod[] };
      const live = new Set(list.items.map((p) => p.metadata.uid));
      for (const [uid, r] of running) {
        const now = list.items.find((p) => p.metadata.uid === uid);
        // A pod deleted (the Job's deadline, the Job deleted) stops its process, as a kubelet kills the container.
        if (!live.has(uid) || now?.metadata.deletionTimestamp) r.child.kill('SIGTERM');
      }
      for (const pod of list.items) {
        const uid = pod.metadata.uid;
        if (running.has(uid) || finished.has(uid) || pod.metadata.deletionTimestamp || !pod.spec.nodeName) continue;
        if (pod.status?.phase === 'Pending') {
          finished.add(uid);
          run(pod).catch((err: Error) => log(`${pod.metadata.name}: ${err.message}`));
        } else if (pod.status?.phase === 'Running') {
          // Running but not ours: this process restarted while it ran; a kubelet that lost its container reports it failed.
          finished.add(uid);
          await finish(pod, pod.spec.containers[0], 137, 'the sandbox job runner restarted while this container ran', new Date().toISOString(), 'ContainerStatusUnknown');
        }
      }
    } catch (err) {
      log(`poll failed: ${(err as Error).message}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

if (require.main === module) {
  for (const s of ['SIGTERM', 'SIGINT'] as const) process.on(s, () => process.exit(0));
  main().catch((err) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  });
}
