import type * as k8s from '@kubernetes/client-node';
import { failure } from './errors';
import { k8sRuntime } from './k8sRuntime';

/** Where and as whom the Kubernetes activities of one environment act. */
export interface KubeConnection {
  kubeconfig?: string;
  context?: string;
  namespace: string;
}

export interface KubeApi {
  apps: k8s.AppsV1Api;
  core: k8s.CoreV1Api;
  batch: k8s.BatchV1Api;
  autoscaling: k8s.AutoscalingV2Api;
  namespace: string;
}

/**
 * The API clients of one environment's cluster, made on first use (loading a kubeconfig costs time
 * the worker's start should not pay) and shared by every Kubernetes activity module.
 */
export function lazyKubeApi(environment: string, target: KubeConnection | undefined): () => KubeApi {
  let api: KubeApi | undefined;
  return () => {
    if (!target) throw failure('InvalidInput', `environment ${environment} has no kubernetes: section in the config; add the kubeconfig, namespace and deployments`);
    if (!api) {
      const kc = new (k8sRuntime().KubeConfig)();
      if (target.kubeconfig) kc.loadFromFile(target.kubeconfig);
      else kc.loadFromDefault();
      if (target.context) kc.setCurrentContext(target.context);
      api = {
        apps: kc.makeApiClient(k8sRuntime().AppsV1Api),
        core: kc.makeApiClient(k8sRuntime().CoreV1Api),
        batch: kc.makeApiClient(k8sRuntime().BatchV1Api),
        autoscaling: kc.makeApiClient(k8sRuntime().AutoscalingV2Api),
        namespace: target.namespace,
      };
    }
    return api;
  };
}

/** Key-sorted JSON, so two objects the server defaulted the same way compare equal. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v as object)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Request options that set a patch's content type (functions: the client library loads on first use). */
export const strategicMerge = () => k8sRuntime().setHeaderOptions('Content-Type', k8sRuntime().PatchStrategy.StrategicMergePatch);
export const jsonPatch = () => k8sRuntime().setHeaderOptions('Content-Type', k8sRuntime().PatchStrategy.JsonPatch);
export const mergePatch = () => k8sRuntime().setHeaderOptions('Content-Type', k8sRuntime().PatchStrategy.MergePatch);

/** "app=shop,tier=web" from a selector's matchLabels. */
export function selectorText(labels: Record<string, string> | undefined): string {
  return Object.entries(labels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}
