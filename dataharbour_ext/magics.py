"""IPython magics: submit a notebook cell as a Spark job and follow it in place.

    %load_ext dataharbour_ext

    %%spark_submit [--name N] [--cluster C] [--mode batch|connect|auto] [--conf k=v ...]
                   [--env K=V ...] [--input s3://bucket/key [AS] ...] [--log-level L]
                   [--no-wait] [--keep-on-interrupt] [-- args...]
    %spark_jobs [--state S] [--limit N]
    %spark_status ID    %spark_logs ID [--tail N]    %spark_kill ID    %spark_restart ID
    %spark_clusters

They call the server through dataharbour_ext.client, which finds it from the kernel's
environment (DATAHARBOUR_URL and DATAHARBOUR_TOKEN, set by the server for kernels it starts).
`%%spark_submit` waits by default: a progress display and the job's log as it grows, until the
job ends; a failed job raises in the cell with its error. Interrupting the cell kills the job
(unless --keep-on-interrupt). The job's id goes into `_spark_job`. Each `--input` object is
downloaded before the job starts, to AS (default: the key's last part) under
$DATAHARBOUR_INPUT_DIR.
"""

import argparse
import contextlib
import html
import os
import shlex
import time

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import HTML, display
from pydantic import ValidationError

from .client import DataHarbourClient, DataHarbourError
from .models import TERMINAL_STATES

TERMINAL = frozenset(state.value for state in TERMINAL_STATES)
JOB_VARIABLE = "_spark_job"
PLAIN_PROGRESS_SECONDS = 5.0  # a terminal gets a progress line at most this often


class SparkJobFailed(Exception):
    """A job submitted from a cell failed (or was killed, or lost): its error summary."""

    def __init__(self, job):
        self.job = job
        summary = job.error or (f"exit code {job.exit_code}" if job.exit_code is not None else "no error reported")
        super().__init__(f"Spark job {job.name!r} ({job.id}) {job.state.value}: {summary}")

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback through the magic's own frames.
        return [f"{type(self).__name__}: {self}"]


class SparkApiError(Exception):
    """The server refused a magic's call (an unknown job, a bad conf key...): its words, no
    traceback through the client's frames."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error to IPython instead of exiting the kernel."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage()}")


def _key_values(items: list[str], what: str) -> dict[str, str]:
    found = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise UsageError(f"--{what} takes KEY=VALUE, not {item!r}")
        found[key] = value
    return found


SUBMIT_USAGE = """%(prog)s [--name N] [--cluster C] [--mode batch|connect|auto] [--conf k=v ...]
                      [--env K=V ...] [--input s3://bucket/key [AS] ...] [--log-level L]
                      [--no-wait] [--keep-on-interrupt] [-- args...]"""


def _submit_parser() -> _Parser:
    parser = _Parser(prog="%%spark_submit", add_help=False, usage=SUBMIT_USAGE)
    parser.add_argument("--name")
    parser.add_argument("--cluster")
    parser.add_argument("--mode", choices=("batch", "connect", "auto"))
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--input", action="append", default=[], nargs="+", metavar="URI [AS]")
    parser.add_argument("--log-level")
    parser.add_argument("--no-wait", action="store_true")
    parser.add_argument("--keep-on-interrupt", action="store_true")
    return parser


def _inputs(items: list[list[str]]) -> list[dict]:
    inputs = []
    for item in items:
        if len(item) > 2:
            raise UsageError(f"--input takes URI [AS], not {' '.join(item)!r}")
        inputs.append({"uri": item[0], **({"as": item[1]} if len(item) == 2 else {})})
    return inputs


def _split(line: str) -> tuple[list[str], list[str]]:
    """The magic's options, and the program's arguments after `--`."""
    try:
        words = shlex.split(line)
    except ValueError as error:
        raise UsageError(f"cannot read the options: {error}") from None
    if "--" in words:
        at = words.index("--")
        return words[:at], words[at + 1 :]
    return words, []


class JobProgress:
    """What the cell shows while its job runs: an updating HTML bar in JupyterLab, text elsewhere."""

    def __init__(self, job_id: str, name: str):
        self.job_id, self.name = job_id, name
        self.state = "queued"
        self.progress: dict = {}

    def text(self) -> str:
        p = self.progress
        parts = [f"Spark job {self.name!r} ({self.job_id}): {self.state}"]
        if p.get("tasks", {}).get("total"):
            parts.append(f"{p.get('percent', 0):.0f}%, stages {p['stages']['done']}/{p['stages']['total']}, "
                         f"tasks {p['tasks']['done']}/{p['tasks']['total']}")
        return " · ".join(parts)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        percent = float(self.progress.get("percent", 100.0 if self.state == "succeeded" else 0.0))
        colour = {"failed": "#d32f2f", "killed": "#757575", "lost": "#757575"}.get(self.state, "#1976d2")
        return (
            '<div style="font-family: var(--jp-ui-font-family, sans-serif); font-size: 12px; max-width: 600px">'
            f"<div>{html.escape(self.text())}</div>"
            '<div style="background: #e0e0e0; height: 6px; border-radius: 3px; margin-top: 3px">'
            f'<div style="background: {colour}; width: {percent:.1f}%; height: 6px; border-radius: 3px"></div>'
            "</div></div>"
        )


@magics_class
class SparkMagics(Magics):
    def __init__(self, shell):
        super().__init__(shell)
        self._client: DataHarbourClient | None = None

    @property
    def client(self) -> DataHarbourClient:
        if self._client is None:
            try:
                self._client = DataHarbourClient()
            except DataHarbourError as error:
                raise SparkApiError(f"cannot reach the DataHarbour server: {error}") from None
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def rich(self) -> bool:
        """A Jupyter frontend (display updates); a terminal IPython gets plain lines."""
        return getattr(self.shell, "kernel", None) is not None

    # ---- %%spark_submit ---------------------------------------------------------------

    @cell_magic
    def spark_submit(self, line: str, cell: str):
        """Submit the cell as a Spark job and follow it until it ends (see the module's doc)."""
        options, args = _split(line)
        parsed = _submit_parser().parse_args(options)
        request = {
            "name": parsed.name or _default_name(),
            "code": cell,
            "args": args,
            "conf": _key_values(parsed.conf, "conf"),
            "env": _key_values(parsed.env, "env"),
        }
        if parsed.input:
            request["inputs"] = _inputs(parsed.input)
        for field, value in (("cluster_id", parsed.cluster), ("mode", parsed.mode), ("log_level", parsed.log_level)):
            if value:
                request[field] = value
        job = self._call(self.client.jobs.submit, request)
        self.shell.user_ns[JOB_VARIABLE] = job.id
        if parsed.no_wait:
            self._submitted(job)
            return None
        try:
            job = self._follow(job)
        except DataHarbourError as error:  # deleted meanwhile, the server gone
            raise SparkApiError(f"following Spark job {job.id}: {error}") from None
        except KeyboardInterrupt:
            if parsed.keep_on_interrupt:
                print(f"Interrupted; Spark job {job.id} goes on (%spark_kill {job.id} stops it)")
            else:
                self._kill_on_interrupt(job.id)
            raise
        if job.state.value != "succeeded":
            raise SparkJobFailed(job)
        return None

    def _submitted(self, job) -> None:
        """The id, and a link to the job's log (the API's JSON in a Jupyter browser tab)."""
        logs = f"{self.client.url}api/v1/jobs/{job.id}/logs?tail=200"
        words = f"Spark job {job.name!r} submitted: {job.id}; %spark_status {job.id} shows how it goes"
        if self.rich:
            display(HTML(f"{html.escape(words)} (<a href='{html.escape(logs)}' target='_blank'>log</a>)"))
        else:
            print(f"{words} (log: {logs})")

    def _follow(self, job):
        view = JobProgress(job.id, job.name)
        handle = display(view, display_id=True) if self.rich else None
        if handle is None:
            print(view.text(), flush=True)
        last_plain = time.monotonic()
        # Closed however the wait ends (an interrupt in our own code too): its stream with it.
        with contextlib.closing(self.client.jobs.follow(job.id)) as messages:
            self._show(messages, view, handle, last_plain)
        final = self.client.jobs.get(job.id)
        view.state = final.state.value
        if final.progress is not None:
            view.progress = final.progress.model_dump(mode="json")
        if handle is not None:
            handle.update(view)
        else:
            print(view.text(), flush=True)
        return final

    def _show(self, messages, view: "JobProgress", handle, last_plain: float) -> None:
        """The job's log lines as they come; its progress in the display (or as a line now and then)."""
        for message in messages:
            data = message.data if isinstance(message.data, dict) else {}
            if message.type == "job_log":
                for text in data.get("lines", []):
                    print(text, flush=True)
                continue
            if message.type == "job_update":
                changed = data.get("state", view.state) != view.state
                view.state = data.get("state", view.state)
                if data.get("progress"):
                    view.progress = data["progress"]
            elif message.type == "job_progress":
                changed = False
                view.progress = data
            else:
                continue
            if handle is not None:
                handle.update(view)
            elif changed or time.monotonic() - last_plain >= PLAIN_PROGRESS_SECONDS:
                print(view.text(), flush=True)
                last_plain = time.monotonic()

    def _kill_on_interrupt(self, job_id: str) -> None:
        try:
            job = self.client.jobs.kill(job_id)
            print(f"Interrupted: Spark job {job_id} {job.state.value}")
        except DataHarbourError as error:  # it ended meanwhile: nothing to kill
            print(f"Interrupted: Spark job {job_id} not killed ({error})")

    # ---- the line magics --------------------------------------------------------------

    @line_magic
    def spark_jobs(self, line: str):
        """%spark_jobs [--state S] [--limit N]: the latest jobs as a table."""
        parser = _Parser(prog="%spark_jobs", add_help=False)
        parser.add_argument("--state", action="append")
        parser.add_argument("--limit", type=int, default=20)
        parsed = parser.parse_args(_split(line)[0])
        listing = self._call(self.client.jobs.list, state=parsed.state, limit=parsed.limit)
        return Table(
            ["id", "name", "state", "mode", "cluster", "created", "duration", "error"],
            [[job.id, job.name, job.state.value, job.mode, job.cluster_id, job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
              "" if job.duration is None else f"{job.duration:.1f} s", job.error or ""] for job in listing.jobs],
            f"{len(listing.jobs)} of {listing.total} jobs",
        )

    @line_magic
    def spark_status(self, line: str):
        """%spark_status ID: the job's state, timing, error and progress."""
        job = self._call(self.client.jobs.get, self._job_id(line, "%spark_status"))
        rows = [["id", job.id], ["name", job.name], ["state", job.state.value], ["mode", job.mode],
                ["cluster", job.cluster_id], ["attempt", str(job.attempt)]]
        if job.duration is not None:
            rows.append(["duration", f"{job.duration:.1f} s"])
        if job.spark_app_id:
            rows.append(["Spark app", job.spark_app_id])
        if job.progress is not None:
            progress = job.progress
            rows.append(["progress", f"{progress.percent:.0f}%, stages {progress.stages.done}/{progress.stages.total}, "
                                     f"tasks {progress.tasks.done}/{progress.tasks.total}"])
        if job.error:
            rows.append(["error", job.error])
        return Table(["", ""], rows, None, header=False)

    @line_magic
    def spark_logs(self, line: str):
        """%spark_logs ID [--tail N]: the job's log (the last N lines, 100 by default)."""
        parser = _Parser(prog="%spark_logs", add_help=False)
        parser.add_argument("job_id")
        parser.add_argument("--tail", type=int, default=100)
        parsed = parser.parse_args(_split(line)[0])
        page = self._call(self.client.jobs.tail, parsed.job_id, parsed.tail)
        print("\n".join(page.lines))

    @line_magic
    def spark_kill(self, line: str):
        """%spark_kill ID: stop the job's whole process tree."""
        job = self._call(self.client.jobs.kill, self._job_id(line, "%spark_kill"))
        print(f"Spark job {job.id} {job.state.value}")

    @line_magic
    def spark_restart(self, line: str):
        """%spark_restart ID: run the job again as a new attempt."""
        job = self._call(self.client.jobs.restart, self._job_id(line, "%spark_restart"))
        self.shell.user_ns[JOB_VARIABLE] = job.id
        print(f"Spark job {job.id} restarted: attempt {job.attempt}, {job.state.value}")

    @line_magic
    def spark_clusters(self, line: str):
        """%spark_clusters: the clusters jobs can run on."""
        listing = self._call(self.client.clusters.list)
        return Table(
            ["id", "name", "kind", "state", "master", "workers", "running jobs"],
            [[c.id, c.name, _word(c.kind), _word(c.state), c.master_url, str(len(c.workers)), str(c.running_jobs)]
             for c in listing.clusters],
            None,
        )

    # ---- helpers ----------------------------------------------------------------------

    @staticmethod
    def _job_id(line: str, prog: str) -> str:
        words = _split(line)[0]
        if len(words) != 1:
            raise UsageError(f"{prog} takes one job id")
        return words[0]

    @staticmethod
    def _call(method, *args, **kwargs):
        """An API call whose error fails the cell in words."""
        try:
            return method(*args, **kwargs)
        except DataHarbourError as error:
            raise SparkApiError(str(error)) from None
        except ValidationError as error:  # refused by the client before it was sent, as the server would
            problems = "; ".join(
                f"{'.'.join(str(part) for part in problem['loc'] if part != '[key]')}: {problem['msg']}"
                for problem in error.errors()
            )
            raise SparkApiError(f"400 {problems}") from None


class Table:
    """Rows shown as an HTML table in JupyterLab and as aligned text in a terminal."""

    def __init__(self, columns: list[str], rows: list[list[str]], caption: str | None, header: bool = True):
        self.columns, self.rows, self.caption, self.header = columns, rows, caption, header

    def _repr_html_(self) -> str:
        head = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in self.columns) + "</tr>" if self.header else ""
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in self.rows)
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f"<table>{caption}{head}{body}</table>"

    def __repr__(self) -> str:
        lines = [self.columns] if self.header else []
        lines += [[str(v) for v in row] for row in self.rows]
        widths = [max((len(line[i]) for line in lines), default=0) for i in range(len(self.columns))]
        text = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(line)).rstrip() for line in lines]
        return "\n".join(([self.caption] if self.caption else []) + text)


def _word(value) -> str:
    return str(getattr(value, "value", value))


def _default_name() -> str:
    """The notebook's name when the kernel knows it (JupyterLab's sessions tell it), else a generic one."""
    session = os.environ.get("JPY_SESSION_NAME", "")
    return f"{os.path.basename(session)} cell" if session else "notebook cell"


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(SparkMagics)


def unload_ipython_extension(ipython) -> None:
    """`%unload_ext` / `%reload_ext`: the magics' client goes with them (its thread, its connections)."""
    magics = ipython.magics_manager.registry.get("SparkMagics")
    if magics is not None:
        magics.close()
