"""Which run backend a job's run gets: the mode the job asked for (else its cluster's default,
else the server's), resolved against its cluster. `batch` is spark-submit everywhere; `connect`
asked for by a job needs a cluster that can have a Spark Connect server (a 400 names why not);
`auto`, and a default of `connect`, take connect where they can and batch elsewhere, and batch
too while the cluster's Connect server is `failed`, so jobs keep running. A Spark Connect
session takes only runtime SQL settings (`spark.sql.*`): a job whose `conf` holds others (an
executor's memory, a driver option) needs a driver of its own, so asked for by name connect is
a 400 that names the keys, and preferred it runs batch. Each run resolves anew: a restart
after the cluster gained or lost Connect takes what is there now."""

from collections.abc import Callable, Mapping

from ..errors import InvalidInput
from ..runs.backend import BATCH_BACKEND, CONNECT_BACKEND
from .clusters import Cluster

# Why a cluster cannot run warm jobs, or None when it can.
ConnectRefusal = Callable[[Cluster], str | None]
# The state of a cluster's Connect server (ConnectServers.status(cluster_id).state).
ConnectState = Callable[[str], str]


def _connect_is_off(cluster: Cluster) -> str:
    return "Spark Connect is turned off on this server (DataHarbourApp.connect_enabled)"


SESSION_CONF_PREFIX = "spark.sql."


def _session_refusal(conf: Mapping[str, str]) -> str | None:
    """Why a Spark Connect session cannot take the job's conf, or None."""
    driver_keys = sorted(key for key in conf if not key.startswith(SESSION_CONF_PREFIX))
    if not driver_keys:
        return None
    return (f"a Spark Connect session takes only runtime SQL settings ({SESSION_CONF_PREFIX}*), and conf "
            f"{', '.join(driver_keys)} needs a driver of the job's own (or set it on the cluster)")


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

    def backend_for(self, requested: str | None, cluster: Cluster, conf: Mapping[str, str] | None = None) -> str:
        mode = requested or self.default_for(cluster)
        if mode == "batch":
            return BATCH_BACKEND
        refusal = self.connect_refusal(cluster)
        session_refusal = _session_refusal(conf or {})
        if requested == "connect":
            if refusal:
                raise InvalidInput(
                    "mode", f'connect mode is not available on cluster {cluster.id}: {refusal}; use "mode": "batch"'
                )
            if session_refusal:
                raise InvalidInput("conf", f'{session_refusal}; use "mode": "batch"')
            return CONNECT_BACKEND  # asked for by name: its start is tried again, even after a failure
        # A preference (auto, or a default): a cluster without the warm path, a conf a session
        # cannot take, or a Connect server that could not start or died too often: batch.
        return BATCH_BACKEND if refusal or session_refusal or self._connect_failed(cluster) else CONNECT_BACKEND

    def _connect_failed(self, cluster: Cluster) -> bool:
        return self.connect_state is not None and self.connect_state(cluster.id) == "failed"
