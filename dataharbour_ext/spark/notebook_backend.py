"""The notebook run backend: a notebook job's cells run in order, in a kernel of its own, under
the run's supervisor (`python -m dataharbour_ext.spark.notebook_runner RUN_DIR`).

The run folder gets the notebook as submitted (input.ipynb), notebook_job.json (parameters,
kernel, working folder) and the command. The kernel inherits the run's environment: Spark's
(SPARK_HOME, SPARK_LOCAL_IP, the driver's JVM options) and PYSPARK_SUBMIT_ARGS naming the
job's cluster and its conf (the 0600 properties file), so `SparkSession.builder.getOrCreate()`
in a cell starts a driver on the job's cluster, as a batch run's program would.

The engine reads the run from the same kinds of files as a batch run's:
- ready (`running`): the kernel is up (progress/cells.json's kernel_ready_at);
- progress: progress/cells.json from the runner and progress/progress.json from the kernel's
  SparkContext hooks, shown together;
- error: error.json, which the runner writes with the failing cell's exception.
"""

import json
import os
import sys

from ..runs import folder
from ..runs.backend import NOTEBOOK_BACKEND, RunSignals
from ..store import JobRecord, RunRecord
from . import driver_signals
from .notebook_runner import CELLS_FILE, JOB_FILE, PROGRESS_DIR
from .run_files import ERROR_FILE, file_version
from .submit import build_environment_overlay, pyspark_submit_args
from .submit_backend import SparkSubmitBackend, launch_errors

INPUT_FILE = "input.ipynb"
OUTPUT_FILE = "output.ipynb"
RUNNER = "dataharbour_ext.spark.notebook_runner"


class NotebookBackend(SparkSubmitBackend):
    """A spark-submit run whose driver the kernel's pyspark starts: the same driver settings,
    another program and other signals."""

    name = NOTEBOOK_BACKEND
    late_app_signals = True  # running once the kernel is up; its Spark application comes later, if ever

    def __init__(self, *, cell_timeout: float | None = None, **driver_settings):
        super().__init__(**driver_settings)
        self.cell_timeout = cell_timeout  # None: a cell may run as long as it needs

    def prepare(self, job: JobRecord, run: RunRecord, cluster) -> None:
        with launch_errors(run):
            run_dir = folder.create(run.run_dir)
            folder.clear_outcome(run_dir, ERROR_FILE, OUTPUT_FILE, *(os.path.join(PROGRESS_DIR, name) for name in (
                CELLS_FILE, driver_signals.SIGNALS_FILE, driver_signals.PROGRESS_FILE)))
            folder.write_private(run_dir / INPUT_FILE, job.code or "")
            cwd = self._working_folder(job.notebook["path"])
            folder.write_private(run_dir / JOB_FILE, json.dumps({
                "input": INPUT_FILE,
                "output": OUTPUT_FILE,
                "parameters": job.notebook.get("parameters") or {},
                "kernel_name": job.notebook.get("kernel_name"),
                "cwd": cwd,
                "cell_timeout": self.cell_timeout,
            }))
            # No application file: the kernel's pyspark runs spark-submit with these options.
            spec = self.driver_spec(job, cluster, run_dir, app_file="", signals_file=None)
            env = {**build_environment_overlay(spec), "PYSPARK_SUBMIT_ARGS": pyspark_submit_args(spec)}
            folder.write_command(run_dir, [sys.executable, "-m", RUNNER, str(run_dir)], env, cwd,
                                 stop_grace_seconds=self.stop_grace_seconds, niceness=self.niceness)

    def _working_folder(self, notebook_path: str) -> str:
        """The notebook's own folder, as when it runs in JupyterLab: relative paths in its cells
        mean the same. The root when that folder is gone (or the contents are not on disk)."""
        root = os.path.realpath(self.root_dir)
        folder_path = os.path.realpath(os.path.join(root, os.path.dirname(notebook_path)))
        inside = folder_path == root or folder_path.startswith(root + os.sep)
        return folder_path if inside and os.path.isdir(folder_path) else root

    # ---- what the engine reads ------------------------------------------------------------

    def signals_path(self, run_dir: str) -> str:
        return os.path.join(run_dir, PROGRESS_DIR, CELLS_FILE)

    def signals(self, run_dir: str) -> RunSignals:
        cells = _read_cells(run_dir)
        ready = bool(cells and cells.get("kernel_ready_at"))
        spark = driver_signals.read_signals(os.path.join(run_dir, PROGRESS_DIR))  # once a cell starts Spark
        if spark is None:
            return RunSignals(ready=ready)
        return RunSignals(ready=ready, app_id=spark.app_id, ui_url=spark.ui_url, ui_port=spark.ui_port,
                          ui_stopped=spark.stopped)

    def progress_version(self, run_dir: str) -> tuple | None:
        folder_path = os.path.join(run_dir, PROGRESS_DIR)
        versions = tuple(file_version(os.path.join(folder_path, name))
                         for name in (CELLS_FILE, driver_signals.PROGRESS_FILE, driver_signals.SIGNALS_FILE))
        return None if versions == (None, None, None) else versions

    def progress(self, run_dir: str) -> dict | None:
        cells = _read_cells(run_dir)
        spark = driver_signals.read_progress(os.path.join(run_dir, PROGRESS_DIR))
        if cells is None and spark is None:
            return None
        progress = spark or driver_signals.empty_progress()
        if cells is not None:
            counts = cells.get("cells") if isinstance(cells.get("cells"), dict) else {}
            progress["cells"] = {name: driver_signals.count(counts.get(name)) for name in driver_signals.COUNTS}
            current = cells.get("current_cell")
            progress["current_cell"] = current if driver_signals.count(current) == current else None
            percent = driver_signals.number(cells.get("percent"))
            progress["percent"] = min(100.0, max(0.0, percent)) if percent is not None else 0.0
        return progress

    def output_path(self, run_dir: str) -> str:
        """The executed notebook: rewritten after each cell while the run goes on."""
        return os.path.join(run_dir, OUTPUT_FILE)


def _read_cells(run_dir: str) -> dict | None:
    return driver_signals.read_object(os.path.join(run_dir, PROGRESS_DIR, CELLS_FILE))
