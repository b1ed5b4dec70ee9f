/**
 * What a DR drill, and every runbook that must reach the current primary, needs from a database
 * cluster, whoever runs it: describe it, fault it, get a new primary, rejoin the old one. The `local`
 * driver runs PostgreSQL's own tools on the worker's host; the `patroni` driver talks to Patroni's
 * REST API and leaves the data directories to Patroni. The drill workflow never knows which one runs.
 */

export type DrillMode = 'failover' | 'switchover';

/** One PostgreSQL node as the driver sees it. */
export interface MemberState {
  name: string;
  host: string;
  port: number;
  role: 'primary' | 'replica' | 'down';
  /** Patroni's member state (running, starting, stopped, ...); the local driver says running or down. */
  state: string;
  timeline?: number;
  /** Primary: current WAL position; replica: last replayed position. */
  lsn?: string;
  /** Replicas: bytes behind the primary. */
  lagBytes?: number;
  /** Replicas: whether the primary streams WAL to it right now. */
  streaming?: boolean;
  /** Replicas: replay lag in milliseconds as the primary measures it. */
  replayLagMs?: number;
  /** Replicas: a synchronous standby (commits wait for it). */
  synchronous?: boolean;
  error?: string;
}

/** The settings that bound how long a failover takes and how much it may lose. */
export interface FailoverSettings {
  /** Leader lock TTL in seconds: a dead leader is noticed at most this long after its last renewal. */
  ttl?: number;
  loopWait?: number;
  retryTimeout?: number;
  /** Commits wait for a synchronous standby, so a failover to it loses no acknowledged commit. */
  synchronousMode: boolean;
  /** Bytes a replica may lag and still be promoted on failover. */
  maximumLagOnFailover?: number;
  failsafeMode?: boolean;
  usePgRewind?: boolean;
}

export interface ClusterState {
  driver: DriverKind;
  /** The member that leads (accepts writes), when exactly one does. */
  primary?: string;
  members: MemberState[];
  /** Why a drill must not start now, each naming the member or the part at fault; empty when healthy. */
  problems: string[];
  settings: FailoverSettings;
  /** The DCS as the members see it (patroni). */
  dcs?: { reachable: boolean; detail: string };
}

export type DriverKind = 'local' | 'patroni';

export interface Address {
  name: string;
  host: string;
  port: number;
}

/** Heartbeat details for a long driver call, shown by the CLI. */
export type Progress = (details: Record<string, unknown>) => void;

export interface FaultResult {
  /** False when the fault had already happened (a retried attempt): nothing was done twice. */
  acted: boolean;
  /** What was done, in the driver's words (command run, API call, its answer). */
  detail: Record<string, unknown>;
}

export interface NewPrimary extends Address {
  /** When a member other than the former primary was first seen holding the leadership. */
  detectedAt: string;
  /** When the new primary first committed a write. */
  writableAt: string;
  timeline?: number;
  detail: Record<string, unknown>;
}

export interface KeptDataDirectory {
  /** Where the old data directory is now (never deleted by a drill). */
  path: string;
  lastLsn?: string;
  timeline?: number;
}

export interface RejoinResult {
  method: 'pg_rewind' | 'base backup' | 'already a replica' | 'patroni rejoin' | 'patroni clone';
  streaming: boolean;
  /** When a rewind was impossible: where the old data directory was kept before a fresh copy was made. */
  keptAside?: KeptDataDirectory;
  detail?: Record<string, unknown>;
}

export interface TopologyDriver {
  readonly kind: DriverKind;
  /** Members, roles, lag, timelines, the DCS and the settings; never throws for an unhealthy cluster (problems says why). */
  describe(): Promise<ClusterState>;
  /** What the fault will do, in words an approver reads before approving (commands, API calls). */
  faultPlan(input: { member: string; candidate: string; mode: DrillMode }): string[];
  /**
   * failover: the member dies hard (processes killed, as if the machine died); switchover: the
   * leadership is handed over in order. Idempotent: a fault that already happened is not repeated.
   */
  injectFault(input: { member: string; candidate: string; mode: DrillMode; progress: Progress }): Promise<FaultResult>;
  /**
   * Waits until a member other than the former primary leads and commits a write. The local driver
   * fences the former primary and promotes the candidate itself; Patroni elects a leader on its own.
   */
  awaitNewPrimary(input: { formerPrimary: string; candidate: string; mode: DrillMode; timeoutMs: number; progress: Progress }): Promise<NewPrimary>;
  /** The LSN at which the given primary's timeline began (where it forked from the one before). */
  switchPoint(primary: string): Promise<string | undefined>;
  /** Makes the former primary a streaming replica of the primary; keeps its data directory aside when a rewind is impossible. */
  rejoin(input: { member: string; primary: string; keepAsideSuffix: string; progress: Progress }): Promise<RejoinResult>;
  /** A planned switchover from one member to another (switching back after a drill). Idempotent. */
  switchover(input: { from: string; to: string; progress: Progress }): Promise<{ switched: boolean; detail: Record<string, unknown> }>;
  /** Compensation: makes sure some member is a writable primary and returns it. */
  restoreWritablePrimary(input: { formerPrimary: string; progress: Progress }): Promise<Address & { action: string }>;
  /** Where the current primary is, for runbooks that must write to it (backups, restore tests, checks). */
  primaryAddress(): Promise<Address>;
}

/** PostgreSQL LSN text (X/Y, hex) as a number of bytes. */
export function lsnBytes(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

/** A number of bytes as PostgreSQL LSN text. */
export function lsnText(bytes: bigint | number): string {
  const b = BigInt(bytes);
  return `${(b >> 32n).toString(16).toUpperCase()}/${(b & 0xffffffffn).toString(16).toUpperCase()}`;
}
