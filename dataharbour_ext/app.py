"""DataHarbourApp: the Jupyter Server extension. Config, services and the handler table."""

import os

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Integer, Type, Unicode, default

from . import __version__
from .events import EventHub
from .handlers.routes import handler_table
from .services.clusters import ClusterService
from .services.jobs import JobService, JobServiceConfig
from .store import JobStore


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

    # ---- jobs -------------------------------------------------------------------------
    max_concurrent_jobs = Integer(4, help="Runs per cluster at once; further submissions queue.").tag(config=True)
    max_code_bytes = Integer(1024 * 1024, help="Largest accepted program, in bytes (413 above).").tag(config=True)
    max_name_length = Integer(200, help="Longest accepted job name.").tag(config=True)
    kill_grace_seconds = Float(10.0, help="Seconds between SIGTERM and SIGKILL when killing a job.").tag(config=True)
    poll_interval = Float(0.1, help="Seconds between checks of running jobs.").tag(config=True)
    app_id_lookup_delay = Float(
        5.0,
        help="Seconds a local-mode run must have been running before its driver UI is asked for the "
        "app id (the first call costs the driver a CPU burst that short jobs should not pay).",
    ).tag(config=True)

    # ---- storage ----------------------------------------------------------------------
    state_dir = Unicode(help="Folder for the database and run folders; default <jupyter data dir>/dataharbour.").tag(
        config=True
    )
    db_url = Unicode(help="SQLAlchemy URL of the store; default SQLite in state_dir.").tag(config=True)

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
        return "sqlite:///" + os.path.join(self.state_dir, "dataharbour.db")

    def initialize_settings(self) -> None:
        # Job records and run folders can hold credentials (env, conf): owner-only.
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self.hub = EventHub()
        self.store = JobStore(self.db_url)
        self.clusters = ClusterService(self.spark_master_url, self.spark_ui_url or None)
        config = JobServiceConfig(
            root_dir=os.path.abspath(os.path.expanduser(self.serverapp.root_dir)),
            runs_dir=os.path.join(self.state_dir, "runs"),
            max_concurrent_jobs=self.max_concurrent_jobs,
            max_code_bytes=self.max_code_bytes,
            max_name_length=self.max_name_length,
            kill_grace_seconds=self.kill_grace_seconds,
            poll_interval=self.poll_interval,
            app_id_lookup_delay=self.app_id_lookup_delay,
            spark_local_ip=self.spark_local_ip,
        )
        self.jobs = self.job_service_class(
            self.store, self.clusters, self.hub, self.serverapp.contents_manager, config
        )
        self.settings.update(
            {"dataharbour": {"jobs": self.jobs, "clusters": self.clusters, "events": self.hub, "app": self}}
        )

    def initialize_handlers(self) -> None:
        self.handlers.extend(handler_table())

    async def _start_jupyter_server_extension(self, serverapp) -> None:
        await self.jobs.start()
        self.log.info(
            "DataHarbour: default cluster on %s, state in %s", self.spark_master_url, self.state_dir
        )

    async def stop_extension(self) -> None:
        # Runs are detached and keep going; the next server start re-attaches to them.
        await self.jobs.stop()
        self.store.close()
