/**
 * Clusters as the API returns them, and pure functions over them (unit-tested with jest).
 */

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
