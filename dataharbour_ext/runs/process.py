"""The launcher's side of a run: start its supervisor, re-attach to it, learn of its end,
stop it.

Every signal goes through a pidfd verified against the process identity, so a pid the
kernel has since given to another process is never signalled.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import folder
from .identity import ProcessIdentity, boot_id, is_running, read_stat

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
FORCE_STOP_SECONDS = 2.0
RELEASE = b"go\n"
BIND = b"bind "  # warm mode: BIND + the run folder's absolute path + newline


def descendants(pid: int) -> list[ProcessIdentity]:
    """Identities of the running (non-zombie) processes below `pid`, from one scan of /proc.

    Each identity comes from the same read of /proc/<pid>/stat that names its parent, so
    every process listed was provably in the tree when it was read. The caller verifies
    `pid` itself.
    """
    children: dict[int, list[int]] = {}
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = read_stat(int(entry))
        if stat is not None:
            stats[int(entry)] = stat
            children.setdefault(stat.ppid, []).append(int(entry))
    boot = boot_id()
    found = []
    pending = list(children.get(pid, ()))
    while pending:
        child = pending.pop()
        pending.extend(children.get(child, ()))
        if is_running(stats[child]):
            found.append(ProcessIdentity(pid=child, start_ticks=stats[child].start_ticks, boot_id=boot))
    return found


def launch(run_dir: str | Path, *, held: bool = False) -> "Supervised":
    """Start `python -m dataharbour_ext.runs.supervisor RUN_DIR`, detached in its own session
    so it outlives the server. command.json must already be in the folder.

    `held`: the supervisor waits for `Supervised.release()` before it starts the command,
    so the launcher can first record who the supervisor is. Should the launcher die before
    releasing it, the supervisor sees its stdin close, runs nothing and records
    `"released": false`: no run ever goes on unrecorded."""
    log_fd = folder.open_for_append(Path(run_dir) / folder.SUPERVISOR_LOG)
    # A blocked signal stays blocked across fork and exec: a stop sent before the supervisor
    # has installed its handlers waits for them instead of killing it before it could
    # record anything. The supervisor unblocks them as its first act.
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        popen = subprocess.Popen(
            [sys.executable, "-m", "dataharbour_ext.runs.supervisor", str(run_dir)],
            stdin=subprocess.PIPE,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        os.close(log_fd)
    # The process exists at least as a zombie until `popen` reaps it, so it has an identity.
    identity = ProcessIdentity.of(popen.pid)
    assert identity is not None
    supervised = Supervised(identity, popen)
    if not held:
        supervised.release()
    return supervised


def launch_warm(slot_dir: str | Path) -> "Supervised":
    """Start a warm supervisor in `slot_dir` (command.json written with `warm=True`): its
    program starts at once and warms up, with its output in the slot's logs, until
    `Supervised.bind(run_dir)` makes it that run. Should the launcher die, or call
    `Supervised.abandon()`, before binding it, the supervisor stops the program's tree and
    records the end in the slot (`"bound": false`): an unbound program never outlives its
    launcher. Protocol: the module docstring of supervisor_warm.py."""
    command = folder.read_json(Path(slot_dir) / folder.COMMAND_FILE) or {}
    if command.get("warm") is not True:
        raise ValueError(f"{slot_dir}: {folder.COMMAND_FILE} is not marked warm")
    return launch(slot_dir, held=True)


class Supervised:
    """A run's supervisor, started here (`popen` set) or re-attached after a restart."""

    def __init__(self, identity: ProcessIdentity, popen: subprocess.Popen | None = None):
        self.identity = identity
        self.popen = popen
        self._pidfd: int | None = None
        self._bind_on_release: str | None = None

    @classmethod
    def attach(cls, identity: ProcessIdentity) -> "Supervised | None":
        """The supervisor `identity` names, if it still runs."""
        return cls(identity) if identity.matches() else None

    def exit_fd(self) -> int | None:
        """A pidfd that becomes readable when the supervisor exits (for loop.add_reader), or
        None if it has already ended. Opened once, owned by this handle."""
        if self._pidfd is None:
            self._pidfd = self.identity.open_pidfd()
        return self._pidfd

    def release(self) -> None:
        """Let a held supervisor start its command (see `launch`), or bind a warm one to the
        run folder named by `bind_on_release`."""
        if self._bind_on_release is not None:
            self.bind(self._bind_on_release)
            return
        self._close_stdin(RELEASE)

    def bind_on_release(self, run_dir: str | Path) -> None:
        """A warm supervisor handed to a launcher that records it, then calls `release()`:
        that release binds it to `run_dir` (as the engine does for every run)."""
        self._bind_on_release = str(run_dir)

    def bind(self, run_dir: str | Path) -> bool:
        """Make a warm supervisor's program (see `launch_warm`) the run in `run_dir`, an
        existing run folder: from now on its output goes to that folder, and its end is
        recorded there (exit.json), also when the program had already ended. False if the
        word could not be handed over (the supervisor has ended, or was bound or abandoned
        before): then the run folder gets nothing."""
        path = os.fsencode(os.path.abspath(run_dir))
        if b"\n" in path:
            raise ValueError(f"a run folder's path cannot hold a newline: {run_dir!r}")
        return self._close_stdin(BIND + path + b"\n")

    def abandon(self) -> None:
        """Never release a held supervisor: it ends without running anything. A warm one
        not yet bound stops its program."""
        self._close_stdin(b"")

    def _close_stdin(self, message: bytes) -> bool:
        stdin = self.popen.stdin if self.popen is not None else None
        if stdin is None or stdin.closed:
            return False
        try:
            stdin.write(message)
            stdin.close()
        except OSError:
            return False  # it already ended (a stop before the release): nothing to start
        return True

    def reap(self) -> int | None:
        """Collect our own child's exit status, so it leaves no zombie; its returncode or None."""
        return self.popen.poll() if self.popen is not None else None

    def alive(self) -> bool:
        if self.popen is not None and self.popen.poll() is not None:
            return False
        return self.identity.matches()

    def request_stop(self) -> bool:
        """Ask the supervisor to stop the run (SIGTERM); it stops the whole tree and records
        the end. False if it no longer runs."""
        if not self.alive():
            return False
        fd = self.exit_fd()
        if fd is None:
            return self.identity.send_signal(signal.SIGTERM)  # no pidfd on this platform
        try:
            signal.pidfd_send_signal(fd, signal.SIGTERM)
        except OSError:
            return False
        return True

    def force_stop(self) -> int:
        """Last resort when the supervisor does not answer: SIGKILL everything below it, then
        the supervisor itself. Returns how many processes it killed. Scans /proc: call it
        off the event loop. exit.json is not written; the caller records the end."""
        if not self.alive():
            return 0
        killed: set[ProcessIdentity] = set()
        # Kill below first (the supervisor keeps the tree together while it lives), and again
        # for anything forked meanwhile.
        deadline = time.monotonic() + FORCE_STOP_SECONDS
        while time.monotonic() < deadline:
            running = descendants(self.identity.pid)
            if not running:
                break
            for process in running:
                if process.send_signal(signal.SIGKILL):
                    killed.add(process)
            time.sleep(0.05)
        if self.identity.send_signal(signal.SIGKILL):
            killed.add(self.identity)
        if self.popen is not None:
            try:
                self.popen.wait(timeout=FORCE_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        return len(killed)

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
