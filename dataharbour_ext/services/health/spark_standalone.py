"""A Spark standalone master (`spark://`): its JSON status at `<master UI>/json/`.

Healthy when a master is ALIVE and has at least one alive worker (with none, jobs are
accepted but never run). With several masters (`spark://a:7077,b:7077`, high
availability) the one that is ALIVE counts.
"""

import re
from urllib.parse import urlsplit

import httpx

from ...models.services import cluster_service_name
from ..clusters import Cluster
from .check import Finding, HealthCheck, Unhealthy, describe_error
from .http_client import LazyHttpClient

DEFAULT_UI_PORT = 8080
UI_VERSION = re.compile(r'<span class="version[^"]*">\s*([^<\s]+)\s*</span>')


def master_ui_urls(cluster: Cluster) -> list[str]:
    """The cluster's UI URL if it has one, else each master host's default UI port."""
    if cluster.ui_url:
        return [cluster.ui_url.rstrip("/")]
    hosts = cluster.master_url.removeprefix("spark://").split("/", 1)[0]
    urls = []
    for host_port in hosts.split(","):
        host = urlsplit(f"//{host_port}").hostname
        if host:
            urls.append(f"http://{host if ':' not in host else f'[{host}]'}:{DEFAULT_UI_PORT}")
    return urls


class StandaloneSparkCheck(HealthCheck):
    kind = "spark"

    def __init__(self, cluster: Cluster):
        super().__init__(cluster_service_name(cluster.id))
        self.cluster = cluster
        self._versions: dict[str, str] = {}  # a master's version, read once from its UI page
        self._client = LazyHttpClient(follow_redirects=True)

    async def aclose(self) -> None:
        await self._client.aclose()

    def target(self) -> dict:
        return {"master_url": self.cluster.master_url}

    async def probe(self, timeout: float) -> Finding:
        urls = master_ui_urls(self.cluster)
        if not urls:
            raise Unhealthy(f"no master UI address in {self.cluster.master_url!r}; set SPARK_UI_URL")
        problems = []
        timed_out = False
        client = await self._client.get()
        for url in urls:
            try:
                response = await client.get(f"{url}/json/", timeout=timeout)
                response.raise_for_status()
                state = response.json()
            except (httpx.HTTPError, ValueError) as error:
                timed_out = isinstance(error, httpx.TimeoutException)
                problems.append(f"{url}: {describe_error(error)}")
                continue
            if not isinstance(state, dict) or "status" not in state:
                problems.append(f"{url}/json/ is not a Spark master's status (is it a driver's UI?)")
                continue
            if state.get("status") == "ALIVE":
                return await self._alive(client, url, state, timeout)
            problems.append(f"{url}: master is {state.get('status')}")
        if len(problems) == 1 and timed_out:
            raise TimeoutError
        raise Unhealthy("; ".join(problems))

    async def _alive(self, client: httpx.AsyncClient, url: str, state: dict, timeout: float) -> Finding:
        details = {
            "ui_url": url,
            "status": state.get("status"),
            "alive_workers": state.get("aliveworkers"),
            "cores": state.get("cores"),
            "cores_used": state.get("coresused"),
            "memory_mb": state.get("memory"),
            "memory_used_mb": state.get("memoryused"),
            "active_apps": len(state.get("activeapps") or ()),
        }
        version = await self._version(client, url, timeout)
        if not state.get("aliveworkers"):
            raise Unhealthy("the master is ALIVE but has no alive workers", version=version, details=details)
        return Finding(version=version, details=details)

    async def _version(self, client: httpx.AsyncClient, url: str, timeout: float) -> str | None:
        if url not in self._versions:
            try:
                response = await client.get(f"{url}/", timeout=timeout)
                found = UI_VERSION.search(response.text)
            except httpx.HTTPError:
                return None
            if found is None:
                return None
            self._versions[url] = found.group(1)
        return self._versions[url]
