"""System metrics: one sample of the machine and of this server, and their history."""

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from .jobs import UtcDatetime

# The default step keeps a history at about this many points: enough for a chart as wide
# as a sidebar, small enough to send every time a panel opens.
DEFAULT_HISTORY_POINTS = 360
# More points than this in one answer is a mistake (a week at one second), not a chart.
MAX_HISTORY_POINTS = 5_000


class CpuMetrics(BaseModel):
    percent: float = Field(description="Busy share of all logical cores since the previous sample, 0-100.")
    per_core: list[float] = Field(description="Busy share of each logical core since the previous sample, 0-100.")
    count: int = Field(description="Logical cores.")
    load_1: float = Field(description="Load average over 1 minute (runnable and uninterruptible tasks).")
    load_5: float = Field(description="Load average over 5 minutes.")
    load_15: float = Field(description="Load average over 15 minutes.")


class MemoryMetrics(BaseModel):
    total: int = Field(description="Physical memory, bytes.")
    used: int = Field(description="Memory in use, bytes (not counting reclaimable caches).")
    available: int = Field(description="Memory that can be given to programs without swapping, bytes.")
    percent: float = Field(description="Share of memory not available, 0-100.")


class SwapMetrics(BaseModel):
    total: int = Field(description="Swap space, bytes (0: no swap).")
    used: int = Field(description="Swap in use, bytes.")
    percent: float = Field(description="Share of swap in use, 0-100.")


class DiskMetrics(BaseModel):
    total: int = Field(description="Size of the filesystem holding the Jupyter root, bytes.")
    used: int = Field(description="Bytes used on that filesystem.")
    percent: float = Field(description="Share of that filesystem in use, 0-100 (of what unprivileged users may use).")
    read_bytes_per_sec: float | None = Field(
        description="Bytes read from all disks per second since the previous sample (null if the machine shows "
        "no disk counters, as in some containers)."
    )
    write_bytes_per_sec: float | None = Field(
        description="Bytes written to all disks per second since the previous sample (null if the machine shows "
        "no disk counters)."
    )


class NetworkMetrics(BaseModel):
    rx_bytes_per_sec: float = Field(
        description="Bytes received per second on all interfaces but loopback, since the previous sample."
    )
    tx_bytes_per_sec: float = Field(
        description="Bytes sent per second on all interfaces but loopback, since the previous sample."
    )


class JupyterMetrics(BaseModel):
    kernels: int = Field(description="Kernels this Jupyter server runs.")
    sessions: int = Field(description="Sessions (notebooks and consoles connected to a kernel) on this server.")


class JobMetrics(BaseModel):
    running: int = Field(description="Jobs starting or running (this server's user's, on every cluster).")
    queued: int = Field(description="Jobs waiting for a free slot on their cluster.")


class MetricsSample(BaseModel):
    """One sample of the machine this Jupyter server runs on. The live stream sends each as a
    `metrics` message on the `metrics` topic."""

    timestamp: UtcDatetime = Field(description="When the sample was taken (UTC).")
    host: str = Field(description="The machine the sample is of.")
    cpu: CpuMetrics
    memory: MemoryMetrics
    swap: SwapMetrics
    disk: DiskMetrics
    network: NetworkMetrics
    processes: int = Field(description="Processes on the machine (as this server sees them).")
    jupyter: JupyterMetrics
    jobs: JobMetrics


class MetricsHistoryQuery(BaseModel):
    """Query string of `GET /monitoring/metrics/history`."""

    model_config = ConfigDict(extra="forbid")

    minutes: int = Field(
        60, ge=1,
        description="How far back, in minutes (at most the retention, DataHarbourApp.metrics_retention_hours).",
    )
    step: int | None = Field(
        None, ge=1,
        description="Seconds per point. At or below the sampling interval every sample is returned; above it, "
        f"samples are grouped per step into min/avg/max. Default: the step that gives at most "
        f"{DEFAULT_HISTORY_POINTS} points (at most {MAX_HISTORY_POINTS} points in any case).",
    )


class SeriesPoints(BaseModel):
    """One series, one value per timestamp (null where no sample had a value)."""

    avg: list[float | None] = Field(description="Mean per step; raw history: the samples' values.")
    min: list[float | None] | None = Field(None, description="Lowest value per step; absent in raw history.")
    max: list[float | None] | None = Field(None, description="Highest value per step; absent in raw history.")

    @model_serializer(mode="wrap")
    def _leave_out_absent(self, handler):
        return {key: value for key, value in handler(self).items() if value is not None}


class MetricsHistory(BaseModel):
    """Samples of this server's host, column by column (uPlot's data layout: one x array, then
    one array per line). Raw history (`downsampled` false) has only `avg` per series, the
    samples' own values; downsampled history has `min`, `avg` and `max` per step, and its
    timestamps are the middles of the steps (start + step/2; the last one at most the newest
    sample's time), where a chart should draw what each step sums up."""

    minutes: int
    step: float = Field(description="Seconds per point: the sampling interval for raw history.")
    interval: float = Field(description="Seconds between two samples (0: sampling is off).")
    downsampled: bool
    host: str
    timestamps: list[float] = Field(description="Epoch seconds (UTC) of each point, ascending.")
    series: dict[str, SeriesPoints] = Field(
        description="By name: cpu_percent, load_1/5/15, memory_total/used/available/percent, swap_total/used/"
        "percent, disk_total/used/percent, disk_read/write_bytes_per_sec, network_rx/tx_bytes_per_sec, processes, "
        "kernels, sessions, jobs_running, jobs_queued."
    )
