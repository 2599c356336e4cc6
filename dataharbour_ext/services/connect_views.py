"""A cluster's warm path as the API shows it (`ClusterInfo.connect`): whether warm jobs can run
there, the mode its jobs get by default, its Spark Connect server and its warm workers."""

from ..models.clusters import ConnectInfo
from ..runs.backend import CONNECT_BACKEND
from .clusters import Cluster
from .connect_servers import ConnectServers
from .job_modes import JobModes
from .warm_pool import WarmPool


class ConnectViews:
    def __init__(self, servers: ConnectServers, pool: WarmPool, modes: JobModes):
        self.servers = servers
        self.pool = pool
        self.modes = modes

    def __call__(self, cluster: Cluster) -> ConnectInfo:
        refusal = self.servers.refusal(cluster)
        # What a job naming no mode gets here now: its cluster's default resolved as a run would.
        default = "connect" if self.modes.backend_for(None, cluster) == CONNECT_BACKEND else "batch"
        if refusal:
            return ConnectInfo(available=False, reason=refusal, default_mode=default)
        server = self.servers.status(cluster.id)
        pool = self.pool.status(cluster.id)
        return ConnectInfo(
            available=True,
            reason=server.reason,
            default_mode=default,
            state=server.state,
            address=server.address,
            warm_ready=pool.ready,
            warm_starting=pool.starting,
            warm_running=pool.running,
        )
