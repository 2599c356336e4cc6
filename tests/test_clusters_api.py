"""The clusters API without a launched cluster: the default cluster, external masters, bad
input, limits, a cluster that cannot start, and races between deletes, creations and submissions.
(A real standalone cluster is in test_clusters_standalone.py and test_clusters_restart.py.)"""

import asyncio
import os
import socket
import time

import psutil
import pytest
from jupyter_server.auth import Authorizer

GATED = "import os, time\nwhile not os.path.exists('{gate}'):\n    time.sleep(0.05)\n"
DEFAULT = {
    "id": "spark-cluster-default", "name": "Default Spark cluster", "kind": "local", "master_url": "local[*]",
    "ui_url": None, "ui_proxy_path": None, "state": "running", "reason": None, "workers": [], "cores_total": None,
    "cores_used": None, "memory_total_mb": None, "memory_used_mb": None, "max_concurrent_jobs": 1,
    "running_jobs": 0, "queued_jobs": 0, "created_at": None, "spec": None, "conf": {},
    # Its warm path, not yet used: the Connect server starts with the first warm job.
    "connect": {"available": True, "reason": None, "default_mode": "batch", "state": "stopped", "address": None,
                "warm_ready": 0, "warm_starting": 0, "warm_running": 0},
}


async def _wait_cluster(api, cluster_id, states, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        status, cluster = await api.call("GET", f"clusters/{cluster_id}")
        if status == 200 and cluster["state"] in states or status == 404 and "gone" in states:
            return cluster if status == 200 else None
        assert time.monotonic() < deadline, f"cluster {cluster_id} still {cluster} after {timeout} s"
        await asyncio.sleep(0.1)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("dataharbour_config", [{"max_concurrent_jobs": 1}])
async def test_the_default_cluster_with_its_running_and_queued_jobs(api, jp_root_dir):
    status, listing = await api.call("GET", "clusters/")
    assert status == 200
    assert listing == {"clusters": [DEFAULT], "limits": {"max_clusters": 4, "max_workers": 4,
                                                         "max_cores_per_worker": os.cpu_count(),
                                                         "max_memory_per_worker": "8g"}}
    first = await api.submit(name="holds the slot", code=GATED.format(gate="first.go"))
    second = await api.submit(name="waits", code=GATED.format(gate="second.go"))
    await api.wait(first["id"], states=("starting", "running"))
    status, cluster = await api.call("GET", "clusters/spark-cluster-default")
    assert status == 200 and (cluster["running_jobs"], cluster["queued_jobs"]) == (1, 1)
    (jp_root_dir / "first.go").touch()
    (jp_root_dir / "second.go").touch()
    for job in (first, second):
        assert (await api.wait(job["id"]))["state"] == "succeeded"
    _, cluster = await api.call("GET", "clusters/spark-cluster-default")
    assert (cluster["running_jobs"], cluster["queued_jobs"]) == (0, 0)


async def test_an_unknown_cluster_is_404(api):
    status, error = await api.call("GET", "clusters/nope")
    assert status == 404 and error["message"] == "no cluster with id 'nope'"
    status, error = await api.call("DELETE", "clusters/nope")
    assert status == 404 and error["message"] == "no cluster with id 'nope'"
    status, error = await api.call("GET", "clusters/nope/ui/proxy/")
    assert status == 404 and error == "404 Not Found: no cluster with id 'nope'\n"


@pytest.mark.parametrize("dataharbour_config", [{"spark_master_url": "spark://127.0.0.1:7077"}])
async def test_a_configured_master_is_an_external_cluster(api):
    _, cluster = await api.call("GET", "clusters/spark-cluster-default")
    assert (cluster["kind"], cluster["master_url"], cluster["state"]) == ("external", "spark://127.0.0.1:7077",
                                                                          "unknown")


async def test_the_default_cluster_cannot_be_deleted(api):
    status, error = await api.call("DELETE", "clusters/spark-cluster-default")
    assert status == 409 and error["message"].startswith("spark-cluster-default is this server's own cluster")


BAD_BODIES = [
    ({"name": "x", "kind": "mesos"}, "kind: must be 'standalone' or 'external'"),
    ({"name": "x"}, "kind: is required"),
    ({"name": "x", "kind": "standalone", "workers": 1, "cores_per_worker": 1, "memory_per_worker": "lots"},
     "memory_per_worker: must be a whole number with a unit k, m, g or t (an optional b): 512m, 2g, 2gb, 1024mb"),
    ({"name": "x", "kind": "standalone", "workers": 1, "cores_per_worker": 1, "memory_per_worker": "256m"},
     "memory_per_worker: must be at least 512m (an executor needs about 450 MB)"),
    ({"name": "x", "kind": "standalone", "workers": 0, "cores_per_worker": 1, "memory_per_worker": "1g"},
     "workers: must be at least 1"),
    ({"name": "x", "kind": "standalone", "workers": "two", "cores_per_worker": 1, "memory_per_worker": "1g"},
     "workers: must be an integer"),
    ({"name": "x", "kind": "standalone", "cores_per_worker": 1, "memory_per_worker": "1g"}, "workers: is required"),
    ({"name": "x", "kind": "standalone", "workers": 5, "cores_per_worker": 1, "memory_per_worker": "1g"},
     "workers: at most 4 (DataHarbourApp.max_workers)"),
    ({"name": "x", "kind": "standalone", "workers": 1, "cores_per_worker": 99, "memory_per_worker": "1g"},
     "cores_per_worker: at most 2 (DataHarbourApp.max_cores_per_worker)"),
    ({"name": "x", "kind": "standalone", "workers": 1, "cores_per_worker": 1, "memory_per_worker": "9gb"},
     "memory_per_worker: at most 8g (DataHarbourApp.max_memory_per_worker)"),
    ({"name": "x", "kind": "standalone", "workers": 1, "cores_per_worker": 1, "memory_per_worker": "1g",
      "master_url": "spark://h:1"}, "master_url: unknown field"),
    ({"name": " ", "kind": "standalone", "workers": 1, "cores_per_worker": 1, "memory_per_worker": "1g"},
     "name: must not be blank"),
    ({"name": "x", "kind": "external", "master_url": "spark://"},
     "master_url: spark:// needs HOST:PORT, e.g. spark://127.0.0.1:7077"),
    ({"name": "x", "kind": "external", "master_url": "http://x"},
     "master_url: must be spark://HOST:PORT, k8s://https://HOST[:PORT], yarn or local[N], not 'http://x'"),
    ({"name": "x", "kind": "external", "master_url": "k8s://"},
     "master_url: k8s:// needs the API server's host, e.g. k8s://https://HOST:6443"),
    ({"name": "x", "kind": "external", "master_url": "spark://h"},
     "master_url: spark:// needs HOST:PORT for each master, not 'h'"),
    ({"name": "x", "kind": "external", "master_url": "yarn", "workers": 2}, "workers: unknown field"),
    ({"name": "x", "kind": "external", "master_url": "yarn", "conf": {"spark.master": "local"}},
     "conf['spark.master']: is set by DataHarbour from the cluster and job"),
    ({"name": "x", "kind": "external", "master_url": "yarn", "connect_url": "http://h:15002"},
     "connect_url: must be an sc://HOST:PORT URL of a Spark Connect server"),
    ({"name": "x", "kind": "external", "master_url": "yarn", "connect_url": "sc://h:99999"},
     "connect_url: the port of the sc:// URL is not a number from 1 to 65535"),
    ({"name": "x", "kind": "external", "master_url": "yarn", "ui_url": "ftp://h"},
     "ui_url: must be an http:// or https:// address without spaces"),
    ({"name": "x", "kind": "external", "master_url": "yarn", "ui_url": "http://h:8080"},
     "ui_url: only a spark:// master has a web UI this server can read"),
]


@pytest.mark.parametrize("dataharbour_config", [{"max_cores_per_worker": 2}])
async def test_bad_input_is_400_naming_the_field(api):
    for body, message in BAD_BODIES:
        status, error = await api.call("POST", "clusters/", body)
        assert (status, error["message"]) == (400, message), body
    status, error = await api.call("POST", "clusters/", raw_body="[1]")
    assert (status, error["message"]) == (400, "body: expected a JSON object")
    status, error = await api.call("DELETE", "clusters/spark-cluster-default", params={"force": "maybe"})
    assert status == 400 and error["message"].startswith("force: ")
    _, listing = await api.call("GET", "clusters/")
    assert [c["id"] for c in listing["clusters"]] == ["spark-cluster-default"], "nothing was created"


@pytest.mark.parametrize("dataharbour_config", [{"max_clusters": 2}])
async def test_external_masters_are_probed_registered_and_unregistered(api):
    port = _closed_port()
    status, dead = await api.call("POST", "clusters/", {"name": "nobody home", "kind": "external",
                                                        "master_url": f"spark://127.0.0.1:{port}",
                                                        "conf": {"spark.driver.host": "10.0.0.5",
                                                                 "spark.hadoop.fs.s3a.secret.key": "hush"}})
    assert status == 201, dead
    assert dead["id"].startswith("external-") and dead["kind"] == "external"
    assert (dead["state"], dead["reason"]) == ("unknown", f"no master answered: 127.0.0.1:{port}: Connection refused")
    assert dead["conf"] == {"spark.driver.host": "10.0.0.5", "spark.hadoop.fs.s3a.secret.key": "********"}
    assert dead["created_at"] and dead["spec"] is None and dead["ui_proxy_path"] is None
    status, k8s = await api.call("POST", "clusters/", {"name": "k8s", "kind": "external",
                                                       "master_url": "k8s://https://user:pw@127.0.0.1:6443",
                                                       "connect_url": "sc://127.0.0.1:15999/;token=hush"})
    assert status == 201 and k8s["state"] == "unknown" and k8s["reason"].startswith("not probed")
    assert k8s["master_url"] == "k8s://https://user:********@127.0.0.1:6443"
    # Its own Spark Connect server: warm jobs can go there; its token is never shown.
    assert k8s["connect"]["available"] and k8s["connect"]["state"] == "external", k8s["connect"]
    assert k8s["connect"]["address"] == "sc://127.0.0.1:15999" and "hush" not in str(k8s)
    status, error = await api.call("POST", "clusters/", {"name": "one too many", "kind": "external",
                                                         "master_url": "local[2]"})
    assert status == 400 and "DataHarbourApp.max_clusters = 2" in error["message"]
    # A job can go to an external master that is not known to be down.
    status, listing = await api.call("GET", "clusters/")
    assert [c["id"] for c in listing["clusters"]] == ["spark-cluster-default", dead["id"], k8s["id"]]
    for cluster in (dead, k8s):
        status, body = await api.call("DELETE", f"clusters/{cluster['id']}")
        assert (status, body) == (204, None)
        assert (await api.call("GET", f"clusters/{cluster['id']}"))[0] == 404
    status, local = await api.call("POST", "clusters/", {"name": "two cores", "kind": "external",
                                                         "master_url": "local[2]", "max_concurrent_jobs": 3})
    assert status == 201 and (local["state"], local["max_concurrent_jobs"]) == ("running", 3)
    job = await api.submit(name="on local[2]", cluster_id=local["id"], code="print('on', 2)\n")
    assert (await api.wait(job["id"]))["state"] == "succeeded"


async def test_a_cluster_that_cannot_start_fails_with_the_reason_and_takes_no_jobs(api, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", "/nonexistent/java")  # spark-class then finds no java
    status, cluster = await api.call("POST", "clusters/", {"name": "no java", "kind": "standalone", "workers": 1,
                                                           "cores_per_worker": 1, "memory_per_worker": "512mb"})
    assert status == 202 and cluster["state"] == "starting", cluster
    assert cluster["spec"] == {"workers": 1, "cores_per_worker": 1, "memory_per_worker": "512m",
                               "memory_per_worker_mb": 512}
    assert cluster["conf"] == {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                               "spark.executor.memory": "512m", "spark.authenticate": "true",
                               "spark.authenticate.secret": "********"}
    failed = await _wait_cluster(api, cluster["id"], {"failed"})
    assert failed["reason"] == ("master ended: Java was not found: install Java 17 or later, or set JAVA_HOME "
                                "(spark-class could not run java)")
    assert failed["ui_proxy_path"] is None and failed["workers"] == []
    status, error = await api.call("POST", "jobs/", {"name": "x", "code": "print(1)\n", "cluster_id": cluster["id"]})
    assert status == 409 and error["message"].startswith(f"cluster {cluster['id']} is failed (master ended: Java")
    status, logs = await api.call("GET", f"monitoring/services/{cluster['id']}/logs")
    assert status == 200 and any(line.startswith("[master] ") for line in logs["lines"]), logs
    status, gone = await api.call("DELETE", f"clusters/{cluster['id']}")
    assert status == 202 and gone["state"] == "stopping"
    assert await _wait_cluster(api, cluster["id"], {"gone"}) is None
    assert (await api.call("GET", f"monitoring/services/{cluster['id']}/logs"))[0] == 404


async def test_a_taken_port_fails_the_cluster_and_nothing_of_it_is_left(api, extension, monkeypatch):
    from dataharbour_ext.spark import standalone

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = iter([port, _closed_port()])
        monkeypatch.setattr(standalone, "free_port", lambda: next(ports))
        status, cluster = await api.call("POST", "clusters/", {"name": "clash", "kind": "standalone", "workers": 1,
                                                               "cores_per_worker": 1, "memory_per_worker": "1g"})
        assert status == 202, cluster
        failed = await _wait_cluster(api, cluster["id"], {"failed"}, timeout=120)
    assert failed["reason"] == f"master ended: the master's port {port} is taken (BindException: Address already in use)"
    launched = extension.cluster_launcher._launched[cluster["id"]]
    pids = [daemon.supervised.identity.pid for daemon in launched.daemons.values() if daemon.supervised]
    assert pids and not [pid for pid in pids if psutil.pid_exists(pid)
                         and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert (await api.call("DELETE", f"clusters/{cluster['id']}"))[0] == 202
    await _wait_cluster(api, cluster["id"], {"gone"})


# ---- permissions (the clusters topic of the live stream: tests/test_live_stream.py) -----


def _server_config(authorizer):
    return {"ServerApp": {"jpserver_extensions": {"dataharbour_ext": True, "jupyter_server_terminals": False},
                          "allow_unauthenticated_access": False, "authorizer_class": authorizer},
            "DataHarbourApp": {"class_data_sharing": False, "metrics_interval": 0.0}}


class ReadOnlyAuthorizer(Authorizer):
    """Allows only "read" on DataHarbour resources."""

    def is_authorized(self, handler, user, action, resource):
        return action == "read" or not resource.startswith("dataharbour:")


@pytest.mark.parametrize("jp_server_config", [_server_config(ReadOnlyAuthorizer)])
async def test_launching_and_deleting_clusters_need_execute(jp_fetch, extension):
    from conftest import Api

    api = Api(jp_fetch)
    assert (await api.call("GET", "clusters/"))[0] == 200
    for method, path, body in [("POST", "clusters/", {"name": "x", "kind": "external", "master_url": "yarn"}),
                               ("DELETE", "clusters/spark-cluster-default", None)]:
        status, error = await api.call(method, path, body)
        assert status == 403 and "execute" in error["message"], (method, error)


@pytest.mark.parametrize("dataharbour_config", [{"cluster_start_timeout": 0.2}])
async def test_a_cluster_that_does_not_come_up_in_time_fails_and_is_stopped(api, extension):
    status, cluster = await api.call("POST", "clusters/", {"name": "slow", "kind": "standalone", "workers": 1,
                                                           "cores_per_worker": 1, "memory_per_worker": "1g"})
    assert status == 202, cluster
    failed = await _wait_cluster(api, cluster["id"], {"failed"})
    assert failed["reason"].startswith("the master did not come up within 0.2 s"), failed["reason"]
    launched = extension.cluster_launcher._launched[cluster["id"]]
    supervisors = [daemon.supervised for daemon in launched.daemons.values() if daemon.supervised]
    assert {daemon.name for daemon in launched.daemons.values()} == {"master", "worker-1"}
    assert supervisors and not [s for s in supervisors if s.alive()], "the master and the held worker are gone"
    assert (await api.call("DELETE", f"clusters/{cluster['id']}"))[0] == 202
    await _wait_cluster(api, cluster["id"], {"gone"})


# ---- races: deletes, creations and submissions at the same time ---------------------------


async def test_two_deletes_at_once_remove_the_cluster_once(api, extension, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", "/nonexistent/java")  # fails at once: nothing to wait for
    launcher = extension.cluster_launcher
    removals = []
    remove = launcher._remove

    async def counted(launched):
        removals.append(launched.id)
        await remove(launched)

    monkeypatch.setattr(launcher, "_remove", counted)
    status, cluster = await api.call("POST", "clusters/", {"name": "twice", "kind": "standalone", "workers": 1,
                                                           "cores_per_worker": 1, "memory_per_worker": "512m"})
    assert status == 202, cluster
    await _wait_cluster(api, cluster["id"], {"failed"})
    answers = await asyncio.gather(*(api.call("DELETE", f"clusters/{cluster['id']}") for _ in range(2)))
    statuses = sorted(status for status, _ in answers)
    assert statuses in ([202, 202], [202, 404], [202, 409]), answers
    assert all(body["state"] == "stopping" for status, body in answers if status == 202), answers
    assert await _wait_cluster(api, cluster["id"], {"gone"}) is None
    assert removals == [cluster["id"]]


async def test_a_job_submitted_while_a_forced_delete_kills_jobs_is_refused(api, extension, monkeypatch):
    status, local = await api.call("POST", "clusters/", {"name": "busy", "kind": "external",
                                                         "master_url": "local[1]"})
    assert status == 201, local
    job = await api.submit(name="holds it", cluster_id=local["id"], code=GATED.format(gate="never.go"))
    await api.wait(job["id"], states=("starting", "running"))
    jobs = extension.cluster_launcher.jobs
    kill = jobs.kill
    refused = []

    async def kill_and_submit(job_id):
        refused.append(await api.call("POST", "jobs/", {"name": "late", "code": "print(1)\n",
                                                        "cluster_id": local["id"]}))
        return await kill(job_id)

    monkeypatch.setattr(jobs, "kill", kill_and_submit)
    status, error = await api.call("DELETE", f"clusters/{local['id']}")
    assert status == 409 and error["message"].startswith(f"cluster {local['id']} has 1 job(s) queued or running: "
                                                         f"'holds it' ({job['id']}, "), error
    assert refused == [], "a refused delete kills nothing"
    late = await api.submit(name="accepted again", cluster_id=local["id"], code=GATED.format(gate="never.go"))
    assert (await api.call("DELETE", f"clusters/{local['id']}", params={"force": "true"})) == (204, None)
    assert [(status, body["message"]) for status, body in refused] == \
        [(409, f"cluster {local['id']} is being deleted; it takes no jobs")] * len(refused) and refused
    for killed in (job, late):
        assert (await api.wait(killed["id"]))["state"] == "killed"


@pytest.mark.parametrize("dataharbour_config", [{"max_clusters": 1}])
async def test_concurrent_creations_stay_within_max_clusters(api):
    bodies = [{"name": f"racer {n}", "kind": "external", "master_url": f"spark://127.0.0.1:{_closed_port()}"}
              for n in range(3)]
    answers = await asyncio.gather(*(api.call("POST", "clusters/", body) for body in bodies))
    assert sorted(status for status, _ in answers) == [201, 400, 400], answers
    _, listing = await api.call("GET", "clusters/")
    assert len(listing["clusters"]) == 2


async def test_a_cluster_deleted_while_its_master_is_being_launched_leaves_nothing(api, extension, monkeypatch):
    import threading

    from dataharbour_ext.runs import process

    entered, go, launched = threading.Event(), threading.Event(), []
    launch = process.launch

    def gated_launch(run_dir, **options):
        entered.set()
        go.wait(60)
        supervised = launch(run_dir, **options)
        launched.append(supervised)
        return supervised

    monkeypatch.setattr(process, "launch", gated_launch)
    status, cluster = await api.call("POST", "clusters/", {"name": "short-lived", "kind": "standalone",
                                                           "workers": 1, "cores_per_worker": 1,
                                                           "memory_per_worker": "512m"})
    assert status == 202, cluster
    try:
        assert await asyncio.to_thread(entered.wait, 60), "the master's supervisor was never launched"
        ui = await api.fetch("api", "v1", f"clusters/{cluster['id']}/ui/proxy/", raise_error=False)
        assert (ui.code, ui.headers.get("Retry-After")) == (503, "2"), ui.body
        assert ui.body.decode().endswith(f"cluster {cluster['id']} is starting: its master UI is not listening "
                                         f"yet\n"), ui.body
        status, stopping = await api.call("DELETE", f"clusters/{cluster['id']}")
        assert status == 202 and stopping["state"] == "stopping", stopping
    finally:
        go.set()
    assert await _wait_cluster(api, cluster["id"], {"gone"}) is None
    assert len(launched) == 1, "no worker was launched after the delete"
    supervised = launched[0]
    assert not supervised.identity.matches() and supervised.popen.poll() is not None, "ended and reaped"
    assert not (extension.cluster_launcher.config.clusters_dir / cluster["id"]).exists()


async def test_a_server_stopping_while_a_cluster_fails_leaves_the_failure_to_the_next_start(
        api, extension, monkeypatch):
    from dataharbour_ext.services.standalone_daemons import DaemonGroup

    launcher = extension.cluster_launcher
    stopping, stop = asyncio.Event(), DaemonGroup.stop

    async def interrupted_stop(self, grace_seconds):
        stopping.set()
        await asyncio.Event().wait()  # until the server's stop cancels it

    monkeypatch.setattr(DaemonGroup, "stop", interrupted_stop)
    monkeypatch.setenv("JAVA_HOME", "/nonexistent/java")
    status, cluster = await api.call("POST", "clusters/", {"name": "failing", "kind": "standalone", "workers": 1,
                                                           "cores_per_worker": 1, "memory_per_worker": "512m"})
    assert status == 202, cluster
    await asyncio.wait_for(stopping.wait(), 60)
    await launcher.stop()
    (record,) = [r for r in await launcher.store.all() if r.id == cluster["id"]]
    assert record.state in ("starting", "running") and record.failure.startswith("master ended: Java was not found")
    monkeypatch.setattr(DaemonGroup, "stop", stop)
    await launcher.start()  # as the next server start does
    failed = await _wait_cluster(api, cluster["id"], {"failed"})
    assert failed["reason"] == record.failure
    assert (await api.call("DELETE", f"clusters/{cluster['id']}"))[0] == 202
    await _wait_cluster(api, cluster["id"], {"gone"})
