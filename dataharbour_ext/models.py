"""Pydantic request/response models. The OpenAPI document is generated from these."""

import re
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

DEFAULT_CLUSTER_ID = "spark-cluster-default"

# Spark conf keys: dotted identifiers under `spark.`; values: one line of text.
# Matched with fullmatch: `$` would let a trailing newline through.
CONF_KEY_PATTERN = re.compile(r"spark\.[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")
ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_INDEX = 2**62  # bounds for offsets and counts: beyond it SQLite integers overflow
MAX_CONF_VALUE_LENGTH = 4096
MAX_ARG_LENGTH = 65536
MAX_ARGS = 1000
# Keys that describe where and how the run is placed: the cluster and DataHarbour own them.
RESERVED_CONF_KEYS = frozenset({"spark.master", "spark.submit.deployMode", "spark.app.name"})
# Env names the run depends on to find Spark and the right Python.
RESERVED_ENV_NAMES = frozenset({"SPARK_HOME", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_LOCAL_IP"})

_SECRET_NAME = re.compile(r"(secret|password|passwd|token|credential|private|access\.?key|api\.?key)", re.I)
REDACTED = "********"


def redact(values: dict[str, str]) -> dict[str, str]:
    """Mask the values of keys that name a secret, for API responses and logs."""
    return {key: (REDACTED if _SECRET_NAME.search(key) else value) for key, value in values.items()}


def _as_utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


UtcDatetime = Annotated[datetime, PlainSerializer(_as_utc, return_type=str | None)]
Scalar = str | int | float | bool


def _scalar_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class JobState(str, Enum):
    queued = "queued"
    starting = "starting"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    killed = "killed"
    lost = "lost"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.succeeded, JobState.failed, JobState.killed, JobState.lost})


class JobSubmit(BaseModel):
    """Body of `POST /jobs/`: inline `code` or a contents-manager `file`, never both."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Display name; also the Spark application name.")
    code: str | None = Field(None, description="PySpark program text.")
    file: str | None = Field(
        None, description="Path of a .py or .ipynb file in the Jupyter contents manager (instead of code)."
    )
    cluster_id: str = Field(DEFAULT_CLUSTER_ID, min_length=1)
    args: list[Scalar] = Field(default_factory=list, description="Arguments passed to the program (sys.argv[1:]).")
    conf: dict[str, Scalar] = Field(default_factory=dict, description="Spark configuration (`spark.*` keys).")
    env: dict[str, Scalar] = Field(default_factory=dict, description="Extra environment variables for the driver.")

    @field_validator("name")
    @classmethod
    def _name_is_one_line(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        if any(ch in value for ch in "\r\n\x00"):
            raise ValueError("must be a single line")
        return value

    @field_validator("args")
    @classmethod
    def _args_are_text(cls, values: list[Scalar]) -> list[str]:
        if len(values) > MAX_ARGS:
            raise ValueError(f"at most {MAX_ARGS} arguments")
        texts = [_scalar_text(v) for v in values]
        for text in texts:
            if "\x00" in text or len(text) > MAX_ARG_LENGTH:
                raise ValueError(f"each argument must be under {MAX_ARG_LENGTH} characters without NUL bytes")
        return texts

    @field_validator("conf")
    @classmethod
    def _conf_is_spark_conf(cls, values: dict[str, Scalar]) -> dict[str, str]:
        out = {}
        for key, value in values.items():
            if not CONF_KEY_PATTERN.fullmatch(key):
                raise ValueError(f"invalid Spark conf key {key!r}: expected a dotted key starting with 'spark.'")
            if key in RESERVED_CONF_KEYS:
                raise ValueError(f"{key!r} is set by DataHarbour from the cluster and job; choose cluster_id or name")
            text = _scalar_text(value)
            if len(text) > MAX_CONF_VALUE_LENGTH or any(ch in text for ch in "\r\n\x00"):
                raise ValueError(f"value of {key!r} must be one line under {MAX_CONF_VALUE_LENGTH} characters")
            out[key] = text
        return out

    @field_validator("env")
    @classmethod
    def _env_is_environment(cls, values: dict[str, Scalar]) -> dict[str, str]:
        out = {}
        for key, value in values.items():
            if not ENV_NAME_PATTERN.fullmatch(key):
                raise ValueError(f"invalid environment variable name {key!r}")
            if key in RESERVED_ENV_NAMES:
                raise ValueError(f"{key!r} is managed by DataHarbour")
            text = _scalar_text(value)
            if "\x00" in text:
                raise ValueError(f"value of {key!r} contains a NUL byte")
            out[key] = text
        return out


class JobRun(BaseModel):
    """One execution (attempt) of a job."""

    attempt: int
    state: JobState
    queued_at: UtcDatetime | None = None
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    duration: float | None = Field(None, description="Seconds from start to end (or to now while running).")
    exit_code: int | None = None
    spark_app_id: str | None = None
    spark_ui_url: str | None = None
    error: str | None = Field(None, description="Why the run failed: the program's exception line when there is one.")


class Job(BaseModel):
    id: str
    name: str
    cluster_id: str
    state: JobState
    source: Literal["code", "file"]
    file: str | None = None
    args: list[str]
    conf: dict[str, str]
    env: dict[str, str]
    created_at: UtcDatetime
    updated_at: UtcDatetime
    attempt: int = Field(description="Number of the latest run (1 for the first).")
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    duration: float | None = None
    exit_code: int | None = None
    spark_app_id: str | None = None
    error: str | None = None
    code: str | None = Field(None, description="Program text (job details only).")
    runs: list[JobRun] | None = Field(None, description="All attempts, oldest first (job details only).")


class JobSort(str, Enum):
    created_at = "created_at"
    updated_at = "updated_at"
    name = "name"
    state = "state"


class JobQuery(BaseModel):
    """Query string of `GET /jobs/`."""

    model_config = ConfigDict(extra="forbid")

    state: list[JobState] | None = None
    cluster_id: str | None = None
    name: str | None = Field(None, description="Case-insensitive substring of the job name.")
    sort: JobSort = JobSort.created_at
    order: Literal["asc", "desc"] = "desc"
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_INDEX)


class JobList(BaseModel):
    jobs: list[Job]
    total: int = Field(description="Number of jobs matching the filters, ignoring limit/offset.")
    limit: int
    offset: int


class LogQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempt: int | None = Field(None, ge=1, le=MAX_INDEX, description="Run to read; the latest by default.")
    offset: int = Field(
        0, ge=0, le=MAX_INDEX, description="Byte offset to read from (use next_offset of the previous page)."
    )
    limit: int = Field(1000, ge=1, le=100_000, description="Maximum number of lines.")
    tail: int | None = Field(None, ge=1, le=100_000, description="Return the last N lines instead of a page.")


class LogPage(BaseModel):
    job_id: str
    attempt: int
    offset: int = Field(description="Byte offset of the first returned line.")
    next_offset: int = Field(description="Byte offset to continue from.")
    size: int = Field(description="Current size of the log in bytes.")
    lines: list[str]
    complete: bool = Field(description="The run has ended and next_offset is the end of the log.")


class SparkUi(BaseModel):
    job_id: str
    attempt: int
    state: JobState
    spark_app_id: str | None = None
    url: str = Field(description="The driver's own UI address, as the driver reported it.")
    proxy_url: str = Field(description="Path on this Jupyter server that proxies the driver UI.")


class ErrorBody(BaseModel):
    message: str
    reason: str | None = None
