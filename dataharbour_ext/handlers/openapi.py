"""Serves the generated OpenAPI document."""

import json
from functools import cache

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import DataHarbourHandler


@cache
def _document() -> str:
    from ..openapi import build_document
    from .routes import ERROR_MODEL, ROUTES

    return json.dumps(build_document(ROUTES, ERROR_MODEL))


class OpenApiHandler(DataHarbourHandler):
    auth_resource = "dataharbour:api"

    @web.authenticated
    @authorized
    async def get(self):
        self.finish(_document())
