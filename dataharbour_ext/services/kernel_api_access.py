"""KernelApiAccess: how kernels started by this server reach its API, handed to them in their
environment (services/kernel_env.py), so that `%load_ext dataharbour_ext` and the Python client
work in a fresh notebook with no URL or token typed.

    DATAHARBOUR_URL    this server's root, with its base_url: http://127.0.0.1:8888/
    DATAHARBOUR_TOKEN  its token (absent when the server has none)

The kernel runs as the same user as the server, who can read the token from the server's
runtime file anyway (what `jupyter server list` shows); this only saves looking for it.
"""

from urllib.parse import urlsplit, urlunsplit

URL_VARIABLE = "DATAHARBOUR_URL"
TOKEN_VARIABLE = "DATAHARBOUR_TOKEN"
LOOPBACK_NAMES = {"", "localhost", "0.0.0.0", "::", "127.0.0.1", "::1"}


class KernelApiAccess:
    def __init__(self, serverapp):
        self.serverapp = serverapp

    def url(self) -> str | None:
        """The server's root as a kernel on this machine reaches it; None on a Unix socket."""
        app = self.serverapp
        if getattr(app, "sock", ""):
            return None
        parts = urlsplit(app.connection_url)
        host = "127.0.0.1" if (app.ip or "") in LOOPBACK_NAMES else parts.hostname
        if host and ":" in host:
            host = f"[{host}]"
        return urlunsplit((parts.scheme, f"{host}:{app.port}", parts.path or "/", "", ""))

    def variables(self) -> dict[str, str]:
        url = self.url()
        if url is None:
            return {}
        found = {URL_VARIABLE: url}
        token = getattr(self.serverapp.identity_provider, "token", "") or ""
        if token:
            found[TOKEN_VARIABLE] = token
        return found
