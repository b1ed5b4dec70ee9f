import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CHECKLIST } from '../../src/checklist/catalog';
import { startRunbook } from '../../src/cli/client';
import { waive } from '../../src/cli/golive';
import { actOnRollout } from '../../src/cli/rollout';
import { signedDecision } from '../../src/cli/sign';
import { decideUpdate, gatesQuery } from '../../src/workflows/lib/gate';
import { goLiveStatusQuery } from '../../src/workflows/goLive';
import { rolloutStatusQuery } from '../../src/workflows/rollout';
import { HistoryWatch } from '../history-watch';
import { operator } from '../helpers';
import { apps, assertScheduledLikeRecorded, c, crashLoop, recorded, revisionsOf, stack, table, useCrashLoopStack } from '../crash-loop-harness';
/*
 * The crash loop (test/crash-loop-harness.ts): a runbook runs once while its worker process group is
 * SIGKILLed as each step of its recorded step list starts and inside each heartbeating activity, and
 * must end as the recorded run did, every side effect once. One runbook per file where a run is long,
 * so the files run side by side.
 */

useCrashLoopStack();

describe('the crash loop: goLive', () => {
  test('goLive: one rollout, one report however often its worker dies; the Deployment on the new image, one revision more', async () => {
    const rec = recorded('goLive')!;
    const revisionBefore = await revisionsOf('web');
    const input = {
      environment: 'sandbox',
      deployment: 'web',
      image: 'registry.sandbox.test/web:1.4',
      steps: [{ setWeight: 34 }, { pause: {} }],
      watch: { durationSeconds: 2, intervalSeconds: 1, analysis: { pods: { maxRestarts: 0 } } },
      audit: { checkTimeoutSeconds: 5 },
      waiverWaitSeconds: 600,
    };
    const { handle } = await startRunbook(c, 'goLive', [input], { target: 'web' });
    const watch = new HistoryWatch(c.client, handle);
    const me = operator(stack);
    const waived = new Set<string>();
    const critical = CHECKLIST.filter((i) => i.severity === 'critical').map((i) => i.id);
    // The people: waive every critical item at the audit gate (the plain sandbox proves few), approve, promote the rollout.
    const operate = async () => {
      const phase = (await handle.query(goLiveStatusQuery).catch(() => undefined))?.phase;
      for (const item of phase === 'audit' ? critical.filter((i) => !waived.has(i)) : []) {
        await waive(c, handle, me, { item, reason: 'crash loop on the plain sandbox' });
        waived.add(item);
      }
      const gates = await handle.query(gatesQuery).catch(() => []);
      if (gates.some((g) => g.outcome === 'waiting' && g.name !== 'audit gate')) {
        await handle.executeUpdate(decideUpdate, { args: [await signedDecision(c, handle, 'goLive', 'approve', me, 'crash loop')] });
      }
      const rollout = c.client.workflow.getHandle('rollout-sandbox-web');
      const st = await rollout.query(rolloutStatusQuery).catch(() => undefined);
      if (st?.approvals.some((g) => g.outcome === 'waiting')) await actOnRollout(c, rollout, 'promote', me, 'crash loop');
    };
    let survived = false;
    const points = await crashLoop(handle, rec, watch, operate);
    try {
      const result = (await handle.result()) as { outcome?: string; reportKeys: string[]; timeline: { steps: { name: string }[] } };
      assert.deepEqual(result.timeline.steps.map((s) => s.name), rec.steps);
      await watch.close();
      // Waivers are acts of people, sent as often as the gate took them; every other activity as recorded.
      assertScheduledLikeRecorded(watch, rec, ['describeGatePolicy']);
      const after = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
      assert.equal(after.spec?.template.spec?.containers[0].image, 'registry.sandbox.test/web:1.4');
      assert.equal(await revisionsOf('web'), revisionBefore + 1, 'one rollout: exactly one revision more');
      await assert.rejects(apps.readNamespacedDeployment({ name: 'web-canary', namespace: 'default' }), 'the canary is gone');
      assert.equal(new Set(result.reportKeys).size, result.reportKeys.length);
      survived = true;
    } finally {
      table.push({ runbook: 'goLive', points, survived });
    }
  });
});
