import type * as k8s from '@kubernetes/client-node';
import { Context } from '@temporalio/activity';
import { failure } from './errors';
import { heartbeater } from './heartbeat';
import { ANNOTATION_STEP, ANNOTATION_WORKFLOW, ChangeContext, classifyKubernetes } from './kubernetes';
import { KubeApi } from './kube';

/** How a Job ended, with the evidence: exit code, reason, the tail of its log and where that came from. */
export interface JobOutcome {
  name: string;
  succeeded: boolean;
  reason?: string;
  exitCode?: number;
  pod?: string;
  logTail: string;
  logSource: 'pod log' | 'termination message' | 'none';
  startedAt?: string;
  completedAt?: string;
}

export interface JobRequest {
  /** Deterministic per release and kind, so a retried start finds the Job it created. */
  name: string;
  /** The Deployment whose application container the Job's container copies (env, envFrom, volumes, service account). */
  deployment: string;
  container?: string;
  image: string;
  command: string[];
  env: { name: string; value: string }[];
  timeoutMs: number;
  labels: Record<string, string>;
  by: ChangeContext;
}

const LOG_LINES = 30;

/** A Job running a command from the release's image with the application container's configuration. */
export function jobManifest(d: k8s.V1Deployment, req: JobRequest): k8s.V1Job {
  const pod = d.spec!.template.spec!;
  const app = req.container ? pod.containers.find((c) => c.name === req.container) : pod.containers[0];
  if (!app) throw failure('InvalidInput', `container: deployment ${req.deployment} has no container ${req.container}; it has ${pod.containers.map((c) => c.name).join(', ')}`);
  const annotations = { [ANNOTATION_WORKFLOW]: req.by.workflowId, [ANNOTATION_STEP]: req.by.step.slice(0, 200) };
  const env = [...(app.env ?? []).filter((e) => !req.env.some((x) => x.name === e.name)), ...req.env];
  return {
    metadata: { name: req.name, labels: req.labels, annotations },
    spec: {
      // One attempt: a migration that failed is not run again behind the runbook's back.
      backoffLimit: 0,
      activeDeadlineSeconds: Math.max(1, Math.ceil(req.timeoutMs / 1000)),
      ttlSecondsAfterFinished: 7 * 86_400,
      template: {
        metadata: { labels: req.labels, annotations },
        spec: {
          restartPolicy: 'Never',
          serviceAccountName: pod.serviceAccountName,
          imagePullSecrets: pod.imagePullSecrets,
          securityContext: pod.securityContext,
          volumes: pod.volumes,
          nodeSelector: pod.nodeSelector,
          tolerations: pod.tolerations,
          containers: [
            {
              name: 'migration',
              image: req.image,
              command: req.command,
              env,
              envFrom: app.envFrom,
              volumeMounts: app.volumeMounts,
              resources: app.resources,
              securityContext: app.securityContext,
              // The kubelet puts the log's tail into the termination message when the container fails without writing one.
              terminationMessagePolicy: 'FallbackToLogsOnError',
            },
          ],
        },
      },
    },
  };
}

/**
 * Kubernetes Jobs a release runs (the schema migration and its down-migration): created once under a
 * name the run chooses, waited for with heartbeats, and reported with the tail of their log.
 */
export function createJobActivities(opts: { api: () => KubeApi; allowed: (deployment: string) => void }) {
  const { api } = opts;
  const ns = () => api().namespace;

  async function readJob(name: string): Promise<k8s.V1Job | undefined> {
    try {
      return await api().batch.readNamespacedJob({ name, namespace: ns() });
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw classifyKubernetes(err, `reading job ${ns()}/${name}`);
    }
  }

  async function logTail(pod: k8s.V1Pod): Promise<{ text: string; source: JobOutcome['logSource'] }> {
    const name = pod.metadata!.name!;
    try {
      const text = await Promise.race([
        api().core.readNamespacedPodLog({ name, namespace: ns(), container: 'migration', tailLines: LOG_LINES }),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer in 5 s')), 5_000)),
      ]);
      if (typeof text === 'string' && text.trim()) return { text: text.trimEnd(), source: 'pod log' };
    } catch {
      /* the node's kubelet did not serve the log: the termination message holds its tail */
    }
    const message = pod.status?.containerStatuses?.[0]?.state?.terminated?.message;
    if (message?.trim()) return { text: message.trimEnd().split('\n').slice(-LOG_LINES).join('\n'), source: 'termination message' };
    return { text: '', source: 'none' };
  }

  return {
    /** Creates the Job unless this run already did (a retry finds it); another run's Job of that name is refused. */
    async startJob(input: JobRequest): Promise<{ name: string; created: boolean }> {
      opts.allowed(input.deployment);
      const ctx = Context.current();
      ctx.heartbeat();
      const existing = await readJob(input.name);
      if (existing) {
        if (existing.metadata?.annotations?.[ANNOTATION_WORKFLOW] !== input.by.workflowId) {
          throw failure('InvalidInput', `job ${ns()}/${input.name} already exists and was not created by this run (${existing.metadata?.annotations?.[ANNOTATION_WORKFLOW] ?? 'by someone else'}); delete it or start a new release`);
        }
        return { name: input.name, created: false };
      }
      let d: k8s.V1Deployment;
      try {
        d = await api().apps.readNamespacedDeployment({ name: input.deployment, namespace: ns() });
      } catch (err) {
        throw classifyKubernetes(err, `reading deployment ${ns()}/${input.deployment}`);
      }
      try {
        await api().batch.createNamespacedJob({ namespace: ns(), body: jobManifest(d, input) });
      } catch (err) {
        if ((err as { code?: number }).code === 409) throw failure('Conflict', `job ${input.name} appeared while it was being created; retrying`);
        throw classifyKubernetes(err, `creating job ${ns()}/${input.name}`);
      }
      return { name: input.name, created: true };
    },

    /**
     * Waits until the Job has succeeded or failed (or its deadline passed), heartbeating its counts, and
     * reports how it ended with its log's tail; a failed Job is an outcome, not an error.
     */
    async waitForJob(input: { name: string; timeoutMs: number }): Promise<JobOutcome> {
      const hb = heartbeater();
      const deadline = Date.now() + input.timeoutMs + 60_000;
      try {
        for (;;) {
          const job = await readJob(input.name);
          if (!job) throw failure('NotFound', `job ${ns()}/${input.name} does not exist (deleted while the run waited for it?)`);
          const s = job.status ?? {};
          const cond = (type: string) => s.conditions?.find((c) => c.type === type && c.status === 'True');
          hb.beat({ job: input.name, active: s.active ?? 0, succeeded: s.succeeded ?? 0, failed: s.failed ?? 0 });
          const done = cond('Complete') ?? cond('Failed');
          if (done) {
            const pods = await api()
              .core.listNamespacedPod({ namespace: ns(), labelSelector: `batch.kubernetes.io/job-name=${input.name}` })
              .catch((err: unknown) => {
                throw classifyKubernetes(err, `listing pods of job ${input.name}`);
              });
            const pod = pods.items.sort((a, b) => String(a.metadata?.creationTimestamp ?? '').localeCompare(String(b.metadata?.creationTimestamp ?? ''))).pop();
            const terminated = pod?.status?.containerStatuses?.[0]?.state?.terminated;
            const log = pod ? await logTail(pod) : { text: '', source: 'none' as const };
            return {
              name: input.name,
              succeeded: done.type === 'Complete',
              reason: done.type === 'Complete' ? undefined : `${done.reason ?? 'Failed'}${done.message ? `: ${done.message}` : ''}`,
              exitCode: terminated?.exitCode,
              pod: pod?.metadata?.name,
              logTail: log.text,
              logSource: log.source,
              startedAt: s.startTime ? new Date(s.startTime).toISOString() : undefined,
              completedAt: (s.completionTime ?? done.lastTransitionTime) ? new Date((s.completionTime ?? done.lastTransitionTime)!).toISOString() : undefined,
            };
          }
          if (Date.now() > deadline) throw failure('RolloutFailed', `job ${input.name} neither completed nor failed within ${Math.round(input.timeoutMs / 1000)} s and its deadline (${s.active ?? 0} active)`);
          await new Promise((r) => setTimeout(r, 500));
          if (hb.signal.aborted) throw Context.current().cancellationSignal.reason ?? new Error('cancelled');
        }
      } finally {
        hb.stop();
      }
    },
  };
}

export type JobActivities = ReturnType<typeof createJobActivities>;
