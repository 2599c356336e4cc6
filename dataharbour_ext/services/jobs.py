"""JobService: submit, queue, supervise, kill and restart PySpark jobs.

A job is a record; each execution is a run with its own folder (program, command, log, exit
status) and its own detached supervisor process group (see `spark/runner.py`). The service
polls its active runs: the exit-status file says how a run ended, the driver log says when
Spark is up and where its UI listens. Nothing here depends on the supervisor being our
child, so after a server restart the same loop re-attaches to runs still going.
"""

import asyncio
import logging
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import Conflict, Gone, InvalidInput, NotFound, PayloadTooLarge
from ..events import EventHub
from ..models import Job, JobList, JobQuery, JobState, JobSubmit, LogPage, LogQuery
from ..spark import driver_log, driver_ui, process_group
from ..spark.run_dir import (
    COMMAND_FILE,
    LOG_FILE,
    PROGRAM_FILE,
    PROPERTIES_FILE,
    SUPERVISOR_LOG,
    read_exit_status,
    read_supervisor,
    write_json_atomically,
)
from ..spark.submit import SubmitSpec, build_command, build_environment, write_properties
from ..store import JobRecord, JobStore, RunRecord
from ..store.log_files import read_page, read_tail
from .clock import utcnow
from .clusters import ClusterService
from .job_sources import read_program
from .job_views import job_view

log = logging.getLogger(__name__)

ERROR_SCAN_LINES = 400  # enough log to find the program's traceback


@dataclass
class JobServiceConfig:
    root_dir: str
    runs_dir: str
    max_concurrent_jobs: int = 4
    max_code_bytes: int = 1024 * 1024
    max_name_length: int = 200
    kill_grace_seconds: float = 10.0
    poll_interval: float = 0.1
    app_id_lookup_delay: float = 5.0
    spark_local_ip: str = "127.0.0.1"


@dataclass
class LiveUi:
    job_id: str
    attempt: int
    state: JobState
    url: str
    spark_app_id: str | None


@dataclass
class _ActiveRun:
    """What the poll loop knows about a run whose process group is alive."""

    job_id: str
    attempt: int
    run_dir: str
    pid: int
    pid_started: float | None
    process: subprocess.Popen | None = None  # only when we started it (to reap it)
    log_follower: driver_log.DriverLogFollower = field(init=False)
    marked_running: bool = False
    ui_verified: bool = False
    app_id_lookup: asyncio.Task | None = None
    app_id_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    exit_handle: int | None = None  # pidfd of the supervisor

    def __post_init__(self) -> None:
        self.log_follower = driver_log.DriverLogFollower(os.path.join(self.run_dir, LOG_FILE))

    @property
    def driver(self) -> driver_log.DriverEvents:
        return self.log_follower.events


class JobService:
    def __init__(
        self,
        store: JobStore,
        clusters: ClusterService,
        hub: EventHub,
        contents_manager,
        config: JobServiceConfig,
    ):
        self.store = store
        self.clusters = clusters
        self.hub = hub
        self.contents_manager = contents_manager
        self.config = config
        self._active: dict[str, _ActiveRun] = {}
        self._killing: set[str] = set()  # jobs whose kill waits for the process group to empty
        self._starting_queued = False
        self._queue_changed = False
        self._poller: asyncio.Task | None = None

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Settle runs that ended while the server was down, re-attach to live ones, poll."""
        if self._poller is not None:
            return
        for run in self.store.runs_in_states([JobState.starting.value, JobState.running.value]):
            if run.pid is None and (supervisor := read_supervisor(run.run_dir)):
                # The server died between starting the supervisor and saving its pid.
                run.pid, run.pid_started = supervisor["pid"], supervisor["started"]
                self.store.save(run)
            status = read_exit_status(run.run_dir)
            if status is not None or not (run.pid and process_group.is_alive(run.pid, run.pid_started)):
                self._finish(run, status)
            else:
                self._watch(_ActiveRun(run.job_id, run.attempt, run.run_dir, run.pid, run.pid_started))
                log.info("re-attached to job %s attempt %s (pid %s)", run.job_id, run.attempt, run.pid)
        self._start_queued()
        self._poller = asyncio.create_task(self._poll_forever())

    async def stop(self) -> None:
        """Stop watching. Runs keep going; the next start re-attaches to them."""
        if self._poller:
            self._poller.cancel()
            try:
                await self._poller
            except asyncio.CancelledError:
                pass
            self._poller = None
        for active in self._active.values():
            self._unwatch(active)
        self._active.clear()

    async def kill_all(self) -> None:
        """Kill every queued and active job (used by tests and shutdown hooks that ask for it)."""
        for run in self.store.runs_in_states(["queued", "starting", "running"]):
            try:
                await self.kill(run.job_id)
            except Conflict:
                pass

    # ---- queries ---------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        return job_view(self._require(job_id), detail=True)

    def list(self, query: JobQuery) -> JobList:
        records, total = self.store.list_jobs(
            states=[s.value for s in query.state] if query.state else None,
            cluster_id=query.cluster_id,
            name=query.name,
            sort=query.sort.value,
            descending=query.order == "desc",
            limit=query.limit,
            offset=query.offset,
        )
        jobs = [job_view(record, detail=False) for record in records]
        return JobList(jobs=jobs, total=total, limit=query.limit, offset=query.offset)

    def logs(self, job_id: str, query: LogQuery) -> LogPage:
        job = self._require(job_id)
        attempt = query.attempt or job.attempt
        run = self.store.get_run(job_id, attempt)
        if run is None:
            raise NotFound(f"job {job_id} has no attempt {attempt} (latest is {job.attempt})")
        path = os.path.join(run.run_dir, LOG_FILE)
        final = JobState(run.state).is_terminal
        if query.tail:
            part = read_tail(path, query.tail, final=final)
        else:
            part = read_page(path, query.offset, query.limit, final=final)
        return LogPage(
            job_id=job_id,
            attempt=attempt,
            offset=part.offset,
            next_offset=part.next_offset,
            size=part.size,
            lines=part.lines,
            complete=final and part.next_offset >= part.size,
        )

    def live_ui(self, job_id: str) -> LiveUi:
        """The driver UI of the job's current run, or why there is none."""
        job = self._require(job_id)
        state = JobState(job.state)
        if state.is_terminal:
            raise Gone(f"job {job_id} has {state.value}; its driver UI ended with it")
        active = self._active.get(job_id)
        if active is None or state is not JobState.running:
            raise Conflict(f"job {job_id} is {state.value}; its driver UI is not up yet")
        if active.driver.ui_stopped:
            raise Gone(f"job {job_id} has stopped its SparkContext and driver UI")
        run = self.store.get_run(job_id, job.attempt)
        if run.spark_ui_url is None:
            raise Gone(f"job {job_id} runs without a driver UI (spark.ui.enabled is false)")
        if not active.ui_verified:
            # The port comes from a log the program writes to as well: proxy to it only
            # if the run's own processes really listen there.
            if active.driver.ui_port not in process_group.listening_ports(active.pid):
                raise Conflict(f"job {job_id}: no process of the run listens on the driver UI port")
            active.ui_verified = True
        active.app_id_wanted.set()  # the UI is in use anyway: ask it for the app id now
        return LiveUi(job_id, job.attempt, state, run.spark_ui_url, run.spark_app_id)

    # ---- commands --------------------------------------------------------------------

    async def submit(self, request: JobSubmit) -> Job:
        cluster = self.clusters.require(request.cluster_id)
        if len(request.name) > self.config.max_name_length:
            raise InvalidInput("name", f"must be at most {self.config.max_name_length} characters")
        code = await self._program(request)
        now = utcnow()
        job_id = uuid.uuid4().hex
        job = JobRecord(
            id=job_id,
            name=request.name,
            cluster_id=cluster.id,
            state=JobState.queued.value,
            code=code,
            file=request.file,
            args=request.args,
            conf=request.conf,
            env=request.env,
            attempt=1,
            created_at=now,
            updated_at=now,
        )
        self.store.add_job(job, self._new_run(job, 1, now))
        self._publish(job_id)
        self._start_queued()
        return self.get(job_id)

    async def restart(self, job_id: str) -> Job:
        job = self._require(job_id)
        state = JobState(job.state)
        if not state.is_terminal:
            raise Conflict(f"job {job_id} is {state.value}; kill it before restarting")
        now = utcnow()
        job.attempt += 1
        job.state = JobState.queued.value
        job.updated_at = now
        self.store.save(job, self._new_run(job, job.attempt, now))
        self._publish(job_id)
        self._start_queued()
        return self.get(job_id)

    async def kill(self, job_id: str) -> Job:
        """Terminate the run's whole process group, SIGKILL after the grace period.

        Returns once no process of the group is left, with the job in state `killed`.
        """
        job = self._require(job_id)
        state = JobState(job.state)
        if state.is_terminal:
            raise Conflict(f"job {job_id} has already {state.value}")
        if job_id in self._killing:
            raise Conflict(f"job {job_id} is already being killed")
        run = self.store.get_run(job_id, job.attempt)
        run.kill_requested = True
        self.store.save(run)
        if state is JobState.queued:
            self._finish(run, None)
            return self.get(job_id)
        self._killing.add(job_id)
        try:
            await self._stop_group(job_id, run.pid)
        finally:
            self._killing.discard(job_id)
        self._finish(self.store.get_run(job_id, job.attempt), read_exit_status(run.run_dir))
        return self.get(job_id)

    async def _stop_group(self, job_id: str, pgid: int) -> None:
        active = self._active.get(job_id)
        process_group.signal_group(pgid, signal.SIGTERM)
        if not await self._wait_group_exit(pgid, self.config.kill_grace_seconds, active):
            log.warning("job %s did not stop within %.0fs; sending SIGKILL", job_id, self.config.kill_grace_seconds)
            process_group.signal_group(pgid, signal.SIGKILL)
            await self._wait_group_exit(pgid, 10.0, active)

    # ---- internals: submission -------------------------------------------------------

    async def _program(self, request: JobSubmit) -> str:
        if request.code is not None and request.file is not None:
            raise InvalidInput("file", "give either code or file, not both")
        if request.code is None and request.file is None:
            raise InvalidInput("code", "either code or file is required")
        code = request.code if request.code is not None else await read_program(
            self.contents_manager, request.file, self.config.max_code_bytes
        )
        field_name = "code" if request.code is not None else "file"
        if len(code.encode("utf-8", errors="surrogatepass")) > self.config.max_code_bytes:
            raise PayloadTooLarge(f"{field_name}: the program is larger than {self.config.max_code_bytes} bytes")
        if not code.strip():
            raise InvalidInput(field_name, "the program is empty")
        try:
            compile(code, request.file or "<job>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as error:
            where = f" (line {error.lineno})" if getattr(error, "lineno", None) else ""
            raise InvalidInput(field_name, f"{type(error).__name__}{where}: {getattr(error, 'msg', error)}") from None
        return code

    def _new_run(self, job: JobRecord, attempt: int, now: datetime) -> RunRecord:
        run_dir = os.path.join(self.config.runs_dir, job.id, str(attempt))
        return RunRecord(
            job_id=job.id,
            attempt=attempt,
            cluster_id=job.cluster_id,
            state=JobState.queued.value,
            run_dir=run_dir,
            queued_at=now,
        )

    def _start_queued(self) -> None:
        """Start queued runs, oldest first, while their cluster has a free slot.

        Not re-entrant: a run that ends while this loop launches others (a failed launch)
        asks for one more pass instead of starting a second loop over a stale list.
        """
        if self._starting_queued:
            self._queue_changed = True
            return
        self._starting_queued = True
        try:
            self._queue_changed = True
            while self._queue_changed:
                self._queue_changed = False
                free: dict[str, int] = {}
                for run in self.store.runs_in_states([JobState.queued.value]):
                    if run.cluster_id not in free:
                        free[run.cluster_id] = self.config.max_concurrent_jobs - self.store.count_active(run.cluster_id)
                    if free[run.cluster_id] > 0:
                        free[run.cluster_id] -= 1
                        self._launch(run)
        finally:
            self._starting_queued = False

    def _launch(self, run: RunRecord) -> None:
        job = self.store.get_job(run.job_id)
        cluster = self.clusters.get(run.cluster_id)
        now = utcnow()
        run.started_at = now
        if cluster is None:
            run.error = f"cluster {run.cluster_id!r} no longer exists"
            self._end(run, JobState.failed, None, now)
            return
        run_dir = Path(run.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        program = run_dir / PROGRAM_FILE
        program.write_text(job.code, encoding="utf-8")
        spec = SubmitSpec(
            master=cluster.master_url,
            app_name=job.name,
            app_file=str(program),
            args=list(job.args),
            conf=dict(job.conf),
            env=dict(job.env),
            local_ip=self.config.spark_local_ip,
        )
        if job.conf:
            spec.properties_file = str(run_dir / PROPERTIES_FILE)
            write_properties(spec.properties_file, spec.conf)
        command = {"argv": build_command(spec), "env": build_environment(spec), "cwd": self.config.root_dir}
        # The command holds the job's environment, which may carry credentials: owner-only.
        write_json_atomically(run_dir / COMMAND_FILE, command, mode=0o600)
        # `starting` is saved before the supervisor exists: should the server die in
        # between, the next start finds the supervisor through its supervisor.json
        # instead of launching the run a second time.
        run.state = JobState.starting.value
        self.store.save_run(run, now=now)
        try:
            process = process_group.launch_supervisor(str(run_dir), str(run_dir / SUPERVISOR_LOG))
        except OSError as error:
            run.error = f"could not start the run supervisor: {error}"
            self._end(run, JobState.failed, None, now)
            return
        run.pid = process.pid
        run.pid_started = process_group.start_time(process.pid)
        self._save_with_job(run, now)
        self._watch(_ActiveRun(run.job_id, run.attempt, run.run_dir, run.pid, run.pid_started, process=process))
        log.info("job %s attempt %s started (supervisor pid %s)", run.job_id, run.attempt, run.pid)

    # ---- internals: watching ---------------------------------------------------------

    def _watch(self, active: _ActiveRun) -> None:
        """Track the run; learn of the supervisor's exit at once through a pidfd where the
        platform has one (the poll loop catches it otherwise)."""
        self._active[active.job_id] = active
        active.exit_handle = process_group.open_exit_handle(active.pid)
        if active.exit_handle is not None:
            asyncio.get_running_loop().add_reader(active.exit_handle, self._on_supervisor_exit, active)

    def _on_supervisor_exit(self, active: _ActiveRun) -> None:
        self._close_exit_handle(active)  # readable for good now: one notice is enough
        self._check(active)

    def _close_exit_handle(self, active: _ActiveRun) -> None:
        if active.exit_handle is not None:
            asyncio.get_running_loop().remove_reader(active.exit_handle)
            os.close(active.exit_handle)
            active.exit_handle = None

    def _unwatch(self, active: _ActiveRun) -> None:
        self._close_exit_handle(active)
        if active.app_id_lookup:
            active.app_id_lookup.cancel()

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_interval)
            for active in list(self._active.values()):
                try:
                    self._check(active)
                except Exception:
                    log.exception("checking job %s failed", active.job_id)

    def _check(self, active: _ActiveRun) -> None:
        if active.process is not None:
            active.process.poll()  # reap our own child so it does not linger as a zombie
        status = read_exit_status(active.run_dir)
        running = status is None and process_group.is_alive(active.pid, active.pid_started)
        self._follow_log(active)
        if running:
            return
        if status is None:
            status = read_exit_status(active.run_dir)  # it may have written it as it exited
        if active.job_id in self._killing:
            return  # kill() records the end once no process of the group is left
        run = self.store.get_run(active.job_id, active.attempt)
        if run is not None:
            self._finish(run, status)

    def _follow_log(self, active: _ActiveRun) -> None:
        """Watch the driver log for the SparkContext being up."""
        if active.log_follower.poll().context_ready and not active.marked_running:
            self._mark_running(active)

    def _mark_running(self, active: _ActiveRun) -> None:
        """SparkContext is up: record the driver UI address and the app id if logged.

        Local-mode drivers never log their app id; their UI's REST API knows it, but its
        first call costs the starting driver a noticeable CPU burst, so it is asked only
        once the run has been going a while (or someone opens the UI).
        """
        active.marked_running = True
        run = self.store.get_run(active.job_id, active.attempt)
        if run is None or JobState(run.state).is_terminal:
            return
        if active.driver.ui_port is not None:
            # The driver binds SPARK_LOCAL_IP, which we set; the host a log line names is not trusted.
            run.spark_ui_url = f"http://{self.config.spark_local_ip}:{active.driver.ui_port}"
        run.spark_app_id = run.spark_app_id or active.driver.app_id
        run.state = JobState.running.value
        self._save_with_job(run, utcnow())
        if run.spark_app_id is None and run.spark_ui_url:
            active.app_id_lookup = asyncio.get_running_loop().create_task(
                self._ask_driver_for_app_id(active, run.spark_ui_url)
            )

    async def _ask_driver_for_app_id(self, active: _ActiveRun, ui_url: str) -> None:
        try:
            await asyncio.wait_for(active.app_id_wanted.wait(), self.config.app_id_lookup_delay)
        except asyncio.TimeoutError:
            pass
        for _ in range(10):
            if active.job_id not in self._active:
                return
            app_id = await asyncio.to_thread(driver_ui.application_id, ui_url)
            if app_id:
                run = self.store.get_run(active.job_id, active.attempt)
                if run is not None and run.spark_app_id is None:
                    run.spark_app_id = app_id
                    self._save_with_job(run, utcnow())
                return
            await asyncio.sleep(1.0)

    def _finish(self, run: RunRecord, status: dict | None) -> None:
        """Record how a run ended: exit status if the supervisor wrote one, else killed/lost."""
        if JobState(run.state).is_terminal:
            return
        exit_code = status.get("returncode") if status else None
        ended = datetime.fromtimestamp(status["ended_at"], timezone.utc).replace(tzinfo=None) if status else utcnow()
        if run.kill_requested:
            state = JobState.killed
        elif status is None:
            state = JobState.lost
            run.error = "the run's supervisor process vanished without recording an exit status"
            if run.pid and process_group.members(run.pid):
                process_group.signal_group(run.pid, signal.SIGKILL)  # no one is left to watch them
        elif exit_code == 0:
            state = JobState.succeeded
        else:
            state = JobState.failed
            run.error = driver_log.error_summary(self._log_tail(run), exit_code)
        self._end(run, state, exit_code, ended)

    def _end(self, run: RunRecord, state: JobState, exit_code: int | None, ended: datetime) -> None:
        run.state = state.value
        run.exit_code = exit_code
        run.finished_at = ended
        active = self._active.pop(run.job_id, None)
        if active:
            self._unwatch(active)
        self._save_with_job(run, utcnow())
        log.info("job %s attempt %s %s", run.job_id, run.attempt, state.value)
        self._start_queued()

    def _log_tail(self, run: RunRecord) -> str:
        return "\n".join(read_tail(os.path.join(run.run_dir, LOG_FILE), ERROR_SCAN_LINES, final=True).lines)

    @staticmethod
    async def _wait_group_exit(pgid: int, timeout: float, active: _ActiveRun | None) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if active is not None and active.process is not None:
                active.process.poll()  # our own supervisor would otherwise stay a zombie member
            if not process_group.members(pgid):
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.1)

    # ---- internals: records and events ----------------------------------------------

    def _require(self, job_id: str) -> JobRecord:
        job = self.store.get_job(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id!r}")
        return job

    def _save_with_job(self, run: RunRecord, now: datetime) -> None:
        self.store.save_run(run, now=now)
        self._publish(run.job_id)

    def _publish(self, job_id: str) -> None:
        job = self.store.get_job(job_id)
        if job is not None:
            self.hub.publish("job_update", job_view(job, detail=False).model_dump(mode="json"))
