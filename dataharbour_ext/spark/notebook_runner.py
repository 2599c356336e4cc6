"""A notebook job's program: `python -m dataharbour_ext.spark.notebook_runner RUN_DIR`.

Started by the run supervisor (runs/supervisor.py), whose log gets everything it prints.
RUN_DIR/notebook_job.json says what to run:

    {"input": "input.ipynb", "output": "output.ipynb", "parameters": {"x": 1},
     "kernel_name": null, "cwd": "/root/notebooks/project", "cell_timeout": null}

(input and output relative to RUN_DIR). It injects the parameters papermill's way, a code
cell tagged `injected-parameters` right after the first cell tagged `parameters` (at the
top without one; replacing the cell of an earlier injection), then executes the notebook
with nbclient in a fresh kernel (the job's `kernel_name`, else the notebook's kernelspec,
else python3) started in `cwd`. The first error stops the run.

What it leaves for the engine and the user:
- RUN_DIR/<output>: the executed notebook, rewritten atomically after every cell (so it can
  be watched) and at the end, with `metadata.dataharbour` = {parameters, started_at,
  finished_at, status, error}; status is running, succeeded, failed or killed.
- RUN_DIR/progress/cells.json: {"cells": {"total", "done", "failed", "active"},
  "current_cell": index of the running cell in the notebook's cells (null before the first
  and after the last), "percent": ..., "kernel_ready_at": when the kernel came up (null
  before), "updated_at": ...}: written as the kernel comes up and as each cell starts and ends.
- RUN_DIR/progress/spark.json and progress.json: in a Python kernel with pyspark, the
  SparkContext hooks of bootstrap.py (installed in the kernel before the first cell) write the
  notebook's Spark application and its Spark progress there, as a batch run's driver does.
- its stdout: `[cell 3/12] started`, the cell's stream output as it comes (its stderr
  stream on stderr), `[cell 3/12] done in 0.42 s`. Cells are numbered among the code cells
  that run, so in a fresh kernel "cell 3" is the cell showing `In [3]` in the output.
- RUN_DIR/error.json when the notebook fails: {"error": "ename: evalue (cell 3)"}, the
  summary run_files.SparkRunFiles reads before scanning the log.

Exit status: 0 succeeded; 1 the notebook failed (a cell's error, its timeout, the kernel
died or could not start); 2 the job cannot run as given (bad job file, unreadable notebook,
a parameter that is not an identifier or not a JSON value); 128 + signal when stopped by
SIGTERM or SIGINT, after killing the kernel's process group and saving the output so far.
"""

import asyncio
import datetime
import json
import keyword
import math
import os
import re
import signal
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from ..secrets import REDACTED, is_secret_name
from .bootstrap import _write_atomically

JOB_FILE = "notebook_job.json"
PROGRESS_DIR = "progress"  # the runner's cells.json and the kernel's Spark files, watched as one folder
CELLS_FILE = "cells.json"
SPARK_SIGNALS_FILE = "spark.json"  # as driver_signals.SIGNALS_FILE
BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap.py")
ERROR_FILE = "error.json"  # as run_files.ERROR_FILE: {"error": "..."}
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
DEFAULT_KERNEL = "python3"
SKIP_TAG = "skip-execution"  # nbclient's default skip_cells_with_tag: such cells never run
FAILED, BAD_JOB = 1, 2
MAX_DEPTH = 32  # as the API's parameters (models/jobs.py MAX_PARAMETER_DEPTH)
MAX_EVALUE_LENGTH = 500  # the summary's "(cell N)" must survive the engine's cut at 1000 characters
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class BadJob(Exception):
    """The job cannot run as given: exit 2 with this message."""


# ---- the job file and its parameters ---------------------------------------------------


def read_job(run_dir: str) -> dict:
    try:
        with open(os.path.join(run_dir, JOB_FILE), encoding="utf-8") as f:
            job = json.load(f, parse_constant=_refuse_constant)
    except (OSError, ValueError) as error:
        raise BadJob(f"cannot read {JOB_FILE}: {error}") from None
    if not isinstance(job, dict):
        raise BadJob(f"{JOB_FILE} must hold an object")
    for name in ("input", "output", "cwd"):
        if not isinstance(job.get(name), str) or not job[name]:
            raise BadJob(f"{JOB_FILE}: {name!r} must be a non-empty string")
    if job.get("kernel_name") is not None and not isinstance(job["kernel_name"], str):
        raise BadJob(f"{JOB_FILE}: 'kernel_name' must be a string or null")
    timeout = job.get("cell_timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise BadJob(f"{JOB_FILE}: 'cell_timeout' must be a positive number of seconds or null")
    parameters = job.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadJob(f"{JOB_FILE}: 'parameters' must be an object")
    check_parameters(parameters)
    return {**job, "parameters": parameters}


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")  # json.load would take NaN and Infinity


def check_parameters(parameters: dict) -> None:
    """Names become Python variables and values Python literals: only identifiers, only JSON."""
    for name, value in parameters.items():
        if not name.isidentifier() or keyword.iskeyword(name):
            raise BadJob(f"parameter name {name!r} is not a Python identifier")
        if not _json_value(value):
            raise BadJob(f"parameter {name!r} is not a JSON value")


def _json_value(value, depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        return False
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)  # repr(nan) is no Python literal
    if isinstance(value, list):
        return all(_json_value(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _json_value(item, depth + 1) for key, item in value.items())
    return False


def parameters_source(parameters: dict) -> str:
    lines = ["# Parameters"] + [f"{name} = {value!r}" for name, value in parameters.items()]
    return "\n".join(lines) + "\n"


def shown_parameters(parameters: dict) -> dict:
    """The parameters as the output notebook shows them: values of secret-looking names
    masked, as the API masks them (the kernel gets the real ones)."""
    return {name: REDACTED if is_secret_name(name) else value for name, value in parameters.items()}


def inject_parameters(nb, parameters: dict) -> None:
    """papermill's placement: replace an earlier injection, else go right after the first
    cell tagged `parameters`, else on top. No parameters, no cell."""
    if not parameters:
        return
    cell = nbformat.v4.new_code_cell(parameters_source(parameters), metadata={"tags": [INJECTED_TAG]})
    if nb.nbformat_minor < 5:
        del cell["id"]  # cell ids came with nbformat 4.5: the notebook stays valid at its version
    injected = _first_tagged(nb, INJECTED_TAG)
    if injected is not None:
        nb.cells[injected] = cell
        return
    marked = _first_tagged(nb, PARAMETERS_TAG)
    nb.cells.insert(0 if marked is None else marked + 1, cell)


def _first_tagged(nb, tag: str) -> int | None:
    for index, cell in enumerate(nb.cells):
        if tag in cell.get("metadata", {}).get("tags", []):
            return index
    return None


def read_notebook(path: str):
    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # missing, not JSON, not a notebook
        raise BadJob(f"cannot read the notebook {os.path.basename(path)}: {error}") from None


# ---- output: files and log lines ---------------------------------------------------------


def write_text_atomically(path: str, text: str) -> None:
    partial = f"{path}.{os.getpid()}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # owner-only, as the run folder
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(partial, path)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class Echo:
    """The kernel's stream output, passed on to our stdout or stderr as it arrives; a line
    left open is closed before our own next line."""

    def __init__(self):
        self.open = {"stdout": False, "stderr": False}

    def stream(self, name: str, text: str) -> None:
        if not text:
            return
        name = "stderr" if name == "stderr" else "stdout"
        target = sys.stderr if name == "stderr" else sys.stdout
        target.write(text)
        target.flush()
        self.open[name] = not text.endswith("\n")

    def line(self, text: str, to_stderr: bool = False) -> None:
        name = "stderr" if to_stderr else "stdout"
        target = sys.stderr if to_stderr else sys.stdout
        if self.open[name]:
            target.write("\n")
            self.open[name] = False
        target.write(text + "\n")
        target.flush()


class EchoingClient(NotebookClient):
    """nbclient's client, with every stream message also shown in the job's log."""

    def __init__(self, nb, echo: Echo, **kwargs):
        super().__init__(nb, **kwargs)
        self.echo = echo

    def output(self, outs, msg, display_id, cell_index):
        out = super().output(outs, msg, display_id, cell_index)
        if msg["msg_type"] == "stream":
            self.echo.stream(msg["content"].get("name", "stdout"), msg["content"].get("text", ""))
        return out


# ---- the run -------------------------------------------------------------------------------


class NotebookRun:
    def __init__(self, run_dir: str, job: dict, nb):
        self.run_dir = run_dir
        self.output_path = os.path.join(run_dir, job["output"])
        self.nb = nb
        self.echo = Echo()
        self.kernel_name = job.get("kernel_name") or nb.metadata.get("kernelspec", {}).get("name") or DEFAULT_KERNEL
        self.cells = [index for index, cell in enumerate(nb.cells) if _runs(cell)]
        self.done = 0
        self.failed = False
        self.kernel_ready_at: float | None = None
        self.stop_signal: int | None = None
        self.task: asyncio.Task | None = None  # the run's, while a signal may cancel it
        self.meta = nb.metadata.setdefault("dataharbour", {})
        shown = shown_parameters(job["parameters"])
        self.meta.update(parameters=shown, started_at=None, finished_at=None, status="running", error=None)
        # The injected cell runs with the real values; the saved notebook shows the masked ones.
        self.injected = _first_tagged(nb, INJECTED_TAG)
        self.shown_source = parameters_source(shown) if shown != job["parameters"] else None
        timeout = job.get("cell_timeout")
        self.client = EchoingClient(
            nb,
            self.echo,
            kernel_name=self.kernel_name,
            allow_errors=False,
            timeout_func=(lambda cell: timeout) if timeout else None,  # `timeout` itself takes whole seconds only
            resources={"metadata": {"path": job["cwd"]}},
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop, signum)
        self.meta["started_at"] = _now()
        self._save(current=None)  # the kernel starts
        self.echo.line(f"[notebook] {len(self.cells)} cells to run in kernel {self.kernel_name}")
        number = 0
        code = 0
        try:
            self.client.km = self.client.create_kernel_manager()
            await self.client.async_start_new_kernel()
            await self.client.async_start_new_kernel_client()
            await self._record_language()
            await self._install_spark_hooks()
            self.kernel_ready_at = time.time()
            self._save_progress(None)
            for number, index in enumerate(self.cells, 1):
                await self._run_cell(number, index)
        except BaseException as error:  # CancelledError included: a signal stops the run
            code = self._failed(error, number)
        finally:
            self.task = None  # from here on a signal changes nothing: the kernel is being stopped anyway
            await self._stop_kernel()
        if code == 0:
            self.meta["status"] = "succeeded"
            self.echo.line("[notebook] succeeded")
        self.meta["finished_at"] = _now()
        self._save(current=None)
        return code

    async def _run_cell(self, number: int, index: int) -> None:
        label = f"[cell {number}/{len(self.cells)}]"
        self.echo.line(f"{label} started")
        self._save_progress(index)
        began = time.monotonic()
        try:
            await self.client.async_execute_cell(self.nb.cells[index], index)
        except BaseException:
            self.echo.line(
                f"{label} {'stopped' if self.stop_signal else 'failed'} after {time.monotonic() - began:.2f} s"
            )
            raise
        self.done += 1
        self.echo.line(f"{label} done in {time.monotonic() - began:.2f} s")
        self._save(current=None)

    async def _record_language(self) -> None:
        """The kernel's language_info, as nbclient's own execute records it (highlighting in JupyterLab)."""
        reply = await self.client.async_wait_for_reply(self.client.kc.kernel_info())
        if reply and "language_info" in reply["content"]:
            self.nb.metadata["language_info"] = reply["content"]["language_info"]

    async def _install_spark_hooks(self) -> None:
        """bootstrap.py's SparkContext hooks, in a Python kernel that has pyspark: the engine
        then sees the notebook's Spark application and progress as a batch run's. A silent
        execute: no execution count, no history, nothing in the notebook."""
        if self.nb.metadata.get("language_info", {}).get("name") != "python":
            return
        signals = os.path.join(self.run_dir, PROGRESS_DIR, SPARK_SIGNALS_FILE)
        code = (
            "def _dataharbour_hooks():\n"
            "    import importlib.util, os, runpy, sys\n"
            "    if importlib.util.find_spec('pyspark') is None:\n"
            "        return\n"
            # Spark's Python workers run the kernel's Python (its packages), not the server's.
            "    os.environ['PYSPARK_PYTHON'] = os.environ['PYSPARK_DRIVER_PYTHON'] = sys.executable\n"
            f"    bootstrap = runpy.run_path({BOOTSTRAP!r}, run_name='dataharbour_bootstrap')\n"
            f"    bootstrap['install_hooks'](bootstrap['Signals']({signals!r}))\n"
            "try:\n"
            "    _dataharbour_hooks()\n"
            "except Exception as error:\n"
            "    import sys\n"  # the kernel's own stderr: the job's log, not a cell's output
            "    print(f'DataHarbour: no Spark progress for this notebook ({error!r})', file=sys.__stderr__)\n"
            "finally:\n"
            "    del _dataharbour_hooks\n"
        )
        reply = await self.client.async_wait_for_reply(self.client.kc.execute(code, silent=True, store_history=False))
        if not reply or reply["content"].get("status") != "ok":
            self.echo.line("[notebook] could not hook Spark in the kernel: no Spark progress", to_stderr=True)

    def _stop(self, signum: int) -> None:
        # Once only, and not once the run ends: a cancel must never cut the kernel's shutdown short.
        if self.stop_signal is None and self.task is not None:
            self.stop_signal = signum
            self.echo.line(f"[notebook] {signal.Signals(signum).name}: stopping the kernel", to_stderr=True)
            self.task.cancel()

    def _failed(self, error: BaseException, number: int) -> int:
        """The exit status for what ended the run early; the status, the log lines and
        error.json for the user. nbclient turns a cancelled cell into DeadKernelError, so a
        signal is told by its flag, not by the exception."""
        if self.stop_signal is not None:
            self.meta["status"] = "killed"
            return 128 + self.stop_signal
        self.meta["status"] = "failed"
        self.failed = bool(number)
        cell = f" (cell {number})" if number else ""
        if isinstance(error, CellTimeoutError):
            summary = f"TimeoutError: the cell did not finish within {self.client.timeout_func(None):g} s{cell}"
        elif isinstance(error, DeadKernelError):
            summary = f"DeadKernelError: the kernel died{cell}"
        elif isinstance(error, CellExecutionError):
            ename, evalue, traceback = self._error_output(number)
            evalue_first = (evalue.splitlines() or [""])[0][:MAX_EVALUE_LENGTH]
            summary = f"{ename or error.ename}: {evalue_first or error.evalue}{cell}"
            self.echo.line(strip_ansi("\n".join(traceback)) if traceback else strip_ansi(str(error)), to_stderr=True)
        elif not number:
            summary = f"could not start the kernel {self.kernel_name!r}: {type(error).__name__}: {error}"
        else:
            summary = f"{type(error).__name__}: {error}{cell}"
        self.meta["error"] = summary
        self.echo.line(f"[notebook] failed: {summary}", to_stderr=True)
        _write_atomically(os.path.join(self.run_dir, ERROR_FILE), {"error": summary})
        return FAILED

    def _error_output(self, number: int) -> tuple[str, str, list[str]]:
        for output in self.nb.cells[self.cells[number - 1]].get("outputs", []):
            if output.get("output_type") == "error":
                return output.get("ename", ""), output.get("evalue", ""), list(output.get("traceback", []))
        return "", "", []

    async def _stop_kernel(self) -> None:
        """Kill the kernel's whole process group (interrupt first), never a graceful wait:
        the run is over either way."""
        client = self.client
        try:
            if client.km is not None and client.km.has_kernel:
                await client.km.shutdown_kernel(now=True)
        except Exception as error:  # already gone
            self.echo.line(f"[notebook] kernel shutdown: {error}", to_stderr=True)
        finally:
            if client.kc is not None:
                client.kc.stop_channels()
                client.kc = None

    def _save(self, current: int | None) -> None:
        if self.shown_source is None or self.injected is None:
            text = nbformat.writes(self.nb)
        else:
            cell = self.nb.cells[self.injected]
            real, cell.source = cell.source, self.shown_source
            try:
                text = nbformat.writes(self.nb)
            finally:
                cell.source = real
        write_text_atomically(self.output_path, text)
        self._save_progress(current)

    def _save_progress(self, current: int | None) -> None:
        total = len(self.cells)
        percent = round(100.0 * self.done / total, 1) if total else 100.0
        folder = os.path.join(self.run_dir, PROGRESS_DIR)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        _write_atomically(
            os.path.join(folder, CELLS_FILE),
            {
                "cells": {"total": total, "done": self.done, "failed": int(self.failed),
                          "active": int(current is not None)},
                "current_cell": current,
                "percent": percent,
                "kernel_ready_at": self.kernel_ready_at,
                "updated_at": time.time(),
            },
        )


def _runs(cell) -> bool:
    """What nbclient executes: code cells with code, not tagged to skip."""
    return (
        cell.cell_type == "code"
        and bool(cell.source.strip())
        and SKIP_TAG not in cell.get("metadata", {}).get("tags", [])
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m dataharbour_ext.spark.notebook_runner RUN_DIR", file=sys.stderr)
        return BAD_JOB
    run_dir = argv[1]
    try:
        job = read_job(run_dir)
        nb = read_notebook(os.path.join(run_dir, job["input"]))
        inject_parameters(nb, job["parameters"])
    except BadJob as error:
        print(f"DataHarbour: {error}", file=sys.stderr, flush=True)
        if os.path.isdir(run_dir):
            _write_atomically(os.path.join(run_dir, ERROR_FILE), {"error": str(error)})
        return BAD_JOB
    return asyncio.run(NotebookRun(run_dir, job, nb).run())


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # zmq's threads must not hold the process open
