"""Which run backend a job's run gets: the mode the job asked for (else its cluster's default,
else the server's), resolved against its cluster. `batch` is spark-submit everywhere; `connect`
asked for by a job needs a cluster that can have a Spark Connect server (a 400 names why not);
`auto`, and a default of `connect`, take connect where they can and batch elsewhere, and batch
too while the cluster's Connect server is `failed`, so jobs keep running. Each run resolves
anew: a restart after the cluster gained or lost Connect takes what is there now."""

from collections.abc import Callable

from ..errors import InvalidInput
from ..runs.backend import BATCH_BACKEND, CONNECT_BACKEND
from .clusters import Cluster

# Why a cluster cannot run warm jobs, or None when it can.
ConnectRefusal = Callable[[Cluster], str | None]
# The state of a cluster's Connect server (ConnectServers.status(cluster_id).state).
ConnectState = Callable[[str], str]


def _connect_is_off(cluster: Cluster) -> str:
    return "Spark Connect is turned off on this server (DataHarbourApp.connect_enabled)"


class JobModes:
    def __init__(
        self,
        default_mode: str = "batch",
        connect_refusal: ConnectRefusal = _connect_is_off,
        cluster_modes: dict[str, str] | None = None,
        connect_state: ConnectState | None = None,
    ):
        self.default_mode = default_mode
        self.connect_refusal = connect_refusal
        self.cluster_modes = dict(cluster_modes or {})
        self.connect_state = connect_state

    def default_for(self, cluster: Cluster) -> str:
        """The mode a job naming none gets here (the cluster's own, else the server's), before the
        cluster's warm path is looked at."""
        return self.cluster_modes.get(cluster.id, self.default_mode)

    def backend_for(self, requested: str | None, cluster: Cluster) -> str:
        mode = requested or self.default_for(cluster)
        if mode == "batch":
            return BATCH_BACKEND
        refusal = self.connect_refusal(cluster)
        if requested == "connect":
            if refusal:
                raise InvalidInput(
                    "mode", f'connect mode is not available on cluster {cluster.id}: {refusal}; use "mode": "batch"'
                )
            return CONNECT_BACKEND  # asked for by name: its start is tried again, even after a failure
        # A preference (auto, or a default): a cluster without the warm path, or whose Connect
        # server could not start or died too often, runs batch.
        return BATCH_BACKEND if refusal or self._connect_failed(cluster) else CONNECT_BACKEND

    def _connect_failed(self, cluster: Cluster) -> bool:
        return self.connect_state is not None and self.connect_state(cluster.id) == "failed"
