/**
 * Clusters as the API returns them, and pure functions over them (unit-tested with jest).
 */
import { ProgramMode } from './model';

export type ClusterState = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed' | 'unknown';

export interface IWorker {
  id: string;
  host: string;
  port: number;
  state: string;
  cores: number;
  cores_used: number;
  cores_free: number;
  memory_mb: number;
  memory_used_mb: number;
  memory_free_mb: number;
}

export type ConnectState = 'stopped' | 'starting' | 'ready' | 'stopping' | 'failed' | 'external';

/** A cluster's warm path: its Spark Connect server and warm workers (`ClusterInfo.connect`). */
export interface IConnectInfo {
  available: boolean;
  reason?: string | null;
  default_mode: ProgramMode;
  state: ConnectState;
  address?: string | null;
  warm_ready: number;
  warm_starting: number;
  warm_running: number;
}

export interface IClusterInfo {
  id: string;
  name: string;
  kind: 'local' | 'standalone' | 'external';
  master_url: string;
  ui_url?: string | null;
  ui_proxy_path?: string | null;
  state: ClusterState;
  reason?: string | null;
  workers?: IWorker[];
  cores_total?: number | null;
  cores_used?: number | null;
  memory_total_mb?: number | null;
  memory_used_mb?: number | null;
  max_concurrent_jobs: number;
  running_jobs: number;
  queued_jobs: number;
  created_at?: string | null;
  spec?: { workers: number; cores_per_worker: number; memory_per_worker: string } | null;
  conf?: Record<string, string>;
  /** Null: Spark Connect is off on this server. */
  connect?: IConnectInfo | null;
}

export interface IClusterLimits {
  max_clusters?: number;
  max_workers?: number;
  max_cores_per_worker?: number;
  max_memory_per_worker?: string;
}

export interface IStandaloneRequest {
  name: string;
  kind: 'standalone';
  workers: number;
  cores_per_worker: number;
  memory_per_worker: string;
}

export interface IExternalRequest {
  name: string;
  kind: 'external';
  master_url: string;
  conf?: Record<string, string>;
}

/** Clusters in the order the panel and the picker show them: the default first, then by creation. */
export function sortClusters(clusters: Iterable<IClusterInfo>): IClusterInfo[] {
  return [...clusters].sort((a, b) => {
    if (a.kind === 'local' !== (b.kind === 'local')) {
      return a.kind === 'local' ? -1 : 1;
    }
    return (a.created_at ?? '').localeCompare(b.created_at ?? '') || a.name.localeCompare(b.name);
  });
}

/** The cluster map after a stream message (`cluster_update`, `cluster_deleted`); the same map if nothing changed. */
export function applyClusterMessage(
  clusters: Map<string, IClusterInfo>,
  type: string,
  data: any
): Map<string, IClusterInfo> {
  if (type === 'cluster_update' && data?.id) {
    const next = new Map(clusters);
    next.set(data.id, data as IClusterInfo);
    return next;
  }
  if (type === 'cluster_deleted' && data?.id && clusters.has(data.id)) {
    const next = new Map(clusters);
    next.delete(data.id);
    return next;
  }
  return clusters;
}

/** Whether jobs can be submitted to it now (a starting cluster queues them; a failed one refuses). */
export function acceptsJobs(cluster: IClusterInfo): boolean {
  return cluster.state === 'running' || cluster.state === 'starting' || cluster.state === 'unknown';
}

/** "2 workers · 3/4 cores · 1.0/2.0 GB" for a cluster with workers; '' without. */
export function capacitySummary(cluster: IClusterInfo, formatMb: (mb: number) => string): string {
  const workers = cluster.workers ?? [];
  if (!workers.length && (cluster.cores_total === null || cluster.cores_total === undefined)) {
    return '';
  }
  const parts = [`${workers.length} worker${workers.length === 1 ? '' : 's'}`];
  if (typeof cluster.cores_total === 'number') {
    parts.push(`${cluster.cores_used ?? 0}/${cluster.cores_total} cores`);
  }
  if (typeof cluster.memory_total_mb === 'number') {
    parts.push(`${formatMb(cluster.memory_used_mb ?? 0)}/${formatMb(cluster.memory_total_mb)}`);
  }
  return parts.join(' · ');
}

/**
 * The mode the submit form sends for a cluster: none where warm jobs cannot run there (the
 * server's default applies); else the one the user picked in this form, or warm: the sidebar
 * proposes the warm path wherever there is one (the API's default stays the server's, batch
 * unless configured, so scripts keep today's behaviour).
 */
export function formMode(connect: IConnectInfo | null | undefined, picked: ProgramMode | null): ProgramMode | undefined {
  if (!connect?.available) {
    return undefined;
  }
  return picked ?? 'connect';
}

/** The warm workers' non-zero counts, in the order ready, starting, running. */
function warmCounts(connect: IConnectInfo): [number, string][] {
  const counts: [number, string][] = [
    [connect.warm_ready, 'ready'],
    [connect.warm_starting, 'starting'],
    [connect.warm_running, 'running']
  ];
  return counts.filter(([count]) => count > 0);
}

/** "2 warm workers ready, 1 running" (the first count names the workers); '' when there are none. */
function warmWorkers(connect: IConnectInfo): string {
  return warmCounts(connect)
    .map(([count, what], index) =>
      index === 0 ? `${count} warm worker${count === 1 ? '' : 's'} ${what}` : `${count} ${what}`
    )
    .join(', ');
}

/** "Warm pool: 2 ready, 1 running"; '' when the pool is empty. */
function warmPool(connect: IConnectInfo): string {
  const counts = warmCounts(connect);
  return counts.length ? `Warm pool: ${counts.map(([count, what]) => `${count} ${what}`).join(', ')}` : '';
}

/** The warm path in a few words, beside the submit form's mode picker (a cluster where it is available). */
export function connectStatus(connect: IConnectInfo): string {
  switch (connect.state) {
    case 'ready':
      return warmPool(connect) || 'Connect server ready: a warm worker starts with the job';
    case 'external': {
      const server = `External Connect server${connect.address ? ` at ${connect.address}` : ''}`;
      const pool = warmPool(connect);
      return pool ? `${server} · ${pool}` : server;
    }
    case 'starting':
      return 'Connect server starting…';
    case 'stopping':
      return 'Connect server stopping…';
    case 'failed':
      return `Connect server failed: ${connect.reason || 'see the server log'}. A warm job tries again.`;
    case 'stopped':
    default:
      return 'Connect server stopped: the first warm job starts it (a cold start takes a while)';
  }
}

/** The cluster card's line: "Spark Connect: ready · 2 warm workers ready, 1 running". */
export function connectSummary(connect: IConnectInfo): string {
  if (!connect.available) {
    return `Spark Connect: not available${connect.reason ? ` (${connect.reason})` : ''}`;
  }
  const reason = connect.reason && connect.state !== 'ready' ? ` (${connect.reason})` : '';
  const workers = warmWorkers(connect);
  return `Spark Connect: ${connect.state}${reason}${workers ? ` · ${workers}` : ''}`;
}
