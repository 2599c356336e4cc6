"""Clusters as the API shows them, and what creating one may say."""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, field_validator

from ..spark.connect_server import parse_connect_url
from ..spark.master_url import check_master_url
from ..spark.memory_size import memory_text, parse_memory_mb
from .jobs import (
    CONF_KEY_PATTERN,
    RESERVED_CONF_KEYS,
    ConfValue,
    UtcDatetime,
    _casefolded,
    _text_map_schema,
    one_line_name,
)

ClusterKind = Literal["local", "standalone", "external"]
ClusterState = Literal["starting", "running", "stopping", "stopped", "failed", "unknown"]
MAX_CLUSTER_NAME_LENGTH = 200
MIN_WORKER_MEMORY_MB = 512  # below it an executor's JVM cannot start (Spark wants 450 MB of heap)


class WorkerInfo(BaseModel):
    """A worker as the standalone master reports it."""

    id: str
    host: str
    port: int
    state: str = Field(description="The master's word: ALIVE, DEAD, DECOMMISSIONED, UNKNOWN.")
    cores: int
    cores_used: int
    cores_free: int
    memory_mb: int
    memory_used_mb: int
    memory_free_mb: int


class ClusterSpec(BaseModel):
    """What a launched standalone cluster was asked to be."""

    workers: int
    cores_per_worker: int
    memory_per_worker: str = Field(description="As Spark writes it: `2g`, `1536m`.")
    memory_per_worker_mb: int


class ConnectInfo(BaseModel):
    """The cluster's warm path: its Spark Connect server and warm workers."""

    available: bool = Field(description="Whether warm jobs (`\"mode\": \"connect\"`) can run on this cluster.")
    reason: str | None = Field(None, description="Why not, or why its server is failed or stopped.")
    default_mode: Literal["batch", "connect"] = Field(
        description="The mode a job on this cluster gets when it names none.")
    state: Literal["stopped", "starting", "ready", "stopping", "failed", "external"] = Field(
        "stopped", description="Its Spark Connect server: started at the first warm job (or at start-up), stopped "
        "after an idle time.")
    address: str | None = Field(None, description="sc://host:port of the server (no token).")
    warm_ready: int = Field(0, description="Warm workers ready for a job.")
    warm_starting: int = Field(0, description="Warm workers starting.")
    warm_running: int = Field(0, description="Warm workers running jobs.")


class ClusterInfo(BaseModel):
    """A Spark cluster jobs can be submitted to."""

    id: str
    name: str
    kind: ClusterKind = Field(
        description="`local`: Spark inside each job's driver (local[N]); `standalone`: launched by this server; "
        "`external`: an existing master (spark://, k8s://, yarn) jobs are submitted to."
    )
    master_url: str
    ui_url: str | None = Field(None, description="The cluster's own master web UI, when it has one.")
    ui_proxy_path: str | None = Field(
        None, description="The master web UI proxied by this server, relative to its base URL "
        "(`api/v1/clusters/{id}/ui/proxy/`); only for clusters this server launched."
    )
    state: ClusterState = Field(
        description="`unknown`: a master this server cannot or could not ask (see `reason`); `failed`: a launched "
        "cluster that did not come up or lost a daemon (nothing of it runs any more); `stopped`: its daemons "
        "ended while the server was down."
    )
    reason: str | None = Field(None, description="Why it is failed, stopped or unknown.")
    workers: list[WorkerInfo] = Field(
        default_factory=list, description="Workers the master reports (standalone masters whose UI is known)."
    )
    cores_total: int | None = Field(None, description="Cores of the alive workers; null where unknown.")
    cores_used: int | None = None
    memory_total_mb: int | None = None
    memory_used_mb: int | None = None
    max_concurrent_jobs: int = Field(description="Jobs of this cluster that run at once; more wait queued.")
    running_jobs: int = Field(description="Jobs starting or running on it now.")
    queued_jobs: int
    created_at: UtcDatetime | None = Field(None, description="When it was launched or registered (null: the default).")
    spec: ClusterSpec | None = Field(None, description="What a standalone cluster was launched with.")
    conf: dict[str, str] = Field(
        default_factory=dict, description="Spark conf every run on this cluster gets (secrets masked)."
    )
    connect: ConnectInfo | None = Field(None, description="Its warm path (null: Spark Connect is off here).")


class ClusterLimits(BaseModel):
    """What a standalone cluster may ask for on this server (DataHarbourApp traits)."""

    max_clusters: int = Field(description="Launched and registered clusters at most, besides the default.")
    max_workers: int
    max_cores_per_worker: int
    max_memory_per_worker: str = Field(description="As Spark writes it: `8g`.")


class ClusterList(BaseModel):
    clusters: list[ClusterInfo]
    limits: ClusterLimits | None = Field(None, description="What a new standalone cluster may ask for.")


def _memory(value: str) -> str:
    megabytes = parse_memory_mb(value)
    if megabytes < MIN_WORKER_MEMORY_MB:
        raise ValueError(f"must be at least {memory_text(MIN_WORKER_MEMORY_MB)} (an executor needs about 450 MB)")
    return memory_text(megabytes)


def _cluster_conf_key(key: str) -> str:
    if not CONF_KEY_PATTERN.fullmatch(key):
        raise ValueError("not a Spark conf key: expected a dotted key starting with 'spark.'")
    if key.casefold() in _casefolded(RESERVED_CONF_KEYS):
        raise ValueError("is set by DataHarbour from the cluster and job")
    return key


ClusterName = Annotated[str, Field(min_length=1, max_length=MAX_CLUSTER_NAME_LENGTH), AfterValidator(one_line_name)]
MemorySize = Annotated[str, AfterValidator(_memory)]
ClusterConfKey = Annotated[str, AfterValidator(_cluster_conf_key)]
MasterUrl = Annotated[str, AfterValidator(check_master_url)]


class StandaloneClusterCreate(BaseModel):
    """Launch a Spark standalone master and `workers` workers on this machine (127.0.0.1)."""

    model_config = ConfigDict(extra="forbid")

    name: ClusterName
    kind: Literal["standalone"]
    workers: int = Field(ge=1, description="How many workers (DataHarbourApp.max_workers at most).")
    cores_per_worker: int = Field(ge=1, description="Cores each worker offers (max_cores_per_worker at most).")
    memory_per_worker: MemorySize = Field(
        description="Memory each worker offers executors: `512m`, `2g`, `2gb`, `1024mb` "
        "(at least 512m; max_memory_per_worker at most)."
    )
    max_concurrent_jobs: int | None = Field(None, ge=1, description="Jobs on it at once (default: the server's).")


class ExternalClusterCreate(BaseModel):
    """Register a master that runs elsewhere; jobs are submitted to it in client mode."""

    model_config = ConfigDict(extra="forbid")

    name: ClusterName
    kind: Literal["external"]
    master_url: MasterUrl = Field(description="spark://HOST:PORT[,HOST:PORT], k8s://https://HOST[:PORT], yarn or "
                                              "local[N]. A spark:// master is probed.")
    ui_url: str | None = Field(
        None, description="The master's web UI (http[s]://HOST:PORT), for its state and workers; spark:// only."
    )
    conf: Annotated[
        dict[ClusterConfKey, ConfValue],
        _text_map_schema(
            CONF_KEY_PATTERN,
            "Spark conf every run on this cluster gets, e.g. spark.driver.host (the address remote executors reach "
            "this machine's driver at) and spark.driver.bindAddress.",
        ),
    ] = Field(default_factory=dict)
    max_concurrent_jobs: int | None = Field(None, ge=1, description="Jobs on it at once (default: the server's).")
    connect_url: str | None = Field(
        None, description="sc://HOST:PORT[/;token=TOKEN]: a Spark Connect server someone else runs for this cluster. "
        "Its warm jobs go there (this server starts none for it); the token is never shown.",
    )

    @field_validator("connect_url")
    @classmethod
    def _connect_url_is_sc(cls, value: str | None) -> str | None:
        if value is not None:
            if any(ch.isspace() for ch in value):
                raise ValueError("must be an sc://HOST:PORT URL without spaces")
            parse_connect_url(value)  # its ValueError says what is expected
        return value

    @field_validator("ui_url")
    @classmethod
    def _ui_url_is_http(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not (value.startswith(("http://", "https://")) and len(value) > len("https://")) or any(
                ch.isspace() for ch in value):
            raise ValueError("must be an http:// or https:// address without spaces")
        return value.rstrip("/")


class ClusterCreate(RootModel[Annotated[StandaloneClusterCreate | ExternalClusterCreate,
                                        Field(discriminator="kind")]]):
    """Body of `POST /clusters/`: a standalone cluster to launch, or an external master to register."""


class ClusterKindField(BaseModel):
    """The `kind` of a `POST /clusters/` body, read first so that every other error names
    a field of that kind's own model."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["standalone", "external"]


CLUSTER_CREATE_MODELS: dict[str, type[BaseModel]] = {
    "standalone": StandaloneClusterCreate,
    "external": ExternalClusterCreate,
}


class ClusterDeleteQuery(BaseModel):
    """Query string of `DELETE /clusters/{id}`."""

    model_config = ConfigDict(extra="forbid")

    force: bool = Field(False, description="Kill the jobs queued or running on it first.")
