"""nbformat documents: build, check and change notebooks, and show them as API models.

Pure functions, no I/O. The ones that walk a whole notebook (validation, views) are meant to
run on a worker thread: a notebook with outputs can be megabytes.
"""

import json
import re

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell
from nbformat.v4.nbbase import random_cell_id
from pydantic import ValidationError

from ..errors import InvalidInput
from ..models import Cell, CellInput, Notebook, NotebookSummary

DESCRIPTION_KEY = "dataharbour"  # metadata["dataharbour"]["description"]
# What Jupyter's contents manager adds to cells it reads (the notebook's trust), not in the file.
TRUST_MARK = "trusted"
LEGACY_CELL_ID = re.compile(r"cell-[0-9]+")
MAX_REASON_LENGTH = 300
NEW_CELLS = {"code": new_code_cell, "markdown": new_markdown_cell, "raw": new_raw_cell}
UNREADABLE = {"kernel_name": None, "description": None, "cell_count": None}  # a summary's fields, not read


def check(notebook, root: str | None = None) -> None:
    """nbformat's validation; 400 with its reason, naming the place as the request does: under
    `root` (`content` for an imported document), else from the notebook's own keys (`cells[2]`)."""
    try:
        nbformat.validate(notebook)
    except nbformat.ValidationError as error:
        raise invalid_notebook(error, root) from None


def invalid_notebook(error: nbformat.ValidationError, root: str | None = "content") -> InvalidInput:
    place = [root] if root else []
    place += list(getattr(error, "absolute_path", ()) or ())
    reason = error.message
    if len(reason) > MAX_REASON_LENGTH:  # its reasons quote the offending part: a cell can be megabytes
        reason = reason[:MAX_REASON_LENGTH] + "…"
    return InvalidInput(_path_text(place) or "content", f"not a valid notebook: {reason}")


def _path_text(place: list) -> str:
    """`['cells', 0, 'outputs']` -> `cells[0]['outputs']`, as the API names fields in its errors."""
    text = ""
    for part in place:
        text += f"[{part}]" if isinstance(part, int) else (f"[{part!r}]" if text else str(part))
    return text


def new_document(kernelspec: dict | None, description: str | None):
    notebook = new_notebook()
    if kernelspec:
        set_kernel(notebook, kernelspec)
    set_description(notebook, description)
    return notebook


def set_kernel(notebook, kernelspec: dict) -> None:
    """`kernelspec`: {name, display_name, language}, as JupyterLab writes it."""
    notebook.metadata["kernelspec"] = kernelspec
    if kernelspec.get("language"):
        notebook.metadata["language_info"] = {"name": kernelspec["language"]}


def kernel_name(notebook) -> str | None:
    kernelspec = notebook.get("metadata", {}).get("kernelspec")
    name = kernelspec.get("name") if isinstance(kernelspec, dict) else None
    return name if isinstance(name, str) else None


def description(notebook) -> str | None:
    ours = notebook.get("metadata", {}).get(DESCRIPTION_KEY)
    text = ours.get("description") if isinstance(ours, dict) else None
    return text if isinstance(text, str) else None


def set_description(notebook, text: str | None) -> None:
    ours = notebook.metadata.get(DESCRIPTION_KEY)
    ours = dict(ours) if isinstance(ours, dict) else {}
    if text is None:
        ours.pop("description", None)
    else:
        ours["description"] = text
    if ours:
        notebook.metadata[DESCRIPTION_KEY] = ours
    else:
        notebook.metadata.pop(DESCRIPTION_KEY, None)


def merge_metadata(notebook, changes: dict) -> None:
    """Top-level keys of `changes` set; a key set to None removed."""
    for key, value in changes.items():
        if value is None:
            notebook.metadata.pop(key, None)
        else:
            notebook.metadata[key] = nbformat.from_dict(value)


# ---- cells -------------------------------------------------------------------------------


def legacy_cell_id(index: int) -> str:
    """The id a cell of a notebook older than nbformat 4.5 (no ids) is shown and stored with."""
    return f"cell-{index}"


def is_legacy_cell_id(cell_id: str) -> bool:
    return LEGACY_CELL_ID.fullmatch(cell_id) is not None


def cell_ids(notebook) -> list[str]:
    return [cell.get("id") or legacy_cell_id(index) for index, cell in enumerate(notebook.cells)]


def give_cells_ids(notebook) -> None:
    """Make `notebook` nbformat 4.5 with an id on every cell, the ids it was shown with."""
    if notebook.nbformat == 4 and notebook.nbformat_minor < 5:
        notebook.nbformat_minor = 5
    for index, cell in enumerate(notebook.cells):
        if not cell.get("id"):
            cell["id"] = legacy_cell_id(index)


def new_cell(cell_type: str, source: str, metadata: dict, taken: set[str]):
    cell = NEW_CELLS[cell_type](source=source, metadata=nbformat.from_dict(without_trust_mark(metadata)))
    while cell.id in taken:  # 8 random hex digits: a clash is rare, not impossible
        cell.id = random_cell_id()
    return cell


def cells_from_input(cells: list[CellInput]) -> list:
    """Cells given through the API as nbformat cells: given ids kept (each once), new ones made."""
    given_ids: dict[str, int] = {}
    for index, given in enumerate(cells):
        if given.id is not None:
            if given.id in given_ids:
                first = given_ids[given.id]
                raise InvalidInput(f"cells[{index}]['id']", f"{given.id!r} is the id of cells[{first}] too")
            given_ids[given.id] = index
    made, taken = [], set(given_ids)
    for index, given in enumerate(cells):
        if given.cell_type != "code" and (given.outputs is not None or given.execution_count is not None):
            raise InvalidInput(f"cells[{index}]", f"a {given.cell_type} cell has no outputs or execution_count")
        if given.cell_type == "code" and given.attachments is not None:
            raise InvalidInput(f"cells[{index}]['attachments']", "only markdown and raw cells have attachments")
        cell = new_cell(given.cell_type, text(given.source), given.metadata, taken)
        if given.id is not None:
            cell.id = given.id
        taken.add(cell.id)
        if given.cell_type == "code":
            cell.outputs = nbformat.from_dict(given.outputs or [])
            cell.execution_count = given.execution_count
        elif given.attachments is not None:
            cell.attachments = nbformat.from_dict(given.attachments)
        made.append(cell)
    return made


def text(source: str | list[str]) -> str:
    """nbformat's multi-line text (a string or a list of lines) as one string."""
    return "".join(source) if isinstance(source, list) else source


def without_trust_mark(metadata: dict) -> dict:
    return {key: value for key, value in metadata.items() if key != TRUST_MARK}


def strip_trust_marks(notebook) -> None:
    """Take the contents manager's trust marks off (exports, imports: imported cells are never trusted)."""
    for cell in notebook.get("cells", ()):
        if isinstance(cell.get("metadata"), dict):
            cell["metadata"].pop(TRUST_MARK, None)


# ---- views -------------------------------------------------------------------------------


def summary(notebook_id: str, model: dict, fields: dict | None) -> NotebookSummary:
    """`model`: the contents manager's model of the file; `fields`: its `summary_fields`, or
    None if it cannot be read as a notebook."""
    return NotebookSummary(
        id=notebook_id,
        path=model["path"],
        name=model["name"],
        created_at=model.get("created"),
        last_modified=model.get("last_modified"),
        **(fields or UNREADABLE),
    )


def summary_fields(notebook) -> dict:
    """What a summary shows of the notebook's content (all a listing keeps of it)."""
    return {
        "kernel_name": kernel_name(notebook),
        "description": description(notebook),
        "cell_count": len(notebook.get("cells") or ()),
    }


def cell_view(cell, cell_id: str) -> Cell:
    return Cell(
        id=cell_id,
        cell_type=cell.cell_type,
        source=text(cell.source),
        metadata=without_trust_mark(cell.get("metadata", {})),
        outputs=cell.get("outputs", []),
        execution_count=cell.get("execution_count"),
        attachments=cell.get("attachments"),
    )


def notebook_view(notebook_id: str, model: dict, notebook) -> Notebook:
    """400 if the file holds what the API cannot show (a cell type nbformat does not know, a
    text execution count): Jupyter's contents manager reads such files, validation aside."""
    cells = []
    for index, (cell, cell_id) in enumerate(zip(notebook.cells, cell_ids(notebook), strict=True)):
        try:
            cells.append(cell_view(cell, cell_id))
        except ValidationError as error:
            raise unshowable(error, ["cells", index]) from None
    try:
        return Notebook(
            **summary(notebook_id, model, summary_fields(notebook)).model_dump(),
            nbformat=notebook.nbformat,
            nbformat_minor=notebook.nbformat_minor,
            metadata=notebook.metadata,
            cells=cells,
        )
    except ValidationError as error:
        raise unshowable(error, []) from None


def unshowable(error: ValidationError, place: list) -> InvalidInput:
    first = error.errors(include_url=False)[0]
    return InvalidInput(None, f"not a valid notebook: {_path_text(place + list(first['loc']))}: {first['msg']}")


def text_summary_fields(text: str) -> dict | None:
    """`summary_fields` of an .ipynb file's text, without validating it; None if it is not a
    notebook's JSON."""
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("cells", []), list):
        return None
    if not isinstance(document.get("metadata", {}), dict):
        document["metadata"] = {}
    return summary_fields(document)
