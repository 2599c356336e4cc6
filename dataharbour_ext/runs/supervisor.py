"""Run supervisor: `python -m dataharbour_ext.runs.supervisor RUN_DIR`.

Started detached by `process.launch`. It runs the command in RUN_DIR/command.json, copies
its output into output.log (and its stdout into stdout.log), and owns everything the command
starts: as a child subreaper it inherits every orphan of the run, even processes that left
the process group or the session (pyspark.daemon calls setpgid; daemons double-fork). On
SIGTERM, or when the command ends, it stops that whole tree (SIGTERM, a grace period,
SIGKILL), reaps it, and only then writes exit.json: "exit.json exists" means "nothing of
the run is left". Its own stdout (supervisor.log) gets a one-line summary of the run.

Warm mode (`"warm": true` in command.json): see supervisor_warm.py. The program's tree is
held by supervisor_tree.py; what the run's folder gets at its end, by supervisor_record.py.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from . import folder, process
from .identity import ProcessIdentity
from .supervisor_record import append_to_log, summary, write_exit
from .supervisor_tree import (
    START_ERRORS,
    Reaper,
    Signals,
    become_subreaper,
    end_run,
    start_logged,
    wait_for_end_or_stop,
)
from .supervisor_warm import run_warm


def could_not_start(run_dir: Path, what: str, reason: str, stop_requested: bool) -> int:
    line = f"DataHarbour: could not start {what}: {reason}\n"
    append_to_log(run_dir, line.encode())
    write_exit(run_dir, 127, stop_requested, 0, error=reason)
    print(line.rstrip(), flush=True)
    return 0


def lower_priority(niceness: int) -> None:
    """Give the run less CPU than Jupyter when both want it. The supervisor leads its own
    session, which the kernel's autogroup scheduling treats as one group competing with the
    server's session as an equal, whatever the nice value of its processes: so the group's
    own nice value is set too (where the kernel has autogroups)."""
    if niceness <= 0:
        return
    try:
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(niceness))
    except OSError:
        pass  # no autogroup scheduling here: the processes' own nice value is what counts


def wait_for_release() -> bool:
    """The launcher writes `go` to our stdin once it has recorded who we are; EOF without it
    means the launcher died first, and the run must not start unrecorded."""
    try:
        with os.fdopen(0, "rb", closefd=True) as stdin:
            return stdin.readline().strip() == process.RELEASE.strip()
    except OSError:
        return False


def read_command(run_dir: Path) -> dict | None:
    command = folder.read_json(run_dir / folder.COMMAND_FILE)
    if command is None:
        return None
    argv, env, cwd = command.get("argv"), command.get("env", {}), command.get("cwd")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        return None
    if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
        return None
    if cwd is not None and not isinstance(cwd, str):
        return None
    try:
        stop_grace = float(command.get("stop_grace_seconds", 10.0))
        leftover_grace = float(command.get("leftover_grace_seconds", 5.0))
        niceness = int(command.get("niceness", 0))
    except (TypeError, ValueError):
        return None
    warm = command.get("warm", False)
    if not isinstance(warm, bool):
        return None
    return {
        "argv": argv,
        "env": env,
        "cwd": cwd,
        "stop_grace": stop_grace,
        "leftover_grace": leftover_grace,
        "niceness": max(0, min(niceness, 19)),
        "warm": warm,
    }


def main(run_dir: Path) -> int:
    # First of all: from here on a stop request is a flag, never a lost signal.
    signals = Signals()
    inherited_umask = os.umask(0o077)  # our files are owner-only; the program keeps its umask
    become_subreaper()
    folder.write_json_atomically(run_dir / folder.SUPERVISOR_FILE, ProcessIdentity.of(os.getpid()).to_json())

    command = read_command(run_dir)
    if command is None:
        return could_not_start(
            run_dir, "the run", f"{folder.COMMAND_FILE} is missing or malformed", signals.stop_requested
        )
    lower_priority(command["niceness"])
    if command["warm"]:
        return run_warm(run_dir, command, signals, inherited_umask)
    if not wait_for_release():
        write_exit(run_dir, -1, signals.stop_requested, 0, released=False)
        print("DataHarbour supervisor: the launcher never released the run; not started", flush=True)
        return 0
    if signals.stop_requested:
        write_exit(run_dir, -signals.stop_signal, True, 0)
        print(f"DataHarbour supervisor: stop requested before {command['argv'][0]} started; not started", flush=True)
        return 0

    try:
        program, pump = start_logged(run_dir, command, inherited_umask, subprocess.DEVNULL)
    except START_ERRORS as error:
        return could_not_start(run_dir, command["argv"][0], str(error), signals.stop_requested)
    started = time.monotonic()

    reaper = Reaper(program.pid)
    wait_for_end_or_stop(reaper, signals)
    end = end_run(program, reaper, signals, pump, command)
    write_exit(run_dir, end.returncode, end.stop_requested, end.leftovers)
    print(summary(command, end.ended - started, end), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
