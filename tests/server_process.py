"""A real `jupyter server` process with the extension, on loopback, for tests that kill
and restart servers or run two of them on one store."""

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

TERMINAL = {"succeeded", "failed", "killed", "lost"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A real `jupyter server` (or, with `lab=True`, `jupyter lab`) process with the
    extension, on loopback."""

    def __init__(self, base: str, *, db_url: str | None = None, root: str | None = None,
                 extra_args: tuple[str, ...] = (), lab: bool = False, env: dict[str, str | None] | None = None):
        self.base = base
        self.env = env or {}  # added to (or, for None values, removed from) the test's environment
        self.lab = lab
        self.db_url = db_url
        self.root = root or os.path.join(base, "root")
        self.extra_args = extra_args
        self.token = uuid.uuid4().hex
        self.port = _free_port()
        self.process: subprocess.Popen | None = None
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(self.base, exist_ok=True)

    def start(self) -> None:
        env = dict(os.environ)
        env.update(
            JUPYTER_DATA_DIR=os.path.join(self.base, "data"),
            JUPYTER_CONFIG_DIR=os.path.join(self.base, "config"),
            JUPYTER_RUNTIME_DIR=os.path.join(self.base, "runtime"),
            # JupyterLab's workspaces and user settings: the test's own, not the machine's.
            JUPYTERLAB_WORKSPACES_DIR=os.path.join(self.base, "lab-workspaces"),
            JUPYTERLAB_SETTINGS_DIR=os.path.join(self.base, "lab-settings"),
            SPARK_LOCAL_IP="127.0.0.1",
        )
        for name, value in self.env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "jupyter", "lab" if self.lab else "server", "--no-browser", "--allow-root",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                "--ServerApp.jpserver_extensions=dataharbour_ext=True",
                "--DataHarbourApp.class_data_sharing=False",
                "--DataHarbourApp.default_job_mode=batch",  # the warm path's tests ask for connect
                *([f"--DataHarbourApp.db_url={self.db_url}"] if self.db_url else []),
                *self.extra_args,
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
                if self.process.poll() is not None:
                    raise AssertionError(f"server exited during start-up; see {self.base}/server.log") from None
                time.sleep(0.2)
        self.kill()  # a server that did not come up is not left running
        raise AssertionError(f"server did not start within 60 s; see {self.base}/server.log")

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

    def wait_for_line(self, job_id: str, text: str, timeout: float = 120) -> None:
        """Until the job's log holds a line containing `text`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.request("GET", f"/api/v1/jobs/{job_id}/logs?limit=100000")
            if any(text in line for line in log["lines"]):
                return
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} never printed {text!r}")


    def stop(self) -> None:
        """A clean shutdown (SIGTERM), as `jupyter server stop` would."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)


def stop_runs_under(folder: str) -> None:
    """SIGKILL every process whose command line names `folder` (the runs of a test's servers)."""
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        try:
            if process.pid != os.getpid() and any(folder in part for part in process.info["cmdline"] or ()):
                process.kill()
        except psutil.Error:
            continue
