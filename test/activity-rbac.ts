import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The Kubernetes API calls the worker's activities make (every module under src/activities/: the
 * rollout activities and the readiness audit's checks alike), as RBAC rules: the worker's Role
 * (deploy/kubernetes/base/rbac/role.yaml) must grant exactly these. Read from the source so a new
 * call without a matching rule fails the deploy tests.
 */
export interface ActivityRule {
  group: string;
  resource: string;
  subresource?: string;
  verb: string;
}

const VERBS: Record<string, string> = { read: 'get', list: 'list', create: 'create', patch: 'patch', replace: 'update', delete: 'delete', deleteCollection: 'deletecollection' };
const RESOURCES: Record<string, [string, string]> = {
  Deployment: ['apps', 'deployments'],
  ReplicaSet: ['apps', 'replicasets'],
  StatefulSet: ['apps', 'statefulsets'],
  PodDisruptionBudget: ['policy', 'poddisruptionbudgets'],
  HorizontalPodAutoscaler: ['autoscaling', 'horizontalpodautoscalers'],
  Job: ['batch', 'jobs'],
  NetworkPolicy: ['networking.k8s.io', 'networkpolicies'],
  Pod: ['', 'pods'],
  Service: ['', 'services'],
  Secret: ['', 'secrets'],
  ConfigMap: ['', 'configmaps'],
  Event: ['', 'events'],
};

export const ACTIVITIES_DIR = join(__dirname, '..', 'src', 'activities');

/** The source of every activity module, concatenated: the code the worker runs against Kubernetes. */
export function activitiesSource(dir = ACTIVITIES_DIR): string {
  const parts: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) parts.push(activitiesSource(path));
    else if (name.endsWith('.ts')) parts.push(readFileSync(path, 'utf8'));
  }
  return parts.join('\n');
}

export function ruleKey(r: ActivityRule): string {
  return `${r.group}/${r.resource}${r.subresource ? `/${r.subresource}` : ''}:${r.verb}`;
}

/** Each client call mapped to its rule; throws on a call it cannot map (a new kind of call: map it here). */
export function kubernetesActivityRules(source = activitiesSource()): ActivityRule[] {
  const rules = new Map<string, ActivityRule>();
  const add = (r: ActivityRule) => rules.set(ruleKey(r), r);
  // Every client call by its generated method name, whichever API object it is made on (apps.x, core.x,
  // kube.api(k8s.PolicyV1Api).x). Namespaced calls map to a Role's rule; cluster-wide, all-namespace and
  // connect (exec, proxy) calls need more than a Role and fail the derivation.
  const CLUSTER_KINDS = /^(Node|Namespace|PersistentVolume|ClusterRole|ClusterRoleBinding|CustomResourceDefinition|StorageClass|PriorityClass|ValidatingWebhookConfiguration|MutatingWebhookConfiguration)\w*$/;
  for (const [, receiver, verb, rest] of source.matchAll(/(\w*)\.(read|list|create|patch|replace|delete|deleteCollection|connect\w*?)([A-Z]\w*)\(/g)) {
    const method = `${verb}${rest}`;
    // Temporal's own gRPC services have calls of the same shape (workflowService.listNamespaces): not Kubernetes.
    if (receiver === 'workflowService' || receiver === 'operatorService') continue;
    const kubernetes = /Namespaced|ForAllNamespaces/.test(rest) || CLUSTER_KINDS.test(rest);
    if (!kubernetes) continue;
    if (/ForAllNamespaces/.test(rest) || !/Namespaced/.test(rest) || verb.startsWith('connect')) {
      throw new Error(`${method}: a Kubernetes call the deploy tests cannot map to a namespaced resource and verb (cluster-wide, all-namespace and connect calls need more than a Role); map it in test/activity-rbac.ts`);
    }
    const m = /^(read|list|create|patch|replace|delete|deleteCollection)Namespaced([A-Z][A-Za-z]*?)(Scale|Status|Log)?$/.exec(method);
    if (!m || !RESOURCES[m[2]]) throw new Error(`${method}: a Kubernetes call the deploy tests cannot map to a resource and verb (namespaced calls only); map it in test/activity-rbac.ts`);
    const [group, resource] = RESOURCES[m[2]];
    add({ group, resource, subresource: m[3]?.toLowerCase(), verb: VERBS[m[1]] });
  }
  // Watches (k8s.Watch or list with watch: true) name their resource in a path.
  for (const [, apis, resource] of source.matchAll(/\/(api\/v1|apis\/apps\/v1)\/namespaces\/[^/'"`]+\/([a-z]+)/g)) add({ group: apis === 'api/v1' ? '' : 'apps', resource, verb: 'watch' });
  return [...rules.values()].sort((a, b) => ruleKey(a).localeCompare(ruleKey(b)));
}
