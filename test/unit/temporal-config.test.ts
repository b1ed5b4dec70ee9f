import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compareNamespaces, NamespaceBackup } from '../../src/activities/temporalConfig';
import { renderTemporalConfigReportMarkdown } from '../../src/reports/temporalConfig';
import { decodeClusterDescription } from '../../src/system/temporalAdmin';
import { parse } from 'protobufjs';

const production = (): NamespaceBackup => ({
  name: 'payments',
  description: 'payment workflows',
  ownerEmail: 'platform@example.com',
  data: { team: 'payments' },
  retentionSeconds: 30 * 86_400,
  historyArchival: { state: 'enabled', uri: 's3://archive/history' },
  visibilityArchival: { state: 'enabled', uri: 's3://archive/visibility' },
  searchAttributes: { CustomerTier: 'Keyword', OrderCount: 'Int' },
  schedules: [
    {
      scheduleId: 'nightly-settlement',
      schedule: { spec: { structuredCalendar: [{ hour: [{ start: 2, end: 2, step: 1 }] }], timezoneName: 'Europe/Berlin' }, action: { startWorkflow: { workflowType: { name: 'settle' } } }, policies: { overlapPolicy: 'SCHEDULE_OVERLAP_POLICY_BUFFER_ONE' }, state: { paused: true, notes: 'migration' } },
      memo: { fields: { owner: { data: 'InBheW1lbnRzIg==' } } },
      searchAttributes: null,
    },
  ],
});

describe('comparing a restored namespace configuration', () => {
  test('a faithful copy under another name, with the restore marker in its data, is equal', () => {
    const restored = { ...production(), name: 'restore-test-abc123def0-0', data: { team: 'payments', 'runbook.restore-test': 'abc123def0' } };
    assert.deepEqual(compareNamespaces(production(), restored), []);
  });

  test('a changed retention, a lost search attribute, a resumed schedule and a missing one are each named by path', () => {
    const found = production();
    found.retentionSeconds = 45 * 86_400;
    delete found.searchAttributes.OrderCount;
    found.schedules[0].schedule = { ...found.schedules[0].schedule, state: { paused: false } };
    const expected = production();
    expected.schedules.push({ scheduleId: 'hourly', schedule: { spec: {} }, memo: null, searchAttributes: null });
    const diffs = compareNamespaces(expected, found);
    assert.deepEqual(diffs.map((d) => d.path), ['payments.retentionSeconds', 'payments.searchAttributes.OrderCount', 'payments.schedules.nightly-settlement.state', 'payments.schedules.hourly']);
    assert.deepEqual([diffs[0].expected, diffs[0].found], [30 * 86_400, 45 * 86_400]);
    assert.deepEqual([diffs[1].expected, diffs[1].found], ['Int', null]);
    assert.deepEqual([diffs[3].expected, diffs[3].found], ['present', 'absent']);
  });

  test('the report says which comparison failed', () => {
    const md = renderTemporalConfigReportMarkdown({
      testId: 'abc123def0',
      workflowId: 'verifyTemporalConfig-x',
      environment: 'production',
      backupId: '20261201T020000Z-a1b2c3',
      passed: false,
      reasons: ['the backup differs from the live cluster: payments.retentionSeconds'],
      integrity: { sha256Matches: true, expectedSha256: 'aa', foundSha256: 'aa' },
      scratchNamespaces: [{ namespace: 'payments', scratchNamespace: 'restore-test-abc123def0-0', schedules: 1, searchAttributes: 2, deleted: true }],
      restoredDifferences: [],
      liveDifferences: [{ path: 'payments.retentionSeconds', expected: 3_888_000, found: 2_592_000 }],
      startedAt: '2026-12-01T04:00:00Z',
      endedAt: '2026-12-01T04:00:09Z',
    });
    assert.match(md, /^# Temporal configuration restore test abc123def0: FAILED/);
    assert.match(md, /## Restored copy against the backup\n\nequal/);
    assert.match(md, /\| payments\.retentionSeconds \| 3888000 \| 2592000 \|/);
    assert.match(md, /\| payments \| restore-test-abc123def0-0 \| 1 \| 2 \| yes \|/);
  });
});

describe("the cluster's description from the admin API", () => {
  test('hosts per role from the membership rings; fields not read are skipped', () => {
    const type = parse(`
syntax = "proto3";
message HostInfo { string identity = 1; }
message RingInfo { string role = 1; int32 member_count = 2; repeated HostInfo members = 3; }
message MembershipInfo { HostInfo current_host = 1; repeated string reachable_members = 2; repeated RingInfo rings = 3; }
message R { map<string, string> supported_clients = 1; string server_version = 2; MembershipInfo membership_info = 3; string cluster_id = 4; int32 history_shard_count = 6; string persistence_store = 7; string visibility_store = 8; }
`).root.lookupType('R');
    const bytes = type.encode(
      type.fromObject({
        supportedClients: { 'temporal-go': '<2.0.0' },
        serverVersion: '1.32.2',
        clusterId: 'c1',
        historyShardCount: 512,
        persistenceStore: 'postgres12',
        visibilityStore: 'postgres12',
        membershipInfo: {
          currentHost: { identity: '10.0.0.1:7233' },
          rings: [
            { role: 'frontend', memberCount: 2, members: [{ identity: '10.0.0.2:7233' }, { identity: '10.0.0.1:7233' }] },
            { role: 'history', memberCount: 1, members: [{ identity: '10.0.0.3:7234' }] },
          ],
        },
      }),
    ).finish();
    const d = decodeClusterDescription(bytes);
    assert.deepEqual(d.rings, { frontend: ['10.0.0.1:7233', '10.0.0.2:7233'], history: ['10.0.0.3:7234'] });
    assert.deepEqual([d.serverVersion, d.historyShardCount, d.persistenceStore, d.answeredBy], ['1.32.2', 512, 'postgres12', '10.0.0.1:7233']);
  });
});
