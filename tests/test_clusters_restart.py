"""A launched cluster outlives its server: re-attached after a restart, `stopped` when its
daemons died while the server was down; every change is a message on the `clusters` topic."""

import time

import psutil
import pytest
from cluster_process import (
    TERMINAL,
    Stream,
    call,
    daemon_processes,
    daemon_supervisors,
    job_log,
    still_running,
    stop_cluster_daemons,
    wait_cluster,
    wait_job,
)
from server_process import ServerProcess, stop_runs_under

SUM_JOB = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("SUM", spark.sparkContext.parallelize(range(100), 4).sum(), flush=True)
"""


@pytest.fixture
def server(tmp_path):
    server = ServerProcess(str(tmp_path))
    yield server
    server.kill()
    stop_cluster_daemons(server)  # by the supervisors' identities
    stop_runs_under(str(tmp_path))  # last resort, for a job run that outlived its server


def _cluster_messages(stream: Stream, cluster_id: str, until_state: str) -> list[dict]:
    seen = []
    while not seen or seen[-1]["state"] != until_state:
        message = stream.until(lambda m: m["type"] == "cluster_update" and m["data"]["id"] == cluster_id)
        seen.append(message["data"])
    return seen


@pytest.mark.timeout(600)
def test_a_cluster_outlives_a_restart_and_is_stopped_if_its_daemons_died_meanwhile(server):
    server.start()
    stream = Stream(server, "clusters-watcher")
    status, cluster = call(server, "POST", "clusters/", {"name": "survivor", "kind": "standalone", "workers": 1,
                                                         "cores_per_worker": 1, "memory_per_worker": "512m"})
    assert status == 202, cluster
    cluster_id = cluster["id"]
    # A job for a cluster still starting waits queued until the cluster runs.
    status, job = call(server, "POST", "jobs/", {"name": "early", "cluster_id": cluster_id, "code": SUM_JOB})
    assert status == 202 and call(server, "GET", f"jobs/{job['id']}")[1]["state"] == "queued"
    updates = _cluster_messages(stream, cluster_id, "running")
    assert [update["state"] for update in updates] == ["starting", "running"], updates
    assert [w["state"] for w in updates[-1]["workers"]] == ["ALIVE"] and updates[-1]["cores_total"] == 1
    stream.close()
    done = wait_job(server, job["id"], TERMINAL)
    assert done["state"] == "succeeded" and "SUM 4950" in job_log(server, job["id"]), done

    processes = daemon_processes(server, cluster_id)
    server.stop()  # a clean stop leaves launched clusters running
    supervisors = [tree[0] for tree in processes.values()]
    assert still_running(supervisors) == supervisors
    server.start()
    status, again = call(server, "GET", f"clusters/{cluster_id}")
    assert status == 200 and again["state"] == "running", again
    assert [w["state"] for w in again["workers"]] == ["ALIVE"]
    with open(f"{server.base}/server.log") as f:
        assert f"DataHarbour: re-attached to cluster {cluster_id} (2 daemons)" in f.read()

    server.kill()
    everything = [p for tree in processes.values() for p in tree]
    for process in everything:  # what an OOM killer would do, supervisors first
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass  # an executor of the finished job, gone meanwhile
    deadline = time.monotonic() + 30
    while still_running(everything) and time.monotonic() < deadline:
        time.sleep(0.1)
    server.start()
    status, stopped = call(server, "GET", f"clusters/{cluster_id}")
    assert (stopped["state"], stopped["reason"]) == ("stopped", "its master and workers ended while the server "
                                                                "was down"), stopped
    assert stopped["ui_proxy_path"] is None and stopped["workers"] == []

    stream = Stream(server, "clusters-watcher-2")
    status, stopping = call(server, "DELETE", f"clusters/{cluster_id}")
    assert status == 202 and stopping["state"] == "stopping"
    # The default cluster may have an update of its own meanwhile, and the `stopped` this
    # start-up found may still be on its way: wait for `stopping` itself.
    stream.until(lambda m: m["type"] == "cluster_update" and m["data"]["id"] == cluster_id
                 and m["data"]["state"] == "stopping")
    assert stream.until(lambda m: m["type"] == "cluster_deleted")["data"] == {"id": cluster_id}
    assert wait_cluster(server, cluster_id, {"gone"}, timeout=30) is None
    stream.close()


@pytest.mark.timeout(600)
def test_a_cluster_still_starting_when_its_server_is_killed_comes_up_after_the_restart(server):
    server.start()
    status, cluster = call(server, "POST", "clusters/", {"name": "interrupted", "kind": "standalone", "workers": 1,
                                                         "cores_per_worker": 1, "memory_per_worker": "512m"})
    assert status == 202, cluster
    cluster_id = cluster["id"]
    # Killed as soon as the master is launched: its worker's supervisor, held until the master
    # is up, ends unreleased with the server, without starting anything.
    deadline = time.monotonic() + 60
    while f"{cluster_id}/master" not in daemon_supervisors(server) and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()
    server.start()
    running = wait_cluster(server, cluster_id, {"running", "failed"})
    assert running["state"] == "running", running
    assert [w["state"] for w in running["workers"]] == ["ALIVE"] and running["cores_total"] == 1
    with open(f"{server.base}/server.log") as f:
        assert f"DataHarbour: re-attached to cluster {cluster_id}, still starting; starting worker-1" in f.read()
    processes = daemon_processes(server, cluster_id)
    assert sorted(processes) == ["master", "worker-1"]
    assert call(server, "DELETE", f"clusters/{cluster_id}")[0] == 202
    assert wait_cluster(server, cluster_id, {"gone"}, timeout=60) is None
    assert still_running([p for tree in processes.values() for p in tree]) == []
