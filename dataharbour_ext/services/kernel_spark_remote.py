"""KernelSparkRemote: kernels started by this server get SPARK_REMOTE, the endpoint of one
cluster's Spark Connect server (the default cluster's), so `SparkSession.builder.getOrCreate()`
in a notebook is a Spark Connect session on the warm server: no JVM in the kernel, and a
session in well under a second once that server runs.

A kernel keeps its environment for its life (restarts too), so the endpoint is pinned: one
port and token for every start of that server while this server runs (a healthy server a dead
one left behind, adopted, keeps its own). While the Connect server is not running an
ActivationListener owns the port and starts it on a kernel's first connection: no JVM runs for
kernels that never use Spark. A start that failed is not tried again by kernels' connections
for `retry_after_failure` seconds (a client retries for minutes: each try would be a JVM).
Should another process take the port while the server is stopped, a new port and token are
pinned: kernels started from then on get them, older ones lose the warm server (and never send
the token that reaches it to the new owner of the old port).

A kernel connected to the server counts as use (looked at every `look_interval` seconds): the
idle stop waits for the kernels to let go of it.
"""

import asyncio
import contextlib
import logging
import secrets

import psutil

from ..spark import connect_server
from ..spark.standalone import free_port
from .clusters import ClusterService
from .connect_activation import ActivationListener
from .connect_servers import ConnectServers

log = logging.getLogger("dataharbour_ext.connect")

VARIABLE = "SPARK_REMOTE"
PORT_OWNED_STATES = ("starting", "ready", "stopping")  # the server's JVM has, or is about to have, the port


class KernelSparkRemote:
    def __init__(self, servers: ConnectServers, clusters: ClusterService, kernel_manager, cluster_id: str, *,
                 look_interval: float = 60.0, retry_after_failure: float = 60.0):
        self.servers = servers
        self.clusters = clusters
        self.kernel_manager = kernel_manager
        self.cluster_id = cluster_id
        self.look_interval = look_interval
        self.retry_after_failure = retry_after_failure
        self._endpoint: tuple[int, str] | None = None  # (port, token): a secret, like every Connect token
        self._listener: ActivationListener | None = None
        self._listening = asyncio.Lock()  # one bind at a time: a second would find the port taken by the first
        self._failed_at: float | None = None  # loop time the last activation failed
        self._tasks: set[asyncio.Task] = set()
        self._closing = False

    @property
    def port(self) -> int | None:
        return self._endpoint[0] if self._endpoint is not None else None

    @property
    def listening(self) -> bool:
        return self._listener is not None and self._listener.listening

    def variables(self) -> dict[str, str]:
        """What a kernel starting now gets in its environment (a KernelEnvironment provider)."""
        if self._endpoint is None or self._closing:
            return {}
        return {VARIABLE: connect_server.endpoint_url(*self._endpoint)}

    async def start(self) -> None:
        """After ConnectServers has settled the servers a dead server left behind (one adopted
        keeps its endpoint), before any start of this cluster's server (it must use the pin)."""
        cluster = self.clusters.get(self.cluster_id)
        refusal = "it is unknown" if cluster is None else self.servers.refusal(cluster)
        if refusal is not None or connect_server.EXTERNAL_URL_CONF in cluster.conf:
            log.info("DataHarbour: kernels get no %s: cluster %s has no Spark Connect server run here (%s)", VARIABLE,
                     self.cluster_id, refusal or "it names its own")
            return
        running = self.servers.current_endpoint(self.cluster_id)
        if running is not None and running.token is not None:
            self._pin((running.port, running.token))
        else:
            self._pin((await asyncio.to_thread(free_port), secrets.token_urlsafe(32)))
        self.servers.on_change(self._server_changed)
        await self._listen()
        if self.look_interval > 0:
            self._spawn(self._look_at_kernels(), "dataharbour-kernel-spark-look")

    async def stop(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            await self._listener.stop()

    # ---- the port, while the server does not run --------------------------------------

    def _pin(self, endpoint: tuple[int, str]) -> None:
        self._endpoint = endpoint
        self.servers.pin(self.cluster_id, *endpoint)
        self._listener = ActivationListener(connect_server.HOST, endpoint[0], f"the Spark Connect server of cluster "
                                            f"{self.cluster_id}", self._activate, self._relisten)

    async def _activate(self) -> None:
        loop = asyncio.get_running_loop()
        cluster = self.clusters.get(self.cluster_id)
        if cluster is None or (self.servers.status(self.cluster_id).state == "failed" and self._failed_at is not None
                               and loop.time() - self._failed_at < self.retry_after_failure):
            return  # the held connections are closed: the client's retries see the port refused
        try:
            await self.servers.ensure(cluster)
        except Exception:
            self._failed_at = loop.time()
            raise

    def _server_changed(self, cluster_id: str) -> None:
        if cluster_id != self.cluster_id or self._listener is None:
            return
        if self.servers.status(cluster_id).state in PORT_OWNED_STATES:
            self._listener.close()  # at once: its JVM binds the port next
        else:
            self._relisten()

    def _relisten(self) -> None:
        if not self._closing:
            self._spawn(self._listen(), "dataharbour-kernel-spark-listen")

    async def _listen(self) -> None:
        async with self._listening:
            if self._closing or self._server_has_port():
                return
            try:
                await self._listener.listen()
            except OSError as error:
                port = self.port
                self._pin((await asyncio.to_thread(free_port), secrets.token_urlsafe(32)))
                log.warning("DataHarbour: port %d of the kernels' Spark Connect server is taken (%s): kernels started "
                            "from now on get port %d", port, error, self.port)
                with contextlib.suppress(OSError):  # taken again at once: the next start or stop tries anew
                    await self._listener.listen()
            if self._server_has_port():  # a start began while the port was being bound: give it up
                self._listener.close()

    def _server_has_port(self) -> bool:
        return self.servers.status(self.cluster_id).state in PORT_OWNED_STATES

    # ---- kernels in use count as use --------------------------------------------------

    async def _look_at_kernels(self) -> None:
        while True:
            await asyncio.sleep(self.look_interval)
            try:
                pids = self._kernel_pids()
                if pids and self.servers.status(self.cluster_id).state == "ready" and \
                        await asyncio.to_thread(connected_to, pids, self.port):
                    self.servers.touch(self.cluster_id)
            except Exception:  # the next look tries again
                log.exception("DataHarbour: could not look at the kernels connected to the Spark Connect server")

    def _kernel_pids(self) -> list[int]:
        pids = []
        for kernel_id in self.kernel_manager.list_kernel_ids():
            with contextlib.suppress(KeyError):
                pid = getattr(getattr(self.kernel_manager.get_kernel(kernel_id), "provisioner", None), "pid", None)
                if isinstance(pid, int):
                    pids.append(pid)
        return pids

    def _spawn(self, coroutine, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def connected_to(pids: list[int], port: int) -> bool:
    """Whether one of `pids` has a TCP connection to `port` on this host. Blocking (/proc)."""
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections("tcp")
        except psutil.Error:
            continue
        if any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED for c in connections):
            return True
    return False
