"""Run supervisor: `python -m dataharbour_ext.runs.supervisor RUN_DIR`.

Started detached by `process.launch`. It runs the command in RUN_DIR/command.json, copies
its output into output.log (and its stdout into stdout.log), and owns everything the command
starts: as a child subreaper it inherits every orphan of the run, even processes that left
the process group or the session (pyspark.daemon calls setpgid; daemons double-fork). On
SIGTERM, or when the command ends, it stops that whole tree (SIGTERM, a grace period,
SIGKILL), reaps it, and only then writes exit.json: "exit.json exists" means "nothing of
the run is left". Its own stdout (supervisor.log) gets a one-line summary of the run.
"""

import ctypes
import os
import select
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import folder, process
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

    def wait(self, timeout: float) -> None:
        """Sleep until a signal arrives or `timeout` passes."""
        select.select([self._read_fd], [], [], timeout)
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
    into stdout.log too. A line left unfinished is written once the stream idles."""

    CHUNK = 65536
    IDLE_FLUSH_SECONDS = 0.2

    def __init__(self, stdout_fd: int, stderr_fd: int, log_fd: int, stdout_log_fd: int):
        super().__init__(name="output-pump", daemon=True)
        self.stdout_fd, self.stderr_fd = stdout_fd, stderr_fd
        self.log_fd, self.stdout_log_fd = log_fd, stdout_log_fd

    def _write(self, source_fd: int, data: bytes) -> None:
        if not data:
            return
        try:
            write_all(self.log_fd, data)
            if source_fd == self.stdout_fd:
                write_all(self.stdout_log_fd, data)
        except OSError:
            pass  # a full disk must not block the program on a full pipe: keep draining

    def run(self) -> None:
        partial = {self.stdout_fd: b"", self.stderr_fd: b""}
        with selectors.DefaultSelector() as selector:
            for fd in partial:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                waiting = any(partial.values())
                events = selector.select(self.IDLE_FLUSH_SECONDS if waiting else None)
                if not events:
                    for fd in partial:
                        self._write(fd, partial[fd])
                        partial[fd] = b""
                    continue
                for key, _ in events:
                    data = os.read(key.fd, self.CHUNK)
                    if not data:
                        selector.unregister(key.fd)
                        self._write(key.fd, partial[key.fd])
                        partial[key.fd] = b""
                        continue
                    buffered = partial[key.fd] + data
                    cut = buffered.rfind(b"\n") + 1
                    if cut == 0 and len(buffered) >= self.CHUNK:
                        cut = len(buffered)
                    self._write(key.fd, buffered[:cut])
                    partial[key.fd] = buffered[cut:]


def describe(returncode: int, stopped: bool) -> str:
    if returncode >= 0:
        how = f"exited with {returncode}"
    else:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    return how + (" after a stop request" if stopped else "")


def write_exit(run_dir: Path, returncode: int, stop_requested: bool, leftovers: int, error: str | None = None,
               released: bool = True) -> None:
    status = {
        "returncode": returncode,
        "ended_at": time.time(),
        "stop_requested": stop_requested,
        "leftovers": leftovers,
        "released": released,
    }
    if error is not None:
        status["error"] = error
    folder.write_json_atomically(run_dir / folder.EXIT_FILE, status)


def could_not_start(run_dir: Path, what: str, reason: str, stop_requested: bool) -> int:
    line = f"DataHarbour: could not start {what}: {reason}\n"
    try:
        log_fd = folder.open_for_append(run_dir / folder.LOG_FILE)
        try:
            write_all(log_fd, line.encode())
        finally:
            os.close(log_fd)
    except OSError:
        pass
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
    return {"argv": argv, "env": env, "cwd": cwd, "stop_grace": stop_grace, "leftover_grace": leftover_grace,
            "niceness": max(0, min(niceness, 19))}


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
    if not wait_for_release():
        write_exit(run_dir, -1, signals.stop_requested, 0, released=False)
        print("DataHarbour supervisor: the launcher never released the run; not started", flush=True)
        return 0
    if signals.stop_requested:
        write_exit(run_dir, -signals.stop_signal, True, 0)
        print(f"DataHarbour supervisor: stop requested before {command['argv'][0]} started; not started", flush=True)
        return 0

    log_fd = folder.open_for_append(run_dir / folder.LOG_FILE)
    stdout_log_fd = folder.open_for_append(run_dir / folder.STDOUT_FILE)
    try:
        program = subprocess.Popen(
            command["argv"],
            cwd=command["cwd"],
            env={**os.environ, **command["env"]},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            umask=inherited_umask,
            # A lower CPU priority keeps Jupyter (and its users' notebooks) responsive while
            # Spark runs; on an otherwise idle machine it costs the run nothing.
            preexec_fn=program_preexec(os.getpid(), command["niceness"]),
        )
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        os.close(log_fd)
        os.close(stdout_log_fd)
        return could_not_start(run_dir, command["argv"][0], str(error), signals.stop_requested)
    started = time.monotonic()
    pump = OutputPump(program.stdout.fileno(), program.stderr.fileno(), log_fd, stdout_log_fd)
    pump.start()

    reaper = Reaper(program.pid)
    while True:
        reaper.reap()
        if reaper.program_status is not None or signals.stop_requested:
            break
        signals.wait(IDLE_WAKEUP_SECONDS)
    # Stopped on request only if the program had not ended on its own first.
    stop_requested = reaper.program_status is None
    ended = time.monotonic()
    grace = command["stop_grace"] if stop_requested else command["leftover_grace"]
    signalled = stop_tree(reaper, signals, grace)
    leftovers = sum(1 for process in signalled if process.pid != program.pid)
    returncode = reaper.program_status if reaper.program_status is not None else -signal.SIGKILL
    program.returncode = returncode  # reaped by us, not by Popen

    # The tree is gone, so every write end of the pipes is closed: the pump drains and ends.
    pump.join(PUMP_DRAIN_SECONDS)
    if not pump.is_alive():  # else something outside the run holds a pipe; exit closes all
        program.stdout.close()
        program.stderr.close()
        os.close(log_fd)
        os.close(stdout_log_fd)
    write_exit(run_dir, returncode, stop_requested, leftovers)
    print(
        f"DataHarbour supervisor: {command['argv'][0]} ran {ended - started:.2f}s and "
        f"{describe(returncode, stop_requested)}; stopped {leftovers} leftover process(es) "
        f"in {time.monotonic() - ended:.2f}s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
