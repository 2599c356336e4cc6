"""Executing Calls over HTTP (httpx), blocking or async, with the one retry policy: only
idempotent calls (GET, PUT, DELETE) are retried, on a connection that failed or broke and on
502/503/504, after a short backoff. A POST (submit, kill, restart, execute) is never sent twice."""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from .calls import Call, decode, retry_after_seconds
from .discovery import ServerAddress
from .errors import ConnectionFailed

RETRIED_STATUSES = frozenset({502, 503, 504})
# The request may not have reached the server, or its answer was cut off. A read timeout is not
# among them: the server is there but slow, and asking again only makes the caller wait longer.
RETRIED_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError, httpx.WriteError,
                  httpx.RemoteProtocolError)
# The request never reached the server.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)
DEFAULT_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 2  # further attempts after the first
    backoff: float = 0.25  # seconds before the first retry, doubled for each next one
    max_delay: float = 5.0

    def delay(self, call: Call, attempt: int, *, error: Exception | None = None, status: int | None = None,
              headers=None) -> float | None:
        """Seconds to wait before trying `call` again after `attempt` ended so, or None: don't."""
        if not call.retryable or attempt > self.retries:
            return None
        if error is not None and not isinstance(error, RETRIED_ERRORS):
            return None
        if call.method == "DELETE" and error is not None and not isinstance(error, NOT_SENT_ERRORS):
            return None  # it may have been done: a second DELETE would say 404 for a delete that worked
        if error is None and status not in RETRIED_STATUSES:
            return None
        delay = self.backoff * 2 ** (attempt - 1)
        suggested = retry_after_seconds(headers) if headers is not None else None
        return min(self.max_delay, max(delay, suggested or 0.0))


def http_timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT))


def _request_options(call: Call) -> dict[str, Any]:
    options: dict[str, Any] = {"params": list(call.params)}
    if call.body is not None:
        options["json"] = call.body
    if call.timeout is not None:
        options["timeout"] = http_timeout(call.timeout)
    return options


def _connection_failed(address: ServerAddress, call: Call, error: Exception) -> ConnectionFailed:
    if isinstance(error, httpx.TimeoutException):
        what = "did not answer in time"
    else:
        what = "could not be reached"
    detail = str(error) or type(error).__name__
    return ConnectionFailed(f"the Jupyter server at {address.url} {what} ({call.method} {call.path}: {detail})")


class SyncTransport:
    def __init__(self, address: ServerAddress, *, timeout: float = DEFAULT_TIMEOUT, retry: RetryPolicy | None = None,
                 verify: bool | str = True):
        self.address = address
        self.retry = retry or RetryPolicy()
        self.http = httpx.Client(headers=address.headers(), timeout=http_timeout(timeout), verify=verify)

    def run(self, call: Call):
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.http.request(call.method, self.address.api_url(call.path),
                                             **_request_options(call))
            except httpx.TransportError as error:
                delay = self.retry.delay(call, attempt, error=error)
                if delay is None:
                    raise _connection_failed(self.address, call, error) from error
                time.sleep(delay)
                continue
            delay = self.retry.delay(call, attempt, status=response.status_code, headers=response.headers)
            if delay is None:
                return decode(call, response.status_code, response.content, response.headers)
            time.sleep(delay)

    def close(self) -> None:
        self.http.close()


class AsyncTransport:
    def __init__(self, address: ServerAddress, *, timeout: float = DEFAULT_TIMEOUT, retry: RetryPolicy | None = None,
                 verify: bool | str = True):
        self.address = address
        self.retry = retry or RetryPolicy()
        self.http = httpx.AsyncClient(headers=address.headers(), timeout=http_timeout(timeout), verify=verify)

    async def run(self, call: Call):
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self.http.request(call.method, self.address.api_url(call.path),
                                                   **_request_options(call))
            except httpx.TransportError as error:
                delay = self.retry.delay(call, attempt, error=error)
                if delay is None:
                    raise _connection_failed(self.address, call, error) from error
                await asyncio.sleep(delay)
                continue
            delay = self.retry.delay(call, attempt, status=response.status_code, headers=response.headers)
            if delay is None:
                return decode(call, response.status_code, response.content, response.headers)
            await asyncio.sleep(delay)

    async def close(self) -> None:
        await self.http.aclose()
