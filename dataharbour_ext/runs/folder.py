"""The layout of a run's folder, shared by the launcher and the supervisor.

    command.json     argv, env overlay, cwd and grace periods of the command (the server's
                     own environment is never written: only the overlay is); "warm" for a
                     program started before its run is known (a warm slot's folder)
    supervisor.json  the supervisor's identity (pid, start ticks, boot id)
    supervisor.log   the supervisor's own output: how the run ended
    output.log       everything the command printed, stdout and stderr interleaved by line
    stdout.log       the command's stdout only
    exit.json        how the run ended; it exists only once nothing of the run is left.
                     A warm program's end goes into the run folder it was bound to
                     ("bound": true, "slot": its slot folder), or into its slot folder when
                     it never was ("bound": false, "released": false)

The folder is 0700 and every file in it 0600: commands and output may hold credentials.
"""

import json
import os
import tempfile
from pathlib import Path

from .identity import ProcessIdentity

COMMAND_FILE = "command.json"
SUPERVISOR_FILE = "supervisor.json"
SUPERVISOR_LOG = "supervisor.log"
LOG_FILE = "output.log"
STDOUT_FILE = "stdout.log"
EXIT_FILE = "exit.json"

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def clear_outcome(run_dir: str | Path, *names: str) -> None:
    """Remove what an earlier launch in this folder recorded (a run queued again after a
    launch that was never released), so it cannot be taken for this launch's outcome."""
    for name in (SUPERVISOR_FILE, EXIT_FILE, *names):
        try:
            os.unlink(Path(run_dir) / name)
        except FileNotFoundError:
            pass


def create(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask and ignored for a folder that already existed.
    os.chmod(path, FOLDER_MODE)
    return path


def write_private(path: str | Path, text: str) -> None:
    """An owner-only text file (a run's program, its job description), replaced whole."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def open_for_append(path: str | Path) -> int:
    """An owner-only file opened for appending (never truncated), as a raw fd."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def write_json_atomically(path: str | Path, data: dict, mode: int = FILE_MODE) -> None:
    """Readers never see half a file: write a sibling, then rename it over."""
    path = Path(path)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(partial, path)
    except BaseException:
        try:
            os.unlink(partial)
        except OSError:
            pass
        raise


def read_json(path: str | Path) -> dict | None:
    """The JSON object in `path`, or None if it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_exit_status(run_dir: str | Path) -> dict | None:
    return read_json(Path(run_dir) / EXIT_FILE)


def read_supervisor(run_dir: str | Path) -> ProcessIdentity | None:
    return ProcessIdentity.from_json(read_json(Path(run_dir) / SUPERVISOR_FILE))


def write_command(
    run_dir: str | Path,
    argv: list[str],
    env_overlay: dict[str, str],
    cwd: str | Path,
    stop_grace_seconds: float = 10.0,
    leftover_grace_seconds: float = 5.0,
    niceness: int = 0,
    warm: bool = False,
) -> None:
    """What the supervisor runs. `env_overlay` holds only what differs from the environment
    the supervisor inherits, so the server's own environment never lands on disk. `warm`:
    the program starts at once and learns its run later (`process.launch_warm`)."""
    write_json_atomically(
        Path(run_dir) / COMMAND_FILE,
        {
            "argv": [str(arg) for arg in argv],
            "env": {str(k): str(v) for k, v in env_overlay.items()},
            "cwd": str(cwd),
            "stop_grace_seconds": float(stop_grace_seconds),
            "leftover_grace_seconds": float(leftover_grace_seconds),
            "niceness": int(niceness),
            "warm": bool(warm),
        },
    )
