"""What a submitted job runs: its inline `code`, the program in its `file` (a contents-manager
path, snapshotted at submit), or for a notebook job the notebook without outputs."""

import asyncio

import nbformat
from jupyter_core.utils import ensure_async

from ..errors import InvalidInput, PayloadTooLarge, ServiceUnavailable
from ..models import JobSubmit
from . import job_notebooks
from .program_check import check_syntax

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


class JobSources:
    def __init__(self, contents_manager, notebooks, config):
        self.contents_manager = contents_manager
        self.notebooks = notebooks  # a NotebookService: finds a notebook job's notebook by id or path
        self.config = config  # the job service's: its limits may change while it runs

    @property
    def max_code_bytes(self) -> int:
        return self.config.max_code_bytes

    async def resolve(self, request: JobSubmit) -> tuple[str, dict | None]:
        """(the program, None), or for a notebook job (the notebook without outputs as JSON,
        {"path", "parameters", "kernel_name"}). 4xx naming the field for what cannot run."""
        given = [name for name in ("code", "file", "notebook") if getattr(request, name) is not None]
        if len(given) > 1:
            raise InvalidInput(given[1], f"give one of code, file or notebook, not {' and '.join(given)}")
        if not given:
            raise InvalidInput("code", "one of code, file or notebook is required")
        if request.notebook is None:
            for name in ("parameters", "kernel_name"):
                if getattr(request, name) is not None:
                    raise InvalidInput(name, "goes with notebook: only notebook jobs take it")
            return await self._program(request), None
        return await self._notebook(request)

    async def _notebook(self, request: JobSubmit) -> tuple[str, dict]:
        if self.notebooks is None:
            raise ServiceUnavailable("notebook jobs need the notebooks service, which this server does not have")
        if request.args:
            raise InvalidInput("args", "a notebook job takes parameters, not args")
        if request.mode == "connect":
            raise InvalidInput("mode", "a notebook job runs in a kernel of its own, where SparkSession.builder "
                               "starts a driver on the job's cluster; connect is for programs")
        path, document, notebook_kernel = await job_notebooks.snapshot(
            self.notebooks, request.notebook, self.max_code_bytes * NOTEBOOK_SIZE_FACTOR
        )
        # The kernel must exist here: a run would only fail to start it.
        kernel = await self.notebooks.kernels.kernelspec(request.kernel_name or notebook_kernel or "python3")
        return document, {"path": path, "parameters": request.parameters or {}, "kernel_name": kernel["name"]}

    async def _program(self, request: JobSubmit) -> str:
        code = request.code if request.code is not None else await read_program(
            self.contents_manager, request.file, self.max_code_bytes
        )
        field_name = "code" if request.code is not None else "file"
        if len(code.encode("utf-8", errors="surrogatepass")) > self.max_code_bytes:
            raise PayloadTooLarge(f"{field_name}: the program is larger than {self.max_code_bytes} bytes")
        if not code.strip():
            raise InvalidInput(field_name, "the program is empty")
        await check_syntax(code, request.file or "<job>", field_name)
        return code
