"""The run supervisor's hold on the program and its process tree: stop requests and child
exits as a wake-up pipe, the child subreaper that inherits every orphan of the run, reaping,
stopping the whole tree, and copying the program's output into the run's logs. Shared by the
batch path (supervisor.py) and the warm mode (supervisor_warm.py).
"""

import ctypes
import os
import select
import selectors
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import NamedTuple

from . import folder
from .identity import ProcessIdentity
from .process import STOP_SIGNALS, descendants

PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
# Safety net only: signals (SIGCHLD, stop requests) wake the supervisor through a pipe.
IDLE_WAKEUP_SECONDS = 5.0
TREE_POLL_SECONDS = 0.1
# After SIGKILL a process dies at once unless stuck in the kernel; do not wait forever.
KILL_PATIENCE_SECONDS = 30.0
PUMP_DRAIN_SECONDS = 10.0


class Signals:
    """Stop requests and child exits, delivered as a flag plus a byte in a pipe, so the main
    loop sleeps in select() instead of polling."""

    def __init__(self) -> None:
        self.stop_signal: int | None = None
        self._read_fd, write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        # The launcher starts us with these blocked (see process.launch); one that already
        # arrived is delivered now, to the handler.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _on_stop(self, signum, frame) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    @property
    def stop_requested(self) -> bool:
        return self.stop_signal is not None

    def wait(self, timeout: float, *also: int) -> None:
        """Sleep until a signal arrives, one of the fds in `also` is readable, or `timeout`
        passes."""
        select.select([self._read_fd, *also], [], [], timeout)
        try:
            while os.read(self._read_fd, 512):
                pass
        except BlockingIOError:
            pass


LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: a forked child must not dlopen


def become_subreaper() -> None:
    if LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def program_preexec(supervisor_pid: int, niceness: int):
    """What the program's process does between fork and exec: it dies with the supervisor
    (SIGKILLed by an OOM killer or a user, the supervisor could not stop it: without this a
    daemon's JVM would run on, unowned), and runs at the run's priority."""

    def preexec() -> None:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != supervisor_pid:  # the supervisor died before the prctl
            os._exit(1)
        if niceness:
            os.nice(niceness)

    return preexec


class Reaper:
    """Every orphan of the run becomes our child: collect them all, and keep the program's
    own status."""

    def __init__(self, program_pid: int):
        self.program_pid = program_pid
        self.program_status: int | None = None

    def reap(self) -> bool:
        """Reap every exited child; True once no child (so no descendant) is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return False
            if pid == self.program_pid:
                self.program_status = os.waitstatus_to_exitcode(status)


def stop_tree(reaper: Reaper, signals: Signals, grace: float) -> set[ProcessIdentity]:
    """SIGTERM every descendant (and any that appears later), SIGKILL what is left after
    `grace`, reap everything. Returns the processes it signalled."""
    signalled: set[ProcessIdentity] = set()
    kill_at = time.monotonic() + grace
    give_up_at = kill_at + KILL_PATIENCE_SECONDS
    while not reaper.reap():
        now = time.monotonic()
        if now > give_up_at:
            print("DataHarbour supervisor: processes of the run would not die; giving up", flush=True)
            break
        running = descendants(os.getpid())
        if now < kill_at:
            for process in running:
                if process not in signalled:
                    process.send_signal(signal.SIGTERM)
                    # A stopped process only acts on SIGTERM once continued.
                    process.send_signal(signal.SIGCONT)
        else:
            for process in running:
                process.send_signal(signal.SIGKILL)
        signalled.update(running)
        signals.wait(TREE_POLL_SECONDS)
    return signalled


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class OutputPump(threading.Thread):
    """Copies the program's stdout and stderr into output.log, interleaved in arrival order
    by whole lines (so a stdout line and a stderr line never tear each other), and its stdout
    into stdout.log too. A line left unfinished is written once the stream idles. A warm
    run's pump is redirected to the run's files when it is bound."""

    CHUNK = 65536
    IDLE_FLUSH_SECONDS = 0.2
    # At a redirect, the whole lines already in the pipes still go to the old files; a
    # program that writes without pause must not hold the redirect up forever.
    REDIRECT_DRAIN_READS = 64

    def __init__(self, stdout_fd: int, stderr_fd: int, log_fd: int, stdout_log_fd: int):
        super().__init__(name="output-pump", daemon=True)
        self.stdout_fd, self.stderr_fd = stdout_fd, stderr_fd
        self.log_fd, self.stdout_log_fd = log_fd, stdout_log_fd
        self._partial = {stdout_fd: b"", stderr_fd: b""}
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()  # guards _ended and _redirect_to
        self._ended = False
        self._redirect_to: tuple[int, int] | None = None
        self._redirected = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        # Non-blocking reads: a redirect may drain a stream the selector has just reported.
        for fd in (stdout_fd, stderr_fd, self._wake_read):
            os.set_blocking(fd, False)

    def redirect(self, log_fd: int, stdout_log_fd: int) -> bool:
        """From now on write into these files (the pump owns them, and closes the ones it
        leaves); whole lines already in the pipes still go to the old ones. Returns once
        switched; False if the pump had already ended: the program's output is all written,
        and the caller keeps the files."""
        with self._lock:
            if self._ended:
                return False
            self._redirect_to = (log_fd, stdout_log_fd)
            os.write(self._wake_write, b"\0")
        self._redirected.wait(PUMP_DRAIN_SECONDS)
        return True

    def close_logs(self) -> None:
        """Once the pump has ended: close the files it wrote last."""
        os.close(self.log_fd)
        os.close(self.stdout_log_fd)

    def _write(self, source_fd: int, data: bytes) -> None:
        if not data:
            return
        try:
            write_all(self.log_fd, data)
            if source_fd == self.stdout_fd:
                write_all(self.stdout_log_fd, data)
        except OSError:
            pass  # a full disk must not block the program on a full pipe: keep draining

    def _flush_partial(self, fd: int) -> None:
        self._write(fd, self._partial[fd])
        self._partial[fd] = b""

    def _pump(self, fd: int) -> bool:
        """Copy one read of `fd`; False at its end."""
        try:
            data = os.read(fd, self.CHUNK)
        except BlockingIOError:
            return True
        if not data:
            self._selector.unregister(fd)
            self._flush_partial(fd)
            return False
        buffered = self._partial[fd] + data
        cut = buffered.rfind(b"\n") + 1
        if cut == 0 and len(buffered) >= self.CHUNK:
            cut = len(buffered)
        self._write(fd, buffered[:cut])
        self._partial[fd] = buffered[cut:]
        return True

    def _open_streams(self) -> list[int]:
        return [fd for fd in self._partial if fd in self._selector.get_map()]

    def _switch(self) -> None:
        with self._lock:
            target, self._redirect_to = self._redirect_to, None
        if target is None:
            return
        old = (self.log_fd, self.stdout_log_fd)
        self.log_fd, self.stdout_log_fd = target
        for fd in old:
            os.close(fd)
        self._redirected.set()

    def _redirect_now(self) -> None:
        try:
            while os.read(self._wake_read, 512):
                pass
        except BlockingIOError:
            pass
        # A line still unfinished stays whole: it goes to the new files once it ends.
        for fd in self._open_streams():
            for _ in range(self.REDIRECT_DRAIN_READS):
                if not select.select([fd], [], [], 0)[0] or not self._pump(fd):
                    break
        self._switch()

    def run(self) -> None:
        selector = self._selector
        for fd in self._partial:
            selector.register(fd, selectors.EVENT_READ)
        selector.register(self._wake_read, selectors.EVENT_READ)
        try:
            while self._open_streams():
                waiting = any(self._partial.values())
                events = selector.select(self.IDLE_FLUSH_SECONDS if waiting else None)
                if not events:
                    for fd in self._partial:
                        self._flush_partial(fd)
                    continue
                for key, _ in events:
                    if key.fd == self._wake_read:
                        self._redirect_now()
                    elif key.fd in selector.get_map():  # a redirect may have read it to its end
                        self._pump(key.fd)
        finally:
            with self._lock:
                self._ended = True
                os.close(self._wake_write)
            self._switch()  # one asked for as the program's output ended
            os.close(self._wake_read)
            selector.close()


def start_program(command: dict, umask: int, stdin) -> subprocess.Popen:
    return subprocess.Popen(
        command["argv"],
        cwd=command["cwd"],
        env={**os.environ, **command["env"]},
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        close_fds=True,
        umask=umask,
        # A lower CPU priority keeps Jupyter (and its users' notebooks) responsive while
        # Spark runs; on an otherwise idle machine it costs the run nothing.
        preexec_fn=program_preexec(os.getpid(), command["niceness"]),
    )


START_ERRORS = (OSError, ValueError, subprocess.SubprocessError)


def start_logged(log_dir: Path, command: dict, umask: int, stdin) -> tuple[subprocess.Popen, OutputPump]:
    """The program started with its output pumped into log_dir's logs; START_ERRORS if it
    cannot start (nothing left open then)."""
    log_fd = folder.open_for_append(log_dir / folder.LOG_FILE)
    stdout_log_fd = folder.open_for_append(log_dir / folder.STDOUT_FILE)
    try:
        program = start_program(command, umask, stdin)
    except START_ERRORS:
        os.close(log_fd)
        os.close(stdout_log_fd)
        raise
    pump = OutputPump(program.stdout.fileno(), program.stderr.fileno(), log_fd, stdout_log_fd)
    pump.start()
    return program, pump


def wait_for_end_or_stop(reaper: Reaper, signals: Signals) -> None:
    while True:
        reaper.reap()
        if reaper.program_status is not None or signals.stop_requested:
            return
        signals.wait(IDLE_WAKEUP_SECONDS)


def end_program(
    program: subprocess.Popen, reaper: Reaper, signals: Signals, pump: OutputPump, grace: float
) -> tuple[int, int]:
    """Stop what is left of the tree, let the pump drain; the program's returncode and how
    many other processes were stopped."""
    signalled = stop_tree(reaper, signals, grace)
    leftovers = sum(1 for process in signalled if process.pid != program.pid)
    returncode = reaper.program_status if reaper.program_status is not None else -signal.SIGKILL
    program.returncode = returncode  # reaped by us, not by Popen

    # The tree is gone, so every write end of the pipes is closed: the pump drains and ends.
    pump.join(PUMP_DRAIN_SECONDS)
    if not pump.is_alive():  # else something outside the run holds a pipe; exit closes all
        program.stdout.close()
        program.stderr.close()
        pump.close_logs()
    return returncode, leftovers


class Ending(NamedTuple):
    returncode: int
    stop_requested: bool  # we stopped it: it had not ended on its own first
    leftovers: int
    ended: float  # monotonic time the program ended or its stop began
    stopping: float  # seconds its tree took to go


def end_run(program: subprocess.Popen, reaper: Reaper, signals: Signals, pump: OutputPump, command: dict) -> Ending:
    """End the program now (a stop if it still runs, with the command's stop grace; else the
    leftover grace for what it left behind) and its whole tree."""
    stop_requested = reaper.program_status is None
    ended = time.monotonic()
    grace = command["stop_grace"] if stop_requested else command["leftover_grace"]
    returncode, leftovers = end_program(program, reaper, signals, pump, grace)
    return Ending(returncode, stop_requested, leftovers, ended, time.monotonic() - ended)
