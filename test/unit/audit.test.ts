import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { prometheusDurationMs } from '../../src/activities/checks';
import { judgeHistogramBuckets } from '../../src/activities/checks/monitoring';
import { SDK_HISTOGRAM_BUCKETS } from '../../src/worker';
import { attestationProblem, recordAttestation } from '../../src/checklist/attestation';
import { CHECKLIST } from '../../src/checklist/catalog';
import { renderAuditHtml, renderAuditMarkdown, ReadinessReport, scoreOf } from '../../src/reports/audit';
import { validateReadinessAuditInput } from '../../src/workflows/readinessAudit';

const approvers = ['alice', 'bob@example.com'];

describe('attestations', () => {
  test('refused unless the item is attestable, the person an approver and a comment given', () => {
    const cases: [unknown, RegExp | undefined][] = [
      [{ item: 'on-call-rotation', by: 'alice', comment: 'rota staffed' }, undefined],
      [{ item: 'on-call-rotation', by: 'bob@example.com', comment: 'ok', validForDays: 7 }, undefined],
      [{ item: 'on-call-rotation', by: 'mallory', comment: 'trust me' }, /mallory may not attest in this environment; allowed: alice, bob@example.com/],
      [{ item: 'tls-enabled', by: 'alice', comment: 'x' }, /tls-enabled is proved by automated checks, not by attestation/],
      [{ item: 'dr-drills-quarterly', by: 'alice', comment: 'x' }, /proved by a drDrill run, not by attestation/],
      [{ item: 'no-such-item', by: 'alice', comment: 'x' }, /no-such-item is not a checklist item/],
      [{ item: 'On-Call', by: 'alice', comment: 'x' }, /item: expected a checklist item id/],
      [{ item: 'on-call-rotation', by: '', comment: 'x' }, /by: expected who vouches/],
      [{ item: 'on-call-rotation', by: 'alice', comment: '   ' }, /comment: expected what was checked/],
      [{ item: 'on-call-rotation', by: 'alice' }, /comment: expected what was checked/],
      [{ item: 'on-call-rotation', by: 'alice', comment: 'x'.repeat(1001) }, /comment: expected what was checked/],
      [{ item: 'on-call-rotation', by: 'alice', comment: 'x', validForDays: 31 }, /validForDays: expected a number of days from 1 to 30/],
      [{ item: 'on-call-rotation', by: 'alice', comment: 'x', validForDays: -1 }, /validForDays/],
      [null, /expected \{ item, by, comment, validForDays\? \}/],
      [['on-call-rotation'], /expected \{ item, by, comment/],
    ];
    for (const [request, expected] of cases) {
      const problem = attestationProblem(request, approvers);
      if (expected) assert.match(problem ?? '(accepted)', expected, JSON.stringify(request));
      else assert.equal(problem, undefined, JSON.stringify(request));
    }
    assert.match(attestationProblem({ item: 'on-call-rotation', by: 'alice', comment: 'x' }, []) ?? '', /allowed: nobody/);
  });

  test("an attestation counts for the item's own period, or less if asked", () => {
    const at = Date.parse('2026-01-01T00:00:00Z');
    const a = recordAttestation({ item: 'on-call-rotation', by: 'alice', comment: 'ok' }, at, 'wf-1');
    assert.deepEqual(a, { item: 'on-call-rotation', by: 'alice', comment: 'ok', at: '2026-01-01T00:00:00.000Z', expiresAt: '2026-01-31T00:00:00.000Z', workflowId: 'wf-1' });
    assert.equal(recordAttestation({ item: 'on-call-rotation', by: 'alice', comment: 'ok', validForDays: 7 }, at, 'wf-1').expiresAt, '2026-01-08T00:00:00.000Z');
  });
});

describe('readinessAudit input', () => {
  test('bad input is refused naming the field', () => {
    const cases: [unknown, RegExp | undefined][] = [
      [{ environment: 'prod' }, undefined],
      [{ environment: 'prod', waitForAttestationsSeconds: 600, checkTimeoutSeconds: 5, concurrency: 8, certificateMinDays: 14 }, undefined],
      [{ environment: 'Prod!' }, /environment: expected an environment name/],
      [{ environment: 'prod', waitForAttestationsSeconds: -1 }, /waitForAttestationsSeconds: expected a number from 0 to 604800/],
      [{ environment: 'prod', checkTimeoutSeconds: 0 }, /checkTimeoutSeconds/],
      [{ environment: 'prod', concurrency: 1.5 }, /concurrency: expected a whole number/],
      [{ environment: 'prod', concurrency: 100 }, /concurrency: expected a number from 1 to 16/],
      [{ environment: 'prod', certificateMinDays: '30' }, /certificateMinDays/],
      ['prod', /environment/],
    ];
    for (const [input, expected] of cases) {
      if (expected) assert.throws(() => validateReadinessAuditInput(input), (err: Error) => expected.test(err.message), JSON.stringify(input));
      else assert.doesNotThrow(() => validateReadinessAuditInput(input), JSON.stringify(input));
    }
  });
});

describe('audit report', () => {
  test('scores count passed and attested items; Markdown and HTML name every section and escape what they show', () => {
    assert.deepEqual(scoreOf([{ status: 'pass' }, { status: 'attested' }, { status: 'fail' }, { status: 'unknown' }]), { score: 0.5, counts: { pass: 1, attested: 1, fail: 1, unknown: 1 } });
    assert.equal(scoreOf([]).score, 0);
    const items = CHECKLIST.slice(0, 3).map((i, n) => ({ ...i, proof: i.proof.kind, status: (['pass', 'fail', 'unknown'] as const)[n], summary: n === 1 ? 'a <b>|c' : 'fine', evidence: {} }));
    const report: ReadinessReport = {
      auditId: 'audit-1',
      workflowId: 'wf',
      environment: 'prod',
      startedAt: 't0',
      endedAt: 't1',
      ...scoreOf(items),
      ready: false,
      blocking: [{ id: items[0].id, status: 'fail', summary: 'x' }],
      sections: [{ name: items[0].section, items, ...scoreOf(items) }],
      attestations: [],
      refusedAttestations: [],
    };
    const md = renderAuditMarkdown(report);
    assert.match(md, /^# Readiness audit: prod NOT READY \(score 33%\)/);
    assert.match(md, /\| Infrastructure Prerequisites \| 33% \| 1 \| 1 \| 0 \| 1 \|/);
    assert.match(md, /a <b>\\\|c/);
    const html = renderAuditHtml(report);
    assert.match(html, /a &lt;b&gt;\|c/);
    assert.ok(!html.includes('<b>|c'));
  });

  test('Prometheus durations', () => {
    assert.equal(prometheusDurationMs('15d'), 15 * 86_400_000);
    assert.equal(prometheusDurationMs('1y'), 365 * 86_400_000);
    assert.equal(prometheusDurationMs('2w3d'), 17 * 86_400_000);
    assert.equal(prometheusDurationMs('12h30m'), 45_000_000);
    assert.equal(prometheusDurationMs('15 days'), undefined);
    assert.equal(prometheusDurationMs(''), undefined);
  });

  test('latency histograms: enough buckets over three orders of magnitude pass; few buckets, or many over a narrow range, fail by name', () => {
    const les = (xs: number[]) => [...xs.map(String), '+Inf'];
    const { coarse, histograms } = judgeHistogramBuckets({
      fine_latency_bucket: les([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]),
      few_latency_bucket: les([0.1, 1, 10]),
      narrow_latency_bucket: les([1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5]),
    });
    assert.deepEqual(coarse, { few_latency_bucket: '3 finite buckets (at least 8)', narrow_latency_bucket: 'buckets from 1 to 5 span less than 1000x' });
    assert.deepEqual(histograms.fine_latency_bucket, { buckets: 11, smallest: 0.005, largest: 10 });
    // The bucket overrides the worker gives the SDK pass the same judgement.
    assert.deepEqual(judgeHistogramBuckets(Object.fromEntries(Object.entries(SDK_HISTOGRAM_BUCKETS).map(([k, v]) => [k, les(v)]))).coarse, {});
  });
});
