"""Run supervisor: `python -m dataharbour_ext.spark.runner RUN_DIR`.

Started by the job service as a detached session leader. It runs the command in
RUN_DIR/command.json with all output appended to RUN_DIR/output.log, and when the command
ends writes RUN_DIR/exit.json. Because it does not depend on the Jupyter server, a run
finishes (and records how) even if the server is stopped or killed meanwhile.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

COMMAND_FILE = "command.json"
LOG_FILE = "output.log"
EXIT_FILE = "exit.json"


def write_exit_status(run_dir: Path, returncode: int) -> None:
    status = {"returncode": returncode, "ended_at": time.time()}
    partial = run_dir / (EXIT_FILE + ".partial")
    partial.write_text(json.dumps(status))
    os.replace(partial, run_dir / EXIT_FILE)  # atomic: readers never see half a file


def read_exit_status(run_dir: str | Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / EXIT_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _default_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def main(run_dir: Path) -> int:
    command = json.loads((run_dir / COMMAND_FILE).read_text())
    # A kill signals the whole group; the supervisor outlives its child to record the end.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with open(run_dir / LOG_FILE, "ab", buffering=0) as log:
        try:
            child = subprocess.Popen(
                command["argv"],
                cwd=command["cwd"],
                env=command["env"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # The child must die of SIGTERM/SIGINT, not inherit the supervisor's SIG_IGN.
                preexec_fn=_default_signals,
            )
        except OSError as error:
            log.write(f"DataHarbour: could not start {command['argv'][0]}: {error}\n".encode())
            write_exit_status(run_dir, 127)
            return 127
        returncode = child.wait()
    write_exit_status(run_dir, returncode)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
