import { createSampleDeployment } from '../sandbox/kubernetes';
import type { RolloutResult } from '../workflows/rollout';
import { waitForOpenGate } from './drill';
import type { Signer } from './sign';
import type { ConnectedClient } from './client';
import { waitWithProgress } from './progress';
import { actOnRollout, renderStatus, startRollout } from './rollout';
import { k8sRuntime } from '../activities/k8sRuntime';

/** The demo's application: three replicas of web:1.0 in the sandbox cluster's default namespace. */
export async function createDemoDeployment(kubeconfig: string): Promise<void> {
  const kc = new (k8sRuntime().KubeConfig)();
  kc.loadFromFile(kubeconfig);
  await createSampleDeployment(kc.makeApiClient(k8sRuntime().AppsV1Api), { name: 'web', image: 'registry.sandbox.test/web:1.0', replicas: 3, container: 'web' });
}

/** A two-gate canary (34%, pause, 67%, pause) requested by one sandbox operator and approved at each gate by the other (four-eyes). */
export async function runDemoRollout(c: ConnectedClient, signers: { requester: Signer; approver: Signer }, showProgress: boolean): Promise<{ ok: boolean; workflowId: string; result?: RolloutResult; text: string }> {
  const { handle, workflowId } = await startRollout(c, {
    environment: c.environment,
    deployment: 'web',
    image: 'registry.sandbox.test/web:1.1',
    steps: [{ setWeight: 34 }, { pause: {} }, { setWeight: 67 }, { pause: {} }],
  }, signers.requester);
  const done = waitWithProgress<RolloutResult>(handle, showProgress);
  for (let gate = 1; gate <= 2; gate++) {
    await waitForOpenGate(handle, 120_000);
    if ((await handle.describe()).status.name !== 'RUNNING') break;
    await actOnRollout(c, handle, 'promote', signers.approver, `demo: gate ${gate} looks healthy`);
  }
  const result = await done;
  return { ok: result.outcome === 'promoted', workflowId, result, text: `rollout ${result.outcome}: web runs ${result.finalImages.map((i) => i.image).join(', ')}\n${renderStatus(result.status, workflowId)}` };
}
