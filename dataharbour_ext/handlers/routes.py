"""The route table: each route's path, handler and documented operations.

One source for both Tornado's URL patterns and the OpenAPI document, so they can't drift.
"""

import re
from dataclasses import dataclass, field

from pydantic import BaseModel

from ..models import (
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
    OutputQuery,
    ServiceList,
    ServiceLogs,
    ServiceLogsQuery,
    SparkUi,
    TrendsQuery,
)
from .clusters import ClusterCollectionHandler, ClusterHandler, ClusterUiProxyHandler
from .dashboard import DashboardOverviewHandler, DashboardStatsHandler, DashboardTrendsHandler
from .jobs import (
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
        """Tornado pattern: `{name}` is one path segment, a final `{path}` is the rest."""
        pattern = re.sub(r"\{path\}$", "(?P<path>.*)", self.path)
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        return pattern if pattern.endswith((".json", "(?P<path>.*)")) else pattern.rstrip("/") + "/?"


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
        (Operation("get", "Read the run log: a page from a byte offset, or the tail", response=LogPage,
                   query=LogQuery, errors=(400, 404)),),
    ),
    Route(
        "/api/v1/jobs/{job_id}/output",
        JobOutputHandler,
        (Operation("get", "A notebook job's executed notebook (written after every cell while it runs): ipynb "
                   "(application/x-ipynb+json, an attachment) or html (nbconvert, text/html, inline in a sandbox)",
                   content_type="application/octet-stream", query=OutputQuery, errors=(400, 404, 409)),),
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
