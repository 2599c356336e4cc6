"""CellExecutor: one cell of a notebook run in the kernel of the notebook's Jupyter session (a real
ipykernel through the test server's kernel and session managers), its outputs stored in the file."""

import asyncio
import json
import re
import time

import nbformat
import pytest

from dataharbour_ext.errors import InvalidInput, NotFound
from dataharbour_ext.services import notebook_execution, notebook_outputs
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

        # Outputs too large to answer on the event loop: dumped on a worker thread, the same JSON.
        _, large = await api.call("POST", base, {"cell_type": "code", "source": "print('x' * 100_000)"})
        status, run = await api.call("POST", f"{base}/{large['id']}/execute", {})
        assert status == 200 and run["outputs"] == [
            {"output_type": "stream", "name": "stdout", "text": "x" * 100_000 + "\n"}
        ]
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


# ---- stores: the notebook's content kept between executes, outputs saved together ----------


def _server_config(**server_app) -> dict:
    """conftest's server config with other ServerApp settings."""
    return {
        "ServerApp": {
            "jpserver_extensions": {"dataharbour_ext": True, "jupyter_server_fileid": True,
                                    "jupyter_server_terminals": False},
            "allow_unauthenticated_access": False,
            **server_app,
        },
        "BaseFileIdManager": {"db_path": ":memory:"},
        "DataHarbourApp": {"class_data_sharing": False, "metrics_interval": 0.0},
    }  # fmt: skip


def _count_calls(monkeypatch, manager, method_name: str, calls: list) -> None:
    """Record the arguments of each call of the contents manager's `method_name` (sync or async)."""
    original = getattr(manager, method_name)

    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(manager, method_name, recording)


async def _delete_sessions(jp_fetch):
    for session in json.loads((await jp_fetch("api", "sessions")).body):
        await jp_fetch("api", "sessions", session["id"], method="DELETE")


async def test_an_unchanged_notebook_is_not_read_again_and_a_changed_one_is(executor, extension, jp_root_dir,
                                                                            monkeypatch):  # fmt: skip
    first, other = _write_notebook(jp_root_dir, "again.ipynb", "print('first')", "'other'")
    reads = []
    _count_calls(monkeypatch, extension.serverapp.contents_manager, "get", reads)

    def full_reads():
        return sum(1 for _, kwargs in reads if kwargs.get("content", True))

    for count in (1, 2, 3):
        run = await executor.execute("again", "again.ipynb", first, timeout=30)
        assert (run.status, run.execution_count) == ("ok", count)
    assert full_reads() == 1  # then the file's version only: it is the one the last store wrote

    await executor.settled()
    nb = nbformat.read(jp_root_dir / "again.ipynb", as_version=4)
    nb.cells[0].source = "print('changed on disk')"  # as an editor would change it
    nbformat.write(nb, jp_root_dir / "again.ipynb")
    run = await executor.execute("again", "again.ipynb", first, timeout=30)
    assert run.outputs == [{"output_type": "stream", "name": "stdout", "text": "changed on disk\n"}]
    assert full_reads() == 2
    stored = await _stored_cells(executor, jp_root_dir, "again.ipynb")
    assert (stored[first].source, stored[first].outputs, stored[other].source) == (
        "print('changed on disk')", run.outputs, "'other'")  # fmt: skip


async def test_outputs_of_quick_executes_are_saved_together_and_api_reads_wait_for_them(api, extension, jp_fetch,
                                                                                         monkeypatch):  # fmt: skip
    monkeypatch.setattr(notebook_outputs, "STORE_INTERVAL_SECONDS", 2.0)
    _, notebook = await api.call("POST", "notebooks/", {"name": "quick"})
    base = f"notebooks/{notebook['id']}/cells"
    cells = [(await api.call("POST", base, {"source": f"print({n})"}))[1] for n in range(3)]
    saves = []
    _count_calls(monkeypatch, extension.serverapp.contents_manager, "save", saves)
    try:
        runs = [await api.call("POST", f"{base}/{cell['id']}/execute", {}) for cell in cells]
        assert [(status, run["status"]) for status, run in runs] == [(200, "ok")] * 3, runs

        # Waits for the notebook's store lock, held until every answered execute's outputs are saved.
        _, stored = await api.call("GET", f"notebooks/{notebook['id']}")
        assert [cell["outputs"] for cell in stored["cells"]] == [run["outputs"] for _, run in runs]
        assert [cell["execution_count"] for cell in stored["cells"]] == [1, 2, 3]
        # The first at once; the two that came within STORE_INTERVAL_SECONDS of it, in one save.
        assert len(saves) == 2
    finally:
        await _delete_sessions(jp_fetch)


@pytest.mark.parametrize(
    "jp_server_config",
    [_server_config(),
     _server_config(contents_manager_class="jupyter_server.services.contents.filemanager.FileContentsManager")],
    ids=["async-contents-manager", "sync-contents-manager"],
)  # fmt: skip
@pytest.mark.filterwarnings("ignore:The synchronous ContentsManager classes are deprecated:DeprecationWarning")
async def test_an_edit_through_the_contents_api_between_quick_executes_is_run_and_kept(api, extension, jp_fetch,
                                                                                        monkeypatch):  # fmt: skip
    monkeypatch.setattr(notebook_outputs, "STORE_INTERVAL_SECONDS", 2.0)
    _, notebook = await api.call("POST", "notebooks/", {"name": "edited"})
    base = f"notebooks/{notebook['id']}/cells"
    _, first = await api.call("POST", base, {"source": "print('first')"})
    _, second = await api.call("POST", base, {"source": "print('second')"})
    path = ("api", "contents", "edited.ipynb")
    try:
        status, run = await api.call("POST", f"{base}/{first['id']}/execute", {})
        assert status == 200 and run["execution_count"] == 1, run
        await extension.cell_executor.settled()
        # Its outputs wait for STORE_INTERVAL_SECONDS after the first save, holding the store lock.
        status, run = await api.call("POST", f"{base}/{first['id']}/execute", {})
        assert status == 200 and run["execution_count"] == 2, run

        # JupyterLab saves an edit of the other cell meanwhile (its contents API takes no lock of ours).
        model = json.loads((await jp_fetch(*path)).body)
        model["content"]["cells"][1]["source"] = "print('edited in JupyterLab')"
        await jp_fetch(*path, method="PUT", body=json.dumps({"type": "notebook", "format": "json",
                                                             "content": model["content"]}))  # fmt: skip

        status, run = await api.call("POST", f"{base}/{second['id']}/execute", {})
        assert status == 200 and run["outputs"] == [
            {"output_type": "stream", "name": "stdout", "text": "edited in JupyterLab\n"}], run  # fmt: skip
        _, stored = await api.call("GET", f"notebooks/{notebook['id']}")
        assert [(c["source"], c["execution_count"]) for c in stored["cells"]] == [
            ("print('first')", 2), ("print('edited in JupyterLab')", 3)]  # fmt: skip
        assert stored["cells"][1]["outputs"] == run["outputs"]
    finally:
        await _delete_sessions(jp_fetch)


async def test_executes_in_quick_succession_let_the_notebook_api_take_its_turn(api, extension, jp_fetch, monkeypatch):
    # A store holds the notebook's lock while executes keep adding outputs to it, for at most
    # STORE_HOLD_SECONDS: then an execute waits for the lock, and the API's calls waiting get it first.
    monkeypatch.setattr(notebook_outputs, "STORE_HOLD_SECONDS", 0.3)
    # Saves slower than a cell's run: every save sees another execute answered, which joins the store.
    manager = extension.serverapp.contents_manager
    save = manager.save

    async def slow_save(*args, **kwargs):
        await asyncio.sleep(0.2)
        return await save(*args, **kwargs)

    monkeypatch.setattr(manager, "save", slow_save)
    _, notebook = await api.call("POST", "notebooks/", {"name": "busy"})
    base = f"notebooks/{notebook['id']}/cells"
    _, cell = await api.call("POST", base, {"source": "1+1"})
    execute = f"{base}/{cell['id']}/execute"
    answered = []
    stop = asyncio.Event()

    async def keep_executing():
        while not stop.is_set():
            status, run = await api.call("POST", execute, {})
            assert status == 200 and run["status"] == "ok", run
            answered.append(run["execution_count"])

    try:
        assert (await api.call("POST", execute, {}))[0] == 200  # starts the kernel
        executing = asyncio.ensure_future(keep_executing())
        await _until(lambda: len(answered) >= 3 or executing.done(), what="executes answered")
        status, added = await asyncio.wait_for(api.call("POST", base, {"source": "'added meanwhile'"}), 30)
        assert status == 201 and not executing.done(), added
        before = len(answered)
        await _until(lambda: len(answered) > before + 2 or executing.done(), what="executes go on")
        stop.set()
        await executing
        _, stored = await api.call("GET", f"notebooks/{notebook['id']}")
        assert [c["source"] for c in stored["cells"]] == ["1+1", "'added meanwhile'"]
        assert stored["cells"][0]["execution_count"] == answered[-1]
    finally:
        stop.set()
        await _delete_sessions(jp_fetch)
