"""Every route refuses requests without a token; startup raises no auth warning."""

import re
import warnings

from jupyter_server.utils import JupyterServerAuthWarning
from tornado.web import RequestHandler

from dataharbour_ext.handlers.routes import handler_table

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
