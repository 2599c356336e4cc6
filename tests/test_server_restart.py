"""Runs outlive the Jupyter server: SIGKILL it mid-job, start it again, jobs end truthfully.
On SQLite and on PostgreSQL."""

import json
import os
import time

import psutil
import pytest
from server_process import TERMINAL, ServerProcess, stop_runs_under

# Waits for a gate file in the Jupyter root (the job's working directory), so the test, not
# the clock, decides when it ends.
GATED_SPARK_JOB = """
import os, time
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("started", spark.range(10).count(), flush=True)
for _ in range(3000):
    if os.path.exists({gate!r}):
        break
    time.sleep(0.1)
print("finished after the restart", flush=True)
"""


@pytest.fixture
def server(tmp_path, store_url):
    server = ServerProcess(str(tmp_path), db_url=store_url)
    yield server
    server.kill()
    stop_runs_under(str(tmp_path))  # runs outlive their server by design


def _kill_run_tree(run_dir: str) -> None:
    """What an OOM killer would do: the supervisor and everything below it die at once."""
    with open(os.path.join(run_dir, "supervisor.json")) as f:
        pid = json.load(f)["pid"]
    supervisor = psutil.Process(pid)
    below = supervisor.children(recursive=True)
    # The supervisor first: were its program killed before it, it would record that end.
    for process in [supervisor, *below]:
        try:
            process.kill()
        except psutil.Error:
            pass


def test_jobs_survive_a_server_sigkill(server, tmp_path):
    server.start()
    # `short` ends while the server is down, `long` is still running when it comes back,
    # `vanishing` loses its processes while nobody watches.
    short = server.request("POST", "/api/v1/jobs/", {"name": "short", "code": GATED_SPARK_JOB.format(gate="short.go")})
    long = server.request("POST", "/api/v1/jobs/", {"name": "long", "code": GATED_SPARK_JOB.format(gate="long.go")})
    vanishing = server.request("POST", "/api/v1/jobs/", {"name": "gone", "code": "import time\ntime.sleep(600)\n"})
    server.wait(long["id"], {"running"})
    server.wait_for_line(long["id"], "started 10")  # `running` comes when the context is up, before the count
    server.wait(short["id"], {"running"})
    server.wait(vanishing["id"], {"starting", "running"})

    server.kill()
    runs = os.path.join(str(tmp_path), "data", "dataharbour", "runs")
    with open(os.path.join(runs, vanishing["id"], "1", "command.json")) as f:
        command = json.load(f)
    assert command["argv"] and "PATH" not in command["env"]  # the server's environment stays off disk
    _kill_run_tree(os.path.join(runs, vanishing["id"], "1"))
    open(os.path.join(server.root, "short.go"), "w").close()
    exit_file = os.path.join(runs, short["id"], "1", "exit.json")
    deadline = time.monotonic() + 60
    while not os.path.exists(exit_file) and time.monotonic() < deadline:
        time.sleep(0.2)  # `short` ends with the server down
    assert os.path.exists(exit_file)

    server.start()
    assert server.request("GET", f"/api/v1/jobs/{short['id']}")["state"] == "succeeded"
    lost = server.request("GET", f"/api/v1/jobs/{vanishing['id']}")
    assert lost["state"] == "lost" and "vanished" in lost["error"]
    assert server.request("GET", f"/api/v1/jobs/{long['id']}")["state"] == "running"  # re-attached

    log = server.request("GET", f"/api/v1/jobs/{long['id']}/logs?limit=100000")
    assert "started 10" in "\n".join(log["lines"]) and not log["complete"]
    open(os.path.join(server.root, "long.go"), "w").close()
    done = server.wait(long["id"], TERMINAL, timeout=120)
    assert done["state"] == "succeeded" and done["exit_code"] == 0
    log = server.request("GET", f"/api/v1/jobs/{long['id']}/logs?limit=100000")
    text = "\n".join(log["lines"])
    assert "started 10" in text and "finished after the restart" in text and log["complete"]
    short_log = server.request("GET", f"/api/v1/jobs/{short['id']}/logs?limit=100000")
    assert "finished after the restart" in "\n".join(short_log["lines"])
    with open(os.path.join(str(tmp_path), "server.log")) as f:
        server_log = f.read()
    # The service's own lines reach the server log.
    assert f"DataHarbour: job {long['id']} attempt 1 started" in server_log
    assert f"DataHarbour: re-attached to job {long['id']} attempt 1" in server_log
    assert f"DataHarbour: job {long['id']} attempt 1 succeeded" in server_log


GATED_NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "id": "wait", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "import os, time\nprint('waiting', flush=True)\nfor _ in range(3000):\n"
                   "    if os.path.exists('nb.go'):\n        break\n    time.sleep(0.1)"},
        {"cell_type": "code", "id": "after", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "print('after the restart')"},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def test_a_clean_server_stop_leaves_runs_going(server):
    with open(os.path.join(server.root, "gated.ipynb"), "w") as f:
        json.dump(GATED_NOTEBOOK, f)
    server.start()
    job = server.request("POST", "/api/v1/jobs/", {"name": "outlives", "code": GATED_SPARK_JOB.format(gate="x.go")})
    notebook = server.request("POST", "/api/v1/jobs/", {"name": "notebook", "notebook": "gated.ipynb"})
    server.wait(job["id"], {"running"})
    server.wait_for_line(notebook["id"], "waiting")
    server.stop()
    server.start()
    assert server.request("GET", f"/api/v1/jobs/{job['id']}")["state"] == "running"
    killed = server.request("POST", f"/api/v1/jobs/{job['id']}/kill")
    assert killed["state"] == "killed"
    # A notebook job too: re-attached, it goes on to its end, its output complete.
    assert server.request("GET", f"/api/v1/jobs/{notebook['id']}")["state"] == "running"
    open(os.path.join(server.root, "nb.go"), "w").close()
    done = server.wait(notebook["id"], TERMINAL, timeout=120)
    assert done["state"] == "succeeded" and done["progress"]["cells"]["done"] == 2, done
    executed = server.request("GET", f"/api/v1/jobs/{notebook['id']}/output")
    assert "".join(executed["cells"][1]["outputs"][0]["text"]) == "after the restart\n"


def test_a_run_launched_but_never_released_is_queued_again(tmp_path, store_url):
    """The server dies between starting a supervisor and recording it: the supervisor never
    runs the program, and the next server start runs the job exactly once."""
    from dataharbour_ext.runs import folder, process

    run_dir = tmp_path / "run"
    folder.create(run_dir)
    folder.write_command(run_dir, ["sh", "-c", "echo ran >> ran.txt"], {}, str(tmp_path))
    supervised = process.launch(str(run_dir), held=True)
    supervised.abandon()  # as if the server died here
    deadline = time.monotonic() + 30
    while folder.read_exit_status(run_dir) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    status = folder.read_exit_status(run_dir)
    assert status is not None and status["released"] is False
    assert not (tmp_path / "ran.txt").exists()
    supervised.reap()

