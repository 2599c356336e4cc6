"""Notebooks in and out as files: import an .ipynb document or a percent-format script
(jupytext), export as .ipynb, .py (jupytext percent), .md (jupytext markdown) or .html
(nbconvert). Parsing and converting run on worker threads: an HTML export of a notebook with
outputs takes tenths of a second of CPU, and documents can be megabytes."""

import asyncio
import json
import posixpath
from dataclasses import dataclass

import nbformat
from nbformat.validator import get_validator

from ..errors import InvalidInput
from ..models import NOTEBOOK_SUFFIX, ExportFormat, NotebookImport, NotebookSummary
from .notebook_documents import (
    DESCRIPTION_KEY,
    check,
    description,
    invalid_notebook,
    strip_trust_marks,
    summary,
    summary_fields,
)
from .notebooks import NotebookService

DEFAULT_IMPORT_NAME = "Imported" + NOTEBOOK_SUFFIX
EXPORTS = {  # format: (file extension, Content-Type)
    "ipynb": (".ipynb", "application/x-ipynb+json"),
    "py": (".py", "text/x-python; charset=utf-8"),
    "md": (".md", "text/markdown; charset=utf-8"),
    "html": (".html", "text/html; charset=utf-8"),
}


@dataclass(frozen=True)
class ExportedFile:
    body: bytes
    content_type: str
    filename: str


class NotebookFiles:
    def __init__(self, notebooks: NotebookService):
        self.notebooks = notebooks

    async def import_notebook(self, request: NotebookImport) -> NotebookSummary:
        notebook = await asyncio.to_thread(read_document, request.format, request.content)
        name = request.name or await self.notebooks.contents.free_name(DEFAULT_IMPORT_NAME, request.folder)
        notebook_id, model = await self.notebooks.create_file(request.folder, name, notebook, validated=True)
        return summary(notebook_id, model, summary_fields(notebook))

    async def export(self, notebook_id: str, file_format: ExportFormat) -> ExportedFile:
        async with self.notebooks.lock(notebook_id):  # after changes under way: outputs of an execute being stored
            path, model = await self.notebooks.read(notebook_id)
        notebook = model["content"]
        body = await asyncio.to_thread(write_document, notebook, file_format)
        extension, content_type = EXPORTS[file_format]
        stem = posixpath.basename(path).removesuffix(NOTEBOOK_SUFFIX)
        return ExportedFile(body, content_type, stem + extension)


def read_document(file_format: str, content: dict | str):
    """The nbformat v4 notebook `content` holds, validated (as written, and as v4 when it was older);
    400 with nbformat's reason if it is none."""
    if file_format == "py":
        if not isinstance(content, str):
            raise InvalidInput("content", "a py import takes the script as text")
        notebook = _read_script(content)
        check(notebook, "content")
    else:
        notebook = _read_ipynb(content)
    _check_encodable(notebook)
    strip_trust_marks(notebook)  # an imported notebook is never trusted: its outputs ran elsewhere
    return notebook


def _check_encodable(notebook) -> None:
    """400 unless the notebook can be written as UTF-8: JSON's `\\ud800` escapes (in .ipynb text)
    decode to lone surrogates, which would fail the contents manager's write half-way."""
    try:
        json.dumps(notebook, ensure_ascii=False).encode()  # C speed: no indent, unlike nbformat.writes
    except UnicodeEncodeError:
        raise InvalidInput(
            "content", "contains text that cannot be encoded as UTF-8 (a lone surrogate such as \\ud800)"
        ) from None


def _read_ipynb(content: dict | str):
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError:
            raise InvalidInput("content", "not a notebook: the .ipynb text is not JSON") from None
    if not isinstance(content, dict) or not isinstance(content.get("nbformat"), int):
        raise InvalidInput("content", "not a notebook: an .ipynb document is a JSON object with an `nbformat` version")
    if content["nbformat"] not in nbformat.versions:
        known = ", ".join(str(version) for version in sorted(nbformat.versions))
        raise InvalidInput("content", f"nbformat {content['nbformat']} is not a version nbformat reads ({known})")
    _validate_as_written(content)
    problems: dict = {}
    try:
        # Any nbformat version upgraded to v4, sources as text, validated as v4.
        notebook = nbformat.reads(json.dumps(content), as_version=4, capture_validation_error=problems)
    except nbformat.ValidationError as error:  # a conversion that found something missing
        raise invalid_notebook(error) from None
    except ValueError as error:  # NBFormatError: a version nbformat does not know
        raise InvalidInput("content", f"not a notebook nbformat can read: {error}") from None
    if "ValidationError" in problems:
        raise invalid_notebook(problems["ValidationError"])
    return notebook


def _validate_as_written(document: dict) -> None:
    """nbformat's validation of the document in its own version, before any conversion."""
    try:
        nbformat.validate(document)
    except nbformat.ValidationError as error:
        raise invalid_notebook(error) from None
    except Exception as error:  # noqa: BLE001 - its checks around the schema trip on some shapes (cells: 3)
        validator = get_validator(version=document["nbformat"], version_minor=document.get("nbformat_minor", 0))
        problems = list(validator.iter_errors(document)) if validator is not None else []
        reason = problems[0].message if problems else f"{type(error).__name__}: {error}"
        raise InvalidInput("content", f"not a valid notebook: {reason}") from None


def _read_script(text: str):
    import jupytext  # seconds to import on a busy machine: only once a script comes, on this thread

    try:
        notebook = jupytext.reads(text, fmt="py:percent")
    except Exception as error:  # noqa: BLE001 - jupytext's parse errors have no common type
        raise InvalidInput("content", f"not a percent-format script jupytext can read: {error}") from None
    # jupytext records the text file it read; the notebook is an .ipynb from now on.
    settings = notebook.metadata.get("jupytext")
    if isinstance(settings, dict):
        settings.pop("text_representation", None)
        settings.pop("notebook_metadata_filter", None)
        if not settings:
            notebook.metadata.pop("jupytext")
    return notebook


def write_document(notebook, file_format: str) -> bytes:
    notebook = nbformat.from_dict(notebook)  # a copy: the marks come off, the caller's stays as it is
    strip_trust_marks(notebook)
    if file_format == "ipynb":
        return nbformat.writes(notebook).encode()
    if file_format == "html":
        from nbconvert import HTMLExporter  # seconds to import: only when asked, on this thread

        body, _ = HTMLExporter().from_notebook_node(notebook)
        return body.encode()
    import jupytext

    fmt = {"extension": ".py", "format_name": "percent"} if file_format == "py" else {"extension": ".md"}
    if description(notebook) is not None:  # kept in the header, so that an import brings it back
        fmt["notebook_metadata_filter"] = DESCRIPTION_KEY
    return jupytext.writes(notebook, fmt=fmt).encode()
