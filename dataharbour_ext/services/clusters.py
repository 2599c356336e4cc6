"""The Spark clusters jobs can be submitted to."""

from dataclasses import dataclass, field

from ..errors import InvalidInput
from ..models import DEFAULT_CLUSTER_ID


@dataclass(frozen=True)
class Cluster:
    id: str
    name: str
    master_url: str
    ui_url: str | None = None
    # Runs on this cluster at once; None: the server's max_concurrent_jobs.
    max_concurrent_jobs: int | None = None
    # Spark conf every run on this cluster gets (where the driver binds, the UI's kill
    # switch, ...); a job's own conf cannot set the driver's address.
    conf: dict[str, str] = field(default_factory=dict)
    # Log level of runs on this cluster unless a job asks for another (Spark's WARN default
    # keeps a job's own output readable).
    log_level: str | None = None


class ClusterService:
    """Knows the clusters and their Spark master URLs.

    Today that is the default cluster: `local[*]`, or the master from SPARK_MASTER_URL /
    `c.DataHarbourApp.spark_master_url`. Launched standalone clusters join it later.
    """

    def __init__(self, default_master_url: str, default_ui_url: str | None = None, *,
                 default_conf: dict[str, str] | None = None, default_log_level: str | None = None):
        default = Cluster(DEFAULT_CLUSTER_ID, "Default Spark cluster", default_master_url, default_ui_url,
                          conf=dict(default_conf or {}), log_level=default_log_level)
        self._clusters = {default.id: default}

    def all(self) -> list[Cluster]:
        return list(self._clusters.values())

    def get(self, cluster_id: str) -> Cluster | None:
        return self._clusters.get(cluster_id)

    def require(self, cluster_id: str) -> Cluster:
        cluster = self.get(cluster_id)
        if cluster is None:
            known = ", ".join(sorted(self._clusters))
            raise InvalidInput("cluster_id", f"unknown cluster {cluster_id!r} (known: {known})")
        return cluster
