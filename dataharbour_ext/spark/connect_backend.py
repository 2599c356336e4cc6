"""The Spark Connect run backend (`"mode": "connect"`): a job's program runs in a warm worker of
the cluster's pool (services/warm_pool.py), a Python process already connected to the
cluster's Spark Connect server, in its own session.

The run folder gets the program and connect_job.json (arguments, environment, the session's
SQL conf and the tag all of the job's Spark operations carry); the worker is bound to the run
folder when the engine releases the run, and from then on it is that run: its output is the
run's log, its supervisor's end is the run's end, a kill stops it (the worker interrupts the
job's operations on the server first). Signals, progress and the error summary come from the
same files as for batch runs (spark/run_files.py).
"""

import json

from ..runs import folder
from ..runs.backend import CONNECT_BACKEND, LaunchError
from ..runs.process import Supervised
from ..store import JobRecord, RunRecord
from . import connect_worker, driver_signals
from .run_files import ERROR_FILE, SparkRunFiles

PROGRAM_FILE = "job.py"


def job_tag(run: RunRecord) -> str:
    """The tag of a run's Spark operations (Spark tags: no commas)."""
    return f"dataharbour-{run.job_id}-{run.attempt}"


class SparkConnectBackend(SparkRunFiles):
    name = CONNECT_BACKEND

    def __init__(self, pool):
        self.pool = pool

    def prepare(self, job: JobRecord, run: RunRecord, cluster) -> None:
        try:
            run_dir = folder.create(run.run_dir)
            folder.clear_outcome(run_dir, driver_signals.SIGNALS_FILE, driver_signals.PROGRESS_FILE, ERROR_FILE)
            program = run_dir / PROGRAM_FILE
            folder.write_private(program, job.code or "")
            spec = {"program": str(program), "args": list(job.args), "env": dict(job.env), "conf": dict(job.conf),
                    "tag": job_tag(run)}
            folder.write_private(run_dir / connect_worker.JOB_FILE, json.dumps(spec))
        except UnicodeError as error:
            raise LaunchError(f"the job holds text that cannot be written as UTF-8 ({error.reason})") from None
        except OSError as error:
            raise LaunchError(f"cannot write the run folder {run.run_dir}: {error.strerror or error}") from None

    def resumed(self, run: RunRecord, supervised: Supervised, cluster) -> None:
        self.pool.follow(cluster, run.run_dir, supervised)

    async def launch(self, run: RunRecord, cluster) -> Supervised:
        """A warm worker of the cluster, to be bound to the run folder by `release()`."""
        worker = await self.pool.take(cluster)
        worker.supervised.bind_on_release(run.run_dir)
        return worker.supervised

