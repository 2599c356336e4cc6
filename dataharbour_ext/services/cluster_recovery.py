"""ClusterRecovery: the clusters the store holds, as this server finds them at its start and as
other servers on the same store change them. Part of the ClusterLauncher (a mixin of it).

A launched cluster's owner is the server that watches its daemons. A server start takes over
the clusters whose owner is gone (on this host: another boot, or its process no longer runs;
its own earlier instance included), re-attaches to their live daemons and finishes what was
under way (a start, a failure, a delete). A cluster another live server owns is observed: its
state and daemons are read from the store every `sync_interval`, nothing of it is watched or
stopped here, and a DELETE here asks its owner through the store (state `stopping`).
"""

import asyncio
import logging
from typing import TYPE_CHECKING

from ..runs.identity import ProcessIdentity
from ..runs.process import Supervised
from ..store.cluster_store import ClusterRecord
from .clock import utcnow
from .clusters import Cluster
from .run_engine import owner_is_gone
from .standalone_daemons import Daemon, daemon_identity

if TYPE_CHECKING:
    from .cluster_launcher import Launched

log = logging.getLogger("dataharbour_ext.clusters")


def cluster_of(record: ClusterRecord) -> Cluster:
    return Cluster(record.id, record.name, record.master_url, record.ui_url, record.max_concurrent_jobs,
                   conf=dict(record.conf), kind=record.kind, spec=record.spec, created_at=record.created_at)


class ClusterRecovery:
    async def _load_all(self, records: list[ClusterRecord]) -> None:
        """Make clusters from the store known (each on its own: one that fails to load is
        logged, the others load)."""
        gone = await asyncio.to_thread(self._owners_gone, records)
        for record in records:
            try:
                await self._load(record, record.id in gone)
            except Exception:
                log.exception("DataHarbour: cluster %s could not be loaded", record.id)

    def _owners_gone(self, records: list[ClusterRecord]) -> set[str]:
        """The launched clusters among `records` whose owner is provably gone (reads /proc:
        call it in a thread); this instance's own count as gone (re-attached after a stop
        and start of the launcher, as tests do)."""
        return {record.id for record in records if record.kind == "standalone"
                and (self._owns(record) or owner_is_gone(record.owner, self.owner))}

    async def _load(self, record: ClusterRecord, owner_gone: bool) -> None:
        """Make a cluster from the store known: an external one as it is; a launched one
        taken over (its owner is gone: every server start takes over its own earlier
        clusters) or observed (another live server on this host owns it)."""
        if record.kind != "standalone":
            self.clusters.add(cluster_of(record), record.state, record.reason)
            return
        launched = self._launched.get(record.id)
        if launched is not None and launched.owned:
            return
        if owner_gone:
            adopted = await self.store.adopt(record.id, record.owner, self.owner, now=utcnow())
            if adopted is not None:
                await self._take_over(adopted)
                return
            log.info("DataHarbour: cluster %s was taken over by another server", record.id)
        self._observe(record)  # its new owner's identity comes with the next sync

    def _owns(self, record: ClusterRecord) -> bool:
        return record.owner is not None and record.owner.instance == self.owner.instance

    def _observe(self, record: ClusterRecord) -> None:
        """Another server watches this cluster's daemons: know who they are (for the master
        UI proxy's port check and the logs), watch nothing."""
        launched = self._launched.get(record.id) or self._register(record)
        launched.owned = False
        self._follow_daemons(launched, record)

    @staticmethod
    def _follow_daemons(launched: "Launched", record: ClusterRecord) -> None:
        """The daemons as the store has them (a restarted worker has a new supervisor)."""
        for daemon_record in record.daemons:
            daemon = launched.daemons.get(daemon_record.name)
            if daemon is None or daemon.run_dir != daemon_record.run_dir:
                daemon = launched.daemons[daemon_record.name] = Daemon(daemon_record.name, daemon_record.run_dir)
            if daemon_record.pid is not None and daemon_record.start_ticks is not None and daemon_record.boot_id:
                identity = ProcessIdentity(daemon_record.pid, daemon_record.start_ticks, daemon_record.boot_id)
                if daemon.supervised is None or daemon.supervised.identity != identity:
                    daemon.supervised = Supervised(identity)

    async def _take_over(self, record: ClusterRecord) -> None:
        """This server now owns the cluster: re-attach to its daemons and finish whatever was
        under way (a start, a failure, a delete)."""
        launched = self._register(record)
        if record.state not in ("starting", "running", "stopping"):
            return  # failed or stopped: nothing of it runs
        # Reading run folders and /proc: one thread call for all of the cluster's daemons.
        attached = await asyncio.to_thread(_attach_all, record.daemons)
        alive, gone = [], []
        for daemon_record, supervised in zip(record.daemons, attached, strict=True):
            daemon = launched.daemons[daemon_record.name]
            daemon.supervised = supervised
            (alive if supervised is not None else gone).append(daemon)
        for daemon in gone:
            daemon.ended.set()
        for daemon in alive:
            launched.group.watch(daemon)
        if record.state == "stopping":
            launched.stopping = True
            self._spawn(self._remove(launched), f"dataharbour-delete-{record.id}")
        elif record.failure is not None:  # the server stopped while failing it: finish that
            launched.failing = True
            self._spawn(self._fail(launched, record.failure, noticed=True), f"dataharbour-fail-{record.id}")
        elif not alive:
            log.info("DataHarbour: cluster %s stopped while the server was down", record.id)
            # Unless a DELETE through another server came meanwhile: the next sync finishes it.
            await self._set_state(launched, "stopped", "its master and workers ended while the server was down",
                                  from_states=(record.state,))
        elif record.state == "starting" and any(daemon.name == "master" for daemon in alive):
            # Workers the stopped server had not started (or had held, never to release them):
            # started now, in their own folders.
            missing = [f"worker-{n}" for n in range(1, record.spec["workers"] + 1)
                       if not any(daemon.name == f"worker-{n}" for daemon in alive)]
            launched.bring_up = asyncio.create_task(self._bring_up(launched, workers=missing),
                                                    name=f"dataharbour-start-{record.id}")
            log.info("DataHarbour: re-attached to cluster %s, still starting%s", record.id,
                     f"; starting {', '.join(missing)}" if missing else "")
        elif gone or record.state == "starting":
            # The rest is stopped in the background: the server's start does not wait for it.
            reason = (f"{', '.join(daemon.name for daemon in gone)} ended while no server watched it" if gone
                      else "the server stopped before its master was started")
            launched.failing = True
            self._spawn(self._fail(launched, reason, noticed=True), f"dataharbour-fail-{record.id}")
        else:
            log.info("DataHarbour: re-attached to cluster %s (%d daemons)", record.id, len(alive))

    async def _sync(self) -> None:
        """Catch up with what other servers on this store did: clusters added, deleted or
        changed by them, delete requests for ours, and clusters whose owner is gone."""
        self._touched = set()  # what this server adds and removes while the store is read
        records = {record.id: record for record in await self.store.all()}
        gone = await asyncio.to_thread(self._owners_gone, [r for r in records.values() if not self._owns(r)])
        touched, self._touched = self._touched, None
        for cluster in self.clusters.all():
            launched = self._launched.get(cluster.id)
            if (cluster.created_at is None or cluster.id in records or cluster.id in touched
                    or (launched is not None and launched.owned)):
                continue  # the default cluster (from the config), or known to the store, or ours
            self._forget(cluster)
            log.info("DataHarbour: cluster %s was deleted by another server", cluster.id)
        for record in records.values():
            if record.id in touched:
                continue  # what was read of it may already be out of date
            try:
                await self._sync_one(record, record.id in gone)
            except Exception:
                log.exception("DataHarbour: cluster %s could not be brought up to date", record.id)

    async def _sync_one(self, record: ClusterRecord, owner_gone: bool) -> None:
        if self.clusters.get(record.id) is None:
            if not self._owns(record):  # else one being created: it is registered next
                await self._load(record, owner_gone)
            return
        launched = self._launched.get(record.id)
        if launched is None:
            return  # an external cluster: every server probes those itself
        if launched.owned:
            if record.state == "stopping" and not launched.stopping:
                await self._stop_on_request(launched)
        elif owner_gone:
            await self._load(record, owner_gone)
        else:
            self._follow_daemons(launched, record)
            self.clusters.set_state(record.id, record.state, record.reason)
            if not self._deleting_here(record.id):  # a DELETE here decides that itself
                self.clusters.set_deleting(record.id, record.state == "stopping")

    def _deleting_here(self, cluster_id: str) -> bool:
        lock = self._delete_locks.get(cluster_id)
        return lock is not None and lock.locked()

    async def _stop_on_request(self, launched: "Launched") -> None:
        """Another server asked (through the store) to delete a cluster this one owns. It
        counted (or killed) the cluster's jobs; any that started since, here or on a server
        that had not yet heard of the delete, are killed before the daemons stop."""
        if self._deleting_here(launched.id):
            return  # a DELETE here is under way: it stops the cluster
        log.info("DataHarbour: cluster %s: another server asked to delete it", launched.id)
        self.clusters.set_deleting(launched.id, True)
        launched.stopping = True
        if launched.bring_up is not None:
            launched.bring_up.cancel()
        self.clusters.set_state(launched.id, "stopping")
        self._spawn(self._clear_jobs_then_remove(launched), f"dataharbour-delete-{launched.id}")

    async def _clear_jobs_then_remove(self, launched: "Launched") -> None:
        try:
            await self._clear_jobs(launched.id, force=True)
        except Exception:
            log.exception("DataHarbour: killing the jobs of cluster %s failed; it is stopped anyway", launched.id)
        await self._remove(launched)


def _attach_all(records) -> list[Supervised | None]:
    """The recorded daemons' supervisors that still run (None for the others). Blocking."""
    attached = []
    for record in records:
        identity = daemon_identity(record)
        attached.append(Supervised.attach(identity) if identity else None)
    return attached
