import { Signal } from '@lumino/signaling';

import { IFollowedStore, JobsModel } from '../jobs';
import { IJob, IStreamMessage } from '../model';

function job(id: string, state: IJob['state']): IJob {
  return {
    id, name: id, cluster_id: 'c', state, source: 'code', args: [], conf: {}, env: {},
    created_at: '2026-11-28T00:00:00Z', updated_at: '2026-11-28T00:00:00Z', attempt: 1
  };
}

/** The API and the stream as far as JobsModel uses them. */
function fakes(listed: IJob[]) {
  const message = new Signal<unknown, IStreamMessage>({});
  const statusChanged = new Signal<unknown, void>({});
  const api = {
    listJobs: async () => ({ jobs: listed, total: listed.length, limit: 200, offset: 0 }),
    submit: async () => job('new', 'queued')
  };
  return { api, stream: { message, statusChanged }, message };
}

function memoryStore(ids: string[]): IFollowedStore & { saved: string[] } {
  const store = {
    saved: [...ids],
    load: () => [...ids],
    save: (next: string[]) => {
      store.saved = [...next];
    }
  };
  return store;
}

function model(listed: IJob[], store: IFollowedStore) {
  const { api, stream, message } = fakes(listed);
  const jobs = new JobsModel(api as never, stream as never, store);
  const ended: string[] = [];
  jobs.ended.connect((_, j) => ended.push(`${j.id}:${j.state}`));
  return { jobs, ended, message };
}

describe('jobs followed across a reload', () => {
  it('tells of a job submitted before the reload that ended meanwhile, once', async () => {
    const store = memoryStore(['gone-by', 'still-running']);
    const { jobs, ended } = model([job('gone-by', 'succeeded'), job('still-running', 'running')], store);
    await jobs.refresh();
    expect(ended).toEqual(['gone-by:succeeded']);
    expect(store.saved).toEqual(['still-running']);
    await jobs.refresh();
    expect(ended).toEqual(['gone-by:succeeded']);
  });

  it('follows a submitted job until it ends, and not the jobs of others', async () => {
    const store = memoryStore([]);
    const { jobs, ended, message } = model([job('other', 'running')], store);
    await jobs.refresh();
    await jobs.submit({ name: 'new', code: 'print(1)' } as never);
    expect(store.saved).toEqual(['new']);
    message.emit({ type: 'job_update', data: job('other', 'failed'), timestamp: '', seq: 1 });
    message.emit({ type: 'job_update', data: job('new', 'succeeded'), timestamp: '', seq: 2 });
    expect(ended).toEqual(['new:succeeded']);
    expect(store.saved).toEqual([]);
  });

  it('forgets a followed job that is deleted', async () => {
    const store = memoryStore(['deleted']);
    const { jobs, message } = model([job('deleted', 'running')], store);
    await jobs.refresh();
    message.emit({ type: 'job_deleted', data: { id: 'deleted' }, timestamp: '', seq: 1 });
    expect(store.saved).toEqual([]);
  });
});
