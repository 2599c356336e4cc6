/**
 * What the DataHarbour API returns, and pure functions over it (unit-tested with jest).
 */

export type JobState = 'queued' | 'starting' | 'running' | 'succeeded' | 'failed' | 'killed' | 'lost';

export const ACTIVE_STATES: ReadonlySet<string> = new Set(['queued', 'starting', 'running']);
export const TERMINAL_STATES: ReadonlySet<string> = new Set(['succeeded', 'failed', 'killed', 'lost']);
export const ALL_STATES: JobState[] = ['queued', 'starting', 'running', 'succeeded', 'failed', 'killed', 'lost'];

/** How a run executes: `batch` (spark-submit, a driver JVM of its own), `connect` (warm: a
 * pre-started worker on the cluster's Spark Connect server) or `notebook` (a notebook job's
 * cells in a kernel of its own). */
export type RunMode = ProgramMode | 'notebook';
/** How a program (code or file) may run. */
export type ProgramMode = 'batch' | 'connect';
/** What a submission may ask for: a program's run mode, or `auto` (connect where the cluster can). */
export type JobMode = ProgramMode | 'auto';

export interface ICounts {
  total: number;
  done: number;
  failed: number;
  active: number;
}

export interface IProgress {
  attempt: number;
  jobs: ICounts;
  stages: ICounts;
  tasks: ICounts;
  current_stage: string | null;
  /** Notebook jobs: the code cells to run, run, failed and running. */
  cells?: ICounts | null;
  current_cell?: number | null;
  percent: number;
  updated_at?: string;
}

export interface IJob {
  id: string;
  name: string;
  cluster_id: string;
  state: JobState;
  source: 'code' | 'file' | 'notebook';
  file?: string | null;
  /** Notebook jobs: the notebook's path at submit, and the parameters injected into it. */
  notebook?: string | null;
  parameters?: Record<string, unknown> | null;
  args: string[];
  conf: Record<string, string>;
  env: Record<string, string>;
  created_at: string;
  updated_at: string;
  attempt: number;
  mode?: RunMode;
  requested_mode?: JobMode | null;
  started_at?: string | null;
  finished_at?: string | null;
  duration?: number | null;
  exit_code?: number | null;
  spark_app_id?: string | null;
  error?: string | null;
  progress?: IProgress | null;
  code?: string;
  /** Objects downloaded into the run before it starts (object storage): `as` under DATAHARBOUR_INPUT_DIR. */
  inputs?: { uri: string; as: string }[] | null;
  /** The latest run ended and its files are being archived in the object storage. */
  archiving?: boolean;
  artifacts_error?: string | null;
  /** GET /jobs/{id} only: the latest run's archived files. */
  artifacts?: IJobArtifact[] | null;
}

/** A file of a run archived once it ended: `output.log`, `output.ipynb` or `output/<path>`. */
export interface IJobArtifact {
  name: string;
  uri: string;
  size: number;
}

export interface IJobList {
  jobs: IJob[];
  total: number;
  limit: number;
  offset: number;
}

export interface ILogPage {
  job_id: string;
  attempt: number;
  stream: 'all' | 'stdout';
  offset: number;
  next_offset: number;
  size: number;
  lines: string[];
  complete: boolean;
}

/** A stream message: `{type, data, timestamp, seq}`. */
export interface IStreamMessage {
  type: string;
  data: any;
  timestamp: string;
  seq: number;
}

/** The server's `{message}` for an error answer, or a readable fallback; never raw JSON. */
export function errorMessage(status: number, body: unknown): string {
  if (body && typeof body === 'object' && typeof (body as any).message === 'string') {
    return (body as any).message;
  }
  if (status === 403) {
    return 'You are not allowed to do this on this server.';
  }
  if (status === 404) {
    return 'Not found: it may have been deleted.';
  }
  return `The server answered ${status}.`;
}

export interface IJobFilter {
  state?: string;
  cluster?: string;
  name?: string;
}

/** Jobs as the sidebar shows them: newest first, filtered. */
export function visibleJobs(jobs: Map<string, IJob>, filter: IJobFilter): IJob[] {
  const name = (filter.name || '').trim().toLowerCase();
  return [...jobs.values()]
    .filter(job => !filter.state || job.state === filter.state)
    .filter(job => !filter.cluster || job.cluster_id === filter.cluster)
    .filter(job => !name || job.name.toLowerCase().includes(name))
    .sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
}

/**
 * The job list after one stream message. An update never goes back in time: a message
 * about an older state of a job (by `updated_at`, then attempt) than the one known is ignored.
 */
export function applyMessage(jobs: Map<string, IJob>, message: IStreamMessage): Map<string, IJob> {
  switch (message.type) {
    case 'job_update':
      return upsert(jobs, message.data as IJob);
    case 'job_deleted': {
      if (!jobs.has(message.data.id)) {
        return jobs;
      }
      const next = new Map(jobs);
      next.delete(message.data.id);
      return next;
    }
    case 'job_progress': {
      const job = jobs.get(message.data.job_id);
      if (!job || message.data.attempt !== job.attempt) {
        return jobs;
      }
      const { job_id: _ignored, ...progress } = message.data;
      return new Map(jobs).set(job.id, { ...job, progress: progress as IProgress });
    }
    case 'snapshot': {
      let next = jobs;
      for (const job of message.data.jobs as IJob[]) {
        next = upsert(next, job);
      }
      return next;
    }
    default:
      return jobs;
  }
}

/**
 * The job map after a REST refresh that started before some stream messages arrived:
 * listed jobs are merged (never going back in time); a job the listing does not hold stays
 * only if the stream told of it while the request was under way (`touched`).
 */
export function mergeListing(
  current: Map<string, IJob>,
  listed: IJob[],
  touched: ReadonlySet<string>,
  deleted: ReadonlySet<string>
): Map<string, IJob> {
  const next = new Map<string, IJob>();
  for (const [id, job] of current) {
    if (touched.has(id)) {
      next.set(id, job);
    }
  }
  for (const job of listed) {
    if (deleted.has(job.id)) {
      continue;
    }
    const merged = merge(next.get(job.id) ?? current.get(job.id), job);
    if (merged) {
      next.set(job.id, merged);
    } else if (!next.has(job.id)) {
      next.set(job.id, current.get(job.id)!);
    }
  }
  return next;
}

function upsert(jobs: Map<string, IJob>, job: IJob): Map<string, IJob> {
  const merged = merge(jobs.get(job.id), job);
  return merged ? new Map(jobs).set(job.id, merged) : jobs;
}

/** `job` over what is known of it, or null when it is older than that. */
function merge(known: IJob | undefined, job: IJob): IJob | null {
  if (known && isOlder(job, known)) {
    return null;
  }
  // Progress comes in its own messages: keep the last one unless the update brings one.
  const progress = job.progress ?? (known && known.attempt === job.attempt ? known.progress : null);
  return { ...job, progress };
}

function isOlder(candidate: IJob, known: IJob): boolean {
  if (candidate.attempt !== known.attempt) {
    return candidate.attempt < known.attempt;
  }
  return candidate.updated_at < known.updated_at;
}

/** "1m 05s" for a duration in seconds. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) {
    return '';
  }
  const whole = Math.round(seconds);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = whole % 60;
  if (h) {
    return `${h}h ${String(m).padStart(2, '0')}m`;
  }
  if (m) {
    return `${m}m ${String(s).padStart(2, '0')}s`;
  }
  return `${s}s`;
}

/** The short word for a run mode, as the job rows show it. */
export function modeBadge(mode: RunMode): string {
  return mode === 'connect' ? 'warm' : mode;
}

/** A run mode in words, as the submit form's picker names it. */
export function modeLabel(mode: RunMode): string {
  switch (mode) {
    case 'connect':
      return 'Warm (Spark Connect)';
    case 'notebook':
      return 'Notebook (its cells in a kernel of its own)';
    default:
      return 'Batch (spark-submit)';
  }
}

/** Whether a job has progress worth a bar: Spark tasks, or a notebook's cells. */
export function hasProgress(progress: IProgress | null | undefined): progress is IProgress {
  return Boolean(progress && (progress.tasks.total > 0 || (progress.cells && progress.cells.total > 0)));
}

/** The progress bar's words: cells for a notebook job, then Spark's stages and tasks when there are any. */
export function progressLabel(progress: IProgress): string {
  const parts = [`${progress.percent.toFixed(0)}%`];
  if (progress.cells && progress.cells.total > 0) {
    parts.push(`cells ${progress.cells.done}/${progress.cells.total}`);
  }
  if (progress.tasks.total > 0) {
    parts.push(`stages ${progress.stages.done}/${progress.stages.total}`, `tasks ${progress.tasks.done}/${progress.tasks.total}`);
  }
  return parts.join(' · ');
}

/** The details' Mode entry: how the latest run executes, and why when the job did not name it. */
export function modeDescription(job: Pick<IJob, 'mode' | 'requested_mode'>): string {
  const how = modeLabel(job.mode ?? 'batch');
  if (job.mode === 'notebook') {
    return how;
  }
  if (job.requested_mode === 'auto') {
    return `${how}, chosen by auto`;
  }
  if (job.requested_mode === null) {
    return `${how}, the server's default`;
  }
  return how;
}

/** A notebook job's parameters as `name = value` lines (values as JSON). */
export function formatParameters(parameters: Record<string, unknown>): string {
  return Object.entries(parameters)
    .map(([name, value]) => `${name} = ${JSON.stringify(value)}`)
    .join('\n');
}

/** `key=value` lines as Spark conf; throws with the line at fault. */
export function parseConf(text: string): Record<string, string> {
  const conf: Record<string, string> = {};
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) {
      return;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) {
      throw new Error(`Spark conf line ${index + 1}: expected key=value`);
    }
    conf[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  });
  return conf;
}
