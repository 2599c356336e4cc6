"""AsyncDataHarbourClient: the whole API for asyncio code (`await client.jobs.get(id)`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from ..models import Job, ObjectInfo
from .discovery import ServerAddress, find_server
from .groups import Clusters, Dashboard, Jobs, Monitoring, Notebooks, Storage, openapi_call
from .job_watch import follow_job, wait_for_job
from .stream import AsyncStream, StreamMessage
from .transport import DEFAULT_TIMEOUT, AsyncTransport, RetryPolicy


class AsyncJobs(Jobs):
    def __init__(self, run, client: AsyncDataHarbourClient):
        super().__init__(run)
        self._client = client

    async def wait(self, job_id: str, *, timeout: float | None = None) -> Job:
        """The job once it has ended (succeeded, failed, killed, lost); TimeoutError after
        `timeout` seconds. Watches the live stream, polls where there is none."""
        return await wait_for_job(self._client, job_id, timeout=timeout)

    def follow(self, job_id: str, *, stream: str = "all", offset: int = 0) -> AsyncIterator[StreamMessage]:
        """`async for message in client.jobs.follow(id)`: the job's `job_update`, `job_progress`
        and `job_log` messages until it has ended and its whole log has come."""
        return follow_job(self._client, job_id, stream=stream, offset=offset)


class AsyncStorage(Storage):
    async def list_all(self, bucket: str | None = None, prefix: str = "", delimiter: str = "/", *,
                       page_size: int | None = None) -> AsyncIterator[str | ObjectInfo]:
        """`async for entry in client.storage.list_all(bucket, "raw/")`: every folder (its prefix,
        a str) and object (an ObjectInfo) under `prefix`, page after page as they are read; each
        page's folders come before its objects."""
        cursor = None
        while True:
            page = await self.list(bucket, prefix, delimiter, limit=page_size, cursor=cursor)
            for folder in page.folders:
                yield folder
            for item in page.objects:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


class AsyncDataHarbourClient:
    """`async with AsyncDataHarbourClient() as client: job = await client.jobs.submit(...)`.

    The server is `url` / `token`, else $DATAHARBOUR_URL / $DATAHARBOUR_TOKEN (set in kernels
    the server starts) or $JUPYTER_BASE_URL / $JUPYTER_TOKEN, else the running Jupyter server
    whose root holds the working directory (or the most recent one). Groups: `jobs`,
    `clusters`, `notebooks`, `monitoring`, `dashboard`, `storage`; every call is awaited and returns the
    server's pydantic model."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = 2, backoff: float = 0.25, verify: bool | str = True,
                 address: ServerAddress | None = None):
        self.address = address or find_server(url, token)
        self.verify = verify
        self._transport = AsyncTransport(self.address, timeout=timeout, retry=RetryPolicy(retries, backoff),
                                         verify=verify)
        run = self._transport.run
        self.jobs = AsyncJobs(run, self)
        self.clusters = Clusters(run)
        self.notebooks = Notebooks(run)
        self.monitoring = Monitoring(run)
        self.dashboard = Dashboard(run)
        self.storage = AsyncStorage(run)

    @property
    def url(self) -> str:
        return self.address.url

    async def openapi(self) -> dict[str, Any]:
        return await self._transport.run(openapi_call())

    def stream(self, topics: Iterable[str | Mapping] | None = None, *, client_id: str | None = None,
               control: bool = False, reconnect_timeout: float = 60.0) -> AsyncStream:
        """The live stream: `async with client.stream(["jobs"]) as stream: async for m in stream`.
        `topics`: `jobs`, `job:<id>`, `clusters`, `metrics`, `services`, or
        `{"topic": "job_log:<id>", "offset": 0, "stream": "all"}`; None keeps the server's
        defaults (jobs, metrics). Reconnects and resumes on its own; `control=True` also yields
        welcome / subscribed / unsubscribed / pong."""
        return AsyncStream(self.address, topics, client_id=client_id, control=control,
                           reconnect_timeout=reconnect_timeout, verify=self.verify)

    async def aclose(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncDataHarbourClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncDataHarbourClient {self.address.url}>"
