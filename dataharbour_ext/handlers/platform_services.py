"""REST handlers for /api/v1/monitoring/services (health, logs) and /api/v1/monitoring/overview."""

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..models import ServiceList, ServiceLogs, ServiceLogsQuery
from .base import DataHarbourHandler
from .monitoring import AUTH_RESOURCE


class PlatformServicesBaseHandler(DataHarbourHandler):
    auth_resource = AUTH_RESOURCE


class ServiceListHandler(PlatformServicesBaseHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.write_model(ServiceList(services=await self.services["service_health"].statuses()))


class ServiceLogsHandler(PlatformServicesBaseHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str):
        query = self.parse_query(ServiceLogsQuery)
        lines = await self.services["service_logs"].tail(name, query.lines)
        self.write_model(ServiceLogs(name=name, lines=lines))


class MonitoringOverviewHandler(PlatformServicesBaseHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.write_model(await self.services["monitoring_overview"].overview())
