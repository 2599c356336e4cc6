"""How many notebooks live under the Jupyter root, as the server's contents manager sees them.

The walk goes through the contents manager, so it sees what the file browser sees (hidden
files and folders and `hide_globs` left out, whatever the storage is). It is bounded (at most
`limit` entries are looked at; the count then says it is truncated) and cached: the first
call waits for a walk, later ones get the last count at once while a fresh walk runs in the
background once the count is older than `ttl` seconds.
"""

import asyncio
import inspect
import logging
import time
from collections import deque
from dataclasses import dataclass

log = logging.getLogger("dataharbour_ext.dashboard")


@dataclass(frozen=True)
class NotebookCount:
    notebooks: int
    truncated: bool  # the walk stopped at its limit: there may be more


class NotebookCounter:
    def __init__(self, contents_manager, *, limit: int, ttl: float):
        self.contents_manager = contents_manager
        self.limit = limit
        self.ttl = ttl
        self._last: NotebookCount | None = None
        self._counted_at = 0.0
        self._walk: asyncio.Task | None = None

    async def count(self) -> NotebookCount:
        if self._last is not None and time.monotonic() - self._counted_at >= self.ttl:
            self._start_walk()
        if self._last is None:
            self._start_walk()
            return await asyncio.shield(self._walk)
        return self._last

    def stop(self) -> None:
        if self._walk is not None:
            self._walk.cancel()

    def _start_walk(self) -> None:
        if self._walk is None or self._walk.done():
            self._walk = asyncio.ensure_future(self._count_and_keep())

    async def _count_and_keep(self) -> NotebookCount:
        started = time.monotonic()
        result = await self.walk()
        self._last, self._counted_at = result, started
        return result

    async def walk(self) -> NotebookCount:
        """Count notebooks folder by folder, breadth first, looking at `limit` entries at most."""
        notebooks, seen, folders = 0, 0, deque([""])
        while folders:
            path = folders.popleft()
            try:
                listing = await self._list(path)
            except Exception as error:  # noqa: BLE001 - unreadable, vanished or hidden: not counted
                log.debug("DataHarbour: not counting notebooks in %r: %s", path, error)
                continue
            for entry in listing:
                seen += 1
                if seen > self.limit:
                    return NotebookCount(notebooks, truncated=True)
                if entry.get("type") == "directory":
                    folders.append(entry["path"])
                elif entry.get("type") == "notebook":
                    notebooks += 1
        return NotebookCount(notebooks, truncated=False)

    async def _list(self, path: str) -> list[dict]:
        get = self.contents_manager.get
        if inspect.iscoroutinefunction(get):
            # An async contents manager does its blocking calls in threads itself.
            model = await get(path, content=True, type="directory")
        else:
            model = await asyncio.to_thread(get, path, content=True, type="directory")
        return model.get("content") or []
