"""Health checks of the platform services, one module each; `HealthCheck.run` gives every
one's answer as a `ServiceStatus` within its timeout."""

from collections.abc import Callable

from ..clusters import Cluster, ClusterCondition
from .airflow import AirflowCheck
from .check import Finding, HealthCheck, Unhealthy
from .jupyter import JupyterCheck
from .object_storage import ObjectStorageCheck
from .postgresql import PostgresCheck
from .settings import AirflowSettings, MinioSettings, PlatformSettings, PostgresSettings
from .spark_connect import ConnectServerCheck, ConnectServerChecks
from .spark_local import LocalSparkCheck
from .spark_standalone import StandaloneSparkCheck
from .unchecked import UncheckedSparkCheck


def spark_cluster_check(cluster: Cluster,
                        condition: Callable[[str], ClusterCondition] | None = None) -> HealthCheck:
    """The check that fits the cluster's master URL. `condition(cluster_id)`: the state the
    cluster launcher keeps for the clusters it launched (ClusterService.condition)."""
    if cluster.master_url.startswith("local"):
        return LocalSparkCheck(cluster)
    if cluster.master_url.startswith("spark://"):
        return StandaloneSparkCheck(cluster, condition if cluster.kind == "standalone" else None)
    return UncheckedSparkCheck(cluster)


__all__ = [
    "AirflowCheck", "AirflowSettings", "ConnectServerCheck", "ConnectServerChecks", "Finding", "HealthCheck",
    "JupyterCheck", "LocalSparkCheck", "MinioSettings", "ObjectStorageCheck", "PlatformSettings", "PostgresCheck",
    "PostgresSettings", "StandaloneSparkCheck", "UncheckedSparkCheck", "Unhealthy", "spark_cluster_check",
]
