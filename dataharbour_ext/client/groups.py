"""Every REST route of the API, once: each method describes its call (calls.Call) and hands it
to `run`, which the blocking client executes at once and the async client returns as an
awaitable. So `client.jobs.get(id)` is a Job, and `await client.jobs.get(id)` is one in the
async client.

Requests take the server's pydantic request model, a dict, or keyword arguments; they are
validated here (a pydantic ValidationError for a bad argument) and only the fields given are
sent. Answers are validated into the server's response models."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from ..models import (
    DEFAULT_PRESIGN_SECONDS,
    ArtifactQuery,
    BucketList,
    Cell,
    CellCreate,
    CellExecuteRequest,
    CellExecution,
    ClusterCreate,
    ClusterDeleteQuery,
    ClusterInfo,
    ClusterList,
    DashboardOverview,
    DashboardStats,
    DashboardTrends,
    DeleteQuery,
    ExportQuery,
    ExternalClusterCreate,
    Job,
    JobList,
    JobQuery,
    JobSubmit,
    LogPage,
    LogQuery,
    MetricsHistory,
    MetricsHistoryQuery,
    MetricsSample,
    MonitoringOverview,
    Notebook,
    NotebookCreate,
    NotebookImport,
    NotebookList,
    NotebookQuery,
    NotebookSummary,
    NotebookUpdate,
    ObjectList,
    ObjectQuery,
    OutputQuery,
    PresignedUrl,
    PresignRequest,
    ServiceList,
    ServiceLogs,
    ServiceLogsQuery,
    SparkUi,
    StandaloneClusterCreate,
    StoredObject,
    TrendsQuery,
)
from .calls import BYTES, JSON, Call, as_model, body_data, query_params
from .transfer import UploadBody

# A cell execute answers when the cell ends: the HTTP wait is the cell's timeout plus this.
# Without a timeout the server's own (`cell_timeout`, 60 s by default) applies; the client
# does not know it, so it waits up to DEFAULT_CELL_WAIT.
CELL_ANSWER_MARGIN = 30.0
DEFAULT_CELL_WAIT = 600.0


def segment(value: str) -> str:
    """An id as one path segment."""
    return quote(str(value), safe="")


def key_path(key: str) -> str:
    """An object key (or an artifact name) as path segments: each part escaped, its slashes kept.
    `.` and `..` segments are refused, as the server does: HTTP clients fold them away, so the
    request would name another object."""
    parts = str(key).split("/")
    if any(part in (".", "..") for part in parts):
        raise ValueError(f"{key!r}: an object key with `.` or `..` path segments cannot be named over HTTP")
    return "/".join(quote(part, safe="") for part in parts)


def query(model_class: type[BaseModel], **values: Any) -> list[tuple[str, str]]:
    """Query parameters from keyword arguments; None means "the server's default"."""
    return query_params(model_class.model_validate({k: v for k, v in values.items() if v is not None}))


class Group:
    def __init__(self, run: Callable[[Call], Any]):
        self._run = run


class Jobs(Group):
    """`/api/v1/jobs/`: submit, list, read, kill, restart and delete jobs, their logs and outputs."""

    def submit(self, request: JobSubmit | Mapping | None = None, /, **fields: Any) -> Job:
        """Submit a job (202): `name` and one of `code`, `file` (a .py or .ipynb path under the
        Jupyter root) or `notebook` (an id or path, with `parameters`); optional `cluster_id`,
        `args`, `conf`, `env`, `mode`, `log_level`, `kernel_name`. Never retried."""
        body = body_data(as_model(JobSubmit, request, fields))
        return self._run(Call("POST", "jobs/", body=body, response=Job))

    def list(self, *, state: str | list[str] | None = None, cluster_id: str | None = None, name: str | None = None,
             sort: str | None = None, order: str | None = None, limit: int | None = None,
             offset: int | None = None) -> JobList:
        """Jobs, newest first by default; `state` one or several (`"running,queued"` or a list);
        `name` a substring; `total` counts every match, for paging with `limit` / `offset`."""
        if isinstance(state, str):
            state = [item for item in state.split(",") if item]
        params = query(JobQuery, state=state, cluster_id=cluster_id, name=name, sort=sort, order=order,
                       limit=limit, offset=offset)
        return self._run(Call("GET", "jobs/", params=params, response=JobList))

    def get(self, job_id: str) -> Job:
        return self._run(Call("GET", f"jobs/{segment(job_id)}", response=Job))

    def delete(self, job_id: str, *, force: bool = False) -> None:
        """Delete a finished job with its runs (409 while it runs, unless `force`: kill it first)."""
        params = query(DeleteQuery, force=force or None)
        return self._run(Call("DELETE", f"jobs/{segment(job_id)}", params=params))

    def kill(self, job_id: str) -> Job:
        """Kill the job's whole process tree (409 if it has ended). Never retried."""
        return self._run(Call("POST", f"jobs/{segment(job_id)}/kill", response=Job))

    def restart(self, job_id: str) -> Job:
        """Run the job again as a new attempt. Never retried."""
        return self._run(Call("POST", f"jobs/{segment(job_id)}/restart", response=Job))

    def logs(self, job_id: str, *, offset: int = 0, limit: int | None = None, attempt: int | None = None,
             stream: str | None = None) -> LogPage:
        """A page of whole lines from byte `offset`; go on from `next_offset`. `stream="stdout"`:
        the program's own output alone."""
        params = query(LogQuery, offset=offset or None, limit=limit, attempt=attempt, stream=stream)
        return self._run(Call("GET", f"jobs/{segment(job_id)}/logs", params=params, response=LogPage))

    def tail(self, job_id: str, lines: int = 100, *, before: int | None = None, attempt: int | None = None,
             stream: str | None = None) -> LogPage:
        """The last `lines` lines (before byte offset `before`, to read further back)."""
        params = query(LogQuery, tail=lines, before=before, attempt=attempt, stream=stream)
        return self._run(Call("GET", f"jobs/{segment(job_id)}/logs", params=params, response=LogPage))

    def output(self, job_id: str, *, format: str = "ipynb", attempt: int | None = None) -> bytes:
        """A notebook job's executed notebook: `ipynb` (nbformat JSON) or `html` bytes."""
        params = query(OutputQuery, format=format, attempt=attempt)
        return self._run(Call("GET", f"jobs/{segment(job_id)}/output", params=params, response=BYTES))

    def artifact(self, job_id: str, name: str, *, attempt: int | None = None, to: str | os.PathLike | None = None
                 ) -> bytes | Path:
        """A file of a run archived in the object storage (`name` as the job's `artifacts` list it:
        `output.log`, `output.ipynb`, `output/<path>`; the latest run unless `attempt`): its bytes,
        or, with `to`, streamed into that file (never whole in memory) and its path returned."""
        params = query(ArtifactQuery, attempt=attempt)
        return self._run(Call("GET", f"jobs/{segment(job_id)}/artifacts/{key_path(name)}", params=params,
                              response=BYTES, save_to=to))

    def spark_ui(self, job_id: str) -> SparkUi:
        """The live driver UI's address and its proxy path (409 before it is up, 410 after the end)."""
        return self._run(Call("GET", f"jobs/{segment(job_id)}/spark-ui", response=SparkUi))


class Clusters(Group):
    """`/api/v1/clusters/`: the clusters jobs go to; launch standalone ones, register others."""

    def list(self) -> ClusterList:
        return self._run(Call("GET", "clusters/", response=ClusterList))

    def get(self, cluster_id: str) -> ClusterInfo:
        return self._run(Call("GET", f"clusters/{segment(cluster_id)}", response=ClusterInfo))

    def create(self, request: StandaloneClusterCreate | ExternalClusterCreate | Mapping | None = None, /,
               **fields: Any) -> ClusterInfo:
        """Launch (`kind="standalone"`, `workers`, `cores_per_worker`, `memory_per_worker`; 202,
        `starting`) or register (`kind="external"`, `master_url`, ...; 201) a cluster."""
        if isinstance(request, (StandaloneClusterCreate, ExternalClusterCreate)) and not fields:
            model = request
        else:
            model = as_model(ClusterCreate, request, fields).root
        return self._run(Call("POST", "clusters/", body=body_data(model), response=ClusterInfo))

    def launch(self, name: str, *, workers: int, cores_per_worker: int, memory_per_worker: str,
               max_concurrent_jobs: int | None = None) -> ClusterInfo:
        """A standalone master and workers on this machine; `starting` until every worker registered."""
        fields = {"max_concurrent_jobs": max_concurrent_jobs} if max_concurrent_jobs is not None else {}
        return self.create(kind="standalone", name=name, workers=workers, cores_per_worker=cores_per_worker,
                           memory_per_worker=memory_per_worker, **fields)

    def register(self, name: str, master_url: str, **fields: Any) -> ClusterInfo:
        """An existing master (spark://, k8s://, yarn, local[N]); `conf`, `ui_url`, `connect_url`,
        `max_concurrent_jobs` as ExternalClusterCreate takes them."""
        return self.create(kind="external", name=name, master_url=master_url, **fields)

    def delete(self, cluster_id: str, *, force: bool = False) -> ClusterInfo | None:
        """A launched cluster answers `stopping` (gone once its processes are); an external one
        is unregistered at once (None). 409 while jobs run on it, unless `force`."""
        params = query(ClusterDeleteQuery, force=force or None)
        return self._run(Call("DELETE", f"clusters/{segment(cluster_id)}", params=params, response=ClusterInfo))


class Notebooks(Group):
    """`/api/v1/notebooks/`: notebooks under the Jupyter root by File ID, their cells, import, export."""

    def list(self, *, folder: str | None = None, recursive: bool | None = None, limit: int | None = None,
             offset: int | None = None) -> NotebookList:
        params = query(NotebookQuery, folder=folder, recursive=recursive, limit=limit, offset=offset)
        return self._run(Call("GET", "notebooks/", params=params, response=NotebookList))

    def get(self, notebook_id: str) -> Notebook:
        return self._run(Call("GET", f"notebooks/{segment(notebook_id)}", response=Notebook))

    def create(self, request: NotebookCreate | Mapping | None = None, /, **fields: Any) -> Notebook:
        """An empty notebook: `name` (`.ipynb` added), `description`, `folder`, `kernel_name`."""
        body = body_data(as_model(NotebookCreate, request, fields))
        return self._run(Call("POST", "notebooks/", body=body, response=Notebook))

    def update(self, notebook_id: str, request: NotebookUpdate | Mapping | None = None, /, **fields: Any
               ) -> Notebook:
        """Change only the fields given: `name`, `folder`, `description` (None removes it),
        `kernel_name`, `metadata` (a key set to None is removed), `cells` (all of them)."""
        body = body_data(as_model(NotebookUpdate, request, fields))
        return self._run(Call("PUT", f"notebooks/{segment(notebook_id)}", body=body, response=Notebook))

    def delete(self, notebook_id: str) -> None:
        return self._run(Call("DELETE", f"notebooks/{segment(notebook_id)}"))

    def add_cell(self, notebook_id: str, request: CellCreate | Mapping | None = None, /, **fields: Any) -> Cell:
        """A new cell (`cell_type`, `source`, `position`: default the end), with its id."""
        body = body_data(as_model(CellCreate, request, fields))
        return self._run(Call("POST", f"notebooks/{segment(notebook_id)}/cells", body=body, response=Cell))

    def delete_cell(self, notebook_id: str, cell_id: str) -> None:
        return self._run(Call("DELETE", f"notebooks/{segment(notebook_id)}/cells/{segment(cell_id)}"))

    def execute_cell(self, notebook_id: str, cell_id: str, *, timeout: float | None = None) -> CellExecution:
        """Run a code cell in the notebook's kernel and return its outputs (also stored in the
        notebook). `timeout`: seconds before the kernel is interrupted. Never retried."""
        body = body_data(CellExecuteRequest(timeout=timeout) if timeout is not None else CellExecuteRequest())
        wait = (timeout or DEFAULT_CELL_WAIT) + CELL_ANSWER_MARGIN
        path = f"notebooks/{segment(notebook_id)}/cells/{segment(cell_id)}/execute"
        return self._run(Call("POST", path, body=body, response=CellExecution, timeout=wait))

    def import_notebook(self, content: Mapping | str, *, format: str | None = None, name: str | None = None,
                        folder: str | None = None) -> NotebookSummary:
        """Import an .ipynb document (a dict or its JSON text) or, with `format="py"`, a
        percent-format script (`# %%` cells)."""
        fields = {"content": content, "format": format, "name": name, "folder": folder}
        body = body_data(NotebookImport.model_validate({k: v for k, v in fields.items() if v is not None}))
        return self._run(Call("POST", "notebooks/import", body=body, response=NotebookSummary))

    def import_file(self, path: str | os.PathLike, *, name: str | None = None, folder: str | None = None
                    ) -> NotebookSummary:
        """Import a local `.ipynb` or `.py` file; its name (without extension) unless `name`."""
        stem, extension = os.path.splitext(os.path.basename(os.fspath(path)))
        if extension.lower() not in (".ipynb", ".py"):
            raise ValueError(f"{os.fspath(path)!r} is not an .ipynb notebook or a .py script")
        with open(path, encoding="utf-8") as file:
            content = file.read()
        return self.import_notebook(content, format=extension.lower()[1:], name=name or stem, folder=folder)

    def export(self, notebook_id: str, *, format: str = "ipynb") -> bytes:
        """The notebook as `ipynb`, `py` (percent format), `md` or `html` bytes."""
        params = query(ExportQuery, format=format)
        return self._run(Call("GET", f"notebooks/{segment(notebook_id)}/export", params=params, response=BYTES))


class Monitoring(Group):
    """`/api/v1/monitoring/`: machine metrics and their history, platform services, an overview."""

    def metrics(self) -> MetricsSample:
        return self._run(Call("GET", "monitoring/metrics", response=MetricsSample))

    def metrics_history(self, *, minutes: int | None = None, step: int | None = None) -> MetricsHistory:
        params = query(MetricsHistoryQuery, minutes=minutes, step=step)
        return self._run(Call("GET", "monitoring/metrics/history", params=params, response=MetricsHistory))

    def services(self) -> ServiceList:
        return self._run(Call("GET", "monitoring/services", response=ServiceList))

    def service_logs(self, name: str, *, lines: int | None = None) -> ServiceLogs:
        params = query(ServiceLogsQuery, lines=lines)
        return self._run(Call("GET", f"monitoring/services/{segment(name)}/logs", params=params,
                              response=ServiceLogs))

    def overview(self) -> MonitoringOverview:
        return self._run(Call("GET", "monitoring/overview", response=MonitoringOverview))


class Dashboard(Group):
    """`/api/v1/dashboard/`: job statistics and trends."""

    def stats(self) -> DashboardStats:
        return self._run(Call("GET", "dashboard/stats", response=DashboardStats))

    def trends(self, *, days: int | None = None, tz: str | None = None) -> DashboardTrends:
        params = query(TrendsQuery, days=days, tz=tz)
        return self._run(Call("GET", "dashboard/trends", params=params, response=DashboardTrends))

    def overview(self, *, days: int | None = None, tz: str | None = None) -> DashboardOverview:
        params = query(TrendsQuery, days=days, tz=tz)
        return self._run(Call("GET", "dashboard/overview", params=params, response=DashboardOverview))


class ObjectHead(BaseModel):
    """What `HEAD /storage/objects/{bucket}/{key}` says about an object."""

    bucket: str
    key: str
    size: int
    content_type: str
    etag: str | None = None
    last_modified: datetime | None = None


def object_head(bucket: str, key: str) -> Callable[[Mapping[str, str]], ObjectHead]:
    def from_headers(headers: Mapping[str, str]) -> ObjectHead:
        modified = headers.get("Last-Modified")
        return ObjectHead(bucket=bucket, key=key, size=int(headers.get("Content-Length") or 0),
                          content_type=headers.get("Content-Type") or "application/octet-stream",
                          etag=(headers.get("ETag") or "").strip('"') or None,
                          last_modified=parsedate_to_datetime(modified) if modified else None)
    return from_headers


class Storage(Group):
    """`/api/v1/storage/`: buckets and objects of the object storage (MinIO / S3) the server is
    configured with. `bucket=None` is the server's default bucket (MINIO_BUCKET_NAME) where a
    route allows it. Every route is NotFound when the server has no object storage, and
    BadGateway when the storage refuses the server or cannot be reached."""

    def buckets(self) -> BucketList:
        return self._run(Call("GET", "storage/buckets", response=BucketList))

    def list(self, bucket: str | None = None, prefix: str = "", delimiter: str = "/", *, limit: int | None = None,
             cursor: str | None = None) -> ObjectList:
        """One page of `folders` (common prefixes, at `delimiter`; "" for every key, no folders)
        and `objects` under `prefix`; pass `next_cursor` as `cursor` for the next page
        (`list_all` goes through every page)."""
        params = query(ObjectQuery, bucket=bucket, prefix=prefix, delimiter=delimiter, limit=limit, cursor=cursor)
        return self._run(Call("GET", "storage/objects", params=params, response=ObjectList))

    def head(self, bucket: str, key: str) -> ObjectHead:
        """The object's size, content type, ETag and last change, without its bytes."""
        return self._run(Call("HEAD", _object_path(bucket, key), from_headers=object_head(bucket, key)))

    def download(self, bucket: str, key: str, to: str | os.PathLike | None = None, *,
                 range: tuple[int, int | None] | None = None) -> bytes | Path:
        """The object's bytes, or, with `to`, streamed into that file (never whole in memory; the
        file appears once complete) and its path returned. `range=(first, last)`: only those
        bytes, both included (`last` None: to the end); RangeNotSatisfiable past the end."""
        if range is not None and (range[0] < 0 or (range[1] is not None and range[1] < range[0])):
            raise ValueError(f"range={range!r}: give (first, last) with 0 <= first <= last, or (first, None)")
        headers = (("Range", f"bytes={range[0]}-{'' if range[1] is None else range[1]}"),) if range else ()
        return self._run(Call("GET", _object_path(bucket, key), headers=headers, response=BYTES, save_to=to))

    def upload(self, bucket: str, key: str, data_or_path: Any, *, content_type: str | None = None
               ) -> StoredObject:
        """Write the object from `bytes`, a file path (`str` or `os.PathLike`, streamed from disk a
        chunk at a time), a binary file object or an iterable of bytes chunks (async client: an
        async iterable too). Bytes are retried as any PUT; a file path only when the connection
        could not be made; a file object or an iterator never (it is read once). PayloadTooLarge
        past the server's `max_object_bytes`."""
        upload = UploadBody.of(data_or_path, content_type)
        return self._run(Call("PUT", _object_path(bucket, key), upload=upload, response=StoredObject))

    def delete(self, bucket: str, key: str) -> None:
        return self._run(Call("DELETE", _object_path(bucket, key)))

    def presign(self, bucket: str | None, key: str, method: str = "GET", *,
                expires: float | timedelta = DEFAULT_PRESIGN_SECONDS) -> PresignedUrl:
        """A URL that downloads (`GET`) or uploads (`PUT`, needs `write`) the object without a
        Jupyter token for `expires` seconds (at most 7 days), signed for the storage's own address."""
        seconds = expires.total_seconds() if isinstance(expires, timedelta) else expires
        fields = {"key": key, "method": method, "expires_seconds": int(seconds)}
        if bucket is not None:
            fields["bucket"] = bucket
        body = body_data(as_model(PresignRequest, None, fields))
        # Signing changes nothing on the server: asked again when the answer was lost.
        return self._run(Call("POST", "storage/presign", body=body, response=PresignedUrl, idempotent=True))


def _object_path(bucket: str, key: str) -> str:
    return f"storage/objects/{segment(bucket)}/{key_path(key)}"


def openapi_call() -> Call:
    return Call("GET", "openapi.json", response=JSON)
