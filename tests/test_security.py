"""Every route refuses requests without a token; startup raises no auth warning."""

import re
import warnings

import pytest
from jupyter_server.auth import Authorizer
from jupyter_server.utils import JupyterServerAuthWarning
from tornado.web import RequestHandler

from dataharbour_ext.handlers.routes import ROUTES, handler_table

METHODS = ("get", "post", "put", "patch", "delete")


def _sample_path(pattern: str) -> str:
    path = re.sub(r"\(\?P<path>\.\*\)", "jobs/", pattern)
    path = re.sub(r"\(\?P<\w+>[^)]*\)", "some-id", path)
    return path.replace("/?", "/").replace("\\", "")


def test_startup_raises_no_auth_warning(jp_configurable_serverapp, jp_server_config):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jp_configurable_serverapp(config=jp_server_config)
    assert not [w for w in caught if issubclass(w.category, JupyterServerAuthWarning)]


async def test_every_route_refuses_requests_without_token(jp_serverapp, extension, http_server_client, jp_base_url):
    assert jp_serverapp.allow_unauthenticated_access is False
    routes = extension.handlers
    assert len(routes) == len(handler_table()) >= 8
    checked = 0
    for pattern, handler, *_ in routes:
        for method in METHODS:
            if getattr(handler, method) is getattr(RequestHandler, method):
                continue  # not implemented by this handler
            url = jp_base_url.rstrip("/") + _sample_path(pattern)
            body = b"{}" if method in ("post", "put", "patch") else None
            response = await http_server_client.fetch(
                url, method=method.upper(), body=body, raise_error=False, follow_redirects=False
            )
            # API routes answer 403; the browser-facing UI proxy sends the browser to log in.
            refused = response.code == 403 or (
                response.code == 302 and "/login" in response.headers.get("Location", "")
            )
            assert refused, (method, url, response.code)
            checked += 1
    assert checked >= 9


async def test_openapi_document_lists_every_route(api):
    status, doc = await api.call("GET", "openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    assert set(doc["paths"]) >= {
        "/api/v1/jobs/",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/kill",
        "/api/v1/jobs/{job_id}/restart",
        "/api/v1/jobs/{job_id}/logs",
        "/api/v1/jobs/{job_id}/spark-ui",
    }
    submit = doc["paths"]["/api/v1/jobs/"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobSubmit")
    assert "202" in submit["responses"] and "413" in submit["responses"]
    schemas = doc["components"]["schemas"]
    assert {"name", "code", "file", "cluster_id", "args", "conf", "env"} <= set(schemas["JobSubmit"]["properties"])
    assert "state" in schemas["Job"]["properties"]
    params = {p["name"] for p in doc["paths"]["/api/v1/jobs/{job_id}/logs"]["get"]["parameters"]}
    assert {"job_id", "offset", "limit", "tail", "attempt"} <= params


async def test_token_in_the_query_string_works_on_query_routes(jp_serverapp, extension, http_server_client,
                                                               jp_base_url):
    token = jp_serverapp.identity_provider.token
    response = await http_server_client.fetch(
        f"{jp_base_url}api/v1/jobs/?token={token}&limit=5", raise_error=False
    )
    assert response.code == 200, response.body


# ---- authorization: running or stopping code is "execute", reading is "read" ------------


class ReadOnlyAuthorizer(Authorizer):
    """Allows only "read" on DataHarbour resources (anything on Jupyter's own); records each ask."""

    asked: list[tuple[str, str, str]] = []

    def is_authorized(self, handler, user, action, resource):
        if not resource.startswith("dataharbour:"):
            return True
        self.asked.append((type(handler).__name__, handler.request.method, action))
        return action == "read"


# tests/conftest.py's jp_server_config, plus the authorizer; parametrizing the fixture
# replaces it for the tests that use it.
READ_ONLY_SERVER_CONFIG = {
    "ServerApp": {
        "jpserver_extensions": {"dataharbour_ext": True, "jupyter_server_terminals": False},
        "allow_unauthenticated_access": False,
        "authorizer_class": ReadOnlyAuthorizer,
    },
    "DataHarbourApp": {"kill_grace_seconds": 5.0, "app_id_lookup_delay": 0.0},
}
read_only_user = pytest.mark.parametrize("jp_server_config", [READ_ONLY_SERVER_CONFIG], ids=["read-only-user"])


@read_only_user
async def test_read_only_user_can_read_but_not_run_or_stop_jobs(api):
    ReadOnlyAuthorizer.asked.clear()
    expected = [
        ("GET", "jobs/", 200),
        ("GET", "jobs/nope", 404),
        ("GET", "jobs/nope/logs", 404),
        ("GET", "jobs/nope/spark-ui", 404),
        ("POST", "jobs/", 403),
        ("POST", "jobs/nope/restart", 403),
        ("POST", "jobs/nope/kill", 403),
    ]
    for method, path, status in expected:
        body = {"name": "denied", "code": "print(1)\n"} if path == "jobs/" else None
        got, answer = await api.call(method, path, body)
        assert got == status, (method, path, answer)
        if status == 403:
            assert "execute" in answer["message"], answer
    _, listing = await api.call("GET", "jobs/")
    assert listing["total"] == 0


@read_only_user
async def test_documented_actions_are_the_ones_asked(api):
    """The route table's `action` (shown in the OpenAPI 403 descriptions) is what each verb asks."""
    ReadOnlyAuthorizer.asked.clear()
    for method, path in [("GET", "jobs/"), ("GET", "jobs/nope"), ("GET", "jobs/nope/logs"),
                         ("GET", "jobs/nope/spark-ui"), ("GET", "jobs/nope/spark-ui/proxy/"),
                         ("POST", "jobs/"), ("POST", "jobs/nope/restart"), ("POST", "jobs/nope/kill")]:
        await api.call(method, path, {"name": "x", "code": "print(1)\n"} if method == "POST" else None)
    documented = {
        (route.handler.__name__, op.method.upper(), op.action) for route in ROUTES for op in route.operations
    }
    asked = set(ReadOnlyAuthorizer.asked)
    assert len(asked) == 8 and asked <= documented, asked - documented
