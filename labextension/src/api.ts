/**
 * The DataHarbour REST API, through JupyterLab's ServerConnection (token and XSRF handled
 * by JupyterLab). Errors become ApiError with the server's own message.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IClusterInfo, IClusterLimits, IExternalRequest, IStandaloneRequest } from './clusters_model';
import { IJob, IJobList, ILogPage, JobMode, errorMessage } from './model';
import { JSONValue } from './notebook_job_model';
import { IDashboardOverview, IMetricsHistory, IServiceStatus } from './platform_model';
import { IBucketList, IJobInput, IObjectList, objectPath } from './storage_model';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

export interface ISubmitRequest {
  name: string;
  cluster_id?: string;
  code?: string;
  file?: string;
  args?: string[];
  conf?: Record<string, string>;
  mode?: JobMode; // none: the server's default (DataHarbourApp.default_job_mode)
  /** A notebook job: the notebook's contents path (or File ID), run whole, `parameters` injected. */
  notebook?: string;
  parameters?: Record<string, JSONValue>;
  /** Objects downloaded into the run's DATAHARBOUR_INPUT_DIR before it starts. */
  inputs?: IJobInput[];
}

export class DataHarbourApi {
  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  listJobs(params: Record<string, string | number> = {}): Promise<IJobList> {
    return this.request<IJobList>('GET', 'jobs/', undefined, params);
  }

  getJob(id: string): Promise<IJob> {
    return this.request<IJob>('GET', `jobs/${encodeURIComponent(id)}`);
  }

  submit(body: ISubmitRequest): Promise<IJob> {
    return this.request<IJob>('POST', 'jobs/', body);
  }

  kill(id: string): Promise<IJob> {
    return this.request<IJob>('POST', `jobs/${encodeURIComponent(id)}/kill`);
  }

  restart(id: string): Promise<IJob> {
    return this.request<IJob>('POST', `jobs/${encodeURIComponent(id)}/restart`);
  }

  async remove(id: string, force = false): Promise<void> {
    await this.request<void>('DELETE', `jobs/${encodeURIComponent(id)}`, undefined, force ? { force: 'true' } : {});
  }

  /** A notebook job's executed notebook (nbformat 4 JSON), as far as it has run; 409 before it has written one. */
  notebookOutput(id: string): Promise<Record<string, unknown>> {
    return this.request('GET', `jobs/${encodeURIComponent(id)}/output`, undefined, { format: 'ipynb' });
  }

  logs(id: string, params: Record<string, string | number>): Promise<ILogPage> {
    return this.request<ILogPage>('GET', `jobs/${encodeURIComponent(id)}/logs`, undefined, params);
  }

  clusterList(): Promise<{ clusters: IClusterInfo[]; limits?: IClusterLimits }> {
    return this.request('GET', 'clusters/');
  }

  createCluster(body: IStandaloneRequest | IExternalRequest): Promise<IClusterInfo> {
    return this.request<IClusterInfo>('POST', 'clusters/', body);
  }

  async deleteCluster(id: string, force = false): Promise<void> {
    await this.request<void>('DELETE', `clusters/${encodeURIComponent(id)}`, undefined, force ? { force: 'true' } : {});
  }

  /** Where a cluster's master UI is proxied on this server. */
  masterUiUrl(cluster: IClusterInfo): string | null {
    return cluster.ui_proxy_path ? URLExt.join(this.settings.baseUrl, cluster.ui_proxy_path) : null;
  }

  /** The latest sample of the machine (`GET /monitoring/metrics`). */
  metrics(): Promise<any> {
    return this.request<any>('GET', 'monitoring/metrics');
  }

  /** The stored samples of the last `minutes`: every one (`raw`), or the server's default steps. */
  metricsHistory(minutes: number, resolution: 'raw' | 'default' = 'default'): Promise<IMetricsHistory> {
    const params: Record<string, number> = { minutes };
    if (resolution === 'raw') {
      params.step = 1; // at or below the interval: the samples themselves
    }
    return this.request<IMetricsHistory>('GET', 'monitoring/metrics/history', undefined, params);
  }

  services(): Promise<{ services: IServiceStatus[] }> {
    return this.request<{ services: IServiceStatus[] }>('GET', 'monitoring/services');
  }

  serviceLogs(name: string, lines: number): Promise<{ name: string; lines: string[] }> {
    return this.request('GET', `monitoring/services/${encodeURIComponent(name)}/logs`, undefined, { lines });
  }

  dashboardOverview(days: number, tz: string): Promise<IDashboardOverview> {
    return this.request<IDashboardOverview>('GET', 'dashboard/overview', undefined, { days, tz });
  }

  storageBuckets(): Promise<IBucketList> {
    return this.request<IBucketList>('GET', 'storage/buckets');
  }

  /** One page of a folder: its subfolders and objects (`cursor`: the previous page's `next_cursor`). */
  storageObjects(bucket: string, prefix: string, limit: number, cursor?: string | null): Promise<IObjectList> {
    const params: Record<string, string | number> = { bucket, prefix, delimiter: '/', limit };
    if (cursor) {
      params.cursor = cursor;
    }
    return this.request<IObjectList>('GET', 'storage/objects', undefined, params);
  }

  /** Where an object downloads from (the Jupyter login cookie authenticates a plain GET). */
  storageObjectUrl(bucket: string, key: string): string {
    return URLExt.join(this.settings.baseUrl, 'api/v1/storage/objects', objectPath(bucket, key));
  }

  /** Write `file` as the object: the browser streams it as the request body. */
  uploadObject(bucket: string, key: string, file: Blob): Promise<{ bucket: string; key: string; size: number }> {
    return this.send(this.storageObjectUrl(bucket, key), {
      method: 'PUT',
      body: file,
      headers: { 'Content-Type': file.type || 'application/octet-stream' }
    });
  }

  async deleteObject(bucket: string, key: string): Promise<void> {
    await this.send<void>(this.storageObjectUrl(bucket, key), { method: 'DELETE' });
  }

  /** Where a run's archived file downloads from, through this server (the login cookie authenticates it). */
  jobArtifactUrl(id: string, attempt: number, name: string): string {
    const path = URLExt.join('api/v1/jobs', encodeURIComponent(id), 'artifacts', ...name.split('/').map(encodeURIComponent));
    return `${URLExt.join(this.settings.baseUrl, path)}?attempt=${attempt}`;
  }

  /** Where the driver UI of a running job is proxied on this server. */
  sparkUiUrl(id: string): string {
    return URLExt.join(this.settings.baseUrl, 'api/v1/jobs', encodeURIComponent(id), 'spark-ui/proxy/');
  }

  private async request<T>(
    method: string,
    path: string,
    body?: unknown,
    params: Record<string, string | number> = {}
  ): Promise<T> {
    const stringParams: Record<string, string> = {};
    Object.keys(params).forEach(key => (stringParams[key] = String(params[key])));
    const query = URLExt.objectToQueryString(stringParams);
    const url = URLExt.join(this.settings.baseUrl, 'api/v1', path) + query;
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    return this.send<T>(url, init);
  }

  /** One request; its JSON answer, or an ApiError with the server's message. */
  private async send<T>(url: string, init: RequestInit): Promise<T> {
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, this.settings);
    } catch (error) {
      throw new ApiError(0, `The Jupyter server could not be reached (${(error as Error).message})`);
    }
    const text = await response.text();
    let data: unknown = undefined;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    }
    if (!response.ok) {
      throw new ApiError(response.status, errorMessage(response.status, data));
    }
    return data as T;
  }
}
