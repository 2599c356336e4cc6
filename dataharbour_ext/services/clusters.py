"""The Spark clusters jobs can be submitted to, and the state each is in.

The default cluster comes from the server's config (`local[*]`, or SPARK_MASTER_URL /
`c.DataHarbourApp.spark_master_url`); the cluster launcher (services/cluster_launcher.py)
adds the standalone clusters it launches and the external masters users register, and
moves them through their states. A cluster's definition (`Cluster`) never changes while it
is known; its state does, and every change is told to the listeners (`on_change`).

Jobs and clusters: a job for a `starting` cluster is accepted and waits queued until the
cluster is `running` (admission gives it no slot before); one for a `stopping`, `stopped` or
`failed` cluster is refused (409), and a queued job whose cluster got there meanwhile fails
at launch with the cluster's reason.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ..errors import Conflict, InvalidInput
from ..models import DEFAULT_CLUSTER_ID

# States in which jobs may be submitted, and in which they may start.
ACCEPTS_JOBS = ("starting", "running", "unknown")
STARTS_JOBS = ("running", "unknown")


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
    # "local", "standalone" (launched by this server) or "external"; "" derives it from the
    # master URL (the default cluster: local[...] is local, anything else external).
    kind: str = ""
    spec: dict | None = None  # what a standalone cluster was launched with (ClusterSpec fields)
    created_at: datetime | None = None  # None: the default cluster, from the config

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", "local" if self.master_url.startswith("local") else "external")


@dataclass
class ClusterCondition:
    state: str
    reason: str | None = None


class ClusterService:
    """Knows the clusters, their master URLs and their states."""

    def __init__(self, default_master_url: str, default_ui_url: str | None = None, *,
                 default_conf: dict[str, str] | None = None, default_log_level: str | None = None):
        default = Cluster(DEFAULT_CLUSTER_ID, "Default Spark cluster", default_master_url, default_ui_url,
                          conf=dict(default_conf or {}), log_level=default_log_level)
        self._clusters = {default.id: default}
        # A local cluster is there whenever a job starts; a configured master is not probed.
        self._conditions = {default.id: ClusterCondition("running" if default.kind == "local" else "unknown")}
        self._listeners: list[Callable[[str], None]] = []
        # Clusters a DELETE has begun on (its jobs are being counted or killed): they take no
        # new jobs and start none, before their state says so.
        self._deleting: set[str] = set()

    # ---- queries ---------------------------------------------------------------------

    def all(self) -> list[Cluster]:
        return list(self._clusters.values())

    def get(self, cluster_id: str) -> Cluster | None:
        return self._clusters.get(cluster_id)

    def require(self, cluster_id: str) -> Cluster:
        """The cluster a new job goes to: 400 if there is none, 409 if it takes no jobs."""
        cluster = self.get(cluster_id)
        if cluster is None:
            known = ", ".join(sorted(self._clusters))
            raise InvalidInput("cluster_id", f"unknown cluster {cluster_id!r} (known: {known})")
        if cluster_id in self._deleting:
            raise Conflict(f"cluster {cluster_id} is being deleted; it takes no jobs")
        condition = self.condition(cluster_id)
        if condition.state not in ACCEPTS_JOBS:
            raise Conflict(f"cluster {cluster_id} is {condition.state}"
                           f"{f' ({condition.reason})' if condition.reason else ''}; it takes no jobs")
        return cluster

    def condition(self, cluster_id: str) -> ClusterCondition:
        return self._conditions.get(cluster_id) or ClusterCondition("unknown")

    def launch_refusal(self, cluster_id: str) -> str | None:
        """Why a run claimed for this cluster cannot start now, or None if it can."""
        condition = self.condition(cluster_id)
        if condition.state in STARTS_JOBS:
            return None
        return f"cluster {cluster_id} is {condition.state}" + (f": {condition.reason}" if condition.reason else "")

    def admission_limits(self) -> dict[str, int]:
        """Runs each cluster may have at once where that is not the server's default: its own
        limit, and none at all while it is starting (its jobs wait queued until it runs)."""
        limits = {c.id: c.max_concurrent_jobs for c in self._clusters.values() if c.max_concurrent_jobs is not None}
        for cluster_id, condition in self._conditions.items():
            if condition.state == "starting":
                limits[cluster_id] = 0
        for cluster_id in self._deleting:
            limits[cluster_id] = 0
        return limits

    # ---- changes (the cluster launcher's) --------------------------------------------

    def on_change(self, listener: Callable[[str], None]) -> None:
        """`listener(cluster_id)` after every state change, addition and removal."""
        self._listeners.append(listener)

    def add(self, cluster: Cluster, state: str, reason: str | None = None) -> None:
        self._clusters[cluster.id] = cluster
        self._conditions[cluster.id] = ClusterCondition(state, reason)
        self._changed(cluster.id)

    def set_deleting(self, cluster_id: str, deleting: bool) -> None:
        """Mark a cluster as being deleted (no new jobs, none started), or no longer."""
        if deleting:
            self._deleting.add(cluster_id)
        else:
            self._deleting.discard(cluster_id)

    def set_state(self, cluster_id: str, state: str, reason: str | None = None) -> bool:
        """Record a new state; False (and nobody told) if it is already that."""
        if cluster_id not in self._clusters:
            return False
        condition = self._conditions.get(cluster_id)
        if condition is not None and (condition.state, condition.reason) == (state, reason):
            return False
        self._conditions[cluster_id] = ClusterCondition(state, reason)
        self._changed(cluster_id)
        return True

    def remove(self, cluster_id: str) -> None:
        self._deleting.discard(cluster_id)
        if self._clusters.pop(cluster_id, None) is not None:
            self._conditions.pop(cluster_id, None)
            self._changed(cluster_id)

    def _changed(self, cluster_id: str) -> None:
        for listener in list(self._listeners):
            listener(cluster_id)
