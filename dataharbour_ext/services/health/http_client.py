"""The HTTP client of the checks that speak HTTP (Airflow, a Spark master's status)."""

import asyncio

import httpx


class LazyHttpClient:
    """An `httpx.AsyncClient` built on first use, on a thread: building one loads the CA
    bundle, tens of milliseconds of CPU the event loop must not spend. Without keep-alive: a
    check every few seconds gains nothing from it, and a connection the service dropped
    meanwhile would read as a failure.

    The client belongs to this object from the moment its building starts: a check cancelled
    while the thread builds it (its timeout, the server stopping) leaves it here, and
    `aclose` closes it once built."""

    def __init__(self, **options):
        self._options = {"limits": httpx.Limits(max_keepalive_connections=0), **options}
        self._building: asyncio.Future | None = None

    async def get(self) -> httpx.AsyncClient:
        building = self._building
        if building is None or (building.done() and (building.cancelled() or building.exception() is not None)):
            building = self._building = asyncio.ensure_future(asyncio.to_thread(httpx.AsyncClient, **self._options))
        # Shielded: a caller that goes away does not cancel the building (the thread would
        # finish anyway, and its client would be lost unclosed).
        return await asyncio.shield(building)

    async def aclose(self) -> None:
        building, self._building = self._building, None
        if building is None:
            return
        try:
            client = await building
        except Exception:
            return  # never built: nothing to close
        await client.aclose()
