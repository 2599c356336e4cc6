"""A job's input objects: checked at submit, downloaded into each run's folder before it starts.

Every run gets two folders beside its log, whatever its backend, named in its environment:

    <run folder>/inputs   DATAHARBOUR_INPUT_DIR: the job's `inputs`, each at its `as` path
    <run folder>/output   DATAHARBOUR_OUTPUT_DIR: empty; what the program writes there is
                          archived with its log once the run ends (services/job_artifacts.py)

Both are absolute paths: the program's working directory stays the Jupyter root (a notebook
job's, its notebook's folder). Staging runs in the engine's prepare thread while the run is
`starting`, streams each object to disk, and fails the run before Spark starts when an object
is missing, too large, or the disk too full, with the reason.
"""

import os
import posixpath
import shutil
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from ..errors import DataHarbourError, InvalidInput
from ..models import INPUT_DIR_VARIABLE, OUTPUT_DIR_VARIABLE, JobInput
from ..runs import folder
from ..runs.backend import LaunchError
from ..store import JobRecord, RunRecord
from .object_storage import ObjectStorage, parse_uri

INPUT_DIR = "inputs"
OUTPUT_DIR = "output"


class StagingCancelled(LaunchError):
    """The run was killed while its inputs were downloading."""


def run_folders(run_dir: str) -> tuple[Path, Path]:
    base = Path(os.path.abspath(run_dir))
    return base / INPUT_DIR, base / OUTPUT_DIR


def _too_large(total: int, limit: int) -> str:
    return (f"the inputs hold {total} bytes, more than the limit of {limit} bytes "
            "(DataHarbourApp.max_input_bytes)")


class JobInputs:
    def __init__(self, storage: ObjectStorage | None, config):
        self.storage = storage
        self.config = config  # the job service's: max_input_bytes may change while it runs

    # ---- at submit -------------------------------------------------------------------

    def check(self, inputs: list[JobInput]) -> list[dict]:
        """The inputs as stored with the job, `as` filled in; 400 naming `inputs[i]` for what cannot be staged."""
        if not inputs:
            return []
        if self.storage is None or not self.storage.configured:
            raise InvalidInput("inputs", "object storage is not configured: set MINIO_ENDPOINT (and "
                                         "MINIO_ACCESS_KEY, MINIO_SECRET_KEY) to give jobs input objects")
        stored: list[dict] = []
        taken: dict[str, int] = {}  # every path an input occupies (and its folders), by input index
        for index, item in enumerate(inputs):
            field = f"inputs[{index}]"
            _bucket, key = parse_uri(item.uri, f"{field}.uri")
            path = item.as_ or posixpath.basename(key.rstrip("/"))
            if not path or path in (".", ".."):
                raise InvalidInput(f"{field}.as", f"the key {key!r} names no file: give the input an `as` path")
            parts = path.split("/")
            folders = ["/".join(parts[:i]) for i in range(1, len(parts))]
            for other_path in (path, *folders):
                if other_path in taken:
                    raise InvalidInput(field, f"its path {path!r} collides with inputs[{taken[other_path]}]")
            if any(known.startswith(path + "/") for known in taken):
                raise InvalidInput(field, f"its path {path!r} is a folder of another input")
            taken[path] = index
            for name in folders:
                taken.setdefault(name, index)
            stored.append({"uri": item.uri, "as": path})
        return stored

    # ---- before a run starts (blocking: the engine's prepare thread) ------------------

    def stage(self, job: JobRecord, run: RunRecord, cancelled: threading.Event) -> JobRecord:
        """Make the run's input and output folders, download its inputs, and return the job as
        its backend should run it: with DATAHARBOUR_INPUT_DIR and DATAHARBOUR_OUTPUT_DIR."""
        input_dir, output_dir = run_folders(run.run_dir)
        try:
            folder.create(run.run_dir)
            for path in (input_dir, output_dir):  # a launch of this run before a server restart left them
                shutil.rmtree(path, ignore_errors=True)
                path.mkdir(mode=folder.FOLDER_MODE)
            if job.inputs:
                self._download_all(job.inputs, input_dir, cancelled)
        except OSError as error:
            raise LaunchError(f"cannot write the run folder {run.run_dir}: {error.strerror or error}") from None
        env = {**job.env, INPUT_DIR_VARIABLE: str(input_dir), OUTPUT_DIR_VARIABLE: str(output_dir)}
        return replace(job, env=env)

    def _download_all(self, inputs: list[dict], input_dir: Path, cancelled: threading.Event) -> None:
        storage = self.storage
        if storage is None or not storage.configured:
            raise LaunchError("the job has inputs, but object storage is not configured on this server")
        limit = self.config.max_input_bytes
        sizes = []
        for item in inputs:  # every size first: a job over its limit fails before a byte is written
            with self._errors(item["uri"]):
                bucket, key = parse_uri(item["uri"])
                sizes.append(storage.client.stat_object(bucket, key).size or 0)
        total = sum(sizes)
        if total > limit:
            raise LaunchError(_too_large(total, limit))
        free = shutil.disk_usage(input_dir).free
        if total > free:
            raise LaunchError(f"the inputs hold {total} bytes; the disk of {input_dir} has {free} bytes free")
        written = 0
        for item in inputs:
            if cancelled.is_set():
                raise StagingCancelled("the run was killed while its inputs were downloading")
            written += self._download(item, input_dir, limit - written, cancelled)

    def _download(self, item: dict, input_dir: Path, room: int, cancelled: threading.Event) -> int:
        """One object streamed to `<input_dir>/<as>` (a partial file renamed into place)."""
        bucket, key = parse_uri(item["uri"])  # checked at submit and by _download_all
        target = input_dir / item["as"]
        if not os.path.realpath(target).startswith(os.path.realpath(input_dir) + os.sep):
            raise LaunchError(f"input {item['uri']}: its path {item['as']!r} leads out of the input folder")
        target.parent.mkdir(mode=folder.FOLDER_MODE, parents=True, exist_ok=True)

        def before_chunk(written: int) -> None:
            if cancelled.is_set():
                raise StagingCancelled("the run was killed while its inputs were downloading")
            if written > room:  # it grew since it was looked at
                raise LaunchError(f"input {item['uri']}: it grew past the limit of "
                                  f"{self.config.max_input_bytes} bytes (DataHarbourApp.max_input_bytes)")

        with self._errors(item["uri"]):
            return self.storage.download_file(bucket, key, target, before_chunk)

    @contextmanager
    def _errors(self, uri: str):
        """The storage's errors about `uri` as the LaunchError the run fails with."""
        try:
            with self.storage.errors(f"input {uri}"):
                yield
        except DataHarbourError as error:
            raise LaunchError(error.message) from None
