"""Which process a pid is, provably: boot id + start ticks.

A pid alone is not an identity (pids are reused), and a start time in wall-clock seconds
moves when the clock is stepped. The kernel's start time in clock ticks since boot, together
with the boot id, names one process for as long as the machine runs.
"""

import os
import signal
import socket
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

HOSTNAME = socket.gethostname()


@cache
def host_identity() -> str:
    """Which machine and which pid namespace this process sees, as one string.

    Two servers can prove things about each other's processes only when this matches:
    a hostname alone is shared by cloned machines and by containers with the same name,
    and a container with its own pid namespace cannot see the host's pids.
    """
    try:
        with open("/etc/machine-id") as f:
            machine = f.read().strip()
    except OSError:
        machine = "no-machine-id"
    try:
        pid_namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pid_namespace = "no-pid-ns"
    return f"{HOSTNAME}/{machine}/{pid_namespace}"


@cache
def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


class ProcStat(NamedTuple):
    state: bytes
    ppid: int
    start_ticks: int


def read_stat(pid: int) -> ProcStat | None:
    """State, parent and start ticks of `pid` from one read of /proc/<pid>/stat, or None if
    there is no such process.

    Field 2 (comm) is in parentheses and may itself hold spaces and parentheses, so the
    other fields start after the LAST ')'.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    end_of_comm = data.rfind(b")")
    fields = data[end_of_comm + 1 :].split()
    # fields[0] is field 3 (state), fields[1] field 4 (ppid), fields[19] field 22 (starttime,
    # in clock ticks after boot).
    if end_of_comm < 0 or len(fields) < 20:
        return None
    return ProcStat(state=fields[0], ppid=int(fields[1]), start_ticks=int(fields[19]))


def is_running(stat: ProcStat) -> bool:
    """Neither a zombie nor dead: the process can still do something."""
    return stat.state not in (b"Z", b"X", b"x")


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    start_ticks: int
    boot_id: str

    @classmethod
    def of(cls, pid: int) -> "ProcessIdentity | None":
        """The identity of the process `pid` now (a zombie has one too; it just no longer matches)."""
        stat = read_stat(pid)
        if stat is None:
            return None
        return cls(pid=pid, start_ticks=stat.start_ticks, boot_id=boot_id())

    def matches(self) -> bool:
        """True while this very process runs: same boot, pid present, not a zombie, same start."""
        if self.boot_id != boot_id():
            return False
        stat = read_stat(self.pid)
        return stat is not None and is_running(stat) and stat.start_ticks == self.start_ticks

    def open_pidfd(self) -> int | None:
        """A pidfd for this process, opened first and verified after, so it provably refers to
        this process and not to a later one that reused the pid. None if it no longer runs."""
        try:
            fd = os.pidfd_open(self.pid)
        except OSError:
            return None
        if not self.matches():
            os.close(fd)
            return None
        return fd

    def send_signal(self, sig: int) -> bool:
        """Signal this process and never another that reused its pid."""
        if not _has_pidfd():
            # Old kernel or a seccomp filter: check, then signal by pid (a tiny reuse window).
            if not self.matches():
                return False
            try:
                os.kill(self.pid, sig)
                return True
            except OSError:
                return False
        fd = self.open_pidfd()
        if fd is None:
            return False
        try:
            signal.pidfd_send_signal(fd, sig)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def to_json(self) -> dict:
        return {"pid": self.pid, "start_ticks": self.start_ticks, "boot_id": self.boot_id}

    @classmethod
    def from_json(cls, data) -> "ProcessIdentity | None":
        if not isinstance(data, dict):
            return None
        pid, start_ticks, boot = data.get("pid"), data.get("start_ticks"), data.get("boot_id")
        if not (_is_int(pid) and pid > 0 and _is_int(start_ticks) and start_ticks >= 0):
            return None
        if not isinstance(boot, str) or not boot:
            return None
        return cls(pid=pid, start_ticks=start_ticks, boot_id=boot)


@cache
def _has_pidfd() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
        return True
    except (AttributeError, OSError):
        return False


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
