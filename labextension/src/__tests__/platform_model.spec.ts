import {
  EMPTY_WINDOW,
  IMetricsHistory,
  IServiceStatus,
  appendSample,
  applyServiceStatus,
  formatBytes,
  formatRate,
  trendBars,
  windowFromHistory
} from '../platform_model';

const HISTORY: IMetricsHistory = {
  minutes: 15,
  step: 10,
  interval: 2,
  timestamps: [100, 110, 120],
  series: {
    cpu_percent: { avg: [10, 20, 30], min: [5, 15, 25], max: [15, 25, 35] },
    memory_percent: { avg: [40, 41, null] }
  }
};

describe('windowFromHistory', () => {
  it('takes the named series with their bands, and fills a series the server lacks with gaps', () => {
    const window = windowFromHistory(HISTORY, ['cpu_percent', 'memory_percent', 'net_rx_bps']);
    expect(window.timestamps).toEqual([100, 110, 120]);
    expect(window.series.cpu_percent).toEqual([10, 20, 30]);
    expect(window.min.cpu_percent).toEqual([5, 15, 25]);
    expect(window.max.memory_percent).toEqual([null, null, null]);
    expect(window.series.net_rx_bps).toEqual([null, null, null]);
  });
});

describe('appendSample', () => {
  it('appends a newer sample and slides the window', () => {
    const window = windowFromHistory(HISTORY, ['cpu_percent']);
    const next = appendSample(window, 125, { cpu_percent: 50 }, 20);
    expect(next.timestamps).toEqual([110, 120, 125]);
    expect(next.series.cpu_percent).toEqual([20, 30, 50]);
    expect(next.min.cpu_percent).toEqual([15, 25, null]);
    expect(window.timestamps).toEqual([100, 110, 120]); // the old window is left as it was
  });

  it('ignores a sample that is not newer than the last point (sent again after a resume)', () => {
    const window = windowFromHistory(HISTORY, ['cpu_percent']);
    expect(appendSample(window, 120, { cpu_percent: 99 }, 60)).toBe(window);
    expect(appendSample(window, 90, { cpu_percent: 99 }, 60)).toBe(window);
  });

  it('starts from an empty window and keeps series aligned', () => {
    let window = appendSample(EMPTY_WINDOW, 1, { a: 1 }, 60);
    window = appendSample(window, 2, { a: 2, b: 5 }, 60);
    expect(window.series.a).toEqual([1, 2]);
    expect(window.series.b).toEqual([null, 5]);
  });
});

describe('services', () => {
  const service = (name: string, status: IServiceStatus['status']): IServiceStatus => ({ name, kind: 'x', status });

  it('replaces a service by name and keeps unhealthy ones first', () => {
    let services = [service('airflow', 'healthy'), service('minio', 'healthy'), service('postgresql', 'disabled')];
    services = applyServiceStatus(services, service('minio', 'unhealthy'));
    expect(services.map(s => `${s.name}:${s.status}`)).toEqual([
      'minio:unhealthy',
      'airflow:healthy',
      'postgresql:disabled'
    ]);
  });
});

describe('formatting', () => {
  it('formats bytes and rates in binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KB');
    expect(formatBytes(24 * 1024 ** 3)).toBe('24.0 GB');
    expect(formatBytes(null)).toBe('–');
    expect(formatRate(2048)).toBe('2.0 KB/s');
  });

  it('puts trend days at local noon', () => {
    const bars = trendBars([
      { date: '2026-11-26', succeeded: 2, failed: 1 },
      { date: '2026-11-27', succeeded: 0, failed: 0 }
    ]);
    expect(bars.timestamps[1] - bars.timestamps[0]).toBe(86400);
    expect(new Date(bars.timestamps[0] * 1000).getHours()).toBe(12);
    expect(bars.succeeded).toEqual([2, 0]);
  });
});
