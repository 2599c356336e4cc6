"""ConnectServers: one Spark Connect server per cluster, run and supervised by this server.

    stopped -> starting -> ready -> stopping -> stopped
                   \\-> failed (it ended while starting, or did not start in time, or ended
                        `max_deaths` times within `death_window` seconds once ready; the
                        reason comes from its log; the next `ensure` tries again)
    ready -> (it ended) -> starting (after a back-off) -> ready: restarted while wanted
    external: a cluster whose conf names an sc:// server someone else runs
              (`dataharbour.connect.url`): used as is, never started

A server starts on first use (`ensure`), or at server start (`start(clusters)`), and stops
after `idle_timeout` seconds without use (0: never) unless jobs hold it (`hold`/`release`,
`in_use`). Each runs under a run supervisor in `<state_dir>/connect/<cluster_id>/` (spark/
connect_server.py writes the folder), watched for its end with a pidfd (DaemonGroup), its
log registered as the service log `connect:<cluster_id>`. Unlike runs and launched clusters,
Connect servers belong to this server process: `stop()` at shutdown stops them, by their
supervisors' identities.

Should this server die without stopping them, the next start of a server on the same state
folder looks at those whose owner (owner.json) provably no longer runs. One that is healthy
(its supervisor runs, a process of its tree listens on its recorded port, its token is in its
command.json, it was started for its cluster as the ClusterService now defines it, and that
cluster may have one) is adopted, so warm jobs re-attached to it keep their sessions: `ready`
on the same endpoint, watched, restarted and idle-stopped like one started here, owner.json
naming its new owner. The others are stopped.

Clusters that can have one: `local`, launched `standalone` and external `spark://` ones (the
driver runs here). k8s:// and yarn are refused.

The token a client needs is new for every start, unless the cluster's endpoint is pinned
(`pin`: kernels hold it in their environment, services/kernel_spark_remote.py); it is in the
endpoint `ensure` returns, never in a status, an event or a log line. Nothing here blocks
the event loop: folders, /proc and psutil work run in threads.
"""

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import shutil
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import Conflict, NotFound, ServiceUnavailable
from ..runs import folder
from ..runs import process as supervision
from ..runs.identity import ProcessIdentity
from ..runs.ports import listener_of
from ..runs.process import Supervised
from ..spark import connect_server
from ..spark.class_data import ClassDataArchive
from ..spark.s3a_conf import s3a_defaults
from ..spark.standalone import free_port
from ..store.log_files import read_tail
from .clusters import Cluster, ClusterService
from .service_logs import LogFiles, ServiceLogs
from .standalone_daemons import Daemon, DaemonGroup

log = logging.getLogger("dataharbour_ext.connect")

DAEMON_NAME = "connect"
OWNER_FILE = "owner.json"  # which server (process + instance) started the folder's server
PREVIOUS_LOG = f"{folder.LOG_FILE}.1"  # the log of the start before, kept for the logs view
READY_LOOK_SECONDS = 0.2  # how often a starting server's port is tried
CONNECT_TIMEOUT_SECONDS = 1.0
FAILURE_LOG_LINES = 200
STATES = ("stopped", "starting", "ready", "stopping", "failed", "external")


def connect_service_name(cluster_id: str) -> str:
    return f"connect:{cluster_id}"


@dataclass
class ConnectConfig:
    state_dir: str
    start_timeout: float = 120.0
    idle_timeout: float = 0.0  # seconds without use before a server is stopped; 0: never
    stop_grace_seconds: float = 10.0
    memory: str = connect_server.DEFAULT_MEMORY  # the server's heap (SPARK_DAEMON_MEMORY)
    niceness: int = 0
    max_deaths: int = 3  # ends of a ready server within death_window that make it `failed`
    death_window: float = 300.0
    restart_delay: float = 1.0  # the first restart's back-off; doubled for each further end
    # The object storage (MinioSettings): servers get its spark.hadoop.fs.s3a.* settings where
    # their cluster's conf is silent (spark/s3a_conf.py), so warm jobs read s3a:// as batch ones do.
    s3_settings: object = None

    def server_conf(self, cluster: Cluster) -> dict[str, str]:
        """What a server for `cluster` is started with: its conf, and our S3A settings."""
        return {**s3a_defaults(self.s3_settings, cluster.conf), **cluster.conf}

    @property
    def connect_dir(self) -> Path:
        return Path(self.state_dir) / "connect"


@dataclass(frozen=True)
class ConnectEndpoint:
    """Where a client connects: `SparkSession.builder.remote(endpoint.url)`. The url and token
    are secrets of this server's user: never put them in a response, an event or a log."""

    url: str = field(repr=False)
    port: int
    token: str | None = field(repr=False)
    started_at: datetime | None  # when the server process was started (None: external)


@dataclass(frozen=True)
class ConnectStatus:
    cluster_id: str
    state: str  # one of STATES
    reason: str | None = None  # why it failed, stopped or restarts
    address: str | None = None  # sc://localhost:PORT, without the token
    port: int | None = None
    pid: int | None = None  # the server's JVM, while ready
    started_at: datetime | None = None
    last_used_at: datetime | None = None
    in_use: int = 0  # jobs holding it


class StartFailed(Exception):
    """A start did not reach `ready`; `reason` says why, in words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class ConnectServer:
    """One cluster's Connect server as this service runs it."""

    cluster: Cluster
    run_dir: Path
    group: DaemonGroup
    state: str = "stopped"
    reason: str | None = None
    external_url: str | None = field(default=None, repr=False)
    port: int | None = None
    token: str | None = field(default=None, repr=False)
    jvm: ProcessIdentity | None = None  # the process listening on the port, once ready
    started_at: datetime | None = None
    last_used: float = 0.0  # loop time
    last_used_at: datetime | None = None
    holds: int = 0
    start_task: asyncio.Task | None = None  # the start under way: every ensure waits for this one
    stop_task: asyncio.Task | None = None
    deaths: deque = field(default_factory=deque)  # loop times a ready server ended
    idle_timer: asyncio.TimerHandle | None = None

    @property
    def daemon(self) -> Daemon | None:
        return self.group.daemons.get(DAEMON_NAME)

    @property
    def log_path(self) -> Path:
        return self.run_dir / folder.LOG_FILE

    def endpoint(self) -> ConnectEndpoint:
        if self.external_url is not None:
            _, port, token = connect_server.parse_connect_url(self.external_url)
            return ConnectEndpoint(self.external_url, port, token, None)
        return ConnectEndpoint(connect_server.endpoint_url(self.port, self.token), self.port, self.token,
                               self.started_at)

    def status(self) -> ConnectStatus:
        if self.external_url is not None:
            address = connect_server.public_url(self.external_url)
            port = connect_server.parse_connect_url(self.external_url)[1]
        else:
            port = self.port if self.state in ("starting", "ready", "stopping") else None
            address = connect_server.endpoint_url(port, None) if port else None
        return ConnectStatus(
            cluster_id=self.cluster.id, state=self.state, reason=self.reason, address=address, port=port,
            pid=self.jvm.pid if self.jvm is not None and self.state == "ready" else None,
            started_at=self.started_at, last_used_at=self.last_used_at, in_use=self.holds)


class ConnectServers:
    """The Connect servers of this server's clusters, by cluster id."""

    def __init__(self, config: ConnectConfig, *, clusters: ClusterService | None = None,
                 class_data: ClassDataArchive | None = None, service_logs: ServiceLogs | None = None,
                 choose_port: Callable[[], int] = free_port):
        self.config = config
        self.clusters = clusters  # for a cluster's state: a stopped cluster gets no server
        self.class_data = class_data
        self.service_logs = service_logs
        self.choose_port = choose_port
        self.log_config = connect_server.ConnectLogConfig(config.state_dir)
        self.instance = uuid.uuid4().hex  # this service, in the folders it owns
        self._servers: dict[str, ConnectServer] = {}
        self._pinned: dict[str, tuple[int, str]] = {}  # cluster id -> the port and token every start uses
        self._listeners: list[Callable[[str], None]] = []
        self._tasks: set[asyncio.Task] = set()
        self._closing = False

    # ---- queries ---------------------------------------------------------------------

    def status(self, cluster_id: str) -> ConnectStatus:
        server = self._servers.get(cluster_id)
        if server is None and self.clusters is not None:
            cluster = self.clusters.get(cluster_id)
            if cluster is not None and connect_server.EXTERNAL_URL_CONF in cluster.conf:
                server = self._server_for(cluster)  # someone else's: `external` from the start
        return server.status() if server is not None else ConnectStatus(cluster_id, "stopped")

    def current_endpoint(self, cluster_id: str) -> ConnectEndpoint | None:
        """The endpoint of the cluster's server while it is ready (a secret: see ConnectEndpoint)."""
        server = self._servers.get(cluster_id)
        return server.endpoint() if server is not None and server.state in ("ready", "external") else None

    def pin(self, cluster_id: str, port: int, token: str) -> None:
        """Every later start of the cluster's server listens on `port` with `token`, so
        clients given that endpoint once (kernels) reach each server started after."""
        self._pinned[cluster_id] = (port, token)

    def all_statuses(self) -> list[ConnectStatus]:
        return [server.status() for server in self._servers.values()]

    def on_change(self, listener: Callable[[str], None]) -> None:
        """`listener(cluster_id)` after every state change of a cluster's Connect server."""
        self._listeners.append(listener)

    # ---- use -------------------------------------------------------------------------

    async def ensure(self, cluster: Cluster) -> ConnectEndpoint:
        """The cluster's Connect server, started if it is not running, once it is ready.
        Concurrent callers share one start. ServiceUnavailable (with the reason from the
        server's log) when it cannot be started, Conflict for a cluster that cannot have one."""
        self._check_supported(cluster)
        while True:
            if self._closing:
                raise ServiceUnavailable("the server is shutting down: no Spark Connect server starts now")
            self._check_cluster_state(cluster)
            server = self._server_for(cluster)
            self._mark_used(server)
            if server.state in ("ready", "external") and server.cluster == cluster:
                return server.endpoint()
            if server.stop_task is not None:
                await asyncio.shield(server.stop_task)
                continue
            if server.cluster != cluster:  # redefined under the same id: the running one is stale
                await self._stop_server(server, "its cluster was redefined")
                self._forget(server)
                continue
            if server.start_task is None:
                if server.state == "failed":
                    server.deaths.clear()  # asked for again: it gets its restarts anew
                self._begin_start(server, self._start(server))
            starting = server.start_task
            try:
                return await asyncio.shield(starting)
            except asyncio.CancelledError:
                if not starting.cancelled() or asyncio.current_task().cancelling():
                    raise  # the caller itself is cancelled
                # Its start was called off (a stop, the server shutting down): look again.
            except StartFailed as failed:
                raise ServiceUnavailable(f"the Spark Connect server of cluster {cluster.id} could not start: "
                                         f"{failed.reason}") from None

    def touch(self, cluster_id: str) -> None:
        """Mark the cluster's server used now: its idle stop is put off."""
        server = self._servers.get(cluster_id)
        if server is not None:
            self._mark_used(server)

    def hold(self, cluster_id: str) -> None:
        """A job uses the server: no idle stop until as many `release`s."""
        server = self._servers.get(cluster_id)
        if server is None:
            raise NotFound(f"cluster {cluster_id} has no Spark Connect server here")
        server.holds += 1
        self._mark_used(server)

    def release(self, cluster_id: str) -> None:
        server = self._servers.get(cluster_id)
        if server is None or server.holds == 0:
            return
        server.holds -= 1
        self._mark_used(server)
        self._arm_idle_stop(server)

    @contextlib.asynccontextmanager
    async def using(self, cluster: Cluster):
        """`async with servers.using(cluster) as endpoint:` the cluster's server, ready and
        held for the block (no idle stop can come between the start and the hold)."""
        endpoint = await self.ensure(cluster)
        self.hold(cluster.id)
        try:
            yield endpoint
        finally:
            self.release(cluster.id)

    @contextlib.contextmanager
    def in_use(self, cluster_id: str):
        """`hold` for the duration of a `with` block."""
        self.hold(cluster_id)
        try:
            yield
        finally:
            self.release(cluster_id)

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self, clusters: Iterable[Cluster] = (), *, wait: bool = False) -> None:
        """At server start: adopt the healthy Connect servers a dead server left behind and
        stop the others (see the module's docstring), then start those of `clusters` (in the
        background unless `wait`; a failure is logged and shown in their status)."""
        await self._settle_leftovers()
        await self.start_clusters(clusters, wait=wait)

    async def start_clusters(self, clusters: Iterable[Cluster], *, wait: bool = False) -> None:
        """Start the servers of `clusters` (in the background unless `wait`; a failure is logged
        and shown in their status)."""
        starts = [self._spawn(self._start_logged(cluster), f"dataharbour-connect-start-{cluster.id}")
                  for cluster in clusters]
        if wait and starts:
            await asyncio.wait(starts)

    async def stop(self) -> None:
        """At server shutdown: stop every Connect server this service started."""
        self._closing = True
        await asyncio.gather(*(self._stop_server(server, "the server shut down")
                               for server in list(self._servers.values())), return_exceptions=True)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop_server(self, cluster_id: str, reason: str = "stopped on request") -> None:
        """Stop one cluster's Connect server (it starts again on the next `ensure`)."""
        server = self._servers.get(cluster_id)
        if server is not None:
            await self._stop_server(server, reason)

    async def remove(self, cluster_id: str) -> None:
        """The cluster is gone: stop its server and forget it (its log included)."""
        server = self._servers.get(cluster_id)
        if server is None:
            return
        await self._stop_server(server, "its cluster was deleted")
        if self._forget(server):
            self._changed(cluster_id)
            await asyncio.to_thread(shutil.rmtree, server.run_dir, True)

    def cluster_changed(self, cluster_id: str) -> None:
        """A ClusterService listener: a cluster that stopped, failed or went takes its Connect
        server with it (it is a driver of that cluster)."""
        server = self._servers.get(cluster_id)
        if server is None or self.clusters is None:
            return
        if self.clusters.get(cluster_id) is None:
            self._spawn(self.remove(cluster_id), f"dataharbour-connect-remove-{cluster_id}")
        elif server.external_url is not None:
            return  # someone else's: nothing of it runs here
        elif self.clusters.launch_refusal(cluster_id) is not None and server.state in ("starting", "ready"):
            reason = self.clusters.launch_refusal(cluster_id)
            self._spawn(self._stop_server(server, reason), f"dataharbour-connect-stop-{cluster_id}")

    # ---- servers a dead server left behind ----------------------------------------------

    async def _settle_leftovers(self) -> None:
        """Adopt the healthy leftovers, stop the others (and wait for that: a cluster started
        next finds its folder free)."""
        looking = asyncio.ensure_future(asyncio.to_thread(
            find_leftovers, self.config.connect_dir, self._adoptable_clusters(), self.instance,
            self.config.server_conf))
        try:
            leftovers = await asyncio.shield(looking)
        except asyncio.CancelledError:
            # The look may already have made this service their owner: watch them all the same.
            looking.add_done_callback(lambda done: done.cancelled() or done.exception()
                                      or self._settle(done.result()))
            raise
        stops = self._settle(leftovers)
        if stops:
            await asyncio.gather(*stops, return_exceptions=True)
            log.warning("DataHarbour: stopped %d Spark Connect server(s) left behind by a server that is gone",
                        len(stops))

    def _adoptable_clusters(self) -> dict[str, Cluster]:
        """The clusters whose leftover servers may be adopted: known, taking jobs, and with a
        server run here (a snapshot for the thread that looks at the leftovers)."""
        if self.clusters is None:
            return {}
        return {cluster.id: cluster for cluster in self.clusters.all()
                if self.clusters.launch_refusal(cluster.id) is None and self.refusal(cluster) is None
                and connect_server.EXTERNAL_URL_CONF not in cluster.conf}

    def _settle(self, leftovers: list["Leftover"]) -> list[asyncio.Task]:
        """Adopt the healthy ones; the stops of the others, under way."""
        stops = []
        for leftover in leftovers:
            why_not = leftover.why_not or self._adoption_refusal(leftover)
            if why_not is None:
                self._adopt_leftover(leftover)
            else:
                stops.append(self._spawn(self._stop_leftover(leftover, why_not),
                                         f"dataharbour-connect-leftover-{leftover.cluster_id}"))
        return stops

    def _adoption_refusal(self, leftover: "Leftover") -> str | None:
        if self._closing:
            return "the server is shutting down"
        server = self._servers.get(leftover.cluster.id)
        if server is not None and (server.state not in ("stopped", "failed") or server.start_task is not None
                                   or server.stop_task is not None):
            return "this server already runs one for its cluster"
        return None

    def _adopt_leftover(self, leftover: "Leftover") -> None:
        """Make a healthy leftover this service's own ready server, watched from now on."""
        server = self._server_for(leftover.cluster)
        server.cluster = leftover.cluster  # a stopped server kept may know an older definition
        server.run_dir = leftover.run_dir
        server.port, server.token = leftover.recorded.port, leftover.recorded.token
        server.jvm, server.started_at = leftover.jvm, leftover.started_at
        server.deaths.clear()
        daemon = Daemon(DAEMON_NAME, str(leftover.run_dir), leftover.supervised)
        server.group.daemons[DAEMON_NAME] = daemon
        self._set_state(server, "ready")
        log.info("DataHarbour: adopted the Spark Connect server of cluster %s on port %d (pid %d), left behind "
                 "by a server that is gone", server.cluster.id, server.port, server.jvm.pid)
        self._mark_used(server)  # its idle time counts from now
        self._arm_idle_stop(server)
        # Watched last: should it have ended meanwhile, that is a ready server's end (restarted).
        server.group.watch(daemon)

    async def _stop_leftover(self, leftover: "Leftover", why: str) -> None:
        log.warning("DataHarbour: stopping the Spark Connect server of cluster %s left behind by a server that "
                    "is gone: %s", leftover.cluster_id, why)
        group = DaemonGroup(f"connect {leftover.cluster_id} (left behind)")
        daemon = Daemon(DAEMON_NAME, str(leftover.run_dir), leftover.supervised)
        group.daemons[DAEMON_NAME] = daemon
        group.watch(daemon)
        await group.stop(self.config.stop_grace_seconds)

    # ---- which clusters --------------------------------------------------------------

    def refusal(self, cluster: Cluster) -> str | None:
        """Why `cluster` cannot have a Connect server here (so no warm jobs), or None."""
        try:
            self._check_supported(cluster)
        except Conflict as error:
            return str(error)
        return None

    @staticmethod
    def _check_supported(cluster: Cluster) -> None:
        if connect_server.EXTERNAL_URL_CONF in cluster.conf:
            try:
                connect_server.parse_connect_url(cluster.conf[connect_server.EXTERNAL_URL_CONF])
            except ValueError as error:
                raise Conflict(f"cluster {cluster.id}: {connect_server.EXTERNAL_URL_CONF} {error}") from None
            return
        master = cluster.master_url
        if master.startswith("local") or master.startswith("spark://"):
            return
        raise Conflict(f"cluster {cluster.id} ({master.split('://', 1)[0]}) cannot have a Spark Connect server run "
                       f"by this server: only local, standalone and spark:// clusters can (a k8s:// or yarn cluster "
                       f"may name its own in the conf key {connect_server.EXTERNAL_URL_CONF})")

    def _check_cluster_state(self, cluster: Cluster) -> None:
        if self.clusters is None or connect_server.EXTERNAL_URL_CONF in cluster.conf:
            return
        refusal = self.clusters.launch_refusal(cluster.id)
        if refusal is None:
            return
        if self.clusters.condition(cluster.id).state == "starting":
            raise ServiceUnavailable(f"{refusal}: its Spark Connect server starts once it runs", retry_after=5)
        raise Conflict(f"{refusal}: it has no Spark Connect server")

    def _server_for(self, cluster: Cluster) -> ConnectServer:
        server = self._servers.get(cluster.id)
        if server is not None:
            return server
        server = ConnectServer(cluster, self.config.connect_dir / cluster.id, DaemonGroup(f"connect {cluster.id}"))
        server.group.on_exit = functools.partial(self._ended, server)
        external = cluster.conf.get(connect_server.EXTERNAL_URL_CONF)
        if external is not None:
            server.external_url, server.state = external, "external"
        elif self.service_logs is not None:
            self.service_logs.register(connect_service_name(cluster.id), LogFiles(
                lambda: [server.run_dir / PREVIOUS_LOG, server.log_path]))
        self._servers[cluster.id] = server
        return server

    def _forget(self, server: ConnectServer) -> bool:
        """Drop a stopped server (its cluster went or was redefined); False if already gone."""
        if self._servers.get(server.cluster.id) is not server:
            return False
        del self._servers[server.cluster.id]
        if self.service_logs is not None:
            self.service_logs.unregister(connect_service_name(server.cluster.id))
        return True

    # ---- starting --------------------------------------------------------------------

    def _begin_start(self, server: ConnectServer, work) -> None:
        task = asyncio.create_task(work, name=f"dataharbour-connect-{server.cluster.id}")
        server.start_task = task

        def done(finished: asyncio.Task) -> None:
            if server.start_task is finished:
                server.start_task = None
            if not finished.cancelled():
                finished.exception()  # seen: a restart nobody waits for is no "never retrieved" error

        task.add_done_callback(done)

    async def _start_logged(self, cluster: Cluster) -> None:
        try:
            await self.ensure(cluster)
        except (ServiceUnavailable, Conflict) as error:
            log.warning("DataHarbour: %s", error.message)

    async def _start(self, server: ConnectServer) -> ConnectEndpoint:
        """A first start (or one after a stop or a failure): `failed` if it does not come up."""
        self._set_state(server, "starting")
        try:
            await self._start_once(server)
        except StartFailed as failed:
            self._set_state(server, "failed", failed.reason)
            log.warning("DataHarbour: the Spark Connect server of cluster %s could not start: %s", server.cluster.id,
                        failed.reason)
            raise
        return self._now_ready(server)

    async def _start_once(self, server: ConnectServer) -> None:
        """Launch the server and wait until it is ready; StartFailed with why not, once
        nothing of it runs."""
        deadline = asyncio.get_running_loop().time() + self.config.start_timeout
        try:
            try:
                await self._launch(server)
            except (OSError, ValueError) as error:  # a folder not writable, a conf value not encodable
                raise StartFailed(f"it could not be started: {error}") from None
            server.jvm = await self._wait_until_ready(server, deadline)
        except StartFailed:
            if server.daemon is not None and not server.daemon.ended.is_set():
                await server.group.stop(self.config.stop_grace_seconds)
            raise

    def _now_ready(self, server: ConnectServer) -> ConnectEndpoint:
        self._set_state(server, "ready")
        log.info("DataHarbour: Spark Connect server of cluster %s ready on port %d (pid %d)", server.cluster.id,
                 server.port, server.jvm.pid)
        self._mark_used(server)
        self._arm_idle_stop(server)
        return server.endpoint()

    async def _launch(self, server: ConnectServer) -> None:
        """A new port and token (unless pinned), the run folder, then the supervisor: held until
        it is watched, so no server runs unwatched (a start called off meanwhile abandons it instead)."""
        pinned = self._pinned.get(server.cluster.id)
        if pinned is not None:
            server.port, server.token = pinned
        else:
            server.port = await asyncio.to_thread(self.choose_port)
            server.token = secrets.token_urlsafe(32)
        server.jvm = None
        spec = connect_server.ConnectServerSpec(
            master_url=server.cluster.master_url, port=server.port, token=server.token,
            cluster_conf=self.config.server_conf(server.cluster),
            java_options=await asyncio.to_thread(self._java_options), memory=self.config.memory)
        server.run_dir = await asyncio.to_thread(self._run_dir_for, server.cluster.id)
        await asyncio.to_thread(self._prepare_folder, server.run_dir, spec)
        launching = asyncio.ensure_future(asyncio.to_thread(supervision.launch, server.run_dir, held=True))
        try:
            supervised = await asyncio.shield(launching)
        except asyncio.CancelledError:
            launching.add_done_callback(lambda done: done.cancelled() or done.exception()
                                        or self._adopt(server, done.result(), release=False))
            raise
        self._adopt(server, supervised, release=True)
        server.started_at = datetime.now(timezone.utc)

    def _adopt(self, server: ConnectServer, supervised: Supervised, *, release: bool) -> None:
        """Watch a new supervisor (so it is reaped and stoppable), then let it start the server,
        or, for a start called off, have it end without starting anything."""
        daemon = Daemon(DAEMON_NAME, str(server.run_dir), supervised, held=not release)
        server.group.daemons[DAEMON_NAME] = daemon
        server.group.watch(daemon)
        if release:
            supervised.release()
        else:
            supervised.abandon()

    def _java_options(self) -> list[str]:
        return [*(self.class_data.java_options() if self.class_data else []), *self.log_config.java_options()]

    def _run_dir_for(self, cluster_id: str) -> Path:
        """`<state_dir>/connect/<cluster_id>`, unless a live server of another Jupyter server
        sharing this state folder runs there: then a folder of this service's own."""
        path = self.config.connect_dir / cluster_id
        owner = folder.read_json(path / OWNER_FILE) or {}
        if owner.get("instance") in (None, self.instance) or not _supervisor_runs(path):
            return path
        return self.config.connect_dir / f"{cluster_id}@{self.instance[:8]}"

    def _prepare_folder(self, run_dir: Path, spec: connect_server.ConnectServerSpec) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / folder.LOG_FILE).exists():  # the log of this start alone names its failure
            os.replace(run_dir / folder.LOG_FILE, run_dir / PREVIOUS_LOG)
        connect_server.write_server_folder(run_dir, spec, stop_grace_seconds=self.config.stop_grace_seconds,
                                           niceness=self.config.niceness)
        write_owner(run_dir, self.instance)

    async def _wait_until_ready(self, server: ConnectServer, deadline: float) -> ProcessIdentity:
        """The server's JVM once its port answers and is provably its own (a process of its
        supervisor's tree listens there); StartFailed if it ends first or the deadline passes."""
        loop = asyncio.get_running_loop()
        daemon = server.daemon
        while True:
            if daemon.ended.is_set():
                raise StartFailed(await asyncio.to_thread(self._failure_of, server, daemon))
            if await _port_answers(connect_server.HOST, server.port):
                jvm = await asyncio.to_thread(listener_of, daemon.supervised.identity, server.port)
                if jvm is not None:
                    return jvm
            if loop.time() >= deadline:
                reason = await asyncio.to_thread(self._failure_of, server, daemon)
                raise StartFailed(f"it did not start within {self.config.start_timeout:g} s: {reason}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(daemon.ended.wait(), READY_LOOK_SECONDS)

    def _failure_of(self, server: ConnectServer, daemon: Daemon) -> str:
        """Why the server ended (or is not up), from its log. Blocking: in a thread."""
        status = folder.read_exit_status(daemon.run_dir) or {}
        lines = read_tail(str(server.log_path), FAILURE_LOG_LINES, final=True).lines \
            if server.log_path.is_file() else []
        if not daemon.ended.is_set() and not status:
            errors = connect_server.failure_reason(lines, None, server.port)
            if errors == connect_server.failure_reason([], None):
                return "it was still starting, and its log names no error"
            return errors
        return connect_server.failure_reason(lines, status.get("returncode"), server.port)

    # ---- its end -----------------------------------------------------------------------

    def _ended(self, server: ConnectServer, daemon: Daemon) -> None:
        """DaemonGroup's on_exit: a ready server that ends is restarted (after a back-off), or
        fails once it has ended too often. Ends while starting or stopping are those tasks'."""
        if server.state != "ready" or daemon is not server.daemon:
            return
        self._cancel_idle_stop(server)
        self._set_state(server, "starting", "it ended; restarting")  # at once: no ensure may get its endpoint
        self._begin_start(server, self._restart(server, daemon))

    async def _restart(self, server: ConnectServer, daemon: Daemon) -> ConnectEndpoint:
        """Start it again after a back-off that doubles with each end (a restart that does not
        come up counts as one), until it has ended `max_deaths` times within `death_window`."""
        reason = await asyncio.to_thread(self._failure_of, server, daemon)
        while True:
            now = asyncio.get_running_loop().time()
            server.deaths.append(now)
            while server.deaths and now - server.deaths[0] > self.config.death_window:
                server.deaths.popleft()
            ends = len(server.deaths)
            if ends >= self.config.max_deaths:
                failed = f"it ended {ends} times within {self.config.death_window:g} s, the last time: {reason}"
                self._set_state(server, "failed", failed)
                log.warning("DataHarbour: the Spark Connect server of cluster %s failed: %s", server.cluster.id,
                            failed)
                raise StartFailed(failed)
            delay = self.config.restart_delay * 2 ** (ends - 1)
            log.warning("DataHarbour: the Spark Connect server of cluster %s ended (%s); restarting in %g s",
                        server.cluster.id, reason, delay)
            self._set_state(server, "starting", f"restarting: it ended: {reason}")
            await asyncio.sleep(delay)
            try:
                await self._start_once(server)
            except StartFailed as failed:
                reason = failed.reason
                continue
            return self._now_ready(server)

    # ---- stopping ----------------------------------------------------------------------

    async def _stop_server(self, server: ConnectServer, reason: str) -> None:
        """Stop it (a start under way is called off first); one stop at a time per server."""
        if server.external_url is not None:
            return
        if server.stop_task is None:
            server.stop_task = asyncio.create_task(self._stop_now(server, reason),
                                                   name=f"dataharbour-connect-stop-{server.cluster.id}")
            server.stop_task.add_done_callback(lambda _: setattr(server, "stop_task", None))
        await asyncio.shield(server.stop_task)

    async def _stop_now(self, server: ConnectServer, reason: str) -> None:
        self._cancel_idle_stop(server)
        starting = server.start_task
        if starting is not None:
            starting.cancel()
            await asyncio.wait({starting})
        running = server.daemon is not None and not server.daemon.ended.is_set()
        if running or server.state in ("starting", "ready"):
            self._set_state(server, "stopping", reason)
            await server.group.stop(self.config.stop_grace_seconds)
            self._set_state(server, "stopped", reason)
            log.info("DataHarbour: Spark Connect server of cluster %s stopped: %s", server.cluster.id, reason)
        server.deaths.clear()

    def _arm_idle_stop(self, server: ConnectServer) -> None:
        self._cancel_idle_stop(server)
        timeout = self.config.idle_timeout
        if timeout <= 0 or server.state != "ready" or server.holds:
            return
        loop = asyncio.get_running_loop()
        wait = max(0.0, server.last_used + timeout - loop.time())
        server.idle_timer = loop.call_later(wait, self._idle_check, server)

    def _cancel_idle_stop(self, server: ConnectServer) -> None:
        if server.idle_timer is not None:
            server.idle_timer.cancel()
            server.idle_timer = None

    def _idle_check(self, server: ConnectServer) -> None:
        server.idle_timer = None
        if server.state != "ready" or server.holds:
            return  # a release arms it again
        timeout = self.config.idle_timeout
        if timeout > 0 and asyncio.get_running_loop().time() - server.last_used >= timeout:
            self._spawn(self._stop_server(server, f"idle for {timeout:g} s; it starts again on first use"),
                        f"dataharbour-connect-idle-{server.cluster.id}")
        else:
            self._arm_idle_stop(server)  # used meanwhile: look again when that use has aged

    # ---- helpers -----------------------------------------------------------------------

    def _mark_used(self, server: ConnectServer) -> None:
        server.last_used = asyncio.get_running_loop().time()
        server.last_used_at = datetime.now(timezone.utc)

    def _set_state(self, server: ConnectServer, state: str, reason: str | None = None) -> None:
        if (server.state, server.reason) == (state, reason):
            return
        server.state, server.reason = state, reason
        self._changed(server.cluster.id)

    def _changed(self, cluster_id: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(cluster_id)
            except Exception:  # a listener's bug must not stop a server's supervision
                log.exception("DataHarbour: a Connect server listener failed")

    def _spawn(self, coroutine, name: str) -> asyncio.Task:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


# ---- blocking helpers (threads) ----------------------------------------------------------


async def _port_answers(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_SECONDS)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _supervisor_runs(run_dir: Path) -> bool:
    identity = folder.read_supervisor(run_dir)
    return identity is not None and identity.matches() and folder.read_exit_status(run_dir) is None


def write_owner(run_dir: Path, instance: str) -> None:
    """owner.json: this process (and service instance) owns the folder's server. Blocking."""
    me = ProcessIdentity.of(os.getpid())
    folder.write_json_atomically(run_dir / OWNER_FILE, {**(me.to_json() if me else {}), "instance": instance})


@dataclass(frozen=True)
class Leftover:
    """A Connect server left running by a server that is gone, as one look found it:
    adoptable (`why_not` None: `recorded`, `jvm` and `cluster` set) or to be stopped."""

    cluster_id: str  # its folder's name
    run_dir: Path
    supervised: Supervised
    why_not: str | None = None
    cluster: Cluster | None = None
    recorded: connect_server.RecordedServer | None = field(default=None, repr=False)
    jvm: ProcessIdentity | None = None
    started_at: datetime | None = None


def _own_conf(cluster: Cluster) -> dict[str, str]:
    return cluster.conf


def find_leftovers(connect_dir: Path, clusters: dict[str, Cluster], instance: str,
                   server_conf: Callable[[Cluster], dict[str, str]] = _own_conf) -> list[Leftover]:
    """The Connect servers in `connect_dir` whose owner (the Jupyter server that started them)
    provably no longer runs and whose supervisor still does, each looked at. The healthy ones
    (see `_look_at_leftover`; `server_conf`: the conf a server for a cluster is started with)
    get this process and `instance` as their owner. Blocking (files,
    /proc): call it in a thread."""
    try:
        folders = [entry for entry in connect_dir.iterdir() if entry.is_dir()]
    except OSError:
        return []
    found = []
    for run_dir in folders:
        owner = ProcessIdentity.from_json(folder.read_json(run_dir / OWNER_FILE))
        supervisor = folder.read_supervisor(run_dir)
        if owner is None or supervisor is None or owner.matches():
            continue  # not provably abandoned: another server's, or none recorded
        supervised = Supervised.attach(supervisor)
        if supervised is None:
            continue  # nothing of it runs
        leftover = _look_at_leftover(run_dir, supervised, clusters.get(run_dir.name), server_conf)
        if leftover.why_not is None:
            write_owner(run_dir, instance)
        found.append(leftover)
    return found


def _look_at_leftover(run_dir: Path, supervised: Supervised, cluster: Cluster | None,
                      server_conf: Callable[[Cluster], dict[str, str]] = _own_conf) -> Leftover:
    """Adoptable if it was started for `cluster` as defined now, its token is recorded, and a
    process of its supervisor's tree listens on its recorded port."""
    def unfit(why: str) -> Leftover:
        return Leftover(run_dir.name, run_dir, supervised, why_not=why)

    if cluster is None:
        return unfit(f"cluster {run_dir.name} is unknown here, or has no Spark Connect server now")
    recorded = connect_server.read_server_folder(run_dir)
    if recorded is None or recorded.port is None or recorded.token is None:
        return unfit("its port or token is not recorded in its folder")
    if not recorded.serves(cluster.master_url, server_conf(cluster)):
        return unfit("it was started for another definition of its cluster")
    jvm = listener_of(supervised.identity, recorded.port)
    if jvm is None:
        return unfit(f"nothing of it listens on its port {recorded.port}")
    try:  # the supervisor records itself as it starts
        started_at = datetime.fromtimestamp((run_dir / folder.SUPERVISOR_FILE).stat().st_mtime, timezone.utc)
    except OSError:
        started_at = None
    return Leftover(run_dir.name, run_dir, supervised, cluster=cluster, recorded=recorded, jvm=jvm,
                    started_at=started_at)
