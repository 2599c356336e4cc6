"""Airflow at AIRFLOW_BASE_URL: Airflow 3's `/api/v2/monitor/health`, or Airflow 2's `/health`
where that is 404. Both documents give each component a `status` (`healthy`, `unhealthy`,
or null for a component that never ran, as a triggerer that is not deployed); Airflow is
unhealthy when any component that reports a status reports anything but healthy. The
version comes from `/api/v2/version` (Airflow 2: `/api/v1/version`) when it answers."""

import asyncio

import httpx

from .check import Finding, HealthCheck, Unhealthy, describe_error
from .http_client import LazyHttpClient
from .settings import AirflowSettings

COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
AIRFLOW_3 = ("/api/v2/monitor/health", "/api/v2/version")
AIRFLOW_2 = ("/health", "/api/v1/version")


class AirflowCheck(HealthCheck):
    kind = "airflow"

    def __init__(self, settings: AirflowSettings | None, name: str = "airflow"):
        super().__init__(name, secrets=settings.secrets() if settings else ())
        self.settings = settings
        self._client: LazyHttpClient | None = None
        if settings is not None:
            auth = httpx.BasicAuth(settings.username, settings.password) \
                if settings.username and settings.password else None
            self._client = LazyHttpClient(base_url=settings.base_url, auth=auth)

    def disabled_reason(self) -> str | None:
        return None if self.settings else "not configured: AIRFLOW_BASE_URL is not set"

    def target(self) -> dict:
        return {"url": self.settings.base_url}

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def probe(self, timeout: float) -> Finding:
        client = await self._client.get()
        health_path = AIRFLOW_3[0]
        health, version = await _health_and_version(client, *AIRFLOW_3, timeout)
        if health.status_code == 404:
            health_path = AIRFLOW_2[0]
            health, version = await _health_and_version(client, *AIRFLOW_2, timeout)
        details = {"health_endpoint": health_path}
        if not health.is_success:
            raise Unhealthy(f"GET {health_path} answered {health.status_code} {health.reason_phrase}",
                            version=version, details=details)
        try:
            document = health.json()
        except ValueError:
            document = None
        if not isinstance(document, dict) or not any(isinstance(document.get(c), dict) for c in COMPONENTS):
            raise Unhealthy(f"GET {health_path} did not answer with Airflow's health document", version=version,
                            details=details)
        problems = _read_components(document, details)
        if problems:
            raise Unhealthy("; ".join(problems), version=version, details=details)
        return Finding(version=version, details=details)


async def _health_and_version(client: httpx.AsyncClient, health_path: str, version_path: str,
                              timeout: float) -> tuple[httpx.Response, str | None]:
    """Both at once: a check is as slow as its slowest request, not their sum."""
    version = asyncio.ensure_future(_version(client, version_path, timeout))
    try:
        health = await client.get(health_path, timeout=timeout)
    except httpx.TimeoutException:
        version.cancel()
        raise TimeoutError from None
    except httpx.TransportError as error:
        version.cancel()
        raise Unhealthy(f"cannot reach {client.base_url}: {describe_error(error)}") from None
    except BaseException:
        version.cancel()
        raise
    return health, await version


async def _version(client: httpx.AsyncClient, path: str, timeout: float) -> str | None:
    try:
        response = await client.get(path, timeout=timeout)
        version = response.json().get("version") if response.is_success else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None  # the version is a nicety; the health document decides
    return version if isinstance(version, str) else None


def _read_components(document: dict, details: dict) -> list[str]:
    """Each component's status into `details`; the problems of those not healthy."""
    problems = []
    for component in COMPONENTS:
        info = document.get(component)
        if not isinstance(info, dict):
            continue
        status = info.get("status")
        details[component] = status if isinstance(status, str) else None
        heartbeat = info.get(f"latest_{component}_heartbeat")
        if isinstance(heartbeat, str):
            details[f"{component}_heartbeat"] = heartbeat
        if status is not None and status != "healthy":
            since = f" (last heartbeat {heartbeat})" if isinstance(heartbeat, str) else ""
            problems.append(f"{component} is {status}{since}")
    return problems

