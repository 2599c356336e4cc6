"""The layout of a run's folder, shared by the supervisor and the job service.

    job.py           the program (snapshot of the job's code)
    spark.properties the job's Spark conf (0600: conf may hold credentials)
    command.json     argv, env and cwd of spark-submit (0600: the env may hold credentials)
    supervisor.json  the supervisor's pid and start time, written as it starts
    supervisor.log   the supervisor's own output
    output.log       everything the run printed (spark-submit, driver, program)
    exit.json        the exit status, written atomically when the run has ended
"""

import json
import os
import time
from pathlib import Path

PROGRAM_FILE = "job.py"
COMMAND_FILE = "command.json"
PROPERTIES_FILE = "spark.properties"
SUPERVISOR_FILE = "supervisor.json"
SUPERVISOR_LOG = "supervisor.log"
LOG_FILE = "output.log"
EXIT_FILE = "exit.json"


def write_json_atomically(path: Path, data: dict, mode: int = 0o644) -> None:
    """Readers never see half a file: write a sibling, then rename over."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(partial, path)


def read_json(path: str | Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_exit_status(run_dir: Path, returncode: int) -> None:
    write_json_atomically(run_dir / EXIT_FILE, {"returncode": returncode, "ended_at": time.time()})


def read_exit_status(run_dir: str | Path) -> dict | None:
    return read_json(Path(run_dir) / EXIT_FILE)


def read_supervisor(run_dir: str | Path) -> dict | None:
    return read_json(Path(run_dir) / SUPERVISOR_FILE)
