"""NotebookService: notebooks under the Jupyter root, by File ID: list, read, create, change,
delete, and add or delete cells.

Every read and write goes through the server's contents manager (NotebookContents) and every
write is validated by nbformat first, so bad input changes nothing. Our own changes to one
notebook run one at a time (a lock per notebook): two API calls adding cells both land.
Edits made in JupyterLab meanwhile are JupyterLab's, as with any contents API client.
"""

import asyncio
import posixpath
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from jupyter_core.utils import ensure_async
from pydantic import ValidationError

from ..errors import Conflict, DataHarbourError, InvalidInput, NotFound
from ..models import (
    NOTEBOOK_SUFFIX,
    Cell,
    CellCreate,
    Notebook,
    NotebookCreate,
    NotebookList,
    NotebookQuery,
    NotebookSummary,
    NotebookUpdate,
)
from .notebook_contents import NotebookContents
from .notebook_documents import (
    cell_ids,
    cell_view,
    cells_from_input,
    check,
    give_cells_ids,
    is_legacy_cell_id,
    merge_metadata,
    new_cell,
    new_document,
    notebook_view,
    set_description,
    set_kernel,
    summary,
    summary_fields,
    text_summary_fields,
)
from .notebook_ids import NotebookIds
from .notebook_kernels import NotebookKernels

CONTENT_FIELDS = ("description", "kernel_name", "metadata", "cells")


@dataclass(frozen=True)
class NotebookConfig:
    scan_limit: int = 20_000  # files and folders a listing looks at, at most
    max_notebook_bytes: int = 64 * 1024 * 1024  # largest notebook a request may carry
    summary_cache_size: int = 4096  # notebooks whose summary fields are kept, by path, time and size
    summary_max_bytes: int = 4 * 1024 * 1024  # larger notebooks are listed without reading them


class NotebookService:
    def __init__(
        self,
        contents: NotebookContents,
        ids: NotebookIds,
        kernels: NotebookKernels,
        config: NotebookConfig | None = None,
        sessions: Callable[[], object] | None = None,
    ):
        """`sessions`: the server's session manager, looked up at each rename (its sessions of a
        notebook follow it); None: sessions stay where they are."""
        self.contents = contents
        self.ids = ids
        self.kernels = kernels
        self.config = config or NotebookConfig()
        self.sessions = sessions
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._summaries: OrderedDict[tuple, dict | None] = OrderedDict()

    def lock(self, key: str) -> asyncio.Lock:
        """The lock our changes to notebook `key` (an id; `path:<path>` while creating) hold."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def path_of(self, notebook_id: str) -> str:
        """Where notebook `notebook_id` is now (404 unless it is a notebook that still exists)."""
        path = self.ids.path_of(notebook_id)
        await self._read(notebook_id, path, content=False)
        return path

    async def path_for_cell(self, notebook_id: str, cell_id: str) -> str:
        """`path_of`, for an action on cell `cell_id`: a cell shown as `cell-<index>` (a notebook
        older than nbformat 4.5) gets that id written first, so that it can be found by it."""
        if not is_legacy_cell_id(cell_id):
            # The action reads the notebook next: only what reading it would refuse, cheaply.
            path = self.ids.path_of(notebook_id)
            if not await self.contents.is_file(path):  # gone, or a folder named x.ipynb
                raise self._gone(notebook_id, path)
            if await self.contents.is_hidden(path):
                raise NotFound(f"file or directory {path!r} does not exist")
            return path
        async with self.lock(notebook_id):
            path, model = await self.read(notebook_id)
            notebook = model["content"]
            if cell_id in cell_ids(notebook) and not all(cell.get("id") for cell in notebook.cells):
                give_cells_ids(notebook)
                await self._check_and_save(path, notebook)
        return path

    # ---- reads ---------------------------------------------------------------------------

    async def list_notebooks(self, query: NotebookQuery) -> NotebookList:
        entries, truncated = await self._walk(query.folder, query.recursive)
        entries.sort(key=lambda entry: entry["path"])
        page = entries[query.offset : query.offset + query.limit]
        notebooks = [await self._summary(entry) for entry in page]
        return NotebookList(
            notebooks=notebooks, total=len(entries), limit=query.limit, offset=query.offset, truncated=truncated
        )

    async def read(self, notebook_id: str) -> tuple[str, dict]:
        """The notebook's path and its contents model (content included)."""
        path = self.ids.path_of(notebook_id)
        return path, await self._read(notebook_id, path)

    async def get(self, notebook_id: str) -> Notebook:
        async with self.lock(notebook_id):  # after changes under way: outputs of an execute being stored
            _, model = await self.read(notebook_id)
        return await asyncio.to_thread(notebook_view, notebook_id, model, model["content"])  # 400 if unshowable

    # ---- writes --------------------------------------------------------------------------

    async def create(self, request: NotebookCreate) -> Notebook:
        notebook = new_document(await self.kernels.kernelspec(request.kernel_name), request.description)
        notebook_id, model = await self.create_file(request.folder, request.name, notebook)
        return notebook_view(notebook_id, model, notebook)

    async def create_file(self, folder: str, name: str, notebook, validated: bool = False) -> tuple[str, dict]:
        """Write the new notebook `folder/name` (409 if something is there); its id and model.
        `validated`: the caller has had nbformat validate `notebook` already."""
        path = posixpath.join(folder, name) if folder else name
        await self.contents.check_folder(folder)
        await self.contents.check_writable(path, "name")
        if not validated:
            await asyncio.to_thread(check, notebook, "content")
        async with self.lock(f"path:{path}"):
            if await self.contents.exists(path):
                raise Conflict(f"{path!r} already exists")
            model = await self.contents.save(path, notebook)
        return self.ids.id_of(path), model

    async def update(self, notebook_id: str, request: NotebookUpdate) -> Notebook:
        given = {field for field in request.model_fields_set if getattr(request, field) is not None}
        changes_content = bool(given & set(CONTENT_FIELDS)) or "description" in request.model_fields_set
        if not changes_content and not given & {"name", "folder"}:
            raise InvalidInput(
                None, "nothing to change: give name, folder, description, kernel_name, metadata or cells"
            )
        async with self.lock(notebook_id):
            path = self.ids.path_of(notebook_id)
            model = await self._read(notebook_id, path)
            notebook = model["content"]
            if changes_content:
                await self._change_content(notebook, request)
                await asyncio.to_thread(check, notebook)
            new_path = await self._new_path(path, request)
            # The answer is made before anything is written: a file it cannot show (a cell type
            # nbformat does not know, renamed only) is refused unchanged.
            view = await asyncio.to_thread(notebook_view, notebook_id, model, notebook)
            if changes_content:
                await self.contents.save(path, notebook)
            if new_path != path:
                await self.contents.rename(path, new_path)
                self.ids.moved(path, new_path)
                await self._move_sessions(path, new_path)
            model = await self.contents.read(new_path, content=False)
        return view.model_copy(update=dict(summary(notebook_id, model, summary_fields(notebook))))

    async def delete(self, notebook_id: str) -> None:
        async with self.lock(notebook_id):
            path = self.ids.path_of(notebook_id)
            await self._read(notebook_id, path, content=False)  # a notebook, still there
            await self.contents.delete(path)
            self.ids.deleted(path)

    async def add_cell(self, notebook_id: str, request: CellCreate) -> Cell:
        async with self.lock(notebook_id):
            path = self.ids.path_of(notebook_id)
            notebook = (await self._read(notebook_id, path))["content"]
            count = len(notebook.cells)
            position = count if request.position is None else request.position
            if position > count:
                raise InvalidInput("position", f"must be at most {count} (the notebook has {count} cells)")
            give_cells_ids(notebook)
            cell = new_cell(request.cell_type, request.source, request.metadata, set(cell_ids(notebook)))
            notebook.cells.insert(position, cell)
            await self._check_and_save(path, notebook)
        return cell_view(cell, cell.id)

    async def delete_cell(self, notebook_id: str, cell_id: str) -> None:
        async with self.lock(notebook_id):
            path = self.ids.path_of(notebook_id)
            notebook = (await self._read(notebook_id, path))["content"]
            ids = cell_ids(notebook)
            if cell_id not in ids:
                raise NotFound(f"notebook {notebook_id!r} has no cell {cell_id!r}")
            give_cells_ids(notebook)
            del notebook.cells[ids.index(cell_id)]
            await self._check_and_save(path, notebook)

    # ---- helpers -------------------------------------------------------------------------

    async def _read(self, notebook_id: str, path: str, content: bool = True) -> dict:
        try:
            return await self.contents.read(path, content)
        except NotFound:
            raise self._gone(notebook_id, path) from None
        except InvalidInput:  # unreadable (a 400), or a folder named x.ipynb: no notebook, a 404
            if not await self.contents.is_file(path):
                raise self._gone(notebook_id, path) from None
            raise

    @staticmethod
    def _gone(notebook_id: str, path: str) -> NotFound:
        return NotFound(f"notebook {notebook_id!r} is gone: there is no notebook at {path!r} any more")

    async def _check_and_save(self, path: str, notebook) -> None:
        await asyncio.to_thread(check, notebook)
        await self.contents.save(path, notebook)

    async def _change_content(self, notebook, request: NotebookUpdate) -> None:
        # Copies of every given output and metadata value (a body can be 128 MB): on threads.
        if request.cells is not None:
            notebook.cells = await asyncio.to_thread(cells_from_input, request.cells)
            give_cells_ids(notebook)
        if request.metadata is not None:
            await asyncio.to_thread(merge_metadata, notebook, request.metadata)
        if "description" in request.model_fields_set:
            set_description(notebook, request.description)
        if request.kernel_name is not None:
            set_kernel(notebook, await self.kernels.kernelspec(request.kernel_name))

    async def _new_path(self, path: str, request: NotebookUpdate) -> str:
        """Where a rename or move takes the notebook at `path` (checked free), or `path`."""
        folder = posixpath.dirname(path) if request.folder is None else request.folder
        name = request.name or posixpath.basename(path)
        new_path = posixpath.join(folder, name) if folder else name
        if new_path == path:
            return path
        await self.contents.check_folder(folder)
        await self.contents.check_writable(new_path, "name")
        if await self.contents.exists(new_path):
            raise Conflict(f"cannot rename {path!r} to {new_path!r}: it already exists")
        return new_path

    async def _move_sessions(self, old_path: str, new_path: str) -> None:
        """The notebook's Jupyter sessions follow it (the contents manager's rename leaves them;
        JupyterLab moves its own after a rename in its file browser)."""
        manager = self.sessions() if self.sessions else None
        if manager is None:
            return
        for session in await ensure_async(manager.list_sessions()):
            if session.get("path") != old_path:
                continue
            try:
                await ensure_async(
                    manager.update_session(session["id"], path=new_path, name=posixpath.basename(new_path))
                )
            except Exception as error:
                if getattr(error, "status_code", None) != 404:  # 404: it ended meanwhile
                    raise

    async def _walk(self, folder: str, recursive: bool) -> tuple[list[dict], bool]:
        """Notebook entries in `folder` (and below it if `recursive`), breadth first, through the
        contents manager's listings, with its rules (hidden files, hide_globs); at most
        `scan_limit` entries are looked at (then True: truncated)."""
        found, seen, folders = [], 0, deque([folder])
        while folders:
            current = folders.popleft()
            try:
                entries = await self.contents.list_folder(current)
            except DataHarbourError:
                if current == folder:
                    raise
                continue  # a subfolder that vanished or cannot be read: the file browser cannot list it either
            for entry in entries:
                seen += 1
                if seen > self.config.scan_limit:
                    return found, True
                if entry.get("type") == "directory" and recursive:
                    folders.append(entry["path"])
                elif entry.get("type") == "notebook" and entry.get("name", "").endswith(NOTEBOOK_SUFFIX):
                    found.append(entry)
            await asyncio.sleep(0)  # one listing at a time: other requests get the loop in between
        return found, False

    async def _summary(self, entry: dict) -> NotebookSummary:
        """A listed notebook's summary. Its kernel, description and cell count come from the file's
        text, parsed on a thread without validation, and are kept while the file's modification
        time and size stay the same. A file larger than `summary_max_bytes` is not read (its
        fields are null, as for a file that is not a notebook's JSON)."""
        path = entry["path"]
        size = entry.get("size")
        key = (path, str(entry.get("last_modified")), size)
        cacheable = entry.get("last_modified") is not None and size is not None
        if size is not None and size > self.config.summary_max_bytes:
            fields = None
        elif cacheable and key in self._summaries:
            self._summaries.move_to_end(key)
            fields = self._summaries[key]
        else:
            try:
                fields = await asyncio.to_thread(text_summary_fields, await self.contents.read_text(path))
            except DataHarbourError:  # vanished or unreadable since the listing
                fields = None
            if cacheable:
                self._summaries[key] = fields
                while len(self._summaries) > self.config.summary_cache_size:
                    self._summaries.popitem(last=False)
        notebook_id = self.ids.id_of(path)
        try:
            return summary(notebook_id, entry, fields)
        except ValidationError:  # what the model refuses (a custom contents manager's listing): unread
            return summary(notebook_id, {"path": path, "name": posixpath.basename(path)}, None)
