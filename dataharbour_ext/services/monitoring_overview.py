"""The monitoring overview: the latest metrics, every platform service and the jobs by state,
gathered at once (each part is cached by its own service).

One part that fails (the store is down, so neither the metrics nor the job counts can be
read) does not take the others with it: it is null in the answer and `errors` says so. The
reason shown is the part and the exception's type only; a store's error text can quote SQL
and its parameters, so the whole exception goes to the server log, not the response."""

import asyncio
import logging

from ..models import JobStateCounts, MonitoringOverview
from ..store.job_statistics import JobStatistics
from .metrics_sampler import MetricsSampler
from .service_health import ServiceHealth

log = logging.getLogger("dataharbour_ext.monitoring_overview")


class MonitoringOverviewService:
    def __init__(self, metrics: MetricsSampler, health: ServiceHealth, statistics: JobStatistics):
        self.metrics = metrics
        self.health = health
        self.statistics = statistics

    async def overview(self) -> MonitoringOverview:
        sample, statuses, totals = await asyncio.gather(
            self.metrics.current(), self.health.statuses(), self.statistics.totals(), return_exceptions=True
        )
        errors = {}
        for part, result in (("metrics", sample), ("services", statuses), ("jobs", totals)):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancelled: the request went away
                log.error("DataHarbour: the monitoring overview could not read its %s", part, exc_info=result)
                errors[part] = f"could not be read ({type(result).__name__}); the server log has the details"
        return MonitoringOverview(
            metrics=None if "metrics" in errors else sample,
            services=[] if "services" in errors else statuses,
            jobs=None if "jobs" in errors else JobStateCounts(**totals.by_state),
            errors=errors,
        )
