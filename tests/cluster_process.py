"""Calls to a real server process's clusters API, for the tests that launch real standalone
clusters (tests/server_process.py starts the server)."""

import json
import os
import time
import urllib.error
import urllib.request

import psutil
import websocket
from server_process import ServerProcess

from dataharbour_ext.runs import folder
from dataharbour_ext.runs.identity import ProcessIdentity
from dataharbour_ext.runs.process import Supervised

TERMINAL = {"succeeded", "failed", "killed", "lost"}


def call(server: ServerProcess, method: str, path: str, body: dict | None = None,
         timeout: float = 60) -> tuple[int, dict | str | None]:
    """(status, parsed JSON or text); HTTP errors are returned, not raised."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/api/v1/{path}", data=data, method=method,
                                     headers={"Authorization": f"token {server.token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, kind = response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        status, raw, kind = error.code, error.read(), error.headers.get("Content-Type", "")
    if not raw:
        return status, None
    return status, json.loads(raw) if kind.startswith("application/json") else raw.decode("utf-8", "replace")


def wait_cluster(server: ServerProcess, cluster_id: str, states: set[str], timeout: float = 240) -> dict | None:
    """The cluster once it is in one of `states` (None once gone, if "gone" is one of them)."""
    deadline = time.monotonic() + timeout
    while True:
        status, cluster = call(server, "GET", f"clusters/{cluster_id}")
        if status == 404 and "gone" in states:
            return None
        assert status == 200, cluster
        if cluster["state"] in states:
            return cluster
        assert time.monotonic() < deadline, f"cluster {cluster_id} still {cluster['state']}: {cluster['reason']}"
        time.sleep(0.2)


def wait_workers(server: ServerProcess, cluster_id: str, states: list[str], timeout: float = 60) -> dict:
    """The running cluster once its workers (as its master reports them) are in `states`: a
    master status read that timed out on a busy machine shows none until the next read."""
    deadline = time.monotonic() + timeout
    while True:
        cluster = wait_cluster(server, cluster_id, {"running"}, timeout=max(1.0, deadline - time.monotonic()))
        if [worker["state"] for worker in cluster["workers"]] == states:
            return cluster
        assert time.monotonic() < deadline, f"cluster {cluster_id} workers {cluster['workers']}: {cluster['reason']}"
        time.sleep(0.2)


def wait_job(server: ServerProcess, job_id: str, states: set[str], timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, job = call(server, "GET", f"jobs/{job_id}")
        assert status == 200, job
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']}"
        time.sleep(0.2)


def job_log(server: ServerProcess, job_id: str) -> str:
    _, page = call(server, "GET", f"jobs/{job_id}/logs?limit=100000")
    return "\n".join(page["lines"])


def wait_for_line(server: ServerProcess, job_id: str, prefix: str, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for line in job_log(server, job_id).splitlines():
            if line.startswith(prefix):
                return line
        job = call(server, "GET", f"jobs/{job_id}")[1]
        assert job["state"] not in TERMINAL, f"job {job_id} {job['state']} without printing {prefix!r}: {job['error']}"
        assert time.monotonic() < deadline, f"job {job_id} never printed {prefix!r}"
        time.sleep(0.3)


def cluster_dir(server: ServerProcess, cluster_id: str) -> str:
    return os.path.join(server.base, "data", "dataharbour", "clusters", cluster_id)


def daemon_processes(server: ServerProcess, cluster_id: str) -> dict[str, list[psutil.Process]]:
    """Each daemon's supervisor and the processes below it (the JVM, a worker's executors)."""
    found = {}
    directory = cluster_dir(server, cluster_id)
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name, "supervisor.json")) as f:
            supervisor = psutil.Process(json.load(f)["pid"])
        found[name] = [supervisor, *supervisor.children(recursive=True)]
    return found


def still_running(processes) -> list[psutil.Process]:
    """Those of `processes` that still run (the same process: psutil compares start times)."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    return alive


def daemon_supervisors(server: ServerProcess) -> dict[str, ProcessIdentity]:
    """The supervisor identity of every daemon of every cluster the server launched, from
    their run folders' supervisor.json ("<cluster id>/<daemon>": identity)."""
    root = os.path.join(server.base, "data", "dataharbour", "clusters")
    found = {}
    for cluster_id in sorted(os.listdir(root)) if os.path.isdir(root) else ():
        for name in sorted(os.listdir(os.path.join(root, cluster_id))):
            identity = folder.read_supervisor(os.path.join(root, cluster_id, name))
            if identity is not None:
                found[f"{cluster_id}/{name}"] = identity
    return found


def stop_cluster_daemons(server: ServerProcess) -> int:
    """Teardown: kill whatever still runs of the daemons the server launched, each tree by
    its supervisor's identity (so no other process is touched). How many were killed."""
    killed = 0
    for identity in daemon_supervisors(server).values():
        supervised = Supervised.attach(identity)
        if supervised is not None:
            killed += supervised.force_stop()
    return killed


class Stream:
    """The live stream of a server process, subscribed to `clusters`."""

    def __init__(self, server: ServerProcess, client_id: str):
        self.connection = websocket.create_connection(
            f"ws://127.0.0.1:{server.port}/api/v1/ws/{client_id}", timeout=240,
            header=[f"Authorization: token {server.token}"])
        assert self.next()["type"] == "welcome"
        self.connection.send(json.dumps({"type": "subscribe", "topics": ["clusters"]}))
        assert "clusters" in self.until(lambda m: m["type"] == "subscribed")["data"]["topics"]

    def next(self) -> dict:
        return json.loads(self.connection.recv())

    def until(self, predicate, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.next()
            if predicate(message):
                return message
        raise AssertionError("no such message")

    def close(self) -> None:
        self.connection.close()
