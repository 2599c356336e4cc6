"""The monitoring overview: the latest metrics, every platform service and the jobs by state,
gathered at once (each part is cached by its own service)."""

import asyncio

from ..models import JobStateCounts, MonitoringOverview
from ..store.job_statistics import JobStatistics
from .metrics_sampler import MetricsSampler
from .service_health import ServiceHealth


class MonitoringOverviewService:
    def __init__(self, metrics: MetricsSampler, health: ServiceHealth, statistics: JobStatistics):
        self.metrics = metrics
        self.health = health
        self.statistics = statistics

    async def overview(self) -> MonitoringOverview:
        sample, statuses, totals = await asyncio.gather(
            self.metrics.current(), self.health.statuses(), self.statistics.totals()
        )
        return MonitoringOverview(metrics=sample, services=statuses, jobs=JobStateCounts(**totals.by_state))
