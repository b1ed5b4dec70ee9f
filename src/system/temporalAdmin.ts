/**
 * Temporal's admin API where the SDK has no client for it: DescribeCluster, which reports the server's
 * settings (version, shards, persistence and visibility stores) and its membership (the hosts of each
 * role that the cluster's gossip ring sees). Used by the readiness audit and by the sandbox to tell a
 * cluster is whole. The messages are decoded with the few fields read here; others are skipped.
 */
import { Connection, ConnectionOptions } from '@temporalio/client';
import { parse } from 'protobufjs';

const root = parse(`
syntax = "proto3";
message HostInfo { string identity = 1; }
message RingInfo { string role = 1; int32 member_count = 2; repeated HostInfo members = 3; }
message MembershipInfo { HostInfo current_host = 1; repeated string reachable_members = 2; repeated RingInfo rings = 3; }
message DescribeClusterResponse {
  string server_version = 2;
  MembershipInfo membership_info = 3;
  string cluster_id = 4;
  string cluster_name = 5;
  int32 history_shard_count = 6;
  string persistence_store = 7;
  string visibility_store = 8;
}
`).root;
const DescribeClusterResponse = root.lookupType('DescribeClusterResponse');

export interface ClusterDescription {
  serverVersion: string;
  clusterId: string;
  clusterName: string;
  historyShardCount: number;
  persistenceStore: string;
  visibilityStore: string;
  /** The host that answered (a frontend), as host:port. */
  answeredBy: string;
  /** Hosts per role as the membership ring sees them: role -> host:port of each member's gRPC endpoint. */
  rings: Record<string, string[]>;
}

/** A Connection that can also call the admin service, over the same channel and credentials. */
export class TemporalAdminConnection extends Connection {
  static async open(options: ConnectionOptions): Promise<TemporalAdminConnection> {
    // Connection.connect constructs `this`, so the instance is of this class.
    return (await TemporalAdminConnection.connect(options)) as TemporalAdminConnection;
  }

  describeCluster(timeoutMs = 10_000): Promise<ClusterDescription> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        '/temporal.server.api.adminservice.v1.AdminService/DescribeCluster',
        (arg: Buffer) => arg,
        (bytes: Buffer) => bytes,
        // An empty DescribeClusterRequest: the cluster that answers.
        Buffer.alloc(0),
        { deadline: Date.now() + timeoutMs },
        (err, bytes) => {
          if (err || !bytes) return reject(err ?? new Error('DescribeCluster: empty answer'));
          try {
            resolve(decodeClusterDescription(bytes));
          } catch (e) {
            reject(e);
          }
        },
      );
    });
  }
}

interface RawDescription {
  serverVersion?: string;
  clusterId?: string;
  clusterName?: string;
  historyShardCount?: number;
  persistenceStore?: string;
  visibilityStore?: string;
  membershipInfo?: { currentHost?: { identity?: string }; rings?: { role?: string; members?: { identity?: string }[] }[] };
}

export function decodeClusterDescription(bytes: Uint8Array): ClusterDescription {
  const raw = DescribeClusterResponse.toObject(DescribeClusterResponse.decode(bytes), { defaults: true }) as RawDescription;
  const rings: Record<string, string[]> = {};
  for (const ring of raw.membershipInfo?.rings ?? []) {
    if (!ring.role) continue;
    rings[ring.role] = (ring.members ?? []).map((m) => m.identity ?? '').filter(Boolean).sort();
  }
  return {
    serverVersion: raw.serverVersion ?? '',
    clusterId: raw.clusterId ?? '',
    clusterName: raw.clusterName ?? '',
    historyShardCount: raw.historyShardCount ?? 0,
    persistenceStore: raw.persistenceStore ?? '',
    visibilityStore: raw.visibilityStore ?? '',
    answeredBy: raw.membershipInfo?.currentHost?.identity ?? '',
    rings,
  };
}

const ClusterMetadata = parse(`
syntax = "proto3";
message ClusterMetadata { string cluster_name = 1; int32 history_shard_count = 2; string cluster_id = 3; }
`).root.lookupType('ClusterMetadata');

/** The cluster identity stored in the persistence database (cluster_metadata_info.data, encoding Proto3). */
export function decodeClusterMetadata(bytes: Uint8Array): { clusterName: string; historyShardCount: number; clusterId: string } {
  const m = ClusterMetadata.toObject(ClusterMetadata.decode(bytes), { defaults: true }) as { clusterName: string; historyShardCount: number; clusterId: string };
  return { clusterName: m.clusterName, historyShardCount: m.historyShardCount, clusterId: m.clusterId };
}
