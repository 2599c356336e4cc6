"""MetricsHistoryView: stored samples of this host as chart-ready columns, downsampled for long ranges.

`history_json` serializes the answer on a worker thread, one series at a time. The thread
does not free the event loop by itself: pydantic holds the GIL for the whole of one dump, and
the loop's thread waits for the GIL meanwhile. One dump of the largest answer (5,000 points
of every series, min/avg/max) holds it about 18 ms; one series at a time, under a millisecond
each, and the loop can take the GIL back between two of them.
"""

import asyncio
import json
import math
import time

from pydantic import TypeAdapter

from ..errors import InvalidInput
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

    def _model(self, query, step, columns: HistoryColumns, downsampled) -> MetricsHistory:
        return MetricsHistory(
            minutes=query.minutes, step=step, interval=self.interval, downsampled=downsampled, host=self.store.host,
            timestamps=columns.timestamps,
            series={name: SeriesPoints(**points) for name, points in columns.series.items()},
        )

    def _json(self, query, step, columns: HistoryColumns, downsampled) -> bytes:
        """The document `_model(...)` serializes to, written member by member, each series in its own dump."""
        history = self._model(query, step, columns, downsampled)
        members = {name: json.dumps(value).encode()
                   for name, value in history.model_dump(mode="json", exclude={"timestamps", "series"}).items()}
        members["timestamps"] = _TIMESTAMPS.dump_json(history.timestamps)
        members["series"] = _json_object({name: points.model_dump_json().encode()
                                          for name, points in history.series.items()})
        return _json_object(members)


def _json_object(members: dict[str, bytes]) -> bytes:
    """A JSON object of `members`, whose values are JSON already."""
    return b"{" + b",".join(json.dumps(name).encode() + b":" + value for name, value in members.items()) + b"}"


_TIMESTAMPS = TypeAdapter(list[float])
