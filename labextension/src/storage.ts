/**
 * The Storage panel's data: the buckets, the folder shown (page by page) and the objects
 * picked in it, over the storage REST API. Whether storage is configured at all is learnt
 * from the first answer.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { ApiError, DataHarbourApi } from './api';
import { IBucketInfo, IObjectList, appendPage, isNotConfigured } from './storage_model';

const PAGE_SIZE = 200;

export class StorageModel {
  constructor(readonly api: DataHarbourApi) {}

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** null until the server has answered; false: MINIO_ENDPOINT is not set on the server. */
  get configured(): boolean | null {
    return this._configured;
  }

  get buckets(): IBucketInfo[] {
    return this._buckets;
  }

  get bucket(): string {
    return this._bucket;
  }

  get prefix(): string {
    return this._prefix;
  }

  /** The folder shown, as far as its pages have been loaded. */
  get listing(): IObjectList | null {
    return this._listing;
  }

  get loading(): boolean {
    return this._loading;
  }

  get error(): string | null {
    return this._error;
  }

  /** Keys of the objects picked in the folder shown. */
  get selected(): ReadonlySet<string> {
    return this._selected;
  }

  /** Load the buckets and open the default one; later calls do nothing. */
  start(): void {
    if (!this._started) {
      this._started = true;
      void this.reload();
    }
  }

  async reload(): Promise<void> {
    this._error = null;
    try {
      const list = await this.api.storageBuckets();
      this._configured = true;
      this._buckets = list.buckets;
      const keep = this._bucket && list.buckets.some(b => b.name === this._bucket);
      const bucket = keep ? this._bucket : list.default_bucket || list.buckets[0]?.name || '';
      if (bucket) {
        await this.open(bucket, keep ? this._prefix : '');
        return;
      }
    } catch (error) {
      this._fail(error);
    }
    this._changed.emit();
  }

  /** Show a folder (`prefix` ending with `/`, or '' for the bucket's root) from its first page. */
  async open(bucket: string, prefix: string): Promise<void> {
    this._bucket = bucket;
    this._prefix = prefix;
    this._listing = null;
    this._selected = new Set();
    await this._load(null);
  }

  async loadMore(): Promise<void> {
    if (this._listing?.next_cursor) {
      await this._load(this._listing.next_cursor);
    }
  }

  toggle(key: string): void {
    const selected = new Set(this._selected);
    if (!selected.delete(key)) {
      selected.add(key);
    }
    this._selected = selected;
    this._changed.emit();
  }

  /** Upload a file into the folder shown, under its own name; then show the folder again. */
  async upload(file: File): Promise<void> {
    await this.api.uploadObject(this._bucket, this._prefix + file.name, file);
    await this.open(this._bucket, this._prefix);
  }

  async remove(key: string): Promise<void> {
    await this.api.deleteObject(this._bucket, key);
    await this.open(this._bucket, this._prefix);
  }

  downloadUrl(key: string): string {
    return this.api.storageObjectUrl(this._bucket, key);
  }

  private async _load(cursor: string | null): Promise<void> {
    const load = ++this._loads;
    const { _bucket: bucket, _prefix: prefix } = this;
    this._loading = true;
    this._error = null;
    this._changed.emit();
    try {
      const page = await this.api.storageObjects(bucket, prefix, PAGE_SIZE, cursor);
      if (load === this._loads) {
        this._listing = appendPage(cursor ? this._listing : null, page);
      }
    } catch (error) {
      if (load === this._loads) {
        this._fail(error);
      }
    }
    if (load === this._loads) {
      this._loading = false;
      this._changed.emit();
    }
  }

  private _fail(error: unknown): void {
    const status = error instanceof ApiError ? error.status : 0;
    const message = (error as Error).message;
    if (isNotConfigured(status, message)) {
      this._configured = false;
    } else {
      this._error = message;
    }
  }

  private _started = false;
  private _configured: boolean | null = null;
  private _buckets: IBucketInfo[] = [];
  private _bucket = '';
  private _prefix = '';
  private _listing: IObjectList | null = null;
  private _loading = false;
  private _loads = 0;
  private _error: string | null = null;
  private _selected: ReadonlySet<string> = new Set();
  private _changed = new Signal<this, void>(this);
}
