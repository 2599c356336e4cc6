"""RunEngine: admission, launch, supervision and settling of the runs this server owns.

Generic over run backends (`runs/backend.py`): it claims queued runs from the store (one
server wins each), has the backend prepare and launch them under a supervisor, learns of a
supervisor's end through a pidfd, reads the backend's signals to mark a run `running`, and
settles each run's end with a conditional state change. After a server restart it adopts
the runs whose owner is provably gone and re-attaches to those still going.
"""

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..models import JobState
from ..runs import folder
from ..runs.backend import LaunchError, RunBackend
from ..runs.identity import ProcessIdentity, boot_id, host_identity
from ..runs.process import Supervised
from ..secrets import redact_text
from ..spark import driver_log
from ..store import JobRecord, JobStore, Owner, RunRecord
from ..store.log_files import read_tail
from .clock import utcnow
from .job_states import ACTIVE, sources

log = logging.getLogger("dataharbour_ext.jobs")

ERROR_SCAN_LINES = 400  # enough log to find the program's traceback
# A killed run's download blocked on a hung storage keeps its thread until the read timeout.
PREPARE_THREADS = 8
PROGRESS_INTERVAL = 0.25  # seconds between two progress reads of one run (a few messages a second at most)
FORCE_STOP_MARGIN = 15.0  # seconds past the grace before the supervisor itself is killed
SETTLE_RETRY_SECONDS = 5.0


@dataclass
class EngineConfig:
    max_concurrent_jobs: int = 4
    kill_grace_seconds: float = 10.0
    poll_interval: float = 0.1
    # How often the store is asked for work other servers may have freed or left behind.
    admission_interval: float = 1.0
    adoption_interval: float = 5.0
    heartbeat_interval: float = 10.0
    # A run whose owner on another host has not reported for this long is `lost`. Clocks of
    # servers sharing a store may differ by well under this.
    owner_timeout: float = 120.0
    spark_local_ip: str = "127.0.0.1"


@dataclass
class Preparing:
    """A run being prepared (its folder written, its inputs downloaded) in a prepare thread.
    A kill sets both: the thread stops at its next check of `cancelled`, and the launch stops
    waiting for it at once through `killed`, however long a hung download takes to notice."""

    cancelled: threading.Event = field(default_factory=threading.Event)
    killed: asyncio.Event = field(default_factory=asyncio.Event)

    def kill(self) -> None:
        self.cancelled.set()
        self.killed.set()


@dataclass
class Watched:
    """A live run of this server: its supervisor, and what has been seen of it."""

    run: RunRecord
    backend: RunBackend
    supervised: Supervised
    exit_fd: int | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    marked_running: bool = False
    signals_mtime: float | None = None
    progress_version: tuple | None = None
    progress_read_at: float = 0.0  # loop time
    progress: dict | None = None  # the latest, as JobProgress fields
    settling: bool = False
    stop_requested: bool = False
    retry_at: float = 0.0  # loop time before which a failed settle is not tried again

    @property
    def key(self) -> tuple[str, int]:
        return self.run.job_id, self.run.attempt


def this_server() -> Owner:
    me = ProcessIdentity.of(os.getpid())
    return Owner(host_identity(), boot_id(), uuid.uuid4().hex, os.getpid(), me.start_ticks if me else 0)


def owner_is_gone(owner: Owner | None, me: Owner) -> bool:
    """True only when it is provable: no owner recorded (a store from before owners), or an
    owner on this host (same machine id and pid namespace) that belongs to an earlier boot
    or whose process no longer runs. Another host's server is never declared gone here."""
    if owner is None:
        return True
    if owner.instance == me.instance or owner.host != me.host:
        return False
    if owner.boot_id != me.boot_id:
        return True
    return not ProcessIdentity(owner.pid, owner.start_ticks, owner.boot_id).matches()


class RunEngine:
    def __init__(
        self,
        store: JobStore,
        clusters,
        backends: dict[str, RunBackend],
        config: EngineConfig,
        on_change: Callable[[str], Awaitable[None]],
        on_progress: Callable[[str, dict], None] = lambda job_id, progress: None,
        stage: Callable[[JobRecord, RunRecord, threading.Event], JobRecord] | None = None,
        on_end: Callable[[RunRecord], None] | None = None,
        end_values: Callable[[RunRecord], dict] | None = None,
    ):
        """`stage`: before the backend prepares a run, in the same thread (the run is `starting`):
        its input and output folders, and the job as the backend should run it; it stops with a
        LaunchError once the Event is set (the run was killed). `on_end`: a run this server
        settled has ended (on the event loop; must not block). `end_values`: more columns the
        run's end sets in the same write (what `on_end` still has to do, should the server stop)."""
        self.store = store
        self.clusters = clusters
        self.backends = backends
        self.config = config
        self.on_change = on_change
        self.on_progress = on_progress
        self.owner = this_server()
        self._watched: dict[str, Watched] = {}  # by job id: a job has one live run at most
        self._admission_wanted = asyncio.Event()
        self._staging: dict[str, Preparing] = {}  # by job id: runs being prepared
        self.stage = stage
        # Run folders are written, and inputs downloaded (minutes for large ones), on threads of
        # their own: never in the default pool that the engine's file reads share.
        self._prepares = ThreadPoolExecutor(max_workers=PREPARE_THREADS, thread_name_prefix="dataharbour-prepare")
        self.on_end = on_end
        self.end_values = end_values
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Adopt what an earlier server left, then admit and watch. A store that fails now
        is retried by the loops (adoption every `adoption_interval`), never fatal."""
        try:
            await self._adopt_orphans()
        except Exception:
            log.exception("DataHarbour: adopting runs left by an earlier server failed; retrying later")
        self._tasks = [
            asyncio.create_task(self._admission_loop(), name="dataharbour-admission"),
            asyncio.create_task(self._watch_loop(), name="dataharbour-watch"),
        ]
        self.request_admission()

    async def stop(self) -> None:
        """Stop watching; runs go on and the next server start adopts them."""
        for preparing in self._staging.values():
            preparing.cancelled.set()  # their downloads stop; the next start queues those runs again
        for task in [*self._tasks, *self._background]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        self._tasks = []
        self._prepares.shutdown(wait=False)
        for watched in list(self._watched.values()):
            self._close_exit_fd(watched)
        self._watched.clear()

    def request_admission(self) -> None:
        self._admission_wanted.set()

    def watched(self, job_id: str) -> Watched | None:
        return self._watched.get(job_id)

    # ---- admission and launch --------------------------------------------------------

    async def _admission_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._admission_wanted.wait(), self.config.admission_interval)
            except asyncio.TimeoutError:
                pass
            self._admission_wanted.clear()
            try:
                await self._admit()
            except Exception:
                log.exception("DataHarbour: admitting queued runs failed")

    async def _admit(self) -> None:
        while True:
            limits = self.clusters.admission_limits()  # none for a cluster still starting
            # Only runs on clusters this server knows: another server may know the others.
            known = [cluster.id for cluster in self.clusters.all()]
            run = await self.store.claim_next(self.owner, limits, self.config.max_concurrent_jobs, now=utcnow(),
                                              clusters=known)
            if run is None:
                return
            # Each launch on its own: a warm one may wait for its cluster's Connect server
            # and pool, and must not hold up the runs claimed after it.
            task = asyncio.create_task(self._launch(run), name=f"dataharbour-launch-{run.job_id}")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _launch(self, run: RunRecord) -> None:
        """Prepare and start a claimed run. Whatever goes wrong ends this run `failed` with
        the reason and the queue moves on: a run this server claimed never stays `starting`
        with nobody launching it."""
        supervised: Supervised | None = None
        preparing = self._staging[run.job_id] = Preparing()
        try:
            await self.on_change(run.job_id)
            job = await self.store.get_job(run.job_id)
            cluster = self.clusters.get(run.cluster_id)
            backend = self.backends.get(run.backend)
            if job is None:
                raise LaunchError("the job record is gone")
            if cluster is None:
                raise LaunchError(f"cluster {run.cluster_id!r} no longer exists")
            if refusal := self.clusters.launch_refusal(cluster.id):
                raise LaunchError(refusal)  # stopped or failed since the job was queued
            if backend is None:
                raise LaunchError(f"no run backend {run.backend!r} on this server")
            await self._prepared_unless_killed(preparing, backend, job, run, cluster)
            self._staging.pop(run.job_id, None)  # from now on a kill reaches it through the store
            supervised = await backend.launch(run, cluster)
            identity = supervised.identity
            await self.store.update_run(run.job_id, run.attempt, pid=identity.pid,
                                        pid_start_ticks=identity.start_ticks, pid_boot_id=identity.boot_id)
            # Watched before released: a kill from now on reaches the supervisor, and one
            # that came earlier is in the store.
            watched = self._watch(run, backend, supervised)
            current = await self.store.get_run(run.job_id, run.attempt)
            if current is not None and current.kill_requested:
                watched.stop_requested = True
                supervised.request_stop()
        except Exception as error:
            self._staging.pop(run.job_id, None)
            if supervised is not None:
                supervised.abandon()  # it ends at once without running anything
                watched = self._watched.get(run.job_id)
                if watched is not None and watched.supervised is supervised:
                    del self._watched[run.job_id]
                    self._close_exit_fd(watched)
                supervised.reap()
            expected = isinstance(error, LaunchError | OSError | ValueError)  # else a bug: log its traceback
            if not expected:
                log.exception("DataHarbour: launching job %s attempt %s failed", run.job_id, run.attempt)
            reason = str(error) if expected else repr(error)
            try:
                if preparing.cancelled.is_set():  # killed while it was being prepared: nothing of it ran
                    await self._end(run, JobState.killed)
                else:
                    await self._end(run, JobState.failed, error=f"could not launch the run: {reason}")
            except Exception:
                log.exception("DataHarbour: recording the failed launch of job %s failed", run.job_id)
            return
        supervised.release()
        log.info("DataHarbour: job %s attempt %s started (supervisor pid %s)", run.job_id, run.attempt,
                 supervised.identity.pid)

    async def _prepared_unless_killed(self, preparing: Preparing, backend: RunBackend, job: JobRecord,
                                      run: RunRecord, cluster) -> None:
        """The run prepared in a prepare thread, or LaunchError as soon as it is killed: a
        download blocked on a hung object storage notices only at its read timeout, and a kill
        must not wait for that. The abandoned thread then ends on its own, in the killed
        attempt's folder (each attempt has its own), and leaves no partial file."""
        prepared = asyncio.get_running_loop().run_in_executor(
            self._prepares, self._prepare, backend, job, run, cluster, preparing.cancelled
        )
        killed = asyncio.ensure_future(preparing.killed.wait())
        try:
            await asyncio.wait({prepared, killed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            killed.cancel()
            # Abandoned (killed, or the server stops): its end, an error or not, is of no interest.
            prepared.add_done_callback(lambda future: future.cancelled() or future.exception())
        if preparing.cancelled.is_set():  # killed, even if the preparing ended in the same turn
            raise LaunchError("the run was killed while it was being prepared")
        prepared.result()

    def _prepare(self, backend: RunBackend, job: JobRecord, run: RunRecord, cluster,
                 cancelled: threading.Event) -> None:
        """The run's folder, inputs and files. Blocking: in a thread."""
        if self.stage is not None:
            job = self.stage(job, run, cancelled)
        if cancelled.is_set():
            raise LaunchError("the run was killed while it was being prepared")
        backend.prepare(job, run, cluster)

    # ---- watching --------------------------------------------------------------------

    def _watch(self, run: RunRecord, backend: RunBackend, supervised: Supervised) -> Watched:
        watched = Watched(run, backend, supervised)
        self._watched[run.job_id] = watched
        watched.exit_fd = supervised.exit_fd()
        if watched.exit_fd is not None:
            asyncio.get_running_loop().add_reader(watched.exit_fd, self._on_supervisor_exit, watched)
        return watched

    def _on_supervisor_exit(self, watched: Watched) -> None:
        self._close_exit_fd(watched)  # readable for good now: one notice is enough
        self._settle_soon(watched)

    def _close_exit_fd(self, watched: Watched) -> None:
        if watched.exit_fd is not None:
            asyncio.get_running_loop().remove_reader(watched.exit_fd)
            watched.exit_fd = None
        watched.supervised.close()  # the pidfd belongs to the handle

    def _settle_soon(self, watched: Watched) -> None:
        if watched.settling:
            return
        watched.settling = True
        task = asyncio.create_task(self._settle(watched))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watch_loop(self) -> None:
        ticks_per_admission = max(1, round(self.config.admission_interval / self.config.poll_interval))
        ticks_per_adoption = max(1, round(self.config.adoption_interval / self.config.poll_interval))
        ticks_per_heartbeat = max(1, round(self.config.heartbeat_interval / self.config.poll_interval))
        tick = 0
        while True:
            await asyncio.sleep(self.config.poll_interval)
            tick += 1
            for watched in list(self._watched.values()):
                try:
                    await self._check(watched)
                except Exception:
                    log.exception("DataHarbour: checking job %s failed", watched.run.job_id)
            try:
                if tick % ticks_per_admission == 0:
                    await self._stop_runs_killed_elsewhere()
                if tick % ticks_per_adoption == 0:
                    await self._adopt_orphans()
                if tick % ticks_per_heartbeat == 0 and self._watched:
                    await self.store.heartbeat(self.owner, utcnow())
            except Exception:
                log.exception("DataHarbour: periodic run upkeep failed")

    async def _check(self, watched: Watched) -> None:
        if watched.settling or asyncio.get_running_loop().time() < watched.retry_at:
            return
        if not watched.marked_running:
            await self._read_signals(watched)
        else:
            await self._read_progress(watched)
        if watched.exit_fd is None and not watched.supervised.alive():
            self._settle_soon(watched)  # no pidfd on this platform, or it was missed

    async def _read_signals(self, watched: Watched) -> None:
        """Mark the run `running` once its backend says the engine is up. Costs a stat per
        tick until then; the signals file is read (in a thread) only when it changed."""
        path = watched.backend.signals_path(watched.run.run_dir)
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return
        if mtime == watched.signals_mtime:
            return
        watched.signals_mtime = mtime
        signals = await asyncio.to_thread(watched.backend.signals, watched.run.run_dir)
        if not signals.ready:
            return
        watched.marked_running = True
        ui_url = f"http://{self.config.spark_local_ip}:{signals.ui_port}" if signals.ui_port else None
        changed = await self.store.transition(
            *watched.key, sources(JobState.running), JobState.running.value, now=utcnow(),
            spark_app_id=signals.app_id, spark_ui_url=ui_url,
        )
        if changed is not None:
            watched.run = changed
            await self.on_change(watched.run.job_id)

    async def _read_progress(self, watched: Watched, *, final: bool = False) -> None:
        """Publish the run's progress when its files changed: a stat or a few per tick, a read
        (in a thread) at most every PROGRESS_INTERVAL."""
        now = asyncio.get_running_loop().time()
        if not final and now - watched.progress_read_at < PROGRESS_INTERVAL:
            return
        version = watched.backend.progress_version(watched.run.run_dir)
        if version is None or version == watched.progress_version:
            return
        watched.progress_version, watched.progress_read_at = version, now
        progress = await asyncio.to_thread(watched.backend.progress, watched.run.run_dir)
        if watched.run.spark_app_id is None and getattr(watched.backend, "late_app_signals", False):
            await self._read_late_app_signals(watched)
        if progress is None:
            return
        watched.progress = {"attempt": watched.run.attempt, **progress, "updated_at": utcnow().isoformat()}
        self.on_progress(watched.run.job_id, watched.progress)

    async def _read_late_app_signals(self, watched: Watched) -> None:
        """The Spark application of a run that was `running` before it had one (a notebook job's
        kernel starts its driver in a cell, if at all): its id and UI address once it is up."""
        signals = await asyncio.to_thread(watched.backend.signals, watched.run.run_dir)
        if not signals.app_id:
            return
        ui_url = f"http://{self.config.spark_local_ip}:{signals.ui_port}" if signals.ui_port else None
        await self.store.update_run(*watched.key, touch_job=utcnow(), spark_app_id=signals.app_id,
                                    spark_ui_url=ui_url)
        watched.run.spark_app_id, watched.run.spark_ui_url = signals.app_id, ui_url
        await self.on_change(watched.run.job_id)

    def live_progress(self, job_id: str) -> dict | None:
        watched = self._watched.get(job_id)
        return watched.progress if watched else None

    async def _settle(self, watched: Watched) -> None:
        """The supervisor has exited: record how the run ended. If the store fails meanwhile
        the run stays watched and the watch loop tries again a little later."""
        self._close_exit_fd(watched)
        watched.supervised.reap()
        try:
            status = await asyncio.to_thread(folder.read_exit_status, watched.run.run_dir)
            if not watched.marked_running:
                await self._read_signals(watched)  # a short run may have come up and ended between ticks
            await self._read_progress(watched, final=True)
            run = await self.store.get_run(*watched.key)
            if run is not None and run.state in ACTIVE:
                await self._settle_from_status(run, status, watched.stop_requested, progress=watched.progress)
        except Exception:
            log.exception("DataHarbour: settling job %s failed; trying again", watched.run.job_id)
            watched.retry_at = asyncio.get_running_loop().time() + SETTLE_RETRY_SECONDS
            watched.settling = False
            return
        if self._watched.get(watched.run.job_id) is watched:
            del self._watched[watched.run.job_id]
        watched.ended.set()  # a kill waiting on it answers with the settled state

    async def _settle_from_status(self, run: RunRecord, status: dict | None, stop_requested: bool = False,
                                  progress: dict | None = None) -> None:
        exit_code = status.get("returncode") if status else None
        ended = utcnow()
        if status and isinstance(status.get("ended_at"), (int, float)):
            ended = datetime.fromtimestamp(status["ended_at"], timezone.utc).replace(tzinfo=None)
        if status and status.get("released") is False:
            await self._requeue(run, "its supervisor was never released")
            return
        error = None
        if status is not None and status.get("stop_requested") is not None:
            # The supervisor knows whether the stop or the program's own exit came first.
            stopped = bool(status["stop_requested"])
        else:
            stopped = run.kill_requested or stop_requested
        if stopped:
            state = JobState.killed
        elif status is None:
            state = JobState.lost
            error = "the run's supervisor process vanished without recording an exit status"
        elif exit_code == 0:
            state = JobState.succeeded
        else:
            state = JobState.failed
            error = status.get("error") or await asyncio.to_thread(self._error_summary, run, exit_code)
        if progress is None and run.run_dir and state is not JobState.lost:
            progress = await self._stored_progress(run)  # a run that ended while no server watched
        await self._end(run, state, exit_code=exit_code, error=error, ended=ended, progress=progress)

    async def _stored_progress(self, run: RunRecord) -> dict | None:
        backend = self.backends.get(run.backend)
        progress = await asyncio.to_thread(backend.progress, run.run_dir) if backend else None
        return {"attempt": run.attempt, **progress, "updated_at": utcnow().isoformat()} if progress else None

    async def _requeue(self, run: RunRecord, why: str) -> None:
        """The server stopped before the program ran (no supervisor was ever released for
        it): the run goes back to the queue instead of failing."""
        changed = await self.store.transition(run.job_id, run.attempt, ("starting",), JobState.queued.value,
                                              now=utcnow(), pid=None, pid_start_ticks=None, pid_boot_id=None,
                                              started_at=None)
        if changed is not None:
            log.info("DataHarbour: job %s attempt %s queued again: %s", run.job_id, run.attempt, why)
            await self.on_change(run.job_id)
            self.request_admission()

    def _error_summary(self, run: RunRecord, exit_code: int | None) -> str:
        backend = self.backends.get(run.backend)
        path = backend.log_path(run.run_dir) if backend else os.path.join(run.run_dir, folder.LOG_FILE)
        tail = "\n".join(read_tail(path, ERROR_SCAN_LINES, final=True).lines)
        if backend is None:
            return driver_log.error_summary(tail, exit_code)
        return backend.error_summary(run.run_dir, tail, exit_code)

    async def _end(self, run: RunRecord, state: JobState, *, exit_code: int | None = None,
                   error: str | None = None, ended: datetime | None = None,
                   from_states: tuple[str, ...] | None = None, progress: dict | None = None) -> bool:
        error = redact_text(error) if error else None  # a log line may quote a credential
        extra = {"progress": progress} if progress is not None else {}
        if self.end_values is not None:
            extra.update(self.end_values(run))
        changed = await self.store.transition(
            run.job_id, run.attempt, from_states or sources(state), state.value, now=utcnow(),
            finished_at=ended or utcnow(), exit_code=exit_code, error=error, **extra,
        )
        if changed is None:
            return False  # another request or server settled it first
        log.info("DataHarbour: job %s attempt %s %s%s", run.job_id, run.attempt, state.value,
                 f" ({error})" if error else "")
        await self.on_change(run.job_id)
        self.request_admission()
        if self.on_end is not None:
            try:
                self.on_end(changed)
            except Exception:
                log.exception("DataHarbour: after the end of job %s attempt %s", run.job_id, run.attempt)
        return True

    # ---- kill ------------------------------------------------------------------------

    async def cancel(self, run: RunRecord) -> None:
        """Stop a run and return once it has settled (its processes are all gone)."""
        await self.store.update_run(run.job_id, run.attempt, kill_requested=True)
        if (preparing := self._staging.get(run.job_id)) is not None:
            preparing.kill()  # a run being prepared (its inputs downloading) stops there
        if run.state == JobState.queued.value:
            # Only from `queued`: a run claimed meanwhile has processes to stop first.
            if await self._end(run, JobState.killed, from_states=(JobState.queued.value,)):
                return
            run = await self.store.get_run(run.job_id, run.attempt)  # claimed meanwhile
            if run is None or run.state not in ACTIVE:
                return
        watched = self._watched.get(run.job_id)
        if watched is not None and watched.run.attempt == run.attempt:
            await self._stop_watched(watched)
            return
        # Launching on this server (the launch sees kill_requested) or owned by another
        # server (its upkeep loop stops it): wait for the run to settle.
        await self._wait_settled(run, self.config.kill_grace_seconds + 2 * FORCE_STOP_MARGIN)

    async def _stop_watched(self, watched: Watched) -> None:
        watched.stop_requested = True
        watched.supervised.request_stop()
        try:
            await asyncio.wait_for(watched.ended.wait(), self.config.kill_grace_seconds + FORCE_STOP_MARGIN)
        except asyncio.TimeoutError:
            killed = await asyncio.to_thread(watched.supervised.force_stop)
            log.warning("DataHarbour: job %s: supervisor did not stop in time; killed %d processes",
                        watched.run.job_id, killed)
            self._settle_soon(watched)
            try:
                await asyncio.wait_for(watched.ended.wait(), FORCE_STOP_MARGIN)
            except asyncio.TimeoutError:
                log.error("DataHarbour: job %s: its end could not be recorded yet", watched.run.job_id)

    async def _wait_settled(self, run: RunRecord, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            current = await self.store.get_run(run.job_id, run.attempt)
            if current is None or current.state not in ACTIVE:
                return
            watched = self._watched.get(run.job_id)
            if watched is not None and watched.run.attempt == run.attempt:
                await self._stop_watched(watched)
                return
            await asyncio.sleep(0.1)

    async def _stop_runs_killed_elsewhere(self) -> None:
        """A kill handled by another server sharing the store reaches our runs through
        their `kill_requested` flag."""
        if not self._watched and not self._staging:
            return
        for run in await self.store.runs_in_states(ACTIVE, owner_instance=self.owner.instance):
            watched = self._watched.get(run.job_id)
            if run.kill_requested and (preparing := self._staging.get(run.job_id)) is not None:
                preparing.kill()
            if run.kill_requested and watched is not None and not watched.stop_requested:
                watched.stop_requested = True
                watched.supervised.request_stop()

    # ---- restart of the server -------------------------------------------------------

    async def _adopt_orphans(self) -> None:
        """Take over active runs whose owner is provably gone: settle those that ended,
        re-attach to those still going, mark `lost` those whose supervisor vanished."""
        for run in await self.store.runs_in_states(ACTIVE):
            if run.job_id in self._watched:
                continue
            if not owner_is_gone(run.owner, self.owner):
                await self._give_up_on_a_silent_owner(run)
                continue
            previous = run.owner.instance if run.owner else None
            if not await self.store.adopt(run.job_id, run.attempt, previous, self.owner, now=utcnow()):
                continue  # another server adopted it first
            try:
                await self._resume(run)
            except Exception:
                log.exception("DataHarbour: resuming job %s attempt %s failed", run.job_id, run.attempt)

    async def _give_up_on_a_silent_owner(self, run: RunRecord) -> None:
        """A run owned by a server on another host that stopped reporting: nothing here can
        reach its processes, so it is `lost`, and its slot and its job are free again."""
        owner = run.owner
        if owner is None or owner.instance == self.owner.instance or owner.host == self.owner.host:
            return  # ours, or provable on this host (its owner is alive)
        seen = run.owner_seen_at or run.started_at
        if seen is None or (utcnow() - seen).total_seconds() < self.config.owner_timeout:
            return
        host = owner.host.split("/", 1)[0]
        await self._end(run, JobState.lost, error=f"its server on {host} stopped reporting "
                                                  f"(last seen {seen.isoformat(timespec='seconds')}Z)")

    async def _resume(self, run: RunRecord) -> None:
        backend = self.backends.get(run.backend)
        status = await asyncio.to_thread(folder.read_exit_status, run.run_dir)
        if status is not None or backend is None:
            await self._settle_from_status(run, status)
            return
        supervised = await asyncio.to_thread(backend.reattach, run)
        if supervised is None:
            status = await asyncio.to_thread(folder.read_exit_status, run.run_dir)  # it may just have ended
            # A supervisor writes supervisor.json into the run folder as it starts (a warm
            # one when it is bound): without it, the run's program never ran.
            started = await asyncio.to_thread(os.path.exists, os.path.join(run.run_dir, folder.SUPERVISOR_FILE))
            if status is None and run.state == JobState.starting.value and (run.pid is None or not started):
                await self._requeue(run, "it was claimed but never launched")
                return
            await self._settle_from_status(run, status)
            return
        watched = self._watch(run, backend, supervised)
        watched.marked_running = run.state == JobState.running.value
        if (cluster := self.clusters.get(run.cluster_id)) is not None:
            backend.resumed(run, supervised, cluster)
        log.info("DataHarbour: re-attached to job %s attempt %s (supervisor pid %s)", run.job_id, run.attempt,
                 supervised.identity.pid)
        if run.kill_requested:
            watched.stop_requested = True
            supervised.request_stop()
