"""DashboardService: the dashboard's numbers, composed from the store's statistics, the
clusters, the job list and the notebook count."""

import asyncio
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone

from ..models import (
    RECENT_JOBS,
    DashboardOverview,
    DashboardStats,
    DashboardTrends,
    JobStateCounts,
    JobSummary,
    TrendPoint,
    TrendsQuery,
    time_zone,
)
from ..store.job_statistics import JobStatistics
from .clock import utcnow
from .clusters import ClusterService
from .jobs import JobService
from .notebook_count import NotebookCounter


def local_days(days: int, zone, now: datetime) -> list[tuple[date, datetime, datetime]]:
    """The last `days` calendar days in `zone` up to the one `now` (naive UTC) falls on,
    oldest first, each with its [start, end) in naive UTC (a day may be 23 or 25 hours)."""
    today = now.replace(tzinfo=timezone.utc).astimezone(zone).date()

    def utc_midnight(day: date) -> datetime:
        return datetime.combine(day, time(), zone).astimezone(timezone.utc).replace(tzinfo=None)

    first = today - timedelta(days=days - 1)
    result = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        result.append((day, utc_midnight(day), utc_midnight(day + timedelta(days=1))))
    return result


class DashboardService:
    def __init__(self, statistics: JobStatistics, jobs: JobService, clusters: ClusterService,
                 notebooks: NotebookCounter, clock: Callable[[], datetime] = utcnow):
        self.statistics = statistics
        self.jobs = jobs
        self.clusters = clusters
        self.notebooks = notebooks
        self.clock = clock

    async def stats(self) -> DashboardStats:
        totals, notebooks = await asyncio.gather(self.statistics.totals(), self.notebooks.count())
        counts = totals.by_state
        finished = counts["succeeded"] + counts["failed"] + counts["killed"] + counts["lost"]
        known = {cluster.id for cluster in self.clusters.all()}
        return DashboardStats(
            total_jobs=sum(counts.values()),
            jobs_by_state=JobStateCounts(**counts),
            finished_jobs=finished,
            success_rate=round(counts["succeeded"] / finished, 4) if finished else None,
            timed_jobs=totals.timed_jobs,
            mean_duration=totals.mean_duration,
            p95_duration=totals.p95_duration,
            active_clusters=len(known & totals.active_cluster_ids),
            known_clusters=len(known),
            notebooks=notebooks.notebooks,
            notebooks_truncated=notebooks.truncated,
        )

    async def trends(self, query: TrendsQuery) -> DashboardTrends:
        zone = time_zone(query.tz) if query.tz else timezone.utc
        days = local_days(query.days, zone, self.clock())
        completions = await self.statistics.completions([(start, end) for _, start, end in days])
        return DashboardTrends(
            days=query.days,
            tz=query.tz or "UTC",
            points=[TrendPoint(date=day.isoformat(), succeeded=ended.succeeded, failed=ended.unsuccessful)
                    for (day, _, _), ended in zip(days, completions, strict=True)],
        )

    async def overview(self, query: TrendsQuery) -> DashboardOverview:
        stats, trends, recent = await asyncio.gather(self.stats(), self.trends(query), self.recent_jobs())
        return DashboardOverview(stats=stats, trends=trends, recent_jobs=recent)

    async def recent_jobs(self) -> list[JobSummary]:
        """The most recently updated jobs, as `GET /jobs/?sort=updated_at` shows them (the same
        views, with the live progress of running ones)."""
        return self.jobs.summary_views(await self.statistics.recent(RECENT_JOBS))
