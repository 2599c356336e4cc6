import { IClusterInfo, acceptsJobs, applyClusterMessage, capacitySummary, sortClusters } from '../clusters_model';

function cluster(id: string, kind: IClusterInfo['kind'], created: string | null, state: IClusterInfo['state'] = 'running'): IClusterInfo {
  return {
    id, name: id, kind, master_url: 'local[*]', state, created_at: created,
    max_concurrent_jobs: 4, running_jobs: 0, queued_jobs: 0
  };
}

describe('clusters', () => {
  it('lists the default cluster first, then by creation', () => {
    const sorted = sortClusters([
      cluster('b', 'standalone', '2026-11-27T10:00:02Z'),
      cluster('a', 'external', '2026-11-27T10:00:01Z'),
      cluster('spark-cluster-default', 'local', null)
    ]);
    expect(sorted.map(c => c.id)).toEqual(['spark-cluster-default', 'a', 'b']);
  });

  it('applies updates and deletions, and leaves the map alone for anything else', () => {
    let clusters = applyClusterMessage(new Map(), 'cluster_update', cluster('a', 'standalone', null, 'starting'));
    clusters = applyClusterMessage(clusters, 'cluster_update', cluster('a', 'standalone', null, 'running'));
    expect(clusters.get('a')!.state).toBe('running');
    expect(applyClusterMessage(clusters, 'job_update', { id: 'a' })).toBe(clusters);
    expect(applyClusterMessage(clusters, 'cluster_deleted', { id: 'zzz' })).toBe(clusters);
    expect(applyClusterMessage(clusters, 'cluster_deleted', { id: 'a' }).size).toBe(0);
  });

  it('says which clusters take jobs', () => {
    expect(acceptsJobs(cluster('a', 'standalone', null, 'starting'))).toBe(true);
    expect(acceptsJobs(cluster('a', 'standalone', null, 'failed'))).toBe(false);
    expect(acceptsJobs(cluster('a', 'standalone', null, 'stopping'))).toBe(false);
  });

  it('sums up capacity', () => {
    const c = {
      ...cluster('a', 'standalone', null),
      workers: [
        { id: 'w1', host: '127.0.0.1', port: 1, state: 'ALIVE', cores: 2, cores_used: 1, cores_free: 1, memory_mb: 1024, memory_used_mb: 512, memory_free_mb: 512 },
        { id: 'w2', host: '127.0.0.1', port: 2, state: 'ALIVE', cores: 2, cores_used: 0, cores_free: 2, memory_mb: 1024, memory_used_mb: 0, memory_free_mb: 1024 }
      ],
      cores_total: 4, cores_used: 1, memory_total_mb: 2048, memory_used_mb: 512
    };
    expect(capacitySummary(c, mb => `${mb}M`)).toBe('2 workers · 1/4 cores · 512M/2048M');
    expect(capacitySummary({ ...cluster('d', 'local', null), workers: [], cores_total: null }, mb => `${mb}`)).toBe('');
  });
});
