"""The notebook job's program (dataharbour_ext/spark/notebook_runner.py), run as the run
supervisor runs it: `python -m dataharbour_ext.spark.notebook_runner RUN_DIR`, with a real
ipykernel, on a temp run folder. Its output goes to a file, as the supervisor's log."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 60  # seconds for a whole run: a kernel starts in about 2 s, slower on busy cores


def code(source: str, *tags: str):
    return nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)} if tags else {})


def make_run(tmp_path: Path, cells: list, parameters: dict | None = None, **job) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, run_dir / "input.ipynb")
    (tmp_path / "work").mkdir()
    spec = {"input": "input.ipynb", "output": "output.ipynb", "parameters": parameters or {},
            "kernel_name": None, "cwd": str(tmp_path / "work"), "cell_timeout": None, **job}  # fmt: skip
    (run_dir / "notebook_job.json").write_text(json.dumps(spec))
    return run_dir


def start(run_dir: Path) -> subprocess.Popen:
    with open(run_dir / "stdout.log", "wb") as out, open(run_dir / "stderr.log", "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "dataharbour_ext.spark.notebook_runner", str(run_dir)],
                                cwd=REPO, stdout=out, stderr=err)  # fmt: skip


def run(run_dir: Path) -> tuple[int, str, str]:
    process = start(run_dir)
    try:
        code_ = process.wait(DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return code_, (run_dir / "stdout.log").read_text(), (run_dir / "stderr.log").read_text()


def output(run_dir: Path):
    return nbformat.read(run_dir / "output.ipynb", as_version=4)


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def wait_for(condition, timeout: float = DEADLINE, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_parameters_injected_after_the_parameters_cell_and_used(tmp_path):
    run_dir = make_run(tmp_path, [
        nbformat.v4.new_markdown_cell("# Report"),
        code("x = 1\nlabel = 'default'", "parameters"),
        code("import os\nprint(x * 2, label, sorted(options), os.getcwd())"),
        code("x + 1"),
    ], parameters={"x": 21, "label": "it's", "options": {"b": [1, None, True], "a": 0.5}})  # fmt: skip

    code_, stdout, stderr = run(run_dir)

    assert code_ == 0, stderr
    nb = output(run_dir)
    injected = nb.cells[2]
    assert injected.metadata["tags"] == ["injected-parameters"]
    assert injected.source == ("# Parameters\nx = 21\nlabel = \"it's\"\n"
                               "options = {'b': [1, None, True], 'a': 0.5}\n")  # fmt: skip
    assert text_of(nb.cells[3]) == f"42 it's ['a', 'b'] {tmp_path / 'work'}\n"
    assert nb.cells[4].outputs[0]["data"]["text/plain"] == "22"
    meta = nb.metadata["dataharbour"]
    assert meta["status"] == "succeeded"
    assert meta["parameters"] == {"x": 21, "label": "it's", "options": {"b": [1, None, True], "a": 0.5}}
    assert meta["started_at"] <= meta["finished_at"]
    assert not (run_dir / "error.json").exists()

    # Progress: a started and a done line for each cell, the cell's print between its two.
    lines = [re.sub(r"done in \d+\.\d\d s$", "done in T s", line) for line in stdout.splitlines()]
    assert [line for line in lines if line.startswith("[cell ")] == [
        f"[cell {n}/4] {what}" for n in range(1, 5) for what in ("started", "done in T s")
    ]
    printed = f"42 it's ['a', 'b'] {tmp_path / 'work'}"
    assert lines.index("[cell 3/4] started") < lines.index(printed) < lines.index("[cell 3/4] done in T s")
    progress = read_json(run_dir / "progress" / "cells.json")
    assert progress["cells"] == {"total": 4, "done": 4, "failed": 0, "active": 0}
    assert progress["current_cell"] is None
    assert progress["percent"] == 100.0
    assert progress["kernel_ready_at"] > 0


def test_parameters_injected_on_top_without_a_parameters_cell(tmp_path):
    run_dir = make_run(tmp_path, [code("print(greeting)")], parameters={"greeting": "hello"})

    code_, stdout, stderr = run(run_dir)

    assert code_ == 0, stderr
    nb = output(run_dir)
    assert [cell.metadata.get("tags") for cell in nb.cells] == [["injected-parameters"], None]
    assert nb.cells[0].source == "# Parameters\ngreeting = 'hello'\n"
    assert text_of(nb.cells[1]) == "hello\n"
    assert "hello\n" in stdout


def test_a_failing_cell_stops_the_run(tmp_path):
    run_dir = make_run(tmp_path, [
        code("print('before')"),
        code("def f():\n    return 1 / 0\n\nf()"),
        code("print('after')"),
    ])  # fmt: skip

    code_, stdout, stderr = run(run_dir)

    assert code_ == 1
    assert read_json(run_dir / "error.json") == {"error": "ZeroDivisionError: division by zero (cell 2)"}
    nb = output(run_dir)
    assert text_of(nb.cells[0]) == "before\n"
    error = nb.cells[1].outputs[-1]
    assert (error.output_type, error.ename, error.evalue) == ("error", "ZeroDivisionError", "division by zero")
    assert nb.cells[2].outputs == [] and nb.cells[2].execution_count is None
    assert nb.metadata["dataharbour"]["status"] == "failed"
    assert nb.metadata["dataharbour"]["error"] == "ZeroDivisionError: division by zero (cell 2)"
    # The traceback in the log, readable: no terminal colours.
    assert "return 1 / 0" in stderr and "ZeroDivisionError: division by zero" in stderr
    assert "\x1b[" not in stderr
    assert "[cell 2/3] failed after " in stdout and "[cell 3/3]" not in stdout and "after\n" not in stdout
    assert read_json(run_dir / "progress" / "cells.json")["cells"] == {"total": 3, "done": 1, "failed": 1, "active": 0}


def test_a_cell_past_its_timeout_fails_the_run(tmp_path):
    run_dir = make_run(tmp_path, [code("import time\ntime.sleep(60)"), code("print('after')")], cell_timeout=1.5)

    started = time.monotonic()
    code_, stdout, stderr = run(run_dir)

    assert code_ == 1
    assert time.monotonic() - started < 30
    assert read_json(run_dir / "error.json") == {"error": "TimeoutError: the cell did not finish within 1.5 s (cell 1)"}
    assert output(run_dir).metadata["dataharbour"]["status"] == "failed"


@pytest.mark.parametrize("parameters, message", [
    ({"not valid": 1}, "parameter name 'not valid' is not a Python identifier"),
    ({"class": 1}, "parameter name 'class' is not a Python identifier"),
    ({"__import__('os')": 1}, "parameter name \"__import__('os')\" is not a Python identifier"),
])  # fmt: skip
def test_an_invalid_parameter_name_is_refused(tmp_path, parameters, message):
    run_dir = make_run(tmp_path, [code("print('never')")], parameters=parameters)

    code_, stdout, stderr = run(run_dir)

    assert code_ == 2
    assert stderr.strip() == f"DataHarbour: {message}"
    assert read_json(run_dir / "error.json") == {"error": message}
    assert not (run_dir / "output.ipynb").exists()


def test_a_value_that_is_not_json_is_refused(tmp_path):
    run_dir = make_run(tmp_path, [code("print('never')")])
    job = (run_dir / "notebook_job.json").read_text().replace('"parameters": {}', '"parameters": {"x": NaN}')
    (run_dir / "notebook_job.json").write_text(job)

    code_, stdout, stderr = run(run_dir)

    assert code_ == 2
    assert stderr.strip() == "DataHarbour: cannot read notebook_job.json: NaN is not a JSON value"


def test_sigterm_stops_a_running_cell_and_its_kernel(tmp_path):
    run_dir = make_run(tmp_path, [
        code("import subprocess, time\nchild = subprocess.Popen(['sleep', '300'])"),
        code("print('sleeping', flush=True)\ntime.sleep(300)"),
        code("print('after')"),
    ])  # fmt: skip
    process = start(run_dir)
    try:
        wait_for(lambda: "sleeping\n" in (run_dir / "stdout.log").read_text(), what="the sleeping cell")
        # Watchable mid-run: the running cell, and the notebook as of the last cell done.
        assert read_json(run_dir / "progress" / "cells.json")["current_cell"] == 1
        assert read_json(run_dir / "progress" / "cells.json")["cells"] == {"total": 3, "done": 1, "failed": 0,
                                                                            "active": 1}
        so_far = output(run_dir)
        assert so_far.metadata["dataharbour"]["status"] == "running"
        assert so_far.cells[0].execution_count == 1 and so_far.cells[1].execution_count is None
        runner = psutil.Process(process.pid)
        below = runner.children(recursive=True)
        assert {p.name() for p in below} >= {"sleep"} and len(below) >= 2  # the kernel and its child

        process.send_signal(signal.SIGTERM)
        code_ = process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert code_ == 128 + signal.SIGTERM
    _, alive = psutil.wait_procs(below, timeout=5)
    assert alive == []
    nb = output(run_dir)
    assert nb.metadata["dataharbour"]["status"] == "killed"
    assert text_of(nb.cells[1]) == "sleeping\n"
    assert nb.cells[2].execution_count is None
    assert not (run_dir / "error.json").exists()
    assert "[cell 2/3] stopped after " in (run_dir / "stdout.log").read_text()
    assert read_json(run_dir / "progress" / "cells.json")["cells"] == {"total": 3, "done": 1, "failed": 0, "active": 0}
