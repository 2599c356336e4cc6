"""Run supervisor: `python -m dataharbour_ext.runs.supervisor RUN_DIR`.

Started detached by `process.launch`. It runs the command in RUN_DIR/command.json, copies
its output into output.log (and its stdout into stdout.log), and owns everything the command
starts: as a child subreaper it inherits every orphan of the run, even processes that left
the process group or the session (pyspark.daemon calls setpgid; daemons double-fork). On
SIGTERM, or when the command ends, it stops that whole tree (SIGTERM, a grace period,
SIGKILL), reaps it, and only then writes exit.json: "exit.json exists" means "nothing of
the run is left". Its own stdout (supervisor.log) gets a one-line summary of the run.

Warm mode (`"warm": true` in command.json, started by `process.launch_warm(SLOT_DIR)`): a
program started before it knows its run. It starts at once, its stdin a pipe from us, its
output in SLOT_DIR's logs. The launcher's one line on our stdin decides what it becomes:
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
from typing import NamedTuple

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
               released: bool = True, **warm_fields) -> None:
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
    return {"argv": argv, "env": env, "cwd": cwd, "stop_grace": stop_grace, "leftover_grace": leftover_grace,
            "niceness": max(0, min(niceness, 19)), "warm": warm}


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


def wait_for_end_or_stop(reaper: Reaper, signals: Signals) -> None:
    while True:
        reaper.reap()
        if reaper.program_status is not None or signals.stop_requested:
            return
        signals.wait(IDLE_WAKEUP_SECONDS)


def end_program(program: subprocess.Popen, reaper: Reaper, signals: Signals, pump: OutputPump,
                grace: float) -> tuple[int, int]:
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


def summary(command: dict, ran: float, returncode: int, stop_requested: bool, leftovers: int,
            stopping: float) -> str:
    return (
        f"DataHarbour supervisor: {command['argv'][0]} ran {ran:.2f}s and "
        f"{describe(returncode, stop_requested)}; stopped {leftovers} leftover process(es) "
        f"in {stopping:.2f}s"
    )


# --- warm mode (see the module docstring) ---------------------------------------------------

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
    print(f"DataHarbour supervisor: bound to {run_dir} after the program had ended; its end recorded there",
          flush=True)


def end_unbound(slot_dir: Path, outcome: Outcome, word: LauncherWord | None, signals: Signals,
                command: dict) -> int:
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
    log_fd = folder.open_for_append(slot_dir / folder.LOG_FILE)
    stdout_log_fd = folder.open_for_append(slot_dir / folder.STDOUT_FILE)
    try:
        program = start_program(command, umask, subprocess.PIPE)
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        os.close(log_fd)
        os.close(stdout_log_fd)
        line = f"DataHarbour: could not start {command['argv'][0]}: {error}\n"
        append_to_log(slot_dir, line.encode())
        print(line.rstrip(), flush=True)
        return end_unbound(slot_dir, Outcome(127, signals.stop_requested, 0, str(error)), word, signals, command)
    started = time.monotonic()
    pump = OutputPump(program.stdout.fileno(), program.stderr.fileno(), log_fd, stdout_log_fd)
    pump.start()
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
            stop_requested = reaper.program_status is None
            ended = time.monotonic()
            grace = command["stop_grace"] if stop_requested else command["leftover_grace"]
            returncode, leftovers = end_program(program, reaper, signals, pump, grace)
            write_exit(run_dir, returncode, stop_requested, leftovers, bound=True, slot=str(slot_dir))
            print(summary(command, ended - started, returncode, stop_requested, leftovers,
                          time.monotonic() - ended) + f"; bound to {run_dir}", flush=True)
            return 0
        print(f"DataHarbour supervisor: could not bind to {run_dir}: {error}", flush=True)
        word = None  # nothing to record there

    # Unbound: the program ended by itself, or we stop it (stop request, launcher gone,
    # abandoned, a bind that failed). Its stdin's EOF tells a waiting program first.
    close_quietly(program.stdin)
    stop_requested = reaper.program_status is None
    ended = time.monotonic()
    grace = command["stop_grace"] if stop_requested else command["leftover_grace"]
    returncode, leftovers = end_program(program, reaper, signals, pump, grace)
    print(summary(command, ended - started, returncode, stop_requested, leftovers, time.monotonic() - ended)
          + "; never bound", flush=True)
    return end_unbound(slot_dir, Outcome(returncode, stop_requested, leftovers), word, signals, command)


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

    log_fd = folder.open_for_append(run_dir / folder.LOG_FILE)
    stdout_log_fd = folder.open_for_append(run_dir / folder.STDOUT_FILE)
    try:
        program = start_program(command, inherited_umask, subprocess.DEVNULL)
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        os.close(log_fd)
        os.close(stdout_log_fd)
        return could_not_start(run_dir, command["argv"][0], str(error), signals.stop_requested)
    started = time.monotonic()
    pump = OutputPump(program.stdout.fileno(), program.stderr.fileno(), log_fd, stdout_log_fd)
    pump.start()

    reaper = Reaper(program.pid)
    wait_for_end_or_stop(reaper, signals)
    # Stopped on request only if the program had not ended on its own first.
    stop_requested = reaper.program_status is None
    ended = time.monotonic()
    grace = command["stop_grace"] if stop_requested else command["leftover_grace"]
    returncode, leftovers = end_program(program, reaper, signals, pump, grace)
    write_exit(run_dir, returncode, stop_requested, leftovers)
    print(summary(command, ended - started, returncode, stop_requested, leftovers, time.monotonic() - ended),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
