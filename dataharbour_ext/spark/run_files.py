"""What the engine reads of a Spark run from its run folder, the same for every backend whose
run writes bootstrap.py's files (spark-submit's driver, a warm Spark Connect worker): its
supervisor's identity, its signals (spark.json), its progress (progress.json), its logs and,
when the run wrote one, its own error summary (error.json)."""

import os

from ..runs import folder
from ..runs.backend import RunSignals
from ..runs.identity import ProcessIdentity
from ..runs.process import Supervised
from ..store import RunRecord
from . import driver_log, driver_signals

ERROR_FILE = "error.json"  # {"error": "..."}: a summary the run wrote itself, better than a log scan


def file_version(path: str) -> tuple | None:
    """What changes when a file is replaced: written by an atomic rename, it gets a new inode
    each time, even within one mtime tick. None while it is missing."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class SparkRunFiles:
    """Readers shared by the Spark run backends. Blocking (file reads): call them in a thread."""

    # The run's Spark application may show up after the run is `running`: the engine then looks
    # for it in `signals()` whenever the progress changes, until it has one.
    late_app_signals = False

    def reattach(self, run: RunRecord) -> Supervised | None:
        identity = self.recorded_supervisor(run.run_dir)
        if run.pid is not None and run.pid_start_ticks is not None and run.pid_boot_id:
            identity = ProcessIdentity(run.pid, run.pid_start_ticks, run.pid_boot_id)
        if identity is None:
            return None
        return Supervised.attach(identity)

    def resumed(self, run: RunRecord, supervised: Supervised, cluster) -> None:
        """A run re-attached after a server restart (on the event loop: must not block)."""

    def recorded_supervisor(self, run_dir: str) -> ProcessIdentity | None:
        return folder.read_supervisor(run_dir)

    def signals_path(self, run_dir: str) -> str:
        return os.path.join(run_dir, driver_signals.SIGNALS_FILE)

    def progress_version(self, run_dir: str) -> tuple | None:
        return file_version(os.path.join(run_dir, driver_signals.PROGRESS_FILE))

    def progress(self, run_dir: str) -> dict | None:
        return driver_signals.read_progress(run_dir)

    def signals(self, run_dir: str) -> RunSignals:
        found = driver_signals.read_signals(run_dir)
        if found is None:
            return RunSignals()
        return RunSignals(ready=found.ready, app_id=found.app_id, ui_url=found.ui_url, ui_port=found.ui_port,
                          ui_stopped=found.stopped)

    def log_path(self, run_dir: str, stream: str = "all") -> str:
        return os.path.join(run_dir, folder.STDOUT_FILE if stream == "stdout" else folder.LOG_FILE)

    def error_summary(self, run_dir: str, log_tail: str, exit_code: int | None) -> str:
        written = folder.read_json(os.path.join(run_dir, ERROR_FILE))
        if written and isinstance(written.get("error"), str) and written["error"].strip():
            return written["error"].strip()[: driver_log.MAX_ERROR_LENGTH]
        return driver_log.error_summary(log_tail, exit_code)
