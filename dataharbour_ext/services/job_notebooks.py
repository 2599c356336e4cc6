"""A notebook job's source: the notebook named by `notebook` (a File ID or a path), found and
snapshotted at submit, without its outputs, so that every attempt runs what was submitted."""

import asyncio

import nbformat

from ..errors import InvalidInput, NotFound, PayloadTooLarge
from ..models import NOTEBOOK_SUFFIX
from .notebook_files import write_document
from .notebooks import NotebookService

FIELD = "notebook"


def looks_like_path(reference: str) -> bool:
    """File IDs are UUIDs: a name with a dot (an extension) or a folder in it is a path."""
    return "." in reference or "/" in reference


async def locate(notebooks: NotebookService, reference: str) -> str:
    """The notebook's path: 404 for an unknown id (as the notebooks API), 400 for a path
    with no notebook at it (as a job's `file`)."""
    reference = reference.strip()
    if not looks_like_path(reference):
        return await notebooks.path_of(reference)
    path = reference.lstrip("/")
    if not path.endswith(NOTEBOOK_SUFFIX):
        raise InvalidInput(FIELD, f"{path!r} is not a notebook (.ipynb)")
    try:
        if await notebooks.contents.is_hidden(path) or not await notebooks.contents.is_file(path):
            raise InvalidInput(FIELD, f"no notebook {path!r} in the Jupyter root directory")
    except NotFound as error:  # outside the root
        raise InvalidInput(FIELD, error.message) from None
    return path


def without_outputs(text: str) -> tuple[str, str | None]:
    """The notebook as nbformat JSON with outputs and execution counts cleared, and its
    kernel's name. Blocking (a parse of up to megabytes): call it in a thread."""
    try:
        notebook = nbformat.reads(text, as_version=4)
        nbformat.validate(notebook)
    except Exception as error:  # not JSON, not a notebook, an invalid one
        raise InvalidInput(FIELD, f"not a valid notebook: {str(error).splitlines()[0][:300]}") from None
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    notebook.metadata.pop("dataharbour", None)  # an earlier job's outcome, when a job's output is run again
    return nbformat.writes(notebook), notebook.metadata.get("kernelspec", {}).get("name")


async def snapshot(notebooks: NotebookService, reference: str, max_bytes: int) -> tuple[str, str, str | None]:
    """(path, the notebook without outputs as JSON, its kernel name). A notebook's outputs may
    be large; the file may be up to the notebooks API's own limit, its snapshot up to `max_bytes`."""
    path = await locate(notebooks, reference)
    size = await notebooks.contents.size(path)
    if size is not None and size > notebooks.config.max_notebook_bytes:
        raise PayloadTooLarge(f"{FIELD}: {path!r} is larger than {notebooks.config.max_notebook_bytes} bytes")
    text = await notebooks.contents.read_text(path)
    document, kernel_name = await asyncio.to_thread(without_outputs, text)
    if len(document.encode("utf-8", errors="surrogatepass")) > max_bytes:
        raise PayloadTooLarge(f"{FIELD}: {path!r} holds more than {max_bytes} bytes of cells")
    return path, document, kernel_name


OUTPUT_TYPES = {"ipynb": ("ipynb", "application/x-ipynb+json"), "html": ("html", "text/html; charset=utf-8")}


def executed_notebook(path: str, file_format: str) -> bytes | None:
    """A notebook run's output notebook as `ipynb` or `html` (nbconvert); None while there is
    none. Blocking (a read, and for HTML a render): call it in a thread."""
    try:
        with open(path, "rb") as f:
            body = f.read()
    except FileNotFoundError:
        return None
    if file_format == "ipynb":
        return body
    return write_document(nbformat.reads(body.decode("utf-8"), as_version=4), "html")
