"""CellExecutor: one cell of a notebook run in the kernel of the notebook's Jupyter session (a real
ipykernel through the test server's kernel and session managers), its outputs stored in the file."""

import asyncio
import json
import re
import time

import nbformat
import pytest

from dataharbour_ext.errors import InvalidInput, NotFound
from dataharbour_ext.services import notebook_execution
from dataharbour_ext.services.notebook_execution import CellExecutor

ANSI = re.compile(r"\x1b\[[0-9;]*m")  # IPython colours its tracebacks


def _write_notebook(root, name: str, *sources: str, cell_type: str = "code") -> list[str]:
    """A notebook of code cells (or `cell_type` cells) with these sources; returns their ids."""
    new_cell = nbformat.v4.new_code_cell if cell_type == "code" else nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook(cells=[new_cell(source) for source in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / name)
    return [cell.id for cell in nb.cells]


async def _stored_cells(executor, root, name: str) -> dict:
    await executor.settled()  # outputs are stored after the answer
    return {cell.id: cell for cell in nbformat.read(root / name, as_version=4).cells}


async def _sessions_of(extension, path: str) -> list[dict]:
    return [s for s in await extension.serverapp.session_manager.list_sessions() if s["path"] == path]


async def _until(predicate, timeout: float = 60, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def executor(extension, jp_fetch, jp_asyncio_loop):
    server = extension.serverapp
    executor = CellExecutor(server.kernel_manager, server.session_manager, server.contents_manager)
    yield executor

    async def clean_up():
        await executor.stop()
        for session in await server.session_manager.list_sessions():
            await jp_fetch("api", "sessions", session["id"], method="DELETE")

    jp_asyncio_loop.run_until_complete(clean_up())


async def test_a_cell_runs_in_a_new_session_and_its_result_is_stored(executor, extension, jp_root_dir):
    (cell_id,) = _write_notebook(jp_root_dir, "sum.ipynb", "1+1")
    assert await _sessions_of(extension, "sum.ipynb") == []

    run = await executor.execute("sum", "sum.ipynb", cell_id, timeout=None)

    assert (run.status, run.execution_count, run.message) == ("ok", 1, None)
    assert run.outputs == [
        {"output_type": "execute_result", "execution_count": 1, "data": {"text/plain": "2"}, "metadata": {}}
    ]
    stored = (await _stored_cells(executor, jp_root_dir, "sum.ipynb"))[cell_id]
    assert (stored.execution_count, stored.outputs) == (1, run.outputs)
    # The notebook now has a session, as if JupyterLab had opened it: JupyterLab will join its kernel.
    (session,) = await _sessions_of(extension, "sum.ipynb")
    assert (session["name"], session["type"], session["kernel"]["name"]) == ("sum.ipynb", "notebook", "python3")


async def test_print_and_an_error_cell(executor, jp_root_dir, monkeypatch):
    # The kernel's client unsubscribes from its output at once after each execute: the second
    # execute proves it subscribes again before it sends its cell.
    monkeypatch.setattr(notebook_execution, "KEEP_SUBSCRIBED", 0.0)
    printing, failing = _write_notebook(jp_root_dir, "print.ipynb", "print('hello', 'world')", "1/0")

    printed = await executor.execute("print", "print.ipynb", printing, timeout=30)
    assert (printed.status, printed.execution_count) == ("ok", 1)
    assert printed.outputs == [{"output_type": "stream", "name": "stdout", "text": "hello world\n"}]

    failed = await executor.execute("print", "print.ipynb", failing, timeout=30)
    assert (failed.status, failed.execution_count) == ("error", 2)
    assert failed.message == "ZeroDivisionError: division by zero"
    (error,) = failed.outputs
    assert (error["output_type"], error["ename"], error["evalue"]) == ("error", "ZeroDivisionError", "division by zero")
    assert "----> 1 1/0" in ANSI.sub("", "\n".join(error["traceback"]))
    assert (await _stored_cells(executor, jp_root_dir, "print.ipynb"))[failing].outputs == failed.outputs


async def test_a_timeout_interrupts_the_kernel_which_stays_usable(executor, jp_root_dir):
    sleeping, after = _write_notebook(
        jp_root_dir, "sleep.ipynb", "import time\nprint('going to sleep')\ntime.sleep(60)", "x = 41\nx + 1"
    )

    run = await executor.execute("sleep", "sleep.ipynb", sleeping, timeout=5)

    assert (run.status, run.execution_count, run.message) == ("timeout", 1, "interrupted after 5 s")
    printed, interrupted = run.outputs
    assert printed == {"output_type": "stream", "name": "stdout", "text": "going to sleep\n"}
    assert (interrupted["output_type"], interrupted["ename"]) == ("error", "KeyboardInterrupt")
    assert (await _stored_cells(executor, jp_root_dir, "sleep.ipynb"))[sleeping].outputs == run.outputs

    next_run = await executor.execute("sleep", "sleep.ipynb", after, timeout=30)
    assert (next_run.status, next_run.execution_count) == ("ok", 2)
    assert next_run.outputs[0]["data"] == {"text/plain": "42"}


async def test_two_executes_on_one_notebook_run_in_order(executor, jp_root_dir):
    first, second = _write_notebook(jp_root_dir, "order.ipynb", "import time\ntime.sleep(1)\nx = 1", "print(x)")

    first_run, second_run = await asyncio.gather(
        executor.execute("order", "order.ipynb", first, timeout=30), executor.execute("order", "order.ipynb", second, timeout=30)
    )

    assert (first_run.status, second_run.status) == ("ok", "ok")
    assert second_run.outputs == [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    stored = await _stored_cells(executor, jp_root_dir, "order.ipynb")
    assert (stored[first].execution_count, stored[second].execution_count) == (1, 2)


async def test_a_cell_runs_in_the_kernel_of_the_notebooks_session(executor, extension, jp_fetch, jp_root_dir):
    (cell_id,) = _write_notebook(jp_root_dir, "shared.ipynb", "print(secret)\nsecret = 'changed by the API'")
    response = await jp_fetch("api", "sessions", method="POST", body=json.dumps(
        {"path": "shared.ipynb", "name": "shared.ipynb", "type": "notebook", "kernel": {"name": "python3"}}))  # fmt: skip
    session = json.loads(response.body)
    # A variable set through the session's kernel, as a cell run in JupyterLab would set it. This
    # client stays connected throughout: the executor's client must not take its replies, nor it theirs.
    client = extension.serverapp.kernel_manager.get_kernel(session["kernel"]["id"]).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        reply = await client.execute_interactive("secret = 'set in JupyterLab'", timeout=60)
        assert reply["content"]["status"] == "ok"

        run = await executor.execute("shared", "shared.ipynb", cell_id, timeout=30)

        assert (run.status, run.execution_count) == ("ok", 2)  # the session's kernel ran one cell before
        assert run.outputs == [{"output_type": "stream", "name": "stdout", "text": "set in JupyterLab\n"}]
        reply = await client.execute_interactive("assert secret == 'changed by the API'", timeout=60)
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()
    assert [s["id"] for s in await _sessions_of(extension, "shared.ipynb")] == [session["id"]]


# The cell says when it runs (a file in its working folder, the notebook's) and waits for the
# test's go-ahead, so that the edits land while it runs, whatever the machine's load.
WAITING_CELL = """import os, time
open('started', 'w').close()
while not os.path.exists('go'):
    time.sleep(0.02)
'done'"""


async def test_edits_made_while_a_cell_runs_are_kept_and_a_deleted_cell_is_not_stored(executor, jp_root_dir):
    waiting, other = _write_notebook(jp_root_dir, "edit.ipynb", WAITING_CELL, "'old'")

    async def run_while(edit):
        for flag in ("started", "go"):
            (jp_root_dir / flag).unlink(missing_ok=True)
        running = asyncio.ensure_future(executor.execute("edit", "edit.ipynb", waiting, timeout=60))
        await _until(lambda: (jp_root_dir / "started").exists() or running.done(), what="the cell runs")
        nb = nbformat.read(jp_root_dir / "edit.ipynb", as_version=4)
        edit(nb)  # as JupyterLab would save it meanwhile
        nbformat.write(nb, jp_root_dir / "edit.ipynb")
        (jp_root_dir / "go").touch()
        return await running

    def edit_the_other_cell(nb):
        nb.cells[1].source = "'edited while the first cell ran'"

    run = await run_while(edit_the_other_cell)
    assert (run.status, run.outputs) == ("ok", [{"output_type": "execute_result", "execution_count": 1,
                                                 "data": {"text/plain": "'done'"}, "metadata": {}}])  # fmt: skip
    stored = await _stored_cells(executor, jp_root_dir, "edit.ipynb")
    assert (stored[waiting].outputs, stored[other].source) == (run.outputs, "'edited while the first cell ran'")

    def delete_the_running_cell(nb):
        del nb.cells[0]

    # The result comes back; the file keeps what the user saved.
    run = await run_while(delete_the_running_cell)
    assert (run.status, run.execution_count) == ("ok", 2)
    assert list(await _stored_cells(executor, jp_root_dir, "edit.ipynb")) == [other]


async def test_what_cannot_be_executed(executor, extension, jp_root_dir):
    (markdown,) = _write_notebook(jp_root_dir, "notes.ipynb", "# Title", cell_type="markdown")
    (empty,) = _write_notebook(jp_root_dir, "empty.ipynb", "  \n")

    with pytest.raises(InvalidInput) as refused:
        await executor.execute("notes", "notes.ipynb", markdown, timeout=None)
    assert refused.value.field == "cell_id" and "markdown" in refused.value.message
    with pytest.raises(NotFound):
        await executor.execute("notes", "notes.ipynb", "no-such-cell", timeout=None)
    with pytest.raises(NotFound):
        await executor.execute("missing", "missing.ipynb", markdown, timeout=None)
    with pytest.raises(InvalidInput) as refused:
        await executor.execute("notes", "notes.ipynb", markdown, timeout=0)
    assert refused.value.field == "timeout"

    # An empty code cell runs nothing (as in JupyterLab) and needs no kernel.
    run = await executor.execute("empty", "empty.ipynb", empty, timeout=None)
    assert (run.status, run.execution_count, run.outputs) == ("ok", None, [])
    assert await extension.serverapp.session_manager.list_sessions() == []


async def test_through_the_api_a_cell_runs_in_a_real_kernel_and_its_outputs_are_stored(api, extension, jp_fetch):
    status, notebook = await api.call("POST", "notebooks/", {"name": "through the api"})
    assert status == 201, notebook
    base = f"notebooks/{notebook['id']}/cells"
    _, first = await api.call("POST", base, {"cell_type": "code", "source": "x = 20\nprint('hello')\nx + 1"})
    _, slow = await api.call("POST", base, {"cell_type": "code", "source": "import time\ntime.sleep(60)"})
    try:
        status, run = await api.call("POST", f"{base}/{first['id']}/execute", {})
        assert status == 200 and (run["status"], run["execution_count"]) == ("ok", 1), run
        assert [o["output_type"] for o in run["outputs"]] == ["stream", "execute_result"], run
        assert run["outputs"][0]["text"] == "hello\n" and run["outputs"][1]["data"]["text/plain"] == "21"
        _, stored = await api.call("GET", f"notebooks/{notebook['id']}")
        cell = next(c for c in stored["cells"] if c["id"] == first["id"])
        assert cell["execution_count"] == 1 and cell["outputs"] == run["outputs"]

        status, run = await api.call("POST", f"{base}/{slow['id']}/execute", {"timeout": 2})
        assert status == 200 and run["status"] == "timeout" and "2" in run["message"], run
    finally:
        for session in json.loads((await jp_fetch("api", "sessions")).body):
            await jp_fetch("api", "sessions", session["id"], method="DELETE")


async def test_a_notebook_renamed_while_its_cell_runs_gets_the_outputs_at_its_new_path(api, extension, jp_fetch,
                                                                                       jp_root_dir):
    for flag in ("started", "go"):
        (jp_root_dir / flag).unlink(missing_ok=True)
    _, notebook = await api.call("POST", "notebooks/", {"name": "moving"})
    _, cell = await api.call("POST", f"notebooks/{notebook['id']}/cells", {"source": WAITING_CELL})
    running = asyncio.ensure_future(api.call("POST", f"notebooks/{notebook['id']}/cells/{cell['id']}/execute", {}))
    try:
        await _until(lambda: (jp_root_dir / "started").exists() or running.done(), what="the cell runs")
        status, renamed = await api.call("PUT", f"notebooks/{notebook['id']}", {"name": "moved"})
        assert status == 200 and renamed["path"] == "moved.ipynb", renamed
        (jp_root_dir / "go").touch()
        status, run = await running
        assert status == 200 and run["status"] == "ok", run
        _, stored = await api.call("GET", f"notebooks/{notebook['id']}")
        assert stored["path"] == "moved.ipynb" and stored["cells"][0]["outputs"] == run["outputs"]
        sessions = json.loads((await jp_fetch("api", "sessions")).body)
        assert [s["path"] for s in sessions] == ["moved.ipynb"]  # the kernel went along with the notebook
    finally:
        (jp_root_dir / "go").touch()
        await asyncio.gather(running, return_exceptions=True)
        for session in json.loads((await jp_fetch("api", "sessions")).body):
            await jp_fetch("api", "sessions", session["id"], method="DELETE")
