"""The run supervisor's warm mode (`"warm": true` in command.json, started by
`process.launch_warm(SLOT_DIR)`): a program started before it knows its run. It starts at
once, its stdin a pipe from us, its output in SLOT_DIR's logs. The launcher's one line on our
stdin decides what it becomes:
  "bind RUN_DIR\n"  it is now the run in RUN_DIR (an existing run folder): supervisor.json
                    goes into RUN_DIR, output from then on into RUN_DIR's logs, RUN_DIR plus
                    "\n" onto the program's stdin (then closed: that is how it learns its run)
                    and, at the end, exit.json into RUN_DIR (`"bound": true`). From then on
                    our stdin no longer matters, and a stop request is recorded in RUN_DIR.
  EOF, or anything else: the launcher died or abandoned the slot. The tree is stopped and
                    exit.json written in SLOT_DIR (`"bound": false, "released": false`).
A stop request before the bind does the same. A program that ends (or cannot start) before
the bind: the rest of its tree is stopped, exit.json written in SLOT_DIR at once (the slot is
dead), and the supervisor waits on for the launcher's line: a bind then settles RUN_DIR with
the program's true status (and the tail of its output), EOF ends it.
"""

import os
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

from . import folder, process
from .identity import ProcessIdentity
from .supervisor_record import append_to_log, describe, summary, write_exit
from .supervisor_tree import (
    IDLE_WAKEUP_SECONDS,
    START_ERRORS,
    OutputPump,
    Reaper,
    Signals,
    end_run,
    start_logged,
    wait_for_end_or_stop,
)

TAIL_BYTES = 16384


class Outcome(NamedTuple):
    returncode: int
    stop_requested: bool
    leftovers: int
    error: str | None = None


class LauncherWord:
    """Warm mode: the launcher's one line on our stdin, read without blocking beside the
    signals. "bind RUN_DIR" makes the program that run; EOF means the launcher died or
    abandoned the slot."""

    LIMIT = 65536  # a path, not a stream

    def __init__(self) -> None:
        os.set_blocking(0, False)
        self._received = b""
        self.complete = False

    def fds(self) -> tuple[int, ...]:
        return () if self.complete else (0,)

    def read(self) -> bool:
        """Take what has arrived; True once the line (or EOF) is in."""
        while not self.complete:
            try:
                data = os.read(0, 4096)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            self._received += data
            if not data or b"\n" in data or len(self._received) > self.LIMIT:
                self.complete = True
                # Let go of the launcher's pipe, but keep fd 0 taken (by /dev/null) so that
                # no file opened later becomes our stdin.
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.close(null)
        return self.complete

    def run_dir(self) -> Path | None:
        """The run folder a complete "bind RUN_DIR" line names (an absolute path), else None."""
        line, newline, _ = self._received.partition(b"\n")
        if not (self.complete and newline and line.startswith(process.BIND)):
            return None
        path = Path(os.fsdecode(line[len(process.BIND) :]))
        return path if path.is_absolute() else None


def close_quietly(pipe) -> None:
    try:
        pipe.close()
    except OSError:
        pass  # the program has ended: nothing more to tell it


def tail_of_log(run_dir: Path) -> bytes:
    """The last lines of a folder's output.log, ending in a newline."""
    try:
        with open(run_dir / folder.LOG_FILE, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - TAIL_BYTES))
            data = log.read()
    except OSError:
        return b""
    if size > TAIL_BYTES:
        data = data[data.find(b"\n") + 1 :]  # from the first whole line
    return data if not data or data.endswith(b"\n") else data + b"\n"


def bind(run_dir: Path, program: subprocess.Popen, pump: OutputPump) -> str | None:
    """Make the running program the run in `run_dir`; None once done, else why not."""
    try:
        folder.write_json_atomically(run_dir / folder.SUPERVISOR_FILE, ProcessIdentity.of(os.getpid()).to_json())
        log_fd = folder.open_for_append(run_dir / folder.LOG_FILE)
        try:
            stdout_log_fd = folder.open_for_append(run_dir / folder.STDOUT_FILE)
        except OSError:
            os.close(log_fd)
            raise
    except OSError as error:
        return str(error)
    # Output first, then the word: whatever the program prints once it knows its run is the
    # run's, and nothing it printed while warming.
    if not pump.redirect(log_fd, stdout_log_fd):
        os.close(log_fd)  # its output has ended: the program is ending, exit.json tells how
        os.close(stdout_log_fd)
    try:
        program.stdin.write(os.fsencode(run_dir) + b"\n")
    except OSError:
        pass
    close_quietly(program.stdin)
    return None


def settle_ended_run(run_dir: Path, slot_dir: Path, outcome: Outcome, command: dict) -> None:
    """A bind that came after the program had ended (or could not start): the run still gets
    the program's true end, and the last of its output, so it is settled, never left open."""
    how = describe(outcome.returncode, outcome.stop_requested)
    note = (
        f"DataHarbour: {command['argv'][0]} {how} before this run was handed to it; "
        f"the last of its output, from {slot_dir / folder.LOG_FILE}:\n"
    )
    try:
        folder.write_json_atomically(run_dir / folder.SUPERVISOR_FILE, ProcessIdentity.of(os.getpid()).to_json())
        append_to_log(run_dir, note.encode() + tail_of_log(slot_dir))
        write_exit(run_dir, *outcome, bound=True, slot=str(slot_dir))
    except OSError as error:
        print(f"DataHarbour supervisor: could not record the end in {run_dir}: {error}", flush=True)
        return
    print(f"DataHarbour supervisor: bound to {run_dir} after the program had ended; its end recorded there", flush=True)


def end_unbound(slot_dir: Path, outcome: Outcome, word: LauncherWord | None, signals: Signals, command: dict) -> int:
    """Record the slot's end; a program that ended by itself may still be bound: wait for the
    launcher's line (a stop request or EOF ends the wait)."""
    write_exit(slot_dir, *outcome, released=False, bound=False)
    if word is None:
        return 0
    if not outcome.stop_requested:
        while not word.read() and not signals.stop_requested:
            signals.wait(IDLE_WAKEUP_SECONDS, *word.fds())
    word.read()  # a bind already sent still counts
    run_dir = word.run_dir()
    if run_dir is not None:
        settle_ended_run(run_dir, slot_dir, outcome, command)
    return 0


def run_warm(slot_dir: Path, command: dict, signals: Signals, umask: int) -> int:
    word = LauncherWord()
    try:
        program, pump = start_logged(slot_dir, command, umask, subprocess.PIPE)
    except START_ERRORS as error:
        line = f"DataHarbour: could not start {command['argv'][0]}: {error}\n"
        append_to_log(slot_dir, line.encode())
        print(line.rstrip(), flush=True)
        return end_unbound(slot_dir, Outcome(127, signals.stop_requested, 0, str(error)), word, signals, command)
    started = time.monotonic()
    reaper = Reaper(program.pid)

    while True:
        reaper.reap()
        if word.read() or reaper.program_status is not None or signals.stop_requested:
            break
        signals.wait(IDLE_WAKEUP_SECONDS, *word.fds())
    run_dir = word.run_dir()
    if run_dir is not None and reaper.program_status is None and not signals.stop_requested:
        error = bind(run_dir, program, pump)
        if error is None:
            wait_for_end_or_stop(reaper, signals)
            end = end_run(program, reaper, signals, pump, command)
            write_exit(run_dir, end.returncode, end.stop_requested, end.leftovers, bound=True, slot=str(slot_dir))
            print(summary(command, end.ended - started, end) + f"; bound to {run_dir}", flush=True)
            return 0
        print(f"DataHarbour supervisor: could not bind to {run_dir}: {error}", flush=True)
        word = None  # nothing to record there

    # Unbound: the program ended by itself, or we stop it (stop request, launcher gone,
    # abandoned, a bind that failed). Its stdin's EOF tells a waiting program first.
    close_quietly(program.stdin)
    end = end_run(program, reaper, signals, pump, command)
    print(summary(command, end.ended - started, end) + "; never bound", flush=True)
    return end_unbound(slot_dir, Outcome(end.returncode, end.stop_requested, end.leftovers), word, signals, command)
