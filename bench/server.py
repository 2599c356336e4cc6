"""A throwaway Jupyter server with the dataharbour_ext extension, for the benchmarks.

    with BenchServer() as server:
        status, job = server.request("POST", "api/v1/jobs/", {"name": "x", "code": "print(1)"})

    with server_on_store("postgresql", "dataharbour_bench_x") as (server, url):
        insert_jobs(url, rows)  # before it starts
        with server:
            ...

The server runs as a subprocess on 127.0.0.1 with a random token, and all its state
(Jupyter data/config/runtime dirs, the DataHarbour store and run folders, the root dir)
lives in one temporary folder that is removed at the end. On exit it kills any job still
going, stops the server by pid (SIGTERM, then SIGKILL after a timeout) and then kills any
leftover process group that still runs from the temporary folder (job supervisors are
detached session leaders, so they would otherwise outlive the server).
"""

import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import psutil

HOST = "127.0.0.1"
TERMINAL_STATES = frozenset({"succeeded", "failed", "killed", "lost"})
# The machine's PostgreSQL: user postgres, trust auth on loopback.
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
INSERT_BATCH = 5000


class BenchError(RuntimeError):
    """A benchmark could not measure what it set out to (server, job or check failed)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks clean up."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def run_bench(main) -> None:
    """Run `main()`; exit 0 on success (goal met or not), 1 on a BenchError, 130 on Ctrl-C."""
    exit_on_sigterm()
    try:
        main()
    except BenchError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(0)


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time (user + system) the process has used so far."""
    times = process.cpu_times()
    return times.user + times.system


def pg_admin(sql: str) -> None:
    """Run one statement on the machine's PostgreSQL, outside a transaction (CREATE/DROP DATABASE)."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=10) as connection:
        connection.execute(sql)


@contextmanager
def server_on_store(kind: str, db_name: str, extra_args: Sequence[str] = ()) -> Iterator[tuple["BenchServer", str]]:
    """A BenchServer, not started yet, whose DataHarbour store is `kind`: "sqlite" (the default
    store, in the server's data folder) or "postgresql" (a fresh database `db_name`). Yields the
    server and the store's URL, so that the store can be filled before the server starts; on
    exit stops the server and drops the database."""
    args = list(extra_args)
    url = None
    if kind == "postgresql":
        pg_admin(f'DROP DATABASE IF EXISTS "{db_name}"')
        pg_admin(f'CREATE DATABASE "{db_name}"')
        url = PG_URL.format(db=db_name)
        args.append(f"--DataHarbourApp.db_url={url}")
    server = BenchServer(extra_args=args)
    try:
        os.makedirs(server.state_dir, mode=0o700)
        yield server, url or "sqlite:///" + os.path.join(server.state_dir, "dataharbour.db")
    finally:
        server.stop()
        if kind == "postgresql":
            try:
                pg_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            except Exception as error:  # noqa: BLE001 - report, the bench result still stands
                print(f"warning: could not drop database {db_name}: {error}", file=sys.stderr)


def insert_jobs(url: str, jobs_with_runs: Iterable[tuple[dict, list[dict]]], tenant: str | None = None) -> float:
    """Create the schema (JobStore's migrations) and insert rows of the `jobs` and `runs`
    tables straight into them, a batch of jobs per transaction. Returns the seconds it took."""
    from dataharbour_ext.store import JobStore
    from dataharbour_ext.store.tables import jobs, runs

    start = time.perf_counter()
    store = JobStore(url, tenant=tenant)
    try:
        rows = iter(jobs_with_runs)
        while batch := list(itertools.islice(rows, INSERT_BATCH)):
            with store.engine.begin() as db:
                db.execute(jobs.insert(), [job for job, _ in batch])
                db.execute(runs.insert(), [run for _, job_runs in batch for run in job_runs])
        if store.dialect == "postgresql":
            # What autovacuum does shortly after a bulk load anyway (stats, visibility map).
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
                db.exec_driver_sql("VACUUM ANALYZE jobs")
                db.exec_driver_sql("VACUUM ANALYZE runs")
    finally:
        store.close()
    return time.perf_counter() - start


class BenchServer:
    def __init__(
        self,
        startup_timeout: float = 60.0,
        stop_timeout: float = 20.0,
        extra_args: list[str] | tuple[str, ...] = (),
        extensions: dict[str, bool] | None = None,
        extra_env: dict[str, str] | None = None,
    ):
        """`extra_args` are appended to the `jupyter server` command line (e.g.
        `--DataHarbourApp.db_url=...`), `extensions` are enabled next to dataharbour_ext
        (e.g. `{"loop_probe": True}` with bench/ on PYTHONPATH via `extra_env`)."""
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.extensions = {"dataharbour_ext": True, **(extensions or {})}
        self.extra_env = dict(extra_env or {})
        self.stop_timeout = stop_timeout
        self.tmp = tempfile.mkdtemp(prefix="dataharbour-bench-")
        self.root_dir = os.path.join(self.tmp, "root")
        self.data_dir = os.path.join(self.tmp, "data")
        self.config_dir = os.path.join(self.tmp, "config")
        self.runtime_dir = os.path.join(self.tmp, "runtime")
        self.state_dir = os.path.join(self.data_dir, "dataharbour")  # DataHarbour's store and run folders
        for path in (self.root_dir, self.data_dir, self.config_dir, self.runtime_dir):
            os.makedirs(path)
        self.server_log = os.path.join(self.tmp, "jupyter-server.log")
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.base_url = f"http://{HOST}:{self.port}/"
        self.process: subprocess.Popen | None = None

    # ---- paths ----------------------------------------------------------------------

    def run_dir(self, job_id: str, attempt: int = 1) -> str:
        return os.path.join(self.state_dir, "runs", job_id, str(attempt))

    def log_path(self, job_id: str, attempt: int = 1) -> str:
        return os.path.join(self.run_dir(job_id, attempt), "output.log")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "JUPYTER_DATA_DIR": self.data_dir,
                "JUPYTER_CONFIG_DIR": self.config_dir,
                "JUPYTER_RUNTIME_DIR": self.runtime_dir,
                "SPARK_LOCAL_IP": HOST,
            }
        )
        env.update(self.extra_env)
        return env

    # ---- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> "BenchServer":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        argv = [
            sys.executable, "-m", "jupyter", "server",
            f"--ServerApp.ip={HOST}",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--no-browser",
            "--allow-root",
            # A Python literal: traitlets evaluates dict values with ast.literal_eval, so the
            # JSON spelling `{"dataharbour_ext":true}` is rejected ("expected a dict, not the list").
            "--ServerApp.jpserver_extensions={"
            + ",".join(f"{name!r}:{enabled!r}" for name, enabled in self.extensions.items()) + "}",
            # Jobs are batch (spark-submit) unless a benchmark asks for "mode": "connect" itself.
            "--DataHarbourApp.default_job_mode=batch",
            *self.extra_args,
        ]  # fmt: skip
        with open(self.server_log, "ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=self.tmp,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C goes to the bench, which stops the server itself
            )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"jupyter server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                status, _ = self.request("GET", "api/status", timeout=2)
                if status == 200:
                    break
            except (OSError, BenchError):
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"jupyter server did not answer within {self.startup_timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.2)
        # The extension must be loaded, not just the server.
        status, _ = self.request("GET", "api/v1/jobs/?limit=1")
        if status != 200:
            raise BenchError(f"GET api/v1/jobs/ answered {status}; is dataharbour_ext enabled?\n{self.log_tail()}")

    def stop(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                self._kill_active_jobs()
                self.process.terminate()
                try:
                    self.process.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
            self._kill_leftovers()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _kill_active_jobs(self) -> None:
        try:
            status, body = self.request("GET", "api/v1/jobs/?state=queued,starting,running&limit=1000", timeout=5)
            if status != 200:
                return
            for job in body["jobs"]:
                self.request("POST", f"api/v1/jobs/{job['id']}/kill", timeout=30)
        except (OSError, BenchError, KeyError, ValueError):
            pass

    def _kill_leftovers(self) -> None:
        """Kill process groups still running something from our temporary folder."""
        me = os.getpgid(0)
        pgids = set()
        for process in psutil.process_iter(["cmdline"]):
            try:
                if any(self.tmp in arg for arg in process.info["cmdline"] or ()):
                    pgid = os.getpgid(process.pid)
                    if pgid != me:
                        pgids.add(pgid)
            except (OSError, psutil.Error):
                continue
        for pgid in pgids:
            print(f"warning: killing leftover process group {pgid}", file=sys.stderr)
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.server_log, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode("utf-8", errors="replace")
        except OSError:
            return ""

    # ---- HTTP -----------------------------------------------------------------------

    def request(self, method: str, path: str, body=None, timeout: float = 30) -> tuple[int, dict | None]:
        """One API call; returns (status, parsed JSON body or None). HTTP errors are returned, not raised."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Authorization", f"token {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, {"raw": raw.decode("utf-8", errors="replace")}

    def submit(self, name: str, code: str) -> dict:
        status, job = self.request("POST", "api/v1/jobs/", {"name": name, "code": code})
        if status != 202:
            raise BenchError(f"POST api/v1/jobs/ answered {status}: {job}")
        return job

    def wait_terminal(self, job_id: str, timeout: float, interval: float = 0.05) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status, job = self.request("GET", f"api/v1/jobs/{job_id}")
            if status != 200:
                raise BenchError(f"GET api/v1/jobs/{job_id} answered {status}: {job}")
            if job["state"] in TERMINAL_STATES:
                return job
            if time.monotonic() > deadline:
                raise BenchError(f"job {job_id} still {job['state']} after {timeout:.0f}s")
            time.sleep(interval)

    def require_success(self, job: dict) -> None:
        if job["state"] != "succeeded":
            _, page = self.request("GET", f"api/v1/jobs/{job['id']}/logs?tail=30")
            lines = "\n".join((page or {}).get("lines", []))
            raise BenchError(f"job {job['id']} {job['state']} (exit {job.get('exit_code')}): {job.get('error')}\n{lines}")
