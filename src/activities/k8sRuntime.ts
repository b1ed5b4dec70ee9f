/**
 * The Kubernetes client library, loaded on its first use. It is about half of the modules the CLI would
 * otherwise load at start (some 1,100 files), which every command that never talks to a cluster, and
 * every process the tests start, would pay for. Files import its types with `import type` and reach
 * its values through this function.
 */
import type * as K8s from '@kubernetes/client-node';

let loaded: typeof K8s | undefined;

export function k8sRuntime(): typeof K8s {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (loaded ??= require('@kubernetes/client-node') as typeof K8s);
}
