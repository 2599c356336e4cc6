"""Runs outlive the Jupyter server: SIGKILL it mid-job, start it again, jobs end truthfully."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from dataharbour_ext.spark import process_group

SLOW_SPARK_JOB = """
import time
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("started", spark.range(10).count(), flush=True)
time.sleep({sleep})
print("finished after the restart", flush=True)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A real `jupyter server` process with the extension, on loopback."""

    def __init__(self, base: str):
        self.base = base
        self.token = uuid.uuid4().hex
        self.port = _free_port()
        self.process: subprocess.Popen | None = None
        os.makedirs(os.path.join(base, "root"), exist_ok=True)

    def start(self) -> None:
        env = dict(os.environ)
        env.update(
            JUPYTER_DATA_DIR=os.path.join(self.base, "data"),
            JUPYTER_CONFIG_DIR=os.path.join(self.base, "config"),
            JUPYTER_RUNTIME_DIR=os.path.join(self.base, "runtime"),
        )
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "jupyter", "server", "--no-browser", "--allow-root",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.base}/root",
                "--ServerApp.jpserver_extensions=dataharbour_ext=True",
            ],
            env=env,
            stdout=open(os.path.join(self.base, "server.log"), "ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.request("GET", "/api/v1/jobs/")
                return
            except (urllib.error.URLError, ConnectionError):
                assert self.process.poll() is None, "server exited during start-up"
                time.sleep(0.2)
        raise AssertionError("server did not start")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def wait(self, job_id: str, states: set[str], timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.request("GET", f"/api/v1/jobs/{job_id}")
            if job["state"] in states:
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} still {job['state']}")


@pytest.fixture
def server(tmp_path):
    server = ServerProcess(str(tmp_path))
    yield server
    server.kill()


def test_jobs_survive_a_server_sigkill(server, tmp_path):
    server.start()
    # `short` ends while the server is down, `long` is still running when it comes back,
    # `vanishing` loses its processes while nobody watches.
    short = server.request("POST", "/api/v1/jobs/", {"name": "short", "code": SLOW_SPARK_JOB.format(sleep=1)})
    long = server.request("POST", "/api/v1/jobs/", {"name": "long", "code": SLOW_SPARK_JOB.format(sleep=25)})
    vanishing = server.request("POST", "/api/v1/jobs/", {"name": "gone", "code": "import time\ntime.sleep(600)\n"})
    server.wait(long["id"], {"running"})
    server.wait(short["id"], {"running"})

    server.kill()
    runs = os.path.join(str(tmp_path), "data", "dataharbour", "runs")
    with open(os.path.join(runs, vanishing["id"], "1", "command.json")) as f:
        assert json.load(f)["argv"]  # the run folder is where the design says
    vanishing_pid = _supervisor_pid(tmp_path, vanishing["id"])
    os.killpg(vanishing_pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(runs, short["id"], "1", "exit.json")) and time.monotonic() < deadline:
        time.sleep(0.2)  # `short` ends with the server down
    assert os.path.exists(os.path.join(runs, short["id"], "1", "exit.json"))

    server.start()
    assert server.request("GET", f"/api/v1/jobs/{short['id']}")["state"] == "succeeded"
    lost = server.request("GET", f"/api/v1/jobs/{vanishing['id']}")
    assert lost["state"] == "lost" and "vanished" in lost["error"]
    assert server.request("GET", f"/api/v1/jobs/{long['id']}")["state"] == "running"  # re-attached

    done = server.wait(long["id"], {"succeeded", "failed", "killed", "lost"}, timeout=120)
    assert done["state"] == "succeeded" and done["exit_code"] == 0
    log = server.request("GET", f"/api/v1/jobs/{long['id']}/logs?limit=100000")
    text = "\n".join(log["lines"])
    assert "started 10" in text and "finished after the restart" in text and log["complete"]
    short_log = server.request("GET", f"/api/v1/jobs/{short['id']}/logs?limit=100000")
    assert "finished after the restart" in "\n".join(short_log["lines"])


def _supervisor_pid(tmp_path, job_id: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path}/data/dataharbour/dataharbour.db")
    with engine.connect() as connection:
        pid = connection.execute(text("select pid from runs where job_id = :j"), {"j": job_id}).scalar_one()
    engine.dispose()
    assert process_group.members(pid)
    return pid
