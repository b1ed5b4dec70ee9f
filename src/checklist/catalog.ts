/**
 * The production checklist (docs/production-checklist.md) as data: every item with a stable id, its
 * section and subsection, a severity, and how it is proved. Pure data, imported by the readiness
 * audit workflow, the check activities, the CLI and the tests alike.
 *
 * Ids are stable: reports, attestations stored in S3 and dashboards refer to them. Never rename one;
 * test/unit/checklist.test.ts holds a snapshot of ids and fails when one changes or disappears.
 */

export type Severity = 'critical' | 'high' | 'normal';

/**
 * The automated checks: each is an activity of the same name (src/activities/checks/, one module
 * per system the checks read).
 */
export const CHECK_IDS = [
  'checkTemporalVersion',
  'checkTemporalPersistence',
  'checkTemporalVisibilityStore',
  'checkNamespaceArchival',
  'checkTemporalTls',
  'checkTemporalMtls',
  'checkTemporalCertificate',
  'checkTemporalTlsVersion',
  'checkTemporalClientAuth',
  'checkTemporalNamespace',
  'checkNamespaceRetention',
  'checkHistoryShards',
  'checkTemporalMembership',
  'checkTemporalDatabaseReplica',
  'checkQueueIsolation',
  'checkQueuePollers',
  'checkKubernetesReplicas',
  'checkKubernetesNetworkPolicies',
  'checkKubernetesCpuLimits',
  'checkKubernetesMemoryLimits',
  'checkKubernetesHpa',
  'checkKubernetesPdb',
  'checkKubernetesLivenessProbes',
  'checkKubernetesReadinessProbes',
  'checkKubernetesStartupProbes',
  'checkKubernetesSecretEnv',
  'checkPostgresConnections',
  'checkPostgresTimeouts',
  'checkRecentBackups',
  'checkDnsRecords',
  'checkRtoDefined',
  'checkRpoDefined',
  'checkPrometheusTargets',
  'checkPrometheusKeyMetrics',
  'checkPrometheusRetention',
  'checkAlertServiceDown',
  'checkAlertFailureRate',
  'checkAlertLatency',
  'checkAlertQueueBuildup',
  'checkAlertResources',
  'checkHistogramBuckets',
  'checkWorkerHealth',
  'checkRestoreTested',
] as const;
export type CheckId = (typeof CHECK_IDS)[number];

/**
 * What a run's result must show before it proves an item (judged on the result by the visibility
 * activity, src/activities/visibility.ts): a completed run alone proves only that it ran.
 */
export const RUN_REQUIREMENTS = {
  verifiedChange: 'that changed a Deployment (one of kubernetes.deployments, when listed) and was verified by its analysis',
  loadBaselineHeld: 'whose baseline phase held its SLAs (p99 start-to-complete, error rate, nothing lost)',
  loadPeakHeld: 'whose peak phase, at 2x the baseline rate or more, held its SLAs',
  loadFaultSurvived: 'whose failure phase lost and failed nothing under its fault, and whose fault was ended',
  loadRecovered: "whose backlog drained after the fault (within sla.drainWithin, when set) and whose recovery phase held its SLAs",
  loadPassed: 'that passed: every phase held its SLAs and the failure phase lost nothing',
} as const;
export type RunRequirement = keyof typeof RUN_REQUIREMENTS;

/**
 * How an item is proved:
 * - automated: every listed check passes (any failure fails the item; otherwise an unknown makes it unknown);
 * - runbook: a run of one of this project's runbooks completed within the window, found through
 *   Temporal visibility (`rpo`: the environment's RPO target, 26 hours when none is set), and with
 *   `requires` its result shows what the item asks (RUN_REQUIREMENTS);
 * - attested: a person on the environment's approver list vouches, valid for validForDays.
 */
export type Proof =
  | { kind: 'automated'; checks: CheckId[] }
  | { kind: 'runbook'; runbook: string; within: { days: number } | 'rpo'; requires?: RunRequirement }
  | { kind: 'attested'; validForDays: number };

export interface ChecklistItem {
  id: string;
  section: string;
  subsection: string;
  /** The bold words of the checklist line. */
  title: string;
  /** The rest of the line, after the colon. */
  text: string;
  severity: Severity;
  proof: Proof;
}

export type ItemStatus = 'pass' | 'fail' | 'attested' | 'unknown';
export type CheckStatus = 'pass' | 'fail' | 'unknown';

/** What one automated check found. Evidence is a small JSON object: no secrets, no large blobs. */
export interface CheckResult {
  check: CheckId;
  status: CheckStatus;
  summary: string;
  evidence: Record<string, unknown>;
  durationMs: number;
}

/** Options every check activity takes. */
export interface CheckInput {
  /** Each check gives up after this long and reports unknown (default 10 s). */
  timeoutMs?: number;
  /** A serving certificate that expires within this many days fails (default 30). */
  certificateMinDays?: number;
}

/** Without an RPO target, "within the RPO window" means this: a nightly job plus slack. */
export const DEFAULT_RPO_WINDOW_MS = 26 * 3_600_000;

const auto = (...checks: CheckId[]): Proof => ({ kind: 'automated', checks });
const runbook = (name: string, within: { days: number } | 'rpo', requires?: RunRequirement): Proof => ({ kind: 'runbook', runbook: name, within, ...(requires ? { requires } : {}) });
const attested = (validForDays = 90): Proof => ({ kind: 'attested', validForDays });

type Row = [id: string, title: string, text: string, severity: Severity, proof: Proof];
interface Block {
  section: string;
  subsection: string;
  rows: Row[];
}

const BLOCKS: Block[] = [
  {
    section: 'Infrastructure Prerequisites',
    subsection: 'Temporal Cluster',
    rows: [
      ['temporal-version', 'Temporal version', 'Using supported version (1.20+ recommended)', 'critical', auto('checkTemporalVersion')],
      ['deployment-method', 'Deployment method', 'Kubernetes Helm, Docker Compose, or Temporal Cloud', 'normal', attested(365)],
      ['high-availability', 'High availability', 'Multiple frontend, history, matching, and worker services', 'high', auto('checkTemporalMembership')],
      ['load-balancer', 'Load balancer', 'For frontend service access', 'high', attested(365)],
    ],
  },
  {
    section: 'Infrastructure Prerequisites',
    subsection: 'Dependencies',
    rows: [
      ['persistence-database', 'Database', 'PostgreSQL 13+ or MySQL 8+ (production) or Cassandra', 'critical', auto('checkTemporalPersistence')],
      ['visibility-elasticsearch', 'Elasticsearch', '7.x or 8.x for visibility (recommended)', 'normal', auto('checkTemporalVisibilityStore')],
      ['archival-object-storage', 'Object storage', 'S3/GCS for archival (optional)', 'normal', auto('checkNamespaceArchival')],
    ],
  },
  {
    section: 'Infrastructure Prerequisites',
    subsection: 'Networking',
    rows: [
      ['tls-enabled', 'TLS enabled', 'All internal and external communication', 'critical', auto('checkTemporalTls')],
      ['mtls-configured', 'mTLS configured', 'Client certificate authentication', 'critical', auto('checkTemporalMtls')],
      ['network-policies', 'Network policies', 'Restrict traffic between components', 'high', auto('checkKubernetesNetworkPolicies')],
      ['dns-configured', 'DNS configured', 'Stable hostnames for services', 'normal', auto('checkDnsRecords')],
    ],
  },
  {
    section: 'Cluster Configuration',
    subsection: 'Database Setup',
    rows: [
      ['db-connection-pooling', 'Connection pooling', 'Appropriate pool sizes', 'normal', auto('checkPostgresConnections')],
      ['db-connection-timeouts', 'Connection timeouts', 'Reasonable values', 'normal', auto('checkPostgresTimeouts')],
      ['db-read-replicas', 'Read replicas', 'For visibility queries (if using SQL)', 'normal', auto('checkTemporalDatabaseReplica')],
      ['backup-strategy', 'Backup strategy', 'Regular automated backups', 'critical', auto('checkRecentBackups')],
    ],
  },
  {
    section: 'Cluster Configuration',
    subsection: 'Namespace Configuration',
    rows: [
      ['namespaces-created', 'Namespaces created', 'Separate for prod, staging, dev', 'high', auto('checkTemporalNamespace')],
      ['namespace-retention', 'Retention period', 'Based on compliance requirements (7-90 days)', 'high', auto('checkNamespaceRetention')],
      ['global-namespace', 'Global namespace', 'If multi-region (advanced)', 'normal', attested(365)],
    ],
  },
  {
    section: 'Cluster Configuration',
    subsection: 'Resource Limits',
    rows: [
      ['cpu-limits', 'CPU limits', 'Based on expected load', 'high', auto('checkKubernetesCpuLimits')],
      ['memory-limits', 'Memory limits', 'History service needs more', 'high', auto('checkKubernetesMemoryLimits')],
      ['hpa-configured', 'HPA configured', 'Auto-scaling for frontend/matching', 'normal', auto('checkKubernetesHpa')],
      ['pdb-configured', 'PDB configured', 'Pod disruption budgets', 'high', auto('checkKubernetesPdb')],
    ],
  },
  {
    section: 'Worker Deployment',
    subsection: 'Worker Configuration',
    rows: [
      ['worker-concurrency-limits', 'Concurrency limits', 'Based on load testing', 'normal', runbook('loadTest', { days: 180 }, 'loadPeakHeld')],
      ['worker-replicas', 'Multiple replicas', 'At least 2 for HA', 'critical', auto('checkKubernetesReplicas')],
      ['worker-sticky-cache', 'Sticky cache sized', 'Memory-appropriate', 'normal', attested()],
      ['worker-graceful-shutdown', 'Graceful shutdown', 'Configured and tested', 'high', attested()],
    ],
  },
  {
    section: 'Worker Deployment',
    subsection: 'Health Checks',
    rows: [
      ['liveness-probe', 'Liveness probe', 'Worker process alive', 'high', auto('checkKubernetesLivenessProbes')],
      ['readiness-probe', 'Readiness probe', 'Connected to Temporal', 'high', auto('checkKubernetesReadinessProbes', 'checkWorkerHealth')],
      ['startup-probe', 'Startup probe', 'For slow-starting workers', 'normal', auto('checkKubernetesStartupProbes')],
    ],
  },
  {
    section: 'Worker Deployment',
    subsection: 'Task Queue Strategy',
    rows: [
      ['queue-isolation', 'Queue isolation', 'Separate queues for different SLAs', 'normal', auto('checkQueueIsolation')],
      ['worker-assignment', 'Worker assignment', 'Right workers for right queues', 'high', auto('checkQueuePollers')],
      ['pollers-configured', 'Pollers configured', 'Appropriate number per worker', 'normal', auto('checkQueuePollers')],
    ],
  },
  {
    section: 'Security Configuration',
    subsection: 'TLS Setup',
    rows: [
      ['tls-certificates', 'TLS certificates', 'Valid and not expiring soon', 'critical', auto('checkTemporalCertificate')],
      ['certificate-rotation', 'Certificate rotation', 'Automated renewal', 'high', attested()],
      ['mtls-enforced', 'mTLS enforced', 'Client authentication required', 'critical', auto('checkTemporalMtls')],
      ['min-tls-version', 'Minimum TLS version', '1.2 or higher', 'critical', auto('checkTemporalTlsVersion')],
    ],
  },
  {
    section: 'Security Configuration',
    subsection: 'Authentication & Authorization',
    rows: [
      ['client-auth', 'Client auth', 'mTLS or API keys', 'critical', auto('checkTemporalClientAuth')],
      ['namespace-access-rbac', 'Namespace access', 'RBAC configured', 'high', attested()],
      ['admin-access', 'Admin access', 'Limited to operators', 'high', attested()],
      ['audit-logging', 'Audit logging', 'All admin operations logged', 'normal', attested()],
    ],
  },
  {
    section: 'Security Configuration',
    subsection: 'Secrets Management',
    rows: [
      ['no-hardcoded-secrets', 'No hardcoded secrets', 'Use env vars or secret stores', 'critical', auto('checkKubernetesSecretEnv')],
      ['secret-rotation', 'Secret rotation', 'Automated where possible', 'normal', attested()],
      ['database-credentials-vault', 'Database credentials', 'In secure vault', 'high', attested()],
      ['api-keys-scoped', 'API keys', 'Properly scoped and rotated', 'normal', attested()],
    ],
  },
  {
    section: 'Monitoring Setup',
    subsection: 'Metrics (Prometheus)',
    rows: [
      ['prometheus-configured', 'Prometheus configured', 'Scraping all components', 'high', auto('checkPrometheusTargets')],
      ['key-metrics', 'Key metrics identified', 'Workflows, activities, persistence', 'normal', auto('checkPrometheusKeyMetrics')],
      ['histogram-buckets', 'Histogram buckets', 'Appropriate for latency tracking', 'normal', auto('checkHistogramBuckets')],
      ['metrics-retention', 'Retention period', 'Long enough for trending', 'normal', auto('checkPrometheusRetention')],
    ],
  },
  {
    section: 'Monitoring Setup',
    subsection: 'Dashboards',
    rows: [
      ['dashboard-cluster-overview', 'Cluster overview', 'Health of all components', 'normal', attested()],
      ['dashboard-workflow-metrics', 'Workflow metrics', 'Started, completed, failed by type', 'normal', attested()],
      ['dashboard-activity-metrics', 'Activity metrics', 'Duration, failures, retries', 'normal', attested()],
      ['dashboard-queue-depth', 'Queue depth', 'Pending tasks per queue', 'normal', attested()],
      ['dashboard-latency', 'Latency', 'Schedule-to-start, execution times', 'normal', attested()],
    ],
  },
  {
    section: 'Monitoring Setup',
    subsection: 'Alerting Rules',
    rows: [
      ['alert-service-down', 'Service down alerts', 'All components', 'high', auto('checkAlertServiceDown')],
      ['alert-failure-rate', 'High failure rate', 'By workflow type', 'high', auto('checkAlertFailureRate')],
      ['alert-latency', 'Latency alerts', 'Schedule-to-start > threshold', 'normal', auto('checkAlertLatency')],
      ['alert-queue-buildup', 'Queue buildup', 'Tasks pending too long', 'normal', auto('checkAlertQueueBuildup')],
      ['alert-resources', 'Resource alerts', 'CPU, memory, disk', 'normal', auto('checkAlertResources')],
    ],
  },
  {
    section: 'Monitoring Setup',
    subsection: 'Logging',
    rows: [
      ['structured-logs', 'Structured logs', 'JSON format', 'normal', attested()],
      ['correlation-ids', 'Correlation IDs', 'Workflow ID, run ID', 'normal', attested()],
      ['log-aggregation', 'Log aggregation', 'Centralized logging', 'normal', attested()],
      ['log-retention', 'Log retention', 'Based on compliance', 'normal', attested()],
    ],
  },
  {
    section: 'Disaster Recovery',
    subsection: 'Backup Strategy',
    rows: [
      ['database-backups', 'Database backups', 'Regular, tested restores', 'critical', auto('checkRecentBackups', 'checkRestoreTested')],
      ['configuration-backups', 'Configuration backups', 'Namespace configs, schemas', 'normal', runbook('verifyTemporalConfig', { days: 7 })],
      ['cross-region-replication', 'Cross-region replication', 'For critical deployments', 'normal', attested(365)],
      ['backup-verification', 'Backup verification', 'Regular restore tests', 'critical', runbook('verifyBackup', 'rpo')],
    ],
  },
  {
    section: 'Disaster Recovery',
    subsection: 'Recovery Procedures',
    rows: [
      ['recovery-runbook', 'Runbook created', 'Step-by-step recovery', 'high', runbook('drDrill', { days: 180 })],
      ['rto-defined', 'RTO defined', 'Recovery time objective', 'high', auto('checkRtoDefined')],
      ['rpo-defined', 'RPO defined', 'Recovery point objective', 'high', auto('checkRpoDefined')],
      ['dr-drills-quarterly', 'Tested quarterly', 'DR drills performed', 'critical', runbook('drDrill', { days: 92 })],
    ],
  },
  {
    section: 'Disaster Recovery',
    subsection: 'Failover',
    rows: [
      ['multi-az', 'Multi-AZ deployment', 'For cloud deployments', 'normal', attested(365)],
      ['database-failover', 'Database failover', 'Automated promotion', 'high', runbook('drDrill', { days: 92 })],
      ['dns-failover', 'DNS failover', 'For client connectivity', 'high', runbook('drDrill', { days: 92 })],
      ['failover-drills', 'Tested regularly', 'Failover drills', 'high', runbook('drDrill', { days: 92 })],
    ],
  },
  {
    section: 'Performance Tuning',
    subsection: 'Cluster Tuning',
    rows: [
      ['history-shards', 'History shards', 'Sized for expected load (512-2048)', 'high', auto('checkHistoryShards')],
      ['task-queue-partitions', 'Task queue partitions', 'Based on throughput needs', 'normal', attested()],
      ['cluster-cache-settings', 'Cache settings', 'Tuned for memory', 'normal', attested()],
      ['cluster-connection-pools', 'Connection pools', 'Sized appropriately', 'normal', attested()],
    ],
  },
  {
    section: 'Performance Tuning',
    subsection: 'Worker Tuning',
    rows: [
      ['poller-count', 'Poller count', 'Based on task queue load', 'normal', attested()],
      ['concurrency-tested', 'Concurrency limits', 'Tested under load', 'normal', runbook('loadTest', { days: 180 }, 'loadPeakHeld')],
      ['sticky-cache-tradeoff', 'Sticky cache', 'Memory vs. performance tradeoff', 'normal', attested()],
      ['activity-timeouts', 'Activity timeouts', 'Based on actual performance', 'normal', attested()],
    ],
  },
  {
    section: 'Performance Tuning',
    subsection: 'Load Testing',
    rows: [
      ['load-baseline', 'Baseline established', 'Normal load metrics', 'normal', runbook('loadTest', { days: 180 }, 'loadBaselineHeld')],
      ['peak-load-tested', 'Peak load tested', '2-3x normal', 'high', runbook('loadTest', { days: 180 }, 'loadPeakHeld')],
      ['stress-failure-tested', 'Failure tested', 'Behavior under stress', 'normal', runbook('loadTest', { days: 180 }, 'loadFaultSurvived')],
      ['overload-recovery-tested', 'Recovery tested', 'After overload', 'normal', runbook('loadTest', { days: 180 }, 'loadRecovered')],
    ],
  },
  {
    section: 'Pre-Go-Live',
    subsection: 'Verification',
    rows: [
      ['smoke-tests', 'Smoke tests passed', 'Basic workflow execution', 'critical', runbook('smokeTest', { days: 7 })],
      ['integration-tests', 'Integration tests passed', 'End-to-end flows', 'high', attested(30)],
      ['performance-validated', 'Performance validated', 'Meets SLAs', 'high', runbook('loadTest', { days: 90 }, 'loadPassed')],
      ['security-audit', 'Security audit', 'Passed review', 'high', attested(365)],
    ],
  },
  {
    section: 'Pre-Go-Live',
    subsection: 'Documentation',
    rows: [
      ['architecture-documented', 'Architecture documented', 'Diagrams and descriptions', 'normal', attested(180)],
      ['runbooks-created', 'Runbooks created', 'Operational procedures', 'normal', attested(180)],
      ['troubleshooting-guide', 'Troubleshooting guide', 'Common issues and fixes', 'normal', attested(180)],
      ['on-call-rotation', 'On-call rotation', 'Defined and staffed', 'critical', attested(30)],
    ],
  },
  {
    section: 'Pre-Go-Live',
    subsection: 'Rollback Plan',
    rows: [
      ['rollback-procedure', 'Rollback procedure', 'Documented steps', 'high', attested(180)],
      ['rollback-tested', 'Rollback tested', 'Verified works', 'critical', runbook('rollback', { days: 90 }, 'verifiedChange')],
      ['rollback-criteria', 'Rollback criteria', 'When to trigger', 'high', attested(180)],
      ['communication-plan', 'Communication plan', 'Stakeholder notification', 'high', attested(180)],
    ],
  },
  {
    section: 'Post-Deployment',
    subsection: 'First Week Monitoring',
    rows: [
      ['monitoring-24x7', '24/7 monitoring', 'Close observation', 'normal', attested(7)],
      ['daily-review', 'Daily review', 'Metrics and logs', 'normal', attested(7)],
      ['issue-tracking', 'Issue tracking', 'Document any problems', 'normal', attested(30)],
      ['tuning-adjustments', 'Tuning adjustments', 'Based on observations', 'normal', attested(30)],
    ],
  },
  {
    section: 'Post-Deployment',
    subsection: 'Ongoing Operations',
    rows: [
      ['weekly-metrics-review', 'Weekly metrics review', 'Trends and anomalies', 'normal', attested(14)],
      ['capacity-planning', 'Monthly capacity planning', 'Growth projections', 'normal', attested(45)],
      ['quarterly-dr-drill', 'Quarterly DR drill', 'Test recovery', 'high', runbook('drDrill', { days: 92 })],
      ['upgrade-planning', 'Upgrade planning', 'Track new versions', 'normal', attested(90)],
    ],
  },
];

export const CHECKLIST: readonly ChecklistItem[] = BLOCKS.flatMap((b) =>
  b.rows.map(([id, title, text, severity, proof]) => ({ id, section: b.section, subsection: b.subsection, title, text, severity, proof })),
);

/** The checklist's sections, in its order. */
export const SECTIONS: readonly string[] = [...new Set(CHECKLIST.map((i) => i.section))];

export function checklistItem(id: string): ChecklistItem | undefined {
  return CHECKLIST.find((i) => i.id === id);
}

/** The runs the catalog asks for, each (runbook, requirement) pair once, in catalog order; the key names the pair. */
export function runProofsInUse(): { key: string; runbook: string; requires?: RunRequirement }[] {
  const seen = new Map<string, { key: string; runbook: string; requires?: RunRequirement }>();
  for (const i of CHECKLIST) {
    if (i.proof.kind !== 'runbook') continue;
    const key = runProofKey(i.proof);
    if (!seen.has(key)) seen.set(key, { key, runbook: i.proof.runbook, ...(i.proof.requires ? { requires: i.proof.requires } : {}) });
  }
  return [...seen.values()];
}

/** A runbook proof's key: the runbook, and its requirement after a colon. */
export function runProofKey(p: { runbook: string; requires?: RunRequirement }): string {
  return p.requires ? `${p.runbook}:${p.requires}` : p.runbook;
}

/** The automated checks the catalog uses, each once, in catalog order. */
export function checksInUse(): CheckId[] {
  return [...new Set(CHECKLIST.flatMap((i) => (i.proof.kind === 'automated' ? i.proof.checks : [])))];
}

/** An item's status from its checks: any failure fails it; it passes only when all pass. */
export function combineChecks(results: (CheckResult | undefined)[]): CheckStatus {
  if (results.some((r) => r?.status === 'fail')) return 'fail';
  if (results.length > 0 && results.every((r) => r?.status === 'pass')) return 'pass';
  return 'unknown';
}
