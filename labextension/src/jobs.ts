/**
 * The sidebar's one data layer for jobs: loaded over REST once, then kept current by the
 * live stream (no polling while the socket is up; a REST refresh after each reconnect).
 */
import { ISignal, Signal } from '@lumino/signaling';

import { DataHarbourApi, ISubmitRequest } from './api';
import { ACTIVE_STATES, IJob, IStreamMessage, applyMessage } from './model';
import { LiveStream } from './stream';

const LIST_LIMIT = 200;

export class JobsModel {
  constructor(
    readonly api: DataHarbourApi,
    readonly stream: LiveStream
  ) {
    stream.message.connect((_, message) => this._onMessage(message));
    stream.statusChanged.connect((_, status) => {
      if (status === 'closed') {
        this._changed.emit();
      }
    });
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
    return [...this._jobs.values()].filter(job => ACTIVE_STATES.has(job.state) && job.state !== 'queued').length;
  }

  async refresh(): Promise<void> {
    try {
      const listing = await this.api.listJobs({ limit: LIST_LIMIT, sort: 'created_at', order: 'desc' });
      let jobs = new Map<string, IJob>();
      for (const job of listing.jobs) {
        jobs.set(job.id, { ...job, progress: job.progress ?? this._jobs.get(job.id)?.progress ?? null });
      }
      // Jobs the stream told of that the page does not hold (newer than the page) stay.
      for (const [id, job] of this._jobs) {
        if (!jobs.has(id) && ACTIVE_STATES.has(job.state)) {
          jobs = jobs.set(id, job);
        }
      }
      this._jobs = jobs;
      this._loadError = null;
    } catch (error) {
      this._loadError = (error as Error).message;
    }
    this._changed.emit();
  }

  async submit(request: ISubmitRequest): Promise<IJob> {
    const job = await this.api.submit(request);
    this._mine.add(job.id);
    this._jobs = new Map(this._jobs).set(job.id, job);
    this._changed.emit();
    return job;
  }

  async restart(id: string): Promise<void> {
    const job = await this.api.restart(id);
    this._mine.add(id);
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
    if (message.type === 'welcome' && !message.data.resumed) {
      void this.refresh(); // a new session: what happened while away comes from the list
      return;
    }
    const before = this._jobs;
    this._jobs = applyMessage(before, message);
    if (this._jobs === before) {
      return;
    }
    if (message.type === 'job_update') {
      const job = message.data as IJob;
      const previous = before.get(job.id);
      if (this._mine.has(job.id) && !ACTIVE_STATES.has(job.state) && (!previous || ACTIVE_STATES.has(previous.state))) {
        this._ended.emit(this._jobs.get(job.id)!);
      }
    }
    this._changed.emit();
  }

  private _jobs = new Map<string, IJob>();
  private _mine = new Set<string>();
  private _loadError: string | null = null;
  private _changed = new Signal<this, void>(this);
  private _ended = new Signal<this, IJob>(this);
}
