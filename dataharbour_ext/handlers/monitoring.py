"""REST handlers for /api/v1/monitoring/metrics: the latest system sample and its history."""

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..models import MetricsHistoryQuery
from .base import DataHarbourHandler

AUTH_RESOURCE = "dataharbour:monitoring"


class MetricsBaseHandler(DataHarbourHandler):
    auth_resource = AUTH_RESOURCE


class MetricsHandler(MetricsBaseHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.write_model(await self.services["metrics"].current())


class MetricsHistoryHandler(MetricsBaseHandler):
    @web.authenticated
    @authorized
    async def get(self):
        query = self.parse_query(MetricsHistoryQuery)
        self.write_json(await self.services["metrics_history"].history_json(query))
