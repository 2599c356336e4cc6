"""Kernels started by the server get SPARK_REMOTE: `SparkSession.builder.getOrCreate()` in a
notebook is a Spark Connect session on the default cluster's warm server, started by the
kernel's first connection, with no JVM in the kernel. A real kernel, a real Connect server."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

from dataharbour_ext.models import DEFAULT_CLUSTER_ID
from dataharbour_ext.services.kernel_spark_remote import connected_to

CONFIG = {"connect_idle_timeout": 0, "warm_pool_size": 0}

SESSION_CODE = """
import time
from pyspark.sql import SparkSession
started = time.monotonic()
spark = SparkSession.builder.getOrCreate()
print("SESSION", type(spark).__module__, spark.range(5).count())
"""


async def _run(client, code: str, timeout: float = 240) -> str:
    """The cell's stdout; AssertionError with the traceback if it raised."""
    out, errors = [], []

    def output(message):
        content = message["content"]
        if message["msg_type"] == "stream":
            out.append(content["text"])
        elif message["msg_type"] == "error":
            errors.append("\n".join(content["traceback"]))

    reply = await client.execute_interactive(code, timeout=timeout, output_hook=output)
    assert reply["content"]["status"] == "ok" and not errors, "\n".join(errors)
    return "".join(out)


async def _until(predicate, timeout: float = 30, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def _java_processes_of(pid: int) -> list[str]:
    try:
        return [p.name() for p in psutil.Process(pid).children(recursive=True) if "java" in p.name()]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.timeout(600)
@pytest.mark.parametrize("dataharbour_config", [CONFIG])
async def test_a_notebook_kernel_gets_a_session_on_the_warm_server(api, extension, jp_fetch):
    servers, pinned = extension.connect_servers, extension.kernel_spark
    port = pinned.port
    assert servers.status(DEFAULT_CLUSTER_ID).state == "stopped"  # no JVM before a kernel uses Spark
    assert pinned.listening  # its port is held for it

    # A notebook's kernel, started as JupyterLab starts it (a session).
    response = await jp_fetch("api", "sessions", method="POST", body=json.dumps(
        {"path": "spark.ipynb", "name": "spark.ipynb", "type": "notebook", "kernel": {"name": "python3"}}))
    session = json.loads(response.body)
    kernel = extension.serverapp.kernel_manager.get_kernel(session["kernel"]["id"])
    client = kernel.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        remote = await _run(client, "import os; print(os.environ['SPARK_REMOTE'])")
        assert remote.strip() == pinned.variables()["SPARK_REMOTE"]
        assert remote.startswith(f"sc://localhost:{port}/;token=")

        # Its first connection starts the server; the session is a Spark Connect one.
        out = await _run(client, SESSION_CODE)
        assert "SESSION pyspark.sql.connect.session 5" in out, out
        assert servers.status(DEFAULT_CLUSTER_ID).state == "ready"
        assert servers.status(DEFAULT_CLUSTER_ID).port == port
        assert _java_processes_of(kernel.provisioner.pid) == []  # the JVM is the server's, not the kernel's
        assert await asyncio.to_thread(connected_to, [kernel.provisioner.pid], port)  # in use: no idle stop

        # Stopped (as the idle stop does), the server starts again on the next connection,
        # on the same endpoint: a process with the kernels' environment gets a session.
        await servers.stop_server(DEFAULT_CLUSTER_ID, "stopped by the test")
        await _until(lambda: pinned.listening, what="the port listened on again")
        env = {**os.environ, "SPARK_REMOTE": remote.strip(), "SPARK_LOCAL_IP": "127.0.0.1"}
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", SESSION_CODE], env=env,
                                       capture_output=True, text=True, timeout=300)
        assert "SESSION pyspark.sql.connect.session 5" in done.stdout, done.stderr[-3000:]
        assert servers.status(DEFAULT_CLUSTER_ID).state == "ready"
        assert servers.status(DEFAULT_CLUSTER_ID).port == port
    finally:
        client.stop_channels()
        await jp_fetch("api", "sessions", session["id"], method="DELETE")

    # A kernel started alone (POST /api/kernels) gets it too.
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    alone = extension.serverapp.kernel_manager.get_kernel(json.loads(response.body)["id"])
    client = alone.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        assert (await _run(client, "import os; print(os.environ['SPARK_REMOTE'])")).strip() == remote.strip()
    finally:
        client.stop_channels()
        await jp_fetch("api", "kernels", alone.kernel_id, method="DELETE")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("dataharbour_config", [{**CONFIG, "connect_start_at_startup": True}])
async def test_a_server_started_at_start_up_listens_where_kernels_look(api, extension):
    servers, pinned = extension.connect_servers, extension.kernel_spark
    await _until(lambda: servers.status(DEFAULT_CLUSTER_ID).state in ("ready", "failed"), timeout=300,
                 what="the Connect server started at start-up")
    assert servers.status(DEFAULT_CLUSTER_ID).state == "ready", servers.status(DEFAULT_CLUSTER_ID)
    assert servers.status(DEFAULT_CLUSTER_ID).port == pinned.port and not pinned.listening
    env = {**os.environ, **pinned.variables(), "SPARK_LOCAL_IP": "127.0.0.1"}
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", SESSION_CODE], env=env,
                                   capture_output=True, text=True, timeout=300)
    assert "SESSION pyspark.sql.connect.session 5" in done.stdout, done.stderr[-3000:]


async def test_a_taken_port_gets_kernels_a_new_port_and_token(api, extension):
    pinned = extension.kernel_spark
    before = pinned.variables()["SPARK_REMOTE"]
    pinned._listener.close()  # as when the server binds it; then another process takes it meanwhile
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", pinned.port))
        squatter.listen()
        taken = pinned.port
        pinned._server_changed(DEFAULT_CLUSTER_ID)  # the server is stopped: the port is wanted back
        await _until(lambda: pinned.listening, what="a new port held")
    after = pinned.variables()["SPARK_REMOTE"]
    assert pinned.port != taken and after.split(";token=")[1] != before.split(";token=")[1]
    assert extension.connect_servers._pinned[DEFAULT_CLUSTER_ID] == (pinned.port, after.split(";token=")[1])


@pytest.mark.parametrize("dataharbour_config", [{"kernel_spark_remote": False}])
async def test_kernels_get_nothing_when_turned_off(api, extension):
    assert getattr(extension, "kernel_spark", None) is None
    assert "SPARK_REMOTE" not in extension.kernel_environment.variables()  # the API's address still goes


@pytest.fixture
def inherited_spark_remote(monkeypatch):
    """SPARK_REMOTE in the environment the server starts in (requested before the server)."""
    monkeypatch.setenv("SPARK_REMOTE", "sc://elsewhere.example:15002")


@pytest.mark.timeout(300)
async def test_an_inherited_spark_remote_reaches_no_spark_run_but_kernels_get_ours(inherited_spark_remote, api,
                                                                                   extension):
    assert "SPARK_REMOTE" not in os.environ  # every run, daemon and Connect server inherits os.environ
    assert extension.kernel_environment.variables()["SPARK_REMOTE"] == extension.kernel_spark.variables()["SPARK_REMOTE"]
    job = await api.submit(name="batch", code="from pyspark.sql import SparkSession\n"
                                               "print('N', SparkSession.builder.getOrCreate().range(3).count())\n")
    done = await api.wait(job["id"])
    assert done["state"] == "succeeded" and "N 3" in await api.full_log(job["id"]), done


@pytest.mark.parametrize("dataharbour_config", [{"kernel_spark_remote": False}])
async def test_with_ours_off_kernels_get_the_inherited_spark_remote(inherited_spark_remote, api, extension):
    assert "SPARK_REMOTE" not in os.environ
    assert extension.kernel_environment.variables()["SPARK_REMOTE"] == "sc://elsewhere.example:15002"
