"""ServiceHealth: the status of every platform service, checked concurrently, cached briefly,
re-checked in the background; a change of status is a `service_update` event.

The services are Jupyter, each Spark cluster the cluster service knows (asked anew each
round: clusters come and go), object storage, Airflow and PostgreSQL. Every check has the
same timeout and all run at once, so a round takes at most about that long however many
services are dead; callers within `cache_seconds` of a round share its answer, and callers
during a round wait for that round instead of starting another.
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timezone

from ..events import EventHub
from ..models.services import ServiceStatus
from .clusters import Cluster, ClusterService
from .health import HealthCheck, spark_cluster_check
from .health.check import describe_error

log = logging.getLogger("dataharbour_ext.service_health")

SERVICES_TOPIC = "services"


class ServiceHealth:
    def __init__(self, hub: EventHub, clusters: ClusterService, jupyter: HealthCheck, external: list[HealthCheck], *,
                 timeout: float = 3.0, cache_seconds: float = 5.0, interval: float = 15.0,
                 cluster_check: Callable[[Cluster], HealthCheck] = spark_cluster_check):
        self.hub = hub
        self.clusters = clusters
        self.jupyter = jupyter
        self.external = list(external)
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.interval = interval
        self.cluster_check = cluster_check
        self._cluster_checks: dict[str, tuple[Cluster, HealthCheck]] = {}
        self._latest: dict[str, ServiceStatus] = {}
        self._checked_at: float | None = None  # loop time of the latest round's end
        self._round: asyncio.Future | None = None
        self._loop_task: asyncio.Task | None = None
        self._retired: set[asyncio.Future] = set()  # closing checks of clusters that are gone

    # ---- what is checked -------------------------------------------------------------

    def checks(self) -> list[HealthCheck]:
        """Jupyter, each known cluster, then the external services. A cluster keeps its check
        object (and what that caches) while its definition stays the same."""
        cluster_checks = {}
        for cluster in self.clusters.all():
            known = self._cluster_checks.get(cluster.id)
            cluster_checks[cluster.id] = known if known and known[0] == cluster else (cluster,
                                                                                      self.cluster_check(cluster))
        for cluster_id, (_, check) in self._cluster_checks.items():
            if cluster_checks.get(cluster_id, (None, None))[1] is not check:
                self._close_later(check)  # of a deleted or redefined cluster
        self._cluster_checks = cluster_checks
        return [self.jupyter, *(check for _, check in cluster_checks.values()), *self.external]

    def _close_later(self, check: HealthCheck) -> None:
        task = asyncio.ensure_future(check.aclose())
        self._retired.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._retired.discard)

    def check_named(self, name: str) -> HealthCheck | None:
        return next((check for check in self.checks() if check.name == name), None)

    # ---- statuses --------------------------------------------------------------------

    async def statuses(self) -> list[ServiceStatus]:
        """Every service's status: the cached round if it is fresh, else a new round."""
        loop = asyncio.get_running_loop()
        if self._checked_at is not None and loop.time() - self._checked_at < self.cache_seconds:
            return list(self._latest.values())
        return await self.refresh()

    async def refresh(self) -> list[ServiceStatus]:
        """A new round (or the one under way): shared, so that concurrent callers cost one."""
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(self._check_all())
        # Shielded: a caller that goes away does not cancel the round the others wait for.
        return await asyncio.shield(self._round)

    async def _check_all(self) -> list[ServiceStatus]:
        checks = self.checks()
        results = await asyncio.gather(*(check.run(self.timeout) for check in checks), return_exceptions=True)
        statuses = [result if isinstance(result, ServiceStatus) else self._broken(check, result)
                    for check, result in zip(checks, results, strict=True)]
        self._publish_changes(statuses)
        self._latest = {status.name: status for status in statuses}
        self._checked_at = asyncio.get_running_loop().time()
        return statuses

    def _broken(self, check: HealthCheck, error: BaseException) -> ServiceStatus:
        """A check that failed in itself (a bug, not the service): shown, logged, never fatal."""
        if isinstance(error, asyncio.CancelledError):
            raise error
        log.error("DataHarbour: the health check of %s failed", check.name, exc_info=error)
        return ServiceStatus(name=check.name, kind=check.kind, status="unhealthy",
                             reason=f"the check itself failed: {type(error).__name__}",
                             checked_at=datetime.now(timezone.utc))

    def _publish_changes(self, statuses: list[ServiceStatus]) -> None:
        """A `service_update` for each service whose status differs from the previous round's
        (and for a service that appeared since: a launched cluster)."""
        first_round = self._checked_at is None
        for status in statuses:
            before = self._latest.get(status.name)
            if before is not None and before.status == status.status:
                continue
            if before is None and first_round:
                continue
            data = {**status.model_dump(mode="json"), "previous_status": before.status if before else None}
            self.hub.publish("service_update", data, (SERVICES_TOPIC,))

    # ---- background re-checks --------------------------------------------------------

    def start(self) -> None:
        if self.interval > 0 and self._loop_task is None:
            self._loop_task = asyncio.create_task(self._recheck_loop(), name="dataharbour-service-health")

    async def stop(self) -> None:
        tasks = [task for task in (self._loop_task, self._round) if task is not None and not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = None
        checks = [self.jupyter, *(check for _, check in self._cluster_checks.values()), *self.external]
        await asyncio.gather(*(check.aclose() for check in checks), return_exceptions=True)

    async def _recheck_loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # never let one bad round end the re-checks
                log.error("DataHarbour: checking the platform services failed: %s", describe_error(error))
            await asyncio.sleep(self.interval)
