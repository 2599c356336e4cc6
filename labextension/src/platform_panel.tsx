/**
 * The sidebar's Platform panel: live charts of the machine (CPU, memory, network), the health
 * of every platform service with its logs a click away, and how jobs have been going.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import * as React from 'react';

import { Chart } from './chart';
import { ALL_STATES, formatDuration } from './model';
import { ModelPanel } from './model_panel';
import { PlatformModel, WINDOW_MINUTES } from './platform';
import { IServiceStatus, formatBytes, formatPercent, formatRate, trendBars } from './platform_model';

export class PlatformPanel extends ModelPanel<PlatformModel> {
  constructor(model: PlatformModel) {
    super(model, {
      id: 'dataharbour-platform',
      label: 'Platform',
      caption: 'Machine metrics, platform services and job statistics'
    });
  }

  protected renderContent(): JSX.Element {
    return <Platform model={this.model} />;
  }
}

function Platform(props: { model: PlatformModel }): JSX.Element {
  return (
    <div className="dh-Platform">
      <Machine model={props.model} />
      <Services model={props.model} />
      <JobStatistics model={props.model} />
    </div>
  );
}

function PartError(props: { model: PlatformModel; part: string }): JSX.Element | null {
  const error = props.model.errors[props.part];
  return error ? <div className="dh-Error" role="alert">{error}</div> : null;
}

function Machine(props: { model: PlatformModel }): JSX.Element {
  const { window: points, latest } = props.model;
  const ts = points.timestamps;
  const percentSeries = React.useMemo(
    () => [
      { label: 'CPU', colour: '--jp-brand-color1', values: points.series.cpu_percent ?? [],
        min: points.min.cpu_percent, max: points.max.cpu_percent },
      { label: 'Memory', colour: '--jp-warn-color1', values: points.series.memory_percent ?? [],
        min: points.min.memory_percent, max: points.max.memory_percent }
    ],
    [points]
  );
  const networkSeries = React.useMemo(
    () => [
      { label: 'In', colour: '--jp-success-color1', values: points.series.network_rx_bytes_per_sec ?? [] },
      { label: 'Out', colour: '--jp-info-color1', values: points.series.network_tx_bytes_per_sec ?? [] }
    ],
    [points]
  );
  return (
    <section className="dh-Section dh-Machine">
      <h3>Machine <span className="dh-Muted">last {WINDOW_MINUTES} min</span></h3>
      <PartError model={props.model} part="metrics" />
      {latest && (
        <dl className="dh-Figures">
          <dt>CPU</dt>
          <dd>{formatPercent(latest.cpu?.percent)} of {latest.cpu?.count} cores · load {latest.cpu?.load_1?.toFixed(2)}</dd>
          <dt>Memory</dt>
          <dd>{formatBytes(latest.memory?.used)} of {formatBytes(latest.memory?.total)}</dd>
          <dt>Disk</dt>
          <dd>{formatPercent(latest.disk?.percent)} used · {formatRate(latest.disk?.read_bytes_per_sec)} read · {formatRate(latest.disk?.write_bytes_per_sec)} written</dd>
          <dt>Jupyter</dt>
          <dd>{latest.jupyter?.kernels} kernels · {latest.jupyter?.sessions} sessions</dd>
          <dt>Jobs</dt>
          <dd>{latest.jobs?.running} running · {latest.jobs?.queued} queued</dd>
        </dl>
      )}
      {ts.length ? (
        <>
          <Chart className="dh-CpuChart" timestamps={ts} series={percentSeries} range={[0, 100]} format={v => formatPercent(v)} height={110} />
          <Chart className="dh-NetworkChart" timestamps={ts} series={networkSeries} format={formatRate} height={90} />
        </>
      ) : props.model.samplingOff ? (
        <p className="dh-Empty">This server takes no samples (DataHarbourApp.metrics_interval is 0): no charts.</p>
      ) : (
        !props.model.errors.metrics && <p className="dh-Empty">Waiting for the first sample…</p>
      )}
    </section>
  );
}

function Services(props: { model: PlatformModel }): JSX.Element {
  const showLogs = async (service: IServiceStatus) => {
    let body: JSX.Element;
    try {
      const lines = await props.model.serviceLogs(service.name);
      // Opened at the end: the newest lines are the ones wanted.
      const toEnd = (node: HTMLPreElement | null) => node && (node.scrollTop = node.scrollHeight);
      body = (
        <pre className="dh-ServiceLog" ref={toEnd}>
          {lines.length ? lines.join('\n') : '(no lines yet)'}
        </pre>
      );
    } catch (error) {
      body = <p className="dh-Error">{(error as Error).message}</p>;
    }
    await showDialog({ title: `Logs: ${service.name}`, body, buttons: [Dialog.okButton({ label: 'Close' })] });
  };
  return (
    <section className="dh-Section dh-Services">
      <h3>Services</h3>
      <PartError model={props.model} part="services" />
      <ul className="dh-ServiceList">
        {props.model.services.map(service => (
          <li key={service.name}>
            <button
              className={`dh-Service dh-Service-${service.status}`}
              title={describe(service)}
              onClick={() => void showLogs(service)}
            >
              <span className="dh-HealthDot" aria-hidden="true" />
              <span className="dh-ServiceName">{service.name}</span>
              <span className="dh-ServiceStatus">{service.status}</span>
              <span className="dh-Muted">
                {service.status === 'healthy' && typeof service.latency_ms === 'number' ? `${Math.round(service.latency_ms)} ms` : ''}
              </span>
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

/** The hover text of a service: its reason when it is not healthy, else what it is. */
function describe(service: IServiceStatus): string {
  const parts = [`${service.name} (${service.kind}): ${service.status}`];
  if (service.reason) {
    parts.push(service.reason);
  }
  if (service.version) {
    parts.push(`version ${service.version}`);
  }
  parts.push('Click for its logs.');
  return parts.join('\n');
}

function JobStatistics(props: { model: PlatformModel }): JSX.Element {
  const overview = props.model.dashboard;
  const bars = React.useMemo(() => (overview ? trendBars(overview.trends.points) : null), [overview]);
  const series = React.useMemo(
    () =>
      bars
        ? [
            { label: 'Succeeded', colour: '--jp-success-color1', values: bars.succeeded },
            { label: 'Failed', colour: '--jp-error-color1', values: bars.failed }
          ]
        : [],
    [bars]
  );
  const stats = overview?.stats;
  return (
    <section className="dh-Section dh-JobStats">
      <h3>Jobs {overview && <span className="dh-Muted">{overview.stats.total_jobs} in all · last {overview.trends.days} days below</span>}</h3>
      <PartError model={props.model} part="dashboard" />
      {stats && (
        <>
          <ul className="dh-StateCounts">
            {ALL_STATES.map(state => (
              <li key={state} className={`dh-State dh-State-${state}`}>
                {state} {stats.jobs_by_state[state] ?? 0}
              </li>
            ))}
          </ul>
          <dl className="dh-Figures">
            <dt>Success rate</dt>
            <dd>{stats.success_rate === null ? '–' : formatPercent(stats.success_rate * 100, 1)}</dd>
            <dt>Duration</dt>
            <dd>mean {formatDuration(stats.mean_duration) || '–'} · p95 {formatDuration(stats.p95_duration) || '–'}</dd>
            <dt>Clusters</dt>
            <dd>{stats.active_clusters} of {stats.known_clusters} busy</dd>
            <dt>Notebooks</dt>
            <dd>{stats.notebooks}{stats.notebooks_truncated ? '+' : ''} under the root</dd>
          </dl>
        </>
      )}
      {bars && (
        <Chart className="dh-TrendChart" timestamps={bars.timestamps} series={series} bars timeFormat="{M}/{D}"
          format={v => v.toFixed(0)} height={100} />
      )}
    </section>
  );
}
