import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Activities } from '../../src/activities';
import type { AutoscalerState } from '../../src/activities/autoscaler';
import type { DeploymentState, PodTemplate, ReplicaSetState } from '../../src/activities/kubernetes';
import type { EnvironmentConfig } from '../../src/config/schema';
import { JsonPatchOp, jsonPatchDiff, kubernetesPlanners as plan } from '../../src/plan/planners/kubernetes';
import type { PlanContext } from '../../src/plan/recording';

/** RFC 6902 add/remove/replace, enough to check that a diff turns one document into the other. */
function applyPatch(doc: unknown, ops: JsonPatchOp[]): unknown {
  let root = structuredClone(doc);
  for (const op of ops) {
    const keys = op.path.split('/').slice(1).map((k) => k.replaceAll('~1', '/').replaceAll('~0', '~'));
    if (keys.length === 0) {
      root = structuredClone(op.value);
      continue;
    }
    const parent = keys.slice(0, -1).reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], root) as Record<string, unknown> | unknown[];
    const last = keys[keys.length - 1];
    if (Array.isArray(parent)) {
      const i = last === '-' ? parent.length : Number(last);
      assert.ok(i >= 0 && i <= parent.length - (op.op === 'add' ? 0 : 1), `${op.op} ${op.path}: index out of range`);
      if (op.op === 'add') parent.splice(i, 0, op.value);
      else if (op.op === 'remove') parent.splice(i, 1);
      else parent[i] = op.value;
    } else {
      assert.ok(op.op === 'add' || last in parent, `${op.op} ${op.path}: no such member`);
      if (op.op === 'remove') delete parent[last];
      else parent[last] = op.value;
    }
  }
  return root;
}

const template = (image: string, env: { name: string; value: string }[] = [{ name: 'LOG', value: 'info' }]): PodTemplate => ({
  metadata: { labels: { app: 'shop' } },
  spec: { containers: [{ name: 'app', image, env }, { name: 'proxy', image: 'envoy:1.30' }] },
});

describe('a JSON patch between two documents', () => {
  const cases: [string, unknown, unknown][] = [
    ['an image changed', template('shop:1.0'), template('shop:1.1')],
    ['an env variable added', template('shop:1.0'), template('shop:1.0', [{ name: 'LOG', value: 'info' }, { name: 'MODE', value: 'fast' }])],
    ['an env variable removed from the middle', template('shop:1.0', [{ name: 'A', value: '1' }, { name: 'B', value: '2' }, { name: 'C', value: '3' }]), template('shop:1.0', [{ name: 'A', value: '1' }, { name: 'C', value: '3' }])],
    ['annotation keys with / and ~', { metadata: { annotations: { 'a/b': '1', 'c~d': '2' } } }, { metadata: { annotations: { 'a/b': '2', 'e/f': '3' } } }],
    ['a member that changes type', { a: [1, 2], b: { c: 1 }, d: 'x' }, { a: { x: 1 }, b: [1], d: null }],
    ['two whole different values', 1, { a: 1 }],
    ['undefined members count as absent', { a: 1, b: undefined }, { a: 1, c: undefined }],
  ];
  for (const [name, from, to] of cases) {
    test(`${name}: applying it gives the new document`, () => {
      const json = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;
      assert.deepEqual(json(applyPatch(from, jsonPatchDiff(from, to))), json(to));
    });
  }

  test('an image change is one replace at the container image, under the given path', () => {
    assert.deepEqual(jsonPatchDiff(template('shop:1.0'), template('shop:1.1'), '/spec/template'), [{ op: 'replace', path: '/spec/template/spec/containers/0/image', value: 'shop:1.1' }]);
  });

  test('equal documents (keys in another order) give no operation', () => {
    assert.deepEqual(jsonPatchDiff({ a: 1, b: [{ c: 2, d: 3 }] }, { b: [{ d: 3, c: 2 }], a: 1 }), []);
  });
});

/** A cluster the read-only activities see: Deployment shop at revision 3 with 4 replicas, ReplicaSets 1-3, an autoscaler of 4-10. */
function cluster(opts: { autoscaler?: boolean; stable?: Partial<DeploymentState> } = {}) {
  const shop: DeploymentState = {
    name: 'shop',
    namespace: 'web',
    exists: true,
    generation: 7,
    observedGeneration: 7,
    revision: 3,
    replicas: 4,
    updated: 4,
    ready: 4,
    available: 4,
    unavailable: 0,
    total: 4,
    containers: [
      { name: 'app', image: 'shop:1.0' },
      { name: 'proxy', image: 'envoy:1.30' },
    ],
    paused: false,
    selector: { app: 'shop' },
    annotations: { 'deployment.kubernetes.io/revision': '3' },
    labels: { app: 'shop' },
    ...opts.stable,
  };
  const missing = (name: string): DeploymentState => ({ ...shop, name, exists: false, revision: 0, replicas: 0, updated: 0, ready: 0, available: 0, total: 0, containers: [], annotations: {}, selector: {} });
  const sets: ReplicaSetState[] = [1, 2, 3].map((r) => ({ name: `shop-rs${r}`, revision: r, replicas: r === 3 ? 4 : 0, ready: r === 3 ? 4 : 0, containers: [{ name: 'app', image: `shop:0.${r}` }] }));
  sets[2].containers = shop.containers;
  const hpa: AutoscalerState = { name: 'shop', minReplicas: 4, maxReplicas: 10, currentReplicas: 4, desiredReplicas: 4 };
  const reads = {
    readDeployment: async ({ deployment }: { deployment: string }) => (deployment === 'shop' ? structuredClone(shop) : missing(deployment)),
    planTemplateChange: async ({ deployment }: { deployment: string }) => {
      assert.equal(deployment, 'shop');
      return { template: template('shop:1.0'), changes: [], images: shop.containers };
    },
    listReplicaSets: async () => structuredClone(sets),
    describeAutoscaler: async () => (opts.autoscaler ? structuredClone(hpa) : null),
  };
  const ctx: PlanContext = { environment: 'prod', env: { kubernetes: { namespace: 'web' } } as unknown as EnvironmentConfig, reads: reads as unknown as Activities, world: {}, workflowId: 'plan-rollout-1' };
  return ctx;
}

const by = { workflowId: 'plan-rollout-1', step: 'step 1' };

describe('planning a rollout of Deployment shop', () => {
  test('the canary, the scale-down, the new image and the canary removal each see the steps before them', async () => {
    const ctx = cluster();
    const images = [{ name: 'app', image: 'shop:1.1' }];

    const created = await plan.ensureCanary!({ deployment: 'shop', images, replicas: 1, stableReplicas: 4, by }, ctx);
    assert.deepEqual(created.result, { name: 'shop-canary', created: true, changed: true });
    const manifest = created.planned[0].detail as { metadata: { labels: Record<string, string> }; spec: { selector: { matchLabels: Record<string, string> }; template: { spec: { containers: { image: string }[] } } } };
    assert.equal(manifest.spec.template.spec.containers[0].image, 'shop:1.1');
    assert.deepEqual(manifest.spec.selector.matchLabels, { app: 'shop', 'runbook.dev/track': 'canary' });

    const canaryUp = await plan.waitForRolloutHealthy!({ deployment: 'shop-canary', timeoutMs: 300_000 }, ctx);
    assert.equal(canaryUp.result.revision, 1);
    assert.equal(canaryUp.result.ready, 1);
    assert.match(canaryUp.planned[0].what, /1 of 1 replicas of shop-canary revision 1 .* up to 300 s/);

    const down = await plan.scaleDeployment!({ deployment: 'shop', replicas: 3, by }, ctx);
    assert.deepEqual(down.result, { changed: true, previous: 4 });
    assert.deepEqual((down.planned[0].detail as JsonPatchOp[])[0], { op: 'replace', path: '/spec/replicas', value: 3 });

    const more = await plan.ensureCanary!({ deployment: 'shop', images, replicas: 2, stableReplicas: 4, by }, ctx);
    assert.deepEqual(more.result, { name: 'shop-canary', created: false, changed: true });
    assert.match(more.planned.map((p) => p.what).join('\n'), /scales shop-canary from 1 to 2/);

    const promoted = await plan.setDeploymentImage!({ deployment: 'shop', images, by: { ...by, step: 'promote' } }, ctx);
    assert.deepEqual(promoted.result, { changed: true, revision: 4 });
    // The scale-down of this plan already set the run's annotations: only the step changes.
    assert.deepEqual(promoted.planned[0].detail, [
      { op: 'replace', path: '/spec/template/spec/containers/0/image', value: 'shop:1.1' },
      { op: 'replace', path: '/metadata/annotations/runbook.dev~1step', value: 'promote' },
    ]);
    assert.equal((await plan.setDeploymentImage!({ deployment: 'shop', images, by }, ctx)).result.changed, false, 'a second call finds the image set');

    await plan.scaleDeployment!({ deployment: 'shop', replicas: 4, by }, ctx);
    const healthy = await plan.waitForRolloutHealthy!({ deployment: 'shop', timeoutMs: 60_000 }, ctx);
    assert.equal(healthy.result.revision, 4);
    assert.deepEqual([healthy.result.ready, healthy.result.available, healthy.result.replicas], [4, 4, 4]);
    assert.deepEqual(healthy.result.containers[0], { name: 'app', image: 'shop:1.1' });
    assert.equal(healthy.planned[0].kind, 'wait');

    assert.deepEqual((await plan.deleteCanary!({ deployment: 'shop' }, ctx)).result, { deleted: true, gone: true });
    assert.deepEqual((await plan.deleteCanary!({ deployment: 'shop' }, ctx)).result, { deleted: false, gone: true });
  });

  test('the image the Deployment already runs changes nothing and records nothing', async () => {
    const r = await plan.setDeploymentImage!({ deployment: 'shop', images: [{ name: 'app', image: 'shop:1.0' }], by }, cluster());
    assert.deepEqual(r, { result: { changed: false, revision: 3 }, planned: [] });
  });

  test('a container the Deployment does not have is refused as the real activity refuses it', async () => {
    await assert.rejects(plan.setDeploymentImage!({ deployment: 'shop', images: [{ name: 'web', image: 'shop:1.1' }], by }, cluster()), /has no container web/);
  });

  test('a template replacement is recorded as the patch between the two templates', async () => {
    const r = await plan.setDeploymentTemplate!({ deployment: 'shop', template: template('shop:1.0', [{ name: 'LOG', value: 'debug' }]), by }, cluster());
    assert.deepEqual(r.result, { changed: true, revision: 4 });
    assert.deepEqual((r.planned[0].detail as JsonPatchOp[])[0], { op: 'replace', path: '/spec/template/spec/containers/0/env/0/value', value: 'debug' });
  });

  test('a rolling batch pauses the Deployment, and the promote resumes it on the same revision', async () => {
    const ctx = cluster();
    const images = [{ name: 'app', image: 'shop:1.1' }];
    const batch = await plan.rollForward!({ deployment: 'shop', images, untilUpdated: 1, timeoutMs: 60_000, by }, ctx);
    assert.deepEqual(batch.result, { updated: 1, ready: 1, replicas: 4, paused: true });
    assert.deepEqual(batch.planned.map((p) => p.kind), ['change', 'wait', 'change']);
    const rest = await plan.rollForward!({ deployment: 'shop', images, untilUpdated: 4, timeoutMs: 60_000, by }, ctx);
    assert.deepEqual(rest.result, { updated: 4, ready: 4, replicas: 4, paused: false });
    assert.match(rest.planned[0].what, /resumes the paused shop on revision 4/);
  });

  test('the autoscaler is narrowed to the stable share and restored to its own bounds', async () => {
    const ctx = cluster({ autoscaler: true });
    const held = await plan.holdAutoscalerShare!({ deployment: 'shop', weight: 25, by }, ctx);
    assert.deepEqual(held.result, { name: 'shop', original: { minReplicas: 4, maxReplicas: 10 }, bounds: { minReplicas: 3, maxReplicas: 8 }, changed: true });
    const again = await plan.holdAutoscalerShare!({ deployment: 'shop', weight: 50, by }, ctx);
    assert.deepEqual(again.result?.original, { minReplicas: 4, maxReplicas: 10 }, 'the original bounds, not the narrowed ones');
    const restored = await plan.restoreAutoscaler!({ deployment: 'shop', by }, ctx);
    assert.deepEqual(restored.result, { name: 'shop', restored: true, bounds: { minReplicas: 4, maxReplicas: 10 } });
    assert.deepEqual((await plan.restoreAutoscaler!({ deployment: 'shop', by }, ctx)).result, { name: 'shop', restored: false });
  });
});

describe('planning a rollback of Deployment shop', () => {
  test('the undo goes back to the newest revision before the current one, which becomes the newest', async () => {
    const ctx = cluster();
    const undo = await plan.undoDeployment!({ deployment: 'shop', by }, ctx);
    assert.deepEqual(undo.result, { changed: true, fromRevision: 3, toRevision: 2, images: [{ name: 'app', image: 'shop:0.2' }] });
    assert.match(undo.planned[0].what, /ReplicaSet shop-rs2 .*which becomes revision 4/);
    const healthy = await plan.waitForRolloutHealthy!({ deployment: 'shop', timeoutMs: 60_000 }, ctx);
    assert.equal(healthy.result.revision, 4);
  });

  test('after a change planned in the same run, the undo returns to the revision the Deployment had', async () => {
    const ctx = cluster();
    await plan.setDeploymentImage!({ deployment: 'shop', images: [{ name: 'app', image: 'shop:1.1' }], by }, ctx);
    const undo = await plan.undoDeployment!({ deployment: 'shop', by }, ctx);
    assert.deepEqual([undo.result.fromRevision, undo.result.toRevision, undo.result.images[0].image], [4, 3, 'shop:1.0']);
  });

  test('back to the revision it is on changes nothing; a revision it never had is refused', async () => {
    assert.deepEqual((await plan.undoDeployment!({ deployment: 'shop', toRevision: 3, by }, cluster())).planned, []);
    await assert.rejects(plan.undoDeployment!({ deployment: 'shop', toRevision: 9, by }, cluster()), (err: Error & { type?: string }) => err.type === 'RevisionNotFound');
  });

  test('a paused Deployment is resumed even when it already has the template', async () => {
    const r = await plan.undoDeployment!({ deployment: 'shop', toRevision: 3, by }, cluster({ stable: { paused: true } }));
    assert.equal(r.result.changed, true);
  });
});
