"""Platform services as the API shows them: their health and their logs."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .dashboard import JobStateCounts
from .jobs import UtcDatetime
from .metrics import MetricsSample

ServiceKind = Literal["jupyter", "spark", "spark_connect", "object_storage", "airflow", "database"]
ServiceState = Literal["healthy", "unhealthy", "disabled"]
DetailValue = str | int | float | bool | None

MAX_SERVICE_LOG_LINES = 5000
# The services that are not clusters. A cluster's service is named by its id, unless the id is
# one of these: then `spark:<id>`, so that no cluster can hide or replace a built-in service.
BUILT_IN_SERVICES = ("jupyter", "minio", "airflow", "postgresql")


def cluster_service_name(cluster_id: str) -> str:
    return f"spark:{cluster_id}" if cluster_id in BUILT_IN_SERVICES else cluster_id


class ServiceStatus(BaseModel):
    """The health of one platform service, as its last check found it."""

    name: str = Field(
        description="`jupyter`, a Spark cluster's id (`spark:<id>` for an id equal to a built-in service's "
        "name), `minio`, `airflow` or `postgresql`."
    )
    kind: ServiceKind
    status: ServiceState = Field(
        description="`disabled`: not configured here (no check was made); `unhealthy`: configured but not "
        "answering or not usable, see `reason`."
    )
    latency_ms: float | None = Field(None, description="How long the check took; none when disabled.")
    version: str | None = Field(None, description="The version the service reports, when it reports one.")
    reason: str | None = Field(None, description="Why it is unhealthy or disabled.")
    details: dict[str, DetailValue] = Field(
        default_factory=dict, description="What the check found: counts, component states, the address checked."
    )
    checked_at: UtcDatetime


class ServiceList(BaseModel):
    services: list[ServiceStatus]


class ServiceLogsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: int = Field(200, ge=1, le=MAX_SERVICE_LOG_LINES, description="How many of the latest lines.")


class ServiceLogs(BaseModel):
    name: str
    lines: list[str] = Field(description="The latest lines, oldest first.")


class MonitoringOverview(BaseModel):
    """The machine, the platform services and the jobs, in one answer. A part that cannot be
    read (the store is down) is null (`services`: empty) and `errors` says why; the others
    are still there."""

    metrics: MetricsSample | None = Field(
        description="The latest metrics sample (as GET /monitoring/metrics); null when it cannot be read."
    )
    services: list[ServiceStatus] = Field(description="Every platform service (as GET /monitoring/services).")
    jobs: JobStateCounts | None = Field(
        description="This server's user's jobs by the state of their latest run; null when they cannot be counted. "
        "Job counts are part of monitoring: like the metrics sample's `jobs`, they are visible with `read` on "
        "`dataharbour:monitoring` alone. They are numbers only: no job's name, program or output."
    )
    errors: dict[str, str] = Field(
        default_factory=dict,
        description="Each part (`metrics`, `services`, `jobs`) that could not be read, with why; empty when all "
        "were. The server log has the details.",
    )
