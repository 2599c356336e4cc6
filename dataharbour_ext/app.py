"""DataHarbourApp: the Jupyter Server extension. Config, services and the handler table."""

import asyncio
import gc
import logging
import os
import sys
from urllib.parse import quote

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from tornado.log import LogFormatter  # what Jupyter's console lines are formatted with
from traitlets import Bool, Dict, Enum, Float, Integer, TraitError, Type, Unicode, default, validate

from . import __version__
from .event_bus import connect_event_bus
from .events import EventHub
from .handlers.routes import handler_table
from .models import DEFAULT_CLUSTER_ID, ClusterLimits
from .runs.identity import HOSTNAME, host_identity
from .services.cluster_launcher import ClusterLauncher, LauncherConfig
from .services.cluster_updates import ClusterUpdates
from .services.cluster_views import ClusterViews
from .services.clusters import ClusterService
from .services.connect_servers import ConnectConfig, ConnectServers
from .services.connect_views import ConnectViews
from .services.dashboard import DashboardService
from .services.health import (
    AirflowCheck,
    ConnectServerChecks,
    JupyterCheck,
    ObjectStorageCheck,
    PlatformSettings,
    PostgresCheck,
)
from .services.job_modes import JobModes
from .services.jobs import JobService, JobServiceConfig
from .services.kernel_api_access import KernelApiAccess
from .services.kernel_env import KernelEnvironment
from .services.kernel_spark_remote import KernelSparkRemote
from .services.live_stream import LiveStream, StreamConfig
from .services.metrics_history import MetricsHistoryView
from .services.metrics_sampler import MetricsSampler
from .services.monitoring_overview import MonitoringOverviewService
from .services.notebook_contents import NotebookContents
from .services.notebook_count import NotebookCounter
from .services.notebook_execution import CellExecutor
from .services.notebook_files import NotebookFiles
from .services.notebook_ids import NotebookIds
from .services.notebook_kernels import NotebookKernels
from .services.notebooks import NotebookConfig, NotebookService
from .services.object_storage import ObjectStorage
from .services.server_log_buffer import ServerLogBuffer
from .services.service_health import ServiceHealth
from .services.service_logs import ServiceLogs
from .services.storage import StorageService
from .services.warm_pool import WarmPool, WarmPoolConfig
from .spark.class_data import ClassDataArchive
from .spark.connect_backend import SparkConnectBackend
from .spark.connect_server import take_client_mode_variables
from .spark.log_config import SparkLogConfig
from .spark.memory_size import parse_memory_mb
from .spark.notebook_backend import NotebookBackend
from .spark.submit_backend import SparkSubmitBackend
from .store import JobStore
from .store.cluster_store import ClusterStore
from .store.job_statistics import JobStatistics
from .store.metrics_store import MetricsStore


def postgres_url_from_environment() -> str | None:
    """The seed's POSTGRES_* variables as a SQLAlchemy URL (psycopg 3), if POSTGRES_HOST is set."""
    host = os.environ.get("POSTGRES_HOST")
    if not host:
        return None
    user = quote(os.environ.get("POSTGRES_USER", "postgres"), safe="")
    password = os.environ.get("POSTGRES_PASSWORD")
    credentials = f"{user}:{quote(password, safe='')}" if password else user
    port = os.environ.get("POSTGRES_PORT", "5432")
    database = quote(os.environ.get("POSTGRES_DB", "dataharbour"), safe="")
    return f"postgresql+psycopg://{credentials}@{host}:{port}/{database}"


class DataHarbourApp(ExtensionApp):
    name = "dataharbour_ext"
    description = "Spark jobs, clusters and monitoring for Jupyter"
    version = __version__
    load_other_extensions = True

    # ---- Spark (the seed's SPARK_* environment variables are the defaults) ------------
    spark_master_url = Unicode(help="Master of the default cluster; env SPARK_MASTER_URL, else local[*].").tag(
        config=True
    )
    spark_ui_url = Unicode(
        "", help="UI of the default cluster's master, if it has one; env SPARK_UI_URL."
    ).tag(config=True)
    spark_local_ip = Unicode("127.0.0.1", help="Address Spark processes bind to (SPARK_LOCAL_IP).").tag(config=True)
    cluster_conf = Dict(
        value_trait=Unicode(),
        help="Spark conf every run on the default cluster gets, e.g. spark.driver.host for remote executors, "
        "or spark.ui.killEnabled=true to allow the driver UI's kill links.",
    ).tag(config=True)
    log_level = Unicode(
        "WARN", help="Spark log level of runs unless a job asks for another (INFO brings back Spark's start-up lines)."
    ).tag(config=True)
    class_data_sharing = Bool(
        True, help="Build a JVM class-data archive of Spark's classes after start-up and give it to every Spark "
        "JVM the extension launches (about twice as fast cold starts; a missing archive only costs speed).",
    ).tag(config=True)

    run_niceness = Integer(
        10, min=0, max=19,
        help="CPU niceness of runs and of their session's scheduling group (0-19): Spark yields the CPU to "
        "Jupyter and notebooks when both want it; alone on the machine it runs at full speed.",
    ).tag(config=True)
    freeze_gc_after_start = Bool(
        True,
        help="After start-up, move the server's objects out of the garbage collector's way (gc.freeze): "
        "full collections then scan only newer objects instead of stopping the event loop for tens of "
        "milliseconds while a thread builds a large list.",
    ).tag(config=True)
    gil_switch_interval = Float(
        0.001,
        help="Seconds a thread may hold the GIL before the event loop gets a turn (Python's default is "
        "0.005). Store queries, log reads and view building run in threads; a shorter interval keeps "
        "the server answering while they work. 0 leaves Python's setting alone.",
    ).tag(config=True)

    # ---- clusters launched or registered through the API -------------------------------
    max_clusters = Integer(
        4, min=0, help="Clusters a user may have besides the default one: standalone clusters launched on this "
        "machine and external masters registered (POST /clusters/ answers 400 beyond it).",
    ).tag(config=True)
    max_workers = Integer(4, min=1, help="Workers of one standalone cluster at most.").tag(config=True)
    max_cores_per_worker = Integer(
        min=1, help="Cores one worker of a standalone cluster may offer at most; default: this machine's CPU count.",
    ).tag(config=True)
    max_memory_per_worker = Unicode(
        "8g", help="Memory one worker of a standalone cluster may offer at most (512m, 2g, ...).",
    ).tag(config=True)
    cluster_start_timeout = Float(
        120.0, help="Seconds a standalone cluster has to come up (its master ALIVE and every worker registered) "
        "before it is `failed` and stopped.",
    ).tag(config=True)

    @default("max_cores_per_worker")
    def _default_max_cores(self) -> int:
        return os.cpu_count() or 1

    @validate("max_memory_per_worker")
    def _check_max_memory(self, proposal) -> str:
        try:
            parse_memory_mb(proposal["value"])
        except ValueError as error:
            raise TraitError(f"max_memory_per_worker: {error}") from None
        return proposal["value"]

    @validate("cluster_start_timeout")
    def _check_start_timeout(self, proposal) -> float:
        if proposal["value"] <= 0:
            raise TraitError("cluster_start_timeout: more than 0 seconds")
        return proposal["value"]

    # ---- Spark Connect: the warm path ---------------------------------------------------
    connect_enabled = Bool(
        True, help="Run warm jobs (\"mode\": \"connect\") through a Spark Connect server per cluster, started "
        "and supervised by this server.",
    ).tag(config=True)
    default_job_mode = Enum(
        ["batch", "connect", "auto"], "batch",
        help="A job's mode when it names none: batch (spark-submit, everything PySpark does), connect (warm), or "
        "auto (connect where the cluster can have a Spark Connect server, else batch). A default of connect or "
        "auto runs batch while the cluster's Connect server is failed. The sidebar proposes warm wherever a "
        "cluster has the warm path.",
    ).tag(config=True)
    cluster_job_modes = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="Cluster id -> batch, connect or auto: the default mode of jobs on the named clusters, overriding "
        "default_job_mode there, e.g. `--DataHarbourApp.cluster_job_modes spark-cluster-default=connect` or "
        '`c.DataHarbourApp.cluster_job_modes = {"spark-cluster-default": "connect"}` in '
        "jupyter_server_config.py.",
    ).tag(config=True)
    kernel_api_access = Bool(
        True, help="Kernels started by this server get DATAHARBOUR_URL and DATAHARBOUR_TOKEN, so that the notebook "
        "magics (%load_ext dataharbour_ext) and dataharbour_ext.client reach this server with nothing typed.",
    ).tag(config=True)
    kernel_spark_remote = Bool(
        True, help="Kernels started by this server get SPARK_REMOTE, the endpoint of the default cluster's Spark "
        "Connect server, so SparkSession.builder.getOrCreate() in a notebook is a Spark Connect session on the "
        "warm server (no JVM in the kernel). The server starts on a kernel's first connection. A notebook that "
        "needs classic PySpark (sparkContext, RDDs) removes the variable first (os.environ.pop('SPARK_REMOTE')); "
        "False: kernels get none of ours (a SPARK_REMOTE the server was started with goes to kernels only, "
        "never to Spark runs).",
    ).tag(config=True)
    connect_start_at_startup = Bool(
        False, help="Start the default cluster's Spark Connect server (and its warm workers) when the server "
        "starts, instead of at the first warm job.",
    ).tag(config=True)
    connect_idle_timeout = Float(
        1800.0, help="Seconds a Spark Connect server may go unused before it is stopped to give its memory back "
        "(0: never). The next warm job starts it again.",
    ).tag(config=True)
    connect_memory = Unicode("1g", help="Heap of each Spark Connect server (its driver).").tag(config=True)
    connect_start_timeout = Float(
        120.0, help="Seconds a Spark Connect server has to start listening before its start fails.",
    ).tag(config=True)
    warm_pool_size = Integer(
        2, help="Warm workers (Python processes connected to a cluster's Spark Connect server) kept ready per "
        "cluster in use; each holds a session on the server.",
    ).tag(config=True)

    @validate("warm_pool_size")
    def _check_pool_size(self, proposal) -> int:
        if not 0 <= proposal["value"] <= 16:
            raise TraitError("warm_pool_size: from 0 to 16")
        return proposal["value"]

    @validate("cluster_job_modes")
    def _check_cluster_job_modes(self, proposal) -> dict:
        for cluster_id, mode in proposal["value"].items():
            if mode not in ("batch", "connect", "auto"):
                raise TraitError(
                    f"cluster_job_modes: cluster {cluster_id!r} has mode {mode!r}; use batch, connect or auto"
                )
        return proposal["value"]

    # ---- jobs -------------------------------------------------------------------------
    max_concurrent_jobs = Integer(4, help="Runs per cluster at once; further submissions queue.").tag(config=True)
    max_code_bytes = Integer(1024 * 1024, help="Largest accepted program, in bytes (413 above).").tag(config=True)
    max_name_length = Integer(200, help="Longest accepted job name.").tag(config=True)
    kill_grace_seconds = Float(10.0, help="Seconds between SIGTERM and SIGKILL when killing a job.").tag(config=True)
    poll_interval = Float(0.1, help="Seconds between checks of starting jobs.").tag(config=True)
    progress_interval = Float(
        0.5,
        help="Seconds between two samples of a running job's Spark progress (in the driver's Python, "
        "from SparkContext.statusTracker()); 0 turns progress off.",
    ).tag(config=True)
    stream_session_ttl = Float(
        300.0,
        help="Seconds a live-stream session waits for its client to reconnect (and resume with since_seq) "
        "before it is forgotten.",
    ).tag(config=True)
    job_retention_days = Float(
        0.0, help="Delete finished jobs, their runs and run folders this many days after they ended (0: never)."
    ).tag(config=True)
    max_input_bytes = Integer(
        10 * 1024**3, min=0,
        help="Bytes a job's input objects (`inputs`, downloaded from the object storage before each run) may hold "
        "together; a run whose inputs are larger fails before it starts.",
    ).tag(config=True)
    run_folder_retention_days = Float(
        0.0, min=0.0,
        help="Remove the run folders of runs that ended this many days ago once their files are archived in the "
        "object storage (the job stays; its log is then read from the archive); 0: never. Runs whose log was not "
        "archived keep their folders.",
    ).tag(config=True)
    keep_archives_of_deleted_jobs = Bool(
        False,
        help="Keep a deleted job's archived files (s3://<MINIO_BUCKET_NAME>/jobs/<job id>/) in the object storage; "
        "by default deleting a job, by hand or by job_retention_days, deletes them too.",
    ).tag(config=True)

    # ---- monitoring -------------------------------------------------------------------
    metrics_interval = Float(
        2.0,
        help="Seconds between two samples of the machine's metrics (CPU, memory, disk, network, kernels, jobs); "
        "each is stored for the history and sent on the live stream. 0 turns sampling off: "
        "/monitoring/metrics then measures when asked, and the history stays as it was.",
    ).tag(config=True)
    metrics_retention_hours = Float(168.0, help="Hours metric samples are kept for the history.").tag(config=True)

    @validate("metrics_interval")
    def _check_metrics_interval(self, proposal) -> float:
        if proposal["value"] != 0 and proposal["value"] < 0.1:
            raise TraitError("metrics_interval: 0 (off) or at least 0.1 seconds")
        return proposal["value"]

    @validate("metrics_retention_hours")
    def _check_metrics_retention(self, proposal) -> float:
        if proposal["value"] <= 0:
            raise TraitError("metrics_retention_hours: more than 0")
        return proposal["value"]

    # ---- platform services (health, logs) ---------------------------------------------
    service_check_timeout = Float(
        3.0, help="Seconds each platform service's health check may take before it counts as unhealthy.",
    ).tag(config=True)
    service_check_cache_seconds = Float(
        5.0, help="Seconds the latest checks count as fresh; after that GET /monitoring/services still answers at "
        "once with them and starts a new round in the background.",
    ).tag(config=True)
    service_check_interval = Float(
        15.0,
        help="Seconds between background checks of the platform services; a change of status is a "
        "`service_update` message on the live stream's `services` topic. 0 turns them off (checks then run "
        "only when asked).",
    ).tag(config=True)
    service_environment = Dict(
        value_trait=Unicode(),
        help="Values of the seed's variables (MINIO_ENDPOINT, MINIO_ACCESS_KEY, MINIO_SECRET_KEY, "
        "MINIO_BUCKET_NAME, MINIO_SECURE, AIRFLOW_BASE_URL, AIRFLOW_USERNAME, AIRFLOW_PASSWORD, POSTGRES_HOST, "
        "POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB) for the platform service checks, over "
        "the server's environment. An unset address means that service is disabled.",
    ).tag(config=True)
    server_log_records = Integer(
        2000, min=1, help="Jupyter server log records kept in memory for GET /monitoring/services/jupyter/logs.",
    ).tag(config=True)

    @validate("service_check_timeout")
    def _check_service_check_timeout(self, proposal) -> float:
        if proposal["value"] <= 0:
            raise TraitError("service_check_timeout: more than 0 seconds")
        return proposal["value"]

    @validate("service_check_interval", "service_check_cache_seconds")
    def _check_service_check_times(self, proposal) -> float:
        if proposal["value"] < 0:
            raise TraitError(f"{proposal['trait'].name}: 0 or more seconds")
        return proposal["value"]

    # ---- dashboard --------------------------------------------------------------------
    dashboard_cache_seconds = Float(
        1.0, min=0.0,
        help="Seconds the dashboard's job statistics are reused while this server writes nothing to the store "
        "(its own writes show at once); for as long again the previous numbers are served while new ones are "
        "computed, so another server's writes to a shared store show within twice this time.",
    ).tag(config=True)
    dashboard_notebook_scan_limit = Integer(
        20000, min=1,
        help="Files and folders the dashboard looks at at most when it counts the notebooks under the root "
        "(the count then says it is truncated).",
    ).tag(config=True)
    dashboard_notebook_cache_seconds = Float(
        60.0, min=0.0,
        help="Seconds the dashboard's notebook count is reused; an older one is served while a new count runs "
        "in the background.",
    ).tag(config=True)

    # ---- notebooks --------------------------------------------------------------------
    max_notebook_bytes = Integer(
        64 * 1024 * 1024, min=1024,
        help="Largest notebook the notebooks API takes in one request (import, PUT with cells), in bytes; a larger "
        "body answers 413.",
    ).tag(config=True)
    cell_timeout = Float(
        60.0, min=0.1,
        help="Seconds a cell executed through POST /notebooks/{id}/cells/{cell_id}/execute may run when the "
        "request names no timeout; then the kernel is interrupted and the answer says so.",
    ).tag(config=True)
    notebook_job_cell_timeout = Float(
        0.0, min=0.0,
        help="Seconds one cell of a notebook job may run before the job fails with a timeout; 0: no limit (a "
        "notebook job's cells may run Spark work for hours; kill the job to stop it).",
    ).tag(config=True)
    notebook_scan_limit = Integer(
        20000, min=1,
        help="Files and folders GET /notebooks/ looks at at most (recursive listings); the listing then says it is "
        "truncated.",
    ).tag(config=True)

    # ---- object storage (MINIO_*) --------------------------------------------------------
    max_object_bytes = Integer(
        5 * 1024**3, min=1,
        help="Largest object PUT /api/v1/storage/objects/{bucket}/{key} writes, in bytes (413 above); the body "
        "streams to the object storage, so this bounds the upload, not the server's memory.",
    ).tag(config=True)
    upload_idle_timeout = Float(
        120.0, min=0.0,
        help="Seconds an upload (PUT /api/v1/storage/objects/{bucket}/{key}) waits for the next part of its body "
        "before it is abandoned and answered 408; 0: no limit (a stalled client then holds a storage thread).",
    ).tag(config=True)

    # ---- storage ----------------------------------------------------------------------
    state_dir = Unicode(help="Folder for the database and run folders; default <jupyter data dir>/dataharbour.").tag(
        config=True
    )
    db_url = Unicode(
        help="SQLAlchemy URL of the store; default PostgreSQL from POSTGRES_HOST/PORT/USER/PASSWORD/DB when "
        "POSTGRES_HOST is set, else SQLite in state_dir."
    ).tag(config=True)

    store_tenant = Unicode(
        help="Whose jobs this server sees and runs when several servers share one store (a team "
        "PostgreSQL): servers of one tenant share jobs, other tenants' jobs stay invisible. Default: "
        "$JUPYTERHUB_USER, else the operating-system user."
    ).tag(config=True)

    job_service_class = Type(JobService, help="The job service implementation.").tag(config=True)

    @default("spark_master_url")
    def _default_master(self) -> str:
        return os.environ.get("SPARK_MASTER_URL") or "local[*]"

    @default("spark_ui_url")
    def _default_spark_ui(self) -> str:
        return os.environ.get("SPARK_UI_URL", "")

    @default("state_dir")
    def _default_state_dir(self) -> str:
        return os.path.join(jupyter_data_dir(), "dataharbour")

    @default("db_url")
    def _default_db_url(self) -> str:
        return postgres_url_from_environment() or "sqlite:///" + os.path.join(self.state_dir, "dataharbour.db")

    def _route_service_logs(self) -> None:
        """The services log through `logging.getLogger("dataharbour_ext...")`; send those
        lines where the server's own go (Jupyter's handlers are on its app logger, not root)."""
        server_log = self.serverapp.log
        service_log = logging.getLogger("dataharbour_ext")
        service_log.setLevel(logging.INFO)
        for handler in server_log.handlers:
            if handler not in service_log.handlers:
                service_log.addHandler(handler)
        service_log.propagate = not server_log.handlers

    def _keep_server_logs(self) -> ServerLogBuffer:
        """The server's own records and ours (the extension's handlers log to this app's
        logger, the services to `dataharbour_ext`), formatted as its console lines, in memory,
        from the level its console shows on."""
        serverapp = self.serverapp
        formatter = LogFormatter(fmt=serverapp.log_format, datefmt=serverapp.log_datefmt, color=False)
        buffer = ServerLogBuffer(self.server_log_records, formatter, level=lambda: serverapp.log_level)
        buffer.attach(serverapp.log, self.log, logging.getLogger("dataharbour_ext"))
        return buffer

    def initialize_settings(self) -> None:
        self._route_service_logs()
        self.server_logs = self._keep_server_logs()
        if self.gil_switch_interval > 0:
            sys.setswitchinterval(self.gil_switch_interval)
        # Job records and run folders can hold credentials (env, conf): owner-only.
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self.root_dir = os.path.abspath(os.path.expanduser(self.serverapp.root_dir))
        self.hub = EventHub()
        if getattr(self.serverapp, "event_logger", None) is not None:
            connect_event_bus(self.hub, self.serverapp.event_logger)
        self.store = JobStore(self.db_url, tenant=self.store_tenant or None)
        # The seed's services (MINIO_*, AIRFLOW_*, POSTGRES_*): unset means disabled, never broken.
        self.platform_settings = PlatformSettings.from_environment({**os.environ, **self.service_environment})
        self.object_storage = ObjectStorage(self.platform_settings.minio)
        self.kernel_environment = KernelEnvironment(self.serverapp.kernel_manager)
        if self.kernel_api_access:
            self.kernel_environment.add(KernelApiAccess(self.serverapp).variables)
        self._keep_spark_clients_out()
        self.clusters = ClusterService(self.spark_master_url, self.spark_ui_url or None,
                                       default_conf=dict(self.cluster_conf), default_log_level=self.log_level)
        # What handlers reach through `self.services[...]`, one group per capability.
        self.settings["dataharbour"] = {
            "app": self, "events": self.hub, "clusters": self.clusters,
            **self._build_notebooks(), **self._build_jobs(), **self._build_metrics(), **self._build_platform_services(),
            **self._build_dashboard(), **self._build_clusters(), **self._build_storage(),
        }
        self.settings["dataharbour"]["monitoring_overview"] = MonitoringOverviewService(
            self.metrics, self.service_health, self.settings["dataharbour"]["dashboard"].statistics
        )

    def _keep_spark_clients_out(self) -> None:
        """SPARK_REMOTE in the server's environment would make every batch run, cluster daemon
        and Connect server started here a Spark Connect client: it is taken out of it. Kernels
        still get it unless they get this server's own (kernel_spark_remote)."""
        inherited = take_client_mode_variables(os.environ)
        if not inherited:
            return
        logging.getLogger("dataharbour_ext").warning(
            "DataHarbour: %s taken out of the server's environment (Spark runs started here must not be Spark "
            "Connect clients); kernels get %s", ", ".join(sorted(inherited)),
            "the default cluster's Spark Connect server" if self.connect_enabled and self.kernel_spark_remote
            else "the inherited values")
        self.kernel_environment.add(lambda: inherited)  # first: this server's own SPARK_REMOTE comes after it

    def _build_jobs(self) -> dict:
        # The archive is built with the options real runs get, so it holds what they load.
        self.class_data = ClassDataArchive(
            self.state_dir, enabled=self.class_data_sharing, log=self.log, local_ip=self.spark_local_ip,
            extra_java_options=SparkLogConfig(self.state_dir).java_options(),
        )
        # A driver's settings, the same for a batch run's and a notebook kernel's.
        driver_settings = dict(
            root_dir=self.root_dir,
            state_dir=self.state_dir,
            local_ip=self.spark_local_ip,
            stop_grace_seconds=self.kill_grace_seconds,
            class_data=self.class_data,
            default_log_level=self.log_level,
            niceness=self.run_niceness,
            progress_interval=self.progress_interval,
            s3_settings=self.platform_settings.minio,  # runs get its spark.hadoop.fs.s3a.* settings
        )
        backends: dict = {
            SparkSubmitBackend.name: SparkSubmitBackend(**driver_settings),
            NotebookBackend.name: NotebookBackend(
                **driver_settings, cell_timeout=self.notebook_job_cell_timeout or None
            ),
        }
        modes = JobModes(self.default_job_mode, cluster_modes=self.cluster_job_modes)
        if self.connect_enabled:
            self._build_connect()
            backends[SparkConnectBackend.name] = SparkConnectBackend(self.warm_pool)
            modes = JobModes(
                self.default_job_mode,
                self.connect_servers.refusal,
                self.cluster_job_modes,
                lambda cluster_id: self.connect_servers.status(cluster_id).state,
            )
        config = JobServiceConfig(
            root_dir=self.root_dir,
            runs_dir=os.path.join(self.state_dir, "runs"),
            max_concurrent_jobs=self.max_concurrent_jobs,
            max_code_bytes=self.max_code_bytes,
            max_name_length=self.max_name_length,
            kill_grace_seconds=self.kill_grace_seconds,
            poll_interval=self.poll_interval,
            spark_local_ip=self.spark_local_ip,
            job_retention_days=self.job_retention_days,
            max_input_bytes=self.max_input_bytes,
            keep_archives_of_deleted_jobs=self.keep_archives_of_deleted_jobs,
            run_folder_retention_days=self.run_folder_retention_days,
        )
        self.jobs = self.job_service_class(
            self.store, self.clusters, self.hub, self.serverapp.contents_manager, config, backends, modes,
            notebooks=self.notebooks, object_storage=self.object_storage,
        )
        self.stream = LiveStream(self.hub, self.jobs, StreamConfig(session_ttl=self.stream_session_ttl))
        return {"jobs": self.jobs, "stream": self.stream}

    def _build_connect(self) -> None:
        """A Spark Connect server per cluster that runs warm jobs, and the warm workers on it."""
        self.connect_servers = ConnectServers(
            ConnectConfig(state_dir=self.state_dir, start_timeout=self.connect_start_timeout,
                          idle_timeout=self.connect_idle_timeout, stop_grace_seconds=self.kill_grace_seconds,
                          memory=self.connect_memory, niceness=self.run_niceness,
                          s3_settings=self.platform_settings.minio),
            clusters=self.clusters, class_data=self.class_data,
        )
        self.clusters.on_change(self.connect_servers.cluster_changed)
        self.warm_pool = WarmPool(self.connect_servers, WarmPoolConfig(
            state_dir=self.state_dir, root_dir=self.root_dir, size=self.warm_pool_size,
            ready_timeout=self.connect_start_timeout, stop_grace_seconds=self.kill_grace_seconds,
            niceness=self.run_niceness))
        if self.kernel_spark_remote:
            self.kernel_spark = KernelSparkRemote(self.connect_servers, self.clusters, self.serverapp.kernel_manager,
                                                  DEFAULT_CLUSTER_ID)
            self.kernel_environment.add(self.kernel_spark.variables)

    def _build_metrics(self) -> dict:
        self.metrics_store = MetricsStore(self.store, HOSTNAME)
        # `await metrics.current()`: the latest sample, or one taken now.
        self.metrics = MetricsSampler(
            interval=self.metrics_interval, retention_hours=self.metrics_retention_hours, disk_path=self.root_dir,
            host=HOSTNAME, hub=self.hub, job_store=self.store, metrics_store=self.metrics_store,
            kernel_manager=self.serverapp.kernel_manager, session_manager=self.serverapp.session_manager,
        )
        history = MetricsHistoryView(self.metrics_store, interval=self.metrics_interval,
                                     retention_hours=self.metrics_retention_hours)
        return {"metrics": self.metrics, "metrics_history": history}

    def _build_platform_services(self) -> dict:
        platform = self.platform_settings
        self.service_health = ServiceHealth(
            self.hub, self.clusters,
            JupyterCheck(self.serverapp.kernel_manager, self.serverapp.session_manager),
            [ObjectStorageCheck(platform.minio), AirflowCheck(platform.airflow), PostgresCheck(platform.postgres)],
            timeout=self.service_check_timeout, cache_seconds=self.service_check_cache_seconds,
            interval=self.service_check_interval,
            extra_checks=ConnectServerChecks(self.connect_servers) if self.connect_enabled else None,
        )
        self.clusters.on_change(self.service_health.cluster_changed)
        self.service_logs = logs = ServiceLogs(self.service_health)
        if self.connect_enabled:
            self.connect_servers.service_logs = logs  # built after the jobs, which need the servers
            self.connect_servers.on_change(self.service_health.cluster_changed)  # monitoring follows at once
        logs.register("jupyter", self.server_logs)
        return {"service_health": self.service_health, "service_logs": logs}

    def _build_dashboard(self) -> dict:
        self.notebook_counter = NotebookCounter(self.serverapp.contents_manager,
                                                limit=self.dashboard_notebook_scan_limit,
                                                ttl=self.dashboard_notebook_cache_seconds)
        dashboard = DashboardService(JobStatistics(self.store, ttl=self.dashboard_cache_seconds), self.jobs,
                                     self.clusters, self.notebook_counter)
        return {"dashboard": dashboard}

    def _build_clusters(self) -> dict:
        limits = ClusterLimits(max_clusters=self.max_clusters, max_workers=self.max_workers,
                               max_cores_per_worker=self.max_cores_per_worker,
                               max_memory_per_worker=self.max_memory_per_worker)
        connect = ConnectViews(self.connect_servers, self.warm_pool, self.jobs.modes) if self.connect_enabled else None
        self.cluster_views = ClusterViews(self.clusters, self.store, self.jobs.config, limits=limits, connect=connect)
        self.cluster_updates = ClusterUpdates(self.hub, self.clusters, self.cluster_views)
        if self.connect_enabled:  # a cluster's warm path is part of it: its changes are cluster_updates
            self.connect_servers.on_change(self.cluster_updates.changed)
            self.warm_pool.on_change(self.cluster_updates.changed)
        config = LauncherConfig(
            state_dir=self.state_dir, start_timeout=self.cluster_start_timeout,
            stop_grace_seconds=self.kill_grace_seconds, niceness=self.run_niceness, max_clusters=self.max_clusters,
            max_workers=self.max_workers, max_cores_per_worker=self.max_cores_per_worker,
            max_memory_per_worker=self.max_memory_per_worker,
        )
        self.cluster_launcher = ClusterLauncher(
            self.clusters, self.cluster_views, self.cluster_updates, ClusterStore(self.store, host_identity()),
            self.store, self.jobs, self.service_logs, self.class_data, config,
        )
        return {"cluster_views": self.cluster_views, "cluster_launcher": self.cluster_launcher}

    def _build_storage(self) -> dict:
        return {"storage": StorageService(self.object_storage, max_object_bytes=self.max_object_bytes,
                                          upload_idle_timeout=self.upload_idle_timeout)}

    def _build_notebooks(self) -> dict:
        # Looked up at each call, not now: extensions load in name order, so the File ID service
        # sets its manager after us, and jupytext's extension replaces the contents manager.
        serverapp = self.serverapp
        notebooks = NotebookService(
            NotebookContents(lambda: serverapp.contents_manager),
            NotebookIds(lambda: serverapp.web_app.settings.get("file_id_manager")),
            NotebookKernels(lambda: serverapp.kernel_spec_manager,
                            lambda: serverapp.kernel_manager.default_kernel_name),
            NotebookConfig(scan_limit=self.notebook_scan_limit, max_notebook_bytes=self.max_notebook_bytes),
            sessions=lambda: serverapp.session_manager,
        )
        self.cell_executor = CellExecutor(
            serverapp.kernel_manager, serverapp.session_manager, lambda: serverapp.contents_manager,
            default_timeout=self.cell_timeout,
            store_lock=notebooks.lock, locate=notebooks.ids.path_of,
        )
        self.notebooks = notebooks
        return {"notebooks": notebooks, "notebook_files": NotebookFiles(notebooks), "cell_executor": self.cell_executor}

    def initialize_handlers(self) -> None:
        self.handlers.extend(handler_table())

    async def _start_jupyter_server_extension(self, serverapp) -> None:
        self.stream.start()
        self.cluster_updates.start()
        # Clusters first: runs queued for a launched cluster must find it when they are admitted.
        await self.cluster_launcher.start()
        if self.connect_enabled:
            await self.warm_pool.start()
            await self.connect_servers.start()  # first the servers a dead server left behind
            if self.kernel_spark_remote:
                await self.kernel_spark.start()  # pinned before any start, which must use the pin
            if self.connect_start_at_startup:
                await self.connect_servers.start_clusters([self.clusters.get(DEFAULT_CLUSTER_ID)])
        await self.jobs.start()
        self.metrics.start()
        self.service_health.start()
        # Logging may have been reconfigured since initialize_settings (a changed logging
        # trait, a test harness that clears the server's handlers): keep recording.
        self.server_logs.attach(*self.server_logs.loggers)
        if self.freeze_gc_after_start:
            gc.collect()
            gc.freeze()
        self.class_data.build_in_background()
        logging.getLogger("dataharbour_ext").info(
            "DataHarbour: default cluster on %s, store %s, state in %s",
            self.spark_master_url, self.store.engine.url.render_as_string(hide_password=True), self.state_dir,
        )

    async def stop_extension(self) -> None:
        # Runs are detached and keep going; the next server start re-attaches to them.
        await self.stream.stop()
        await self.metrics.stop()
        await self.service_health.stop()
        await self.jobs.stop()
        if self.connect_enabled:
            # Warm workers not yet running jobs end; the Connect servers stop (they are this
            # server's: a warm job still running loses its server).
            if self.kernel_spark_remote:
                await self.kernel_spark.stop()
            await self.warm_pool.stop()
            await self.connect_servers.stop()
        await self.cell_executor.stop()
        # Launched clusters keep running, like runs; the next start re-attaches to them.
        await self.cluster_launcher.stop()
        await self.cluster_updates.stop()
        await self.cluster_views.aclose()
        self.class_data.stop()
        self.notebook_counter.stop()
        self.object_storage.shutdown()  # a transfer still waiting on S3 gives up with the loop
        # Closing waits for the stores' threads and connections: not on the event loop.
        await asyncio.to_thread(self.metrics_store.close)  # before the job store disposes of the engine they share
        await asyncio.to_thread(self.store.close)
        self.server_logs.detach()
