"""REST handlers for /api/v1/notebooks: notebooks by File ID, their cells, import and export."""

import asyncio
import posixpath
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import InvalidInput, PayloadTooLarge, ServiceUnavailable
from ..json_body import model_json_item_by_item
from ..models import (
    CellCreate,
    CellExecuteRequest,
    CellExecution,
    ExportQuery,
    NotebookCreate,
    NotebookImport,
    NotebookQuery,
    NotebookUpdate,
)
from .base import AUTH_QUERY_ARGUMENTS, BODY_OVERHEAD_BYTES, DataHarbourHandler

AUTH_RESOURCE = "dataharbour:notebooks"
WRITE = "write"  # changes files, as Jupyter's contents API does
RUN_CODE = "execute"  # runs code in a kernel, as jupyter_server authorizes kernels
SMALL_BODY_BYTES = 256 * 1024  # bodies that carry no notebook
IMPORT_EXTENSIONS = (".ipynb", ".py")


def attachment(filename: str) -> str:
    """A Content-Disposition that downloads as `filename`, whatever its characters (RFC 6266)."""
    plain = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\' else "_" for ch in filename)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


class NotebooksBaseHandler(DataHarbourHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def notebooks(self):
        return self.services["notebooks"]

    @property
    def notebook_files(self):
        return self.services["notebook_files"]

    def notebook_body_limit(self) -> int:
        # A notebook sent as JSON text escapes its quotes and line breaks: room for twice its size.
        return self.notebooks.config.max_notebook_bytes * 2 + BODY_OVERHEAD_BYTES

    async def parse_notebook_body(self, model):
        # Megabytes of JSON: parsed and validated on a thread, not on the event loop.
        return await asyncio.to_thread(self.parse_body, model, self.notebook_body_limit())

    async def write_notebook_model(self, model, items: str) -> None:
        """`model` with its list `items` (cells, outputs: megabytes) dumped one item at a time on a
        thread: one pydantic dump holds the GIL, and so the event loop, until it ends."""
        self.write_json(await asyncio.to_thread(model_json_item_by_item, model, items))

    def set_location(self, notebook_id: str) -> None:
        self.set_header("Location", f"{self.base_url}api/v1/notebooks/{quote(notebook_id, safe='')}")

    def finish_no_content(self) -> None:
        self.set_status(204)
        self.finish()


class NotebookCollectionHandler(NotebooksBaseHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.write_model(await self.notebooks.list_notebooks(self.parse_query(NotebookQuery)))

    @web.authenticated
    @authorized(WRITE)
    async def post(self):
        notebook = await self.notebooks.create(self.parse_body(NotebookCreate, SMALL_BODY_BYTES))
        self.set_location(notebook.id)
        self.write_model(notebook, status=201)


class NotebookImportHandler(NotebooksBaseHandler):
    @web.authenticated
    @authorized(WRITE)
    async def post(self):
        if self.request.headers.get("Content-Type", "").startswith("multipart/form-data"):
            request = await asyncio.to_thread(self._upload)
        else:
            request = await self.parse_notebook_body(NotebookImport)
        summary = await self.notebook_files.import_notebook(request)
        self.set_location(summary.id)
        self.write_model(summary, status=201)

    def _upload(self) -> NotebookImport:
        """A multipart upload (Tornado has parsed it) as an import request: the `file` field, its
        format from its extension, and optional `name` and `folder` fields."""
        if len(self.request.body) > self.notebook_body_limit():
            raise PayloadTooLarge(f"request body is larger than {self.notebook_body_limit()} bytes")
        files = self.request.files.get("file") or []
        if len(files) != 1:
            raise InvalidInput("file", "a multipart import takes one file, in the `file` field")
        filename = posixpath.basename(files[0].filename.replace("\\", "/"))
        stem, extension = posixpath.splitext(filename)
        if extension.lower() not in IMPORT_EXTENSIONS:
            raise InvalidInput("file", f"{filename!r} is not an .ipynb notebook or a .py script")
        data = {"name": stem, "format": extension.lower()[1:]}
        for key, values in self.request.body_arguments.items():
            if key not in AUTH_QUERY_ARGUMENTS:  # a form's `_xsrf`: the request's, not the import's
                data[key] = _text(key, values[-1])
        data["content"] = _text("file", files[0].body)
        return self.validate(NotebookImport, data)


def _text(field: str, value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(field, "not UTF-8 text") from None


class NotebookHandler(NotebooksBaseHandler):
    @web.authenticated
    @authorized
    async def get(self, notebook_id: str):
        await self.write_notebook_model(await self.notebooks.get(notebook_id), "cells")

    @web.authenticated
    @authorized(WRITE)
    async def put(self, notebook_id: str):
        request = await self.parse_notebook_body(NotebookUpdate)
        await self.write_notebook_model(await self.notebooks.update(notebook_id, request), "cells")

    @web.authenticated
    @authorized(WRITE)
    async def delete(self, notebook_id: str):
        await self.notebooks.delete(notebook_id)
        self.finish_no_content()


class NotebookCellsHandler(NotebooksBaseHandler):
    @web.authenticated
    @authorized(WRITE)
    async def post(self, notebook_id: str):
        cell = await self.notebooks.add_cell(notebook_id, await self.parse_notebook_body(CellCreate))
        self.write_model(cell, status=201)


class NotebookCellHandler(NotebooksBaseHandler):
    @web.authenticated
    @authorized(WRITE)
    async def delete(self, notebook_id: str, cell_id: str):
        await self.notebooks.delete_cell(notebook_id, cell_id)
        self.finish_no_content()


class NotebookCellExecuteHandler(NotebooksBaseHandler):
    # Outputs of at most this many characters are answered without a worker thread: the hop to
    # one costs more than their dump (a `1+1` cell runs in a few milliseconds).
    small_outputs_chars = 64 * 1024

    @web.authenticated
    @authorized(RUN_CODE)
    async def post(self, notebook_id: str, cell_id: str):
        executor = self.services.get("cell_executor")
        if executor is None:
            raise ServiceUnavailable("cell execution is not available on this server")
        if self.request.body.strip():
            request = self.parse_body(CellExecuteRequest, SMALL_BODY_BYTES)
        else:
            request = CellExecuteRequest()  # no body: the default timeout
        path = await self.notebooks.path_for_cell(notebook_id, cell_id)
        run = await executor.execute(notebook_id, path, cell_id, request.timeout)
        execution = CellExecution(cell_id=cell_id, status=run.status, execution_count=run.execution_count,
                                  outputs=run.outputs, message=run.message)  # fmt: skip
        if self._outputs_chars(run.outputs) <= self.small_outputs_chars:
            self.write_json(model_json_item_by_item(execution, "outputs"))
        else:
            await self.write_notebook_model(execution, "outputs")

    def _outputs_chars(self, outputs: list[dict]) -> int:
        """The characters of the outputs' text, data and tracebacks; anything but text (JSON
        data) counts as large."""
        chars = 0
        for output in outputs:
            for value in (output.get("text"), *(output.get("data") or {}).values(), *(output.get("traceback") or ())):
                if isinstance(value, str):
                    chars += len(value)
                elif value is not None:
                    return self.small_outputs_chars + 1
        return chars


class NotebookExportHandler(NotebooksBaseHandler):
    @web.authenticated
    @authorized
    async def get(self, notebook_id: str):
        exported = await self.notebook_files.export(notebook_id, self.parse_query(ExportQuery).format)
        self.set_header("Content-Disposition", attachment(exported.filename))
        self.finish(exported.body, set_content_type=exported.content_type)
