"""Shared fixtures: a Jupyter server with the extension, an API client, process hygiene."""

import asyncio
import json
import os
import signal
import time

import psutil
import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]

TERMINAL = {"succeeded", "failed", "killed", "lost"}


@pytest.fixture
def dataharbour_config():
    """Per-test overrides of DataHarbourApp traits: `@pytest.mark.parametrize("dataharbour_config", [{...}])`."""
    return {}


@pytest.fixture
def jp_server_config(dataharbour_config):
    return {
        "ServerApp": {
            # pytest-jupyter adds the terminals extension unless told; it registers an
            # undecorated route, which would trip the auth-warning check for no reason of ours.
            "jpserver_extensions": {"dataharbour_ext": True, "jupyter_server_fileid": True,
                                    "jupyter_server_terminals": False},
            "allow_unauthenticated_access": False,
        },
        # Each test server its own file ids: the File ID service's default database is one file
        # per Jupyter data dir, fixed when its module is first imported.
        "BaseFileIdManager": {"db_path": ":memory:"},
        # The class-data archive has tests of its own; a build per test server would only
        # compete with the tests for the two cores.
        # No background metrics either: its `metrics` messages (a default topic) would interleave with
        # the messages the live-stream tests count; the metrics tests turn it on.
        # Jobs run batch unless a test asks for connect: the warm path's tests start its servers.
        "DataHarbourApp": {"kill_grace_seconds": 5.0, "class_data_sharing": False, "metrics_interval": 0.0,
                           "default_job_mode": "batch", **dataharbour_config},
    }


@pytest.fixture
def extension(jp_serverapp, jp_asyncio_loop):
    """The running DataHarbourApp (its services, store and config).

    pytest-jupyter never runs the server's post-start hook, so start extensions as
    `jupyter server` does once its loop runs.
    """
    jp_asyncio_loop.run_until_complete(jp_serverapp.extension_manager.start_all_extensions())
    return jp_serverapp.extension_manager.extension_points["dataharbour_ext"].app


class Api:
    """JSON calls against the test server; never raises on HTTP errors."""

    def __init__(self, fetch):
        self.fetch = fetch

    async def call(self, method, path, body=None, params=None, raw_body=None, **fetch_options):
        kwargs = {"method": method, "params": params or {}, "raise_error": False, **fetch_options}
        if method in ("POST", "PUT"):
            kwargs["body"] = raw_body if raw_body is not None else json.dumps(body if body is not None else {})
        response = await self.fetch("api", "v1", path, **kwargs)
        text = response.body.decode() if response.body else ""
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = text
        return response.code, data

    async def submit(self, **body):
        status, job = await self.call("POST", "jobs/", body)
        assert status == 202, job
        return job

    async def job(self, job_id):
        status, job = await self.call("GET", f"jobs/{job_id}")
        assert status == 200, job
        return job

    async def wait(self, job_id, states=TERMINAL, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = await self.job(job_id)
            if job["state"] in states:
                return job
            await asyncio.sleep(0.2)
        raise AssertionError(f"job {job_id} still {job['state']} after {timeout}s")

    async def logs(self, job_id, **params):
        status, page = await self.call("GET", f"jobs/{job_id}/logs", params=params)
        assert status == 200, page
        return page

    async def full_log(self, job_id, attempt=None):
        params = {"limit": 100000}
        if attempt:
            params["attempt"] = attempt
        return "\n".join((await self.logs(job_id, **params))["lines"])


@pytest.fixture
def api(jp_fetch, extension, jp_asyncio_loop):
    yield Api(jp_fetch)
    # Runs are detached by design and outlive the server: stop what this test started.
    jp_asyncio_loop.run_until_complete(extension.jobs.kill_all())
    extension.class_data.stop()


def _run_processes(marker: str) -> list[psutil.Process]:
    """Processes whose command line mentions `marker` (the test session's temp root)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue  # dead already; an orphan waits for pid 1 to collect it
            if any(marker in part for part in process.info["cmdline"] or ()):
                found.append(process)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def supervisors():
    """Every run supervisor a test starts itself; whatever still runs at the end is force-stopped."""
    started = []
    yield started
    for supervised in started:
        if supervised.alive():
            supervised.force_stop()
        supervised.reap()
        supervised.close()


@pytest.fixture(scope="session", autouse=True)
def no_leftover_processes(tmp_path_factory):
    """After the session, nothing started under the session's temp dirs may still run.

    Every run's command line contains its run folder (under the session's temp root), so
    this finds exactly what the tests started and stops it, then fails loudly if any was left.
    """
    root = str(tmp_path_factory.getbasetemp())
    yield
    leftovers = [p for p in _run_processes(root) if p.pid != os.getpid()]
    for process in leftovers:
        try:
            os.killpg(process.pid, signal.SIGKILL) if os.getpgid(process.pid) == process.pid else process.kill()
        except (OSError, psutil.Error):
            pass
    assert not leftovers, f"tests left processes running: {[p.pid for p in leftovers]}"


# ---- stores: SQLite (embedded default) and PostgreSQL (the machine's server) ------------

POSTGRES_ADMIN_URL = os.environ.get("DATAHARBOUR_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def postgres_database():
    """A fresh PostgreSQL database for this test session, dropped at its end."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"dataharbour_test_{os.getpid()}_{int(time.time())}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _empty_postgres(url: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS runs, jobs, admission, metric_samples, clusters, alembic_version "
                                "CASCADE"))
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The URL of an empty store, once on each database the product supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return _empty_postgres(request.getfixturevalue("postgres_database"))


# ---- the live stream over a real websocket ---------------------------------------------


class WsClient:
    """A client of the live stream (api/v1/ws) that reads messages with a deadline."""

    def __init__(self, connection):
        self.connection = connection
        self.received: list[dict] = []

    async def next(self, timeout: float = 60.0) -> dict:
        text = await asyncio.wait_for(self.connection.read_message(), timeout)
        assert text is not None, "the server closed the stream"
        message = json.loads(text)
        self.received.append(message)
        return message

    async def until(self, predicate, timeout: float = 180.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = await self.next(max(0.1, deadline - time.monotonic()))
            if predicate(message):
                return message

    async def send(self, message) -> None:
        await self.connection.write_message(message if isinstance(message, str) else json.dumps(message))

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def stream(jp_ws_fetch, api):
    """`await stream(client_id, **query)`: a connected WsClient, closed after the test."""
    opened: list[WsClient] = []

    async def connect(client_id="client-123", *parts, **params) -> WsClient:
        path = parts or ("api", "v1", "ws")
        client = WsClient(await jp_ws_fetch(*path, client_id, params=params))
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()
