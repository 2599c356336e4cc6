"""What the run supervisor records of a run's end: exit.json, a note in output.log, and the
one-line summary on its own stdout (supervisor.log).
"""

import os
import signal
import time
from pathlib import Path

from . import folder
from .supervisor_tree import Ending, write_all


def describe(returncode: int, stopped: bool) -> str:
    if returncode >= 0:
        how = f"exited with {returncode}"
    else:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    return how + (" after a stop request" if stopped else "")


def write_exit(
    run_dir: Path,
    returncode: int,
    stop_requested: bool,
    leftovers: int,
    error: str | None = None,
    released: bool = True,
    **warm_fields,
) -> None:
    status = {
        "returncode": returncode,
        "ended_at": time.time(),
        "stop_requested": stop_requested,
        "leftovers": leftovers,
        "released": released,
        **warm_fields,
    }
    if error is not None:
        status["error"] = error
    folder.write_json_atomically(run_dir / folder.EXIT_FILE, status)


def append_to_log(run_dir: Path, data: bytes) -> None:
    try:
        log_fd = folder.open_for_append(run_dir / folder.LOG_FILE)
        try:
            write_all(log_fd, data)
        finally:
            os.close(log_fd)
    except OSError:
        pass


def summary(command: dict, ran: float, end: Ending) -> str:
    return (
        f"DataHarbour supervisor: {command['argv'][0]} ran {ran:.2f}s and "
        f"{describe(end.returncode, end.stop_requested)}; stopped {end.leftovers} leftover process(es) "
        f"in {end.stopping:.2f}s"
    )
