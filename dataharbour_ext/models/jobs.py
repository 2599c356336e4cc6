"""Jobs: what a submission may say, and jobs, runs, logs as the API shows them."""

import keyword
import math
import posixpath
import re
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from ..secrets import redact_mapping

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
# Keys that decide where the driver binds and how it is reached: they come from the cluster's config.
# (A guard against mistakes, not a sandbox: the program itself runs as the user.)
CLUSTER_CONF_KEYS = frozenset({"spark.driver.bindAddress", "spark.driver.host", "spark.ui.killEnabled"})
_CLUSTER_JAVA_OPTION = re.compile(r"-D(spark\.driver\.(?:bindAddress|host)|spark\.ui\.killEnabled)=", re.I)
# Env names the run depends on to find Spark and the right Python.
# (DATAHARBOUR_INPUT_DIR and DATAHARBOUR_OUTPUT_DIR: where the run's inputs and outputs are.)
INPUT_DIR_VARIABLE = "DATAHARBOUR_INPUT_DIR"
OUTPUT_DIR_VARIABLE = "DATAHARBOUR_OUTPUT_DIR"
RESERVED_ENV_NAMES = frozenset(
    {"SPARK_HOME", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_LOCAL_IP", "SPARK_SUBMIT_OPTS", "SPARK_CONF_DIR",
     INPUT_DIR_VARIABLE, OUTPUT_DIR_VARIABLE}
)
DEFAULT_MAX_NAME_LENGTH = 200  # DataHarbourApp.max_name_length, checked by the job service
MAX_PARAMETERS = 1000
MAX_PARAMETER_DEPTH = 32
MAX_INPUTS = 100
MAX_INPUT_PATH_LENGTH = 1024

def redact(values: dict[str, str]) -> dict[str, str]:
    """Mask secrets in conf or env, for API responses and logs (see `secrets.py`)."""
    return redact_mapping(values)


def one_line_name(value: str) -> str:
    """A job's or cluster's name: stripped, not blank, one line."""
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    if any(ch in value for ch in "\r\n\x00"):
        raise ValueError("must be a single line")
    return value


def as_utc(value: datetime | None) -> datetime | None:
    """Aware UTC (the store keeps naive UTC): pydantic then writes `...Z` natively, without
    a Python call per timestamp (a list of a thousand jobs has five thousand)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
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


def _conf_key(key: str) -> str:
    if not CONF_KEY_PATTERN.fullmatch(key):
        raise ValueError("not a Spark conf key: expected a dotted key starting with 'spark.'")
    if key.casefold() in _casefolded(RESERVED_CONF_KEYS):
        raise ValueError("is set by DataHarbour from the cluster and job; choose cluster_id or name")
    if key.casefold() in _casefolded(CLUSTER_CONF_KEYS):
        raise ValueError("comes from the cluster's configuration, not from a job")
    return key


def _conf_value(value: Scalar) -> str:
    text = _scalar_text(value)
    if len(text) > MAX_CONF_VALUE_LENGTH or any(ch in text for ch in "\r\n\x00"):
        raise ValueError(f"must be one line under {MAX_CONF_VALUE_LENGTH} characters")
    return text


def _env_name(name: str) -> str:
    if not ENV_NAME_PATTERN.fullmatch(name):
        raise ValueError("not a valid environment variable name (letters, digits and _, not starting with a digit)")
    if name in RESERVED_ENV_NAMES:
        raise ValueError("is managed by DataHarbour")
    return name


def _env_value(value: Scalar) -> str:
    text = _scalar_text(value)
    if "\x00" in text:
        raise ValueError("contains a NUL byte")
    return text


def _arg(value: Scalar) -> str:
    text = _scalar_text(value)
    if "\x00" in text or len(text) > MAX_ARG_LENGTH:
        raise ValueError(f"must be under {MAX_ARG_LENGTH} characters without NUL bytes")
    return text


def _parameter_name(name: str) -> str:
    # Each becomes a variable in the notebook's injected cell: `name = value`.
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError("not a Python identifier: a parameter becomes a variable of the notebook")
    return name


def _json_value(value: Any, depth: int = 0) -> Any:
    """Values become Python literals in the injected cell: JSON values only (no NaN or Infinity),
    nested at most MAX_PARAMETER_DEPTH deep (a deeper one would exhaust the recursion limit)."""
    if depth > MAX_PARAMETER_DEPTH:
        raise ValueError(f"nested more than {MAX_PARAMETER_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("NaN and Infinity are not JSON values")
        return value
    if isinstance(value, list):
        return [_json_value(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_value(item, depth + 1) for key, item in value.items()}
    raise ValueError("must be a JSON value")


def _casefolded(keys: frozenset[str]) -> frozenset[str]:
    return frozenset(key.casefold() for key in keys)


_SCALAR_SCHEMA = {"type": ["string", "number", "boolean"]}


def _text_map_schema(name_pattern: re.Pattern, description: str) -> WithJsonSchema:
    """JSON schema of a conf/env object: names matching the pattern, scalar values."""
    return WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": f"^{name_pattern.pattern}$"},
            "additionalProperties": _SCALAR_SCHEMA,
            "description": description,
        }
    )


# Items are checked one by one so that an error names the item: conf['spark.x'], args[2].
ConfKey = Annotated[str, AfterValidator(_conf_key)]
ConfValue = Annotated[Scalar, AfterValidator(_conf_value)]
EnvName = Annotated[str, AfterValidator(_env_name)]
EnvValue = Annotated[Scalar, AfterValidator(_env_value)]
Arg = Annotated[Scalar, AfterValidator(_arg)]
ParameterName = Annotated[str, AfterValidator(_parameter_name)]
ParameterValue = Annotated[Any, AfterValidator(_json_value)]


LogLevel = Literal["ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"]
# How a run executes: `batch` (spark-submit: its own driver JVM), `connect` (warm: a pre-started
# Python worker on the cluster's Spark Connect server), `auto` (connect where the cluster can
# have a Connect server, else batch).
JobMode = Literal["batch", "connect", "auto"]
RunMode = Literal["batch", "connect", "notebook"]  # notebook: a notebook job's kernel


def _input_path(path: str) -> str:
    """Where an input lands, relative to the run's input folder: no way out of it."""
    if "\x00" in path or "\\" in path:
        raise ValueError("must not hold NUL bytes or backslashes")
    if path.startswith("/"):
        raise ValueError("must be a relative path (inside the run's input folder)")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError("must be a relative path of names: no empty, '.' or '..' parts")
    return posixpath.join(*parts)


class JobInput(BaseModel):
    """An object downloaded into the run's input folder (`DATAHARBOUR_INPUT_DIR`) before the run starts."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    uri: str = Field(min_length=1, max_length=2048, description="The object: `s3://bucket/key`.")
    as_: Annotated[str, AfterValidator(_input_path)] | None = Field(
        None, alias="as", min_length=1, max_length=MAX_INPUT_PATH_LENGTH,
        description="Its path relative to the run's input folder (`data/part-1.csv`); default: the key's last "
        "part. No `..`, no absolute path.",
    )


def _one_source(name: str) -> dict:
    others = [other for other in ("code", "file", "notebook") if other != name]
    return {"required": [name], "properties": {name: {"type": "string"}, **{o: {"type": "null"} for o in others}}}


class JobSubmit(BaseModel):
    """Body of `POST /jobs/`. Exactly one of `code` (inline program), `file` (a .py or .ipynb
    path in the Jupyter contents manager, run as a script) or `notebook` (a notebook run cell
    by cell in a kernel, with `parameters`) is required."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [_one_source("code"), _one_source("file"), _one_source("notebook")]},
    )

    name: str = Field(
        min_length=1,
        description=f"Display name; also the Spark application name. One line, at most "
        f"{DEFAULT_MAX_NAME_LENGTH} characters (DataHarbourApp.max_name_length).",
        json_schema_extra={"maxLength": DEFAULT_MAX_NAME_LENGTH},
    )
    code: str | None = Field(None, description="PySpark program text. Exactly one of code or file.")
    file: str | None = Field(
        None,
        description="Path of a .py or .ipynb file in the Jupyter contents manager. Exactly one of code or file.",
    )
    notebook: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="A notebook to run as a notebook job: its id (Jupyter's File ID service, as the notebooks "
        "API shows it) or its path in the contents manager. Its cells run in order in a fresh kernel; the "
        "executed notebook is the job's output (`GET /jobs/{id}/output`). Exactly one of code, file or notebook.",
    )
    parameters: Annotated[dict[ParameterName, ParameterValue], Field(max_length=MAX_PARAMETERS)] | None = Field(
        None,
        description="Notebook jobs: values injected as `name = value` in a cell placed after the cell tagged "
        "`parameters` (papermill's convention; on top without one). Names are Python identifiers, values JSON.",
    )
    kernel_name: str | None = Field(
        None, min_length=1, max_length=256,
        description="Notebook jobs: the kernel to run the notebook in (default: the notebook's own kernelspec).",
    )
    cluster_id: str = Field(DEFAULT_CLUSTER_ID, min_length=1)
    args: list[Arg] = Field(
        default_factory=list,
        max_length=MAX_ARGS,
        description=f"Arguments passed to the program (sys.argv[1:]), each under {MAX_ARG_LENGTH} characters.",
    )
    conf: Annotated[
        dict[ConfKey, ConfValue],
        _text_map_schema(
            CONF_KEY_PATTERN,
            "Spark configuration: `spark.*` keys, one-line values. spark.master, spark.submit.deployMode, "
            "spark.app.name, spark.driver.bindAddress and spark.driver.host come from the cluster and job.",
        ),
    ] = Field(default_factory=dict)
    env: Annotated[
        dict[EnvName, EnvValue],
        _text_map_schema(ENV_NAME_PATTERN, "Extra environment variables for the driver."),
    ] = Field(default_factory=dict)
    log_level: LogLevel | None = Field(
        None,
        description="Spark's log level for this run (default: the cluster's, WARN unless configured). "
        "INFO brings back Spark's start-up lines.",
    )
    inputs: list[JobInput] = Field(
        default_factory=list,
        max_length=MAX_INPUTS,
        description="Objects of the object storage (MINIO_*) to download into the run's input folder before it "
        "starts (the run stays `starting` meanwhile; a missing object fails it). The program finds the folder in "
        "the environment variable DATAHARBOUR_INPUT_DIR (an absolute path; the program's working directory stays "
        "the Jupyter root), each object at its `as` path in it. Their total size is limited by "
        "DataHarbourApp.max_input_bytes.",
    )
    mode: JobMode | None = Field(
        None,
        description="batch: spark-submit, a driver JVM per run (~5-9 s of start-up; everything PySpark "
        "does). connect: a warm worker on the cluster's Spark Connect server (well under a second once "
        "warm; DataFrame and SQL APIs only, no sparkContext or RDDs; conf: runtime SQL settings only). "
        "auto: connect where the cluster can have a Connect server. Default: the server's "
        "DataHarbourApp.default_job_mode.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_any_case(cls, value):
        return value.upper() if isinstance(value, str) else value

    @field_validator("conf")
    @classmethod
    def _java_options_leave_cluster_settings_alone(cls, values: dict) -> dict:
        for key, value in values.items():
            if key.lower().endswith("extrajavaoptions") and (found := _CLUSTER_JAVA_OPTION.search(str(value))):
                raise ValueError(f"{key} must not set {found.group(1)}: it comes from the cluster's configuration")
        return values

    @field_validator("name")
    @classmethod
    def _name_is_one_line(cls, value: str) -> str:
        return one_line_name(value)


class ProgressCounts(BaseModel):
    total: int = 0
    done: int = 0
    failed: int = 0
    active: int = 0


class JobProgress(BaseModel):
    """How far a run's Spark work has got, sampled from the driver's status tracker; for a
    notebook job, also how many of its cells have run."""

    attempt: int
    jobs: ProgressCounts = Field(default_factory=ProgressCounts, description="Spark jobs (actions) of the run.")
    stages: ProgressCounts = Field(
        default_factory=ProgressCounts, description="Stages that ran or are to run (skipped stages count nowhere)."
    )
    tasks: ProgressCounts = Field(default_factory=ProgressCounts)
    current_stage: str | None = Field(None, description="Name of a stage running tasks now.")
    cells: ProgressCounts | None = Field(
        None, description="Notebook jobs: the code cells to run (`total`), run (`done`), failed, running (`active`)."
    )
    current_cell: int | None = Field(
        None, description="Notebook jobs: index in the notebook's cells of the cell running now."
    )
    percent: float = Field(
        description="Tasks done of the tasks known so far, 0-100; for a notebook job, cells done of its cells."
    )
    updated_at: UtcDatetime


class JobArtifact(BaseModel):
    """A file of a run archived in the object storage once the run ended."""

    name: str = Field(description="`output.log` (the run's log), `output.ipynb` (a notebook job's executed "
                      "notebook) or `output/<path>` (what the program wrote in DATAHARBOUR_OUTPUT_DIR); "
                      "download it with GET /jobs/{id}/artifacts/{name}?attempt=.")
    uri: str = Field(description="Where it is: `s3://<MINIO_BUCKET_NAME>/jobs/<job id>/<attempt>/<name>`.")
    size: int = Field(description="Bytes.")


class JobRun(BaseModel):
    """One execution (attempt) of a job."""

    attempt: int
    state: JobState
    mode: RunMode = Field(
        "batch", description="How this run executes: batch (spark-submit), connect (warm) or notebook (its kernel)."
    )
    queued_at: UtcDatetime | None = None
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    duration: float | None = Field(None, description="Seconds from start to end (or to now while running).")
    exit_code: int | None = None
    spark_app_id: str | None = None
    spark_ui_url: str | None = None
    error: str | None = Field(None, description="Why the run failed: the program's exception line when there is one.")
    progress: JobProgress | None = None
    artifacts: list[JobArtifact] | None = Field(
        None, description="The run's files archived in the object storage after it ended (null until the upload "
        "is done, and when storage or MINIO_BUCKET_NAME is not configured).",
    )
    artifacts_error: str | None = Field(None, description="Why archiving the run's files failed (after retries).")
    archiving: bool = Field(False, description="The run has ended and its files are being archived.")


class JobSummary(BaseModel):
    """A job as listed by `GET /jobs/`: everything but the program text and the runs."""

    id: str
    name: str
    cluster_id: str
    state: JobState
    source: Literal["code", "file", "notebook"]
    file: str | None = None
    notebook: str | None = Field(None, description="Notebook jobs: the notebook's path when the job was submitted.")
    parameters: dict[str, Any] | None = Field(None, description="Notebook jobs: the injected parameters.")
    args: list[str]
    conf: dict[str, str]
    env: dict[str, str]
    created_at: UtcDatetime
    updated_at: UtcDatetime
    attempt: int = Field(description="Number of the latest run (1 for the first).")
    mode: RunMode = Field("batch", description="How the latest run executes: batch, connect or notebook.")
    requested_mode: JobMode | None = Field(None, description="The mode asked for at submit (None: the default).")
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    duration: float | None = None
    exit_code: int | None = None
    spark_app_id: str | None = None
    error: str | None = None
    progress: JobProgress | None = Field(
        None, description="The latest run's Spark progress: live while it runs on this server, final once it ended."
    )
    archiving: bool = Field(
        False, description="The latest run has ended and its files are being archived in the object storage; "
        "GET /jobs/{id} lists them as `artifacts` once they are."
    )
    artifacts_error: str | None = Field(None, description="Why archiving the latest run's files failed.")


class Job(JobSummary):
    """A job with its program text and every run (`GET /jobs/{id}`, submit, kill, restart)."""

    code: str = Field(
        description="Program text (for a file job, the snapshot that runs; for a notebook job, the notebook as "
        "it was submitted, without outputs, as nbformat JSON)."
    )
    runs: list[JobRun] = Field(description="All attempts, oldest first.")
    inputs: list[JobInput] = Field(default_factory=list, description="Objects downloaded before each run.")
    artifacts: list[JobArtifact] | None = Field(None, description="The latest run's archived files.")


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
    # Items are serialized as JobSummary even when they are Job instances (no code, no runs).
    jobs: list[JobSummary]
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
    before: int | None = Field(
        None, ge=0, le=MAX_INDEX,
        description="With `tail`: the last N lines before this byte offset (the `offset` of a page already read), "
        "to read further back.",
    )
    stream: Literal["all", "stdout"] = Field(
        "all",
        description="`all`: everything the run printed (the program, Spark's warnings and errors); `stdout`: the "
        "program's own output alone. Each has its own byte offsets.",
    )


class LogPage(BaseModel):
    job_id: str
    attempt: int
    stream: Literal["all", "stdout"] = "all"
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


class DeleteQuery(BaseModel):
    """Query string of `DELETE /jobs/{id}`."""

    model_config = ConfigDict(extra="forbid")

    force: bool = Field(False, description="Kill the job first if it is still queued or running.")


class OutputQuery(BaseModel):
    """Query string of `GET /jobs/{id}/output`."""

    model_config = ConfigDict(extra="forbid")

    attempt: int | None = Field(None, ge=1, le=MAX_INDEX, description="Run to read; the latest by default.")
    format: Literal["ipynb", "html"] = Field(
        "ipynb", description="`ipynb`: the executed notebook (nbformat JSON); `html`: rendered by nbconvert."
    )


class ArtifactQuery(BaseModel):
    """Query string of `GET /jobs/{id}/artifacts/{name}`."""

    model_config = ConfigDict(extra="forbid")

    attempt: int | None = Field(None, ge=1, le=MAX_INDEX, description="Run whose artifact to read; the latest by "
                                "default.")
