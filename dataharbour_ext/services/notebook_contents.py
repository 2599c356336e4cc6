"""The server's ContentsManager as the notebook service uses it: awaited, with the rules of
Jupyter's own /api/contents handlers (hidden files), and its HTTP errors as domain errors.

Every read and write of a notebook goes through it, so a custom contents manager (jupytext's,
a database or S3 one) works unchanged. The manager is looked up at each call: jupytext's
server extension replaces the server's manager after ours has loaded.

A synchronous manager is called on the event loop, as Jupyter's contents handlers call it:
it emits contents events (rename, delete) whose listeners, the File ID service among them,
are asyncio tasks created in the calling thread, so it cannot run on a worker thread.
jupyter_server's default manager is asynchronous and reads and writes files on threads.
"""

from collections.abc import Callable
from contextlib import contextmanager

from jupyter_core.utils import ensure_async

from ..errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge

_ERRORS = {403: Forbidden, 404: NotFound, 409: Conflict, 413: PayloadTooLarge}


def contents_message(error: Exception) -> str:
    """The words of a contents manager's tornado.web.HTTPError (its log_message)."""
    message = getattr(error, "log_message", None) or str(error)
    args = getattr(error, "args", ())
    if getattr(error, "log_message", None) and args:
        try:
            message = message % args
        except (TypeError, ValueError):
            pass
    return message


@contextmanager
def contents_errors(field: str | None = None):
    """The contents manager's HTTPError (it raises tornado's) as the domain error of its status;
    a 400 names `field` when given. Anything else (a 500) passes unchanged."""
    try:
        yield
    except Exception as error:
        status = getattr(error, "status_code", None)
        if status == 400:
            raise InvalidInput(field, contents_message(error)) from error
        if status in _ERRORS:
            raise _ERRORS[status](contents_message(error)) from error
        raise


class NotebookContents:
    def __init__(self, contents_manager: Callable[[], object]):
        self._contents_manager = contents_manager

    @property
    def manager(self):
        return self._contents_manager()

    async def is_hidden(self, path: str) -> bool:
        manager = self.manager
        if manager.allow_hidden:
            return False
        with contents_errors():
            return bool(await ensure_async(manager.is_hidden(path)))

    async def read(self, path: str, content: bool = True) -> dict:
        """The notebook model at `path` (its content an nbformat v4 NotebookNode, trust marked)."""
        if await self.is_hidden(path):
            raise NotFound(f"file or directory {path!r} does not exist")
        with contents_errors():
            return await ensure_async(self.manager.get(path, content=content, type="notebook"))

    async def read_text(self, path: str) -> str:
        """The file at `path` as text, unparsed: cheaper than `read` when only a few fields matter."""
        if await self.is_hidden(path):
            raise NotFound(f"file or directory {path!r} does not exist")
        with contents_errors():
            return (await ensure_async(self.manager.get(path, content=True, type="file", format="text")))["content"]

    async def size(self, path: str) -> int | None:
        """The file's size in bytes, without reading it (None if the manager does not say)."""
        with contents_errors():
            return (await ensure_async(self.manager.get(path, content=False, type="file"))).get("size")

    async def list_folder(self, path: str) -> list[dict]:
        """The entries of folder `path` (no content), as the file browser lists them."""
        if await self.is_hidden(path):
            raise NotFound(f"file or directory {path!r} does not exist")
        with contents_errors("folder"):
            return (await ensure_async(self.manager.get(path, content=True, type="directory"))).get("content") or []

    async def exists(self, path: str) -> bool:
        with contents_errors():
            return bool(await ensure_async(self.manager.exists(path)))

    async def is_file(self, path: str) -> bool:
        """A file (not a folder) is at `path`: one stat with Jupyter's local manager, no read."""
        with contents_errors():
            return bool(await ensure_async(self.manager.file_exists(path)))

    async def check_folder(self, folder: str, field: str = "folder") -> None:
        """400 naming `field` unless `folder` is an existing, visible folder."""
        where = repr(folder) if folder else "the root folder"
        try:
            with contents_errors(field):
                exists = await ensure_async(self.manager.dir_exists(folder))
        except NotFound as error:  # outside the root, or not a relative path
            raise InvalidInput(field, error.message) from None
        if not exists or await self.is_hidden(folder):
            raise InvalidInput(field, f"no folder {where} under the Jupyter root")

    async def check_writable(self, path: str, field: str) -> None:
        """400 naming `field` if the server's rules forbid creating `path` (a hidden name)."""
        if await self.is_hidden(path):
            raise InvalidInput(
                field, f"cannot create {path!r}: hidden files are not allowed (ContentsManager.allow_hidden)"
            )

    async def save(self, path: str, notebook) -> dict:
        """Write `notebook` (validated by the caller) at `path`; its model without content."""
        with contents_errors():
            return await ensure_async(self.manager.save({"type": "notebook", "content": notebook}, path))

    async def rename(self, old_path: str, new_path: str) -> None:
        with contents_errors("name"):
            await ensure_async(self.manager.rename(old_path, new_path))

    async def delete(self, path: str) -> None:
        if await self.is_hidden(path):
            raise InvalidInput(None, f"cannot delete {path!r}: it is hidden")
        with contents_errors():
            await ensure_async(self.manager.delete(path))

    async def free_name(self, name: str, folder: str) -> str:
        """`name`, or the contents manager's numbered variant of it that is free in `folder`."""
        with contents_errors("folder"):
            return await ensure_async(self.manager.increment_filename(name, folder, insert="-"))
