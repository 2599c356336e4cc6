/**
 * The Platform panel's data layer: machine metrics (history over REST, then every `metrics`
 * message of the live stream), service health (`service_update`) and the dashboard's job
 * statistics (reloaded when a job ends). Loaded when the panel is first shown.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { DataHarbourApi } from './api';
import { IStreamMessage } from './model';
import {
  EMPTY_WINDOW,
  IDashboardOverview,
  IServiceStatus,
  IWindow,
  appendSample,
  applyServiceStatus,
  sortServices,
  windowFromHistory
} from './platform_model';
import { LiveStream } from './stream';

/** The charted series, as the history names them. */
export const CHART_SERIES = ['cpu_percent', 'memory_percent', 'network_rx_bytes_per_sec', 'network_tx_bytes_per_sec'];
export const WINDOW_MINUTES = 15;
const MONITORING_TOPICS: ReadonlySet<string> = new Set(['metrics', 'services']);
const DASHBOARD_DAYS = 14;
const DASHBOARD_RELOAD_DELAY_MS = 1000;

/** A live `metrics` message's sample as the charted series' values. */
export function sampleValues(sample: any): Record<string, number | null> {
  return {
    cpu_percent: sample.cpu?.percent ?? null,
    memory_percent: sample.memory?.percent ?? null,
    network_rx_bytes_per_sec: sample.network?.rx_bytes_per_sec ?? null,
    network_tx_bytes_per_sec: sample.network?.tx_bytes_per_sec ?? null
  };
}

export class PlatformModel {
  constructor(
    readonly api: DataHarbourApi,
    readonly stream: LiveStream
  ) {}

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get window(): IWindow {
    return this._window;
  }

  /** The newest sample, whole (cores, disk, swap, kernels...). */
  get latest(): any {
    return this._latest;
  }

  get services(): IServiceStatus[] {
    return this._services;
  }

  get dashboard(): IDashboardOverview | null {
    return this._dashboard;
  }

  /** What could not be loaded, by part ('metrics', 'services', 'dashboard'). */
  get errors(): Record<string, string> {
    return this._errors;
  }

  /** The server takes no samples (`metrics_interval` = 0): the charts cannot move. */
  get samplingOff(): boolean {
    return this._samplingOff;
  }

  /** Load everything and follow the stream; later calls do nothing. */
  start(): void {
    if (this._started) {
      return;
    }
    this._started = true;
    this.stream.message.connect((_, message) => this._onMessage(message));
    this.stream.subscribe(['metrics', 'services']);
    void this.reload();
  }

  async reload(): Promise<void> {
    await Promise.all([this._loadMetrics(), this._loadServices(), this._loadDashboard()]);
  }

  serviceLogs(name: string, lines = 500): Promise<string[]> {
    return this.api.serviceLogs(name, lines).then(logs => logs.lines);
  }

  private async _loadMetrics(): Promise<void> {
    const load = ++this._metricsLoads;
    this._historyLoaded = false; // samples from now on wait for this history
    await this._load('metrics', async () => {
      // step = the interval: every sample, as the live points that follow are.
      const [history, latest] = await Promise.all([this.api.metricsHistory(WINDOW_MINUTES, 'raw'), this.api.metrics()]);
      if (load !== this._metricsLoads) {
        return; // a newer load is on its way; its answer wins
      }
      if (!this._latest || Date.parse(latest.timestamp) > Date.parse(this._latest.timestamp)) {
        this._latest = latest;
      }
      this._samplingOff = history.interval === 0;
      // Live samples that came while the history was on its way go on after it.
      let window = windowFromHistory(history, CHART_SERIES);
      for (const [timestamp, values] of this._pending) {
        window = appendSample(window, timestamp, values, WINDOW_MINUTES * 60);
      }
      this._window = window;
      this._pending = [];
      this._historyLoaded = true;
    });
  }

  private async _loadServices(): Promise<void> {
    await this._load('services', async () => {
      this._services = sortServices((await this.api.services()).services);
    });
  }

  private async _loadDashboard(): Promise<void> {
    const load = ++this._dashboardLoads;
    const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    await this._load('dashboard', async () => {
      const overview = await this.api.dashboardOverview(DASHBOARD_DAYS, tz);
      if (load === this._dashboardLoads) {
        this._dashboard = overview;
      }
    });
    this._reloadAtMidnight();
  }

  /** The trend's days are the browser's: a new day starts a new bar. */
  private _reloadAtMidnight(): void {
    window.clearTimeout(this._midnightTimer);
    const now = new Date();
    const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1, 0, 0, 5);
    this._midnightTimer = window.setTimeout(() => void this._loadDashboard(), midnight.getTime() - now.getTime());
  }

  private async _load(part: string, load: () => Promise<void>): Promise<void> {
    try {
      await load();
      delete this._errors[part];
    } catch (error) {
      this._errors[part] = (error as Error).message;
    }
    this._changed.emit();
  }

  private _onMessage(message: IStreamMessage): void {
    if (message.type === 'metrics') {
      this._latest = message.data;
      const timestamp = Date.parse(message.data.timestamp) / 1000;
      const values = sampleValues(message.data);
      if (this._historyLoaded) {
        this._window = appendSample(this._window, timestamp, values, WINDOW_MINUTES * 60);
      } else {
        this._pending.push([timestamp, values]);
      }
      this._changed.emit();
    } else if (message.type === 'service_update') {
      this._services = applyServiceStatus(this._services, message.data as IServiceStatus);
      this._changed.emit();
    } else if (message.type === 'service_removed') {
      this._services = this._services.filter(service => service.name !== message.data.name);
      this._changed.emit();
    } else if (message.type === 'job_update' || message.type === 'job_deleted') {
      this._scheduleDashboard(); // a state changed: the counts did
    } else if (message.type === 'error' && MONITORING_TOPICS.has(message.data.topic)) {
      this._errors[message.data.topic] = message.data.message; // e.g. not allowed to read monitoring
      this._changed.emit();
    } else if ((message.type === 'welcome' && !message.data.resumed) || message.type === 'lagged') {
      void this.reload(); // a new session: whatever happened meanwhile comes from REST
    }
  }

  /** Job updates come in bursts: one reload a second at most. */
  private _scheduleDashboard(): void {
    if (this._dashboardTimer === null) {
      this._dashboardTimer = window.setTimeout(() => {
        this._dashboardTimer = null;
        void this._loadDashboard();
      }, DASHBOARD_RELOAD_DELAY_MS);
    }
  }

  private _started = false;
  private _samplingOff = false;
  private _metricsLoads = 0;
  private _dashboardLoads = 0;
  private _midnightTimer = 0;
  private _historyLoaded = false;
  private _pending: [number, Record<string, number | null>][] = [];
  private _window: IWindow = EMPTY_WINDOW;
  private _latest: any = null;
  private _services: IServiceStatus[] = [];
  private _dashboard: IDashboardOverview | null = null;
  private _errors: Record<string, string> = {};
  private _dashboardTimer: number | null = null;
  private _changed = new Signal<this, void>(this);
}
