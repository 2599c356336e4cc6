"""The Spark clusters jobs can be submitted to."""

from dataclasses import dataclass

from ..errors import InvalidInput
from ..models import DEFAULT_CLUSTER_ID


@dataclass(frozen=True)
class Cluster:
    id: str
    name: str
    master_url: str
    ui_url: str | None = None


class ClusterService:
    """Knows the clusters and their Spark master URLs.

    Today that is the default cluster: `local[*]`, or the master from SPARK_MASTER_URL /
    `c.DataHarbourApp.spark_master_url`. Launched standalone clusters join it later.
    """

    def __init__(self, default_master_url: str, default_ui_url: str | None = None):
        default = Cluster(DEFAULT_CLUSTER_ID, "Default Spark cluster", default_master_url, default_ui_url)
        self._clusters = {default.id: default}

    def get(self, cluster_id: str) -> Cluster | None:
        return self._clusters.get(cluster_id)

    def require(self, cluster_id: str) -> Cluster:
        cluster = self.get(cluster_id)
        if cluster is None:
            known = ", ".join(sorted(self._clusters))
            raise InvalidInput("cluster_id", f"unknown cluster {cluster_id!r} (known: {known})")
        return cluster
