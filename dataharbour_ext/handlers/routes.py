"""The route table: each route's path, handler and documented operations.

One source for both Tornado's URL patterns and the OpenAPI document, so they can't drift.
"""

import re
from dataclasses import dataclass, field

from pydantic import BaseModel

from ..models import (
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
    ErrorBody,
    ExportQuery,
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
    StoredObject,
    TrendsQuery,
)
from .clusters import ClusterCollectionHandler, ClusterHandler, ClusterUiProxyHandler
from .dashboard import DashboardOverviewHandler, DashboardStatsHandler, DashboardTrendsHandler
from .jobs import (
    JobArtifactHandler,
    JobCollectionHandler,
    JobHandler,
    JobKillHandler,
    JobLogsHandler,
    JobOutputHandler,
    JobRestartHandler,
    JobSparkUiHandler,
)
from .live_stream import LiveStreamHandler
from .monitoring import MetricsHandler, MetricsHistoryHandler
from .notebooks import (
    NotebookCellExecuteHandler,
    NotebookCellHandler,
    NotebookCellsHandler,
    NotebookCollectionHandler,
    NotebookExportHandler,
    NotebookHandler,
    NotebookImportHandler,
)
from .openapi import OpenApiHandler
from .platform_services import MonitoringOverviewHandler, ServiceListHandler, ServiceLogsHandler
from .spark_ui_proxy import SparkUiProxyHandler
from .storage import BucketListHandler, ObjectHandler, ObjectListHandler, PresignHandler


@dataclass(frozen=True)
class Operation:
    method: str
    summary: str
    status: int = 200
    response: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    content_type: str = "application/json"
    error_content_type: str = "application/json"
    action: str = "read"  # what the handler asks the authorizer for ("execute": runs or stops code)
    error_notes: tuple[tuple[int, str], ...] = ()  # (status, when else it is sent), for the document
    other_statuses: tuple[tuple[int, str], ...] = ()  # (status, when): further success answers


@dataclass(frozen=True)
class Route:
    path: str  # OpenAPI style: /api/v1/jobs/{job_id}
    handler: type
    operations: tuple[Operation, ...] = field(default_factory=tuple)

    def pattern(self) -> str:
        """Tornado pattern: `{name}` is one path segment, a final `{path}` or `{key}` is the rest."""
        pattern = re.sub(r"\{(path|key)\}$", r"(?P<\1>.*)", self.path)
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        return pattern if pattern.endswith((".json", ">.*)")) else pattern.rstrip("/") + "/?"


STORAGE_ERROR_NOTES = (
    (404, "no such bucket or object, or object storage is not configured"),
    (502, "the object storage refused the request (credentials) or could not be reached: its reason"),
)

ROUTES: tuple[Route, ...] = (
    Route(
        "/api/v1/jobs/",
        JobCollectionHandler,
        (
            Operation("get", "List jobs (filter, sort, page)", response=JobList, query=JobQuery, errors=(400,)),
            Operation("post", "Submit a PySpark job", status=202, response=Job, body=JobSubmit, errors=(400, 413),
                      action="execute"),
        ),
    ),
    Route(
        "/api/v1/jobs/{job_id}",
        JobHandler,
        (
            Operation("get", "Job details", response=Job, errors=(404,)),
            Operation("delete", "Delete a finished job, its runs and run folders (?force=true kills it first)",
                      status=204, query=DeleteQuery, errors=(400, 404, 409), action="execute"),
        ),
    ),
    Route(
        "/api/v1/jobs/{job_id}/kill",
        JobKillHandler,
        (Operation("post", "Kill the job's whole process tree", response=Job, errors=(404, 409), action="execute"),),
    ),
    Route(
        "/api/v1/jobs/{job_id}/restart",
        JobRestartHandler,
        (Operation("post", "Run the job again as a new attempt", status=202, response=Job, errors=(404, 409),
                   action="execute"),),
    ),
    Route(
        "/api/v1/jobs/{job_id}/logs",
        JobLogsHandler,
        (Operation("get", "Read the run log: a page from a byte offset, or the tail (from the object storage's "
                   "archive when the run folder no longer holds it)", response=LogPage, query=LogQuery,
                   errors=(400, 404, 502),
                   error_notes=((502, "the log is only in the archive, and the object storage failed"),)),),
    ),
    Route(
        "/api/v1/jobs/{job_id}/output",
        JobOutputHandler,
        (Operation("get", "A notebook job's executed notebook (written after every cell while it runs): ipynb "
                   "(application/x-ipynb+json, an attachment) or html (nbconvert, text/html, inline in a sandbox)",
                   content_type="application/octet-stream", query=OutputQuery, errors=(400, 404, 409)),),
    ),
    Route(
        "/api/v1/jobs/{job_id}/artifacts/{path}",
        JobArtifactHandler,
        (Operation("get", "A file of a run archived in the object storage (its `artifacts`: output.log, "
                   "output.ipynb, output/<path>), streamed from there as an attachment",
                   content_type="application/octet-stream", query=ArtifactQuery, errors=(400, 404, 502),
                   error_notes=((404, "no such job, attempt or artifact, or object storage is not configured"),
                                (502, "the object storage refused or could not be reached"))),),
    ),
    Route(
        "/api/v1/jobs/{job_id}/spark-ui",
        JobSparkUiHandler,
        (Operation("get", "Live driver UI address and its proxy path", response=SparkUi, errors=(404, 409, 410)),),
    ),
    Route(
        "/api/v1/jobs/{job_id}/spark-ui/proxy/{path}",
        SparkUiProxyHandler,
        (
            Operation(
                "get",
                "The live driver UI, proxied (GET only; Spark UI's kill links answer 403)",
                content_type="text/html",
                errors=(403, 404, 409, 410, 502, 504),
                error_content_type="text/plain",
                error_notes=(
                    (403, "the path is a Spark UI kill link: kill the job with POST /api/v1/jobs/{job_id}/kill"),
                    (502, "the driver UI could not be reached"),
                    (504, "the driver UI did not answer in time"),
                ),
            ),
        ),
    ),
    Route(
        "/api/v1/clusters/",
        ClusterCollectionHandler,
        (
            Operation("get", "Clusters jobs can be submitted to, with their state, workers and running and queued "
                      "jobs", response=ClusterList),
            Operation("post", "Launch a standalone cluster on this machine (202, `starting`; `running` once every "
                      "worker has registered), or register an external master (201)", status=202,
                      response=ClusterInfo, body=ClusterCreate, errors=(400, 413), action="execute",
                      other_statuses=((201, "an external master, registered at once"),),
                      error_notes=((400, "a bad field, or a limit (DataHarbourApp.max_clusters, max_workers, "
                                         "max_cores_per_worker, max_memory_per_worker) exceeded"),)),
        ),
    ),
    Route(
        "/api/v1/clusters/{cluster_id}",
        ClusterHandler,
        (
            Operation("get", "One cluster", response=ClusterInfo, errors=(404,)),
            Operation("delete", "Delete a cluster: an external one at once (204); a launched one is stopped, master "
                      "and workers, and gone once nothing of it runs (202, `stopping`, then `cluster_deleted`)",
                      status=202, response=ClusterInfo, query=ClusterDeleteQuery, errors=(400, 404, 409),
                      other_statuses=((204, "an external cluster: unregistered at once"),),
                      action="execute",
                      error_notes=((409, "the default cluster, or jobs queued or running on it without "
                                         "?force=true"),)),
        ),
    ),
    Route(
        "/api/v1/clusters/{cluster_id}/ui/proxy/{path}",
        ClusterUiProxyHandler,
        (
            Operation(
                "get",
                "The master web UI of a cluster this server launched, proxied (GET only; kill links answer 403)",
                content_type="text/html",
                errors=(403, 404, 410, 502, 503, 504),
                error_content_type="text/plain",
                error_notes=(
                    (403, "the path is a kill link: kill jobs with POST /api/v1/jobs/{job_id}/kill"),
                    (404, "no such cluster, or one this server did not launch"),
                    (410, "the cluster has failed or stopped"),
                    (502, "the master UI could not be reached"),
                    (503, "the master UI is not listening yet (Retry-After)"),
                    (504, "the master UI did not answer in time"),
                ),
            ),
        ),
    ),
    Route(
        "/api/v1/monitoring/metrics",
        MetricsHandler,
        (Operation("get", "The latest sample of the machine's CPU, memory, swap, disk, network, processes, "
                   "and of this server's kernels, sessions and jobs", response=MetricsSample),),
    ),
    Route(
        "/api/v1/monitoring/metrics/history",
        MetricsHistoryHandler,
        (Operation("get", "Stored samples of this host, raw or downsampled (min/avg/max per step), as chart columns",
                   response=MetricsHistory, query=MetricsHistoryQuery, errors=(400,)),),
    ),
    Route(
        "/api/v1/monitoring/services",
        ServiceListHandler,
        (Operation("get", "Health of every platform service: Jupyter, each Spark cluster, object storage, Airflow, "
                   "PostgreSQL (checked concurrently with a timeout, cached briefly)", response=ServiceList),),
    ),
    Route(
        "/api/v1/monitoring/services/{name}/logs",
        ServiceLogsHandler,
        (Operation("get", "The latest log lines of a service this server runs or keeps logs of (`jupyter`: this "
                   "server's own records)", response=ServiceLogs, query=ServiceLogsQuery, errors=(400, 404),
                   error_notes=((404, "an unknown service, or one that runs outside this server"),)),),
    ),
    Route(
        "/api/v1/monitoring/overview",
        MonitoringOverviewHandler,
        (Operation("get", "The latest metrics, every platform service's health and the jobs by state, in one call",
                   response=MonitoringOverview),),
    ),
    Route(
        "/api/v1/dashboard/stats",
        DashboardStatsHandler,
        (Operation("get", "Job statistics (jobs by state, success rate, mean and p95 duration), active clusters "
                   "and notebooks under the root", response=DashboardStats),),
    ),
    Route(
        "/api/v1/dashboard/trends",
        DashboardTrendsHandler,
        (Operation("get", "Runs that succeeded and that failed per day over the last `days` days (zero-filled), "
                   "in the time zone `tz`", response=DashboardTrends, query=TrendsQuery, errors=(400,)),),
    ),
    Route(
        "/api/v1/dashboard/overview",
        DashboardOverviewHandler,
        (Operation("get", "Stats, trends and the most recently updated jobs in one call", response=DashboardOverview,
                   query=TrendsQuery, errors=(400,)),),
    ),
    # Notebooks: ids are Jupyter File IDs; "write" for changes, as Jupyter's contents API.
    # The import route comes before /notebooks/{notebook_id}, which would match it too.
    Route(
        "/api/v1/notebooks/",
        NotebookCollectionHandler,
        (
            Operation("get", "Notebooks in a folder (or below it, recursive), by path, paged", response=NotebookList,
                      query=NotebookQuery, errors=(400, 404)),
            Operation("post", "Create an empty notebook (`.ipynb` added to the name; Location: its address)",
                      status=201, response=Notebook, body=NotebookCreate, errors=(400, 409, 413), action="write",
                      error_notes=((409, "a file or folder of that name is there already"),)),
        ),
    ),
    Route(
        "/api/v1/notebooks/import",
        NotebookImportHandler,
        (
            Operation("post", "Import an .ipynb document or a percent-format .py script, as this JSON body or as a "
                      "multipart/form-data upload (a `file` field, its format from its extension; optional `name` "
                      "and `folder` fields)", status=201, response=NotebookSummary, body=NotebookImport,
                      errors=(400, 409, 413), action="write",
                      error_notes=((400, "a bad field, or a document nbformat finds invalid (its reason)"),)),
        ),
    ),
    Route(
        "/api/v1/notebooks/{notebook_id}",
        NotebookHandler,
        (
            Operation("get", "A notebook with its metadata and cells (ids, sources, outputs)", response=Notebook,
                      errors=(404,)),
            Operation("put", "Change a notebook: rename or move it, replace its cells, set metadata, description or "
                      "kernel (only the fields given)", response=Notebook, body=NotebookUpdate,
                      errors=(400, 404, 409, 413), action="write",
                      error_notes=((409, "the new name is taken"),)),
            Operation("delete", "Delete a notebook (to the trash where the contents manager has one)", status=204,
                      errors=(400, 404), action="write"),
        ),
    ),
    Route(
        "/api/v1/notebooks/{notebook_id}/cells",
        NotebookCellsHandler,
        (Operation("post", "Add a cell (at `position`, default the end); the new cell with its id", status=201,
                   response=Cell, body=CellCreate, errors=(400, 404, 413), action="write"),),
    ),
    Route(
        "/api/v1/notebooks/{notebook_id}/cells/{cell_id}",
        NotebookCellHandler,
        (Operation("delete", "Delete a cell", status=204, errors=(400, 404), action="write"),),
    ),
    Route(
        "/api/v1/notebooks/{notebook_id}/cells/{cell_id}/execute",
        NotebookCellExecuteHandler,
        (Operation("post", "Run a code cell in the kernel of the notebook's session; its outputs are stored in the "
                   "notebook", response=CellExecution, body=CellExecuteRequest, errors=(400, 404, 409, 413, 503),
                   action="execute", error_notes=((503, "cell execution is not available on this server"),)),),
    ),
    Route(
        "/api/v1/notebooks/{notebook_id}/export",
        NotebookExportHandler,
        (Operation("get", "Download a notebook as ipynb (application/x-ipynb+json), py (jupytext percent, "
                   "text/x-python), md (jupytext markdown, text/markdown) or html (nbconvert, text/html), as an "
                   "attachment", content_type="application/octet-stream", query=ExportQuery, errors=(400, 404)),),
    ),
    # Object storage (MinIO / S3): every route is 404 with "object storage is not configured"
    # when MINIO_ENDPOINT is not set; S3 refusing or unreachable is 502 with its reason.
    Route(
        "/api/v1/storage/buckets",
        BucketListHandler,
        (Operation("get", "The buckets the configured credentials see", response=BucketList, errors=(404, 502),
                   error_notes=STORAGE_ERROR_NOTES),),
    ),
    Route(
        "/api/v1/storage/objects",
        ObjectListHandler,
        (Operation("get", "One page of a bucket's folders (common prefixes) and objects under a prefix; "
                   "`next_cursor` (S3's continuation token) asks for the next", response=ObjectList,
                   query=ObjectQuery, errors=(400, 404, 502), error_notes=STORAGE_ERROR_NOTES),),
    ),
    Route(
        "/api/v1/storage/objects/{bucket}/{key}",
        ObjectHandler,
        (
            Operation("get", "The object's bytes, streamed, as an attachment (`Range: bytes=first-last` gives 206 "
                      "with Content-Range)", content_type="application/octet-stream", errors=(400, 404, 409, 416, 502),
                      other_statuses=((206, "the requested range (Content-Range)"),),
                      error_notes=(*STORAGE_ERROR_NOTES, (409, "the object changed while it was being read"),
                                   (416, "the range starts beyond the object's end (Content-Range: bytes */size)"))),
            Operation("head", "The object's headers (size, type, ETag, Last-Modified) without its bytes",
                      content_type="application/octet-stream", errors=(400, 404, 416, 502),
                      error_notes=STORAGE_ERROR_NOTES),
            Operation("put", "Write the object from the request body (any content type; streamed to S3, multipart "
                      "when larger than 5 MiB or of unknown length)", response=StoredObject,
                      errors=(400, 404, 408, 413, 502), action="write",
                      error_notes=(*STORAGE_ERROR_NOTES,
                                   (408, "no part of the body came for DataHarbourApp.upload_idle_timeout seconds"),
                                   (413, "the body is larger than DataHarbourApp.max_object_bytes"))),
            Operation("delete", "Delete the object", status=204, errors=(400, 404, 502), action="write",
                      error_notes=STORAGE_ERROR_NOTES),
        ),
    ),
    Route(
        "/api/v1/storage/presign",
        PresignHandler,
        (Operation("post", "A time-limited URL that downloads (GET) or uploads (PUT) one object without a Jupyter "
                   "token, signed for the object storage's own address", response=PresignedUrl, body=PresignRequest,
                   errors=(400, 404, 413, 502),
                   error_notes=(*STORAGE_ERROR_NOTES, (403, "a PUT URL needs action `write` too"))),),
    ),
    # WebSocket routes: no REST operations to document (the protocol is in the README).
    Route("/api/v1/ws/{client_id}", LiveStreamHandler),
    Route("/ws/{client_id}", LiveStreamHandler),  # the seed's address
    Route(
        "/api/v1/openapi.json",
        OpenApiHandler,
        (Operation("get", "This OpenAPI document"),),
    ),
)

ERROR_MODEL = ErrorBody


def handler_table() -> list[tuple[str, type]]:
    return [(route.pattern(), route.handler) for route in ROUTES]
