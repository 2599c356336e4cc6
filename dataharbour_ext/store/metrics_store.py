"""System metric samples in SQL: one row per sample, history read back raw or downsampled.

Shares the job store's engine (one database, one connection pool) but has its own one-thread
pool, so a slow history query never holds up job commands, and the other way round. History
is of one host: servers sharing a team PostgreSQL each chart the machine they run on.

Downsampling happens in SQL: rows are grouped by `taken_at_ms / step_ms` (integer division
on SQLite and PostgreSQL alike) and each series comes back as min, avg and max per bucket,
placed at the bucket's middle.

Known limitation: samples are kept apart by host only. Two servers on one host sharing a
store (two JupyterLab servers of one user on the default SQLite store) both sample that host
and both write its rows, so its history holds the two servers' samples interleaved (twice as
many raw points, each server's kernel, session and job counts alternating) and each server
prunes them all by its own retention.
"""

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import delete, func, insert, literal, select

from .job_store import JobStore
from .store_thread import in_store_thread
from .tables import metric_samples

# The numeric columns a chart draws; each is a series of the history.
SERIES = (
    "cpu_percent", "load_1", "load_5", "load_15",
    "memory_total", "memory_used", "memory_available", "memory_percent",
    "swap_total", "swap_used", "swap_percent",
    "disk_total", "disk_used", "disk_percent", "disk_read_bytes_per_sec", "disk_write_bytes_per_sec",
    "network_rx_bytes_per_sec", "network_tx_bytes_per_sec",
    "processes", "kernels", "sessions", "jobs_running", "jobs_queued",
)
AGGREGATES = (("min", func.min), ("avg", func.avg), ("max", func.max))


@dataclass
class HistoryColumns:
    """History column by column, as a chart library takes it: `timestamps` in epoch seconds,
    and per series either `{"avg": [...]}` (raw samples) or `{"min", "avg", "max"}` (buckets)."""

    timestamps: list[float] = field(default_factory=list)
    series: dict[str, dict[str, list]] = field(default_factory=dict)


def _number(value):
    """A value as the API sends it: two decimals are more than a chart shows (and a third of
    the bytes of a float's full digits); PostgreSQL averages integers as NUMERIC (Decimal).
    Rounding keeps order, so min <= avg <= max still holds."""
    if value is None or isinstance(value, int):
        return value
    return round(float(value), 2)


class MetricsStore:
    def __init__(self, job_store: JobStore, host: str):
        self.engine = job_store.engine
        self.host = host
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataharbour-metrics-store")

    def close(self) -> None:
        """Before the job store closes: it disposes of the shared engine."""
        self._executor.shutdown(wait=True)

    @in_store_thread
    def add(self, values: Mapping) -> None:
        """Store one sample: `values` by column name (`taken_at_ms`, the series, `cpu_count`);
        the host is this store's."""
        with self.engine.connect().execution_options(write=True) as db, db.begin():
            db.execute(insert(metric_samples).values(host=self.host, **values))

    @in_store_thread
    def history(self, since_ms: int, step_ms: int | None) -> HistoryColumns:
        """This host's samples taken at or after `since_ms`, oldest first: every sample when
        `step_ms` is None, else one point per `step_ms` bucket with min/avg/max. A bucket's
        point is at its middle, where a chart should draw what it sums up; the last one at
        most at the newest sample (not in the future, nor past the data it stands for)."""
        where = (metric_samples.c.host == self.host, metric_samples.c.taken_at_ms >= since_ms)
        if step_ms is None:
            query = (select(metric_samples.c.taken_at_ms, *(metric_samples.c[name] for name in SERIES))
                     .where(*where).order_by(metric_samples.c.taken_at_ms))
            with self.engine.connect() as db:
                rows = db.execute(query).all()
            columns = list(zip(*rows, strict=True)) if rows else [[] for _ in range(len(SERIES) + 1)]
            return HistoryColumns(
                timestamps=[ms / 1000 for ms in columns[0]],
                series={name: {"avg": [_number(value) for value in values]}
                        for name, values in zip(SERIES, columns[1:], strict=True)},
            )
        bucket = (metric_samples.c.taken_at_ms // literal(step_ms)).label("bucket")
        aggregates = [aggregate(metric_samples.c[name]) for name in SERIES for _, aggregate in AGGREGATES]
        query = (select(bucket, func.max(metric_samples.c.taken_at_ms), *aggregates)
                 .where(*where).group_by(bucket).order_by(bucket))
        with self.engine.connect() as db:
            rows = db.execute(query).all()
        newest_ms = rows[-1][1] if rows else 0
        history = HistoryColumns(timestamps=[min(row[0] * step_ms + step_ms / 2, newest_ms) / 1000 for row in rows])
        for index, name in enumerate(SERIES):
            first = 2 + index * len(AGGREGATES)
            lows, means, highs = ([_number(row[first + k]) for row in rows] for k in range(len(AGGREGATES)))
            # An average of equal floats can come out an ulp outside them: keep min <= avg <= max.
            means = [m if m is None else min(max(m, lo), hi) for lo, m, hi in zip(lows, means, highs, strict=True)]
            history.series[name] = {"min": lows, "avg": means, "max": highs}
        return history

    @in_store_thread
    def prune(self, before_ms: int) -> int:
        """Delete this host's samples taken before `before_ms`; returns how many went."""
        with self.engine.connect().execution_options(write=True) as db, db.begin():
            result = db.execute(delete(metric_samples).where(metric_samples.c.host == self.host,
                                                             metric_samples.c.taken_at_ms < before_ms))
            return result.rowcount

    @in_store_thread
    def count(self) -> int:
        """This host's stored samples (for tests and the benchmark)."""
        with self.engine.connect() as db:
            return int(db.scalar(select(func.count()).where(metric_samples.c.host == self.host)) or 0)
