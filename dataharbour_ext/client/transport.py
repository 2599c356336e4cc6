"""Executing Calls over HTTP (httpx), blocking or async, with the one retry policy: only
idempotent calls (GET, PUT, DELETE) are retried, on a connection that failed or broke and on
502/503/504, after a short backoff. A POST (submit, kill, restart, execute) is never sent twice.

Every answer is received as a stream: read whole (a model, bytes), or, for a call with
`save_to`, written to that file a chunk at a time. An upload's body streams from its source
(transfer.UploadBody)."""

import asyncio
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import httpx

from .calls import Call, decode, retry_after_seconds
from .discovery import ServerAddress
from .errors import ConnectionFailed
from .transfer import save_async, save_sync

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
        if call.upload is not None and not call.upload.replayable:
            # A streamed upload is sent once: after its first byte the server may have taken
            # part of it, and an iterator cannot be read again. A file path can be, from its
            # start, so a PUT from a path is sent again when the connection was never made.
            if not (call.upload.path is not None and isinstance(error, NOT_SENT_ERRORS)):
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


def _request_options(call: Call, content: Any = None, content_headers: dict[str, str] | None = None
                     ) -> dict[str, Any]:
    options: dict[str, Any] = {"params": list(call.params)}
    headers = dict(call.headers)
    if call.body is not None:
        options["json"] = call.body
    if call.upload is not None:
        options["content"] = content
        headers.update(content_headers or {})
    if headers:
        options["headers"] = headers
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


def _sync_upload(call: Call):
    return call.upload.sync_content() if call.upload is not None else nullcontext((None, None))


def _async_upload(call: Call):
    return call.upload.async_content() if call.upload is not None else nullcontext((None, None))


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
                answer = self._attempt(call)
            except httpx.TransportError as error:
                delay = self.retry.delay(call, attempt, error=error)
                if delay is None:
                    raise _connection_failed(self.address, call, error) from error
                time.sleep(delay)
                continue
            if not isinstance(answer, httpx.Response):
                return answer  # saved to its file
            delay = self.retry.delay(call, attempt, status=answer.status_code, headers=answer.headers)
            if delay is None:
                return decode(call, answer.status_code, answer.content, answer.headers)
            time.sleep(delay)

    def _attempt(self, call: Call):
        """One request: its answer read whole, or the file `call.save_to` once the body is in it."""
        with _sync_upload(call) as (content, content_headers):
            request = self.http.build_request(call.method, self.address.api_url(call.path),
                                              **_request_options(call, content, content_headers))
            response = self.http.send(request, stream=True)
        try:
            if call.save_to is not None and response.is_success:
                return save_sync(response.iter_bytes(), call.save_to)  # the pieces as they arrive
            response.read()
            return response
        finally:
            response.close()

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
                answer = await self._attempt(call)
            except httpx.TransportError as error:
                delay = self.retry.delay(call, attempt, error=error)
                if delay is None:
                    raise _connection_failed(self.address, call, error) from error
                await asyncio.sleep(delay)
                continue
            if not isinstance(answer, httpx.Response):
                return answer  # saved to its file
            delay = self.retry.delay(call, attempt, status=answer.status_code, headers=answer.headers)
            if delay is None:
                return decode(call, answer.status_code, answer.content, answer.headers)
            await asyncio.sleep(delay)

    async def _attempt(self, call: Call):
        """One request: its answer read whole, or the file `call.save_to` once the body is in it."""
        async with _async_upload(call) as (content, content_headers):
            request = self.http.build_request(call.method, self.address.api_url(call.path),
                                              **_request_options(call, content, content_headers))
            response = await self.http.send(request, stream=True)
        try:
            if call.save_to is not None and response.is_success:
                return await save_async(response.aiter_bytes(), call.save_to)
            await response.aread()
            return response
        finally:
            await response.aclose()

    async def close(self) -> None:
        await self.http.aclose()
