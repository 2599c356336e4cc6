"""The HTTP client of the checks that speak HTTP (Airflow, a Spark master's status)."""

import asyncio

import httpx


async def new_http_client(**options) -> httpx.AsyncClient:
    """A client built on a thread: building one loads the CA bundle, tens of milliseconds of
    CPU the event loop must not spend. Without keep-alive: a check every few seconds gains
    nothing from it, and a connection the service dropped meanwhile would read as a failure."""
    return await asyncio.to_thread(httpx.AsyncClient, limits=httpx.Limits(max_keepalive_connections=0), **options)
