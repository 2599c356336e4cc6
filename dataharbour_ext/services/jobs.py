"""JobService: the jobs API's commands and queries, and the events they publish.

A job is a record; each execution of it is a run (attempt 1, 2, ...). Running them is the
RunEngine's business (admission, launch, supervision, settling); this service validates
what users ask, records it, answers queries from the store and run folders (in threads,
never on the event loop), and publishes every state change on the EventHub.
"""

import asyncio
import functools
import logging
import os
import posixpath
import shutil
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import Conflict, Gone, InvalidInput, NotFound, ServiceUnavailable
from ..events import EventHub, job_topics
from ..json_body import model_json_item_by_item
from ..models import (
    NOTEBOOK_SUFFIX,
    Job,
    JobList,
    JobQuery,
    JobState,
    JobSubmit,
    JobSummary,
    LogPage,
    LogQuery,
    OutputQuery,
)
from ..runs.backend import NOTEBOOK_BACKEND, RunBackend
from ..runs.ports import PortScans
from ..store import JobRecord, JobStore, RunRecord
from ..store.log_files import read_page, read_tail
from . import job_notebooks
from .clock import utcnow
from .clusters import Cluster, ClusterService
from .job_artifacts import NOTEBOOK_ARTIFACT, ArchiveConfig, ArtifactDownload, JobArtifacts
from .job_inputs import JobInputs
from .job_modes import JobModes
from .job_retention import JobRetention
from .job_sources import JobSources
from .job_states import ACTIVE, TERMINAL
from .job_views import job_summary_view, job_view
from .notebooks import NotebookService
from .object_storage import ObjectStorage
from .run_engine import EngineConfig, RunEngine

log = logging.getLogger("dataharbour_ext.jobs")


@dataclass
class JobServiceConfig(EngineConfig):
    root_dir: str = "."
    runs_dir: str = "runs"
    max_code_bytes: int = 1024 * 1024
    max_name_length: int = 200
    job_retention_days: float = 0.0  # 0: keep finished jobs for ever
    max_input_bytes: int = 10 * 1024**3  # a job's input objects together
    keep_archives_of_deleted_jobs: bool = False
    run_folder_retention_days: float = 0.0  # 0: keep run folders as long as their jobs


STARTUP_WAIT_SECONDS = 30.0


def after_start(method):
    """Jupyter serves requests before extensions have started: answer only once runs left
    by an earlier server have been settled or re-attached, never with their stale state."""

    @functools.wraps(method)
    async def wrapper(self: "JobService", *args, **kwargs):
        if not self._started.is_set():
            try:
                await asyncio.wait_for(self._started.wait(), STARTUP_WAIT_SECONDS)
            except asyncio.TimeoutError:
                raise ServiceUnavailable("DataHarbour is still starting; try again in a moment") from None
        return await method(self, *args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class JobOutput:
    body: bytes
    content_type: str
    filename: str


@dataclass
class LiveUi:
    job_id: str
    attempt: int
    state: JobState
    url: str
    spark_app_id: str | None


class JobService:
    def __init__(
        self,
        store: JobStore,
        clusters: ClusterService,
        hub: EventHub,
        contents_manager,
        config: JobServiceConfig,
        backends: dict[str, RunBackend],
        modes: JobModes | None = None,
        notebooks: NotebookService | None = None,
        object_storage: ObjectStorage | None = None,
        archive: ArchiveConfig | None = None,
    ):
        self.modes = modes or JobModes()
        self.sources = JobSources(contents_manager, notebooks, config)
        self.inputs = JobInputs(object_storage, config)
        self.artifacts = JobArtifacts(object_storage, store, backends, config.runs_dir, self._publish, archive)
        self.store = store
        self.clusters = clusters
        self.hub = hub
        self.contents_manager = contents_manager
        self.config = config
        self.backends = backends
        # One config object: a change to the limits (tests, a future settings API) reaches the engine.
        self.engine = RunEngine(store, clusters, backends, config, self._publish, self._publish_progress,
                                stage=self.inputs.stage, on_end=self.artifacts.archive_soon,
                                end_values=self.artifacts.end_values)
        self._killing: set[str] = set()  # jobs whose kill waits for the run's processes to end
        self.retention = JobRetention(store, config, self.delete, self.engine.owner)
        self._started = asyncio.Event()
        # CPU work (log pages, views of long lists) on one thread: every extra busy thread is
        # one more contender for the GIL that Jupyter's event loop needs back after each
        # system call.
        self._cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataharbour-render")
        self._port_scans = PortScans(self._on_cpu_thread)  # a driver UI's port, one scan at a time per run

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.engine.start()
        finally:
            self._started.set()
        self.artifacts.start(self.engine.owner)
        self.retention.start()

    async def stop(self) -> None:
        """Stop watching. Runs keep going; the next start re-attaches to them."""
        self.retention.stop()
        await self.engine.stop()
        await self.artifacts.stop()
        self._cpu.shutdown(wait=False)

    async def kill_all(self) -> None:
        """Kill every queued and active job (tests, and shutdown hooks that ask for it)."""
        for run in await self.store.runs_in_states(["queued", *ACTIVE]):
            try:
                await self.kill(run.job_id)
            except Conflict:
                pass

    # ---- queries ---------------------------------------------------------------------

    @after_start
    async def get(self, job_id: str) -> Job:
        return job_view(await self._require(job_id), self.engine.live_progress(job_id))

    @after_start
    async def list(self, query: JobQuery) -> JobList:
        records, total = await self.store.list_jobs(
            states=[s.value for s in query.state] if query.state else None,
            cluster_id=query.cluster_id,
            name=query.name,
            sort=query.sort.value,
            descending=query.order == "desc",
            limit=query.limit,
            offset=query.offset,
        )
        # Building a thousand views is CPU work: a thread, which yields the GIL between them.
        jobs = await self._on_cpu_thread(self.summary_views, records)
        return JobList(jobs=jobs, total=total, limit=query.limit, offset=query.offset)

    def summary_views(self, records: Iterable[JobRecord]) -> "list[JobSummary]":  # `list` is a method here
        """Job summaries as the job list shows them, with the live progress of running jobs."""
        live = self.engine.live_progress
        return [job_summary_view(record, live(record.id)) for record in records]

    async def list_json(self, query: JobQuery) -> bytes:
        """`list` as JSON, serialized on the same thread, one job at a time."""
        return await self._on_cpu_thread(model_json_item_by_item, await self.list(query), "jobs")

    @after_start
    async def logs(self, job_id: str, query: LogQuery) -> LogPage:
        job = await self._require(job_id, detail=False)
        attempt = query.attempt or job.attempt
        run = await self.store.get_run(job_id, attempt)
        if run is None:
            raise NotFound(f"job {job_id} has no attempt {attempt} (latest is {job.attempt})")
        path = self._backend(run).log_path(run.run_dir, query.stream)
        final = JobState(run.state).is_terminal
        if final and query.stream == "all" and run.artifacts and not await asyncio.to_thread(os.path.exists, path):
            path = await self.artifacts.archived_copy(run) or path  # its run folder is gone: the archived copy
        if query.before is not None and not query.tail:
            raise InvalidInput("before", "goes with tail: the last N lines before that offset")
        if query.tail:
            part = await self._on_cpu_thread(read_tail, path, query.tail, final=final, before=query.before)
        else:
            part = await self._on_cpu_thread(read_page, path, query.offset, query.limit, final=final)
        return LogPage(
            job_id=job_id,
            attempt=attempt,
            stream=query.stream,
            offset=part.offset,
            next_offset=part.next_offset,
            size=part.size,
            lines=part.lines,
            complete=final and part.next_offset >= part.size,
        )

    @after_start
    async def live_ui(self, job_id: str) -> LiveUi:
        """The driver UI of the job's current run, or why there is none."""
        job = await self._require(job_id, detail=False)
        state = JobState(job.state)
        if state.is_terminal:
            raise Gone(f"job {job_id} has {state.value}; its driver UI ended with it")
        watched = self.engine.watched(job_id)
        if watched is None or state is not JobState.running:
            raise Conflict(f"job {job_id} is {state.value}; its driver UI is not up yet")
        signals = await self._on_cpu_thread(watched.backend.signals, watched.run.run_dir)
        if signals.ui_stopped:
            raise Gone(f"job {job_id} has stopped its SparkContext and driver UI")
        run = await self.store.get_run(job_id, job.attempt)
        if run.spark_ui_url is None or signals.ui_port is None:
            raise Gone(f"job {job_id} runs without a driver UI (spark.ui.enabled is false)")
        # The port comes from a file the program could write too: proxy to it only if the
        # run's own processes really listen there.
        ports = await self._port_scans.of(watched.supervised.identity)
        if signals.ui_port not in ports:
            raise Conflict(f"job {job_id}: no process of the run listens on the driver UI port")
        return LiveUi(job_id, job.attempt, state, run.spark_ui_url, run.spark_app_id)

    @after_start
    async def output(self, job_id: str, query: OutputQuery) -> JobOutput:
        """A notebook job's executed notebook (as it is so far while the run goes on)."""
        job = await self._require(job_id, detail=False)
        if not job.notebook:
            raise NotFound(f"job {job_id} is not a notebook job: its output is its log")
        attempt = query.attempt or job.attempt
        run = await self.store.get_run(job_id, attempt)
        if run is None:
            raise NotFound(f"job {job_id} has no attempt {attempt} (latest is {job.attempt})")
        path = self._backend(run).output_path(run.run_dir)
        body = await self._on_cpu_thread(job_notebooks.executed_notebook, path, query.format)
        if body is None and JobState(run.state).is_terminal and (archived := await self.artifacts.archived_copy(
                run, NOTEBOOK_ARTIFACT)):  # its run folder was removed: the archived notebook
            body = await self._on_cpu_thread(job_notebooks.executed_notebook, archived, query.format)
        if body is None:
            if JobState(run.state).is_terminal:
                raise NotFound(f"job {job_id} attempt {attempt} {run.state} before its notebook started running")
            raise Conflict(f"job {job_id} attempt {attempt} is {run.state}: its notebook has not started yet")
        extension, content_type = job_notebooks.OUTPUT_TYPES[query.format]
        stem = posixpath.basename(job.notebook["path"]).removesuffix(NOTEBOOK_SUFFIX)
        return JobOutput(body, content_type, f"{stem}.{job_id[:8]}-{attempt}.{extension}")

    @after_start
    async def artifact(self, job_id: str, name: str, attempt: int | None) -> ArtifactDownload:
        """A file of a run archived in the object storage, streamed from there."""
        job = await self._require(job_id, detail=False)
        attempt = attempt or job.attempt
        run = await self.store.get_run(job_id, attempt)
        if run is None:
            raise NotFound(f"job {job_id} has no attempt {attempt} (latest is {job.attempt})")
        return await self.artifacts.download(run, name)

    # ---- commands --------------------------------------------------------------------

    @after_start
    async def submit(self, request: JobSubmit) -> Job:
        cluster = self.clusters.require(request.cluster_id)
        if len(request.name) > self.config.max_name_length:
            raise InvalidInput("name", f"must be at most {self.config.max_name_length} characters")
        code, notebook = await self.sources.resolve(request)
        inputs = self.inputs.check(request.inputs)
        now = utcnow()
        job = JobRecord(
            id=uuid.uuid4().hex,
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
            log_level=request.log_level,
            mode=request.mode,
            notebook=notebook,
            inputs=inputs,
        )
        run = self._new_run(job, 1, now, cluster)
        await self.store.add_job(job, run)
        job.runs = [run]
        # Answer and announce from the record just written: no second trip to the store.
        self.hub.publish("job_update", job_summary_view(job).model_dump(mode="json"), job_topics(job.id))
        self.engine.request_admission()
        return job_view(job)

    @after_start
    async def restart(self, job_id: str) -> Job:
        job = await self._require(job_id, detail=False)
        state = JobState(job.state)
        if not state.is_terminal:
            raise Conflict(f"job {job_id} is {state.value}; kill it before restarting")
        now = utcnow()
        cluster = self.clusters.get(job.cluster_id)
        if cluster is None:
            raise Conflict(f"job {job_id} ran on cluster {job.cluster_id}, which no longer exists")
        run = self._new_run(job, job.attempt + 1, now, cluster)
        if not await self.store.new_attempt(job_id, job.attempt, run, from_states=TERMINAL, now=now):
            raise Conflict(f"job {job_id} was restarted or changed by another request; try again")
        await self._publish(job_id)
        self.engine.request_admission()
        return await self.get(job_id)

    @after_start
    async def kill(self, job_id: str) -> Job:
        """Stop the run's whole process tree (SIGTERM, SIGKILL after the grace period).

        Returns once no process of the run is left, with the job in state `killed` (or the
        state the run reached on its own if it ended first).
        """
        job = await self._require(job_id, detail=False)
        state = JobState(job.state)
        if state.is_terminal:
            raise Conflict(f"job {job_id} has already been {state.value}" if state is JobState.killed
                           else f"job {job_id} has already {state.value}")
        if job_id in self._killing:
            raise Conflict(f"job {job_id} is already being killed")
        run = await self.store.get_run(job_id, job.attempt)
        self._killing.add(job_id)
        try:
            await self.engine.cancel(run)
        finally:
            self._killing.discard(job_id)
        return await self.get(job_id)

    @after_start
    async def delete(self, job_id: str, *, force: bool = False) -> None:
        """Remove a finished job, its runs and their folders; `force` kills it first."""
        job = await self._require(job_id, detail=False)
        if not JobState(job.state).is_terminal:
            if not force:
                raise Conflict(f"job {job_id} is {job.state}; kill it first or delete with ?force=true")
            try:
                await self.kill(job_id)
            except Conflict:
                pass  # it ended meanwhile, or another request is killing it
            job = await self._require(job_id, detail=False)
        if not await self.store.delete_job(job_id, from_states=TERMINAL):
            raise Conflict(f"job {job_id} is {job.state}; it can be deleted once it has ended")
        self.artifacts.forget(job_id, delete_archive=not self.config.keep_archives_of_deleted_jobs)
        await asyncio.to_thread(shutil.rmtree, os.path.join(self.config.runs_dir, job_id), True)
        self.hub.publish("job_deleted", {"id": job_id}, job_topics(job_id))
        log.info("DataHarbour: job %s deleted", job_id)

    # ---- internals -------------------------------------------------------------------

    async def _on_cpu_thread(self, function, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self._cpu, functools.partial(function, *args, **kwargs))

    def _new_run(self, job: JobRecord, attempt: int, now, cluster: Cluster) -> RunRecord:
        return RunRecord(
            job_id=job.id,
            attempt=attempt,
            cluster_id=job.cluster_id,
            state=JobState.queued.value,
            run_dir=os.path.join(self.config.runs_dir, job.id, str(attempt)),
            queued_at=now,
            backend=NOTEBOOK_BACKEND if job.notebook else self.modes.backend_for(job.mode, cluster, job.conf),
        )

    def _backend(self, run: RunRecord) -> RunBackend:
        backend = self.backends.get(run.backend)
        if backend is None:
            raise Conflict(f"job {run.job_id} ran on backend {run.backend!r}, which this server does not have")
        return backend

    async def _require(self, job_id: str, *, detail: bool = True) -> JobRecord:
        job = await self.store.get_job(job_id, detail=detail)
        if job is None:
            raise NotFound(f"no job with id {job_id!r}")
        return job

    async def _publish(self, job_id: str) -> None:
        job = await self.store.get_job(job_id, detail=False)
        if job is not None:
            view = job_summary_view(job, self.engine.live_progress(job_id))
            self.hub.publish("job_update", view.model_dump(mode="json"), job_topics(job.id))

    def _publish_progress(self, job_id: str, progress: dict) -> None:
        self.hub.publish("job_progress", {"job_id": job_id, **progress}, job_topics(job_id))

