"""MetricsSampler: a sample of the machine and of this server every `interval` seconds.

Each sample is kept as `latest`, published on the EventHub (a `metrics` message on the
`metrics` topic) and written to the metrics store for the history charts. psutil runs on
one worker thread of the sampler's own (see system_readings.py); Jupyter's kernel and
session counts are read on the event loop, where they live and cost microseconds; job
counts come from the store's thread. Old samples are pruned every few minutes.

With `interval` 0 there is no background sampling: `current()` takes a sample when asked
(reused for a second, so that a page making several calls does not measure each time);
such samples are neither stored nor published.
"""

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from ..events import EventHub
from ..models import (
    CpuMetrics,
    DiskMetrics,
    JobMetrics,
    JupyterMetrics,
    MemoryMetrics,
    MetricsSample,
    NetworkMetrics,
    SwapMetrics,
)
from ..store import JobStore
from ..store.metrics_store import MetricsStore
from .job_states import ACTIVE
from .system_readings import SystemReader, SystemReading

log = logging.getLogger("dataharbour_ext.metrics")

METRICS_TOPICS = ("metrics",)
PRUNE_EVERY_SECONDS = 600.0
ON_DEMAND_REUSE_SECONDS = 1.0
STALE_INTERVALS = 5  # a latest sample this many intervals old means the sampler is not getting through
# While sampling keeps failing (a database that went away), say so at most this often.
ERROR_LOG_EVERY_SECONDS = 60.0


class MetricsSampler:
    def __init__(self, *, interval: float, retention_hours: float, disk_path: str, host: str, hub: EventHub,
                 job_store: JobStore, metrics_store: MetricsStore, kernel_manager, session_manager):
        self.interval = interval
        self.retention_hours = retention_hours
        self.host = host
        self.hub = hub
        self.job_store = job_store
        self.metrics_store = metrics_store
        self.kernel_manager = kernel_manager
        self.session_manager = session_manager
        self.latest: MetricsSample | None = None
        self._latest_at = 0.0  # loop time of `latest`
        self._reader = SystemReader(disk_path)
        self._psutil_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataharbour-metrics")
        self._task: asyncio.Task | None = None
        self._in_flight: asyncio.Future | None = None
        self._failing_since_log: float | None = None

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if self.interval > 0:
            self._task = asyncio.create_task(self._run(), name="dataharbour-metrics-sampler")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._in_flight is not None:
            self._in_flight.cancel()
        # A reading still on the thread finishes; nothing reads the store after this.
        await asyncio.get_running_loop().run_in_executor(None, self._psutil_thread.shutdown, True)

    # ---- what others call ------------------------------------------------------------

    async def current(self) -> MetricsSample:
        """The latest sample, or one taken now: when there is none yet, when sampling is off
        and the last is older than a second, or when sampling has stalled (it keeps failing)."""
        if self.latest is not None:
            age = asyncio.get_running_loop().time() - self._latest_at
            if age < max(STALE_INTERVALS * self.interval, ON_DEMAND_REUSE_SECONDS):
                return self.latest
        return await asyncio.shield(self._shared_sample(record=self.interval > 0 and self.latest is None))

    def _shared_sample(self, *, record: bool) -> asyncio.Future:
        """The sample being taken, or a new one: callers at the same moment share one."""
        if self._in_flight is None:
            self._in_flight = asyncio.ensure_future(self._sample_once(record=record))
            self._in_flight.add_done_callback(self._clear_in_flight)
        return self._in_flight

    def _clear_in_flight(self, future: asyncio.Future) -> None:
        if self._in_flight is future:
            self._in_flight = None

    # ---- sampling --------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        next_tick = loop.time()
        while True:
            try:
                if loop.time() >= next_prune:
                    next_prune = loop.time() + PRUNE_EVERY_SECONDS
                    await self.prune()
            except Exception:
                log.exception("DataHarbour: pruning old metric samples failed; trying again in %.0f s",
                              PRUNE_EVERY_SECONDS)
            try:
                await asyncio.shield(self._shared_sample(record=True))
                self._failing_since_log = None
            except Exception:
                self._log_failure(loop.time())
            # On a fixed grid: a slow sample does not shift the ones after it; a missed
            # tick (a suspended machine) is skipped, not caught up.
            next_tick += self.interval
            now = loop.time()
            if next_tick < now:
                next_tick = now + self.interval
            await asyncio.sleep(next_tick - now)

    async def _sample_once(self, *, record: bool) -> MetricsSample:
        loop = asyncio.get_running_loop()
        reading, counts, sessions = await asyncio.gather(
            loop.run_in_executor(self._psutil_thread, self._reader.read),
            self.job_store.run_counts(("queued", *ACTIVE)),
            self.session_manager.list_sessions(),
        )
        sample = _sample(reading, self.host, kernels=len(self.kernel_manager.list_kernel_ids()),
                         sessions=len(sessions), counts=counts)
        self.latest, self._latest_at = sample, loop.time()
        if record:
            self.hub.publish("metrics", sample.model_dump(mode="json"), METRICS_TOPICS)
            await self.metrics_store.add(_columns(sample, reading))  # a failure here fails the tick, logged
        return sample

    async def prune(self) -> int:
        cutoff_ms = int((time.time() - self.retention_hours * 3600) * 1000)
        removed = await self.metrics_store.prune(cutoff_ms)
        if removed:
            log.debug("DataHarbour: pruned %d metric samples older than %s hours", removed, self.retention_hours)
        return removed

    def _log_failure(self, now: float) -> None:
        if self._failing_since_log is None or now - self._failing_since_log >= ERROR_LOG_EVERY_SECONDS:
            self._failing_since_log = now
            log.exception("DataHarbour: taking a metrics sample failed; sampling goes on")


def _sample(reading: SystemReading, host: str, *, kernels: int, sessions: int, counts: dict) -> MetricsSample:
    by_state: dict[str, int] = {}
    for (_cluster, state), count in counts.items():
        by_state[state] = by_state.get(state, 0) + count
    return MetricsSample(
        timestamp=datetime.now(timezone.utc),
        host=host,
        cpu=CpuMetrics(percent=reading.cpu_percent, per_core=reading.cpu_per_core, count=reading.cpu_count,
                       load_1=reading.load_1, load_5=reading.load_5, load_15=reading.load_15),
        memory=MemoryMetrics(total=reading.memory_total, used=reading.memory_used,
                             available=reading.memory_available, percent=reading.memory_percent),
        swap=SwapMetrics(total=reading.swap_total, used=reading.swap_used, percent=reading.swap_percent),
        disk=DiskMetrics(total=reading.disk_total, used=reading.disk_used, percent=reading.disk_percent,
                         read_bytes_per_sec=reading.disk_read_bytes_per_sec,
                         write_bytes_per_sec=reading.disk_write_bytes_per_sec),
        network=NetworkMetrics(rx_bytes_per_sec=reading.network_rx_bytes_per_sec,
                               tx_bytes_per_sec=reading.network_tx_bytes_per_sec),
        processes=reading.processes,
        jupyter=JupyterMetrics(kernels=kernels, sessions=sessions),
        jobs=JobMetrics(running=sum(by_state.get(state, 0) for state in ACTIVE), queued=by_state.get("queued", 0)),
    )


# The live sample has each core's share; the history charts the total, so that is all it keeps.
NOT_STORED = frozenset({"cpu_per_core"})


def _columns(sample: MetricsSample, reading: SystemReading) -> dict:
    """The sample as a row of the metrics store."""
    return {
        "taken_at_ms": int(sample.timestamp.timestamp() * 1000),
        **{name: getattr(reading, name) for name in reading.__dataclass_fields__ if name not in NOT_STORED},
        "kernels": sample.jupyter.kernels,
        "sessions": sample.jupyter.sessions,
        "jobs_running": sample.jobs.running,
        "jobs_queued": sample.jobs.queued,
    }
