"""Two Jupyter servers on one store (two JupyterLab servers of one user, a team database):
every job runs exactly once, the cluster limit holds across both, both see the same ends."""

import os
import time

import pytest
from server_process import TERMINAL, ServerProcess, stop_runs_under

PROGRAM = """
import os, time
with open("ran.txt", "a") as f:
    f.write("{marker}\\n")
time.sleep(1.5)
print("done {marker}")
"""


@pytest.fixture
def servers(tmp_path, store_url):
    root = str(tmp_path / "root")
    pair = [
        ServerProcess(str(tmp_path / name), db_url=store_url, root=root,
                      extra_args=("--DataHarbourApp.max_concurrent_jobs=2",))
        for name in ("a", "b")
    ]
    yield pair
    for server in pair:
        server.kill()
    stop_runs_under(str(tmp_path))  # runs outlive their server by design


def test_two_servers_run_each_job_once_and_agree(servers):
    a, b = servers
    a.start()
    b.start()
    jobs = []
    for i in range(8):
        server = (a, b)[i % 2]
        jobs.append(server.request("POST", "/api/v1/jobs/", {"name": f"shared {i}", "code": PROGRAM.format(marker=i)}))
    most_active = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        listing = a.request("GET", "/api/v1/jobs/?limit=100")["jobs"]
        states = [job["state"] for job in listing]
        most_active = max(most_active, sum(state in ("starting", "running") for state in states))
        if all(state in TERMINAL for state in states):
            break
        time.sleep(0.2)
    assert most_active <= 2  # one cluster, one limit, whichever server launched the run
    for job in jobs:
        seen_by_a = a.request("GET", f"/api/v1/jobs/{job['id']}")
        seen_by_b = b.request("GET", f"/api/v1/jobs/{job['id']}")
        assert seen_by_a["state"] == seen_by_b["state"] == "succeeded"
        assert len(seen_by_a["runs"]) == 1
        log = b.request("GET", f"/api/v1/jobs/{job['id']}/logs")
        assert any(line.startswith("done ") for line in log["lines"])
    with open(os.path.join(a.root, "ran.txt")) as f:
        ran = sorted(int(line) for line in f.read().split())
    assert ran == list(range(8))  # each program ran exactly once


def test_a_kill_through_the_other_server_stops_the_run(servers):
    a, b = servers
    a.start()
    b.start()
    job = a.request("POST", "/api/v1/jobs/", {"name": "long", "code": "import time\nprint('up', flush=True)\ntime.sleep(600)\n"})
    a.wait(job["id"], {"starting", "running"})
    deadline = time.monotonic() + 60
    while "up" not in a.request("GET", f"/api/v1/jobs/{job['id']}/logs")["lines"] and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = b.request("POST", f"/api/v1/jobs/{job['id']}/kill")
    assert killed["state"] == "killed"
    assert a.request("GET", f"/api/v1/jobs/{job['id']}")["state"] == "killed"


async def test_a_server_claims_only_runs_on_clusters_it_knows(store_url):
    """A run on a cluster this server does not know (another host's launched cluster, an
    external one registered after it started) stays queued for a server that knows it."""
    from datetime import datetime, timedelta

    from dataharbour_ext.store import JobRecord, JobStore, Owner, RunRecord

    t0 = datetime(2026, 1, 1, 12, 0, 0)
    store = JobStore(store_url)
    try:
        for i, cluster in enumerate(("elsewhere", "here")):
            at = t0 + timedelta(seconds=i)
            await store.add_job(
                JobRecord(id=cluster, name=cluster, cluster_id=cluster, state="queued", file=None, args=[], conf={},
                          env={}, attempt=1, created_at=at, updated_at=at, code="print(1)\n"),
                RunRecord(job_id=cluster, attempt=1, cluster_id=cluster, state="queued", run_dir=f"/runs/{cluster}",
                          queued_at=at))
        this_server = Owner(host="a", boot_id="boot", instance="a", pid=1, start_ticks=1)
        other_server = Owner(host="b", boot_id="boot", instance="b", pid=2, start_ticks=2)
        claimed = await store.claim_next(this_server, {}, 4, now=t0, clusters=["here", "spark-cluster-default"])
        assert claimed.job_id == "here"  # the older run on the unknown cluster is passed over ...
        assert await store.claim_next(this_server, {}, 4, now=t0, clusters=["here"]) is None
        assert (await store.get_run("elsewhere", 1)).state == "queued"  # ... and left queued
        taken = await store.claim_next(other_server, {}, 4, now=t0, clusters=["elsewhere"])
        assert taken.job_id == "elsewhere" and taken.owner == other_server
    finally:
        store.close()
