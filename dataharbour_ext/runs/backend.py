"""What a way of running a job must provide (spark-submit today; Spark Connect next).

The engine is generic: it claims a queued run, asks the backend to prepare the run folder
and launch it under a supervisor, learns of its end through the supervisor, and reads the
backend's signals (engine up, application id, UI address) and progress from files the run
writes.
"""

from dataclasses import dataclass
from typing import Protocol

from ..store import JobRecord, RunRecord
from .process import Supervised

# Names of the run backends (runs.backend in the store): a job's mode picks one per run.
BATCH_BACKEND = "spark-submit"
CONNECT_BACKEND = "spark-connect"
NOTEBOOK_BACKEND = "notebook"  # a notebook job: its cells in a kernel of its own (PySpark classic inside)


@dataclass
class RunSignals:
    """What the run has revealed about its engine, read from the run folder."""

    ready: bool = False  # the engine is up: the run is `running`
    app_id: str | None = None
    ui_url: str | None = None
    ui_port: int | None = None
    ui_stopped: bool = False


class LaunchError(Exception):
    """The run could not be prepared or started; the message says why, for the user."""


class RunBackend(Protocol):
    name: str

    def prepare(self, job: JobRecord, run: RunRecord, cluster) -> None:
        """Write the run folder (program, configuration, command). Blocking: call it in
        a thread. Raises LaunchError with a reason the user can act on."""

    async def launch(self, run: RunRecord, cluster) -> Supervised:
        """Start the run's supervisor (or take a warm one), held until `Supervised.release()`.
        Never blocks the event loop."""

    def resumed(self, run: RunRecord, supervised: Supervised, cluster) -> None:
        """The engine re-attached to the run after a server restart. On the event loop."""

    def reattach(self, run: RunRecord) -> Supervised | None:
        """The run's supervisor if it is provably still that process, after a restart."""

    def signals_path(self, run_dir: str) -> str:
        """The file the run's signals come from (the engine re-reads it when it changes)."""

    def signals(self, run_dir: str) -> RunSignals:
        """Cheap: what the run has revealed so far."""

    def progress_version(self, run_dir: str) -> tuple | None:
        """Cheap (a stat or a few; on the event loop): changes whenever the run's progress
        files change; None before there are any."""

    def progress(self, run_dir: str) -> dict | None:
        """Cheap: the run's latest progress, `{"jobs": {total, done, failed, active},
        "stages": {...}, "tasks": {...}, "current_stage": str | None, "percent": float}`,
        or None before there is any."""

    def log_path(self, run_dir: str, stream: str = "all") -> str:
        """The file holding the run's output: `all` of it, or the program's `stdout`."""

    def error_summary(self, run_dir: str, log_tail: str, exit_code: int | None) -> str:
        """Why a run that ended with `exit_code` failed, for the job's `error`. Blocking."""
