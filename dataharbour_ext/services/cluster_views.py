"""Clusters as the API shows them: what each is, its state, its workers (from a standalone
master's JSON status), its jobs running and queued.

A master's status is kept for `status_ttl` seconds; an older one is still answered at once
while a fresh one is read in the background (one read per master at a time), so a listing
never waits on a master once it has been read. Only the very first read of a master is
waited for, bounded by the reader's short timeout.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import NotFound
from ..models import ClusterInfo, ClusterLimits, ClusterList, ClusterSpec, WorkerInfo, redact
from ..models.clusters import ConnectInfo
from ..secrets import redact_text
from ..spark.standalone import MasterStatus, MasterStatusReader
from ..store import JobStore
from .clusters import Cluster, ClusterCondition, ClusterService

log = logging.getLogger("dataharbour_ext.clusters")

STARTED = ("starting", "running")
STATUS_TTL_SECONDS = 1.0
# A launched cluster's master UI is proxied while its master may be up.
PROXIED_STATES = ("starting", "running", "stopping")


def cluster_ui_proxy_path(cluster_id: str) -> str:
    """Where a launched cluster's master UI is proxied, relative to the server's base URL."""
    return f"api/v1/clusters/{cluster_id}/ui/proxy/"


@dataclass
class _Status:
    read_at: float  # loop time
    status: MasterStatus | None  # None: it could not be read


class ClusterViews:
    """Read-only queries over the known clusters. `config` is the job service's own
    config object, so a changed job limit shows at once."""

    def __init__(self, clusters: ClusterService, store: JobStore, config, *, reader: MasterStatusReader | None = None,
                 status_ttl: float = STATUS_TTL_SECONDS, limits: ClusterLimits | None = None,
                 connect: Callable[[Cluster], ConnectInfo] | None = None):
        self.connect = connect  # a cluster's warm path (None: Spark Connect is off here)
        self.clusters = clusters
        self.limits = limits
        self.store = store
        self.config = config
        self.reader = reader or MasterStatusReader()
        self.status_ttl = status_ttl
        self._statuses: dict[str, _Status] = {}  # by master UI URL
        self._reading: dict[str, asyncio.Future] = {}

    async def list(self) -> ClusterList:
        clusters = self.clusters.all()
        counts, statuses = await asyncio.gather(self.store.run_counts(("queued", *STARTED)),
                                                asyncio.gather(*(self._status_of(c) for c in clusters)))
        return ClusterList(clusters=[self._view(c, counts, s) for c, s in zip(clusters, statuses, strict=True)],
                           limits=self.limits)

    async def get(self, cluster_id: str) -> ClusterInfo:
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            raise NotFound(f"no cluster with id {cluster_id!r}")
        counts, status = await asyncio.gather(self.store.run_counts(("queued", *STARTED)), self._status_of(cluster))
        return self._view(cluster, counts, status)

    async def view_as(self, cluster: Cluster, condition: ClusterCondition) -> ClusterInfo:
        """The cluster in `condition` (a change told after it happened): its workers and job
        counts as they are now; none of its workers once it is gone or has ended."""
        counts = await self.store.run_counts(("queued", *STARTED))
        status = None
        if self.clusters.get(cluster.id) is cluster and condition.state not in ("stopped", "failed"):
            status = await self.master_status(cluster)
        return self._view(cluster, counts, status, condition)

    async def aclose(self) -> None:
        for reading in list(self._reading.values()):
            reading.cancel()
        await self.reader.aclose()

    # ---- a master's status -----------------------------------------------------------

    def has_status(self, cluster: Cluster) -> bool:
        """Whether the cluster's master can tell its workers: a spark:// master whose UI is known."""
        return cluster.master_url.startswith("spark://") and bool(cluster.ui_url)

    async def master_status(self, cluster: Cluster, *, fresh: bool = False) -> MasterStatus | None:
        """The master's status (None if it cannot be read): the kept one while it is young
        enough, else a new read (awaited when `fresh` or when none is kept)."""
        if not self.has_status(cluster):
            return None
        return await self.status_at(cluster.ui_url, fresh=fresh)

    async def status_at(self, url: str, *, fresh: bool = False) -> MasterStatus | None:
        """The status of the master whose UI is at `url`, as `master_status` keeps it."""
        kept = self._statuses.get(url)
        now = asyncio.get_running_loop().time()
        if kept is not None and not fresh:
            if now - kept.read_at >= self.status_ttl:
                self._read(url)
            return kept.status
        return await asyncio.shield(self._read(url))

    def forget_status(self, cluster: Cluster) -> None:
        if cluster.ui_url:
            self._statuses.pop(cluster.ui_url, None)

    async def _status_of(self, cluster: Cluster) -> MasterStatus | None:
        if self.clusters.condition(cluster.id).state in ("stopped", "failed"):
            return None  # nothing of it runs: no need to ask
        return await self.master_status(cluster)

    def _read(self, url: str) -> asyncio.Future:
        reading = self._reading.get(url)
        if reading is None or reading.done():
            reading = self._reading[url] = asyncio.ensure_future(self._read_now(url))
        return reading

    async def _read_now(self, url: str) -> MasterStatus | None:
        try:
            status = await self.reader.read(url)
        except Exception as error:  # noqa: BLE001 - a master that cannot be read has no status
            log.debug("DataHarbour: the status of the master at %s could not be read: %s", redact_text(url),
                      redact_text(str(error)))
            status = None
        self._statuses[url] = _Status(asyncio.get_running_loop().time(), status)
        return status

    # ---- the view --------------------------------------------------------------------

    def _view(self, cluster: Cluster, counts: dict[tuple[str, str], int], status: MasterStatus | None,
              condition: ClusterCondition | None = None) -> ClusterInfo:
        condition = condition or self.clusters.condition(cluster.id)
        alive = status.alive_workers if status is not None else []
        return ClusterInfo(
            id=cluster.id,
            name=cluster.name,
            kind=cluster.kind,
            master_url=redact_text(cluster.master_url),
            ui_url=redact_text(cluster.ui_url) if cluster.ui_url else None,
            ui_proxy_path=cluster_ui_proxy_path(cluster.id)
            if cluster.kind == "standalone" and condition.state in PROXIED_STATES else None,
            state=condition.state,
            reason=redact_text(condition.reason) if condition.reason else None,
            workers=[WorkerInfo(id=w.id, host=w.host, port=w.port, state=w.state, cores=w.cores,
                                cores_used=w.cores_used, cores_free=max(0, w.cores - w.cores_used),
                                memory_mb=w.memory_mb, memory_used_mb=w.memory_used_mb,
                                memory_free_mb=max(0, w.memory_mb - w.memory_used_mb))
                     for w in (status.workers if status is not None else [])],
            cores_total=sum(w.cores for w in alive) if status is not None else None,
            cores_used=sum(w.cores_used for w in alive) if status is not None else None,
            memory_total_mb=sum(w.memory_mb for w in alive) if status is not None else None,
            memory_used_mb=sum(w.memory_used_mb for w in alive) if status is not None else None,
            max_concurrent_jobs=cluster.max_concurrent_jobs or self.config.max_concurrent_jobs,
            running_jobs=sum(counts.get((cluster.id, state), 0) for state in STARTED),
            queued_jobs=counts.get((cluster.id, "queued"), 0),
            created_at=cluster.created_at,
            spec=ClusterSpec(**cluster.spec) if cluster.spec else None,
            conf=redact(cluster.conf),
            connect=self.connect(cluster) if self.connect else None,
        )
