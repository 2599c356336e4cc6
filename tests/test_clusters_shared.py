"""Two Jupyter servers on one host and one store: a cluster one launched is seen by the other
(state, workers, master UI, jobs), deleted through either, and taken over by the other when
its owner dies, with nothing of it left at the end."""

import json
import time

import pytest
from cluster_process import (
    TERMINAL,
    call,
    daemon_processes,
    job_log,
    still_running,
    stop_cluster_daemons,
    wait_cluster,
    wait_job,
    wait_workers,
)
from server_process import ServerProcess, stop_runs_under

SMALL = {"kind": "standalone", "workers": 1, "cores_per_worker": 1, "memory_per_worker": "512m"}
SUM_JOB = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("SUM", spark.sparkContext.parallelize(range(100), 2).sum(), flush=True)
"""


@pytest.fixture
def servers(tmp_path):
    store = f"sqlite:///{tmp_path}/store.db"
    pair = [ServerProcess(str(tmp_path / name), db_url=store, root=str(tmp_path / "root")) for name in ("a", "b")]
    yield pair
    for server in pair:
        server.kill()
    for server in pair:
        stop_cluster_daemons(server)  # by the supervisors' identities
    stop_runs_under(str(tmp_path))  # last resort, for a job run that outlived its server


def _log(server: ServerProcess) -> str:
    with open(f"{server.base}/server.log") as f:
        return f.read()


@pytest.mark.timeout(900)
def test_a_cluster_is_shared_by_two_servers_and_taken_over_when_its_owner_dies(servers):
    a, b = servers
    a.start()
    b.start()
    status, cluster = call(a, "POST", "clusters/", {"name": "shared", **SMALL})
    assert status == 202, cluster
    cluster_id = cluster["id"]
    assert wait_cluster(a, cluster_id, {"running", "failed"})["state"] == "running"
    seen = wait_workers(b, cluster_id, ["ALIVE"], timeout=60)  # b reads the store every few seconds
    assert seen["conf"]["spark.authenticate.secret"] == "********"
    status, page = call(b, "GET", f"clusters/{cluster_id}/ui/proxy/json/")
    assert status == 200 and json.loads(page)["status"] == "ALIVE", page
    # A job through the observer runs on the cluster (with its secret, from the store).
    status, job = call(b, "POST", "jobs/", {"name": "through b", "cluster_id": cluster_id, "code": SUM_JOB})
    assert status == 202, job
    done = wait_job(b, job["id"], TERMINAL)
    assert done["state"] == "succeeded" and "SUM 4950" in job_log(b, job["id"]), done

    # Deleted through the observer: its owner stops it; then it is gone for both.
    processes = daemon_processes(a, cluster_id)
    status, stopping = call(b, "DELETE", f"clusters/{cluster_id}")
    assert status == 202 and stopping["state"] == "stopping", stopping
    assert wait_cluster(a, cluster_id, {"gone"}, timeout=60) is None
    assert wait_cluster(b, cluster_id, {"gone"}, timeout=60) is None
    assert still_running([p for tree in processes.values() for p in tree]) == []
    assert f"DataHarbour: cluster {cluster_id}: another server asked to delete it" in _log(a)

    # Its owner dies: the other server takes the cluster over, re-attached to its daemons.
    status, cluster = call(a, "POST", "clusters/", {"name": "orphaned", **SMALL})
    cluster_id = cluster["id"]
    assert wait_cluster(a, cluster_id, {"running", "failed"})["state"] == "running"
    assert wait_cluster(b, cluster_id, {"running"}, timeout=60)["state"] == "running"
    processes = daemon_processes(a, cluster_id)
    a.kill()
    deadline = time.monotonic() + 60
    while f"re-attached to cluster {cluster_id}" not in _log(b) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"DataHarbour: re-attached to cluster {cluster_id} (2 daemons)" in _log(b)
    assert still_running([tree[0] for tree in processes.values()]) == [tree[0] for tree in processes.values()]
    wait_workers(b, cluster_id, ["ALIVE"])
    status, stopping = call(b, "DELETE", f"clusters/{cluster_id}")
    assert status == 202, stopping
    assert wait_cluster(b, cluster_id, {"gone"}, timeout=60) is None
    assert still_running([p for tree in processes.values() for p in tree]) == []
