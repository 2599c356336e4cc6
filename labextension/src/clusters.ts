/**
 * The sidebar's one data layer for clusters, shared by the Clusters panel and the submit
 * form's picker: loaded over REST, then kept current by `cluster_update` / `cluster_deleted`.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { DataHarbourApi } from './api';
import { IClusterInfo, IClusterLimits, IExternalRequest, IStandaloneRequest, applyClusterMessage, sortClusters } from './clusters_model';
import { IStreamMessage } from './model';
import { LiveStream } from './stream';

export class ClustersModel {
  constructor(
    readonly api: DataHarbourApi,
    readonly stream: LiveStream
  ) {}

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Sorted: the default cluster first, then by creation. */
  get clusters(): IClusterInfo[] {
    return sortClusters(this._clusters.values());
  }

  get limits(): IClusterLimits {
    return this._limits;
  }

  get loadError(): string | null {
    return this._loadError;
  }

  get loaded(): boolean {
    return this._loaded;
  }

  /** Load and follow; later calls do nothing. */
  start(): void {
    if (this._started) {
      return;
    }
    this._started = true;
    this.stream.message.connect((_, message) => this._onMessage(message));
    this.stream.subscribe(['clusters']);
    void this.refresh();
  }

  async refresh(): Promise<void> {
    const load = ++this._loads;
    try {
      const list = await this.api.clusterList();
      if (load !== this._loads) {
        return; // a newer refresh is on its way
      }
      this._clusters = new Map(list.clusters.map(cluster => [cluster.id, cluster]));
      this._limits = list.limits ?? {};
      this._loadError = null;
      this._loaded = true;
    } catch (error) {
      this._loadError = (error as Error).message;
    }
    this._changed.emit();
  }

  async create(request: IStandaloneRequest | IExternalRequest): Promise<IClusterInfo> {
    const cluster = await this.api.createCluster(request);
    this._apply('cluster_update', cluster);
    return cluster;
  }

  async remove(id: string, force: boolean): Promise<void> {
    await this.api.deleteCluster(id, force);
    // A standalone cluster stops in the background (`stopping`, then `cluster_deleted`).
    await this.refresh();
  }

  private _onMessage(message: IStreamMessage): void {
    if (message.type === 'cluster_update' || message.type === 'cluster_deleted') {
      this._apply(message.type, message.data);
    } else if ((message.type === 'welcome' && !message.data.resumed) || message.type === 'lagged') {
      void this.refresh(); // what changed meanwhile comes from the list
    }
  }

  private _apply(type: string, data: unknown): void {
    const next = applyClusterMessage(this._clusters, type, data);
    if (next !== this._clusters) {
      this._clusters = next;
      this._changed.emit();
    }
  }

  private _started = false;
  private _loaded = false;
  private _loads = 0;
  private _clusters = new Map<string, IClusterInfo>();
  private _limits: IClusterLimits = {};
  private _loadError: string | null = null;
  private _changed = new Signal<this, void>(this);
}
