import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The Kubernetes API calls src/activities/kubernetes.ts makes, as RBAC rules: the worker's Role
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
  Pod: ['', 'pods'],
  Service: ['', 'services'],
  Secret: ['', 'secrets'],
  ConfigMap: ['', 'configmaps'],
  Event: ['', 'events'],
};

export const ACTIVITIES_FILE = join(__dirname, '..', 'src', 'activities', 'kubernetes.ts');

export function ruleKey(r: ActivityRule): string {
  return `${r.group}/${r.resource}${r.subresource ? `/${r.subresource}` : ''}:${r.verb}`;
}

/** Each client call mapped to its rule; throws on a call it cannot map (a new kind of call: map it here). */
export function kubernetesActivityRules(source = existsSync(ACTIVITIES_FILE) ? readFileSync(ACTIVITIES_FILE, 'utf8') : ''): ActivityRule[] {
  const rules = new Map<string, ActivityRule>();
  const add = (r: ActivityRule) => rules.set(ruleKey(r), r);
  for (const [, method] of source.matchAll(/\b(?:apps|core)\.(\w+)\(/g)) {
    const m = /^(read|list|create|patch|replace|delete|deleteCollection)Namespaced([A-Z][A-Za-z]*?)(Scale|Status)?$/.exec(method);
    if (!m || !RESOURCES[m[2]]) throw new Error(`${method}: a Kubernetes call the deploy tests cannot map to a resource and verb (namespaced calls only); map it in test/activity-rbac.ts`);
    const [group, resource] = RESOURCES[m[2]];
    add({ group, resource, subresource: m[3]?.toLowerCase(), verb: VERBS[m[1]] });
  }
  // Watches (k8s.Watch or list with watch: true) name their resource in a path.
  for (const [, apis, resource] of source.matchAll(/\/(api\/v1|apis\/apps\/v1)\/namespaces\/[^/'"`]+\/([a-z]+)/g)) add({ group: apis === 'api/v1' ? '' : 'apps', resource, verb: 'watch' });
  return [...rules.values()].sort((a, b) => ruleKey(a).localeCompare(ruleKey(b)));
}
