"""Bringing a standalone cluster up: waiting until its master says it is ready, and, when it
is not, why (from the daemons' logs). No state of its own: the cluster launcher calls these."""

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping

from ..runs import folder
from ..spark import standalone
from ..spark.master_url import spark_master_addresses
from ..store.log_files import read_tail
from .clusters import Cluster
from .standalone_daemons import Daemon, look_at

READY_POLL_SECONDS = 0.05  # how often a starting cluster's daemon logs are looked at
READY_READ_SECONDS = 0.25  # how often its master is asked anyway, whatever the logs say
FAILURE_LOG_LINES = 200


class NotReady(Exception):
    """The deadline passed; `status` is the master's last status (None: it never answered)."""

    def __init__(self, status: standalone.MasterStatus | None):
        super().__init__("not ready")
        self.status = status


async def wait_until_ready(read_status: Callable[[], Awaitable[standalone.MasterStatus | None]],
                           daemons: Mapping[str, Daemon], deadline: float, ready) -> standalone.MasterStatus:
    """The master's status once `ready(status)`; NotReady at the (loop time) deadline.

    The status is read when a daemon's log has grown (the master logs its election and each
    worker registering, a worker that it registered) and every READY_READ_SECONDS besides: a
    stat per daemon per tick costs far less than asking the master 20 times a second, and the
    CPU a starting cluster needs is what its JVMs need. The logs are stat'ed in a thread, all
    in one go per tick."""
    loop = asyncio.get_running_loop()
    status, sizes, read_at = None, None, 0.0
    while loop.time() < deadline:
        now_sizes = (await asyncio.to_thread(look_at, list(daemons.values()), liveness=False)).log_sizes
        if now_sizes != sizes or loop.time() - read_at >= READY_READ_SECONDS:
            sizes, read_at = now_sizes, loop.time()
            status = await read_status()
            if status is not None and ready(status):
                return status
        await asyncio.sleep(READY_POLL_SECONDS)
    raise NotReady(status)


def timeout_reason(cluster: Cluster, daemons: Mapping[str, Daemon], timeout_seconds: float,
                   not_ready: NotReady) -> str:
    """Why a cluster did not come up in time, in words (reads logs: call it in a thread)."""
    timeout = f"{timeout_seconds:g} s"
    status = not_ready.status
    if status is None or status.status != "ALIVE":
        master = daemons["master"]
        problem = standalone.failure_reason(log_tail(master.log_path), None, daemon_ports(cluster))
        if problem == standalone.failure_reason([], None) and master.supervised is not None \
                and not master.ended.is_set():
            problem = "it was still starting, and its log names no error"  # it has not ended
        return f"the master did not come up within {timeout}: {problem}"
    wanted = cluster.spec["workers"]
    registered = f"{len(status.alive_workers)} of {wanted} workers registered with the master within {timeout}"
    for daemon in daemons.values():
        if daemon.name.startswith("worker-"):
            lines = log_tail(daemon.log_path)
            if any(standalone.ERROR_LINE.search(line) for line in lines):
                return f"{registered}; {daemon.name}: {standalone.failure_reason(lines, None)}"
    return registered


def failure_of(cluster: Cluster, daemon: Daemon) -> str:
    """Why a daemon ended, in words (reads its log: call it in a thread)."""
    status = folder.read_exit_status(daemon.run_dir) or {}
    if status.get("released") is False:
        return f"{daemon.name} was never started"
    reason = standalone.failure_reason(log_tail(daemon.log_path), status.get("returncode"), daemon_ports(cluster))
    return f"{daemon.name} ended: {reason}"


def daemon_ports(cluster: Cluster) -> dict[str, int]:
    return {"sparkMaster": spark_master_addresses(cluster.master_url)[0].port,
            "MasterUI": int(cluster.ui_url.rsplit(":", 1)[1])}


def log_tail(path: str) -> list[str]:
    return read_tail(path, FAILURE_LOG_LINES, final=True).lines if os.path.isfile(path) else []


def two_free_ports() -> tuple[int, int]:
    first = standalone.free_port()
    second = standalone.free_port()
    while second == first:
        second = standalone.free_port()
    return first, second
