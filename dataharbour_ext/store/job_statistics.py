"""The dashboard's job statistics, computed by the database from indexes.

Every number is an aggregate in SQL over an index range (jobs per state, durations, runs
that ended in a time window): no query reads job rows into Python or touches the table
itself, so the cost is that of counting index entries (with 100,000 jobs about 12 ms on
SQLite, 20 ms on PostgreSQL, measured on 2 cores). Queries run on the job store's own
thread pool, never on the event loop.

Results are reused while the store has written nothing (its write generation is the same)
and for `ttl` seconds; in the `ttl` seconds after that, a caller gets the previous result
while a new one is computed in the background. So another server's writes to a shared store
show within two `ttl`s, this server's own writes at once, and a dashboard polled by several
browsers costs one computation per change.
"""

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, Integer, column, func, select, values

from ..models import TERMINAL_STATES, JobState
from .job_store import JobStore, job_summary_record, select_job_summaries
from .records import JobRecord
from .tables import jobs, runs

JOB_STATES = tuple(state.value for state in JobState)
ACTIVE_STATES = (JobState.starting.value, JobState.running.value)
# Trends split the runs that ended into succeeded and the rest: a kill or a lost run is a
# run that did not succeed, as the success rate counts it.
UNSUCCESSFUL_STATES = tuple(state.value for state in JobState if state in TERMINAL_STATES
                            and state is not JobState.succeeded)
P95 = 0.95
# Another server's writes to a shared store show within two of these.
CACHE_TTL_SECONDS = 1.0
MAX_CACHED = 64

log = logging.getLogger("dataharbour_ext.dashboard")


@dataclass(frozen=True)
class JobTotals:
    """One tenant's jobs at one moment."""

    by_state: dict[str, int]  # every state of JobState, zero-filled
    timed_jobs: int  # jobs whose latest run started and then succeeded or failed: what the durations are over
    mean_duration: float | None  # seconds
    p95_duration: float | None  # seconds, nearest rank
    active_cluster_ids: frozenset[str]  # clusters with a starting or running job


@dataclass(frozen=True)
class Completions:
    """Runs that ended in one time window."""

    succeeded: int
    unsuccessful: int  # failed, killed or lost


@dataclass
class _Cached:
    generation: int
    computed_at: float
    value: object


class JobStatistics:
    def __init__(self, store: JobStore, ttl: float = CACHE_TTL_SECONDS):
        self.store = store
        self.ttl = ttl
        self._cache: dict[tuple, _Cached] = {}
        self._computing: dict[tuple, asyncio.Future] = {}

    # ---- queries ---------------------------------------------------------------------

    async def totals(self) -> JobTotals:
        return await self._cached(("totals",), self._totals)

    async def completions(self, windows: Sequence[tuple[datetime, datetime]]) -> list[Completions]:
        """Runs of this tenant that ended in each `[start, end)` window (naive UTC), in
        the order given. Every attempt counts: a job that failed and then succeeded after a
        restart shows both."""
        windows = tuple(windows)
        return await self._cached(("completions", windows), functools.partial(self._completions, windows))

    async def recent(self, limit: int) -> list[JobRecord]:
        """The `limit` most recently updated jobs as the job list has them (no program text,
        the latest run's facts), newest first. Unlike the list, no total is counted."""
        return await self._cached(("recent", limit), functools.partial(self._recent, limit))

    def _recent(self, limit: int) -> list[JobRecord]:
        with self.store.read_connection() as db:  # ix_jobs_tenant_updated, read backwards
            rows = db.execute(
                select_job_summaries().where(jobs.c.tenant == self.store.tenant)
                .order_by(jobs.c.updated_at.desc(), jobs.c.id.desc()).limit(limit)
            ).all()
        return [job_summary_record(row) for row in rows]

    def _totals(self) -> JobTotals:
        tenant = self.store.tenant
        of_tenant = jobs.c.tenant == tenant
        timed = (jobs.c.tenant == tenant, jobs.c.duration.is_not(None))
        with self._snapshot() as db:
            # One index range count per state (ix_jobs_tenant_state_created).
            counts = db.execute(select(*[
                select(func.count()).select_from(jobs).where(of_tenant, jobs.c.state == state).scalar_subquery()
                for state in JOB_STATES
            ])).one()
            timed_jobs, total_seconds = db.execute(
                select(func.count(jobs.c.duration), func.sum(jobs.c.duration)).where(*timed)
            ).one()
            p95 = None
            if timed_jobs:
                # Nearest rank: the smallest duration at least 95% of them do not exceed,
                # counted from the top of ix_jobs_tenant_duration (a 5% walk, not 95%).
                from_top = timed_jobs - math.ceil(P95 * timed_jobs)
                p95 = db.scalar(select(jobs.c.duration).where(*timed).order_by(jobs.c.duration.desc())
                                .limit(1).offset(from_top))
            # Active jobs are few (each holds a cluster slot); no DISTINCT, which may lead a
            # planner to walk the whole cluster_id index instead.
            active = db.scalars(select(jobs.c.cluster_id).where(of_tenant, jobs.c.state.in_(ACTIVE_STATES))).all()
        return JobTotals(
            by_state=dict(zip(JOB_STATES, (int(count) for count in counts), strict=True)),
            timed_jobs=int(timed_jobs or 0),
            mean_duration=round(float(total_seconds) / timed_jobs, 3) if timed_jobs else None,
            p95_duration=round(float(p95), 3) if p95 is not None else None,
            active_cluster_ids=frozenset(active),
        )

    def _completions(self, windows: tuple[tuple[datetime, datetime], ...]) -> list[Completions]:
        days = values(column("day", Integer), column("day_start", DateTime), column("day_end", DateTime),
                      name="days").data([(i, start, end) for i, (start, end) in enumerate(windows)]).cte("days")

        def ended(states: tuple[str, ...]):
            # Counted off ix_runs_tenant_state_finished: one index range per window and state.
            return select(func.count()).select_from(runs).where(
                runs.c.tenant == self.store.tenant, runs.c.state.in_(states),
                runs.c.finished_at >= days.c.day_start, runs.c.finished_at < days.c.day_end,
            ).scalar_subquery()

        query = select(days.c.day, ended((JobState.succeeded.value,)), ended(UNSUCCESSFUL_STATES)).order_by(days.c.day)
        with self.store.read_connection() as db:
            rows = db.execute(query).all()
        return [Completions(int(succeeded), int(unsuccessful)) for _, succeeded, unsuccessful in rows]

    @contextmanager
    def _snapshot(self):
        """One consistent view for several statements (the p95's offset comes from a count)."""
        if self.store.dialect == "postgresql":
            connection = self.store.engine.connect().execution_options(isolation_level="REPEATABLE READ")
            with connection, connection.begin():
                yield connection
        else:
            # SQLite in WAL mode: a read transaction sees one snapshot from its first read.
            with self.store.read_connection() as connection:
                yield connection

    # ---- cache -----------------------------------------------------------------------

    async def _cached(self, key: tuple, compute: Callable):
        # The generation is read before the query: a write that lands during it makes the
        # next call compute again rather than keep a result that may predate the write.
        generation = self.store.write_generation
        cached = self._cache.get(key)
        if cached and cached.generation == generation:
            age = time.monotonic() - cached.computed_at
            if age < self.ttl:
                return cached.value
            if age < 2 * self.ttl:
                # Nothing written here, only time passed: answer with the previous result
                # while a new one is computed for the next caller (a dashboard polled all day
                # never waits for SQL unless something changed).
                self._computation(key, generation, compute)
                return cached.value
        # Callers that give up (a closed request) do not cancel the others' computation.
        return await asyncio.shield(self._computation(key, generation, compute))

    def _computation(self, key: tuple, generation: int, compute: Callable) -> asyncio.Future:
        """The one computation of `key` at `generation`: concurrent callers share it."""
        flight = (key, generation)
        future = self._computing.get(flight)
        if future is None:
            future = asyncio.ensure_future(self._compute(key, generation, compute))
            self._computing[flight] = future
            future.add_done_callback(functools.partial(self._computed, flight))
        return future

    def _computed(self, flight: tuple, future: asyncio.Future) -> None:
        self._computing.pop(flight, None)
        if not future.cancelled() and future.exception() is not None:
            log.warning("DataHarbour: dashboard statistics failed: %s", future.exception())

    async def _compute(self, key: tuple, generation: int, compute: Callable):
        started = time.monotonic()
        value = await asyncio.get_running_loop().run_in_executor(self.store.executor, compute)
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[key] = _Cached(generation, started, value)
        return value
