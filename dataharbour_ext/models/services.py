"""Platform services as the API shows them: their health and their logs."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .dashboard import JobStateCounts
from .jobs import UtcDatetime
from .metrics import MetricsSample

ServiceKind = Literal["jupyter", "spark", "object_storage", "airflow", "database"]
ServiceState = Literal["healthy", "unhealthy", "disabled"]
DetailValue = str | int | float | bool | None

MAX_SERVICE_LOG_LINES = 5000


class ServiceStatus(BaseModel):
    """The health of one platform service, as its last check found it."""

    name: str = Field(description="`jupyter`, a Spark cluster's id, `minio`, `airflow` or `postgresql`.")
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
    """The machine, the platform services and the jobs, in one answer."""

    metrics: MetricsSample = Field(description="The latest metrics sample (as GET /monitoring/metrics).")
    services: list[ServiceStatus] = Field(description="Every platform service (as GET /monitoring/services).")
    jobs: JobStateCounts = Field(description="This server's user's jobs by the state of their latest run.")
