"""ClusterLauncher: the clusters users add. It launches standalone clusters (a master and its
workers on 127.0.0.1, each daemon under a run supervisor), registers external masters, moves
clusters through their states, watches the daemons, and stops and removes clusters.

    standalone:  starting -> running -> stopping -> (deleted)
                     \\-> failed (a daemon ended, or the workers did not register in time:
                          everything of the cluster is stopped first; the reason comes from
                          the daemon's log)
                 a server restart re-attaches to live daemons; daemons that died while the
                 server was down make the cluster `stopped`
    external:    running | unknown (probed: a spark:// master's UI or port; k8s:// and yarn
                 are not probed) -> (deleted at once: nothing of it runs here)

Clusters outlive a server restart, like runs: stopping the server stops the watching, never
the daemons. Deleting a cluster stops everything it launched, by the supervisors' process
identities; only then is it gone (`cluster_deleted`).
"""

import asyncio
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Conflict, Gone, InvalidInput, NotFound
from ..models import DEFAULT_CLUSTER_ID, ClusterInfo, ExternalClusterCreate, StandaloneClusterCreate
from ..models.services import cluster_service_name
from ..runs import folder
from ..runs import process as supervision
from ..runs.identity import ProcessIdentity, host_identity
from ..runs.process import Supervised
from ..spark import standalone
from ..spark.class_data import ClassDataArchive
from ..spark.daemon_logs import DaemonLogs
from ..spark.master_probe import probe_master
from ..spark.master_url import spark_master_addresses
from ..spark.memory_size import memory_text, parse_memory_mb
from ..store import JobStore
from ..store.cluster_store import ClusterRecord, ClusterStore, DaemonRecord
from ..store.log_files import read_tail
from .clock import utcnow
from .cluster_updates import ClusterUpdates
from .cluster_views import ClusterViews
from .clusters import Cluster, ClusterService
from .jobs import JobService, _listening_ports
from .service_logs import ServiceLogs

log = logging.getLogger("dataharbour_ext.clusters")

JOB_STATES_ON_A_CLUSTER = ("queued", "starting", "running")
READY_POLL_SECONDS = 0.05  # how often a starting cluster's daemon logs are looked at
READY_READ_SECONDS = 0.25  # how often its master is asked anyway, whatever the logs say
STOP_MARGIN_SECONDS = 15.0  # past the grace, before the supervisors themselves are killed
FAILURE_LOG_LINES = 200
UI_CHECK_SECONDS = 5.0  # a master UI seen listening is trusted this long by the proxy
# Spark's default executor asks 1g: on smaller workers, executors are given what a worker has.
SPARK_DEFAULT_EXECUTOR_MB = 1024


@dataclass
class LauncherConfig:
    state_dir: str
    local_ip: str = "127.0.0.1"
    start_timeout: float = 120.0
    stop_grace_seconds: float = 10.0
    niceness: int = 0
    max_clusters: int = 4
    max_workers: int = 4
    max_cores_per_worker: int = 2
    max_memory_per_worker: str = "8g"
    poll_interval: float = 1.0  # seconds between looks at running clusters (workers, daemons)
    probe_interval: float = 15.0  # seconds between probes of external spark:// masters
    probe_timeout: float = 3.0

    @property
    def clusters_dir(self) -> Path:
        return Path(self.state_dir) / "clusters"


@dataclass
class Daemon:
    name: str
    run_dir: str
    supervised: Supervised | None = None
    held: bool = False  # its supervisor waits for the word to start the daemon
    exit_fd: int | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def log_path(self) -> str:
        return os.path.join(self.run_dir, folder.LOG_FILE)

    def record(self) -> DaemonRecord:
        identity = self.supervised.identity if self.supervised else None
        return DaemonRecord(self.name, self.run_dir, identity.pid if identity else None,
                            identity.start_ticks if identity else None, identity.boot_id if identity else None)


@dataclass
class Launched:
    """A standalone cluster this server launched or re-attached to, and its daemons."""

    cluster: Cluster
    daemons: dict[str, Daemon] = field(default_factory=dict)
    bring_up: asyncio.Task | None = None
    failing: bool = False
    stopping: bool = False
    worker_ids: frozenset[str] | None = None  # alive workers last seen, once running
    # Daemons are recorded one write at a time, each with all daemons known then: two
    # workers started at once must not overwrite each other's record.
    recording: asyncio.Lock = field(default_factory=asyncio.Lock)
    ui_seen_at: float | None = None  # loop time the master UI was last seen listening

    @property
    def id(self) -> str:
        return self.cluster.id

    @property
    def directory(self) -> Path:
        return Path(self.daemons["master"].run_dir).parent if "master" in self.daemons else Path()


class ClusterLauncher:
    def __init__(self, clusters: ClusterService, views: ClusterViews, updates: ClusterUpdates, store: ClusterStore,
                 job_store: JobStore, jobs: JobService, service_logs: ServiceLogs,
                 class_data: ClassDataArchive | None, config: LauncherConfig):
        self.clusters = clusters
        self.views = views
        self.updates = updates
        self.store = store
        self.job_store = job_store
        self.jobs = jobs
        self.service_logs = service_logs
        self.class_data = class_data
        self.config = config
        self.log_config = standalone.DaemonLogConfig(config.state_dir)
        self._launched: dict[str, Launched] = {}
        self._tasks: set[asyncio.Task] = set()
        self._monitor: asyncio.Task | None = None

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load the clusters from the store; re-attach to the daemons of launched ones."""
        try:
            records = await self.store.all()
        except Exception:
            log.exception("DataHarbour: the clusters could not be read from the store")
            records = []
        for record in records:
            try:
                await self._load(record)
            except Exception:
                log.exception("DataHarbour: cluster %s could not be loaded", record.id)
        self._monitor = asyncio.create_task(self._monitor_loop(), name="dataharbour-clusters")

    async def stop(self) -> None:
        """Stop watching; the daemons keep running and the next server start re-attaches."""
        tasks = [task for task in (self._monitor, *self._tasks) if task is not None]
        tasks += [launched.bring_up for launched in self._launched.values() if launched.bring_up]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for launched in self._launched.values():
            for daemon in launched.daemons.values():
                self._unwatch(daemon)
        self._launched.clear()

    # ---- commands --------------------------------------------------------------------

    async def create_standalone(self, request: StandaloneClusterCreate) -> ClusterInfo:
        self._check_room()
        config = self.config
        if request.workers > config.max_workers:
            raise InvalidInput("workers", f"at most {config.max_workers} (DataHarbourApp.max_workers)")
        if request.cores_per_worker > config.max_cores_per_worker:
            raise InvalidInput("cores_per_worker",
                               f"at most {config.max_cores_per_worker} (DataHarbourApp.max_cores_per_worker)")
        memory_mb = parse_memory_mb(request.memory_per_worker)
        if memory_mb > parse_memory_mb(config.max_memory_per_worker):
            raise InvalidInput("memory_per_worker", f"at most {config.max_memory_per_worker} "
                                                    f"(DataHarbourApp.max_memory_per_worker)")
        cluster_id = f"standalone-{uuid.uuid4().hex[:8]}"
        master_port, ui_port = _two_free_ports()
        conf = {"spark.driver.host": config.local_ip, "spark.driver.bindAddress": config.local_ip}
        if memory_mb < SPARK_DEFAULT_EXECUTOR_MB:
            conf["spark.executor.memory"] = f"{memory_mb}m"  # else no executor would fit on a worker
        spec = {"workers": request.workers, "cores_per_worker": request.cores_per_worker,
                "memory_per_worker": memory_text(memory_mb), "memory_per_worker_mb": memory_mb}
        now = utcnow()
        record = ClusterRecord(
            id=cluster_id, name=request.name, kind="standalone", master_url=standalone.master_url(master_port),
            ui_url=standalone.master_ui_url(ui_port), state="starting", created_at=now, updated_at=now,
            host=host_identity(), spec=spec, conf=conf, max_concurrent_jobs=request.max_concurrent_jobs,
        )
        await self.store.add(record)
        launched = self._adopt(record)
        launched.bring_up = asyncio.create_task(self._bring_up(launched), name=f"dataharbour-start-{cluster_id}")
        log.info("DataHarbour: cluster %s (%s) starting: %d workers with %d cores and %s each", cluster_id,
                 request.name, request.workers, request.cores_per_worker, memory_text(memory_mb))
        return await self.views.get(cluster_id)

    async def register_external(self, request: ExternalClusterCreate) -> ClusterInfo:
        self._check_room()
        if request.ui_url and not request.master_url.startswith("spark://"):
            raise InvalidInput("ui_url", "only a spark:// master has a web UI this server can read")
        cluster_id = f"external-{uuid.uuid4().hex[:8]}"
        now = utcnow()
        state, reason = await self._probe(request.master_url, request.ui_url)
        record = ClusterRecord(
            id=cluster_id, name=request.name, kind="external", master_url=request.master_url,
            ui_url=request.ui_url, state=state, reason=reason, created_at=now, updated_at=now,
            conf=dict(request.conf), max_concurrent_jobs=request.max_concurrent_jobs,
        )
        await self.store.add(record)
        self.clusters.add(_cluster(record), state, reason)
        log.info("DataHarbour: external cluster %s (%s) registered: %s", cluster_id, request.name, state)
        return await self.views.get(cluster_id)

    async def delete(self, cluster_id: str, *, force: bool = False) -> ClusterInfo | None:
        """Remove a cluster. External: at once (None). Launched: its daemons are stopped in
        the background and it is gone once nothing of it runs; returns it `stopping`."""
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            raise NotFound(f"no cluster with id {cluster_id!r}")
        if cluster_id == DEFAULT_CLUSTER_ID:
            raise Conflict(f"{cluster_id} is this server's own cluster (from its configuration); it cannot be deleted")
        launched = self._launched.get(cluster_id)
        if launched is not None and launched.stopping:
            return await self.views.get(cluster_id)  # already on its way out
        await self._clear_jobs(cluster_id, force)
        if cluster.kind != "standalone":
            await self.store.delete(cluster_id)
            self.views.forget_status(cluster)
            self.clusters.remove(cluster_id)
            log.info("DataHarbour: external cluster %s unregistered", cluster_id)
            return None
        if launched is None:  # never launched here (a record whose daemons are unknown)
            launched = Launched(cluster)
            self._launched[cluster_id] = launched
        launched.stopping = True
        if launched.bring_up is not None:
            launched.bring_up.cancel()
        await self._set_state(launched, "stopping")
        view = await self.views.get(cluster_id)
        self._spawn(self._remove(launched), f"dataharbour-delete-{cluster_id}")
        return view

    async def master_ui(self, cluster_id: str) -> str:
        """The address of a launched cluster's master UI, once it provably listens there
        (the master's own processes hold that port), for the proxy."""
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            raise NotFound(f"no cluster with id {cluster_id!r}")
        launched = self._launched.get(cluster_id)
        if cluster.kind != "standalone" or launched is None or cluster.ui_url is None:
            raise NotFound(f"cluster {cluster_id} was not launched by this server: its master UI is not proxied")
        condition = self.clusters.condition(cluster_id)
        if condition.state in ("stopped", "failed"):
            raise Gone(f"cluster {cluster_id} has {condition.state}; its master UI ended with it")
        master = launched.daemons.get("master")
        now = asyncio.get_running_loop().time()
        if launched.ui_seen_at is None or now - launched.ui_seen_at > UI_CHECK_SECONDS:
            port = int(cluster.ui_url.rsplit(":", 1)[1])
            ports = await asyncio.to_thread(_listening_ports, master.supervised.identity) \
                if master is not None and master.supervised is not None else set()
            if port not in ports:
                raise Conflict(f"cluster {cluster_id} is {condition.state}: its master UI is not up")
            launched.ui_seen_at = now
        return cluster.ui_url

    # ---- checks ----------------------------------------------------------------------

    def _check_room(self) -> None:
        added = [c for c in self.clusters.all() if c.id != DEFAULT_CLUSTER_ID]
        if len(added) >= self.config.max_clusters:
            raise InvalidInput(None, f"this server has {len(added)} clusters besides the default, its limit "
                                     f"(DataHarbourApp.max_clusters = {self.config.max_clusters}); delete one first")

    async def _clear_jobs(self, cluster_id: str, force: bool) -> None:
        runs = [run for run in await self.job_store.runs_in_states(JOB_STATES_ON_A_CLUSTER)
                if run.cluster_id == cluster_id]
        if not runs:
            return
        if not force:
            jobs = []
            for run in runs[:10]:
                job = await self.job_store.get_job(run.job_id, detail=False)
                jobs.append(f"{job.name!r} ({run.job_id}, {run.state})" if job else f"{run.job_id} ({run.state})")
            more = f" and {len(runs) - 10} more" if len(runs) > 10 else ""
            raise Conflict(f"cluster {cluster_id} has {len(runs)} job(s) queued or running: {', '.join(jobs)}{more}; "
                           f"delete with ?force=true to kill them first")
        for run in runs:
            try:
                await self.jobs.kill(run.job_id)
            except (Conflict, NotFound):
                pass  # it ended or went meanwhile

    # ---- launching -------------------------------------------------------------------

    def _adopt(self, record: ClusterRecord) -> Launched:
        """Make a launched cluster known: registry, logs, and its daemons (not yet watched)."""
        cluster = _cluster(record)
        launched = Launched(cluster)
        directory = self.config.clusters_dir / record.id
        for daemon in record.daemons:
            launched.daemons[daemon.name] = Daemon(daemon.name, daemon.run_dir)
        if "master" not in launched.daemons:
            launched.daemons["master"] = Daemon("master", str(directory / "master"))
        self._launched[record.id] = launched
        self.service_logs.register(cluster_service_name(record.id), DaemonLogs(
            lambda: [(daemon.name, daemon.log_path) for daemon in list(launched.daemons.values())]))
        self.clusters.add(cluster, record.state, record.reason)
        return launched

    async def _bring_up(self, launched: Launched) -> None:
        """Master, then workers, then `running` once every worker has registered."""
        cluster = launched.cluster
        spec = cluster.spec
        deadline = asyncio.get_running_loop().time() + self.config.start_timeout
        try:
            java_options = await asyncio.to_thread(self._java_options)
            env = standalone.daemon_environment(java_options, self.config.local_ip)
            master_port = spark_master_addresses(cluster.master_url)[0].port
            ui_port = int(cluster.ui_url.rsplit(":", 1)[1])
            await self._start_daemon(launched, "master", standalone.master_command(master_port, ui_port), env)
            # While the master comes up, the workers' supervisors start, held: once it is ALIVE
            # they only need the word to go (a worker that found no master would retry only
            # after 5-15 s).
            directory = launched.directory
            preparing = asyncio.ensure_future(asyncio.gather(*(
                self._start_daemon(launched, f"worker-{n}", standalone.worker_command(
                    cluster.master_url, spec["cores_per_worker"], spec["memory_per_worker_mb"],
                    str(directory / f"worker-{n}" / "work")), env, release=False)
                for n in range(1, spec["workers"] + 1))))
            try:
                await self._wait_for(launched, deadline, lambda status: status.status == "ALIVE")
                workers = await preparing
            except BaseException:
                preparing.cancel()
                raise
            for worker in workers:
                if not (launched.stopping or launched.failing):
                    worker.held = False
                    worker.supervised.release()
            await self._await_workers(launched, deadline)
        except asyncio.CancelledError:
            raise
        except _NotReady as not_ready:
            await self._fail(launched, await asyncio.to_thread(self._timeout_reason, launched, not_ready))
        except Exception as error:  # noqa: BLE001 - whatever it was, the cluster fails with it, not the server
            log.exception("DataHarbour: starting cluster %s failed", cluster.id)
            await self._fail(launched, f"it could not be started: {error}")

    async def _await_workers(self, launched: Launched, deadline: float) -> None:
        wanted = launched.cluster.spec["workers"]
        status = await self._wait_for(launched, deadline, lambda status: len(status.alive_workers) >= wanted)
        launched.worker_ids = frozenset(worker.id for worker in status.alive_workers)
        if await self._set_state(launched, "running", from_states=("starting",)):
            log.info("DataHarbour: cluster %s running with %d workers", launched.id, len(launched.worker_ids))
            self.jobs.engine.request_admission()  # jobs queued for it may start now

    def _java_options(self) -> list[str]:
        return [*(self.class_data.java_options() if self.class_data else []), *self.log_config.java_options()]

    async def _start_daemon(self, launched: Launched, name: str, argv: list[str], env: dict[str, str], *,
                            release: bool = True) -> Daemon:
        """Its run folder, a held supervisor, its identity recorded, then released (now, or
        by the caller when `release` is false): no daemon ever runs unrecorded."""
        run_dir = str(self.config.clusters_dir / launched.id / name)
        await asyncio.to_thread(standalone.write_daemon_folder, run_dir, argv, env,
                                stop_grace_seconds=self.config.stop_grace_seconds, niceness=self.config.niceness)
        launching = asyncio.ensure_future(asyncio.to_thread(supervision.launch, run_dir, held=True))
        try:
            supervised = await asyncio.shield(launching)
        except asyncio.CancelledError:
            # Stopped while the supervisor was being started: it must not start the daemon.
            launching.add_done_callback(lambda done: done.exception() or done.result().abandon())
            raise
        daemon = Daemon(name, run_dir, supervised, held=True)
        launched.daemons[name] = daemon
        self._watch(launched, daemon)
        try:
            async with launched.recording:
                await self.store.update(launched.id, now=utcnow(),
                                        daemons=[d.record() for d in launched.daemons.values() if d.supervised])
        except BaseException:
            supervised.abandon()
            raise
        if launched.stopping or launched.failing:
            supervised.abandon()
        elif release:
            daemon.held = False
            supervised.release()
        return daemon

    async def _wait_for(self, launched: Launched, deadline: float, ready) -> standalone.MasterStatus:
        """The master's status once `ready(status)`; _NotReady at the deadline.

        The status is read when a daemon's log has grown (the master logs its election and
        each worker registering, a worker that it registered) and every READY_READ_SECONDS
        besides: a stat per daemon per tick costs far less than asking the master 20 times a
        second, and the CPU a starting cluster needs is what its JVMs need."""
        loop = asyncio.get_running_loop()
        status, sizes, read_at = None, None, 0.0
        while loop.time() < deadline:
            now_sizes = _log_sizes(launched)
            if now_sizes != sizes or loop.time() - read_at >= READY_READ_SECONDS:
                sizes, read_at = now_sizes, loop.time()
                status = await self.views.master_status(launched.cluster, fresh=True)
                if status is not None and ready(status):
                    return status
            await asyncio.sleep(READY_POLL_SECONDS)
        raise _NotReady(status)

    def _timeout_reason(self, launched: Launched, not_ready: "_NotReady") -> str:
        timeout = f"{self.config.start_timeout:g} s"
        status = not_ready.status
        if status is None or status.status != "ALIVE":
            master = launched.daemons["master"]
            problem = standalone.failure_reason(_log_tail(master.log_path), None, _ports(launched))
            return f"the master did not come up within {timeout}: {problem}"
        wanted = launched.cluster.spec["workers"]
        registered = f"{len(status.alive_workers)} of {wanted} workers registered with the master within {timeout}"
        for daemon in launched.daemons.values():
            if daemon.name.startswith("worker-"):
                lines = _log_tail(daemon.log_path)
                if any(standalone.ERROR_LINE.search(line) for line in lines):
                    return f"{registered}; {daemon.name}: {standalone.failure_reason(lines, None)}"
        return registered

    # ---- watching --------------------------------------------------------------------

    def _watch(self, launched: Launched, daemon: Daemon) -> None:
        daemon.exit_fd = daemon.supervised.exit_fd()
        if daemon.exit_fd is None:
            self._on_daemon_exit(launched, daemon)  # it has already ended
            return
        asyncio.get_running_loop().add_reader(daemon.exit_fd, self._on_daemon_exit, launched, daemon)

    def _unwatch(self, daemon: Daemon) -> None:
        if daemon.exit_fd is not None:
            asyncio.get_running_loop().remove_reader(daemon.exit_fd)
            daemon.exit_fd = None
        if daemon.supervised is not None:
            daemon.supervised.close()

    def _on_daemon_exit(self, launched: Launched, daemon: Daemon) -> None:
        self._unwatch(daemon)
        if daemon.supervised is not None:
            daemon.supervised.reap()
        daemon.ended.set()
        if not (launched.stopping or launched.failing):
            launched.failing = True  # the first daemon to end is the one the reason names
            self._spawn(self._daemon_failed(launched, daemon), f"dataharbour-fail-{launched.id}")

    async def _daemon_failed(self, launched: Launched, daemon: Daemon) -> None:
        reason = await asyncio.to_thread(self._failure_of, launched, daemon)
        await self._fail(launched, reason, noticed=True)

    def _failure_of(self, launched: Launched, daemon: Daemon) -> str:
        status = folder.read_exit_status(daemon.run_dir) or {}
        if status.get("released") is False:
            return f"{daemon.name} was never started"
        reason = standalone.failure_reason(_log_tail(daemon.log_path), status.get("returncode"), _ports(launched))
        return f"{daemon.name} ended: {reason}"

    async def _fail(self, launched: Launched, reason: str, *, noticed: bool = False) -> None:
        """Stop whatever of the cluster still runs, then mark it `failed` with `reason`
        (`noticed`: the caller has already marked it failing)."""
        if launched.stopping or (launched.failing and not noticed):
            return
        launched.failing = True
        if launched.bring_up is not None and launched.bring_up is not asyncio.current_task():
            launched.bring_up.cancel()
        log.warning("DataHarbour: cluster %s failed: %s", launched.id, reason)
        await self._stop_daemons(launched)
        # Unless it is being deleted meanwhile: then it is simply gone soon.
        await self._set_state(launched, "failed", reason, from_states=("starting", "running"))

    async def _stop_daemons(self, launched: Launched) -> None:
        """SIGTERM to every supervisor (each stops its daemon's whole tree), SIGKILL to what
        is left after the grace period; returns once no daemon's supervisor runs."""
        running = [d for d in launched.daemons.values() if d.supervised is not None and not d.ended.is_set()]
        for daemon in running:
            if daemon.held:
                daemon.supervised.abandon()  # a held supervisor ends without starting anything
            elif not daemon.supervised.request_stop():
                self._on_daemon_exit(launched, daemon)  # it had ended already
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.stop_grace_seconds + STOP_MARGIN_SECONDS
        while loop.time() < deadline:
            waiting = [d for d in running if not d.ended.is_set()]
            if not waiting:
                return
            await asyncio.wait([asyncio.ensure_future(d.ended.wait()) for d in waiting], timeout=0.5)
            for daemon in waiting:  # a platform without pidfds: look
                if not daemon.ended.is_set() and not daemon.supervised.alive():
                    self._on_daemon_exit(launched, daemon)
        for daemon in [d for d in running if not d.ended.is_set()]:
            killed = await asyncio.to_thread(daemon.supervised.force_stop)
            log.warning("DataHarbour: cluster %s: %s did not stop in time; killed %d processes", launched.id,
                        daemon.name, killed)
            self._on_daemon_exit(launched, daemon)

    async def _remove(self, launched: Launched) -> None:
        try:
            await self._stop_daemons(launched)
            await asyncio.to_thread(shutil.rmtree, self.config.clusters_dir / launched.id, True)
            await self.store.delete(launched.id)
        except Exception:
            log.exception("DataHarbour: deleting cluster %s failed", launched.id)
            await self._set_state(launched, "failed", "it could not be deleted; see the server log")
            launched.stopping = False
            return
        self.service_logs.unregister(cluster_service_name(launched.id))
        self.views.forget_status(launched.cluster)
        self._launched.pop(launched.id, None)
        self.clusters.remove(launched.id)
        log.info("DataHarbour: cluster %s deleted: its master and workers are gone", launched.id)

    async def _set_state(self, launched: Launched, state: str, reason: str | None = None, *,
                         from_states: tuple[str, ...] | None = None) -> bool:
        if not await self.store.update(launched.id, now=utcnow(), from_states=from_states, state=state,
                                       reason=reason):
            return False
        return self.clusters.set_state(launched.id, state, reason)

    # ---- after a server restart ------------------------------------------------------

    async def _load(self, record: ClusterRecord) -> None:
        if record.kind != "standalone":
            self.clusters.add(_cluster(record), record.state, record.reason)
            return
        launched = self._adopt(record)
        if record.state not in ("starting", "running", "stopping"):
            return  # failed or stopped: nothing of it runs
        alive, gone = [], []
        for daemon_record in record.daemons:
            daemon = launched.daemons[daemon_record.name]
            identity = _identity(daemon_record)
            daemon.supervised = Supervised.attach(identity) if identity else None
            (alive if daemon.supervised is not None else gone).append(daemon)
        for daemon in gone:
            daemon.ended.set()
        for daemon in alive:
            self._watch(launched, daemon)
        if record.state == "stopping":
            launched.stopping = True
            self._spawn(self._remove(launched), f"dataharbour-delete-{record.id}")
        elif not alive:
            log.info("DataHarbour: cluster %s stopped while the server was down", record.id)
            await self._set_state(launched, "stopped", "its master and workers ended while the server was down")
        elif gone or (record.state == "starting" and len(alive) < 1 + record.spec["workers"]):
            # The rest is stopped in the background: the server's start does not wait for it.
            reason = (f"{', '.join(daemon.name for daemon in gone)} ended while the server was down" if gone
                      else "the server stopped before all of its daemons were started")
            launched.failing = True
            self._spawn(self._fail(launched, reason, noticed=True), f"dataharbour-fail-{record.id}")
        elif record.state == "starting":
            deadline = asyncio.get_running_loop().time() + self.config.start_timeout
            launched.bring_up = asyncio.create_task(self._resume_start(launched, deadline))
            log.info("DataHarbour: re-attached to cluster %s, still starting", record.id)
        else:
            log.info("DataHarbour: re-attached to cluster %s (%d daemons)", record.id, len(alive))

    async def _resume_start(self, launched: Launched, deadline: float) -> None:
        try:
            await self._await_workers(launched, deadline)
        except _NotReady as not_ready:
            await self._fail(launched, await asyncio.to_thread(self._timeout_reason, launched, not_ready))

    # ---- looking at running clusters -------------------------------------------------

    async def _monitor_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_probe = loop.time()
        while True:
            await asyncio.sleep(self.config.poll_interval)
            try:
                await self._look_at_launched()
                if loop.time() >= next_probe:
                    next_probe = loop.time() + self.config.probe_interval
                    await self._probe_externals()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("DataHarbour: looking at the clusters failed")

    async def _look_at_launched(self) -> None:
        """Workers that registered or left a running cluster; daemons that ended unnoticed."""
        for launched in list(self._launched.values()):
            if launched.stopping or launched.failing or self.clusters.condition(launched.id).state != "running":
                continue
            for daemon in launched.daemons.values():
                if daemon.supervised is not None and not daemon.ended.is_set() and not daemon.supervised.alive():
                    self._on_daemon_exit(launched, daemon)
            status = await self.views.master_status(launched.cluster, fresh=True)
            if status is None:
                continue
            workers = frozenset(worker.id for worker in status.alive_workers)
            if workers != launched.worker_ids:
                launched.worker_ids = workers
                self.updates.changed(launched.id, workers=True)

    async def _probe_externals(self) -> None:
        externals = [c for c in self.clusters.all() if c.kind == "external" and c.id != DEFAULT_CLUSTER_ID
                     and c.master_url.startswith("spark://")]
        results = await asyncio.gather(*(self._probe(c.master_url, c.ui_url) for c in externals))
        for cluster, (state, reason) in zip(externals, results, strict=True):
            if self.clusters.get(cluster.id) is cluster and self.clusters.set_state(cluster.id, state, reason):
                await self.store.update(cluster.id, now=utcnow(), state=state, reason=reason)

    async def _probe(self, master_url: str, ui_url: str | None) -> tuple[str, str | None]:
        return await probe_master(master_url, ui_url, lambda url: self.views.status_at(url, fresh=True),
                                  self.config.probe_timeout)

    # ---- helpers ---------------------------------------------------------------------

    def _spawn(self, coroutine, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _NotReady(Exception):
    def __init__(self, status: standalone.MasterStatus | None):
        super().__init__("not ready")
        self.status = status


def _cluster(record: ClusterRecord) -> Cluster:
    return Cluster(record.id, record.name, record.master_url, record.ui_url, record.max_concurrent_jobs,
                   conf=dict(record.conf), kind=record.kind, spec=record.spec, created_at=record.created_at)


def _identity(record: DaemonRecord) -> ProcessIdentity | None:
    if record.pid is None or record.start_ticks is None or not record.boot_id:
        return folder.read_supervisor(record.run_dir)
    return ProcessIdentity(record.pid, record.start_ticks, record.boot_id)


def _ports(launched: Launched) -> dict[str, int]:
    cluster = launched.cluster
    return {"sparkMaster": spark_master_addresses(cluster.master_url)[0].port,
            "MasterUI": int(cluster.ui_url.rsplit(":", 1)[1])}


def _log_sizes(launched: Launched) -> tuple[int, ...]:
    sizes = []
    for daemon in launched.daemons.values():
        try:
            sizes.append(os.stat(daemon.log_path).st_size)
        except OSError:
            sizes.append(-1)
    return tuple(sizes)


def _log_tail(path: str) -> list[str]:
    return read_tail(path, FAILURE_LOG_LINES, final=True).lines if os.path.isfile(path) else []


def _two_free_ports() -> tuple[int, int]:
    first = standalone.free_port()
    second = standalone.free_port()
    while second == first:
        second = standalone.free_port()
    return first, second
