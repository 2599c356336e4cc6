/**
 * Charts drawn with uPlot: a time series chart (lines, with an optional min-max band) and a
 * daily bar chart. Colours come from JupyterLab's CSS variables and follow theme changes;
 * the chart follows its container's width.
 */
import * as React from 'react';
import uPlot from 'uplot';

export interface IChartSeries {
  label: string;
  /** A JupyterLab CSS variable, e.g. '--jp-brand-color1'. */
  colour: string;
  values: (number | null)[];
  /** Per-point range of a downsampled series, drawn as a faint band around the line. */
  min?: (number | null)[];
  max?: (number | null)[];
}

export interface IChartProps {
  /** Epoch seconds, ascending. */
  timestamps: number[];
  series: IChartSeries[];
  format: (value: number) => string;
  height?: number;
  /** Fixed y range (e.g. 0-100 for percentages); else fitted to the data. */
  range?: [number, number];
  bars?: boolean;
  /** uPlot's date format of the x axis' labels, e.g. '{H}:{mm}'. */
  timeFormat?: string;
  className?: string;
}

function cssColour(node: Element, variable: string): string {
  return getComputedStyle(node).getPropertyValue(variable).trim() || '#888';
}

/** Same colour, `alpha` opaque: for bands under lines. */
function translucent(colour: string, alpha: number): string {
  const hex = /^#([0-9a-f]{6})$/i.exec(colour);
  if (hex) {
    const n = parseInt(hex[1], 16);
    return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
  }
  return colour;
}

function buildOptions(node: Element, props: IChartProps, width: number): uPlot.Options {
  const axisColour = cssColour(node, '--jp-ui-font-color2');
  const gridColour = cssColour(node, '--jp-border-color2');
  const formatTime = uPlot.fmtDate(props.timeFormat ?? '{H}:{mm}');
  const axis = (values?: uPlot.Axis['values']): uPlot.Axis => ({
    stroke: axisColour,
    grid: { stroke: gridColour, width: 1 },
    ticks: { stroke: gridColour, width: 1 },
    font: '10px sans-serif',
    values
  });
  const series: uPlot.Series[] = [{}];
  const bands: uPlot.Band[] = [];
  props.series.forEach((s, index) => {
    const colour = cssColour(node, s.colour);
    const bar = props.bars
      ? { paths: uPlot.paths.bars!({ size: [0.4, 24], align: (index === 0 ? -1 : 1) as -1 | 1 }), fill: colour }
      : { width: 1.5 };
    series.push({ label: s.label, stroke: colour, points: { show: false }, ...bar });
  });
  // Bands: the max and min series follow the lines, unlabelled, filled between.
  props.series.forEach((s, index) => {
    if (s.min && s.max) {
      const colour = cssColour(node, s.colour);
      const upper = series.length;
      series.push({ stroke: 'transparent', points: { show: false } });
      series.push({ stroke: 'transparent', points: { show: false } });
      bands.push({ series: [upper, upper + 1], fill: translucent(colour, 0.15) });
    }
  });
  return {
    width,
    height: props.height ?? 120,
    series,
    bands,
    legend: { show: false }, // ours is below: colours and latest values, also readable in a screenshot
    cursor: { drag: { x: false, y: false }, points: { show: false } },
    scales: {
      x: { time: true },
      y: props.range
        ? { range: props.range }
        : { range: (_, min, max) => [Math.min(0, min), max > 0 ? max * (props.bars ? 1.25 : 1.1) : 1] }
    },
    axes: [
      { ...axis((_, splits) => splits.map(v => formatTime(new Date(v * 1000)))), size: 24, space: 50 },
      {
        ...axis((_, splits) => splits.map(v => props.format(v))),
        size: 56,
        space: 18,
        // Counts (the bar charts) step in whole numbers.
        ...(props.bars ? { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] } : {})
      }
    ]
  };
}

function chartData(props: IChartProps): uPlot.AlignedData {
  const data: (number | null)[][] = [props.timestamps, ...props.series.map(s => s.values)];
  props.series.forEach(s => {
    if (s.min && s.max) {
      data.push(s.max, s.min);
    }
  });
  return data as uPlot.AlignedData;
}

/** The newest value of a series (its last non-null point). */
function latestText(values: (number | null)[], format: (value: number) => string): string {
  for (let i = values.length - 1; i >= 0; i--) {
    const value = values[i];
    if (value !== null && value !== undefined) {
      return format(value);
    }
  }
  return '–';
}

/** A uPlot chart in a React tree. Its series layout is fixed at creation; data may change. */
export function Chart(props: IChartProps): JSX.Element {
  const host = React.useRef<HTMLDivElement>(null);
  const plot = React.useRef<uPlot | null>(null);
  const latest = React.useRef(props);
  latest.current = props;
  const [theme, setTheme] = React.useState(document.body.dataset.jpThemeName ?? '');
  // What the chart is built from; a change of any of it builds a new chart (data alone does not).
  const layout = [
    ...props.series.map(s => `${s.label}:${s.colour}:${Boolean(s.min && s.max)}`),
    props.range?.join('-'), props.bars, props.height, props.timeFormat
  ].join('|');

  React.useEffect(() => {
    const observer = new MutationObserver(() => setTheme(document.body.dataset.jpThemeName ?? ''));
    observer.observe(document.body, { attributes: true, attributeFilter: ['data-jp-theme-name'] });
    return () => observer.disconnect();
  }, []);

  React.useEffect(() => {
    const node = host.current!;
    const created = new uPlot(buildOptions(node, latest.current, Math.max(node.clientWidth, 100)), chartData(latest.current), node);
    plot.current = created;
    const resize = new ResizeObserver(() => {
      if (node.clientWidth > 0 && node.clientWidth !== created.width) {
        created.setSize({ width: node.clientWidth, height: latest.current.height ?? 120 });
      }
    });
    resize.observe(node);
    return () => {
      resize.disconnect();
      created.destroy();
      plot.current = null;
    };
  }, [theme, layout]);

  React.useEffect(() => {
    plot.current?.setData(chartData(props));
  }, [props.timestamps, props.series]);

  // How many points are drawn and the newest one's time: what a test (or a curious user) can read.
  const last = props.timestamps.length ? props.timestamps[props.timestamps.length - 1] : '';
  return (
    <div className={`dh-Chart ${props.className ?? ''}`} data-points={props.timestamps.length} data-last={last}
      data-theme={theme}>
      <div ref={host} />
      <ul className="dh-ChartLegend">
        {props.series.map(s => (
          <li key={s.label}>
            <span className="dh-Swatch" style={{ background: `var(${s.colour})` }} />
            {s.label} <b>{latestText(s.values, props.format)}</b>
          </li>
        ))}
      </ul>
    </div>
  );
}
