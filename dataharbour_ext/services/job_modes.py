"""Which run backend a job's run gets: the mode the job asked for (else the server's default),
resolved against its cluster. `batch` is spark-submit everywhere; `connect` asked for by a job
needs a cluster that can have a Spark Connect server (a 400 names why not); `auto`, and a
server default of `connect`, take connect where they can and batch elsewhere. Each run
resolves anew: a restart after the cluster gained or lost Connect takes what is there now."""

from collections.abc import Callable

from ..errors import InvalidInput
from ..runs.backend import BATCH_BACKEND, CONNECT_BACKEND
from .clusters import Cluster

# Why a cluster cannot run warm jobs, or None when it can.
ConnectRefusal = Callable[[Cluster], str | None]


def _connect_is_off(cluster: Cluster) -> str:
    return "Spark Connect is turned off on this server (DataHarbourApp.connect_enabled)"


class JobModes:
    def __init__(self, default_mode: str = "batch", connect_refusal: ConnectRefusal = _connect_is_off):
        self.default_mode = default_mode
        self.connect_refusal = connect_refusal

    def backend_for(self, requested: str | None, cluster: Cluster) -> str:
        mode = requested or self.default_mode
        if mode == "batch":
            return BATCH_BACKEND
        refusal = self.connect_refusal(cluster)
        if requested == "connect" and refusal:
            raise InvalidInput("mode", f"connect mode is not available on cluster {cluster.id}: {refusal}; "
                                       f"use \"mode\": \"batch\"")
        # The server's default is a preference: a cluster without the warm path runs batch.
        return BATCH_BACKEND if refusal else CONNECT_BACKEND
