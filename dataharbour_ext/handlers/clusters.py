"""REST handlers for /api/v1/clusters (read-only for now)."""

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import DataHarbourHandler

AUTH_RESOURCE = "dataharbour:clusters"


class ClustersBaseHandler(DataHarbourHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def cluster_views(self):
        return self.services["cluster_views"]


class ClusterCollectionHandler(ClustersBaseHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.write_model(await self.cluster_views.list())


class ClusterHandler(ClustersBaseHandler):
    @web.authenticated
    @authorized
    async def get(self, cluster_id: str):
        self.write_model(await self.cluster_views.get(cluster_id))
