/**
 * The sidebar's one data layer for jobs: loaded over REST once, then kept current by the
 * live stream (no polling while the socket is up; a REST refresh after each reconnect).
 */
import { ISignal, Signal } from '@lumino/signaling';

import { DataHarbourApi, ISubmitRequest } from './api';
import { ACTIVE_STATES, IJob, IStreamMessage, applyMessage, mergeListing } from './model';
import { LiveStream } from './stream';

const LIST_LIMIT = 200;
const FOLLOWED_MAX = 200;

/** Where the ids of the jobs this JupyterLab waits for are kept across reloads. */
export interface IFollowedStore {
  load(): string[];
  save(ids: string[]): void;
}

/** The browser's localStorage under `key` (nothing kept where it is unavailable). */
export function localFollowedStore(key: string): IFollowedStore {
  return {
    load: () => {
      try {
        const ids = JSON.parse(window.localStorage.getItem(key) ?? '[]');
        return Array.isArray(ids) ? ids.filter(id => typeof id === 'string') : [];
      } catch {
        return [];
      }
    },
    save: ids => {
      try {
        window.localStorage.setItem(key, JSON.stringify(ids));
      } catch {
        // private mode or full: the follow-up then lasts as long as the page
      }
    }
  };
}

export class JobsModel {
  constructor(
    readonly api: DataHarbourApi,
    readonly stream: LiveStream,
    private readonly followed: IFollowedStore | null = null
  ) {
    stream.message.connect((_, message) => this._onMessage(message));
    stream.statusChanged.connect(() => this._changed.emit());
    // Jobs submitted before a reload are still this JupyterLab's: their end is told (a notebook
    // job's output opened) once the first listing shows it, however long ago it came.
    followed?.load().forEach(id => this._mine.add(id));
  }

  get jobs(): Map<string, IJob> {
    return this._jobs;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** A job submitted from this browser tab has ended. */
  get ended(): ISignal<this, IJob> {
    return this._ended;
  }

  get loadError(): string | null {
    return this._loadError;
  }

  runningCount(): number {
    return [...this._jobs.values()].filter(job => job.state === 'starting' || job.state === 'running').length;
  }

  /** The newest jobs and every active one over REST, merged with what the stream said meanwhile. */
  async refresh(): Promise<void> {
    if (this._refreshing) {
      this._refreshAgain = true; // one at a time; the latest wish wins
      return;
    }
    this._refreshing = true;
    this._touched = new Set();
    this._deleted = new Set();
    try {
      const [recent, active] = await Promise.all([
        this.api.listJobs({ limit: LIST_LIMIT, sort: 'created_at', order: 'desc' }),
        this.api.listJobs({ state: [...ACTIVE_STATES].join(','), limit: 1000 })
      ]);
      this._update(mergeListing(this._jobs, [...recent.jobs, ...active.jobs], this._touched, this._deleted));
      this._loadError = null;
    } catch (error) {
      this._loadError = (error as Error).message;
    } finally {
      this._refreshing = false;
      this._touched = null;
      this._deleted = null;
    }
    this._changed.emit();
    if (this._refreshAgain) {
      this._refreshAgain = false;
      void this.refresh();
    }
  }

  async submit(request: ISubmitRequest): Promise<IJob> {
    const job = await this.api.submit(request);
    this._follow(job.id);
    this._onMessage({ type: 'job_update', data: job, timestamp: '', seq: 0 });
    const known = this._jobs.get(job.id);
    if (known && !ACTIVE_STATES.has(known.state) && this._mine.has(job.id)) {
      this._endedOnce(known); // it ended before the answer came back
    }
    return job;
  }

  async restart(id: string): Promise<void> {
    const job = await this.api.restart(id);
    this._follow(id);
    this._onMessage({ type: 'job_update', data: job, timestamp: '', seq: 0 });
  }

  async kill(id: string): Promise<void> {
    const job = await this.api.kill(id);
    this._onMessage({ type: 'job_update', data: job, timestamp: '', seq: 0 });
  }

  async remove(id: string): Promise<void> {
    await this.api.remove(id);
    this._onMessage({ type: 'job_deleted', data: { id }, timestamp: '', seq: 0 });
  }

  private _onMessage(message: IStreamMessage): void {
    if ((message.type === 'welcome' && !message.data.resumed) || message.type === 'lagged') {
      void this.refresh(); // what happened while away (deletions too) comes from the list
      if (message.type === 'welcome') {
        return;
      }
    }
    if (message.type === 'job_update' || message.type === 'job_progress') {
      this._touched?.add(message.data.id ?? message.data.job_id);
    } else if (message.type === 'job_deleted') {
      this._deleted?.add(message.data.id);
      if (this._mine.delete(message.data.id)) {
        this._saveFollowed();
      }
    } else if (message.type === 'snapshot') {
      (message.data.jobs as IJob[]).forEach(job => this._touched?.add(job.id));
    }
    this._update(applyMessage(this._jobs, message));
  }

  /** Take a new job map; tell of jobs of this tab that have ended, however we learnt it. */
  private _update(next: Map<string, IJob>): void {
    const before = this._jobs;
    if (next === before) {
      return;
    }
    this._jobs = next;
    for (const id of [...this._mine]) {
      const was = before.get(id);
      const now = next.get(id);
      if (now && !ACTIVE_STATES.has(now.state) && (!was || ACTIVE_STATES.has(was.state))) {
        this._endedOnce(now);
      }
    }
    this._changed.emit();
  }

  private _follow(id: string): void {
    this._mine.delete(id); // the newest last: the oldest go first past the limit
    this._mine.add(id);
    while (this._mine.size > FOLLOWED_MAX) {
      this._mine.delete(this._mine.values().next().value as string);
    }
    this._saveFollowed();
  }

  /** Told once: a restart follows it again. */
  private _endedOnce(job: IJob): void {
    this._mine.delete(job.id);
    this._saveFollowed();
    this._ended.emit(job);
  }

  private _saveFollowed(): void {
    this.followed?.save([...this._mine]);
  }

  private _jobs = new Map<string, IJob>();
  private _mine = new Set<string>();
  private _loadError: string | null = null;
  private _refreshing = false;
  private _refreshAgain = false;
  private _touched: Set<string> | null = null;
  private _deleted: Set<string> | null = null;
  private _changed = new Signal<this, void>(this);
  private _ended = new Signal<this, IJob>(this);
}
