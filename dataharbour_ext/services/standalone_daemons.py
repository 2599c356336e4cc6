"""The daemons of one standalone cluster under their run supervisors: each watched for its
end (a pidfd read by the event loop), all stopped together. Process supervision only: what
an end means for the cluster is the caller's (`on_exit`). Looks that read /proc or stat the
logs (`look_at`) are made in a thread, all of a tick's in one."""

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..runs import folder
from ..runs.identity import ProcessIdentity
from ..runs.process import Supervised
from ..store.cluster_store import DaemonRecord

log = logging.getLogger("dataharbour_ext.clusters")

STOP_MARGIN_SECONDS = 15.0  # past the grace, before the supervisors themselves are killed
STOP_LOOK_SECONDS = 0.5  # how often a stop looks at supervisors that have no pidfd


@dataclass
class Daemon:
    name: str
    run_dir: str
    supervised: Supervised | None = None
    held: bool = False  # its supervisor waits for the word to start the daemon
    exit_fd: int | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def log_path(self) -> str:
        return os.path.join(self.run_dir, folder.LOG_FILE)

    def record(self) -> DaemonRecord:
        identity = self.supervised.identity if self.supervised else None
        return DaemonRecord(self.name, self.run_dir, identity.pid if identity else None,
                            identity.start_ticks if identity else None, identity.boot_id if identity else None)


def daemon_identity(record: DaemonRecord) -> ProcessIdentity | None:
    """Who a recorded daemon's supervisor is (from its run folder if the record lacks it)."""
    if record.pid is None or record.start_ticks is None or not record.boot_id:
        return folder.read_supervisor(record.run_dir)
    return ProcessIdentity(record.pid, record.start_ticks, record.boot_id)


@dataclass(frozen=True)
class DaemonsSeen:
    """One look at some daemons, taken in a thread: those whose supervisor no longer ran
    (of those that had one and had not ended), and each daemon's log size (-1: no log yet),
    in the order the daemons were given."""

    gone: tuple[Daemon, ...]
    log_sizes: tuple[int, ...]

    def ended(self, daemon: Daemon) -> bool:
        """Whether the look found `daemon` gone and its end is not yet known."""
        return any(found is daemon for found in self.gone) and not daemon.ended.is_set()


def look_at(daemons: Iterable[Daemon], *, liveness: bool = True, logs: bool = True) -> DaemonsSeen:
    """Read /proc (liveness) and stat the logs of `daemons`: blocking, so call it in a thread,
    once for all a tick needs."""
    daemons = list(daemons)
    gone = tuple(daemon for daemon in daemons if liveness and daemon.supervised is not None
                 and not daemon.ended.is_set() and not daemon.supervised.alive())
    sizes = []
    for daemon in daemons if logs else ():
        try:
            sizes.append(os.stat(daemon.log_path).st_size)
        except OSError:
            sizes.append(-1)
    return DaemonsSeen(gone, tuple(sizes))


class DaemonGroup:
    """A cluster's daemons by name. `on_exit(daemon)` is called once for each that ends,
    after it has been reaped."""

    def __init__(self, label: str, on_exit: Callable[[Daemon], None] | None = None):
        self.label = label  # for the log: the cluster's id
        self.on_exit = on_exit
        self.daemons: dict[str, Daemon] = {}

    def records(self) -> list[DaemonRecord]:
        return [daemon.record() for daemon in self.daemons.values() if daemon.supervised]

    def watch(self, daemon: Daemon) -> None:
        daemon.exit_fd = daemon.supervised.exit_fd()
        if daemon.exit_fd is None:
            self.ended(daemon)  # it has already ended
            return
        asyncio.get_running_loop().add_reader(daemon.exit_fd, self.ended, daemon)

    def unwatch(self, daemon: Daemon) -> None:
        if daemon.exit_fd is not None:
            asyncio.get_running_loop().remove_reader(daemon.exit_fd)
            daemon.exit_fd = None
        if daemon.supervised is not None:
            daemon.supervised.close()

    def ended(self, daemon: Daemon) -> None:
        self.unwatch(daemon)
        if daemon.supervised is not None:
            daemon.supervised.reap()
        daemon.ended.set()
        if self.on_exit is not None:
            self.on_exit(daemon)

    def look(self, seen: DaemonsSeen) -> None:
        """Daemons that ended unnoticed (a platform without pidfds), from a `look_at` of them."""
        for daemon in list(self.daemons.values()):
            if daemon.supervised is not None and seen.ended(daemon):
                self.ended(daemon)

    def detach(self) -> None:
        """Stop watching (the server stops; the daemons run on). A held supervisor is
        abandoned: nothing would ever release it."""
        for daemon in self.daemons.values():
            if daemon.held and daemon.supervised is not None:
                daemon.supervised.abandon()
            self.unwatch(daemon)

    async def stop(self, grace_seconds: float) -> None:
        """SIGTERM to every supervisor (each stops its daemon's whole tree), SIGKILL to what
        is left after the grace period; returns once no daemon's supervisor runs."""
        running = [d for d in self.daemons.values() if d.supervised is not None and not d.ended.is_set()]
        for daemon in running:
            if daemon.held:
                daemon.supervised.abandon()  # a held supervisor ends without starting anything
            elif not daemon.supervised.request_stop():
                self.ended(daemon)  # it had ended already
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds + STOP_MARGIN_SECONDS
        waiters = [asyncio.ensure_future(d.ended.wait()) for d in running]
        try:
            while loop.time() < deadline:
                waiting = [d for d in running if not d.ended.is_set()]
                if not waiting:
                    return
                await asyncio.wait([w for w in waiters if not w.done()], timeout=STOP_LOOK_SECONDS)
                waiting = [d for d in waiting if not d.ended.is_set()]
                if waiting:  # a platform without pidfds: look (in a thread: it reads /proc)
                    seen = await asyncio.to_thread(look_at, waiting, logs=False)
                    for daemon in waiting:
                        if seen.ended(daemon):
                            self.ended(daemon)
        finally:
            for waiter in waiters:
                waiter.cancel()
        for daemon in [d for d in running if not d.ended.is_set()]:
            killed = await asyncio.to_thread(daemon.supervised.force_stop)
            log.warning("DataHarbour: cluster %s: %s did not stop in time; killed %d processes", self.label,
                        daemon.name, killed)
            self.ended(daemon)
