"""The warm pool: Python workers started ahead of jobs, each with pyspark imported and a Spark
Connect session open on its cluster's Connect server (spark/connect_worker.py), so that a warm
job starts in a fraction of a second.

Per cluster in use, `size` workers are kept starting or ready; a job takes a ready one (the
first job of a cluster waits for its Connect server and a worker), and the pool refills in the
background. Each worker runs under a run supervisor in warm mode in its own slot folder under
`<state_dir>/warm/<cluster id>/`; the job's run binds it to the run's folder
(`Supervised.bind`), so from then on it is that run, watched, killed and settled like any other.
A worker belongs to one Connect server start: when that server stops, fails or restarts, the
cluster's unbound workers are let go (their supervisors stop them) and new ones are started on
the next take. Workers a job took hold their Connect server (no idle stop) until they end.
"""

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Conflict, NotFound, ServiceUnavailable
from ..runs import folder
from ..runs import process as supervision
from ..runs.backend import LaunchError
from ..runs.process import Supervised
from ..spark import connect_worker
from ..store.log_files import read_tail
from .clusters import Cluster
from .connect_servers import ConnectEndpoint, ConnectServers

log = logging.getLogger("dataharbour_ext.warm_pool")

LOOK_SECONDS = 0.1  # how often starting workers are looked at (ready file, still alive)
BUSY_LOOK_SECONDS = 2.0  # how often ready and taken workers are looked at
FAILURES_BEFORE_GIVING_UP = 3  # workers in a row that ended before ready: takes fail with the reason
FAILURE_LOG_LINES = 40
DEAD_SERVER_LOOK_SECONDS = 0.2
PORT_CHECK_SECONDS = 2.0
RETIRE_MARGIN_SECONDS = 30.0
REFILL_DELAY_SECONDS = 2.0  # a refill behind a take waits this long while another worker is ready
# The Connect server closes a session after 60 minutes without an RPC (Spark's default
# spark.connect.session.manager.defaultSessionTimeout); a ready worker sends none.
MAX_WORKER_AGE_SECONDS = 45 * 60  # past the stop grace, before a retired worker's supervisor is waited no more


@dataclass
class WarmPoolConfig:
    state_dir: str
    root_dir: str  # the workers' working directory, as for batch runs: the Jupyter root
    size: int = 2  # workers kept starting or ready per cluster in use
    ready_timeout: float = 120.0  # a take waits this long for a ready worker
    stop_grace_seconds: float = 5.0
    niceness: int = 0

    @property
    def warm_dir(self) -> Path:
        return Path(self.state_dir) / "warm"


@dataclass
class WarmWorker:
    directory: Path
    supervised: Supervised
    endpoint: ConnectEndpoint | None = field(repr=False)  # None: a run followed after a restart
    started: float = 0.0  # loop time
    ready: bool = False
    slot: bool = True  # `directory` is its slot, removed when it ends (not so for a run followed after a restart)
    ended: bool = False

    @property
    def log_path(self) -> Path:
        return self.directory / folder.LOG_FILE


@dataclass
class ClusterPool:
    cluster: Cluster
    endpoint: ConnectEndpoint | None = field(default=None, repr=False)
    workers: list[WarmWorker] = field(default_factory=list)  # unbound: starting or ready
    taken: list[WarmWorker] = field(default_factory=list)  # bound to runs, until they end
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    failures: int = 0  # workers in a row that ended before they were ready
    last_failure: str | None = None


@dataclass(frozen=True)
class PoolStatus:
    cluster_id: str
    size: int
    ready: int
    starting: int
    running: int  # workers running jobs


class WarmPool:
    def __init__(self, connect: ConnectServers, config: WarmPoolConfig):
        self.connect = connect
        self.config = config
        self._pools: dict[str, ClusterPool] = {}
        self._watcher: asyncio.Task | None = None
        self._closing = False
        self._background: set[asyncio.Future] = set()
        # Waiting for retired workers' supervisors to end takes threads for seconds: not the
        # default executor's, which every thread call of the extension shares.
        self._reaper = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dataharbour-warm-reaper")
        self._listeners: list[Callable[[str], None]] = []
        connect.on_change(self._connect_changed)

    def on_change(self, listener: Callable[[str], None]) -> None:
        """`listener(cluster_id)` when the cluster's workers change (ready, taken, ended)."""
        self._listeners.append(listener)

    def _changed(self, pool: ClusterPool) -> None:
        pool.changed.set()
        for listener in list(self._listeners):
            listener(pool.cluster.id)

    # ---- use -------------------------------------------------------------------------

    async def take(self, cluster: Cluster) -> WarmWorker:
        """A ready worker of the cluster, for one run; the pool refills behind it. The
        cluster's Connect server is started first if need be. LaunchError says why not."""
        pool = self._pools.setdefault(cluster.id, ClusterPool(cluster))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.ready_timeout
        while True:
            if self._closing:
                raise LaunchError("the server is shutting down")
            endpoint = await self._endpoint(pool)
            if pool.failures >= FAILURES_BEFORE_GIVING_UP:
                pool.failures = 0  # the next take tries again
                raise LaunchError(f"warm workers of cluster {cluster.id} end before they are ready: "
                                  f"{pool.last_failure}")
            self._retire_aged(pool)
            await self._fill(pool, extra=not any(w.ready for w in pool.workers))
            worker = next((w for w in pool.workers if w.ready and not w.ended), None)
            # A server that died a moment ago, before the Connect service noticed: its
            # workers' sessions are lost. Wait for its restart (a new endpoint lets them go).
            if worker is not None and await _answers(endpoint) and worker in pool.workers and not worker.ended:
                self.connect.hold(cluster.id)  # until the worker ends: no idle stop under a job
                pool.workers.remove(worker)
                pool.taken.append(worker)
                self._ensure_watcher()
                self._in_background(self._refill(pool))  # not on the job's way
                self._changed(pool)
                return worker
            left = deadline - loop.time()
            if left <= 0:
                raise LaunchError(f"no warm worker of cluster {cluster.id} was ready within "
                                  f"{self.config.ready_timeout:.0f} s")
            pool.changed.clear()
            try:
                await asyncio.wait_for(pool.changed.wait(), DEAD_SERVER_LOOK_SECONDS if worker else left)
            except asyncio.TimeoutError:
                pass

    async def _endpoint(self, pool: ClusterPool) -> ConnectEndpoint:
        """The cluster's Connect server, started if need be; workers of an earlier start go."""
        try:
            endpoint = await self.connect.ensure(pool.cluster)
        except (ServiceUnavailable, Conflict) as error:  # it cannot start, or the cluster cannot have one
            raise LaunchError(str(error)) from None
        if pool.endpoint != endpoint:
            self._let_go(pool, "its Connect server was restarted")
            pool.endpoint = endpoint
        return endpoint

    def follow(self, cluster: Cluster, run_dir: str, supervised: Supervised) -> None:
        """A warm run re-attached after a server restart: its Connect server is held (no idle
        stop) until it ends, as for the runs this pool handed out."""
        try:
            self.connect.hold(cluster.id)
        except NotFound:
            return  # its server is not this server's (it was not adopted): nothing to hold
        pool = self._pools.setdefault(cluster.id, ClusterPool(cluster))
        pool.taken.append(WarmWorker(Path(run_dir), supervised, None, asyncio.get_running_loop().time(), ready=True,
                                     slot=False))
        self._ensure_watcher()
        self._changed(pool)

    def status(self, cluster_id: str) -> PoolStatus:
        pool = self._pools.get(cluster_id)
        workers = pool.workers if pool else []
        ready = sum(1 for w in workers if w.ready and not w.ended)
        return PoolStatus(cluster_id, self.config.size, ready, sum(1 for w in workers if not w.ready and not w.ended),
                          len(pool.taken) if pool else 0)

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Remove the slot folders of workers that no longer run (a server before this one)."""
        await asyncio.to_thread(_remove_ended_slots, self.config.warm_dir)

    async def stop(self) -> None:
        """Let the unbound workers go (their supervisors stop them); taken ones are runs:
        they go on, like every run, and the next server settles them."""
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        for pool in self._pools.values():
            self._let_go(pool, "the server stops")
            pool.changed.set()
        if self._background:
            await asyncio.wait(set(self._background))
        self._reaper.shutdown(wait=False)

    # ---- workers ---------------------------------------------------------------------

    async def _refill(self, pool: ClusterPool) -> None:
        """After a take. While another worker is ready the new one waits a moment: on a small
        machine a worker starting (pyspark imported, a session opened) slows the job just
        taken, most of which is over in a second."""
        if any(w.ready and not w.ended for w in pool.workers):
            await asyncio.sleep(REFILL_DELAY_SECONDS)
        await self._fill(pool)

    async def _fill(self, pool: ClusterPool, *, extra: bool = False) -> None:
        """Start workers until `size` are starting or ready (one more when a take waits
        with none ready, so a pool of 0 still serves)."""
        wanted = max(self.config.size, 1 if extra else 0)
        missing = wanted - sum(1 for w in pool.workers if not w.ended)
        for _ in range(max(0, missing)):
            if self._closing or pool.endpoint is None:
                return
            worker = await self._start_worker(pool.cluster, pool.endpoint)
            pool.workers.append(worker)
        self._ensure_watcher()

    async def _start_worker(self, cluster: Cluster, endpoint: ConnectEndpoint) -> WarmWorker:
        directory = self.config.warm_dir / cluster.id / uuid.uuid4().hex[:12]
        argv = [sys.executable, "-m", "dataharbour_ext.spark.connect_worker", str(directory)]
        env = {"SPARK_REMOTE": endpoint.url, "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONUNBUFFERED": "1"}

        def launch() -> Supervised:
            folder.create(directory)
            folder.write_command(directory, argv, env, self.config.root_dir,
                                 stop_grace_seconds=self.config.stop_grace_seconds, niceness=self.config.niceness,
                                 warm=True)
            return supervision.launch_warm(directory)

        return WarmWorker(directory, await asyncio.to_thread(launch), endpoint, asyncio.get_running_loop().time())

    def _let_go(self, pool: ClusterPool, why: str) -> None:
        """Unbound workers end (each supervisor stops its worker when its pipe closes)."""
        if pool.workers:
            log.info("DataHarbour: letting %d warm worker(s) of cluster %s go: %s", len(pool.workers),
                     pool.cluster.id, why)
        for worker in pool.workers:
            self._retire(worker)
        pool.workers = []

    def _retire_aged(self, pool: ClusterPool) -> None:
        """Workers ready for longer than the server keeps an unused session go (and others
        start): an idle session is closed by the server after an hour."""
        now = asyncio.get_running_loop().time()
        for worker in [w for w in pool.workers if now - w.started > MAX_WORKER_AGE_SECONDS]:
            pool.workers.remove(worker)
            self._retire(worker)

    def _retire(self, worker: WarmWorker) -> None:
        """An unbound worker ends: its supervisor stops it, then is reaped, then its slot
        folder goes (in a thread: waiting and removing block)."""
        worker.ended = True
        worker.supervised.abandon()
        wait = self.config.stop_grace_seconds + RETIRE_MARGIN_SECONDS
        loop = asyncio.get_running_loop()
        self._in_background(loop.run_in_executor(self._reaper, _reap_and_remove, worker, wait))

    def _connect_changed(self, cluster_id: str) -> None:
        pool = self._pools.get(cluster_id)
        if pool is not None and self.connect.status(cluster_id).state not in ("ready", "external"):
            self._let_go(pool, f"its Connect server is {self.connect.status(cluster_id).state}")
            pool.endpoint = None
            pool.changed.set()

    def _in_background(self, work) -> None:
        future = asyncio.ensure_future(work)
        self._background.add(future)
        future.add_done_callback(self._background.discard)

    # ---- watching --------------------------------------------------------------------

    def _ensure_watcher(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name="dataharbour-warm-pool")

    async def _watch(self) -> None:
        """Starting workers: ready yet, or ended? Ready and taken ones: still there? One
        thread call per look for all of them (file and /proc reads)."""
        loop = asyncio.get_running_loop()
        next_busy_look = loop.time()
        while not self._closing:
            starting = [(p, w) for p in self._pools.values() for w in p.workers if not w.ready and not w.ended]
            busy_look = loop.time() >= next_busy_look
            others = [(p, w) for p in self._pools.values() for w in (*p.workers, *p.taken)
                      if (w.ready or w in p.taken) and not w.ended] if busy_look else []
            if busy_look:
                next_busy_look = loop.time() + BUSY_LOOK_SECONDS
            if not starting and not any(p.taken or p.workers for p in self._pools.values()):
                return
            looked_at = starting + others
            looks = await asyncio.to_thread(_look, [(w, w in p.taken) for p, w in looked_at])
            for (pool, worker), (ready, alive, failure) in zip(looked_at, looks, strict=True):
                self._seen(pool, worker, ready, alive, failure)
            await asyncio.sleep(LOOK_SECONDS if starting else BUSY_LOOK_SECONDS / 4)

    def _seen(self, pool: ClusterPool, worker: WarmWorker, ready: bool, alive: bool, failure: str | None) -> None:
        if worker.ended and worker not in pool.taken:
            return  # let go while it was looked at
        if worker in pool.taken:
            if not alive:
                worker.ended = True
                pool.taken.remove(worker)
                self.connect.release(pool.cluster.id)
                self._changed(pool)
                # The run's own folder has what matters; the engine reaps its supervisor.
                if worker.slot:
                    self._in_background(asyncio.to_thread(shutil.rmtree, worker.directory, True))
            return
        if ready and alive and not worker.ready:
            worker.ready = True
            pool.failures = 0
            self._changed(pool)
        elif not alive and worker in pool.workers:
            pool.workers.remove(worker)
            if not worker.ready:
                pool.failures += 1
                pool.last_failure = failure
                log.warning("DataHarbour: a warm worker of cluster %s ended before it was ready: %s",
                            pool.cluster.id, pool.last_failure)
            self._retire(worker)  # its supervisor may still wait for its word
            self._changed(pool)


def _look(workers: list[tuple[WarmWorker, bool]]) -> list[tuple[bool, bool, str | None]]:
    """(ready, alive, why it ended before it was ready) of each (worker, taken). Blocking:
    reads files and /proc. An unbound worker whose program ended has its end in its slot
    (exit.json) while its supervisor waits for the word; a taken one is alive while its
    supervisor is (it settles the run it was bound to)."""
    looks = []
    for worker, taken in workers:
        ready = os.path.exists(worker.directory / connect_worker.READY_FILE)
        alive = worker.supervised.alive() and (taken or not os.path.exists(worker.directory / folder.EXIT_FILE))
        looks.append((ready, alive, _failure_of(worker) if not (alive or ready or taken) else None))
    return looks


async def _answers(endpoint: ConnectEndpoint) -> bool:
    """Whether the Connect server still accepts connections on its port."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", endpoint.port), PORT_CHECK_SECONDS)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


def _reap_and_remove(worker: WarmWorker, wait: float) -> None:
    """Blocking: wait for a retired worker's supervisor to end (it stops its program first),
    reap it, remove its slot."""
    popen = worker.supervised.popen
    if popen is not None:
        try:
            popen.wait(wait)
        except subprocess.TimeoutExpired:
            log.warning("DataHarbour: a warm worker's supervisor (pid %s) did not end; its slot is kept",
                        worker.supervised.identity.pid)
            return
    shutil.rmtree(worker.directory, True)


def _failure_of(worker: WarmWorker) -> str:
    """The last line of a worker's log that says something (its exception), else its exit."""
    lines = [line for line in read_tail(str(worker.log_path), FAILURE_LOG_LINES, final=True).lines if line.strip()]
    status = folder.read_exit_status(worker.directory)
    ending = f"exit code {status.get('returncode')}" if status else "no exit status"
    return f"{lines[-1].strip()} ({ending})" if lines else ending


def _remove_ended_slots(warm_dir: Path) -> None:
    """Slot folders whose supervisor no longer runs. Blocking."""
    if not warm_dir.is_dir():
        return
    for cluster_dir in warm_dir.iterdir():
        for slot in cluster_dir.iterdir() if cluster_dir.is_dir() else ():
            identity = folder.read_supervisor(slot)
            if identity is None or not identity.matches():
                shutil.rmtree(slot, True)
