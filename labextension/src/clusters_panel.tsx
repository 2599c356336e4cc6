/**
 * The sidebar's Clusters panel: every cluster with its state, workers and jobs; launch a
 * standalone cluster, register an external master, delete one, open its master UI.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import * as React from 'react';

import { ClustersModel } from './clusters';
import { IClusterInfo, capacitySummary, connectSummary } from './clusters_model';
import { JobsModel } from './jobs';
import { ACTIVE_STATES, IJob } from './model';
import { ModelPanel } from './model_panel';
import { formatBytes } from './platform_model';

export interface IClustersPanelOptions {
  model: ClustersModel;
  jobs: JobsModel;
  openMasterUi: (cluster: IClusterInfo) => void;
}

const formatMb = (mb: number) => formatBytes(mb * 1024 * 1024);

export class ClustersPanel extends ModelPanel<ClustersModel> {
  constructor(private readonly options: IClustersPanelOptions) {
    super(options.model, {
      id: 'dataharbour-clusters',
      label: 'Clusters',
      caption: 'Spark clusters: launch, register, delete'
    });
  }

  protected renderContent(): JSX.Element {
    return <Clusters {...this.options} />;
  }
}

type FormKind = 'standalone' | 'external' | null;

function Clusters(props: IClustersPanelOptions): JSX.Element {
  const [form, setForm] = React.useState<FormKind>(null);
  const { model } = props;
  return (
    <div className="dh-Clusters">
      {form === null ? (
        <div className="dh-Buttons">
          <button className="jp-mod-styled jp-mod-accept dh-NewCluster" onClick={() => setForm('standalone')}>
            New standalone cluster
          </button>
          <button className="jp-mod-styled dh-RegisterCluster" onClick={() => setForm('external')}>
            Register a master
          </button>
        </div>
      ) : form === 'standalone' ? (
        <StandaloneForm model={model} onDone={() => setForm(null)} />
      ) : (
        <ExternalForm model={model} onDone={() => setForm(null)} />
      )}
      {model.loadError && <div className="dh-Error" role="alert">{model.loadError}</div>}
      {model.loaded && model.clusters.length === 0 && <p className="dh-Empty">No clusters.</p>}
      <ul className="dh-ClusterList">
        {model.clusters.map(cluster => (
          <ClusterCard key={cluster.id} {...props} cluster={cluster} />
        ))}
      </ul>
    </div>
  );
}

/** The form's submit: the server's message where the user acted, and a busy flag. */
function useSubmit(onDone: () => void) {
  const [busy, setBusy] = React.useState(false);
  const [error, setError] = React.useState<string | null>(null);
  const submit = (action: () => Promise<unknown>) => async (event: React.FormEvent) => {
    event.preventDefault();
    setError(null);
    setBusy(true);
    try {
      await action();
      onDone();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, submit };
}

/** A form's error (in words, where the user acted) and its Cancel / submit buttons. */
function FormEnd(props: { error: string | null; busy: boolean; onCancel: () => void; label: string; busyLabel: string }) {
  return (
    <>
      {props.error && <div className="dh-Error" role="alert">{props.error}</div>}
      <div className="dh-Buttons">
        <button type="button" className="jp-mod-styled jp-mod-reject" onClick={props.onCancel}>Cancel</button>
        <button type="submit" className="jp-mod-styled jp-mod-accept" disabled={props.busy}>
          {props.busy ? props.busyLabel : props.label}
        </button>
      </div>
    </>
  );
}

function StandaloneForm(props: { model: ClustersModel; onDone: () => void }): JSX.Element {
  const limits = props.model.limits;
  const [name, setName] = React.useState('');
  const [workers, setWorkers] = React.useState('1');
  const [cores, setCores] = React.useState('1');
  const [memory, setMemory] = React.useState('1g');
  const { busy, error, submit } = useSubmit(props.onDone);
  const onSubmit = submit(() =>
    props.model.create({
      name: name.trim() || 'Standalone cluster',
      kind: 'standalone',
      workers: Number(workers),
      cores_per_worker: Number(cores),
      memory_per_worker: memory.trim()
    })
  );
  return (
    <form className="dh-Form dh-ClusterForm" onSubmit={onSubmit}>
      <label>
        Name
        <input className="jp-mod-styled" value={name} placeholder="Team cluster" onChange={e => setName(e.target.value)} />
      </label>
      <div className="dh-FormRow">
        <label>
          Workers{limits.max_workers ? <span className="dh-Muted"> (≤ {limits.max_workers})</span> : null}
          <input className="jp-mod-styled" type="number" min={1} max={limits.max_workers} value={workers}
            onChange={e => setWorkers(e.target.value)} />
        </label>
        <label>
          Cores/worker{limits.max_cores_per_worker ? <span className="dh-Muted"> (≤ {limits.max_cores_per_worker})</span> : null}
          <input className="jp-mod-styled" type="number" min={1} max={limits.max_cores_per_worker} value={cores}
            onChange={e => setCores(e.target.value)} />
        </label>
        <label>
          Memory/worker{limits.max_memory_per_worker ? <span className="dh-Muted"> (≤ {limits.max_memory_per_worker})</span> : null}
          <input className="jp-mod-styled" value={memory} placeholder="1g" onChange={e => setMemory(e.target.value)} />
        </label>
      </div>
      <FormEnd error={error} busy={busy} onCancel={props.onDone} label="Launch cluster" busyLabel="Launching…" />
    </form>
  );
}

function ExternalForm(props: { model: ClustersModel; onDone: () => void }): JSX.Element {
  const [name, setName] = React.useState('');
  const [url, setUrl] = React.useState('');
  const [driverHost, setDriverHost] = React.useState('');
  const { busy, error, submit } = useSubmit(props.onDone);
  const onSubmit = submit(() =>
    props.model.create({
      name: name.trim() || url.trim(),
      kind: 'external',
      master_url: url.trim(),
      ...(driverHost.trim() ? { conf: { 'spark.driver.host': driverHost.trim() } } : {})
    })
  );
  return (
    <form className="dh-Form dh-ClusterForm" onSubmit={onSubmit}>
      <label>
        Name
        <input className="jp-mod-styled" value={name} placeholder="Company cluster" onChange={e => setName(e.target.value)} />
      </label>
      <label>
        Master URL
        <input className="jp-mod-styled" value={url} placeholder="spark://host:7077, k8s://https://host:443, yarn"
          onChange={e => setUrl(e.target.value)} />
      </label>
      <label>
        Driver host <span className="dh-Muted">(this machine's address as remote executors reach it)</span>
        <input className="jp-mod-styled" value={driverHost} placeholder="optional" onChange={e => setDriverHost(e.target.value)} />
      </label>
      <FormEnd error={error} busy={busy} onCancel={props.onDone} label="Register" busyLabel="Registering…" />
    </form>
  );
}

function ClusterCard(props: IClustersPanelOptions & { cluster: IClusterInfo }): JSX.Element {
  const { cluster } = props;
  const [error, setError] = React.useState<string | null>(null);
  const capacity = capacitySummary(cluster, formatMb);

  const remove = async () => {
    const doomed = activeJobsOn(props.jobs, cluster.id);
    const what = cluster.kind === 'standalone'
      ? `This stops the master and ${cluster.workers?.length ?? 0} worker(s) of "${cluster.name}".`
      : `This unregisters "${cluster.name}"; the master itself keeps running.`;
    const result = await showDialog({
      title: `Delete cluster ${cluster.name}?`,
      body: (
        <div className="dh-DeleteCluster">
          <p>{what}</p>
          {doomed.length ? (
            <>
              <p>These jobs will be killed:</p>
              <ul>{doomed.map(job => <li key={job.id}>{job.name} ({job.state})</li>)}</ul>
            </>
          ) : (
            <p>No job runs on it.</p>
          )}
        </div>
      ),
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: doomed.length ? 'Kill jobs and delete' : 'Delete' })]
    });
    if (!result.button.accept) {
      return;
    }
    setError(null);
    try {
      await props.model.remove(cluster.id, doomed.length > 0);
    } catch (e) {
      setError((e as Error).message);
    }
  };

  return (
    <li className={`dh-Cluster dh-Cluster-${cluster.state}`} data-cluster-id={cluster.id}>
      <div className="dh-ClusterTop">
        <span className="dh-ClusterName" title={cluster.id}>{cluster.name}</span>
        <span className="dh-Kind">{cluster.kind}</span>
        <span className={`dh-ClusterState dh-ClusterState-${cluster.state}`}>{cluster.state}</span>
      </div>
      <div className="dh-MasterUrl">{cluster.master_url}</div>
      {cluster.reason && (
        <div className={cluster.state === 'failed' ? 'dh-Error' : 'dh-Muted'}>{cluster.reason}</div>
      )}
      {capacity && <div className="dh-Capacity">{capacity}</div>}
      {cluster.workers && cluster.workers.length > 0 && (
        <ul className="dh-Workers">
          {cluster.workers.map(worker => (
            <li key={worker.id} title={worker.id}>
              <span>{worker.host}:{worker.port}</span>
              <span>{worker.cores_used}/{worker.cores} cores</span>
              <span>{formatMb(worker.memory_used_mb)}/{formatMb(worker.memory_mb)}</span>
              <span className="dh-Muted">{worker.state.toLowerCase()}</span>
            </li>
          ))}
        </ul>
      )}
      {cluster.connect && (
        <div className={`dh-ConnectLine dh-ConnectLine-${cluster.connect.available ? cluster.connect.state : 'unavailable'}`}
          title={cluster.connect.address ?? undefined}>
          {connectSummary(cluster.connect)}
        </div>
      )}
      <div className="dh-Capacity">
        {cluster.running_jobs} running · {cluster.queued_jobs} queued · at most {cluster.max_concurrent_jobs} at once
      </div>
      <div className="dh-Buttons">
        {cluster.ui_proxy_path && cluster.state === 'running' && (
          <button className="jp-mod-styled" onClick={() => props.openMasterUi(cluster)}>Master UI</button>
        )}
        {cluster.kind !== 'local' && cluster.state !== 'stopping' && (
          <button className="jp-mod-styled jp-mod-reject dh-DeleteClusterButton" onClick={() => void remove()}>Delete</button>
        )}
      </div>
      {error && <div className="dh-Error" role="alert">{error}</div>}
    </li>
  );
}

/** Jobs queued or running on a cluster: what deleting it kills. */
function activeJobsOn(jobs: JobsModel, clusterId: string): IJob[] {
  return [...jobs.jobs.values()].filter(job => job.cluster_id === clusterId && ACTIVE_STATES.has(job.state));
}
