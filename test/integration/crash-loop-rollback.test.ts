import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { startRunbook } from '../../src/cli/client';
import { HistoryWatch } from '../history-watch';
import { waitFor } from '../helpers';
import { apps, assertScheduledLikeRecorded, c, crashLoop, recorded, revisionsOf, table, useCrashLoopStack } from '../crash-loop-harness';
/*
 * The crash loop (test/crash-loop-harness.ts): a runbook runs once while its worker process group is
 * SIGKILLed as each step of its recorded step list starts and inside each heartbeating activity, and
 * must end as the recorded run did, every side effect once. One runbook per file where a run is long,
 * so the files run side by side.
 */

useCrashLoopStack();

describe('the crash loop: rollback', () => {
  test('rollback: one revert however often its worker dies; the Deployment on the previous image, one revision more', async () => {
    const rec = recorded('rollback')!;
    const before = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
    // Give the Deployment a previous revision to go back to.
    await apps.patchNamespacedDeployment({ name: 'web', namespace: 'default', body: { spec: { template: { spec: { containers: [{ name: 'web', image: 'registry.sandbox.test/web:1.3' }] } } } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch));
    await waitFor('web on 1.3', async () => {
      const d = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
      return d.status?.updatedReplicas === d.spec?.replicas && d.status?.availableReplicas === d.spec?.replicas && (d.status?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0);
    }, 120_000, 250);
    const revisionBefore = await revisionsOf('web');
    const { handle } = await startRunbook(c, 'rollback', [{ environment: 'sandbox', deployment: 'web' }], {});
    const watch = new HistoryWatch(c.client, handle);
    let survived = false;
    const points = await crashLoop(handle, rec, watch);
    try {
      const result = (await handle.result()) as { outcome?: string; timeline: { steps: { name: string }[] } };
      assert.deepEqual(result.timeline.steps.map((s) => s.name), rec.steps);
      await watch.close();
      assertScheduledLikeRecorded(watch, rec);
      const after = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
      assert.equal(after.spec?.template.spec?.containers[0].image, before.spec?.template.spec?.containers[0].image, 'back on the image before 1.3');
      assert.equal(await revisionsOf('web'), revisionBefore + 1, 'one revert: exactly one revision more');
      survived = true;
    } finally {
      table.push({ runbook: 'rollback', points, survived });
    }
  });

});
