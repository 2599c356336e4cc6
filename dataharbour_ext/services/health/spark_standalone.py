"""A Spark standalone master (`spark://`): its JSON status at `<master UI>/json/`.

Healthy when a master is ALIVE and has at least one alive worker (with none, jobs are
accepted but never run). With several masters (`spark://a:7077,b:7077`, high
availability) the one that is ALIVE counts.

A cluster this server launched is asked only while it is `running`: starting, stopping or
stopped it is `disabled`, failed it is `unhealthy`, each with the launcher's reason (not a
"connection refused" from a master that is not meant to be up).
"""

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from ...models.services import cluster_service_name
from ...secrets import redact_text
from ...spark.standalone import MasterStatus, NotAMaster, parse_master_status
from ..clusters import Cluster, ClusterCondition
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

    def __init__(self, cluster: Cluster, condition: Callable[[str], ClusterCondition] | None = None):
        super().__init__(cluster_service_name(cluster.id))
        self.cluster = cluster
        self.condition = condition  # a launched cluster's state, as its launcher keeps it
        self._versions: dict[str, str] = {}  # a master's version, read once from its UI page
        self._client = LazyHttpClient(follow_redirects=True)

    async def aclose(self) -> None:
        await self._client.aclose()

    def disabled_reason(self) -> str | None:
        condition = self._launched_condition()
        if condition is None or condition.state in ("running", "failed"):
            return None
        return _with_reason(f"the cluster is {condition.state}", condition)

    def _launched_condition(self) -> ClusterCondition | None:
        return self.condition(self.cluster.id) if self.condition is not None else None

    def target(self) -> dict:
        return {"master_url": redact_text(self.cluster.master_url)}

    async def probe(self, timeout: float) -> Finding:
        condition = self._launched_condition()
        if condition is not None and condition.state == "failed":
            raise Unhealthy(redact_text(_with_reason("the cluster failed", condition)))
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
                status = parse_master_status(response.json())
            except NotAMaster:
                problems.append(f"{url}/json/ is not a Spark master's status (is it a driver's UI?)")
                continue
            except (httpx.HTTPError, ValueError) as error:
                timed_out = isinstance(error, httpx.TimeoutException)
                problems.append(f"{url}: {describe_error(error)}")
                continue
            if status.status == "ALIVE":
                return await self._alive(client, url, status, timeout)
            problems.append(f"{url}: master is {status.status}")
        if len(problems) == 1 and timed_out:
            raise TimeoutError
        raise Unhealthy(redact_text("; ".join(problems)))  # a UI URL may carry a password

    async def _alive(self, client: httpx.AsyncClient, url: str, status: MasterStatus, timeout: float) -> Finding:
        details = {
            "ui_url": redact_text(url),
            "status": status.status,
            "alive_workers": len(status.alive_workers),
            "cores": status.cores,
            "cores_used": status.cores_used,
            "memory_mb": status.memory_mb,
            "memory_used_mb": status.memory_used_mb,
            "active_apps": status.active_apps,
        }
        version = await self._version(client, url, timeout)
        if not status.alive_workers:
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


def _with_reason(what: str, condition: ClusterCondition) -> str:
    return f"{what}: {condition.reason}" if condition.reason else what
