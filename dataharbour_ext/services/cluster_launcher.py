"""ClusterLauncher: the clusters users add. It launches standalone clusters (a master and its
workers on 127.0.0.1, each daemon under a run supervisor), registers external masters, moves
clusters through their states, watches the daemons, and stops and removes clusters.

    standalone:  starting -> running -> stopping -> (deleted)
                     \\-> failed (a daemon ended, or the workers did not register in time:
                          everything of the cluster is stopped first; the reason comes from
                          the daemon's log)
                 a server restart re-attaches to live daemons; daemons that died while no
                 server watched them make the cluster `stopped`
    external:    running | unknown (probed: a spark:// master's UI or port; k8s:// and yarn
                 are not probed) -> (deleted at once: nothing of it runs here)

Clusters outlive a server restart, like runs: stopping the server stops the watching, never
the daemons. Deleting a cluster stops everything it launched, by the supervisors' process
identities; only then is it gone (`cluster_deleted`).

Each launched cluster has an owner, the server that watches its daemons, as runs do; other
servers on the same store observe it. Taking clusters over after a restart and keeping up with
other servers is services/cluster_recovery.py (a mixin of the launcher); the daemons'
supervision (watching, stopping), services/standalone_daemons.py; waiting for a cluster to come
up and the reasons it did not, services/cluster_bring_up.py.
"""

import asyncio
import contextlib
import functools
import logging
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Conflict, Gone, InvalidInput, NotFound, ServiceUnavailable
from ..models import DEFAULT_CLUSTER_ID, ClusterInfo, ExternalClusterCreate, StandaloneClusterCreate
from ..models.services import cluster_service_name
from ..runs import process as supervision
from ..runs.identity import host_identity
from ..runs.ports import PortScans
from ..runs.process import Supervised
from ..spark import connect_server, standalone
from ..spark.class_data import ClassDataArchive
from ..spark.daemon_logs import DaemonLogs
from ..spark.master_probe import probe_master
from ..spark.master_url import spark_master_addresses
from ..spark.memory_size import memory_text, parse_memory_mb
from ..store import JobStore, Owner
from ..store.cluster_store import ClusterRecord, ClusterStore
from .clock import utcnow
from .cluster_bring_up import NotReady, failure_of, timeout_reason, two_free_ports, wait_until_ready
from .cluster_recovery import ClusterRecovery, cluster_of
from .cluster_updates import ClusterUpdates
from .cluster_views import ClusterViews
from .clusters import Cluster, ClusterService
from .jobs import JobService
from .service_logs import ServiceLogs
from .standalone_daemons import Daemon, DaemonGroup, look_at

log = logging.getLogger("dataharbour_ext.clusters")

JOB_STATES_ON_A_CLUSTER = ("queued", "starting", "running")
UI_CHECK_SECONDS = 5.0  # a master UI seen listening is trusted this long by the proxy
UI_RETRY_SECONDS = 2  # Retry-After of a master UI not listening yet
# Spark's default executor asks 1g: on smaller workers, executors are given what a worker has.
SPARK_DEFAULT_EXECUTOR_MB = 1024


@dataclass
class LauncherConfig:
    state_dir: str
    start_timeout: float = 120.0
    stop_grace_seconds: float = 10.0
    niceness: int = 0
    max_clusters: int = 4
    max_workers: int = 4
    max_cores_per_worker: int = 2
    max_memory_per_worker: str = "8g"
    poll_interval: float = 1.0  # seconds between looks at running clusters (workers, daemons)
    probe_interval: float = 15.0  # seconds between probes of external spark:// masters
    sync_interval: float = 5.0  # seconds between reads of the clusters other servers changed
    probe_timeout: float = 3.0

    @property
    def clusters_dir(self) -> Path:
        return Path(self.state_dir) / "clusters"


@dataclass
class Launched:
    """A standalone cluster this server launched or re-attached to, and its daemons."""

    cluster: Cluster
    directory: Path  # its daemons' run folders are in here
    group: DaemonGroup = field(init=False)
    bring_up: asyncio.Task | None = None
    # Bring-up work in threads (a run folder written, a supervisor started): it runs on after
    # a cancel, so the cluster is stopped and its folder removed only once it has ended.
    in_flight: set[asyncio.Future] = field(default_factory=set)
    failing: bool = False
    stopping: bool = False
    worker_ids: frozenset[str] | None = None  # alive workers last seen, once running
    # Daemons are recorded one write at a time, each with all daemons known then: two
    # workers started at once must not overwrite each other's record.
    recording: asyncio.Lock = field(default_factory=asyncio.Lock)
    ui_seen_at: float | None = None  # loop time the master UI was last seen listening
    # False: another live server on this host owns it; this one only observes (no watching,
    # no stopping), from the store.
    owned: bool = True

    def __post_init__(self) -> None:
        self.group = DaemonGroup(self.cluster.id)

    @property
    def id(self) -> str:
        return self.cluster.id

    @property
    def daemons(self) -> dict[str, Daemon]:
        return self.group.daemons


class ClusterLauncher(ClusterRecovery):
    def __init__(self, clusters: ClusterService, views: ClusterViews, updates: ClusterUpdates, store: ClusterStore,
                 job_store: JobStore, jobs: JobService, service_logs: ServiceLogs,
                 class_data: ClassDataArchive | None, config: LauncherConfig):
        self._port_scans = PortScans()  # requests for the master UI share one /proc scan
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
        self._delete_locks: dict[str, asyncio.Lock] = {}
        self._reserved = 0  # clusters being added, not yet in the registry (see _room)
        # Ids of clusters this server adds or removes while a sync reads the store (None
        # between syncs): what that read says of them may already be out of date.
        self._touched: set[str] | None = None
        self._monitor: asyncio.Task | None = None
        self.owner: Owner = jobs.engine.owner  # one identity per server, for runs and clusters

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load the clusters from the store; re-attach to the daemons of launched ones."""
        try:
            await self._load_all(await self.store.all())
        except Exception:
            log.exception("DataHarbour: the clusters could not be read from the store")
        self._monitor = asyncio.create_task(self._monitor_loop(), name="dataharbour-clusters")

    async def stop(self) -> None:
        """Stop watching; the daemons keep running and the next server start re-attaches."""
        tasks = [task for task in (self._monitor, *self._tasks) if task is not None]
        tasks += [launched.bring_up for launched in self._launched.values() if launched.bring_up]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for launched in self._launched.values():
            launched.group.detach()
        self._launched.clear()

    # ---- commands --------------------------------------------------------------------

    async def create_standalone(self, request: StandaloneClusterCreate) -> ClusterInfo:
        with self._room():
            return await self._create_standalone(request)

    async def _create_standalone(self, request: StandaloneClusterCreate) -> ClusterInfo:
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
        master_port, ui_port = two_free_ports()
        # The cluster is on this machine's loopback, and so are its jobs' drivers.
        conf = {"spark.driver.host": standalone.HOST, "spark.driver.bindAddress": standalone.HOST,
                **standalone.new_auth_conf()}  # only its own daemons and jobs may use it
        if memory_mb < SPARK_DEFAULT_EXECUTOR_MB:
            conf["spark.executor.memory"] = f"{memory_mb}m"  # else no executor would fit on a worker
        spec = {"workers": request.workers, "cores_per_worker": request.cores_per_worker,
                "memory_per_worker": memory_text(memory_mb), "memory_per_worker_mb": memory_mb}
        now = utcnow()
        record = ClusterRecord(
            id=cluster_id, name=request.name, kind="standalone", master_url=standalone.master_url(master_port),
            ui_url=standalone.master_ui_url(ui_port), state="starting", created_at=now, updated_at=now,
            host=host_identity(), spec=spec, conf=conf, max_concurrent_jobs=request.max_concurrent_jobs,
            owner=self.owner,
        )
        self._touch(cluster_id)
        await self.store.add(record)
        launched = self._register(record)
        launched.bring_up = asyncio.create_task(self._bring_up(launched), name=f"dataharbour-start-{cluster_id}")
        log.info("DataHarbour: cluster %s (%s) starting: %d workers with %d cores and %s each", cluster_id,
                 request.name, request.workers, request.cores_per_worker, memory_text(memory_mb))
        return await self.views.get(cluster_id)

    async def register_external(self, request: ExternalClusterCreate) -> ClusterInfo:
        with self._room():
            return await self._register_external(request)

    async def _register_external(self, request: ExternalClusterCreate) -> ClusterInfo:
        if request.ui_url and not request.master_url.startswith("spark://"):
            raise InvalidInput("ui_url", "only a spark:// master has a web UI this server can read")
        cluster_id = f"external-{uuid.uuid4().hex[:8]}"
        now = utcnow()
        state, reason = await self._probe(request.master_url, request.ui_url)
        record = ClusterRecord(
            id=cluster_id, name=request.name, kind="external", master_url=request.master_url,
            ui_url=request.ui_url, state=state, reason=reason, created_at=now, updated_at=now,
            conf=external_conf(request), max_concurrent_jobs=request.max_concurrent_jobs,
        )
        self._touch(cluster_id)
        await self.store.add(record)
        self.clusters.add(cluster_of(record), state, reason)
        log.info("DataHarbour: external cluster %s (%s) registered: %s", cluster_id, request.name, state)
        return await self.views.get(cluster_id)

    async def delete(self, cluster_id: str, *, force: bool = False) -> ClusterInfo | None:
        """Remove a cluster. External: at once (None). Launched: its daemons are stopped in
        the background and it is gone once nothing of it runs; returns it `stopping`.

        One DELETE of a cluster at a time (a second waits, then finds it `stopping` or gone);
        the cluster takes no jobs from before its jobs are counted, so none slips in between
        the count (or the forced kill) and the daemons stopping."""
        cluster = self._require(cluster_id)
        if cluster_id == DEFAULT_CLUSTER_ID:
            raise Conflict(f"{cluster_id} is this server's own cluster (from its configuration); it cannot be deleted")
        async with self._delete_locks.setdefault(cluster_id, asyncio.Lock()):
            if self.clusters.get(cluster_id) is not cluster:  # deleted while this one waited
                raise NotFound(f"no cluster with id {cluster_id!r}")
            launched = self._launched.get(cluster_id)
            if launched is not None and launched.stopping:
                return await self.views.get(cluster_id)  # already on its way out
            self.clusters.set_deleting(cluster_id, True)
            try:
                await self._clear_jobs(cluster_id, force)
                if cluster.kind != "standalone":
                    self._touch(cluster_id)
                    await self.store.delete(cluster_id)
            except BaseException:
                self.clusters.set_deleting(cluster_id, False)
                raise
            if cluster.kind != "standalone":
                self.views.forget_status(cluster)
                self.clusters.remove(cluster_id)
                self._delete_locks.pop(cluster_id, None)
                log.info("DataHarbour: external cluster %s unregistered", cluster_id)
                return None
            launched = self._launched.get(cluster_id)  # a sync may have taken it over meanwhile
            if launched is not None and launched.stopping:
                return await self.views.get(cluster_id)
            if launched is not None and not launched.owned:
                return await self._request_removal(cluster_id)
            if launched is None:  # never launched here (a record whose daemons are unknown)
                launched = self._new_launched(cluster)
                self._launched[cluster_id] = launched
            launched.stopping = True
            if launched.bring_up is not None:
                launched.bring_up.cancel()  # _remove waits for it to have ended
            await self._set_state(launched, "stopping")
            view = await self.views.get(cluster_id)
            self._spawn(self._remove(launched), f"dataharbour-delete-{cluster_id}")
            return view

    async def _request_removal(self, cluster_id: str) -> ClusterInfo:
        """Delete a cluster another server owns: `stopping` in the store tells its owner to
        stop it (or whoever takes it over); it is gone here once its record is."""
        if not await self.store.update(cluster_id, now=utcnow(), state="stopping", reason=None,
                                       from_states=("starting", "running", "failed", "stopped")):
            log.info("DataHarbour: cluster %s was already being deleted", cluster_id)
        self.clusters.set_state(cluster_id, "stopping")
        log.info("DataHarbour: cluster %s (owned by another server) asked to stop", cluster_id)
        return await self.views.get(cluster_id)

    def _require(self, cluster_id: str) -> Cluster:
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            raise NotFound(f"no cluster with id {cluster_id!r}")
        return cluster

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
            ports = await self._port_scans.of(master.supervised.identity) \
                if master is not None and master.supervised is not None else set()
            if port not in ports:
                raise ServiceUnavailable(f"cluster {cluster_id} is {condition.state}: its master UI is not "
                                         f"listening yet", retry_after=UI_RETRY_SECONDS)
            launched.ui_seen_at = now
        return cluster.ui_url

    # ---- checks ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _room(self):
        """A place for one more cluster, held from before the first await until the cluster
        is in the registry (or its creation failed): concurrent POSTs cannot pass the limit."""
        added = len([c for c in self.clusters.all() if c.id != DEFAULT_CLUSTER_ID]) + self._reserved
        if added >= self.config.max_clusters:
            raise InvalidInput(None, f"this server has {added} clusters besides the default, its limit "
                                     f"(DataHarbourApp.max_clusters = {self.config.max_clusters}); delete one first")
        self._reserved += 1
        try:
            yield
        finally:
            self._reserved -= 1

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

    def _new_launched(self, cluster: Cluster) -> Launched:
        launched = Launched(cluster, self.config.clusters_dir / cluster.id)
        launched.group.on_exit = functools.partial(self._daemon_ended, launched)
        return launched

    def _register(self, record: ClusterRecord) -> Launched:
        """Make a launched cluster known: registry, logs, and its daemons (not yet watched)."""
        # The same Cluster object when one known here is taken over (a DELETE waiting on the
        # cluster's lock checks it is still the one it found).
        known = self.clusters.get(record.id)
        cluster = known if known is not None and known.created_at is not None else cluster_of(record)
        launched = self._new_launched(cluster)
        if record.daemons:  # where the server that launched it put it (its state_dir may differ)
            launched.directory = Path(record.daemons[0].run_dir).parent
        for daemon in record.daemons:
            launched.daemons[daemon.name] = Daemon(daemon.name, daemon.run_dir)
        if "master" not in launched.daemons:
            launched.daemons["master"] = Daemon("master", str(launched.directory / "master"))
        self._launched[record.id] = launched
        self.service_logs.register(cluster_service_name(record.id), DaemonLogs(
            lambda: [(daemon.name, daemon.log_path) for daemon in list(launched.daemons.values())]))
        self.clusters.add(cluster, record.state, record.reason)
        return launched

    async def _bring_up(self, launched: Launched, deadline: float | None = None, *,
                        workers: list[str] | None = None) -> None:
        """Master, then workers, then `running` once every worker has registered. Given
        `workers`, only those are started (a start resumed after a restart: the master and
        the other workers run)."""
        cluster = launched.cluster
        spec = cluster.spec
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + self.config.start_timeout
        try:
            java_options = await asyncio.to_thread(self._java_options)
            env = standalone.daemon_environment(java_options, standalone.HOST)
            if workers is None:
                master_port = spark_master_addresses(cluster.master_url)[0].port
                ui_port = int(cluster.ui_url.rsplit(":", 1)[1])
                await self._start_daemon(launched, "master", standalone.master_command(master_port, ui_port), env)
                workers = [f"worker-{n}" for n in range(1, spec["workers"] + 1)]
            if workers:
                await self._start_workers(launched, workers, env, deadline)
            await self._await_workers(launched, deadline)
        except asyncio.CancelledError:
            raise
        except NotReady as not_ready:
            await self._fail(launched, await asyncio.to_thread(self._timeout_reason, launched, not_ready))
        except Exception as error:  # noqa: BLE001 - whatever it was, the cluster fails with it, not the server
            log.exception("DataHarbour: starting cluster %s failed", cluster.id)
            await self._fail(launched, f"it could not be started: {error}")

    async def _start_workers(self, launched: Launched, names: list[str], env: dict[str, str],
                             deadline: float) -> None:
        """While the master comes up, the workers' supervisors start, held: once it is ALIVE
        they only need the word to go (a worker that found no master would retry only after
        5-15 s)."""
        cluster, spec = launched.cluster, launched.cluster.spec
        preparing = asyncio.ensure_future(asyncio.gather(*(
            self._start_daemon(launched, name, standalone.worker_command(
                cluster.master_url, spec["cores_per_worker"], spec["memory_per_worker_mb"],
                str(launched.directory / name / "work")), env, release=False)
            for name in names)))
        try:
            await self._wait_for(launched, deadline, lambda status: status.status == "ALIVE")
            workers = await preparing
        except BaseException:
            preparing.cancel()
            await asyncio.wait({preparing})  # each worker's start has seen the cancel
            raise
        for worker in workers:
            if not (launched.stopping or launched.failing):
                worker.held = False
                worker.supervised.release()

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
        run_dir = str(launched.directory / name)
        # Shielded, and waited for by a delete (in_flight): the thread runs on after a cancel.
        await asyncio.shield(self._in_flight(launched, asyncio.to_thread(
            standalone.write_daemon_folder, run_dir, argv, env,
            stop_grace_seconds=self.config.stop_grace_seconds, niceness=self.config.niceness,
            properties=standalone.daemon_properties(launched.cluster.conf))))
        launching = self._in_flight(launched, asyncio.to_thread(supervision.launch, run_dir, held=True))
        try:
            supervised = await asyncio.shield(launching)
        except asyncio.CancelledError:
            # Stopped while the supervisor was being started: it must not start the daemon,
            # and is watched like the others, so that it is waited for and reaped.
            launching.add_done_callback(lambda done: done.cancelled() or done.exception()
                                        or self._abandoned(launched, name, run_dir, done.result()))
            raise
        daemon = Daemon(name, run_dir, supervised, held=True)
        launched.daemons[name] = daemon
        launched.group.watch(daemon)
        try:
            async with launched.recording:
                await self.store.update(launched.id, now=utcnow(), daemons=launched.group.records())
        except BaseException:
            supervised.abandon()
            raise
        if launched.stopping or launched.failing:
            supervised.abandon()
        elif release:
            daemon.held = False
            supervised.release()
        return daemon

    def _in_flight(self, launched: Launched, work) -> asyncio.Future:
        future = asyncio.ensure_future(work)
        launched.in_flight.add(future)
        future.add_done_callback(launched.in_flight.discard)
        return future

    def _abandoned(self, launched: Launched, name: str, run_dir: str, supervised: Supervised) -> None:
        supervised.abandon()
        daemon = Daemon(name, run_dir, supervised, held=True)
        launched.daemons[name] = daemon
        launched.group.watch(daemon)

    async def _halt_bring_up(self, launched: Launched) -> None:
        """Cancel the bring-up and wait until nothing of it is still under way (its threads
        included), so that no daemon or folder appears after the cluster is stopped."""
        bring_up = launched.bring_up
        if bring_up is not None and bring_up is not asyncio.current_task():
            bring_up.cancel()
            await asyncio.wait({bring_up})
        if launched.in_flight:
            await asyncio.wait(set(launched.in_flight))

    async def _wait_for(self, launched: Launched, deadline: float, ready) -> standalone.MasterStatus:
        return await wait_until_ready(lambda: self.views.master_status(launched.cluster, fresh=True),
                                      launched.daemons, deadline, ready)

    def _timeout_reason(self, launched: Launched, not_ready: NotReady) -> str:
        return timeout_reason(launched.cluster, launched.daemons, self.config.start_timeout, not_ready)

    # ---- watching --------------------------------------------------------------------

    def _daemon_ended(self, launched: Launched, daemon: Daemon) -> None:
        if not (launched.stopping or launched.failing):
            launched.failing = True  # the first daemon to end is the one the reason names
            self._spawn(self._daemon_failed(launched, daemon), f"dataharbour-fail-{launched.id}")

    async def _daemon_failed(self, launched: Launched, daemon: Daemon) -> None:
        reason = await asyncio.to_thread(failure_of, launched.cluster, daemon)
        await self._fail(launched, reason, noticed=True)

    async def _fail(self, launched: Launched, reason: str, *, noticed: bool = False) -> None:
        """Stop whatever of the cluster still runs, then mark it `failed` with `reason`
        (`noticed`: the caller has already marked it failing)."""
        if launched.stopping or (launched.failing and not noticed):
            return
        launched.failing = True
        log.warning("DataHarbour: cluster %s failed: %s", launched.id, reason)
        # The intent first: a server stopping meanwhile leaves a record the next start resumes.
        await self.store.update(launched.id, now=utcnow(), failure=reason)
        await self._halt_bring_up(launched)
        await launched.group.stop(self.config.stop_grace_seconds)
        # Unless it is being deleted meanwhile: then it is simply gone soon.
        await self._set_state(launched, "failed", reason, from_states=("starting", "running"))

    async def _remove(self, launched: Launched) -> None:
        try:
            await self._halt_bring_up(launched)
            await launched.group.stop(self.config.stop_grace_seconds)
            await asyncio.to_thread(shutil.rmtree, launched.directory, True)
            self._touch(launched.id)
            await self.store.delete(launched.id)
        except Exception:
            log.exception("DataHarbour: deleting cluster %s failed", launched.id)
            await self._set_state(launched, "failed", "it could not be deleted; see the server log")
            launched.stopping = False
            self.clusters.set_deleting(launched.id, False)
            return
        self._forget(launched.cluster)
        log.info("DataHarbour: cluster %s deleted: its master and workers are gone", launched.id)

    async def _set_state(self, launched: Launched, state: str, reason: str | None = None, *,
                         from_states: tuple[str, ...] | None = None) -> bool:
        if not await self.store.update(launched.id, now=utcnow(), from_states=from_states, state=state,
                                       reason=reason):
            return False
        return self.clusters.set_state(launched.id, state, reason)

    # ---- looking at running clusters -------------------------------------------------

    async def _monitor_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_probe = loop.time()
        next_sync = loop.time() + self.config.sync_interval
        while True:
            await asyncio.sleep(self.config.poll_interval)
            try:
                await self._look_at_launched()
                if loop.time() >= next_sync:
                    next_sync = loop.time() + self.config.sync_interval
                    await self._sync()
                if loop.time() >= next_probe:
                    next_probe = loop.time() + self.config.probe_interval
                    await self._probe_externals()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("DataHarbour: looking at the clusters failed")

    async def _look_at_launched(self) -> None:
        """Workers that registered or left a running cluster; daemons that ended unnoticed.
        Every running cluster's daemons are looked at in one thread (it reads /proc)."""
        running = [launched for launched in self._launched.values() if self._watched(launched)]
        if not running:
            return
        owned = [daemon for launched in running if launched.owned for daemon in launched.daemons.values()]
        seen = await asyncio.to_thread(look_at, owned, logs=False) if owned else None
        for launched in running:
            if not self._watched(launched):  # it failed or is being deleted meanwhile
                continue
            if launched.owned:
                launched.group.look(seen)
            status = await self.views.master_status(launched.cluster, fresh=True)
            if status is None:
                continue
            workers = frozenset(worker.id for worker in status.alive_workers)
            if workers != launched.worker_ids:
                launched.worker_ids = workers
                self.updates.changed(launched.id, workers=True)

    def _watched(self, launched: Launched) -> bool:
        return not (launched.stopping or launched.failing) and self.clusters.condition(launched.id).state == "running"

    def _forget(self, cluster: Cluster) -> None:
        """Drop a cluster from this server's view (it no longer exists; nothing to stop)."""
        self._launched.pop(cluster.id, None)
        self._delete_locks.pop(cluster.id, None)
        self.service_logs.unregister(cluster_service_name(cluster.id))
        self.views.forget_status(cluster)
        self.clusters.remove(cluster.id)

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

    def _touch(self, cluster_id: str) -> None:
        if self._touched is not None:
            self._touched.add(cluster_id)

    def _spawn(self, coroutine, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def external_conf(request: ExternalClusterCreate) -> dict[str, str]:
    """An external cluster's conf; a Connect server it names goes in as the conf key the
    Connect servers read (connect_server.EXTERNAL_URL_CONF)."""
    conf = dict(request.conf)
    if request.connect_url is not None:
        conf[connect_server.EXTERNAL_URL_CONF] = request.connect_url
    return conf
