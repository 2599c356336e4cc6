"""Where the server is and which token it takes: from arguments, else the environment, else
the runtime files of running Jupyter servers (what `jupyter server list` shows)."""

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from .errors import ServerNotFound

# Set by this extension in the kernels its server starts (services/kernel_api_access.py): the
# exact server the kernel belongs to, so they come first.
URL_VARIABLES = (("DATAHARBOUR_URL", "DATAHARBOUR_TOKEN"), ("JUPYTER_BASE_URL", "JUPYTER_TOKEN"))


@dataclass(frozen=True)
class ServerAddress:
    """A server's root URL, with its base_url and a trailing slash, and its token (None: none)."""

    url: str
    token: str | None = field(default=None, repr=False)  # never in a notebook's or a log's repr
    found_in: str = field(default="arguments", compare=False)  # where it came from: for messages

    def __post_init__(self):
        object.__setattr__(self, "url", _normalized(self.url))

    def api_url(self, path: str) -> str:
        return self.url + "api/v1/" + path.lstrip("/")

    def websocket_url(self, client_id: str, query: dict[str, str]) -> str:
        parts = urlsplit(self.api_url(f"ws/{quote(client_id, safe='')}"))
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), ""))

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}


def find_server(url: str | None = None, token: str | None = None, *, environ: Mapping[str, str] | None = None,
                cwd: str | None = None, runtime_dir: str | None = None) -> ServerAddress:
    """The server to talk to. `url` and `token` win; else `DATAHARBOUR_URL` / `DATAHARBOUR_TOKEN`
    (set in kernels the server starts) or `JUPYTER_BASE_URL` / `JUPYTER_TOKEN`; else the running
    server whose root holds `cwd`, else the only or most recently started one."""
    environ = os.environ if environ is None else environ
    if url:
        if token is None:  # a token goes only to the server it belongs to, never to any URL given
            token = _env_token_for(url, environ) or _runtime_token(url, runtime_dir)
        return ServerAddress(url, token or None)
    for url_variable, token_variable in URL_VARIABLES:
        if environ.get(url_variable):
            if token is None:
                token = environ.get(token_variable)
            return ServerAddress(environ[url_variable], token or None, found_in=f"${url_variable}")
    server = pick_running_server(_running_servers(runtime_dir), cwd or os.getcwd())
    if server is None:
        raise ServerNotFound(
            "no Jupyter server found: pass url= and token=, set JUPYTER_BASE_URL and JUPYTER_TOKEN, or start a "
            "server (jupyter lab); `jupyter server list` shows the running ones"
        )
    if token is None:
        token = server.get("token")
    return ServerAddress(server["url"], token or None, found_in=server.get("runtime_file", "runtime file"))


def pick_running_server(servers: Iterable[dict], cwd: str) -> dict | None:
    """The server whose root holds `cwd` (the deepest root if several do), else the most
    recently started one."""
    servers = [s for s in servers if s.get("url", "").startswith(("http://", "https://")) and not s.get("sock")]
    if not servers:
        return None
    cwd = os.path.realpath(cwd)
    holding = [s for s in servers if _contains(s.get("root_dir") or s.get("notebook_dir") or "", cwd)]
    if holding:
        return max(holding, key=lambda s: (len(os.path.realpath(s.get("root_dir") or s.get("notebook_dir"))),
                                           s.get("started", 0.0)))
    return max(servers, key=lambda s: s.get("started", 0.0))


def _running_servers(runtime_dir: str | None) -> list[dict]:
    """Running servers' info (runtime files of live processes), each with the time its file
    was written as `started`."""
    from jupyter_core.paths import jupyter_runtime_dir
    from jupyter_server.serverapp import list_running_servers

    runtime_dir = runtime_dir or jupyter_runtime_dir()
    found = []
    for info in list_running_servers(runtime_dir):
        path = os.path.join(runtime_dir, f"jpserver-{info.get('pid')}.json")
        try:
            started = os.path.getmtime(path)
        except OSError:
            started = 0.0
        found.append({**info, "started": started, "runtime_file": path})
    return found


def _runtime_token(url: str, runtime_dir: str | None) -> str | None:
    """The token of the running server at `url`, if its runtime file is ours to read."""
    try:
        servers = _running_servers(runtime_dir)
    except Exception:  # no jupyter_server, an unreadable runtime dir: simply no token from there
        return None
    wanted = _normalized(url)
    return next((s.get("token") for s in servers if _normalized(s.get("url", "")) == wanted), None)


def _env_token_for(url: str, environ: Mapping[str, str]) -> str | None:
    """The token of the environment's server, if `url` is that server's URL."""
    wanted = _normalized(url)
    for url_variable, token_variable in URL_VARIABLES:
        if environ.get(url_variable) and _normalized(environ[url_variable]) == wanted and environ.get(token_variable):
            return environ[token_variable]
    return None


def _contains(root: str, path: str) -> bool:
    if not root:
        return False
    root = os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _normalized(url: str) -> str:
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    return url if url.endswith("/") else url + "/"
