"""Turns a job's `file` (a contents-manager path) into the program text to run."""

import asyncio

import nbformat
from jupyter_core.utils import ensure_async

from ..errors import InvalidInput, PayloadTooLarge

NOTEBOOK_SIZE_FACTOR = 16


def notebook_to_script(notebook_json: dict) -> str:
    """The code cells of a notebook as one script; IPython magics and shell escapes are
    commented out since spark-submit runs plain Python."""
    notebook = nbformat.from_dict(notebook_json)
    parts = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        lines = [f"# {line}" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines()]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def notebook_text_to_script(text: str) -> str:
    return notebook_to_script(nbformat.reads(text, as_version=4))


async def read_program(contents_manager, path: str, max_bytes: int) -> str:
    """Snapshot the program at `path` (.py or .ipynb) through the contents manager."""
    path = path.strip().lstrip("/")
    if not path.endswith((".py", ".ipynb")):
        raise InvalidInput("file", f"{path!r} is not a .py or .ipynb file")
    try:
        if not await ensure_async(contents_manager.file_exists(path)):
            raise InvalidInput("file", f"no such file {path!r} in the Jupyter root directory")
        size = (await ensure_async(contents_manager.get(path, content=False))).get("size")
        # A notebook also holds outputs (plots, tables): it may be larger than its code, within
        # bounds; its code then gets the program limit like any other job's.
        limit = max_bytes * NOTEBOOK_SIZE_FACTOR if path.endswith(".ipynb") else max_bytes
        if size is not None and size > limit:
            raise PayloadTooLarge(f"file: {path!r} is larger than {limit} bytes")
        model = await ensure_async(contents_manager.get(path, content=True, type="file", format="text"))
        if path.endswith(".ipynb"):
            # Parsed here, in a thread: the contents manager's notebook model would validate
            # the whole notebook (outputs included) on the event loop.
            return await asyncio.to_thread(notebook_text_to_script, model["content"])
    except (InvalidInput, PayloadTooLarge):
        raise
    except Exception as error:  # the contents manager's HTTPError (outside root, bad name) or decoding error
        raise InvalidInput("file", f"cannot read {path!r}: {getattr(error, 'log_message', None) or error}") from error
    return model["content"]
