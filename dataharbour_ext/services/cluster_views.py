"""Clusters as the API shows them: what each is, its state, its jobs running and queued."""

from ..errors import NotFound
from ..models import ClusterInfo, ClusterList
from ..store import JobStore
from .clusters import Cluster, ClusterService

STARTED = ("starting", "running")


def cluster_kind(cluster: Cluster) -> str:
    return "local" if cluster.master_url.startswith("local") else "external"


class ClusterViews:
    """Read-only queries over the known clusters. `config` is the job service's own
    config object, so a changed job limit shows at once."""

    def __init__(self, clusters: ClusterService, store: JobStore, config):
        self.clusters = clusters
        self.store = store
        self.config = config

    async def list(self) -> ClusterList:
        counts = await self.store.run_counts(("queued", *STARTED))
        return ClusterList(clusters=[self._view(cluster, counts) for cluster in self.clusters.all()])

    async def get(self, cluster_id: str) -> ClusterInfo:
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            raise NotFound(f"no cluster with id {cluster_id!r}")
        return self._view(cluster, await self.store.run_counts(("queued", *STARTED)))

    def _view(self, cluster: Cluster, counts: dict[tuple[str, str], int]) -> ClusterInfo:
        kind = cluster_kind(cluster)
        return ClusterInfo(
            id=cluster.id,
            name=cluster.name,
            kind=kind,
            master_url=cluster.master_url,
            ui_url=cluster.ui_url,
            # A local cluster is there whenever a job starts; an external master is not
            # probed yet (the clusters capability does that).
            state="running" if kind == "local" else "unknown",
            max_concurrent_jobs=cluster.max_concurrent_jobs or self.config.max_concurrent_jobs,
            running_jobs=sum(counts.get((cluster.id, state), 0) for state in STARTED),
            queued_jobs=counts.get((cluster.id, "queued"), 0),
        )
