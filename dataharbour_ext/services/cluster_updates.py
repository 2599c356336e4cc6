"""Cluster changes on the live stream's `clusters` topic: `cluster_update` with the whole
cluster as GET /clusters/{id} shows it, `cluster_deleted` with its id once it is gone.

Changes are published one at a time, in the order they happened. Each message carries the
state and reason the cluster had when it changed (taken at `changed()`), so quick changes do
not collapse into one (starting -> failed is two messages, not two `failed`), and a change
told after the cluster was removed (its `stopping`) is still published, before its
`cluster_deleted`. Workers and job counts are read when the message is built.
"""

import asyncio
import logging

from ..events import EventHub
from .cluster_views import ClusterViews
from .clusters import Cluster, ClusterCondition, ClusterService

log = logging.getLogger("dataharbour_ext.clusters")

CLUSTERS_TOPIC = "clusters"


class ClusterUpdates:
    def __init__(self, hub: EventHub, clusters: ClusterService, views: ClusterViews):
        self.hub = hub
        self.views = views
        self.clusters = clusters
        # (cluster id, what, the cluster and its condition when it changed; None once gone)
        self._pending: asyncio.Queue[tuple[str, str, tuple[Cluster, ClusterCondition] | None]] | None = None
        self._task: asyncio.Task | None = None
        clusters.on_change(self.changed)

    def changed(self, cluster_id: str, *, workers: bool = False) -> None:
        """Publish the cluster as it is (or its deletion, if it is gone) soon; `workers`: its
        workers changed, so the master's status is read afresh for the message."""
        if self._pending is None:
            return  # not started: nobody can be listening yet
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            self._pending.put_nowait((cluster_id, "deleted", None))
            return
        condition = self.clusters.condition(cluster_id)
        then = (cluster, ClusterCondition(condition.state, condition.reason))
        self._pending.put_nowait((cluster_id, "workers" if workers else "state", then))

    def start(self) -> None:
        self._pending = asyncio.Queue()
        self._task = asyncio.create_task(self._publish_loop(), name="dataharbour-cluster-updates")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = self._pending = None

    async def _publish_loop(self) -> None:
        while True:
            cluster_id, what, then = await self._pending.get()
            try:
                await self._publish(cluster_id, what, then)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("DataHarbour: publishing a change of cluster %s failed", cluster_id)

    async def _publish(self, cluster_id: str, what: str, then: tuple[Cluster, ClusterCondition] | None) -> None:
        if what == "deleted":
            self.hub.publish("cluster_deleted", {"id": cluster_id}, (CLUSTERS_TOPIC,))
            return
        cluster, condition = then
        if what == "workers" and self.clusters.get(cluster_id) is cluster:
            await self.views.master_status(cluster, fresh=True)
        view = await self.views.view_as(cluster, condition)
        self.hub.publish("cluster_update", view.model_dump(mode="json"), (CLUSTERS_TOPIC,))
