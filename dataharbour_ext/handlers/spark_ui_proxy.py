"""Proxies a running job's driver UI through the Jupyter server, for remote browsers.

Only the UI of a live run of the named job is reachable: the target address comes from the
job service, never from the request. Spark builds its links from the X-Forwarded-Context
header, so pages and redirects stay under the proxy path.
"""

import posixpath
from http import HTTPStatus
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import httpclient, simple_httpclient, web

from ..errors import Forbidden
from .base import AUTH_QUERY_ARGUMENTS, DomainErrorMixin, error_message
from .jobs import AUTH_RESOURCE, spark_ui_proxy_path

PASSED_RESPONSE_HEADERS = ("Content-Type", "Cache-Control", "Content-Disposition", "Last-Modified", "ETag")
UPSTREAM_TIMEOUT_SECONDS = 30


def is_forbidden_ui_path(path: str) -> bool:
    """Whether `path` (relative to the driver UI root) reaches one of Spark UI's mutating
    endpoints: `jobs/job/kill/`, `stages/stage/kill/`. Any `kill` segment is refused, after
    the normalisation the driver's Jetty applies (`;params`, `.` and `..`, repeated `/`)."""
    segments = [segment.split(";", 1)[0] for segment in path.split("/")]
    normalized = posixpath.normpath("/" + "/".join(segments))
    return any(segment.lower() == "kill" for segment in normalized.split("/"))


def upstream_failure_status(error: Exception) -> int:
    """504 when the driver UI took too long to answer, 502 when it could not be reached."""
    if isinstance(error, (simple_httpclient.HTTPTimeoutError, TimeoutError)):
        return 504
    return 502


def plain_error_body(status: int, reason: str | None, message: str) -> str:
    """The proxy's plain-text error: the status line text matches the status sent."""
    if not reason:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
    return f"{status} {reason}: {message}\n"


class UiProxyHandler(DomainErrorMixin, ExtensionHandlerMixin, JupyterHandler):
    """Forwards a GET to a Spark web UI whose address the subclass got from a service."""

    async def forward(self, ui_url: str, prefix: str, path: str, what: str) -> None:
        """GET `path` of the UI at `ui_url`, its pages and redirects kept under `prefix`.
        `what` names the UI in errors ("the driver UI of job X")."""
        # Tornado has decoded the path: encode it again. Jupyter's own credentials stay here.
        target = f"{ui_url}/{quote(path, safe='/')}"
        query = [
            (key, value.decode(errors="replace"))
            for key, values in self.request.query_arguments.items()
            if key not in AUTH_QUERY_ARGUMENTS
            for value in values
        ]
        if query:
            target += "?" + urlencode(query)
        request = httpclient.HTTPRequest(
            target,
            headers={"X-Forwarded-Context": prefix, "Accept": self.request.headers.get("Accept", "*/*")},
            follow_redirects=False,
            request_timeout=UPSTREAM_TIMEOUT_SECONDS,
        )
        try:
            # raise_error=False still raises for timeouts and connection failures.
            response = await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, httpclient.HTTPClientError) as error:
            status = upstream_failure_status(error)
            raise web.HTTPError(status, "%s did not answer: %s", what, error) from None
        if response.code == 599:
            status = upstream_failure_status(response.error) if response.error else 502
            raise web.HTTPError(status, "%s did not answer", what)
        self.set_status(response.code, response.reason)
        for header in PASSED_RESPONSE_HEADERS:
            if header in response.headers:
                self.set_header(header, response.headers[header])
        if "Location" in response.headers:
            self.set_header("Location", self.rewrite_location(response.headers["Location"], prefix))
        self.finish(response.body or b"")

    @staticmethod
    def rewrite_location(location: str, prefix: str) -> str:
        """Keep redirects inside the proxy. The driver names itself by whatever host it
        thinks it has, so only the path is kept, re-rooted under the proxy prefix."""
        parts = urlsplit(location)
        path = parts.path or "/"
        if not path.startswith(prefix):
            path = prefix + (path if path.startswith("/") else "/" + path)
        return urlunsplit(("", "", path, parts.query, parts.fragment))

    def write_error(self, status_code: int, **kwargs) -> None:
        # Plain text: this route serves the driver's pages, not Jupyter's templates.
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(plain_error_body(self.get_status(), self._reason, error_message(status_code, kwargs)))


class SparkUiProxyHandler(UiProxyHandler):
    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized
    async def get(self, job_id: str, path: str):
        if is_forbidden_ui_path(path):
            # Spark UI's kill links would stop stages or jobs behind the job service's back.
            raise Forbidden(
                f"the driver UI's kill links are not forwarded; to stop the job use "
                f"POST {self.base_url}api/v1/jobs/{job_id}/kill"
            )
        ui = await self.settings["dataharbour"]["jobs"].live_ui(job_id)
        await self.forward(ui.url, spark_ui_proxy_path(self.base_url, job_id), path, f"the driver UI of job {job_id}")
