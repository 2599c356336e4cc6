"""ServiceHealth: the status of every platform service, checked concurrently, answered from
the latest round while the next one runs, re-checked in the background.

The services are Jupyter, each Spark cluster the cluster service knows (asked anew each
round: clusters come and go), the extra checks a callable gives (asked anew each round: the
Spark Connect servers), object storage, Airflow and PostgreSQL. Every check has the
same timeout and all run at once, so a round takes at most about that long however many
services are dead.

No request waits for a round but the very first (nothing has been checked yet): after it,
a caller gets the latest results at once, and when they are older than `cache_seconds` a
new round starts in the background. One round runs at a time; callers meanwhile share it.

On the `services` topic: a `service_update` (the status as listed, plus `previous_status`)
when a service's status or reason changes or a service appears (a launched cluster), and a
`service_removed` (`name`, `kind`, `previous_status`) when one is gone (a deleted cluster).

Blocking probe work (an SDK call, `java -version`) runs on the checks' own few threads,
never on the loop's default executor; see `HealthCheck.in_thread`.
"""

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from ..events import EventHub
from ..models.services import ServiceStatus
from .clusters import Cluster, ClusterService
from .health import HealthCheck, spark_cluster_check
from .health.check import describe_error

log = logging.getLogger("dataharbour_ext.service_health")

SERVICES_TOPIC = "services"
# Threads for blocking probe work: the object store's SDK call and the local cluster's
# one-time version reading, with room for a check whose thread a hung service still holds.
PROBE_THREADS = 4


class ServiceHealth:
    def __init__(self, hub: EventHub, clusters: ClusterService, jupyter: HealthCheck, external: list[HealthCheck], *,
                 timeout: float = 3.0, cache_seconds: float = 5.0, interval: float = 15.0,
                 cluster_check: Callable[[Cluster], HealthCheck] | None = None,
                 extra_checks: Callable[[], list[HealthCheck]] | None = None):
        self.hub = hub
        self.clusters = clusters
        self.jupyter = jupyter
        self.external = list(external)
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.interval = interval
        # Launched clusters are checked only while their launcher says they run.
        self.cluster_check = cluster_check or functools.partial(
            spark_cluster_check, condition=lambda cluster_id: self.clusters.condition(cluster_id))
        self._cluster_checks: dict[str, tuple[Cluster, HealthCheck]] = {}
        # Services that come and go with something else (a cluster's Connect server): the
        # callable gives the same check object for a service while it lasts.
        self.extra_checks = extra_checks
        self._extra_checks: dict[int, HealthCheck] = {}  # by id(): the checks adopted so far
        self._latest: dict[str, ServiceStatus] = {}
        self._checked_at: float | None = None  # loop time of the latest round's end
        self._round: asyncio.Future | None = None
        self._loop_task: asyncio.Task | None = None
        self._retired: set[asyncio.Future] = set()  # closing checks of clusters that are gone
        self._threads = ThreadPoolExecutor(max_workers=PROBE_THREADS, thread_name_prefix="dataharbour-health")
        self._started = False
        self._round_again = False  # a cluster changed while a round was under way
        for check in (jupyter, *self.external):
            self._adopt(check)

    # ---- what is checked -------------------------------------------------------------

    def checks(self) -> list[HealthCheck]:
        """Jupyter, each known cluster, the extra checks, then the external services. A
        cluster keeps its check object (and what that caches) while its definition stays the
        same."""
        cluster_checks = {}
        for cluster in self.clusters.all():
            known = self._cluster_checks.get(cluster.id)
            cluster_checks[cluster.id] = known if known and known[0] == cluster else (
                cluster, self._adopt(self.cluster_check(cluster)))
        for cluster_id, (_, check) in self._cluster_checks.items():
            if cluster_checks.get(cluster_id, (None, None))[1] is not check:
                self._close_later(check)  # of a deleted or redefined cluster
        self._cluster_checks = cluster_checks
        return [self.jupyter, *(check for _, check in cluster_checks.values()), *self._extras(), *self.external]

    def _extras(self) -> list[HealthCheck]:
        """The extra checks now: new ones adopted, those no longer given closed."""
        if self.extra_checks is None:
            return []
        extras = list(self.extra_checks())
        known = {id(check): check for check in extras}
        for key, check in self._extra_checks.items():
            if key not in known:
                self._close_later(check)
        self._extra_checks = {key: self._extra_checks.get(key) or self._adopt(check) for key, check in known.items()}
        return extras

    def _adopt(self, check: HealthCheck) -> HealthCheck:
        check.threads = self._threads
        if self._started:
            check.start()
        return check

    def _close_later(self, check: HealthCheck) -> None:
        task = asyncio.ensure_future(check.aclose())
        self._retired.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._retired.discard)

    def check_named(self, name: str) -> HealthCheck | None:
        return next((check for check in self.checks() if check.name == name), None)

    # ---- statuses --------------------------------------------------------------------

    async def statuses(self) -> list[ServiceStatus]:
        """Every service's status as the latest round found it, at once; a new round starts
        in the background when that one is older than `cache_seconds`. Only before the first
        round has ended does this wait (for that round)."""
        if self._checked_at is None:
            return await self.refresh()
        if asyncio.get_running_loop().time() - self._checked_at >= self.cache_seconds:
            self._round_under_way()
        return list(self._latest.values())

    async def refresh(self) -> list[ServiceStatus]:
        """The statuses of a new round (or of the one under way), once it has ended."""
        # Shielded: a caller that goes away does not cancel the round the others wait for.
        return await asyncio.shield(self._round_under_way())

    def _round_under_way(self) -> asyncio.Future:
        """The round running now, else a new one: concurrent callers cost one round."""
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(self._check_all())
            self._round.add_done_callback(_log_failed_round)
            self._round.add_done_callback(self._after_round)
        return self._round

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
        """Against the previous round (the first has none): a `service_update` for each
        service whose status or reason differs or that appeared since (a launched cluster),
        a `service_removed` for each that is gone (a deleted cluster)."""
        if self._checked_at is None:
            return
        for status in statuses:
            before = self._latest.get(status.name)
            if before is not None and (before.status, before.reason) == (status.status, status.reason):
                continue
            data = {**status.model_dump(mode="json"), "previous_status": before.status if before else None}
            self.hub.publish("service_update", data, (SERVICES_TOPIC,))
        names = {status.name for status in statuses}
        for name, before in self._latest.items():
            if name not in names:
                self.hub.publish("service_removed", {"name": name, "kind": before.kind,
                                                     "previous_status": before.status}, (SERVICES_TOPIC,))

    def cluster_changed(self, cluster_id: str) -> None:
        """A cluster appeared, went or changed state (a ClusterService listener): check at
        once rather than at the next round, so monitoring shows a new cluster while it starts
        and `service_update` follows it up. A round under way may have read the clusters
        before the change: then another follows it."""
        if not self._started:
            return
        if self._round is not None and not self._round.done():
            self._round_again = True
        else:
            self._round_under_way()

    def _after_round(self, round_: asyncio.Future) -> None:
        if self._round_again and self._started and not round_.cancelled():
            self._round_again = False
            self._round_under_way()

    # ---- background re-checks --------------------------------------------------------

    def start(self) -> None:
        """Let the checks begin their one-time readings, and start the background rounds."""
        self._started = True
        for check in self.checks():
            check.start()
        if self.interval > 0 and self._loop_task is None:
            self._loop_task = asyncio.create_task(self._recheck_loop(), name="dataharbour-service-health")

    async def stop(self) -> None:
        self._started = False
        tasks = [task for task in (self._loop_task, self._round) if task is not None and not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = None
        checks = [self.jupyter, *(check for _, check in self._cluster_checks.values()),
                  *self._extra_checks.values(), *self.external]
        await asyncio.gather(*(check.aclose() for check in checks), *list(self._retired), return_exceptions=True)
        # A thread a hung service still holds ends when its call gives up; nobody waits for it.
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _recheck_loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad round end the re-checks (the round logged it)
                pass
            await asyncio.sleep(self.interval)


def _log_failed_round(round_: asyncio.Future) -> None:
    """A round fails only by a bug of ours (each check's own failure is a status): logged
    once here, whoever started the round and whether or not anyone waits for it."""
    if not round_.cancelled() and round_.exception() is not None:
        error = round_.exception()
        log.error("DataHarbour: checking the platform services failed: %s", describe_error(error), exc_info=error)
