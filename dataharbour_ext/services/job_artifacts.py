"""A run's files archived in the object storage once it ended, and read back from there.

When a run ends (any terminal state), a background task uploads, under
`s3://<MINIO_BUCKET_NAME>/jobs/<job id>/<attempt>/`:

    output.log      the run's log
    output.ipynb    a notebook job's executed notebook
    output/<path>   what the program wrote in DATAHARBOUR_OUTPUT_DIR (regular files; symbolic
                    links are not followed)

and records them on the run (`artifacts`), or why it could not (`artifacts_error`). The job's
end state never waits for it, but records that the archive is pending: a server that stops
before it is done leaves the run to the next server started on its host (the run folder is
on that host), which archives it at its start or within `resume_interval`. Each file is
tried a few times with a growing pause; a failure that outlasts them stops the upload. Only
with object storage and MINIO_BUCKET_NAME configured; the bucket is not created here (a
missing one is the storage's setup to fix, and the monitoring page says so): the upload
fails with that reason.

Archived files are downloaded through the API, streamed from the storage in chunks on a
thread; a run whose log is gone from its folder is read from its archived log, restored
beside the job's run folders on first read. Deleting a job deletes its archive too, unless
the server is told to keep them.
"""

import asyncio
import logging
import mimetypes
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from minio.deleteobjects import DeleteObject

from ..errors import DataHarbourError, NotFound, ServiceUnavailable
from ..runs import folder
from ..store import JobStore, Owner, RunRecord
from .clock import utcnow
from .job_inputs import OUTPUT_DIR
from .object_storage import ObjectStorage, StorageNotConfigured, check_key, parse_uri
from .run_engine import owner_is_gone

log = logging.getLogger("dataharbour_ext.jobs")

LOG_ARTIFACT = "output.log"
NOTEBOOK_ARTIFACT = "output.ipynb"
ARCHIVE_PREFIX = "jobs"
MAX_FILES = 1000  # output files archived per run
CHUNK_BYTES = 1024 * 1024
DELETION_GRACE_SECONDS = 5.0  # a stopping server waits this long for archives being deleted
CONCURRENT_UPLOADS = 2  # runs archived at once: uploads are I/O, but each holds a thread
ARCHIVED_LOGS = "archived"  # <runs_dir>/<job id>/archived/<attempt>/<name>: files read back from the archive
CONTENT_TYPES = {LOG_ARTIFACT: "text/plain; charset=utf-8", NOTEBOOK_ARTIFACT: "application/x-ipynb+json"}


@dataclass(frozen=True)
class ArchiveConfig:
    attempts: int = 3  # per file
    first_pause: float = 1.0  # seconds before the second attempt; doubled for each further one
    resume_interval: float = 300.0  # seconds between two looks for runs a stopped server left unarchived


@dataclass
class ArtifactDownload:
    """An archived file being read from the storage: `chunks()` one at a time, then `close()`."""

    name: str
    size: int | None
    content_type: str
    response: object  # the SDK's urllib3 response
    storage: ObjectStorage

    async def chunks(self) -> AsyncIterator[bytes]:
        stream = self.response.stream(CHUNK_BYTES)
        while True:
            with self.storage.errors(f"artifact {self.name}"):
                chunk = await self.storage.run(next, stream, None)
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        self.response.close()
        self.response.release_conn()


def archive_key(job_id: str, attempt: int, name: str) -> str:
    return f"{ARCHIVE_PREFIX}/{job_id}/{attempt}/{name}"


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(name) or mimetypes.guess_type(name)[0] or "application/octet-stream"


class JobArtifacts:
    def __init__(self, storage: ObjectStorage | None, store: JobStore, backends: dict, runs_dir: str,
                 on_change: Callable[[str], Awaitable[None]], config: ArchiveConfig | None = None):
        self.storage = storage
        self.store = store
        self.backends = backends
        self.runs_dir = runs_dir
        self.on_change = on_change
        self.config = config or ArchiveConfig()
        self._tasks: dict[tuple[str, int], asyncio.Task] = {}  # by (job id, attempt)
        self._resumer: asyncio.Task | None = None
        self._forgotten: set[str] = set()  # deleted jobs whose archiving stops before its next file
        self._deletions: set[asyncio.Task] = set()  # deleted jobs' archives being deleted
        self._slots = asyncio.Semaphore(CONCURRENT_UPLOADS)
        self._fetching: dict[str, asyncio.Lock] = {}  # archived logs being fetched, by local path

    @property
    def enabled(self) -> bool:
        return self.storage is not None and self.storage.configured and bool(self.storage.default_bucket)

    # ---- archiving -------------------------------------------------------------------

    def end_values(self, run: RunRecord) -> dict:
        """What a run's end records, in the same write: that its files are to be archived."""
        return {"archive_pending": True} if self.enabled and run.run_dir else {}

    def archive_soon(self, run: RunRecord) -> None:
        """The run has ended: archive its files in the background (on the event loop)."""
        key = (run.job_id, run.attempt)
        if not self.enabled or not run.run_dir or not run.archive_pending or key in self._tasks:
            return
        task = asyncio.create_task(self._archive(run), name=f"dataharbour-archive-{run.job_id}-{run.attempt}")
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))

    def start(self, me: Owner) -> None:
        """Archive, now and every `resume_interval`, what servers that stopped left pending."""
        if self.enabled:
            self._resumer = asyncio.create_task(self._resume_loop(me), name="dataharbour-archive-resume")

    async def stop(self) -> None:
        """Stop uploading (the server stops): runs not archived yet stay pending for the next
        start. Deleted jobs' archives get a few seconds to be deleted: nothing records them."""
        if self._deletions:
            await asyncio.wait(list(self._deletions), timeout=DELETION_GRACE_SECONDS)
        tasks = [*self._tasks.values(), *self._deletions, *([self._resumer] if self._resumer else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def forget(self, job_id: str, *, delete_archive: bool) -> None:
        """The job is deleted: its archiving stops before its next file, then (when asked) its
        archive is deleted, in the background; after the upload under way, so none is left."""
        archiving = [task for (task_job, _attempt), task in self._tasks.items() if task_job == job_id]
        if not archiving and not (self.enabled and delete_archive):
            return
        self._forgotten.add(job_id)
        task = asyncio.create_task(self._after_delete(job_id, archiving, self.enabled and delete_archive),
                                   name=f"dataharbour-archive-delete-{job_id}")
        self._deletions.add(task)
        task.add_done_callback(self._deletions.discard)

    async def _after_delete(self, job_id: str, archiving: list[asyncio.Task], delete_archive: bool) -> None:
        try:
            await asyncio.gather(*archiving, return_exceptions=True)
            if delete_archive:
                await self._delete_archive(job_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("DataHarbour: deleting the archive of job %s failed", job_id)
        finally:
            self._forgotten.discard(job_id)

    async def _delete_archive(self, job_id: str) -> None:
        bucket, prefix = self.storage.default_bucket, f"{ARCHIVE_PREFIX}/{job_id}/"
        try:
            with self.storage.errors(f"deleting s3://{bucket}/{prefix}"):
                removed, failures = await self.storage.run(self._remove_prefix, bucket, prefix)
        except DataHarbourError as error:
            log.warning("DataHarbour: job %s is deleted but its archive is not: %s", job_id, error.message)
            return
        if failures:
            log.warning("DataHarbour: job %s is deleted but %d of its archived files are not, e.g. %s: %s",
                        job_id, len(failures), failures[0].name, failures[0].code)
        elif removed:
            log.info("DataHarbour: job %s: deleted its %d archived files", job_id, removed)

    def _remove_prefix(self, bucket: str, prefix: str) -> tuple[int, list]:
        """Every object under `prefix` through S3's multi-object delete: (how many, their failures). Blocking."""
        client = self.storage.client
        names = [DeleteObject(item.object_name) for item in client.list_objects(bucket, prefix, recursive=True)]
        failures = list(client.remove_objects(bucket, names))  # a lazy iterator: it deletes as it is read
        return len(names) - len(failures), failures

    async def _resume_loop(self, me: Owner) -> None:
        while True:
            try:
                await self.resume(me)
            except Exception:
                log.exception("DataHarbour: looking for runs left unarchived failed")
            await asyncio.sleep(self.config.resume_interval)

    async def resume(self, me: Owner) -> int:
        """Archive the pending runs of servers on this host that stopped first; returns how
        many were started. This server's own are being archived (or failed to record it)."""
        started = 0
        for run in await self.store.runs_to_archive(me.host):
            if run.owner is not None and run.owner.instance == me.instance:
                continue
            if not owner_is_gone(run.owner, me):
                continue  # its server on this host is alive: its runs are its own to archive
            previous = run.owner.instance if run.owner else None
            if not await self.store.adopt(run.job_id, run.attempt, previous, me, now=utcnow()):
                continue  # another server on this host took it first
            self.archive_soon(run)
            started += 1
        return started

    async def _archive(self, run: RunRecord) -> None:
        try:
            async with self._slots:
                files, skipped = await asyncio.to_thread(self._files_of, run)
                if files is None:  # it never had a folder (killed or failed while queued), or it is gone
                    await self.store.update_run(run.job_id, run.attempt, archive_pending=False)
                    await self.on_change(run.job_id)  # no longer `archiving`
                    return
                artifacts, error = await self._upload_all(run, files)
            if skipped:
                note = f"{skipped} files of the output folder were not archived (more than {MAX_FILES} files, " \
                       "or names that are not valid UTF-8)"
                error = f"{error}; {note}" if error else note
            await self.store.update_run(run.job_id, run.attempt, artifacts=artifacts, artifacts_error=error,
                                        archive_pending=False)
            if error:
                log.warning("DataHarbour: job %s attempt %s: archiving its files: %s", run.job_id, run.attempt, error)
            await self.on_change(run.job_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("DataHarbour: archiving the files of job %s attempt %s failed", run.job_id, run.attempt)
            try:
                await self.store.update_run(run.job_id, run.attempt, archive_pending=False,
                                            artifacts_error="archiving the run's files failed unexpectedly "
                                                            "(the server's log has the details)")
                await self.on_change(run.job_id)
            except Exception:
                pass  # the store is failing too: the log above is all there is

    def _files_of(self, run: RunRecord) -> tuple[list[tuple[str, str]] | None, int]:
        """(name, path) of the run's files to archive, and how many output files were left out.
        Blocking: a walk of the output folder."""
        if not os.path.isdir(run.run_dir):
            return None, 0
        files: list[tuple[str, str]] = []
        backend = self.backends.get(run.backend)
        log_path = backend.log_path(run.run_dir) if backend else os.path.join(run.run_dir, folder.LOG_FILE)
        if os.path.isfile(log_path):
            files.append((LOG_ARTIFACT, log_path))
        output_path = getattr(backend, "output_path", None)
        if output_path is not None and os.path.isfile(output_path(run.run_dir)):
            files.append((NOTEBOOK_ARTIFACT, output_path(run.run_dir)))
        outputs = skipped = 0
        output_dir = os.path.join(run.run_dir, OUTPUT_DIR)
        for top, folders, names in os.walk(output_dir):  # never into linked folders
            folders.sort()
            for name in sorted(names):
                path = os.path.join(top, name)
                relative = os.path.relpath(path, output_dir).replace(os.sep, "/")
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                try:
                    check_key(archive_key(run.job_id, run.attempt, f"{OUTPUT_DIR}/{relative}"))
                except DataHarbourError:
                    skipped += 1
                    continue
                if outputs >= MAX_FILES:
                    skipped += 1
                    continue
                outputs += 1
                files.append((f"{OUTPUT_DIR}/{relative}", path))
        return files, skipped

    async def _upload_all(self, run: RunRecord, files: list[tuple[str, str]]) -> tuple[list[dict], str | None]:
        bucket = self.storage.default_bucket
        artifacts: list[dict] = []
        for name, path in files:
            if run.job_id in self._forgotten:
                return artifacts, "the job was deleted while its files were being archived"
            key = archive_key(run.job_id, run.attempt, name)
            pause = self.config.first_pause
            for attempt in range(1, self.config.attempts + 1):
                try:
                    size = await self.storage.run(self._upload, bucket, key, path, name)
                    break
                except DataHarbourError as error:
                    if attempt == self.config.attempts or isinstance(error, NotFound):  # a missing bucket stays so
                        tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                        return artifacts, f"{error.message}{tries}"
                except OSError as error:  # the file went away (the job was deleted meanwhile)
                    return artifacts, f"cannot read {name}: {error.strerror or error}"
                await asyncio.sleep(pause)
                pause *= 2
            artifacts.append({"name": name, "uri": f"s3://{bucket}/{key}", "size": size})
        return artifacts, None

    def _upload(self, bucket: str, key: str, path: str, name: str) -> int:
        """One file (multipart when large, streamed from disk). Blocking."""
        size = os.path.getsize(path)
        with self.storage.errors(f"uploading {name} to s3://{bucket}/{key}"):
            self.storage.client.fput_object(bucket, key, path, content_type=content_type(name),
                                            num_parallel_uploads=1)
        return size

    # ---- reading back ----------------------------------------------------------------

    async def download(self, run: RunRecord, name: str) -> ArtifactDownload:
        """An archived file of the run, streamed from the storage chunk by chunk."""
        artifact = _find(run, name)
        if self.storage is None or not self.storage.configured:
            raise StorageNotConfigured()
        bucket, key = parse_uri(artifact["uri"])
        with self.storage.errors(f"artifact {name}"):
            response = await self.storage.run(self.storage.client.get_object, bucket, key)
        length = response.headers.get("Content-Length")
        return ArtifactDownload(name, int(length) if length and length.isdigit() else None, content_type(name),
                                response, self.storage)

    async def archived_copy(self, run: RunRecord, name: str = LOG_ARTIFACT) -> str | None:
        """The local copy of an archived file of the run (its log, a notebook job's executed
        notebook; fetched on first use), or None if the run has no such file archived."""
        if not any(a.get("name") == name for a in run.artifacts or () if isinstance(a, dict)):
            return None
        if self.storage is None or not self.storage.configured:
            return None
        path = Path(self.runs_dir) / run.job_id / ARCHIVED_LOGS / str(run.attempt) / name
        # One fetch at a time per file: readers arriving meanwhile wait for it, then read the copy.
        async with self._fetching.setdefault(str(path), asyncio.Lock()):
            if not await asyncio.to_thread(path.exists):
                bucket, key = parse_uri(_find(run, name)["uri"])
                try:
                    with self.storage.errors(f"the archived {name}"):
                        await self.storage.run(self._fetch, bucket, key, path)
                except OSError as error:
                    raise ServiceUnavailable(f"the archived {name} could not be stored locally: "
                                             f"{error.strerror or error}") from None  # fmt: skip
        return str(path)

    def _fetch(self, bucket: str, key: str, path: Path) -> None:
        folder.create(path.parent)
        self.storage.download_file(bucket, key, path)


def _find(run: RunRecord, name: str) -> dict:
    if run.artifacts is None:
        why = f": {run.artifacts_error}" if run.artifacts_error else " (yet)"
        raise NotFound(f"job {run.job_id} attempt {run.attempt} has no archived files{why}")
    for artifact in run.artifacts:
        if isinstance(artifact, dict) and artifact.get("name") == name and isinstance(artifact.get("uri"), str):
            return artifact
    failed = f" (archiving failed: {run.artifacts_error})" if run.artifacts_error else ""
    raise NotFound(f"job {run.job_id} attempt {run.attempt} has no archived file {name!r}{failed}")
