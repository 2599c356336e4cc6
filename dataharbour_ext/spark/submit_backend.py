"""The spark-submit run backend: a job's program runs as a Spark application in client mode,
its driver started by `spark-submit` under the run's supervisor.

The run folder gets the program, the job's Spark conf (a 0600 properties file, never the
command line; with the object storage's S3A settings where the cluster and job set none),
and the command. The driver's Python process runs the program through a
small bootstrap that writes the application id and UI address to the run folder as soon as
the SparkContext is up, so the engine never has to ask the driver's REST API.
"""

import asyncio
import os
from contextlib import contextmanager

import psutil

from ..runs import folder
from ..runs import process as supervision
from ..runs.backend import BATCH_BACKEND, LaunchError
from ..runs.identity import ProcessIdentity
from ..runs.process import Supervised
from ..store import JobRecord, RunRecord
from . import driver_signals
from .bootstrap import PROGRESS_INTERVAL
from .class_data import ClassDataArchive
from .log_config import SparkLogConfig
from .run_files import SparkRunFiles
from .s3a_conf import s3a_defaults
from .submit import SubmitSpec, build_command, build_environment_overlay, spark_conf, write_properties

PROGRAM_FILE = "job.py"
PROPERTIES_FILE = "spark.properties"


class SparkSubmitBackend(SparkRunFiles):
    name = BATCH_BACKEND

    def __init__(self, *, root_dir: str, state_dir: str, local_ip: str, stop_grace_seconds: float,
                 class_data: ClassDataArchive | None = None, default_log_level: str | None = None,
                 niceness: int = 0, progress_interval: float = PROGRESS_INTERVAL, s3_settings=None):
        self.root_dir = root_dir
        self.s3_settings = s3_settings  # MinioSettings: runs get its S3A settings (spark/s3a_conf.py)
        self.progress_interval = progress_interval
        self.niceness = niceness
        self.log_config = SparkLogConfig(state_dir)
        self.local_ip = local_ip
        self.stop_grace_seconds = stop_grace_seconds
        self.class_data = class_data
        self.default_log_level = default_log_level

    def prepare(self, job: JobRecord, run: RunRecord, cluster) -> None:
        with launch_errors(run):
            run_dir = folder.create(run.run_dir)
            folder.clear_outcome(run_dir, driver_signals.SIGNALS_FILE, driver_signals.PROGRESS_FILE)
            program = run_dir / PROGRAM_FILE
            folder.write_private(program, job.code or "")
            spec = self.driver_spec(job, cluster, run_dir, app_file=str(program),
                                    signals_file=str(run_dir / driver_signals.SIGNALS_FILE))
            folder.write_command(run_dir, build_command(spec), build_environment_overlay(spec), self.root_dir,
                                 stop_grace_seconds=self.stop_grace_seconds, niceness=self.niceness)

    def driver_spec(self, job: JobRecord, cluster, run_dir, app_file: str, signals_file: str | None) -> SubmitSpec:
        """The run's driver on `cluster` with the job's settings; its conf written to the run's
        owner-only properties file."""
        spec = SubmitSpec(
            master=cluster.master_url,
            app_name=job.name,
            app_file=app_file,
            args=list(job.args),
            conf=dict(job.conf),
            cluster_conf=dict(cluster.conf),
            env=dict(job.env),
            local_ip=self.local_ip,
            signals_file=signals_file,
            java_options=[
                *(self.class_data.java_options() if self.class_data else []),
                *self.log_config.java_options(job.log_level or cluster.log_level or self.default_log_level),
            ],
            progress_interval=self.progress_interval,
        )
        conf = spark_conf(spec)
        # Ours only where the cluster and the job are silent, and only in the owner-only file.
        conf = {**s3a_defaults(self.s3_settings, conf), **conf}
        if conf:
            spec.properties_file = str(run_dir / PROPERTIES_FILE)
            write_properties(spec.properties_file, conf)
        return spec

    async def launch(self, run: RunRecord, cluster) -> Supervised:
        return await asyncio.to_thread(supervision.launch, run.run_dir, held=True)

    def recorded_supervisor(self, run_dir: str) -> ProcessIdentity | None:
        return folder.read_supervisor(run_dir) or _first_release_supervisor(run_dir)


@contextmanager
def launch_errors(run: RunRecord):
    """What can go wrong writing a run folder, as the LaunchError the job's `error` shows."""
    try:
        yield
    except UnicodeError as error:
        raise LaunchError(f"the job holds text that cannot be written as UTF-8 ({error.reason})") from None
    except OSError as error:
        raise LaunchError(f"cannot write the run folder {run.run_dir}: {error.strerror or error}") from None
    except ValueError as error:
        raise LaunchError(str(error)) from None


def _first_release_supervisor(run_dir: str) -> ProcessIdentity | None:
    """A run started by the first release (`{"pid", "started"}` with a wall-clock start):
    that pid is its supervisor if a process started within the same second still has it.
    Only runs live across the upgrade need this."""
    legacy = folder.read_json(os.path.join(run_dir, folder.SUPERVISOR_FILE))
    if not legacy or not isinstance(legacy.get("pid"), int) or not isinstance(legacy.get("started"), (int, float)):
        return None
    try:
        if abs(psutil.Process(legacy["pid"]).create_time() - legacy["started"]) >= 1.0:
            return None
    except psutil.Error:
        return None
    return ProcessIdentity.of(legacy["pid"])

