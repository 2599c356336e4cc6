"""KernelSparkRemote: kernels started by this server get SPARK_REMOTE, the endpoint of one
cluster's Spark Connect server (the default cluster's), so `SparkSession.builder.getOrCreate()`
in a notebook is a Spark Connect session on the warm server: no JVM in the kernel, and a
session in well under a second once that server runs.

A kernel keeps its environment for its life (restarts too), so the endpoint is pinned: one
port and token for every start of that server, kept in `<state_dir>/connect/<cluster>.kernels.json`
(owner-only) so kernels outlive a restart of this server too. While the Connect server is not
running an ActivationListener owns the port and starts it on a kernel's first connection: no
JVM runs for kernels that never use Spark. Should another process take the port meanwhile, a
new one is pinned: kernels started from then on get it, older ones lose the warm server.

A kernel connected to the server counts as use (looked at every `look_interval` seconds): the
idle stop waits for the kernels to let go of it.
"""

import asyncio
import contextlib
import logging
import secrets
from pathlib import Path

import psutil

from ..runs import folder
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
                 look_interval: float = 60.0):
        self.servers = servers
        self.clusters = clusters
        self.kernel_manager = kernel_manager
        self.cluster_id = cluster_id
        self.look_interval = look_interval
        self._endpoint: tuple[int, str] | None = None  # (port, token): a secret, like every Connect token
        self._listener: ActivationListener | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closing = False

    @property
    def pinned_file(self) -> Path:
        return self.servers.config.connect_dir / f"{self.cluster_id}.kernels.json"

    def variables(self) -> dict[str, str]:
        """What a kernel starting now gets in its environment (a KernelEnvironment provider)."""
        if self._endpoint is None or self._closing:
            return {}
        return {VARIABLE: connect_server.endpoint_url(*self._endpoint)}

    async def start(self) -> None:
        """After ConnectServers.start (a leftover server it adopted keeps its endpoint)."""
        cluster = self.clusters.get(self.cluster_id)
        refusal = "it is unknown" if cluster is None else self.servers.refusal(cluster)
        if refusal is not None or connect_server.EXTERNAL_URL_CONF in cluster.conf:
            log.info("DataHarbour: kernels get no %s: cluster %s has no Spark Connect server run here (%s)", VARIABLE,
                     self.cluster_id, refusal or "it names its own")
            return
        running = self.servers.current_endpoint(self.cluster_id)
        if running is not None and running.token is not None:
            endpoint = (running.port, running.token)
            await asyncio.to_thread(self._save, endpoint)
        else:
            endpoint = await asyncio.to_thread(self._load_or_create)
        self._pin(endpoint)
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
        cluster = self.clusters.get(self.cluster_id)
        if cluster is not None:
            await self.servers.ensure(cluster)

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
        if self._closing or self.servers.status(self.cluster_id).state in PORT_OWNED_STATES:
            return
        try:
            await self._listener.listen()
        except OSError as error:
            port = self._endpoint[0]
            endpoint = (await asyncio.to_thread(free_port), self._endpoint[1])
            log.warning("DataHarbour: port %d of the kernels' Spark Connect server is taken (%s): kernels started "
                        "from now on get port %d", port, error, endpoint[0])
            await asyncio.to_thread(self._save, endpoint)
            self._pin(endpoint)
            with contextlib.suppress(OSError):  # taken again at once: the next start or stop tries anew
                await self._listener.listen()

    # ---- kernels in use count as use --------------------------------------------------

    async def _look_at_kernels(self) -> None:
        while True:
            await asyncio.sleep(self.look_interval)
            pids = self._kernel_pids()
            if pids and self.servers.status(self.cluster_id).state == "ready" and \
                    await asyncio.to_thread(connected_to, pids, self._endpoint[0]):
                self.servers.touch(self.cluster_id)

    def _kernel_pids(self) -> list[int]:
        pids = []
        for kernel_id in self.kernel_manager.list_kernel_ids():
            with contextlib.suppress(KeyError):
                pid = getattr(getattr(self.kernel_manager.get_kernel(kernel_id), "provisioner", None), "pid", None)
                if isinstance(pid, int):
                    pids.append(pid)
        return pids

    # ---- the pinned endpoint's file (blocking: threads) -------------------------------

    def _load_or_create(self) -> tuple[int, str]:
        saved = folder.read_json(self.pinned_file) or {}
        if isinstance(saved.get("port"), int) and isinstance(saved.get("token"), str) and saved["token"]:
            return saved["port"], saved["token"]
        endpoint = (free_port(), secrets.token_urlsafe(32))
        self._save(endpoint)
        return endpoint

    def _save(self, endpoint: tuple[int, str]) -> None:
        self.pinned_file.parent.mkdir(parents=True, exist_ok=True)
        folder.write_json_atomically(self.pinned_file, {"port": endpoint[0], "token": endpoint[1]})

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
