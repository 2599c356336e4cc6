"""REST handlers for /api/v1/dashboard (read-only)."""

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..models import TrendsQuery
from .base import DataHarbourHandler

AUTH_RESOURCE = "dataharbour:dashboard"


class DashboardBaseHandler(DataHarbourHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def dashboard(self):
        return self.services["dashboard"]


class DashboardStatsHandler(DashboardBaseHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.write_model(await self.dashboard.stats())


class DashboardTrendsHandler(DashboardBaseHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.write_model(await self.dashboard.trends(self.parse_query(TrendsQuery)))


class DashboardOverviewHandler(DashboardBaseHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.write_model(await self.dashboard.overview(self.parse_query(TrendsQuery)))
