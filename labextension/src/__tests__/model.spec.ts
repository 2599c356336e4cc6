import { StreamCursor, reconnectDelay } from '../cursor';
import {
  IJob, IStreamMessage, applyMessage, errorMessage, formatDuration, formatParameters, hasProgress, mergeListing, modeBadge,
  modeDescription, parseConf, progressLabel,
  visibleJobs
} from '../model';

function job(id: string, state: string, updated: string, attempt = 1): IJob {
  return {
    id, name: `job ${id}`, cluster_id: 'spark-cluster-default', state: state as IJob['state'], source: 'code',
    args: [], conf: {}, env: {}, created_at: updated, updated_at: updated, attempt
  };
}

function message(type: string, data: unknown, seq = 1): IStreamMessage {
  return { type, data, timestamp: '', seq };
}

describe('applyMessage', () => {
  it('adds and updates jobs and never goes back in time', () => {
    let jobs = applyMessage(new Map(), message('job_update', job('a', 'queued', '2026-01-01T00:00:01Z')));
    jobs = applyMessage(jobs, message('job_update', job('a', 'running', '2026-01-01T00:00:03Z')));
    const stale = applyMessage(jobs, message('job_update', job('a', 'starting', '2026-01-01T00:00:02Z')));
    expect(stale.get('a')!.state).toBe('running');
    expect(stale).toBe(jobs);
  });

  it('keeps progress of the same attempt and drops it for a new one', () => {
    let jobs = applyMessage(new Map(), message('job_update', job('a', 'running', '2026-01-01T00:00:01Z')));
    const progress = { job_id: 'a', attempt: 1, percent: 50, jobs: {}, stages: {}, tasks: {}, current_stage: null };
    jobs = applyMessage(jobs, message('job_progress', progress));
    expect(jobs.get('a')!.progress!.percent).toBe(50);
    jobs = applyMessage(jobs, message('job_update', job('a', 'succeeded', '2026-01-01T00:00:05Z')));
    expect(jobs.get('a')!.progress!.percent).toBe(50);
    jobs = applyMessage(jobs, message('job_update', job('a', 'queued', '2026-01-01T00:00:06Z', 2)));
    expect(jobs.get('a')!.progress).toBeNull();
    expect(applyMessage(jobs, message('job_progress', progress))).toBe(jobs); // attempt 1's progress
  });

  it('applies snapshots and deletions', () => {
    let jobs = applyMessage(new Map(), message('snapshot', {
      jobs: [job('a', 'succeeded', '2026-01-01T00:00:01Z'), job('b', 'running', '2026-01-01T00:00:02Z')]
    }));
    expect([...jobs.keys()].sort()).toEqual(['a', 'b']);
    jobs = applyMessage(jobs, message('job_deleted', { id: 'a' }));
    expect([...jobs.keys()]).toEqual(['b']);
  });
});

describe('visibleJobs', () => {
  it('filters by state and name, newest first', () => {
    const jobs = new Map([
      ['a', job('a', 'succeeded', '2026-01-01T00:00:01Z')],
      ['b', job('b', 'running', '2026-01-01T00:00:02Z')]
    ]);
    expect(visibleJobs(jobs, {}).map(j => j.id)).toEqual(['b', 'a']);
    expect(visibleJobs(jobs, { state: 'succeeded' }).map(j => j.id)).toEqual(['a']);
    expect(visibleJobs(jobs, { name: 'JOB B' }).map(j => j.id)).toEqual(['b']);
  });
});

describe('StreamCursor', () => {
  it('resumes with the last seq of its session and drops replayed messages', () => {
    const cursor = new StreamCursor();
    expect(cursor.resumeParams()).toEqual({});
    expect(cursor.accept(message('welcome', { session: 's1', resumed: false }, 1))).toBe(true);
    expect(cursor.accept(message('job_update', {}, 2))).toBe(true);
    expect(cursor.resumeParams()).toEqual({ since_seq: '2', session: 's1' });
    expect(cursor.accept(message('job_update', {}, 2))).toBe(false);
    expect(cursor.accept(message('job_update', {}, 3))).toBe(true);
    expect(cursor.accept(message('welcome', { session: 's1', resumed: true }, 4))).toBe(true);
    expect(cursor.gaps).toBe(0);
  });

  it('starts a new numbering when the server has a new session', () => {
    const cursor = new StreamCursor();
    cursor.accept(message('welcome', { session: 's1', resumed: false }, 1));
    cursor.accept(message('job_update', {}, 40));
    expect(cursor.accept(message('welcome', { session: 's2', resumed: false }, 1))).toBe(true);
    expect(cursor.resumeParams()).toEqual({ since_seq: '1', session: 's2' });
  });

  it('backs off up to 30 s', () => {
    expect(reconnectDelay(0)).toBe(500);
    expect(reconnectDelay(3)).toBe(4000);
    expect(reconnectDelay(20)).toBe(30000);
  });
});

describe('helpers', () => {
  it('formats durations, parses conf and words errors', () => {
    expect(formatDuration(65)).toBe('1m 05s');
    expect(formatDuration(3700)).toBe('1h 01m');
    expect(formatDuration(null)).toBe('');
    expect(parseConf('a=1\n# note\n b = x=y \n')).toEqual({ a: '1', b: 'x=y' });
    expect(() => parseConf('nonsense')).toThrow('line 1');
    expect(errorMessage(400, { message: 'code: the program is empty' })).toBe('code: the program is empty');
    expect(errorMessage(403, '<html>')).toBe('You are not allowed to do this on this server.');
  });
});

describe('mergeListing', () => {
  it('keeps what the stream said during the request and drops what it deleted', () => {
    const current = new Map([
      ['a', job('a', 'succeeded', '2026-01-01T00:00:09Z')], // the stream's word, newer than the listing
      ['gone', job('gone', 'running', '2026-01-01T00:00:01Z')] // not listed, not touched: deleted elsewhere
    ]);
    const listed = [job('a', 'running', '2026-01-01T00:00:05Z'), job('b', 'queued', '2026-01-01T00:00:05Z'),
      job('c', 'queued', '2026-01-01T00:00:05Z')];
    const merged = mergeListing(current, listed, new Set(['a']), new Set(['c']));
    expect(merged.get('a')!.state).toBe('succeeded');
    expect([...merged.keys()].sort()).toEqual(['a', 'b']);
  });
});

describe('run modes', () => {
  it('names them short in rows and in full in the details', () => {
    expect(modeBadge('connect')).toBe('warm');
    expect(modeBadge('batch')).toBe('batch');
    expect(modeBadge('notebook')).toBe('notebook');
    expect(modeDescription({ mode: 'connect', requested_mode: 'connect' })).toBe('Warm (Spark Connect)');
    expect(modeDescription({ mode: 'batch', requested_mode: 'auto' })).toBe('Batch (spark-submit), chosen by auto');
    expect(modeDescription({ mode: 'connect', requested_mode: null })).toBe("Warm (Spark Connect), the server's default");
    expect(modeDescription({})).toBe('Batch (spark-submit)'); // an older server: no modes
  });
});

describe('notebook job progress', () => {
  const counts = (total: number, done: number, active = 0) => ({ total, done, failed: 0, active });
  const base = { attempt: 1, jobs: counts(0, 0), stages: counts(0, 0), tasks: counts(0, 0), current_stage: null };

  it('shows cells, and Spark stages and tasks once there are any', () => {
    const cellsOnly = { ...base, cells: counts(5, 2, 1), current_cell: 3, percent: 40 };
    expect(hasProgress(cellsOnly)).toBe(true);
    expect(progressLabel(cellsOnly)).toBe('40% · cells 2/5');
    const withSpark = { ...cellsOnly, stages: counts(2, 1), tasks: counts(8, 3) };
    expect(progressLabel(withSpark)).toBe('40% · cells 2/5 · stages 1/2 · tasks 3/8');
    expect(hasProgress({ ...base, percent: 0 })).toBe(false);
    expect(hasProgress(null)).toBe(false);
  });

  it('lists parameters as name = JSON value', () => {
    expect(formatParameters({ region: 'us', days: 3, tags: ['a'] })).toBe('region = "us"\ndays = 3\ntags = ["a"]');
  });
});
