/**
 * Monitoring and dashboard data as the API returns it, and pure functions over it (unit-tested
 * with jest): the charts' sliding windows, service updates, formatting.
 */

/** `GET /monitoring/metrics/history`: one timestamp array, per series avg (and min/max when downsampled). */
export interface IMetricsHistory {
  minutes: number;
  step: number;
  interval: number;
  timestamps: number[];
  series: Record<string, { avg: (number | null)[]; min?: (number | null)[]; max?: (number | null)[] }>;
}

export type ServiceHealth = 'healthy' | 'unhealthy' | 'disabled';

export interface IServiceStatus {
  name: string;
  kind: string;
  status: ServiceHealth;
  latency_ms?: number | null;
  version?: string | null;
  reason?: string | null;
  details?: Record<string, unknown>;
  checked_at?: string;
}

export interface IDashboardStats {
  total_jobs: number;
  jobs_by_state: Record<string, number>;
  finished_jobs: number;
  success_rate: number | null;
  mean_duration: number | null;
  p95_duration: number | null;
  active_clusters: number;
  known_clusters: number;
  notebooks: number;
  notebooks_truncated: boolean;
}

export interface ITrendPoint {
  date: string;
  succeeded: number;
  failed: number;
}

export interface IDashboardOverview {
  stats: IDashboardStats;
  trends: { days: number; tz?: string | null; points: ITrendPoint[] };
  [key: string]: unknown;
}

/** What the charts show: series of numbers over one time axis, oldest first. */
export interface IWindow {
  timestamps: number[];
  series: Record<string, (number | null)[]>;
  /** Range bands of downsampled history, aligned with the timestamps (null for live points). */
  min: Record<string, (number | null)[]>;
  max: Record<string, (number | null)[]>;
}

export const EMPTY_WINDOW: IWindow = { timestamps: [], series: {}, min: {}, max: {} };

/** The history as a window of the named series. */
export function windowFromHistory(history: IMetricsHistory, names: string[]): IWindow {
  const window: IWindow = { timestamps: history.timestamps.slice(), series: {}, min: {}, max: {} };
  const n = history.timestamps.length;
  for (const name of names) {
    const s = history.series[name];
    window.series[name] = s ? s.avg.slice() : new Array(n).fill(null);
    window.min[name] = s?.min ? s.min.slice() : new Array(n).fill(null);
    window.max[name] = s?.max ? s.max.slice() : new Array(n).fill(null);
  }
  return window;
}

/**
 * One live sample appended; points older than `keepSeconds` before it dropped. A sample not
 * newer than the last point (sent again after a resume, or older than the history) changes nothing.
 */
export function appendSample(
  window: IWindow,
  timestamp: number,
  values: Record<string, number | null>,
  keepSeconds: number
): IWindow {
  const last = window.timestamps.length ? window.timestamps[window.timestamps.length - 1] : -Infinity;
  if (!(timestamp > last)) {
    return window;
  }
  let start = 0;
  while (start < window.timestamps.length && window.timestamps[start] < timestamp - keepSeconds) {
    start += 1;
  }
  const next: IWindow = { timestamps: [...window.timestamps.slice(start), timestamp], series: {}, min: {}, max: {} };
  const names = new Set([...Object.keys(window.series), ...Object.keys(values)]);
  const length = window.timestamps.length;
  for (const name of names) {
    const take = (arrays: Record<string, (number | null)[]>, value: number | null) => [
      ...(arrays[name] ?? new Array(length).fill(null)).slice(start),
      value
    ];
    next.series[name] = take(window.series, values[name] ?? null);
    next.min[name] = take(window.min, null);
    next.max[name] = take(window.max, null);
  }
  return next;
}

/** A service's new status in the list (sorted: unhealthy first, then by name). */
export function applyServiceStatus(services: IServiceStatus[], status: IServiceStatus): IServiceStatus[] {
  return sortServices([...services.filter(s => s.name !== status.name), status]);
}

const HEALTH_ORDER: Record<string, number> = { unhealthy: 0, healthy: 1, disabled: 2 };

export function sortServices(services: IServiceStatus[]): IServiceStatus[] {
  return services
    .slice()
    .sort((a, b) => (HEALTH_ORDER[a.status] ?? 3) - (HEALTH_ORDER[b.status] ?? 3) || a.name.localeCompare(b.name));
}

/** Days of the trend as bar positions (local noon, epoch seconds) and counts. */
export function trendBars(points: ITrendPoint[]): { timestamps: number[]; succeeded: number[]; failed: number[] } {
  return {
    timestamps: points.map(p => {
      const [y, m, d] = p.date.split('-').map(Number);
      return new Date(y, m - 1, d, 12).getTime() / 1000;
    }),
    succeeded: points.map(p => p.succeeded),
    failed: points.map(p => p.failed)
  };
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];

/** 1536 -> "1.5 KB" (binary multiples, as `free -h` and the file browser show sizes). */
export function formatBytes(value: number | null | undefined): string {
  if (value === null || value === undefined || !isFinite(value)) {
    return '–';
  }
  let unit = 0;
  let v = Math.abs(value);
  while (v >= 1024 && unit < UNITS.length - 1) {
    v /= 1024;
    unit += 1;
  }
  const text = v >= 100 || unit === 0 ? v.toFixed(0) : v.toFixed(1);
  return `${value < 0 ? '-' : ''}${text} ${UNITS[unit]}`;
}

export function formatRate(value: number | null | undefined): string {
  return value === null || value === undefined ? '–' : `${formatBytes(value)}/s`;
}

export function formatPercent(value: number | null | undefined, digits = 0): string {
  return value === null || value === undefined || !isFinite(value) ? '–' : `${value.toFixed(digits)}%`;
}
