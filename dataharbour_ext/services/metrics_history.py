"""MetricsHistoryView: stored samples of this host as chart-ready columns, downsampled for long ranges.

`history_json` builds the answer on a worker thread, one series at a time: a week of one-
minute points is ten thousand numbers per series, and one JSON dump of all of it would hold
the GIL (and so Jupyter's event loop) for tens of milliseconds.
"""

import asyncio
import json
import math
import time

from pydantic import TypeAdapter

from ..errors import InvalidInput
from ..json_body import model_json
from ..models import MetricsHistory, MetricsHistoryQuery
from ..models.metrics import DEFAULT_HISTORY_POINTS, MAX_HISTORY_POINTS, SeriesPoints
from ..store.metrics_store import HistoryColumns, MetricsStore


class MetricsHistoryView:
    def __init__(self, store: MetricsStore, *, interval: float, retention_hours: float):
        self.store = store
        self.interval = interval
        self.retention_hours = retention_hours

    @property
    def max_minutes(self) -> int:
        return max(1, math.floor(self.retention_hours * 60))

    def plan(self, query: MetricsHistoryQuery) -> tuple[float, int | None]:
        """Seconds per point for `query`, and the downsampling step in seconds (None: raw
        samples); raises InvalidInput for ranges beyond the retention or too many points."""
        if query.minutes > self.max_minutes:
            raise InvalidInput("minutes", f"at most {self.max_minutes}: samples are kept "
                                          f"{self.retention_hours:g} hours (metrics_retention_hours)")
        seconds = query.minutes * 60
        step = query.step or max(1, math.ceil(seconds / DEFAULT_HISTORY_POINTS))
        if step > seconds:
            raise InvalidInput("step", f"at most {seconds} seconds, the whole range (minutes={query.minutes})")
        raw = 0 < self.interval and step <= self.interval
        points = seconds / (self.interval if raw else step)
        if points > MAX_HISTORY_POINTS:
            least = math.ceil(seconds / MAX_HISTORY_POINTS)
            raise InvalidInput("step", f"{query.step} gives {points:.0f} points over minutes={query.minutes}, "
                                       f"more than {MAX_HISTORY_POINTS}: use a step of at least {least} seconds")
        return (self.interval, None) if raw else (step, step)

    async def history(self, query: MetricsHistoryQuery) -> MetricsHistory:
        step, columns, downsampled = await self._columns(query)
        return await asyncio.to_thread(self._model, query, step, columns, downsampled)

    async def history_json(self, query: MetricsHistoryQuery) -> bytes:
        step, columns, downsampled = await self._columns(query)
        return await asyncio.to_thread(self._json, query, step, columns, downsampled)

    async def _columns(self, query: MetricsHistoryQuery) -> tuple[float, HistoryColumns, bool]:
        step, bucket = self.plan(query)
        since_ms = int((time.time() - query.minutes * 60) * 1000)
        columns = await self.store.history(since_ms, None if bucket is None else int(bucket * 1000))
        return step, columns, bucket is not None

    def _head(self, query: MetricsHistoryQuery, step: float, downsampled: bool) -> MetricsHistory:
        return MetricsHistory(minutes=query.minutes, step=step, interval=self.interval, downsampled=downsampled,
                              host=self.store.host, timestamps=[], series={})

    def _model(self, query, step, columns: HistoryColumns, downsampled) -> MetricsHistory:
        return self._head(query, step, downsampled).model_copy(update={
            "timestamps": columns.timestamps,
            "series": {name: SeriesPoints(**points) for name, points in columns.series.items()},
        })

    def _json(self, query, step, columns: HistoryColumns, downsampled) -> bytes:
        """The same document as `_model(...)` would serialize to, series by series."""
        head = model_json(self._head(query, step, downsampled))
        series = b",".join(
            json.dumps(name).encode() + b":" + SeriesPoints(**points).model_dump_json().encode()
            for name, points in columns.series.items()
        )
        return (head.replace(b'"timestamps":[]', b'"timestamps":' + _TIMESTAMPS.dump_json(columns.timestamps), 1)
                .replace(b'"series":{}', b'"series":{' + series + b"}", 1))


_TIMESTAMPS = TypeAdapter(list[float])
