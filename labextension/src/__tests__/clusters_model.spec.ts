import {
  IClusterInfo, IConnectInfo, acceptsJobs, applyClusterMessage, capacitySummary, connectStatus, connectSummary, formMode,
  sortClusters
} from '../clusters_model';

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

function connect(fields: Partial<IConnectInfo> = {}): IConnectInfo {
  return {
    available: true, reason: null, default_mode: 'connect', state: 'stopped', address: null,
    warm_ready: 0, warm_starting: 0, warm_running: 0, ...fields
  };
}

describe('the submit form\'s mode', () => {
  it('sends none where warm jobs cannot run', () => {
    expect(formMode(null, null)).toBeUndefined();
    expect(formMode(undefined, 'connect')).toBeUndefined();
    expect(formMode(connect({ available: false, default_mode: 'batch' }), 'connect')).toBeUndefined();
  });

  it('proposes warm where the cluster has the warm path, until the user picks a mode', () => {
    expect(formMode(connect({ default_mode: 'connect' }), null)).toBe('connect');
    expect(formMode(connect({ default_mode: 'batch' }), null)).toBe('connect');
    expect(formMode(connect({ default_mode: 'connect' }), 'batch')).toBe('batch');
    expect(formMode(connect({ default_mode: 'batch' }), 'connect')).toBe('connect');
  });
});

describe('the warm path in words', () => {
  it('says what a warm job will find, beside the mode picker', () => {
    expect(connectStatus(connect({ state: 'ready', warm_ready: 2 }))).toBe('Warm pool: 2 ready');
    expect(connectStatus(connect({ state: 'ready', warm_ready: 1, warm_starting: 1, warm_running: 3 })))
      .toBe('Warm pool: 1 ready, 1 starting, 3 running');
    expect(connectStatus(connect({ state: 'ready' }))).toBe('Connect server ready: a warm worker starts with the job');
    expect(connectStatus(connect({ state: 'starting' }))).toBe('Connect server starting…');
    expect(connectStatus(connect({ state: 'stopping' }))).toBe('Connect server stopping…');
    expect(connectStatus(connect({ state: 'stopped', reason: 'idle' })))
      .toBe('Connect server stopped: the first warm job starts it (a cold start takes a while)');
    expect(connectStatus(connect({ state: 'failed', reason: 'port in use' })))
      .toBe('Connect server failed: port in use. A warm job tries again.');
    expect(connectStatus(connect({ state: 'external', address: 'sc://h:15002', warm_ready: 2 })))
      .toBe('External Connect server at sc://h:15002 · Warm pool: 2 ready');
  });

  it('sums it up on the cluster card', () => {
    expect(connectSummary(connect({ state: 'ready', warm_ready: 2, warm_running: 1 })))
      .toBe('Spark Connect: ready · 2 warm workers ready, 1 running');
    expect(connectSummary(connect({ state: 'ready', warm_starting: 1 })))
      .toBe('Spark Connect: ready · 1 warm worker starting');
    expect(connectSummary(connect({ state: 'stopped', reason: 'idle for 600 s' })))
      .toBe('Spark Connect: stopped (idle for 600 s)');
    expect(connectSummary(connect({ state: 'failed', reason: 'it did not start within 60 s' })))
      .toBe('Spark Connect: failed (it did not start within 60 s)');
    expect(connectSummary(connect({ available: false, reason: 'a yarn master', default_mode: 'batch' })))
      .toBe('Spark Connect: not available (a yarn master)');
    expect(connectSummary(connect({ available: false }))).toBe('Spark Connect: not available');
  });
});
