"""DataHarbourClient: the whole API for scripts and notebooks, blocking (`client.jobs.get(id)`)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..models import Job, ObjectInfo
from .async_client import AsyncDataHarbourClient
from .discovery import ServerAddress, find_server
from .groups import Clusters, Dashboard, Jobs, Monitoring, Notebooks, Storage, openapi_call
from .loop_thread import LoopThread
from .stream import AsyncStream, StreamMessage
from .transport import DEFAULT_TIMEOUT, RetryPolicy, SyncTransport


class SyncJobs(Jobs):
    def __init__(self, run, client: DataHarbourClient):
        super().__init__(run)
        self._client = client

    def wait(self, job_id: str, *, timeout: float | None = None) -> Job:
        """The job once it has ended (succeeded, failed, killed, lost); TimeoutError after
        `timeout` seconds. Watches the live stream, polls where there is none. An interrupt
        (Ctrl-C) stops the wait, not the job."""
        loop, client = self._client._background()
        return loop.run(client.jobs.wait(job_id, timeout=timeout))

    def follow(self, job_id: str, *, stream: str = "all", offset: int = 0) -> Iterator[StreamMessage]:
        """`for message in client.jobs.follow(id)`: the job's `job_update`, `job_progress` and
        `job_log` messages until it has ended and its whole log has come."""
        loop, client = self._client._background()
        return loop.iterate(client.jobs.follow(job_id, stream=stream, offset=offset))


class SyncStorage(Storage):
    def list_all(self, bucket: str | None = None, prefix: str = "", delimiter: str = "/", *,
                 page_size: int | None = None) -> Iterator[str | ObjectInfo]:
        """`for entry in client.storage.list_all(bucket, "raw/")`: every folder (its prefix, a
        str) and object (an ObjectInfo) under `prefix`, page after page as they are read; each
        page's folders come before its objects."""
        cursor = None
        while True:
            page = self.list(bucket, prefix, delimiter, limit=page_size, cursor=cursor)
            yield from page.folders
            yield from page.objects
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


class SyncStream:
    """The live stream for blocking code: `with client.stream(["jobs"]) as stream: for m in stream`.
    It runs on the client's private event loop thread."""

    def __init__(self, loop: LoopThread, stream: AsyncStream):
        self._loop = loop
        self._stream = stream

    @property
    def client_id(self) -> str:
        return self._stream.client_id

    @property
    def last_seq(self) -> int:
        return self._stream.last_seq

    @property
    def reconnects(self) -> int:
        return self._stream.reconnects

    def open(self) -> SyncStream:
        self._loop.run(self._stream.open())
        return self

    def receive(self, timeout: float | None = None) -> StreamMessage | None:
        """The next message, or None if none came within `timeout` seconds."""
        return self._loop.run(self._stream.receive(timeout))

    def subscribe(self, topics: Iterable[str | Mapping]) -> None:
        self._loop.run(self._stream.subscribe(topics))

    def unsubscribe(self, topics: Iterable[str]) -> None:
        self._loop.run(self._stream.unsubscribe(topics))

    def close(self) -> None:
        if self._loop.loop.is_running():
            self._loop.run(self._stream.close())

    def __enter__(self) -> SyncStream:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[StreamMessage]:
        return self._loop.iterate(self._stream)


class DataHarbourClient:
    """`client = DataHarbourClient(); job = client.jobs.submit(name="n", code="print(1)")`.

    The server is `url` / `token`, else $DATAHARBOUR_URL / $DATAHARBOUR_TOKEN (set in kernels
    the server starts) or $JUPYTER_BASE_URL / $JUPYTER_TOKEN, else the running Jupyter server
    whose root holds the working directory (or the most recent one). Groups: `jobs`,
    `clusters`, `notebooks`, `monitoring`, `dashboard`, `storage`; each call returns the server's
    pydantic model and raises a DataHarbourError (NotFound, Conflict, InvalidRequest, ...) for
    an error answer, ConnectionFailed when the server cannot be reached."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = 2, backoff: float = 0.25, verify: bool | str = True,
                 address: ServerAddress | None = None):
        self.address = address or find_server(url, token)
        self._options = {"timeout": timeout, "retries": retries, "backoff": backoff, "verify": verify}
        self._transport = SyncTransport(self.address, timeout=timeout, retry=RetryPolicy(retries, backoff),
                                        verify=verify)
        run = self._transport.run
        self.jobs = SyncJobs(run, self)
        self.clusters = Clusters(run)
        self.notebooks = Notebooks(run)
        self.monitoring = Monitoring(run)
        self.dashboard = Dashboard(run)
        self.storage = SyncStorage(run)
        self._loop: LoopThread | None = None
        self._async: AsyncDataHarbourClient | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.address.url

    def openapi(self) -> dict[str, Any]:
        return self._transport.run(openapi_call())

    def stream(self, topics: Iterable[str | Mapping] | None = None, *, client_id: str | None = None,
               control: bool = False, reconnect_timeout: float = 60.0) -> SyncStream:
        """The live stream (see AsyncDataHarbourClient.stream), as a blocking iterator."""
        loop, client = self._background()
        return SyncStream(loop, client.stream(topics, client_id=client_id, control=control,
                                              reconnect_timeout=reconnect_timeout))

    def _background(self) -> tuple[LoopThread, AsyncDataHarbourClient]:
        """The private event loop and an async client on it, made at first use."""
        with self._lock:
            if self._loop is None:
                self._loop = LoopThread()
                self._async = self._loop.run(_async_client(self.address, self._options))
                # A client dropped without close() must not leave its thread and loop behind.
                self._finalizer = weakref.finalize(self, _stop_background, self._loop, self._async)
            return self._loop, self._async

    def close(self) -> None:
        self._transport.close()
        with self._lock:
            if self._loop is not None:
                self._finalizer.detach()
                _stop_background(self._loop, self._async)
                self._loop = self._async = None

    def __enter__(self) -> DataHarbourClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DataHarbourClient {self.address.url}>"


def _stop_background(loop: LoopThread, client: AsyncDataHarbourClient) -> None:
    try:
        loop.run(client.aclose())
    finally:
        loop.close()


async def _async_client(address: ServerAddress, options: dict) -> AsyncDataHarbourClient:
    return AsyncDataHarbourClient(address=address, **options)
