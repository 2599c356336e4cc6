"""A cluster whose master this server has no way to ask (k8s://, yarn): reported, not checked."""

from ...models.services import cluster_service_name
from ..clusters import Cluster
from .check import HealthCheck


class UncheckedSparkCheck(HealthCheck):
    kind = "spark"

    def __init__(self, cluster: Cluster):
        super().__init__(cluster_service_name(cluster.id))
        self.cluster = cluster

    def disabled_reason(self) -> str | None:
        scheme = self.cluster.master_url.split(":", 1)[0]
        return f"not checked: this server cannot ask a {scheme} master for its health"
