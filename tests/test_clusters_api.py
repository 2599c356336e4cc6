"""The clusters API without a launched cluster: the default cluster, external masters, bad
input, limits, a cluster that cannot start, and cluster messages on the live stream.
(A real standalone cluster is in test_clusters_standalone.py and test_clusters_restart.py.)"""

import asyncio
import json
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
                                                       "master_url": "k8s://https://user:pw@127.0.0.1:6443"})
    assert status == 201 and k8s["state"] == "unknown" and k8s["reason"].startswith("not probed")
    assert k8s["master_url"] == "k8s://https://user:********@127.0.0.1:6443"
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
                               "spark.executor.memory": "512m"}
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


# ---- the `clusters` topic of the live stream: read on dataharbour:jobs -------------------


class NoJobsAuthorizer(Authorizer):
    """May use the stream, may not read jobs (nor, so, clusters on the stream)."""

    def is_authorized(self, handler, user, action, resource):
        return resource != "dataharbour:jobs"


class JobsButNotClustersAuthorizer(Authorizer):
    """May read jobs; nothing on dataharbour:clusters itself."""

    def is_authorized(self, handler, user, action, resource):
        return resource != "dataharbour:clusters"


def _server_config(authorizer):
    return {"ServerApp": {"jpserver_extensions": {"dataharbour_ext": True, "jupyter_server_terminals": False},
                          "allow_unauthenticated_access": False, "authorizer_class": authorizer},
            "DataHarbourApp": {"class_data_sharing": False, "metrics_interval": 0.0}}


async def _ws(jp_ws_fetch, client_id):
    connection = await jp_ws_fetch("api", "v1", "ws", client_id)

    async def until(predicate, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            text = await asyncio.wait_for(connection.read_message(), max(0.1, deadline - time.monotonic()))
            assert text is not None, "the server closed the stream"
            message = json.loads(text)
            if predicate(message):
                return message

    return connection, until


@pytest.mark.parametrize("jp_server_config", [_server_config(NoJobsAuthorizer)])
async def test_the_clusters_topic_needs_read_on_jobs(jp_ws_fetch, extension):
    connection, until = await _ws(jp_ws_fetch, "no-jobs")
    await connection.write_message(json.dumps({"type": "subscribe", "topics": ["clusters"]}))
    error = await until(lambda m: m["type"] == "error")
    assert error["data"] == {"message": "not authorized to read jobs (dataharbour:jobs)", "topic": "clusters"}
    connection.close()


@pytest.mark.parametrize("jp_server_config", [_server_config(JobsButNotClustersAuthorizer)])
async def test_cluster_messages_reach_readers_of_jobs(jp_ws_fetch, jp_fetch, extension):
    connection, until = await _ws(jp_ws_fetch, "jobs-reader")
    await connection.write_message(json.dumps({"type": "subscribe", "topics": ["clusters"]}))
    await until(lambda m: m["type"] == "subscribed")
    # dataharbour:clusters is refused to this user: the cluster is made by the service itself.
    launcher = extension.cluster_launcher
    from dataharbour_ext.models import ExternalClusterCreate

    cluster = await launcher.register_external(ExternalClusterCreate(name="seen", kind="external",
                                                                     master_url="local[1]"))
    update = await until(lambda m: m["type"] == "cluster_update")
    assert update["data"] == cluster.model_dump(mode="json")
    await launcher.delete(cluster.id)
    deleted = await until(lambda m: m["type"] == "cluster_deleted")
    assert deleted["data"] == {"id": cluster.id}
    connection.close()


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
