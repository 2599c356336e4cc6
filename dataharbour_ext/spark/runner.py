"""Run supervisor: `python -m dataharbour_ext.spark.runner RUN_DIR`.

Started by the job service as a detached session leader. It runs the command in
RUN_DIR/command.json with all output appended to RUN_DIR/output.log, and when the command
ends, stops whatever the run left behind in its process group and writes RUN_DIR/exit.json.
Because it does not depend on the Jupyter server, a run finishes (and records how) even if
the server is stopped or killed meanwhile.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import process_group
from .run_dir import COMMAND_FILE, LOG_FILE, SUPERVISOR_FILE, write_exit_status, write_json_atomically

LEFTOVER_GRACE_SECONDS = 5.0


def _default_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_leftovers(grace: float = LEFTOVER_GRACE_SECONDS) -> int:
    """Background processes the program started (or Python workers the JVM left) die with
    the run: SIGTERM, then SIGKILL after `grace`. The supervisor itself ignores SIGTERM."""
    me = os.getpid()
    others = [pid for pid in process_group.members(os.getpgid(0)) if pid != me]
    if not others:
        return 0
    found = len(others)
    process_group.signal_group(os.getpgid(0), signal.SIGTERM)
    deadline = time.monotonic() + grace
    while others and time.monotonic() < deadline:
        time.sleep(0.1)
        others = [pid for pid in process_group.members(os.getpgid(0)) if pid != me]
    for pid in others:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return found


def main(run_dir: Path) -> int:
    write_json_atomically(
        run_dir / SUPERVISOR_FILE, {"pid": os.getpid(), "started": process_group.start_time(os.getpid())}
    )
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
        started = time.monotonic()
        returncode = child.wait()
        ran = time.monotonic() - started
        leftovers = stop_leftovers()
        # The supervisor's own output goes to supervisor.log: a record of how the run ended.
        print(f"command exited with {returncode} after {ran:.2f}s; stopped {leftovers} leftover processes "
              f"in {time.monotonic() - started - ran:.2f}s", flush=True)
    write_exit_status(run_dir, returncode)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
