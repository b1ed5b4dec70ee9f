import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { codecServerSecretRefsOf, parseConfig, secretRefsOf } from '../../src/config/load';
import { QUEUE_KINDS } from '../../src/config/schema';
import { resolveTuning } from '../../src/worker';
import { applyJson6902, configMapHash, K8sObject, renderKustomization, strategicMerge } from '../../scripts/render-manifests';
import { kubernetesActivityRules, ruleKey } from '../activity-rbac';

const REPO = join(__dirname, '..', '..');
const OVERLAYS = ['prod', 'staging'] as const;
const overlayDir = (o: string) => join(REPO, 'deploy', 'kubernetes', 'overlays', o);

/** What the Kubernetes activities call, read from their source; the Role must grant exactly this. */
const NEEDED = kubernetesActivityRules().map(ruleKey);

interface Container {
  name: string;
  image: string;
  args: string[];
  ports: { name: string; containerPort: number }[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: unknown } }[];
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  startupProbe: { httpGet: { path: string; port: string } };
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  securityContext: { allowPrivilegeEscalation: boolean; readOnlyRootFilesystem: boolean; capabilities: { drop: string[] } };
  volumeMounts: { name: string; mountPath: string }[];
}
interface PodSpec {
  serviceAccountName: string;
  terminationGracePeriodSeconds: number;
  securityContext: { runAsNonRoot: boolean; runAsUser: number; seccompProfile: { type: string } };
  containers: Container[];
  volumes: {
    name: string;
    configMap?: { name: string };
    secret?: { secretName: string };
    emptyDir?: { sizeLimit?: string };
  }[];
}
interface Deployment extends K8sObject {
  spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; strategy: { rollingUpdate: { maxUnavailable: number } }; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } };
}

function render(overlay: string) {
  const objects = renderKustomization(overlayDir(overlay));
  const of = <T extends K8sObject = K8sObject>(kind: string) => objects.filter((o) => o.kind === kind) as T[];
  const one = <T extends K8sObject = K8sObject>(kind: string) => {
    const found = of<T>(kind);
    assert.equal(found.length, 1, `${overlay}: exactly one ${kind}`);
    return found[0];
  };
  const isWorker = (o: K8sObject) => o.metadata.labels?.['app.kubernetes.io/name'] === 'runbook-worker';
  const isCodecServer = (o: K8sObject) => o.metadata.labels?.['app.kubernetes.io/name'] === 'runbook-codec-server';
  const deployments = of<Deployment>('Deployment').filter(isWorker);
  /** The worker's object of a kind (the codec server has its own Service, NetworkPolicy, ServiceAccount). */
  const worker = <T extends K8sObject = K8sObject>(kind: string) => {
    const found = of<T>(kind).filter((o) => !isCodecServer(o));
    assert.equal(found.length, 1, `${overlay}: exactly one ${kind} of the worker`);
    return found[0];
  };
  const codecServer = objects.filter(isCodecServer);
  const configMap = one('ConfigMap') as K8sObject & { data: Record<string, string> };
  const loaded = parseConfig(configMap.data['runbook.yaml'], `${overlay}/runbook.yaml`);
  return { objects, of, one, worker, deployments, codecServer, configMap, loaded };
}

function matches(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

for (const overlay of OVERLAYS) {
  describe(`the ${overlay} overlay`, () => {
    const r = render(overlay);
    const workerNs = r.one('Namespace').metadata.name;

    test('renders the worker objects into one namespace and the RBAC into the namespace the runbooks manage', () => {
      const kinds = r.objects.map((o) => o.kind).sort();
      const codecServerKinds = r.codecServer.length > 0 ? ['Deployment', 'NetworkPolicy', 'Service', 'ServiceAccount'] : [];
      assert.deepEqual(kinds, ['ConfigMap', 'Deployment', 'Deployment', 'Deployment', 'HorizontalPodAutoscaler', 'HorizontalPodAutoscaler', 'HorizontalPodAutoscaler', 'Namespace', 'NetworkPolicy', 'PodDisruptionBudget', 'PodDisruptionBudget', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'Service', 'ServiceAccount', 'ServiceMonitor', ...codecServerKinds].sort());
      const managed = r.loaded.config.environments[r.loaded.config.worker.environment!].kubernetes?.namespace;
      assert.ok(managed && managed !== workerNs, 'the runbooks manage a namespace other than the workers\' own');
      for (const o of r.objects) {
        if (o.kind === 'Namespace') continue;
        assert.equal(o.metadata.namespace, o.kind === 'Role' || o.kind === 'RoleBinding' ? managed : workerNs, `${o.kind} ${o.metadata.name}`);
      }
      assert.equal(r.one('Namespace').metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted');
    });

    test('one Deployment per task queue, each running `runbook worker` for its queue only, with the config from the ConfigMap', () => {
      assert.deepEqual(r.deployments.map((d) => d.metadata.name).sort(), QUEUE_KINDS.map((q) => `runbook-worker-${q}`).sort());
      for (const d of r.deployments) {
        const queue = d.metadata.name.replace('runbook-worker-', '');
        const pod = d.spec.template.spec;
        assert.equal(pod.containers.length, 1);
        const c = pod.containers[0];
        const args = c.args.join(' ');
        assert.match(args, new RegExp(`(^| )worker --queues ${queue}$`), `${d.metadata.name} serves only ${queue}`);
        const configPath = c.args[c.args.indexOf('--config') + 1];
        const mount = c.volumeMounts.find((m) => configPath.startsWith(`${m.mountPath}/`));
        const volume = pod.volumes.find((v) => v.name === mount?.name);
        assert.equal(volume?.configMap?.name, r.configMap.metadata.name, `${d.metadata.name} reads ${configPath} from the generated ConfigMap`);
        assert.ok(r.configMap.data[configPath.slice(mount!.mountPath.length + 1)], 'the ConfigMap has the file the worker reads');
        assert.match(r.configMap.metadata.name, /^runbook-config-[a-z0-9]{10}$/, 'a content hash in the name, so a config change rolls the workers');
        assert.equal(pod.serviceAccountName, 'runbook-worker');
        assert.deepEqual(d.spec.selector.matchLabels, { 'app.kubernetes.io/name': 'runbook-worker', 'runbook.dev/queue': queue });
        assert.ok(matches(d.spec.selector.matchLabels, d.spec.template.metadata.labels));
        assert.equal(d.spec.strategy.rollingUpdate.maxUnavailable, 0, 'a new pod polls before an old one drains');
      }
    });

    test('probes: startup and liveness on /health, readiness on /ready, on the port the config serves them on, bound to the pod address', () => {
      const http = r.loaded.config.worker.http;
      assert.equal(http.host, '0.0.0.0', 'worker.http.host must be 0.0.0.0 for the kubelet and Prometheus to reach it');
      for (const d of r.deployments) {
        const c = d.spec.template.spec.containers[0];
        const port = c.ports.find((p) => p.name === 'metrics');
        assert.equal(port?.containerPort, http.port, `${d.metadata.name}: containerPort = worker.http.port`);
        assert.deepEqual(c.startupProbe.httpGet, { path: '/health', port: 'metrics' });
        assert.deepEqual(c.livenessProbe.httpGet, { path: '/health', port: 'metrics' });
        assert.deepEqual(c.readinessProbe.httpGet, { path: '/ready', port: 'metrics' });
      }
    });

    test('the kubelet waits longer than the worker drains: terminationGracePeriodSeconds exceeds the grace time plus the forced-shutdown margin', () => {
      for (const d of r.deployments) {
        const pod = d.spec.template.spec;
        const env = Object.fromEntries((pod.containers[0].env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value]));
        const { shutdownGraceTimeMs } = resolveTuning(r.loaded.config.worker.tuning, env);
        // The worker forces shutdown 10 s after the grace time (src/worker.ts); leave time to exit after that.
        assert.ok(pod.terminationGracePeriodSeconds * 1000 >= shutdownGraceTimeMs + 10_000 + 10_000, `${d.metadata.name}: ${pod.terminationGracePeriodSeconds} s vs grace ${shutdownGraceTimeMs} ms`);
      }
      const batch = r.deployments.find((d) => d.metadata.name.endsWith('-batch'))!;
      assert.ok(batch.spec.template.spec.terminationGracePeriodSeconds >= 300, 'restore tests get minutes to drain');
    });

    test('requests and limits on every worker, a restricted security context, and no replica count for re-applies to reset', () => {
      for (const d of r.deployments) {
        const pod = d.spec.template.spec;
        const c = pod.containers[0];
        for (const k of ['cpu', 'memory']) {
          assert.ok(c.resources.requests[k], `${d.metadata.name} requests ${k}`);
          assert.ok(c.resources.limits[k], `${d.metadata.name} limits ${k}`);
        }
        assert.equal(pod.securityContext.runAsNonRoot, true);
        assert.ok(pod.securityContext.runAsUser >= 1000);
        assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
        assert.deepEqual(c.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
        const tmp = c.volumeMounts.find((m) => m.mountPath === '/tmp');
        assert.ok(pod.volumes.find((v) => v.name === tmp?.name)?.emptyDir, 'a writable /tmp for spooled dumps and nsupdate keys');
        assert.equal(d.spec.replicas, undefined, 'the HorizontalPodAutoscaler owns the replica count');
      }
    });

    test('each Deployment has an autoscaler with at least two replicas and a disruption budget that keeps one polling', () => {
      const hpas = r.of<K8sObject & { spec: { scaleTargetRef: { kind: string; name: string; apiVersion: string }; minReplicas: number; maxReplicas: number } }>('HorizontalPodAutoscaler');
      const pdbs = r.of<K8sObject & { spec: { maxUnavailable?: number; minAvailable?: number; selector: { matchLabels: Record<string, string> } } }>('PodDisruptionBudget');
      for (const d of r.deployments) {
        const hpa = hpas.filter((h) => h.spec.scaleTargetRef.kind === 'Deployment' && h.spec.scaleTargetRef.name === d.metadata.name);
        assert.equal(hpa.length, 1, `one autoscaler for ${d.metadata.name}`);
        assert.equal(hpa[0].spec.scaleTargetRef.apiVersion, 'apps/v1');
        assert.ok(hpa[0].spec.minReplicas >= 2 && hpa[0].spec.maxReplicas >= hpa[0].spec.minReplicas);
        const budget = pdbs.filter((p) => matches(p.spec.selector.matchLabels, d.spec.template.metadata.labels));
        assert.equal(budget.length, 1, `one budget covers ${d.metadata.name}`);
        // The budget must not reach the other queues' pods.
        for (const other of r.deployments.filter((o) => o !== d)) assert.ok(!matches(budget[0].spec.selector.matchLabels, other.spec.template.metadata.labels));
        assert.equal(budget[0].spec.maxUnavailable, 1);
        assert.ok(hpa[0].spec.minReplicas - budget[0].spec.maxUnavailable! >= 1);
      }
    });

    test('every secret reference in the config is supplied by the Deployments: env: from a secretKeyRef, file: from a mounted Secret', () => {
      const envName = r.loaded.config.worker.environment!;
      const refs = secretRefsOf(r.loaded.config.environments[envName], envName);
      assert.ok(refs.length > 0);
      for (const d of r.deployments) {
        const pod = d.spec.template.spec;
        const c = pod.containers[0];
        for (const { path, ref } of refs) {
          if (ref.startsWith('env:')) {
            const e = c.env?.find((x) => x.name === ref.slice(4));
            assert.ok(e?.valueFrom?.secretKeyRef?.name && e.valueFrom.secretKeyRef.key, `${d.metadata.name}: ${path} (${ref}) comes from a Secret`);
          } else {
            const file = ref.slice(5);
            const mount = c.volumeMounts.find((m) => file.startsWith(`${m.mountPath}/`));
            assert.ok(pod.volumes.find((v) => v.name === mount?.name)?.secret, `${d.metadata.name}: ${path} (${ref}) is in a mounted Secret`);
          }
        }
        for (const e of c.env ?? []) assert.ok(e.valueFrom?.secretKeyRef || /^[0-9]+[a-z]*$/.test(e.value ?? ''), `${d.metadata.name}: env ${e.name} holds no literal secret`);
      }
      assert.equal(r.of('Secret').length, 0, 'no Secret is shipped with the manifests');
    });

    test('the Role grants exactly what the Kubernetes activities call, in the namespace the config names, to the worker\'s ServiceAccount', () => {
      const role = r.one<K8sObject & { rules: { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[] }>('Role');
      const granted = role.rules.flatMap((rule) => rule.apiGroups.flatMap((g) => rule.resources.flatMap((res) => rule.verbs.map((v) => `${g}/${res}:${v}`))));
      assert.ok(NEEDED.length > 0);
      assert.deepEqual([...granted].sort(), [...NEEDED].sort(), 'deploy/kubernetes/base/rbac/role.yaml grants exactly the calls of the activities (src/activities/)');
      assert.ok(!granted.some((g) => g.includes('*')));
      const binding = r.one<K8sObject & { roleRef: { kind: string; name: string }; subjects: { kind: string; name: string; namespace: string }[] }>('RoleBinding');
      assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name });
      assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: r.worker('ServiceAccount').metadata.name, namespace: workerNs }]);
      assert.equal(role.metadata.namespace, r.loaded.config.environments[r.loaded.config.worker.environment!].kubernetes?.namespace);
      assert.equal(r.of('ClusterRole').length + r.of('ClusterRoleBinding').length, 0, 'nothing cluster-wide');
    });

    test('the metrics Service selects every worker pod on the metrics port, and the ServiceMonitor selects the Service', () => {
      const svc = r.worker<K8sObject & { spec: { selector: Record<string, string>; ports: { name: string; port: number; targetPort: string }[] } }>('Service');
      const sm = r.one<K8sObject & { spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string }[] } }>('ServiceMonitor');
      for (const d of r.deployments) assert.ok(matches(svc.spec.selector, d.spec.template.metadata.labels), `${d.metadata.name} pods behind the Service`);
      assert.deepEqual(svc.spec.ports.map((p) => [p.name, p.port, p.targetPort]), [['metrics', r.loaded.config.worker.http.port, 'metrics']]);
      assert.ok(matches(sm.spec.selector.matchLabels, svc.metadata.labels));
      assert.deepEqual(sm.spec.endpoints.map((e) => [e.port, e.path]), [['metrics', '/metrics']]);
    });

    test('the NetworkPolicy covers the worker pods, lets in only the metrics port, and lets out every port the config connects to', () => {
      type Port = { port: number | string; protocol: string };
      const np = r.worker<K8sObject & { spec: { podSelector: { matchLabels: Record<string, string> }; policyTypes: string[]; ingress: { ports: Port[] }[]; egress: { ports: Port[]; to?: unknown[] }[] } }>('NetworkPolicy');
      for (const d of r.deployments) assert.ok(matches(np.spec.podSelector.matchLabels, d.spec.template.metadata.labels));
      assert.deepEqual([...np.spec.policyTypes].sort(), ['Egress', 'Ingress']);
      assert.deepEqual(np.spec.ingress.flatMap((i) => i.ports), [{ port: 'metrics', protocol: 'TCP' }]);
      const allowed = new Set(np.spec.egress.filter((e) => !e.to).flatMap((e) => e.ports.map((p) => `${p.port}/${p.protocol}`)));
      const env = r.loaded.config.environments[r.loaded.config.worker.environment!];
      const needed = new Set<string>(['53/UDP', '443/TCP']);
      needed.add(`${env.temporal.address.split(':').pop()}/TCP`);
      for (const db of Object.values(env.databases)) {
        needed.add(`${db.port}/TCP`);
        if (db.replica) needed.add(`${db.replica.port}/TCP`);
        if (db.restoreTest.port) needed.add(`${db.restoreTest.port}/TCP`);
        const b = db.backups.pgbackrest;
        if (b) {
          needed.add(`${new URL(b.repo.endpoint).port || 443}/TCP`);
          if (b.access === 'tls') needed.add(`${b.tls!.port}/TCP`);
        }
      }
      if (env.dns?.server) {
        needed.add(`${env.dns.server.split(':').pop()}/UDP`);
        needed.add(`${env.dns.server.split(':').pop()}/TCP`);
      }
      if (env.backups?.endpoint) needed.add(`${new URL(env.backups.endpoint).port || 443}/TCP`);
      for (const p of needed) assert.ok(allowed.has(p), `egress allows ${p}`);
    });

    const encryption = r.loaded.config.environments[r.loaded.config.worker.environment!].temporal.encryption;
    test(`the codec server is deployed exactly where payloads are encrypted and someone may use it (${encryption?.codecServer ? 'here' : 'not here'})`, () => {
      assert.equal(r.codecServer.length > 0, Boolean(encryption?.codecServer), 'a codec-server Deployment iff temporal.encryption.codecServer is configured');
    });

    if (encryption?.codecServer) {
      type CodecDeployment = Deployment & { spec: { replicas: number }; };
      const cs = () => r.codecServer.find((o) => o.kind === 'Deployment') as CodecDeployment;
      const pod = () => cs().spec.template.spec as PodSpec & { automountServiceAccountToken?: boolean };

      test('the codec server runs `runbook codec-server` on the pod address, with the config the workers read and probes on /health', () => {
        const c = pod().containers[0];
        assert.equal(pod().containers.length, 1);
        const args = c.args.join(' ');
        assert.match(args, /(^| )codec-server --host 0\.0\.0\.0 --port 8888$/);
        const configPath = c.args[c.args.indexOf('--config') + 1];
        const mount = c.volumeMounts.find((m) => configPath.startsWith(`${m.mountPath}/`));
        assert.equal(pod().volumes.find((v) => v.name === mount?.name)?.configMap?.name, r.configMap.metadata.name);
        assert.equal(c.ports.find((p) => p.name === 'codec')?.containerPort, 8888);
        for (const probe of [c.startupProbe, c.livenessProbe, c.readinessProbe]) assert.deepEqual(probe.httpGet, { path: '/health', port: 'codec' });
        assert.ok(cs().spec.replicas >= 2, 'two replicas, so a drain never leaves the Web UI without decoding');
        assert.equal(cs().spec.strategy.rollingUpdate.maxUnavailable, 0);
      });

      test('the codec server has requests and limits, the restricted security context, its own ServiceAccount and no API token', () => {
        const p = pod();
        const c = p.containers[0];
        for (const k of ['cpu', 'memory']) assert.ok(c.resources.requests[k] && c.resources.limits[k], `requests and limits ${k}`);
        assert.equal(p.securityContext.runAsNonRoot, true);
        assert.ok(p.securityContext.runAsUser >= 1000);
        assert.equal(p.securityContext.seccompProfile.type, 'RuntimeDefault');
        assert.deepEqual(c.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
        const sa = r.codecServer.find((o) => o.kind === 'ServiceAccount') as K8sObject & { automountServiceAccountToken?: boolean };
        assert.equal(p.serviceAccountName, sa.metadata.name);
        assert.notEqual(p.serviceAccountName, 'runbook-worker', 'not the worker\'s identity: the Role is granted to that one');
        assert.equal(sa.automountServiceAccountToken, false);
        assert.equal(p.automountServiceAccountToken, false);
        assert.match(c.image, /^[a-z0-9.-]+(\/[a-z0-9._-]+)+(:(?!latest$)[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$/, c.image);
      });

      test('the codec server gets exactly the secrets it reads (payload keys, its tokens) by secretKeyRef, and none of the workers\'', () => {
        const envName = r.loaded.config.worker.environment!;
        const env = r.loaded.config.environments[envName];
        const needed = codecServerSecretRefsOf(env, envName).map((x) => x.ref);
        assert.ok(needed.length >= 2);
        const c = pod().containers[0];
        const given = (c.env ?? []).map((e) => {
          assert.ok(e.valueFrom?.secretKeyRef?.name && e.valueFrom.secretKeyRef.key, `env ${e.name} comes from a Secret`);
          return `env:${e.name}`;
        });
        assert.deepEqual([...given].sort(), needed.filter((ref) => ref.startsWith('env:')).sort(), 'the codec server\'s env is exactly its own secret references');
        const workerOnly = secretRefsOf(env, envName).filter((x) => !needed.includes(x.ref));
        assert.ok(workerOnly.length > 0);
        for (const { ref } of workerOnly) assert.ok(!given.includes(ref), `the codec server does not get ${ref}`);
        for (const d of r.deployments) {
          for (const t of env.temporal.encryption!.codecServer!.tokens ?? []) assert.ok(!(d.spec.template.spec.containers[0].env ?? []).some((e) => `env:${e.name}` === t.token), `${d.metadata.name} does not get the codec token ${t.token}`);
        }
      });

      test('the codec Service selects only the codec server pods on the codec port', () => {
        const svc = r.codecServer.find((o) => o.kind === 'Service') as K8sObject & { spec: { selector: Record<string, string>; ports: { name: string; port: number; targetPort: string }[] } };
        assert.ok(matches(svc.spec.selector, cs().spec.template.metadata.labels));
        for (const d of r.deployments) assert.ok(!matches(svc.spec.selector, d.spec.template.metadata.labels), `${d.metadata.name} is not behind the codec Service`);
        assert.deepEqual(svc.spec.ports.map((p) => [p.name, p.targetPort]), [['codec', 'codec']]);
      });

      test('the codec NetworkPolicy admits only the Web UI\'s ingress on the codec port, and lets out only DNS and HTTPS (the JWKS)', () => {
        type Peer = { namespaceSelector?: { matchLabels: Record<string, string> }; podSelector?: { matchLabels: Record<string, string> }; ipBlock?: unknown };
        const np = r.codecServer.find((o) => o.kind === 'NetworkPolicy') as K8sObject & { spec: { podSelector: { matchLabels: Record<string, string> }; policyTypes: string[]; ingress: { from?: Peer[]; ports: { port: string; protocol: string }[] }[]; egress: { to?: unknown[]; ports: { port: number; protocol: string }[] }[] } };
        assert.ok(matches(np.spec.podSelector.matchLabels, cs().spec.template.metadata.labels));
        for (const d of r.deployments) assert.ok(!matches(np.spec.podSelector.matchLabels, d.spec.template.metadata.labels));
        assert.deepEqual([...np.spec.policyTypes].sort(), ['Egress', 'Ingress']);
        assert.equal(np.spec.ingress.length, 1);
        const [rule] = np.spec.ingress;
        assert.deepEqual(rule.ports, [{ port: 'codec', protocol: 'TCP' }]);
        // One peer, named by namespace and pod together (an AND): not "any pod", not "anything in a namespace".
        assert.equal(rule.from?.length, 1);
        const [peer] = rule.from!;
        assert.ok(peer.namespaceSelector?.matchLabels && Object.keys(peer.namespaceSelector.matchLabels).length > 0, 'names the namespace');
        assert.ok(peer.podSelector?.matchLabels && Object.keys(peer.podSelector.matchLabels).length > 0, 'names the pods');
        assert.notEqual(peer.namespaceSelector.matchLabels['kubernetes.io/metadata.name'], workerNs, 'not the workers\' namespace');
        assert.deepEqual(np.spec.egress.flatMap((e) => e.ports.map((p) => `${p.port}/${p.protocol}`)).sort(), ['443/TCP', '53/TCP', '53/UDP']);
        const jwksUrl = encryption.codecServer!.jwt?.jwksUrl;
        if (jwksUrl) assert.equal(new URL(jwksUrl).protocol, 'https:');
      });
    }
    test('restore tests without a restore server run in scratch instances on the batch workers, on a writable volume of a stated size at restoreTest.scratchDir', () => {
      const env = r.loaded.config.environments[r.loaded.config.worker.environment!];
      const scratchDirs = new Set(
        Object.values(env.databases)
          .filter((db) => db.backups.method === 'pgbackrest' || (db.restoreTest.into ?? (db.restoreTest.host ? 'restoreServer' : 'scratchInstance')) === 'scratchInstance')
          .map((db) => db.restoreTest.scratchDir),
      );
      assert.ok(scratchDirs.size > 0, `${overlay} runs restore tests in scratch instances`);
      const batch = r.deployments.find((d) => d.metadata.name.endsWith('-batch'))!;
      const pod = batch.spec.template.spec;
      for (const dir of scratchDirs) {
        const mount = pod.containers[0].volumeMounts.find((m) => dir === m.mountPath || dir.startsWith(`${m.mountPath}/`));
        assert.ok(mount, `${dir} is on a mounted volume (the root filesystem is read-only)`);
        const volume = pod.volumes.find((v) => v.name === mount.name)!;
        const size = volume.emptyDir?.sizeLimit;
        assert.match(size ?? '', /^\d+(Gi|Ti)$/, `the scratch volume states its size (${size})`);
        assert.notEqual(mount.mountPath, '/tmp', 'not the spool directory');
      }
    });

    test('pgBackRest TLS access: the client certificate, key and CA are mounted from a Secret', () => {
      const env = r.loaded.config.environments[r.loaded.config.worker.environment!];
      const files = Object.values(env.databases).flatMap((db) => (db.backups.pgbackrest?.access === 'tls' ? [db.backups.pgbackrest.tls!.caFile, db.backups.pgbackrest.tls!.certFile, db.backups.pgbackrest.tls!.keyFile] : []));
      for (const d of r.deployments) {
        const pod = d.spec.template.spec;
        for (const file of files) {
          const mount = pod.containers[0].volumeMounts.find((m) => file.startsWith(`${m.mountPath}/`));
          assert.ok(pod.volumes.find((v) => v.name === mount?.name)?.secret, `${d.metadata.name}: ${file} comes from a Secret`);
        }
      }
    });

    test('images are pinned to a release tag or digest', () => {
      for (const d of r.deployments) {
        const image = d.spec.template.spec.containers[0].image;
        assert.match(image, /^[a-z0-9.-]+(\/[a-z0-9._-]+)+(:(?!latest$)[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$/, image);
      }
    });
  });
}

describe('the Kubernetes activities\' calls as RBAC rules', () => {
  test('map each client call to its resource and verb, and refuse a call they cannot map', () => {
    const source =
      'await api().apps.readNamespacedDeployment(x); api().apps.patchNamespacedDeploymentScale(y); api().core.listNamespacedPod(z); w.watch(`/apis/apps/v1/namespaces/${ns}/replicasets`); ' +
      'kube.api(k8s.PolicyV1Api).listNamespacedPodDisruptionBudget({ namespace: ns }); deps.store.deleteKeys(keys); createCheckActivities(deps)';
    assert.deepEqual(kubernetesActivityRules(source).map(ruleKey), ['/pods:list', 'apps/deployments:get', 'apps/deployments/scale:patch', 'apps/replicasets:watch', 'policy/poddisruptionbudgets:list']);
    assert.throws(() => kubernetesActivityRules('kube.api(k8s.CoreV1Api).listPodForAllNamespaces()'), /cannot map/);
    assert.throws(() => kubernetesActivityRules('api().core.listNode()'), /cannot map/);
    assert.throws(() => kubernetesActivityRules('api().core.connectPostNamespacedPodExec()'), /cannot map/);
  });
});

describe('the manifest renderer', () => {
  test('gives ConfigMaps the name suffix kustomize gives them', () => {
    // Values computed with kustomize's own hasher (sigs.k8s.io/kustomize/api v0.21.1).
    const cm = (data: Record<string, string>): K8sObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'runbook-config' }, data });
    assert.equal(configMapHash(cm({ 'runbook.yaml': 'version: 1\n' })), '99t27mdf58');
    assert.equal(configMapHash(cm({ 'a.yaml': 'sql: SELECT count(*) >= 0 FROM t WHERE a < 2 & b\n', b: 'x' })), 'df7g9dm2d8');
  });

  test('merges lists by their strategic-merge keys, new items first, as kustomize does', () => {
    const base = { spec: { containers: [{ name: 'worker', image: 'a', env: [{ name: 'A', value: '1' }, { name: 'B', value: '2' }] }], volumes: [{ name: 'config' }] } };
    const patch = { spec: { containers: [{ name: 'worker', env: [{ name: 'C', value: '3' }, { name: 'A', value: '9' }] }], volumes: [{ name: 'tls' }] } };
    assert.deepEqual(strategicMerge(base, patch, ''), {
      spec: { containers: [{ name: 'worker', image: 'a', env: [{ name: 'C', value: '3' }, { name: 'A', value: '9' }, { name: 'B', value: '2' }] }], volumes: [{ name: 'tls' }, { name: 'config' }] },
    });
    assert.deepEqual(strategicMerge({ a: 1, b: { c: 2 } }, { b: null, d: [1] }, ''), { a: 1, d: [1] });
  });

  test('applies JSON 6902 patches and refuses one whose path does not exist', () => {
    const doc = { spec: { maxReplicas: 6, subjects: [{ namespace: 'runbook' }] } };
    applyJson6902(doc, [{ op: 'replace', path: '/spec/maxReplicas', value: 2 }, { op: 'replace', path: '/spec/subjects/0/namespace', value: 'x' }, { op: 'add', path: '/spec/subjects/-', value: { namespace: 'y' } }]);
    assert.deepEqual(doc, { spec: { maxReplicas: 2, subjects: [{ namespace: 'x' }, { namespace: 'y' }] } });
    assert.throws(() => applyJson6902(doc, [{ op: 'replace', path: '/spec/minReplicas', value: 2 }]), /does not exist/);
  });

  test('refuses kustomize features it does not implement, naming the file and the field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'render-manifests-'));
    try {
      mkdirSync(join(dir, 'o'));
      writeFileSync(join(dir, 'o', 'kustomization.yaml'), 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamePrefix: x-\nresources: []\n');
      assert.throws(() => renderKustomization(join(dir, 'o')), (err: Error) => err.message.includes(join('o', 'kustomization.yaml')) && err.message.includes("'namePrefix' is not supported"));
      writeFileSync(join(dir, 'o', 'kustomization.yaml'), 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [cm.yaml]\npatches:\n  - patch: "{metadata: {labels: {a: b}}}"\n');
      writeFileSync(join(dir, 'o', 'cm.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n');
      assert.throws(() => renderKustomization(join(dir, 'o')), /needs a target/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the Dockerfile', () => {
  const text = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const args = Object.fromEntries(lines.filter((l) => l.startsWith('ARG ') && l.includes('=')).map((l) => l.slice(4).split('=', 2) as [string, string]));
  const froms = lines.filter((l) => l.startsWith('FROM '));
  const expand = (s: string) => s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string, b: string) => args[a ?? b] ?? '');

  test('is multi-stage on a base pinned to an exact release', () => {
    assert.ok(froms.length >= 2, 'at least a dependency stage and a runtime stage');
    for (const from of froms) {
      const image = expand(from.split(/\s+/)[1]);
      assert.match(image, /^node:\d+\.\d+\.\d+-[a-z]+(-slim)?(@sha256:[0-9a-f]{64})?$/, `${from} → ${image}`);
    }
    const node = /^node:(\d+)\.(\d+)\.(\d+)/.exec(expand(froms[0].split(/\s+/)[1]))!;
    const engines = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).engines.node as string;
    const min = /(\d+)\.(\d+)\.(\d+)/.exec(engines)!;
    assert.ok(Number(node[1]) * 1e6 + Number(node[2]) * 1e3 + Number(node[3]) >= Number(min[1]) * 1e6 + Number(min[2]) * 1e3 + Number(min[3]), `base satisfies engines ${engines}`);
    const pinned = readFileSync(join(REPO, '.node-version'), 'utf8').trim();
    assert.equal(`${node[1]}.${node[2]}.${node[3]}`, pinned, 'the image runs the Node.js release the suite is tested on (.node-version)');
    assert.equal(min[1], node[1], `engines ${engines} names the same major`);
  });

  test("the overlays deploy the worker image of this release (package.json's version)", () => {
    const version = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version as string;
    for (const overlay of ['staging', 'prod']) {
      const k = readFileSync(join(REPO, 'deploy', 'kubernetes', 'overlays', overlay, 'worker', 'kustomization.yaml'), 'utf8');
      assert.match(k, new RegExp(`newTag: "${version.replaceAll('.', '\\.')}"`), `${overlay} overlay's image tag`);
    }
  });

  test('installs exactly the locked production dependencies and the tools the activities run', () => {
    const depsStage = text.slice(text.indexOf(froms[0]), text.indexOf(froms[1]));
    assert.match(depsStage, /COPY package\.json package-lock\.json/);
    assert.match(depsStage, /RUN npm ci --omit=dev/);
    assert.doesNotMatch(text, /npm install\b/);
    assert.match(text, /postgresql-client-15/, 'pg_dump and pg_restore');
    assert.match(text, /\bpostgresql-15\b/, 'server binaries for scratch instances');
    assert.match(text, /create_main_cluster = false/, 'no cluster created in the image');
    assert.match(text, /\bpgbackrest\b/, 'pgBackRest for physical backups and restores');
    assert.match(text, /bind9-dnsutils/, 'nsupdate');
    assert.match(text, /COPY --from=deps .*node_modules/);
    const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    assert.ok(lock.packages['node_modules/tsx'] && !lock.packages['node_modules/tsx'].dev, 'tsx, which bin/runbook runs the sources with, is a production dependency');
  });

  test('runs as a numeric non-root user, the one the Deployments require', () => {
    const runtime = text.slice(text.lastIndexOf(froms[froms.length - 1]));
    const users = runtime.split('\n').filter((l) => l.startsWith('USER '));
    assert.equal(users.length, 1);
    const [uid] = users[0].slice(5).trim().split(':');
    assert.match(uid, /^[1-9]\d{3,}$/, 'numeric, so runAsNonRoot can be checked');
    const final = text.split('\n').filter((l) => /^(USER|FROM) /.test(l)).pop();
    assert.ok(final?.startsWith('USER '), 'the last stage ends as the non-root user');
    for (const o of OVERLAYS) for (const d of render(o).deployments) assert.equal(String(d.spec.template.spec.securityContext.runAsUser), uid);
    assert.match(runtime, /ENTRYPOINT \["\/app\/bin\/runbook"\]/);
  });

  test('carries no secrets and no local state into the image', () => {
    assert.doesNotMatch(text, /(PASSWORD|SECRET|TOKEN|API_KEY)\s*=/i);
    assert.doesNotMatch(text, /^ADD /m);
    assert.doesNotMatch(text, /COPY \. /);
    const ignore = readFileSync(join(REPO, '.dockerignore'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
    assert.equal(ignore[0], '*', 'everything is excluded unless listed');
    assert.deepEqual(ignore.slice(1).sort(), ['!.node-version', '!bin/', '!package-lock.json', '!package.json', '!scripts/lib/', '!src/', '!tsconfig.json']);
    for (const copy of text.split('\n').filter((l) => l.startsWith('COPY ') && !l.includes('--from='))) {
      for (const src of copy.split(/\s+/).slice(1, -1).filter((s) => !s.startsWith('--'))) assert.ok(ignore.includes(`!${src.replace(/\/?$/, src.includes('.') ? '' : '/')}`), `${src} is let through .dockerignore`);
    }
  });
});
