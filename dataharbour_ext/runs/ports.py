"""The TCP ports a supervised run's processes listen on (psutil: blocking, call it in a thread).

A port is the run's only when one of the supervisor's live descendants holds it: the proxies
forward to a driver UI or a master UI only then, never to whatever took a port meanwhile.
`PortScans` is the async side: concurrent asks about one run share one scan, so a burst of
proxied requests starts one thread's work, not one each.
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import psutil

from .identity import ProcessIdentity


def _listeners(supervisor: ProcessIdentity) -> Iterator[tuple[psutil.Process, int]]:
    """(process, port) for every TCP port a live process of the supervisor's tree listens on."""
    if not supervisor.matches():
        return
    try:
        processes = psutil.Process(supervisor.pid).children(recursive=True)
    except psutil.Error:
        return
    for process in processes:
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        for connection in connections:
            if connection.status == psutil.CONN_LISTEN:
                yield process, connection.laddr.port


def listening_ports(supervisor: ProcessIdentity) -> set[int]:
    """TCP ports that some live process of the run (the supervisor's tree) listens on."""
    return {port for _, port in _listeners(supervisor)}


def listener_of(supervisor: ProcessIdentity, port: int) -> ProcessIdentity | None:
    """The process of the supervisor's tree that listens on `port`, if one does: proves the
    port is the run's, not another program's that took it."""
    return next((ProcessIdentity.of(process.pid) for process, listened in _listeners(supervisor)
                 if listened == port), None)


class PortScans:
    """`await scans.of(supervisor)`: listening_ports in a thread, single-flight per run."""

    def __init__(self, run_in_thread: Callable[..., Awaitable] | None = None):
        self._run_in_thread = run_in_thread or asyncio.to_thread
        self._scans: dict[ProcessIdentity, asyncio.Future] = {}

    async def of(self, supervisor: ProcessIdentity) -> set[int]:
        scan = self._scans.get(supervisor)
        if scan is None:
            scan = self._scans[supervisor] = asyncio.ensure_future(self._run_in_thread(listening_ports, supervisor))
            scan.add_done_callback(lambda _: self._scans.pop(supervisor, None))
        return set(await asyncio.shield(scan))  # a caller's copy: callers may change theirs
