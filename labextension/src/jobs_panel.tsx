/**
 * The sidebar's Jobs panel: submit a job, the live job list, a job's details and its log.
 */
import * as React from 'react';

import { ISubmitRequest } from './api';
import { ClustersModel } from './clusters';
import { IConnectInfo, acceptsJobs, connectStatus, formMode } from './clusters_model';
import {
  IJob, ALL_STATES, ACTIVE_STATES, ProgramMode, RunMode, formatDuration, formatParameters, hasProgress, modeBadge,
  modeDescription, modeLabel, parseConf, progressLabel, visibleJobs
} from './model';
import { JobsModel } from './jobs';
import { ModelPanel } from './model_panel';
import { formatBytes } from './platform_model';
import { IJobInput, addInputs } from './storage_model';
import { LiveStream } from './stream';

/** A code editor in `host` (JupyterLab's CodeMirror), reporting every change. */
export type EditorFactory = (
  host: HTMLElement,
  initial: string,
  onChange: (source: string) => void
) => { dispose(): void };

export interface IPanelOptions {
  model: JobsModel;
  clusters: ClustersModel;
  stream: LiveStream;
  makeEditor?: EditorFactory;
  openSparkUi: (job: IJob) => void;
  settings: () => { defaultCluster: string; logLinesKept: number };
}

export class JobsPanel extends ModelPanel<JobsModel> {
  constructor(private readonly options: IPanelOptions) {
    super(options.model, { id: 'dataharbour-jobs', label: 'Jobs', caption: 'Submit Spark jobs and watch them' });
  }

  /** Show one job's details (after a notification's "Show details"). */
  showJob(id: string): void {
    this._selected = id;
    this.update();
  }

  /** The job whose details are shown, if any (the palette's job commands act on it). */
  get selectedJob(): IJob | undefined {
    return this._selected ? this.options.model.jobs.get(this._selected) : undefined;
  }

  /** Objects of the Storage tab added to the submit form's inputs; the form is opened. */
  addInputs(bucket: string, keys: string[]): void {
    this._inputs = addInputs(this._inputs, bucket, keys);
    this.showForm();
  }

  /** Back to the list with the submit form open. */
  showForm(): void {
    this._selected = null;
    this._formRequests += 1;
    this.update();
  }

  protected renderContent(): JSX.Element {
    return (
      <Sidebar
        {...this.options}
        selected={this._selected}
        formRequests={this._formRequests}
        inputs={this._inputs}
        onInputsChange={inputs => {
          this._inputs = inputs;
          this.update();
        }}
        onSelect={id => {
          this._selected = id;
          this.update();
        }}
      />
    );
  }

  private _selected: string | null = null;
  private _formRequests = 0;
  private _inputs: IJobInput[] = [];
}

interface ISidebarProps extends IPanelOptions {
  selected: string | null;
  formRequests: number;
  /** The submit form's object storage inputs (kept here: the Storage tab adds to them). */
  inputs: IJobInput[];
  onInputsChange: (inputs: IJobInput[]) => void;
  onSelect: (id: string | null) => void;
}

function Sidebar(props: ISidebarProps): JSX.Element {
  const { model, selected } = props;
  const job = selected ? model.jobs.get(selected) : undefined;
  return (
    <div className="dh-Sidebar">
      {job ? (
        <JobDetails key={job.id} {...props} job={job} onBack={() => props.onSelect(null)} />
      ) : (
        <>
          <SubmitForm {...props} />
          <JobList {...props} />
        </>
      )}
    </div>
  );
}

function SubmitForm(props: ISidebarProps): JSX.Element {
  const [open, setOpen] = React.useState(false);
  const clusters = useClusters(props.clusters);
  const [name, setName] = React.useState('');
  const [cluster, setCluster] = React.useState('');
  // The mode the user chose in this form session; null: the cluster's default (followed as the cluster changes).
  const [pickedMode, setPickedMode] = React.useState<ProgramMode | null>(null);
  const [code, setCode] = React.useState(
    'from pyspark.sql import SparkSession\nspark = SparkSession.builder.getOrCreate()\nspark.range(10).show()\n'
  );
  const [args, setArgs] = React.useState('');
  const [conf, setConf] = React.useState('');
  const [busy, setBusy] = React.useState(false);
  const [error, setError] = React.useState<string | null>(null);

  React.useEffect(() => {
    if (props.formRequests) {
      setOpen(true); // "New Spark Job" from the command palette
    }
  }, [props.formRequests]);

  React.useEffect(() => {
    if (open) {
      props.clusters.start();
    } else {
      setPickedMode(null); // a new form session starts from the cluster's default again
    }
  }, [open]);

  const connect = clusters.find(c => c.id === cluster)?.connect;
  const mode = formMode(connect, pickedMode);

  // The preferred cluster once the list is there (the settings' default, else the first).
  React.useEffect(() => {
    if (!cluster && clusters.length) {
      const preferred = props.settings().defaultCluster;
      setCluster(clusters.some(c => c.id === preferred) ? preferred : clusters[0].id);
    }
  }, [clusters]);

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    setError(null);
    let parsedConf: Record<string, string>;
    try {
      parsedConf = parseConf(conf);
    } catch (e) {
      setError((e as Error).message);
      return;
    }
    setBusy(true);
    try {
      const request: ISubmitRequest = {
        name: name.trim() || 'Spark job',
        cluster_id: cluster || undefined,
        code,
        args: args.split('\n').map(a => a.trim()).filter(a => a),
        conf: parsedConf,
        ...(mode ? { mode } : {}),
        ...(props.inputs.length ? { inputs: props.inputs } : {})
      };
      const job = await props.model.submit(request);
      setOpen(false);
      props.onInputsChange([]);
      props.onSelect(job.id);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  if (!open) {
    return (
      <button className="jp-mod-styled jp-mod-accept dh-NewJob" onClick={() => setOpen(true)}>
        New Spark job
      </button>
    );
  }
  return (
    <form className="dh-Form" onSubmit={submit}>
      <label>
        Name
        <input className="jp-mod-styled" value={name} placeholder="Word count" onChange={e => setName(e.target.value)} />
      </label>
      <label>
        Cluster
        <select className="jp-mod-styled" value={cluster} onChange={e => setCluster(e.target.value)}>
          {clusters.map(c => (
            <option key={c.id} value={c.id} disabled={!acceptsJobs(c)}>
              {c.name} ({c.master_url}){c.state === 'running' ? '' : ` · ${c.state}`}
            </option>
          ))}
        </select>
      </label>
      {connect?.available && mode && <ModePicker connect={connect} mode={mode} onChange={setPickedMode} />}
      {props.clusters.loadError && (
        <div className="dh-Error" role="alert">Clusters could not be loaded: {props.clusters.loadError}</div>
      )}
      <label>
        PySpark code
        {props.makeEditor ? (
          <CodeEditorBox makeEditor={props.makeEditor} initial={code} onChange={setCode} />
        ) : (
          <textarea className="jp-mod-styled dh-Code" value={code} rows={8} spellCheck={false}
            onChange={e => setCode(e.target.value)} />
        )}
      </label>
      <label>
        Arguments (one per line)
        <textarea className="jp-mod-styled" value={args} rows={2} onChange={e => setArgs(e.target.value)} />
      </label>
      <label>
        Spark conf (key=value per line)
        <textarea className="jp-mod-styled" value={conf} rows={2} placeholder="spark.sql.shuffle.partitions=4"
          onChange={e => setConf(e.target.value)} />
      </label>
      {props.inputs.length > 0 && <InputsField inputs={props.inputs} onChange={props.onInputsChange} />}
      {error && <div className="dh-Error" role="alert">{error}</div>}
      <div className="dh-Buttons">
        <button type="button" className="jp-mod-styled jp-mod-reject" onClick={() => {
          setOpen(false);
          props.onInputsChange([]);
        }}>
          Cancel
        </button>
        <button type="submit" className="jp-mod-styled jp-mod-accept" disabled={busy}>
          {busy ? 'Submitting…' : 'Run as Spark job'}
        </button>
      </div>
    </form>
  );
}

/** The job's inputs from object storage: each URI with the path (under DATAHARBOUR_INPUT_DIR) it gets. */
function InputsField(props: { inputs: IJobInput[]; onChange: (inputs: IJobInput[]) => void }): JSX.Element {
  const rename = (index: number, name: string) =>
    props.onChange(props.inputs.map((input, i) => (i === index ? { ...input, as: name } : input)));
  return (
    <fieldset className="dh-Inputs">
      <legend>Inputs <span className="dh-Muted">(downloaded into $DATAHARBOUR_INPUT_DIR as)</span></legend>
      {props.inputs.map((input, index) => (
        <div key={input.uri} className="dh-Input">
          <span className="dh-InputUri" title={input.uri}>{input.uri}</span>
          <span className="dh-Muted">as</span>
          <input className="jp-mod-styled dh-InputAs" value={input.as} aria-label={`Path of ${input.uri}`}
            onChange={e => rename(index, e.target.value)} />
          <button type="button" className="dh-RemoveInput" title="Remove this input"
            onClick={() => props.onChange(props.inputs.filter((_, i) => i !== index))}>×</button>
        </div>
      ))}
    </fieldset>
  );
}

/** The submit form's mode select, with the cluster's warm pool as it is now and what warm mode cannot do. */
function ModePicker(props: { connect: IConnectInfo; mode: ProgramMode; onChange: (mode: ProgramMode) => void }) {
  const { connect, mode } = props;
  return (
    <div className="dh-ModePicker">
      <div className="dh-ModeRow">
        <label>
          Mode
          <select className="jp-mod-styled dh-ModeSelect" value={mode}
            onChange={e => props.onChange(e.target.value as ProgramMode)}>
            {(['connect', 'batch'] as ProgramMode[]).map(m => (
              <option key={m} value={m}>{modeLabel(m)}</option>
            ))}
          </select>
        </label>
        <span className={`dh-ConnectStatus dh-ConnectStatus-${connect.state}`} role="status"
          title={connect.reason || connect.address || undefined}>
          {connectStatus(connect)}
        </span>
      </div>
      {mode === 'connect' && <div className="dh-Hint">DataFrame and SQL only: no sparkContext or RDDs</div>}
    </div>
  );
}

/** The clusters, re-rendering the component whenever they change (live over the stream). */
function useClusters(model: ClustersModel) {
  const [, setVersion] = React.useState(0);
  React.useEffect(() => {
    const bump = () => setVersion(v => v + 1);
    model.changed.connect(bump);
    return () => {
      model.changed.disconnect(bump);
    };
  }, [model]);
  return model.clusters;
}

function CodeEditorBox(props: { makeEditor: EditorFactory; initial: string; onChange: (s: string) => void }) {
  const host = React.useRef<HTMLDivElement>(null);
  React.useEffect(() => {
    const editor = props.makeEditor(host.current!, props.initial, props.onChange);
    return () => editor.dispose();
  }, []);
  return <div className="dh-CodeEditor" ref={host} />;
}

function JobList(props: ISidebarProps): JSX.Element {
  const [state, setState] = React.useState('');
  const [cluster, setCluster] = React.useState('');
  const [name, setName] = React.useState('');
  const jobs = visibleJobs(props.model.jobs, { state, cluster, name });
  const clusters = [...new Set([...props.model.jobs.values()].map(job => job.cluster_id))].sort();
  return (
    <div className="dh-Jobs">
      <div className="dh-Filters">
        <select className="jp-mod-styled" value={state} onChange={e => setState(e.target.value)} aria-label="State">
          <option value="">All states</option>
          {ALL_STATES.map(s => (
            <option key={s} value={s}>{s}</option>
          ))}
        </select>
        {clusters.length > 1 && (
          <select className="jp-mod-styled" value={cluster} onChange={e => setCluster(e.target.value)}
            aria-label="Cluster">
            <option value="">All clusters</option>
            {clusters.map(c => (
              <option key={c} value={c}>{c}</option>
            ))}
          </select>
        )}
        <input className="jp-mod-styled" placeholder="Filter by name" value={name} onChange={e => setName(e.target.value)} />
      </div>
      {props.model.loadError && <div className="dh-Error" role="alert">{props.model.loadError}</div>}
      {jobs.length === 0 ? (
        <p className="dh-Empty">
          {props.model.jobs.size ? 'No job matches the filter.' : 'No jobs yet. Submit one above.'}
        </p>
      ) : (
        <ul className="dh-JobList">
          {jobs.map(job => (
            <li key={job.id} className="dh-JobRow" onClick={() => props.onSelect(job.id)} title={job.id}>
              <div className="dh-JobRow-top">
                <span className="dh-JobName">{job.name}</span>
                <StateBadge state={job.state} />
              </div>
              <div className="dh-JobRow-bottom">
                <span className="dh-JobRow-where">
                  <span className="dh-JobCluster">{job.cluster_id}</span>
                  {job.mode && <ModeBadge mode={job.mode} />}
                </span>
                <span>{formatDuration(job.duration)}</span>
              </div>
              {ACTIVE_STATES.has(job.state) && hasProgress(job.progress) && (
                <ProgressBar job={job} />
              )}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function StateBadge(props: { state: string }): JSX.Element {
  return <span className={`dh-State dh-State-${props.state}`}>{props.state}</span>;
}

function ModeBadge(props: { mode: RunMode }): JSX.Element {
  return (
    <span className={`dh-Mode dh-Mode-${props.mode}`} title={modeLabel(props.mode)}>{modeBadge(props.mode)}</span>
  );
}

function ProgressBar(props: { job: IJob }): JSX.Element {
  const p = props.job.progress!;
  const label = progressLabel(p);
  return (
    <div className="dh-Progress" title={p.current_stage || label}>
      <div className="dh-Progress-bar" style={{ width: `${p.percent}%` }} />
      <span className="dh-Progress-label">{label}</span>
    </div>
  );
}

/** The whole job (inputs, archived files), read again when what the list says of them changes. */
function useFullJob(model: JobsModel, job: IJob): IJob | null {
  const [full, setFull] = React.useState<IJob | null>(null);
  const key = `${job.id}/${job.attempt}/${job.state}/${job.archiving}/${job.artifacts_error}`;
  React.useEffect(() => {
    let current = true;
    model.api.getJob(job.id).then(
      loaded => current && setFull(loaded),
      () => undefined // deleted meanwhile, or offline: the list's view is all there is
    );
    return () => {
      current = false;
    };
  }, [key]);
  return full?.id === job.id ? full : null;
}

function JobDetails(props: ISidebarProps & { job: IJob; onBack: () => void }): JSX.Element {
  const { job, model } = props;
  const full = useFullJob(model, job);
  const [error, setError] = React.useState<string | null>(null);
  const act = (what: () => Promise<void>) => async () => {
    setError(null);
    try {
      await what();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const active = ACTIVE_STATES.has(job.state);
  return (
    <div className="dh-Details">
      <button className="jp-mod-styled dh-Back" onClick={props.onBack}>← All jobs</button>
      <h3>{job.name} <StateBadge state={job.state} /></h3>
      <dl>
        <dt>Id</dt><dd>{job.id}</dd>
        <dt>Cluster</dt><dd>{job.cluster_id}</dd>
        <dt>Attempt</dt><dd>{job.attempt}</dd>
        {job.mode && (<><dt>Mode</dt><dd>{modeDescription(job)}</dd></>)}
        {job.notebook && (<><dt>Notebook</dt><dd>{job.notebook}</dd></>)}
        {job.parameters && Object.keys(job.parameters).length > 0 && (
          <><dt>Parameters</dt><dd className="dh-Parameters">{formatParameters(job.parameters)}</dd></>
        )}
        {job.spark_app_id && (<><dt>Spark app</dt><dd>{job.spark_app_id}</dd></>)}
        <dt>Duration</dt><dd>{formatDuration(job.duration) || '–'}</dd>
        {job.exit_code !== null && job.exit_code !== undefined && (<><dt>Exit code</dt><dd>{job.exit_code}</dd></>)}
      </dl>
      {hasProgress(job.progress) && <ProgressBar job={job} />}
      {job.error && <div className="dh-Error dh-JobError">{job.error}</div>}
      {full?.inputs && full.inputs.length > 0 && (
        <div className="dh-JobInputs">
          <div className="dh-Log-title">Inputs</div>
          <ul>{full.inputs.map(input => <li key={input.as}><code>{input.as}</code> ← {input.uri}</li>)}</ul>
        </div>
      )}
      {full?.attempt === job.attempt && <Artifacts {...props} job={{ ...job, artifacts: full.artifacts }} />}
      <div className="dh-Buttons">
        {active && <button className="jp-mod-styled jp-mod-warn" onClick={act(() => model.kill(job.id))}>Kill</button>}
        {!active && <button className="jp-mod-styled" onClick={act(() => model.restart(job.id))}>Restart</button>}
        {!active && (
          <button className="jp-mod-styled jp-mod-reject" onClick={act(async () => {
            await model.remove(job.id);
            props.onBack();
          })}>Delete</button>
        )}
        {job.state === 'running' && (job.mode !== 'notebook' || job.spark_app_id) && (
          <button className="jp-mod-styled" onClick={() => props.openSparkUi(job)}>Open Spark UI</button>
        )}
      </div>
      {error && <div className="dh-Error" role="alert">{error}</div>}
      <LogView key={`${job.id}/${job.attempt}`} {...props} />
    </div>
  );
}

/** The latest run's files archived in the object storage, each a download through this server. */
function Artifacts(props: ISidebarProps & { job: IJob }): JSX.Element | null {
  const { job } = props;
  if (!job.artifacts?.length && !job.artifacts_error && !job.archiving) {
    return null; // not archived, or no object storage
  }
  return (
    <div className="dh-Artifacts">
      <div className="dh-Log-title">Archived files</div>
      {job.archiving && <div className="dh-Muted">Archiving the run's files…</div>}
      {job.artifacts_error && <div className="dh-Warning">{job.artifacts_error}</div>}
      <ul>
        {(job.artifacts ?? []).map(artifact => (
          <li key={artifact.name} title={artifact.uri}>
            <a href={props.model.api.jobArtifactUrl(job.id, job.attempt, artifact.name)} download>{artifact.name}</a>
            <span className="dh-Muted"> {formatBytes(artifact.size)}</span>
          </li>
        ))}
      </ul>
    </div>
  );
}

const EARLIER_LINES = 500;

/** Log lines as the pages they came in, each with the byte offset of its first line. */
interface ISegment {
  offset: number;
  lines: string[];
}

/** Drop whole pages from the front beyond `keep` lines: the first kept page's offset stays exact. */
function trimFront(segments: ISegment[], keep: number): ISegment[] {
  let total = segments.reduce((sum, segment) => sum + segment.lines.length, 0);
  let start = 0;
  while (start < segments.length - 1 && total - segments[start].lines.length >= keep) {
    total -= segments[start].lines.length;
    start += 1;
  }
  return start ? segments.slice(start) : segments;
}

/**
 * The job's log: the last lines first, then new ones as the stream brings them; scrolling to
 * the top loads earlier ones.
 */
function LogView(props: ISidebarProps & { job: IJob }): JSX.Element {
  const { job, stream, model } = props;
  const [segments, setSegments] = React.useState<ISegment[]>([]);
  const [error, setError] = React.useState<string | null>(null);
  const offset = React.useRef<number | null>(null);
  const loadingEarlier = React.useRef(false);
  const keepScroll = React.useRef<number | null>(null); // scrollHeight before earlier lines went in
  const pre = React.useRef<HTMLPreElement>(null);
  const atBottom = React.useRef(true);

  React.useEffect(() => {
    const keep = props.settings().logLinesKept;
    const topic = `job_log:${job.id}`;
    let cancelled = false;
    const onMessage = (_: unknown, message: any) => {
      if (message.type === 'job_log' && message.data.job_id === job.id && offset.current !== null) {
        if (message.data.offset !== offset.current) {
          stream.resync(topic); // not where this view is (an older subscription's page): go on from here
          return;
        }
        offset.current = message.data.next_offset;
        if (message.data.lines.length) {
          const page = { offset: message.data.offset, lines: message.data.lines };
          setSegments(previous => trimFront(previous.concat([page]), keep));
        }
      } else if (message.type === 'error' && message.data.topic === topic) {
        setError(message.data.message);
      }
    };
    stream.message.connect(onMessage);
    model.api
      .logs(job.id, { tail: Math.min(keep, 1000), attempt: job.attempt })
      .then(page => {
        if (cancelled) {
          return;
        }
        setSegments([{ offset: page.offset, lines: page.lines }]);
        offset.current = page.next_offset;
        stream.followLog(topic, () => ({ offset: offset.current, attempt: job.attempt }));
      })
      .catch(e => !cancelled && setError(`The log could not be read: ${(e as Error).message}`));
    return () => {
      cancelled = true;
      stream.message.disconnect(onMessage);
      stream.unfollowLog(topic);
    };
  }, [job.id, job.attempt]);

  React.useEffect(() => {
    const node = pre.current;
    if (!node) {
      return;
    }
    if (keepScroll.current !== null) {
      node.scrollTop += node.scrollHeight - keepScroll.current; // earlier lines went in above: stay put
      keepScroll.current = null;
    } else if (atBottom.current) {
      // Follow the end only while the reader is there; never scroll the panel around them.
      node.scrollTop = node.scrollHeight;
    }
  }, [segments]);

  const loadEarlier = () => {
    const from = segments.length ? segments[0].offset : 0;
    if (loadingEarlier.current || from === 0) {
      return; // busy, or the log's start is already shown
    }
    loadingEarlier.current = true;
    model.api
      .logs(job.id, { tail: EARLIER_LINES, before: from, attempt: job.attempt })
      .then(page => {
        keepScroll.current = pre.current?.scrollHeight ?? null;
        setSegments(previous =>
          previous.length && previous[0].offset === from ? [{ offset: page.offset, lines: page.lines }, ...previous] : previous
        );
      })
      .catch(e => setError(`Earlier lines could not be read: ${(e as Error).message}`))
      .finally(() => (loadingEarlier.current = false));
  };

  const onScroll = () => {
    const node = pre.current;
    if (node) {
      atBottom.current = node.scrollHeight - node.scrollTop - node.clientHeight < 24;
      if (node.scrollTop < 16) {
        loadEarlier();
      }
    }
  };

  const lines = ([] as string[]).concat(...segments.map(segment => segment.lines));
  const atStart = !segments.length || segments[0].offset === 0;
  return (
    <div className="dh-Log">
      <div className="dh-Log-title">Log</div>
      {error && <div className="dh-Error">{error}</div>}
      <pre className="dh-Log-lines" ref={pre} onScroll={onScroll}>
        {lines.length && !atStart ? '⋯ scroll up for earlier lines\n' : ''}
        {lines.length ? lines.join('\n') : ACTIVE_STATES.has(job.state) ? 'Waiting for output…' : '(empty)'}
      </pre>
    </div>
  );
}
