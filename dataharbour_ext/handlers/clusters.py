"""REST handlers for /api/v1/clusters: list, launch or register, delete, and the master UI proxy."""

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import Forbidden
from ..models import CLUSTER_CREATE_MODELS, ClusterDeleteQuery, ClusterKindField
from .base import DataHarbourHandler
from .spark_ui_proxy import UiProxyHandler, is_forbidden_ui_path

AUTH_RESOURCE = "dataharbour:clusters"
# Launching a cluster starts processes that run users' code, deleting one stops them (and,
# forced, kills jobs): "execute", as for job submit and kill.
RUN_CODE = "execute"
MAX_BODY_BYTES = 256 * 1024


def cluster_ui_proxy_prefix(base_url: str, cluster_id: str) -> str:
    """Where a launched cluster's master UI is proxied on this server (no trailing slash)."""
    return f"{base_url}api/v1/clusters/{cluster_id}/ui/proxy"


class ClustersBaseHandler(DataHarbourHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def cluster_views(self):
        return self.services["cluster_views"]

    @property
    def launcher(self):
        return self.services["cluster_launcher"]


class ClusterCollectionHandler(ClustersBaseHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.write_model(await self.cluster_views.list())

    @web.authenticated
    @authorized(RUN_CODE)
    async def post(self):
        # The kind first: every other error then names a field of that kind's own body.
        kind = self.parse_body(ClusterKindField, MAX_BODY_BYTES)
        request = self.validate(CLUSTER_CREATE_MODELS[kind.kind], kind.model_dump())
        if kind.kind == "standalone":
            cluster, status = await self.launcher.create_standalone(request), 202
        else:
            cluster, status = await self.launcher.register_external(request), 201
        self.set_header("Location", self.request.path.rstrip("/") + "/" + cluster.id)
        self.write_model(cluster, status=status)


class ClusterHandler(ClustersBaseHandler):
    @web.authenticated
    @authorized
    async def get(self, cluster_id: str):
        self.write_model(await self.cluster_views.get(cluster_id))

    @web.authenticated
    @authorized(RUN_CODE)  # it stops the cluster's daemons, and forced, its jobs
    async def delete(self, cluster_id: str):
        stopping = await self.launcher.delete(cluster_id, force=self.parse_query(ClusterDeleteQuery).force)
        if stopping is None:
            self.set_status(204)
            self.finish()
        else:
            self.write_model(stopping, status=202)


class ClusterUiProxyHandler(UiProxyHandler):
    """The master web UI of a cluster this server launched, proxied like a job's driver UI:
    GET only, never its kill links, never Jupyter's token or _xsrf, and only to the port the
    cluster's own master listens on."""

    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized
    async def get(self, cluster_id: str, path: str):
        if is_forbidden_ui_path(path):
            raise Forbidden(f"the master UI's kill links are not forwarded; kill jobs with "
                            f"POST {self.base_url}api/v1/jobs/{{job_id}}/kill")
        ui_url = await self.settings["dataharbour"]["cluster_launcher"].master_ui(cluster_id)
        await self.forward(ui_url, cluster_ui_proxy_prefix(self.base_url, cluster_id), path,
                           f"the master UI of cluster {cluster_id}")
