"""Notebooks as the API shows them, and what creating, changing, importing, exporting and
executing one may say."""

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .jobs import MAX_INDEX, UtcDatetime

NOTEBOOK_SUFFIX = ".ipynb"
MAX_FILE_NAME_BYTES = 255  # what Linux file systems take
MAX_FOLDER_LENGTH = 4096
MAX_DESCRIPTION_LENGTH = 10_000
MAX_KERNEL_NAME_LENGTH = 255
MAX_CELLS = 100_000
MAX_LIST_LIMIT = 500
MAX_EXECUTE_TIMEOUT = 86_400.0  # a day: a longer cell is a job
# nbformat 4.5's cell id: 1 to 64 letters, digits, - and _.
CELL_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

CellType = Literal["code", "markdown", "raw"]
ImportFormat = Literal["ipynb", "py"]
ExportFormat = Literal["ipynb", "py", "html", "md"]


def notebook_name(value: str) -> str:
    """A notebook's file name: one path segment, `.ipynb` added when missing."""
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    if any(ch in value for ch in "/\\\x00\r\n"):
        raise ValueError("must be a file name: no /, \\ or line breaks (a folder goes in `folder`)")
    if not value.endswith(NOTEBOOK_SUFFIX):
        value += NOTEBOOK_SUFFIX
    if value == NOTEBOOK_SUFFIX:
        raise ValueError("must have a name before .ipynb")
    if len(value.encode()) > MAX_FILE_NAME_BYTES:
        raise ValueError(f"must be at most {MAX_FILE_NAME_BYTES} bytes long, .ipynb included")
    return value


def folder_path(value: str) -> str:
    """A folder under the Jupyter root as the contents API writes it: `a/b`, `` for the root.
    Whether it exists, is hidden or leaves the root is the contents manager's to say."""
    if any(ch in value for ch in "\x00\r\n"):
        raise ValueError("must be a folder path on one line")
    return value.strip().strip("/")


def one_line(value: str) -> str:
    value = value.strip()
    if not value or any(ch in value for ch in "\x00\r\n"):
        raise ValueError("must be one line of text")
    return value


def cell_id(value: str) -> str:
    if not CELL_ID_PATTERN.fullmatch(value):
        raise ValueError("must be 1 to 64 letters, digits, - or _ (an nbformat cell id)")
    return value


NotebookName = Annotated[
    str,
    AfterValidator(notebook_name),
    Field(description="File name; `.ipynb` is added when missing.", examples=["My First Notebook"]),
]
FolderPath = Annotated[str, Field(max_length=MAX_FOLDER_LENGTH), AfterValidator(folder_path)]
Description = Annotated[str, Field(max_length=MAX_DESCRIPTION_LENGTH)]
KernelName = Annotated[str, Field(max_length=MAX_KERNEL_NAME_LENGTH), AfterValidator(one_line)]
CellId = Annotated[str, AfterValidator(cell_id)]
JsonObject = dict[str, Any]


# ---- responses -------------------------------------------------------------------------


class NotebookSummary(BaseModel):
    """A notebook as lists show it."""

    id: str = Field(
        description="Its id in Jupyter's File ID service: it follows the file through renames and "
        "moves, in the API and in JupyterLab."
    )
    path: str = Field(description="Where it is under the Jupyter root, as the contents API writes it.")
    name: str
    created_at: UtcDatetime | None = None
    last_modified: UtcDatetime | None = None
    kernel_name: str | None = Field(None, description="Its kernelspec's name (null: none recorded).")
    description: str | None = Field(None, description="Kept in the notebook's metadata (`dataharbour.description`).")
    cell_count: int | None = Field(description="Null when the file cannot be read as a notebook.")


class Cell(BaseModel):
    id: str = Field(
        description="The nbformat cell id. Cells of a notebook older than nbformat 4.5 have none of "
        "their own: they show as `cell-<index>`, and the first change through the API "
        "writes those ids."
    )
    cell_type: CellType
    source: str
    metadata: JsonObject = Field(default_factory=dict)
    outputs: list[JsonObject] = Field(default_factory=list, description="nbformat outputs (code cells).")
    execution_count: int | None = None
    attachments: JsonObject | None = Field(None, description="Files a markdown or raw cell embeds.")


class Notebook(NotebookSummary):
    """A notebook with its cells and metadata."""

    cell_count: int
    nbformat: int
    nbformat_minor: int
    metadata: JsonObject
    cells: list[Cell]


class NotebookList(BaseModel):
    notebooks: list[NotebookSummary]
    total: int = Field(description="Notebooks found, ignoring limit/offset.")
    limit: int
    offset: int
    truncated: bool = Field(
        description="The walk stopped at DataHarbourApp.notebook_scan_limit entries: there may "
        "be more notebooks than `total`."
    )


class CellExecution(BaseModel):
    """What running a cell gave; the outputs are stored in the notebook too."""

    cell_id: str
    status: Literal["ok", "error", "timeout"] = Field(
        description="`error`: the cell raised (its traceback is an output); `timeout`: the kernel was interrupted."
    )
    execution_count: int | None = None
    outputs: list[JsonObject] = Field(default_factory=list)
    message: str | None = Field(None, description="Why it is an error or a timeout, in words.")


# ---- requests --------------------------------------------------------------------------


class NotebookQuery(BaseModel):
    """Query string of `GET /notebooks/`."""

    model_config = ConfigDict(extra="forbid")

    folder: FolderPath = Field("", description="Folder to list (default: the Jupyter root).")
    recursive: bool = Field(False, description="Also the notebooks in its subfolders.")
    limit: int = Field(100, ge=1, le=MAX_LIST_LIMIT)
    offset: int = Field(0, ge=0, le=MAX_INDEX)


class NotebookCreate(BaseModel):
    """Body of `POST /notebooks/`: a new, empty notebook."""

    model_config = ConfigDict(extra="forbid")

    name: NotebookName
    description: Description | None = None
    folder: FolderPath = Field("", description="Existing folder under the Jupyter root (default: the root).")
    kernel_name: KernelName | None = Field(
        None, description="A kernelspec of this server (default: the server's default kernel)."
    )


class CellInput(BaseModel):
    """A cell as `PUT /notebooks/{id}` takes it (nbformat's fields)."""

    model_config = ConfigDict(extra="forbid")

    id: CellId | None = Field(None, description="Keep it to keep the cell's identity; a new id when null.")
    cell_type: CellType
    source: str | list[str] = Field("", description="Text, or nbformat's list of lines.")
    metadata: JsonObject = Field(default_factory=dict)
    outputs: list[JsonObject] | None = Field(None, description="Code cells only.")
    execution_count: int | None = Field(None, description="Code cells only.")
    attachments: JsonObject | None = Field(None, description="Markdown and raw cells only.")


class NotebookUpdate(BaseModel):
    """Body of `PUT /notebooks/{id}`: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: NotebookName | None = Field(None, description="Rename (in its folder, unless `folder` is given too).")
    folder: FolderPath | None = Field(None, description="Move it to this existing folder (`` for the root).")
    description: Description | None = Field(None, description="null removes it.")
    kernel_name: KernelName | None = None
    metadata: JsonObject | None = Field(
        None, description="Keys to set in the notebook's metadata; a key set to null is removed, others stay."
    )
    cells: list[CellInput] | None = Field(None, max_length=MAX_CELLS, description="Replace every cell.")


class CellCreate(BaseModel):
    """Body of `POST /notebooks/{id}/cells`."""

    model_config = ConfigDict(extra="forbid")

    cell_type: CellType = "code"
    source: str = ""
    position: int | None = Field(None, ge=0, le=MAX_INDEX, description="Index the cell gets (default: the end).")
    metadata: JsonObject = Field(default_factory=dict)


class CellExecuteRequest(BaseModel):
    """Body of `POST /notebooks/{id}/cells/{cell_id}/execute` (may be empty)."""

    model_config = ConfigDict(extra="forbid")

    timeout: float | None = Field(
        None,
        gt=0,
        le=MAX_EXECUTE_TIMEOUT,
        description="Seconds before the kernel is interrupted (default: the server's).",
    )


class NotebookImport(BaseModel):
    """JSON body of `POST /notebooks/import` (a multipart upload with a `file` field works too)."""

    model_config = ConfigDict(extra="forbid")

    name: NotebookName | None = Field(None, description="Default: `Imported.ipynb`, numbered if taken.")
    folder: FolderPath = ""
    format: ImportFormat = Field("ipynb", description="`py`: a percent-format script (`# %%` cells), read by jupytext.")
    content: JsonObject | str = Field(description="The .ipynb document (a JSON object or its text), or the script.")


class ExportQuery(BaseModel):
    """Query string of `GET /notebooks/{id}/export`."""

    model_config = ConfigDict(extra="forbid")

    format: ExportFormat = Field(
        "ipynb",
        description="ipynb, py (jupytext percent), md (jupytext markdown, no "
        "outputs) or html (nbconvert, with outputs).",
    )
