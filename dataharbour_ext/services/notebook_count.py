"""How many notebooks live under the Jupyter root, as the server's contents manager shows them.

The count follows the file browser's rules: hidden files and folders left out (unless the
manager's `allow_hidden`), `hide_globs` left out, a symlink loop walked once. It is bounded
(at most `limit` listed entries are looked at, breadth first; the count then says it is
truncated) and cached: the first call waits for a walk, later ones get the last count at once
while a fresh walk runs in the background once the count is older than `ttl` seconds.

Two ways to walk:
- File-based managers (FileContentsManager, AsyncFileContentsManager and their subclasses:
  they have `root_dir` and `_get_os_path`): `os.scandir` on ONE worker thread, with the rules
  of their directory listing (`FileContentsManager._dir_model`). Going through them instead
  would cost several stat calls per entry on the event loop: even the async manager's `get`,
  `_base_model` and hidden checks are synchronous.
- Any other manager: its own `get`, folder by folder. A synchronous one runs on a thread; an
  async one is awaited on the loop, and whatever blocking calls it makes there are its own.
"""

import asyncio
import inspect
import logging
import os
import stat
import time
from collections import deque
from dataclasses import dataclass

from jupyter_core.paths import is_file_hidden

log = logging.getLogger("dataharbour_ext.dashboard")


@dataclass(frozen=True)
class NotebookCount:
    notebooks: int
    truncated: bool  # the walk stopped at its limit: there may be more


def is_file_based(contents_manager) -> bool:
    """Whether `contents_manager` keeps its files in a folder of this machine (jupyter_server's
    file managers), so that counting can read the folder itself."""
    return hasattr(contents_manager, "root_dir") and hasattr(contents_manager, "_get_os_path")


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
        if is_file_based(self.contents_manager):
            return await asyncio.to_thread(self.scan_files)
        return await self.walk_contents()

    # ---- file-based managers: the folder itself, on a thread ---------------------------------

    def scan_files(self) -> NotebookCount:
        """Count notebooks under the manager's root with os.scandir (blocking: call it on a thread).

        A folder reached again (through a symlink to it, or a loop) is not walked twice: the
        file browser would show its notebooks at every path, but they are the same files."""
        manager = self.contents_manager
        root = os.path.abspath(manager.root_dir)
        try:
            root_stat = os.stat(root)
        except OSError as error:
            log.debug("DataHarbour: not counting notebooks under %r: %s", root, error)
            return NotebookCount(0, truncated=False)
        walked = {(root_stat.st_dev, root_stat.st_ino)}
        notebooks, seen, folders = 0, 0, deque([root])
        while folders:
            folder = folders.popleft()
            try:
                with os.scandir(folder) as scan:
                    entries = list(scan)
            except OSError as error:  # unreadable or vanished: not counted, as the browser cannot list it
                log.debug("DataHarbour: not counting notebooks in %r: %s", folder, error)
                continue
            for entry in entries:
                listed = _listed(entry, manager)
                if listed is None:
                    continue
                seen += 1
                if seen > self.limit:
                    return NotebookCount(notebooks, truncated=True)
                if stat.S_ISDIR(listed.st_mode):
                    if (listed.st_dev, listed.st_ino) not in walked:
                        walked.add((listed.st_dev, listed.st_ino))
                        folders.append(entry.path)
                elif entry.name.endswith(".ipynb"):
                    notebooks += 1
        return NotebookCount(notebooks, truncated=False)

    # ---- any other manager: its own listings -------------------------------------------------

    async def walk_contents(self) -> NotebookCount:
        """Count notebooks folder by folder through the contents manager's `get`.

        A listing equal to one of the folder's ancestors' (same names, types and modification
        times) is a link back up, as a symlink loop would be in a manager that passes links
        through: it is not walked again."""
        notebooks, seen = 0, 0
        folders: deque[tuple[str, tuple[frozenset, ...]]] = deque([("", ())])
        while folders:
            path, ancestors = folders.popleft()
            try:
                listing = await self._list(path)
            except Exception as error:  # noqa: BLE001 - unreadable, vanished or hidden: not counted
                log.debug("DataHarbour: not counting notebooks in %r: %s", path, error)
                continue
            signature = frozenset((entry.get("name"), entry.get("type"), str(entry.get("last_modified")))
                                  for entry in listing)
            if listing and signature in ancestors:
                continue
            lineage = (*ancestors, signature)
            for entry in listing:
                seen += 1
                if seen > self.limit:
                    return NotebookCount(notebooks, truncated=True)
                if entry.get("type") == "directory":
                    folders.append((entry["path"], lineage))
                elif entry.get("type") == "notebook":
                    notebooks += 1
        return NotebookCount(notebooks, truncated=False)

    async def _list(self, path: str) -> list[dict]:
        get = self.contents_manager.get
        if inspect.iscoroutinefunction(get):
            model = await get(path, content=True, type="directory")
        else:
            model = await asyncio.to_thread(get, path, content=True, type="directory")
        return model.get("content") or []


def _listed(entry: os.DirEntry, manager) -> os.stat_result | None:
    """What the file browser lists `entry` as: the stat of the folder it leads to (a link
    followed), the entry's own stat for anything else it lists, or None if it leaves it out.

    The rules of FileContentsManager._dir_model: only regular files, folders and symlinks;
    names that `should_list` (`hide_globs`); hidden ones (dot names, folders this user cannot
    enter) only with `allow_hidden`, and without it no link it cannot follow (a loop); a
    broken link is listed, as a file (a notebook if its name says so)."""
    try:
        own = entry.stat(follow_symlinks=False)
    except OSError:  # vanished
        return None
    if not (stat.S_ISLNK(own.st_mode) or stat.S_ISREG(own.st_mode) or stat.S_ISDIR(own.st_mode)):
        return None
    if not manager.should_list(entry.name):
        return None
    if not manager.allow_hidden:
        try:
            if is_file_hidden(entry.path, stat_res=own):
                return None
        except OSError:  # a link loop, or a link this user may not follow
            return None
    if not stat.S_ISLNK(own.st_mode):
        return own
    try:
        return os.stat(entry.path)
    except OSError:
        return own
