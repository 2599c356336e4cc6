"""Start, find and stop a run's supervisor and its whole process group."""

import os
import signal
import subprocess
import sys

import psutil


def launch_supervisor(run_dir: str, log_path: str) -> subprocess.Popen:
    """Start `python -m dataharbour_ext.spark.runner RUN_DIR` as a detached session leader.

    The new session makes its pid the process-group id of everything it starts (spark-submit,
    the driver JVM, the Python driver and workers) and keeps it alive when the server dies.
    """
    with open(log_path, "ab") as supervisor_log:
        return subprocess.Popen(
            [sys.executable, "-m", "dataharbour_ext.spark.runner", run_dir],
            stdin=subprocess.DEVNULL,
            stdout=supervisor_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_alive(pid: int, started: float | None) -> bool:
    """True if `pid` is still the process we started (not a zombie, not a reused pid)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < 1.0
    except psutil.Error:
        return False


def members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of the group."""
    found = []
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == pgid:
                found.append(process.pid)
        except (OSError, psutil.Error):
            continue
    return found


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def listening_ports(pgid: int) -> set[int]:
    """TCP ports some live process of the group listens on."""
    ports: set[int] = set()
    for pid in members(pgid):
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            continue
        ports.update(c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN)
    return ports


def open_exit_handle(pid: int) -> int | None:
    """A pidfd that becomes readable when `pid` exits (Linux 5.3+), or None where the
    platform has none; callers then rely on polling."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
