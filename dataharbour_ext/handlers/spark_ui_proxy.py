"""Proxies a running job's driver UI through the Jupyter server, for remote browsers.

Only the UI of a live run of the named job is reachable: the target address comes from the
job service, never from the request. Spark builds its links from the X-Forwarded-Context
header, so pages and redirects stay under the proxy path.
"""

from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import httpclient, web

from .base import AUTH_QUERY_ARGUMENTS, DomainErrorMixin, domain_error
from .jobs import AUTH_RESOURCE, spark_ui_proxy_path

PASSED_RESPONSE_HEADERS = ("Content-Type", "Cache-Control", "Content-Disposition", "Last-Modified", "ETag")


class SparkUiProxyHandler(DomainErrorMixin, ExtensionHandlerMixin, JupyterHandler):
    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized
    async def get(self, job_id: str, path: str):
        ui = self.settings["dataharbour"]["jobs"].live_ui(job_id)
        prefix = spark_ui_proxy_path(self.base_url, job_id)
        # Tornado has decoded the path: encode it again. Jupyter's own credentials stay here.
        target = f"{ui.url}/{quote(path, safe='/')}"
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
            request_timeout=30,
        )
        try:
            response = await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError as error:
            raise web.HTTPError(502, "the driver UI of job %s did not answer: %s", job_id, error) from None
        if response.code == 599:
            raise web.HTTPError(502, "the driver UI of job %s did not answer", job_id)
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
        exception = kwargs.get("exc_info", (None, None, None))[1]
        if error := domain_error(kwargs):
            self.set_status(error.status)
            message = error.message
        elif isinstance(exception, web.HTTPError) and exception.log_message:
            message = exception.log_message % exception.args if exception.args else exception.log_message
        else:
            message = self._reason
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}: {message}\n")
