import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planFrom } from '../../src/activities/loadTest';
import { loadTestSchema } from '../../src/config/loadTest';

test("the backlog's drain SLA defaults to one phase; an explicit sla.drainWithin wins", () => {
  const base = { baselineRate: 5, phaseDuration: '8s', failure: { mode: 'workers-stopped', outage: '7s' } };
  const byDefault = planFrom(loadTestSchema.parse({ ...base, sla: { p99StartToComplete: '5s' } }));
  assert.equal(byDefault.sla.drainWithinMs, 8_000);
  const explicit = planFrom(loadTestSchema.parse({ ...base, sla: { p99StartToComplete: '5s', drainWithin: '30s' } }));
  assert.equal(explicit.sla.drainWithinMs, 30_000);
});
