/**
 * Renders a kustomize overlay (deploy/kubernetes/overlays/<env>) without the kustomize binary, for the
 * subset of kustomize the deploy manifests use:
 *
 *   resources (files and kustomization directories), components, namespace, labels (metadata only),
 *   images, configMapGenerator (files, literals, hash suffix with references updated), patches with a
 *   target (strategic merge or JSON 6902).
 *
 * Anything else in a kustomization file is refused by name, so a manifest change that needs more of
 * kustomize fails here instead of rendering differently. `kubectl apply -k` renders the same
 * directories with the real kustomize.
 *
 *   node --import tsx scripts/render-manifests.ts deploy/kubernetes/overlays/prod > prod.yaml
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseAllDocuments, parse, stringify } from 'yaml';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

interface PatchTarget {
  group?: string;
  version?: string;
  kind?: string;
  name?: string;
  namespace?: string;
  labelSelector?: string;
}

interface Kustomization {
  apiVersion: string;
  kind: 'Kustomization' | 'Component';
  resources?: string[];
  components?: string[];
  namespace?: string;
  labels?: { pairs: Record<string, string>; includeSelectors?: boolean; includeTemplates?: boolean }[];
  images?: { name: string; newName?: string; newTag?: string; digest?: string }[];
  configMapGenerator?: { name: string; files?: string[]; literals?: string[]; options?: { disableNameSuffixHash?: boolean; labels?: Record<string, string>; annotations?: Record<string, string> } }[];
  patches?: { path?: string; patch?: string; target?: PatchTarget }[];
}

const SUPPORTED_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'components', 'namespace', 'labels', 'images', 'configMapGenerator', 'patches']);

/** Kinds that have no namespace (the ones these manifests could meet). */
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'PersistentVolume', 'StorageClass', 'PriorityClass', 'Node', 'ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration', 'APIService', 'IngressClass', 'RuntimeClass']);

/** kustomize's "legacy" output order: what must exist first (namespaces, accounts, config) comes first. */
const ORDER_FIRST = ['Namespace', 'ResourceQuota', 'StorageClass', 'CustomResourceDefinition', 'ServiceAccount', 'PodSecurityPolicy', 'Role', 'ClusterRole', 'RoleBinding', 'ClusterRoleBinding', 'ConfigMap', 'Secret', 'Endpoints', 'Service', 'LimitRange', 'PriorityClass', 'PersistentVolume', 'PersistentVolumeClaim', 'Deployment', 'StatefulSet', 'CronJob', 'PodDisruptionBudget'];
const ORDER_LAST = ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'];

/** Strategic-merge keys of the lists these manifests patch; any other list is replaced, as in kustomize. */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  env: 'name',
  envFrom: '',
  volumes: 'name',
  volumeMounts: 'mountPath',
  imagePullSecrets: 'name',
};

/** Generated ConfigMaps that get a content hash appended to their name at the end of the build. */
const hashed = new WeakSet<K8sObject>();

// Kubernetes reads YAML 1.1 (0440 is octal, yes/no are booleans); so does this renderer.
const YAML_VERSION = { version: '1.1' as const };

function fail(file: string, message: string): never {
  throw new Error(`${file}: ${message}`);
}

function readKustomization(dir: string): { file: string; k: Kustomization } {
  const file = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'].map((f) => join(dir, f)).find((f) => existsSync(f));
  if (!file) throw new Error(`${dir}: no kustomization.yaml`);
  const k = parse(readFileSync(file, 'utf8'), YAML_VERSION) as Kustomization;
  for (const key of Object.keys(k)) if (!SUPPORTED_FIELDS.has(key)) fail(file, `'${key}' is not supported by this renderer (supported: ${[...SUPPORTED_FIELDS].join(', ')})`);
  const expected = k.kind === 'Component' ? 'kustomize.config.k8s.io/v1alpha1' : 'kustomize.config.k8s.io/v1beta1';
  if ((k.kind !== 'Kustomization' && k.kind !== 'Component') || k.apiVersion !== expected) fail(file, `expected apiVersion ${expected} with kind Kustomization or Component`);
  return { file, k };
}

function loadResourceFile(file: string): K8sObject[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), YAML_VERSION);
  const out: K8sObject[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) fail(file, doc.errors[0].message);
    const obj = doc.toJS() as K8sObject | null;
    if (obj === null) continue;
    if (!obj.apiVersion || !obj.kind || !obj.metadata?.name) fail(file, 'every document needs apiVersion, kind and metadata.name');
    out.push(obj);
  }
  return out;
}

/** Builds one kustomization directory; a Component is applied on top of `accumulated`. */
function build(dir: string, accumulated: K8sObject[], asComponent: boolean): K8sObject[] {
  const { file, k } = readKustomization(dir);
  if (asComponent !== (k.kind === 'Component')) fail(file, asComponent ? 'listed under components but is not a Component' : 'a Component can only be listed under components');
  let objects = [...accumulated];
  for (const entry of k.resources ?? []) {
    const path = resolve(dir, entry);
    if (!existsSync(path)) fail(file, `resource ${entry} does not exist`);
    objects.push(...(statSync(path).isDirectory() ? build(path, [], false) : loadResourceFile(path)));
  }
  for (const entry of k.components ?? []) objects = build(resolve(dir, entry), objects, true);
  for (const gen of k.configMapGenerator ?? []) objects.push(generateConfigMap(dir, file, gen));
  for (const p of k.patches ?? []) applyPatch(dir, file, p, objects);
  if (k.namespace !== undefined) for (const o of objects) setNamespace(o, k.namespace);
  for (const l of k.labels ?? []) {
    if (l.includeSelectors || l.includeTemplates) fail(file, 'labels: only includeSelectors: false and includeTemplates: false are supported');
    for (const o of objects) o.metadata.labels = { ...(o.metadata.labels ?? {}), ...l.pairs };
  }
  for (const image of k.images ?? []) for (const o of objects) setImage(o, image);
  return objects;
}

function generateConfigMap(dir: string, file: string, gen: NonNullable<Kustomization['configMapGenerator']>[number]): K8sObject {
  const data: Record<string, string> = {};
  for (const f of gen.files ?? []) {
    const [key, path] = f.includes('=') ? (f.split('=', 2) as [string, string]) : [basename(f), f];
    const full = resolve(dir, path);
    if (!full.startsWith(resolve(dir) + '/')) fail(file, `configMapGenerator file ${f} is outside the kustomization directory`);
    data[key] = readFileSync(full, 'utf8');
  }
  for (const l of gen.literals ?? []) {
    const i = l.indexOf('=');
    if (i < 1) fail(file, `configMapGenerator literal ${l}: expected KEY=VALUE`);
    data[l.slice(0, i)] = l.slice(i + 1);
  }
  const cm: K8sObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: gen.name }, data };
  if (gen.options?.labels) cm.metadata.labels = { ...gen.options.labels };
  if (gen.options?.annotations) cm.metadata.annotations = { ...gen.options.annotations };
  if (!gen.options?.disableNameSuffixHash) hashed.add(cm);
  return cm;
}

function matchesPattern(pattern: string | undefined, value: string | undefined): boolean {
  return pattern === undefined || new RegExp(`^(?:${pattern})$`).test(value ?? '');
}

function selects(target: PatchTarget, o: K8sObject): boolean {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/', 2) : ['', o.apiVersion];
  if (target.group !== undefined && target.group !== group) return false;
  if (target.version !== undefined && target.version !== version) return false;
  if (!matchesPattern(target.kind, o.kind) || !matchesPattern(target.name, o.metadata.name) || !matchesPattern(target.namespace, o.metadata.namespace)) return false;
  for (const term of (target.labelSelector ?? '').split(',').filter(Boolean)) {
    const m = /^\s*([^=!\s]+)\s*==?\s*([^\s]*)\s*$/.exec(term);
    if (!m) throw new Error(`labelSelector '${target.labelSelector}': only key=value terms are supported`);
    if (o.metadata.labels?.[m[1]] !== m[2]) return false;
  }
  return true;
}

function applyPatch(dir: string, file: string, p: NonNullable<Kustomization['patches']>[number], objects: K8sObject[]): void {
  if (!p.target) fail(file, 'patches: this renderer needs a target on every patch');
  if ((p.path === undefined) === (p.patch === undefined)) fail(file, 'patches: give either path or patch');
  const text = p.path !== undefined ? readFileSync(resolve(dir, p.path), 'utf8') : p.patch!;
  const patch = parse(text, YAML_VERSION) as Json;
  const selected = objects.filter((o) => selects(p.target!, o));
  if (selected.length === 0) fail(file, `patch ${p.path ?? '(inline)'} matches no resource`);
  for (const o of selected) {
    const { name, namespace } = o.metadata;
    const kind = o.kind;
    if (Array.isArray(patch)) applyJson6902(o as unknown as JsonObject, patch as JsonObject[]);
    else {
      const merged = strategicMerge(o as unknown as Json, patch, '') as unknown as K8sObject;
      for (const key of Object.keys(o)) delete (o as Record<string, unknown>)[key];
      Object.assign(o, merged);
    }
    // As in kustomize, a patch never renames, re-kinds or moves its target.
    o.kind = kind;
    o.metadata.name = name;
    if (namespace === undefined) delete o.metadata.namespace;
    else o.metadata.namespace = namespace;
  }
}

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Strategic merge for the fields these manifests patch: maps merge, null deletes, keyed lists merge by key. */
export function strategicMerge(target: Json, patch: Json, field: string): Json {
  if (isObject(patch)) {
    if ('$patch' in patch || Object.keys(patch).some((k) => k.startsWith('$'))) throw new Error(`strategic merge directives ($patch, ...) are not supported (at ${field || 'top level'})`);
    const out: JsonObject = isObject(target) ? { ...target } : {};
    for (const [key, value] of Object.entries(patch)) {
      if (value === null) delete out[key];
      else out[key] = strategicMerge(out[key] ?? null, value, key);
    }
    return out;
  }
  const key = MERGE_KEYS[field];
  if (Array.isArray(patch) && Array.isArray(target) && key) {
    const merged = target.map((t) => {
      const match = patch.find((p) => isObject(p) && isObject(t) && p[key] === t[key]);
      return match === undefined ? t : strategicMerge(t, match, field);
    });
    // kustomize puts the patch's new list items before the existing ones.
    const added = patch.filter((p) => !target.some((t) => isObject(p) && isObject(t) && p[key] === t[key]));
    return [...added, ...merged];
  }
  return patch;
}

function decodePointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new Error(`JSON patch path '${path}' must start with /`);
  return path.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

export function applyJson6902(doc: JsonObject, ops: JsonObject[]): void {
  for (const op of ops) {
    const parts = decodePointer(String(op.path));
    const last = parts.pop();
    if (last === undefined) throw new Error('JSON patch on the whole document is not supported');
    let parent: Json = doc;
    for (const p of parts) {
      parent = Array.isArray(parent) ? parent[Number(p)] : isObject(parent) ? parent[p] : null;
      if (parent === undefined || parent === null) throw new Error(`JSON patch path ${op.path}: ${p} does not exist`);
    }
    const has = Array.isArray(parent) ? Number(last) < parent.length : isObject(parent) && last in parent;
    switch (op.op) {
      case 'test':
        if (JSON.stringify((parent as Record<string, Json>)[last]) !== JSON.stringify(op.value)) throw new Error(`JSON patch test failed at ${op.path}`);
        break;
      case 'remove':
        if (!has) throw new Error(`JSON patch remove: ${op.path} does not exist`);
        if (Array.isArray(parent)) parent.splice(Number(last), 1);
        else delete (parent as JsonObject)[last];
        break;
      case 'replace':
        if (!has) throw new Error(`JSON patch replace: ${op.path} does not exist`);
        (parent as Record<string, Json>)[last] = op.value;
        break;
      case 'add':
        if (Array.isArray(parent)) parent.splice(last === '-' ? parent.length : Number(last), 0, op.value);
        else (parent as JsonObject)[last] = op.value;
        break;
      default:
        throw new Error(`JSON patch op '${String(op.op)}' is not supported (add, remove, replace, test)`);
    }
  }
}

function setNamespace(o: K8sObject, namespace: string): void {
  if (o.kind === 'Namespace' && o.apiVersion === 'v1') {
    o.metadata.name = namespace;
    return;
  }
  if (CLUSTER_SCOPED.has(o.kind)) return;
  o.metadata.namespace = namespace;
  // kustomize moves only RoleBinding subjects named "default" along with the namespace.
  if (o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding') {
    for (const s of (o.subjects as { name: string; namespace?: string }[] | undefined) ?? []) if (s.name === 'default') s.namespace = namespace;
  }
}

interface PodTemplateHolder {
  containers?: { image?: string; env?: { valueFrom?: { configMapKeyRef?: { name: string } } }[]; envFrom?: { configMapRef?: { name: string } }[] }[];
  initContainers?: PodTemplateHolder['containers'];
  volumes?: { configMap?: { name: string }; projected?: { sources?: { configMap?: { name: string } }[] } }[];
}

/** The pod spec inside a workload (Deployment, StatefulSet, DaemonSet, Job, ReplicaSet, CronJob) or a Pod. */
function podSpec(o: K8sObject): PodTemplateHolder | undefined {
  type Template = { template?: { spec?: PodTemplateHolder } };
  const spec = o.spec as (PodTemplateHolder & Template & { jobTemplate?: { spec?: Template } }) | undefined;
  if (!spec) return undefined;
  if (o.kind === 'Pod') return spec;
  if (o.kind === 'CronJob') return spec.jobTemplate?.spec?.template?.spec;
  return spec.template?.spec;
}

function setImage(o: K8sObject, image: NonNullable<Kustomization['images']>[number]): void {
  const pod = podSpec(o);
  for (const c of [...(pod?.containers ?? []), ...(pod?.initContainers ?? [])]) {
    if (!c.image) continue;
    const m = /^([^@]+?)(?::([^:/@]+))?(?:@(.+))?$/.exec(c.image);
    if (!m || m[1] !== image.name) continue;
    const name = image.newName ?? m[1];
    c.image = image.digest ? `${name}@${image.digest}` : image.newTag ? `${name}:${image.newTag}` : `${name}${m[2] ? `:${m[2]}` : ''}${m[3] ? `@${m[3]}` : ''}`;
  }
}

/** Go's encoding/json escapes these; kustomize's hash is taken over Go's encoding. */
function goJson(value: unknown): string {
  const sorted = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(sorted) : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted((v as Record<string, unknown>)[k])])) : v;
  return JSON.stringify(sorted(value)).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** kustomize's name suffix for a ConfigMap: sha256 over kind, name and data, ten characters without vowels' look-alikes. */
export function configMapHash(cm: K8sObject): string {
  const hex = createHash('sha256').update(goJson({ kind: 'ConfigMap', name: '', data: cm.data ?? {} })).digest('hex');
  const swap: Record<string, string> = { '0': 'g', '1': 'h', '3': 'k', a: 'm', e: 't' };
  return [...hex.slice(0, 10)].map((c) => swap[c] ?? c).join('');
}

/** Appends content hashes to generated ConfigMaps and points the pod templates of their namespace at the new names. */
function addHashes(objects: K8sObject[]): void {
  for (const cm of objects.filter((o) => hashed.has(o))) {
    const old = cm.metadata.name;
    const renamed = `${old}-${configMapHash(cm)}`;
    cm.metadata.name = renamed;
    for (const o of objects) {
      if (o.metadata.namespace !== cm.metadata.namespace) continue;
      const pod = podSpec(o);
      if (!pod) continue;
      for (const v of pod.volumes ?? []) {
        if (v.configMap?.name === old) v.configMap.name = renamed;
        for (const s of v.projected?.sources ?? []) if (s.configMap?.name === old) s.configMap.name = renamed;
      }
      for (const c of [...(pod.containers ?? []), ...(pod.initContainers ?? [])]) {
        for (const e of c.env ?? []) if (e.valueFrom?.configMapKeyRef?.name === old) e.valueFrom.configMapKeyRef.name = renamed;
        for (const e of c.envFrom ?? []) if (e.configMapRef?.name === old) e.configMapRef.name = renamed;
      }
    }
  }
}

function order(o: K8sObject): number {
  const first = ORDER_FIRST.indexOf(o.kind);
  if (first >= 0) return first - ORDER_FIRST.length;
  const last = ORDER_LAST.indexOf(o.kind);
  return last >= 0 ? 1 + last : 0;
}

function gvkString(o: K8sObject): string {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/', 2) : ['~G', o.apiVersion];
  return `${group}_${version}_${o.kind}`;
}

/** Renders a kustomization directory (an overlay) into the objects `kubectl apply -k` would send. */
export function renderKustomization(dir: string): K8sObject[] {
  const objects = build(resolve(dir), [], false);
  addHashes(objects);
  const seen = new Set<string>();
  for (const o of objects) {
    const id = `${o.apiVersion}/${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
    if (seen.has(id)) throw new Error(`${dir}: ${id} is defined twice`);
    seen.add(id);
  }
  return objects
    .map((o, i) => ({ o, i }))
    .sort((a, b) => order(a.o) - order(b.o) || (gvkString(a.o) < gvkString(b.o) ? -1 : gvkString(a.o) > gvkString(b.o) ? 1 : 0) || a.i - b.i)
    .map(({ o }) => o);
}

export function toYaml(objects: K8sObject[]): string {
  return objects.map((o) => stringify(o, { lineWidth: 0 })).join('---\n');
}

if (require.main === module) {
  const dir = process.argv[2];
  if (!dir || process.argv.length > 3) {
    process.stderr.write('usage: node --import tsx scripts/render-manifests.ts OVERLAY_DIR  (e.g. deploy/kubernetes/overlays/prod)\n');
    process.exit(2);
  }
  try {
    process.stdout.write(toYaml(renderKustomization(dir)));
  } catch (err) {
    process.stderr.write(`render-manifests: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
