"""A real standalone cluster (1 master, 2 workers) launched through the API of a real server,
shared by the tests of this module in order: it runs, a job's tasks run on both workers, its
master UI is proxied, its master can be registered as an external cluster, and deleting it
(forced past a running job) leaves nothing of it running. Then a 1-worker cluster of its own
fails, with nothing left, when its worker is killed."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from cluster_process import (
    TERMINAL,
    Stream,
    call,
    cluster_dir,
    daemon_processes,
    daemon_supervisors,
    job_log,
    still_running,
    stop_cluster_daemons,
    wait_cluster,
    wait_for_line,
    wait_job,
)
from server_process import ServerProcess, stop_runs_under

from dataharbour_ext.runs.process import descendants
from dataharbour_ext.spark.installation import spark_home, spark_submit

SPEC = {"workers": 2, "cores_per_worker": 1, "memory_per_worker": "1gb"}
# Waits until both executors have registered, runs 8 tasks that say which executor they ran
# in (a standalone executor's working directory is <worker work dir>/<app id>/<executor id>),
# then holds its driver UI up until the test has read it.
EXECUTORS_JOB = """
import os, time
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
sc = spark.sparkContext
deadline = time.time() + 180
while sc._jsc.sc().getExecutorMemoryStatus().size() < 3 and time.time() < deadline:
    time.sleep(0.2)
def executor(_):
    import os, time
    time.sleep(0.3)
    return os.path.basename(os.getcwd())
print("EXECUTORS " + ",".join(sorted(set(sc.parallelize(range(8), 8).map(executor).collect()))), flush=True)
while not os.path.exists({gate!r}):
    time.sleep(0.1)
"""
SUM_JOB = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("SUM", spark.sparkContext.parallelize(range(100), 4).sum(), flush=True)
"""
REGISTERING_JOB = "from pyspark.sql import SparkSession\nSparkSession.builder.getOrCreate()\nprint('REGISTERED')\n"
HELD_JOB = "import time\nfrom pyspark.sql import SparkSession\nSparkSession.builder.getOrCreate()\ntime.sleep(600)\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("standalone"))
    server = ServerProcess(base, extra_args=("--DataHarbourApp.kill_grace_seconds=5",))
    server.start()
    yield server
    server.kill()
    # Should there be anything left (the tests assert there is not): the daemons by their
    # supervisors' identities, then, as a last resort, a job run that outlived the server.
    stop_cluster_daemons(server)
    stop_runs_under(base)


@pytest.fixture(scope="module")
def cluster(server):
    status, cluster = call(server, "POST", "clusters/", {"name": "two workers", "kind": "standalone", **SPEC})
    assert status == 202 and cluster["state"] == "starting", cluster
    yield wait_cluster(server, cluster["id"], {"running", "failed"})
    if call(server, "GET", f"clusters/{cluster['id']}")[0] == 200:
        call(server, "DELETE", f"clusters/{cluster['id']}?force=true")
        wait_cluster(server, cluster["id"], {"gone"}, timeout=60)


def test_a_launched_cluster_runs_with_the_workers_asked_for(server, cluster):
    assert cluster["state"] == "running", cluster["reason"]
    cluster_id = cluster["id"]
    assert cluster_id.startswith("standalone-") and cluster["kind"] == "standalone"
    assert cluster["master_url"].startswith("spark://127.0.0.1:") and cluster["ui_url"].startswith("http://127.0.0.1:")
    assert cluster["ui_proxy_path"] == f"api/v1/clusters/{cluster_id}/ui/proxy/"
    assert cluster["spec"] == {"workers": 2, "cores_per_worker": 1, "memory_per_worker": "1g",
                               "memory_per_worker_mb": 1024}
    alive = [worker for worker in cluster["workers"] if worker["state"] == "ALIVE"]
    assert len(alive) == 2
    for worker in alive:
        assert (worker["host"], worker["cores"], worker["memory_mb"]) == ("127.0.0.1", 1, 1024)
        assert (worker["cores_free"], worker["memory_free_mb"]) == (1, 1024)
    assert (cluster["cores_total"], cluster["cores_used"], cluster["memory_total_mb"]) == (2, 0, 2048)
    assert (cluster["running_jobs"], cluster["queued_jobs"], cluster["max_concurrent_jobs"]) == (0, 0, 4)
    _, listing = call(server, "GET", "clusters/")
    assert [c["id"] for c in listing["clusters"]] == ["spark-cluster-default", cluster_id]

    # Its health, from the master's status (in a round of checks after it was launched) ...
    deadline = time.monotonic() + 60
    while True:
        _, services = call(server, "GET", "monitoring/services")
        health = next((service for service in services["services"] if service["name"] == cluster_id), None)
        if health is not None and health["status"] == "healthy" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert health["status"] == "healthy" and health["details"]["alive_workers"] == 2, health
    # ... and its daemons' logs, merged.
    status, logs = call(server, "GET", f"monitoring/services/{cluster_id}/logs?lines=1000")
    assert status == 200
    assert any(line.startswith("[master] ") and "Registering worker 127.0.0.1:" in line for line in logs["lines"])
    for worker in ("worker-1", "worker-2"):
        assert any(line.startswith(f"[{worker}] ") and "Successfully registered with master" in line
                   for line in logs["lines"]), logs["lines"]
    assert not any(" INFO " in line and "Utils:" in line for line in logs["lines"]), "Spark's own INFO stays out"


def _secret(server, cluster_id: str, daemon: str = "master") -> str:
    """The cluster's secret, from a daemon's properties file (which must be owner-only)."""
    path = os.path.join(cluster_dir(server, cluster_id), daemon, "daemon.properties")
    assert os.stat(path).st_mode & 0o777 == 0o600
    with open(path, encoding="utf-8") as f:
        properties = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    assert properties["spark.authenticate"] == "true"
    return properties["spark.authenticate.secret"]


def _command_lines_with(text: str) -> list[str]:
    """The command lines of this machine's processes that contain `text`."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command_line = " ".join(process.info["cmdline"] or ())
        if text in command_line:
            found.append(command_line)
    return found


def test_only_holders_of_the_clusters_secret_can_use_its_master(server, cluster, tmp_path):
    cluster_id = cluster["id"]
    secret = _secret(server, cluster_id)
    assert len(secret) >= 32
    assert all(_secret(server, cluster_id, worker) == secret for worker in ("worker-1", "worker-2"))
    # Shown masked, never in a command line (the daemons read it from their properties file).
    _, shown = call(server, "GET", f"clusters/{cluster_id}")
    assert shown["conf"]["spark.authenticate"] == "true" and shown["conf"]["spark.authenticate.secret"] == "********"
    assert secret not in json.dumps(call(server, "GET", "clusters/")[1])
    assert not _command_lines_with(secret)
    for tree in daemon_processes(server, cluster_id).values():
        assert any("--properties-file" in process.cmdline() for process in tree[1:]), "the JVM reads the file"

    # An application without the secret is refused by the master: its driver never registers.
    script = tmp_path / "register.py"
    script.write_text(REGISTERING_JOB)
    driver = subprocess.Popen([spark_submit(), "--master", cluster["master_url"], "--conf", "spark.authenticate=false",
                               str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "SPARK_HOME": str(spark_home()), "PYSPARK_PYTHON": sys.executable,
                                   "SPARK_LOCAL_IP": "127.0.0.1"}, start_new_session=True)
    try:
        output = []
        deadline = time.monotonic() + 90
        for line in driver.stdout:  # the driver tries for a minute; its first failure is enough
            output.append(line)
            if "Failed to connect to master" in line or "REGISTERED" in line or time.monotonic() > deadline:
                break
        assert any("Failed to connect to master" in line for line in output), "".join(output[-30:])
        assert not any("REGISTERED" in line for line in output)
        _, master = call(server, "GET", f"clusters/{cluster_id}/ui/proxy/json/")
        assert json.loads(master)["activeapps"] == []
    finally:
        for process in [psutil.Process(driver.pid), *psutil.Process(driver.pid).children(recursive=True)]:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        driver.wait(timeout=30)


def test_a_job_runs_its_tasks_on_both_workers(server, cluster):
    status, job = call(server, "POST", "jobs/", {"name": "executors", "cluster_id": cluster["id"],
                                                 "code": EXECUTORS_JOB.format(gate="executors.go")})
    assert status == 202, job
    line = wait_for_line(server, job["id"], "EXECUTORS ")
    seen = line.split(" ", 1)[1].split(",")
    assert len(seen) == 2, line  # tasks ran in two executors
    # The driver and executors had the cluster's secret, and no command line shows it.
    assert not _command_lines_with(_secret(server, cluster["id"]))
    job = wait_job(server, job["id"], {"running"})
    # The application's own REST API, through the driver UI proxy: one executor per worker.
    status, executors = call(server, "GET", f"jobs/{job['id']}/spark-ui/proxy/api/v1/applications/"
                                            f"{job['spark_app_id']}/executors")
    assert status == 200, executors
    remote = [e for e in executors if e["id"] != "driver"]
    assert sorted(e["id"] for e in remote) == sorted(seen)
    assert len({e["hostPort"] for e in remote}) == 2 and all(e["completedTasks"] >= 1 for e in remote), remote
    _, busy = call(server, "GET", f"clusters/{cluster['id']}")
    assert (busy["running_jobs"], busy["cores_used"]) == (1, 2)
    assert [w["cores_used"] for w in busy["workers"]] == [1, 1]
    open(os.path.join(server.root, "executors.go"), "w").close()
    assert wait_job(server, job["id"], TERMINAL)["state"] == "succeeded", job_log(server, job["id"])


def test_the_master_ui_is_proxied_without_its_kill_links(server, cluster):
    proxy = f"clusters/{cluster['id']}/ui/proxy/"
    status, page = call(server, "GET", proxy)
    assert status == 200 and "<html" in page.lower() and cluster["master_url"] in page, page[:500]
    status, state = call(server, "GET", proxy + "json/")  # Spark sends it as text/json
    assert status == 200 and json.loads(state)["status"] == "ALIVE" and len(json.loads(state)["workers"]) == 2
    for kill in ("app/kill/?id=app-1&terminate=true", "driver/kill/?id=x", "app/./kill/"):
        status, text = call(server, "GET", proxy + kill)
        assert status == 403 and "kill links are not forwarded" in text, (kill, text)
    status, _ = call(server, "GET", "clusters/spark-cluster-default/ui/proxy/")
    assert status == 404


def test_the_running_master_registered_as_an_external_cluster_runs_jobs(server, cluster):
    status, external = call(server, "POST", "clusters/", {"name": "the same master", "kind": "external",
                                                          "master_url": cluster["master_url"],
                                                          "ui_url": cluster["ui_url"],
                                                          "conf": {"spark.authenticate": "true",
                                                                   "spark.authenticate.secret":
                                                                       _secret(server, cluster["id"])}})
    assert status == 201, external
    assert (external["kind"], external["state"], external["reason"]) == ("external", "running", None)
    assert len([w for w in external["workers"] if w["state"] == "ALIVE"]) == 2
    assert external["ui_proxy_path"] is None, "only the UI of a cluster this server launched is proxied"
    status, job = call(server, "POST", "jobs/", {"name": "via external", "cluster_id": external["id"],
                                                 "code": SUM_JOB})
    assert status == 202, job
    done = wait_job(server, job["id"], TERMINAL)
    assert done["state"] == "succeeded" and "SUM 4950" in job_log(server, job["id"]), done
    status, body = call(server, "DELETE", f"clusters/{external['id']}")
    assert (status, body) == (204, None)
    assert call(server, "GET", f"clusters/{external['id']}")[0] == 404
    assert call(server, "GET", f"clusters/{cluster['id']}")[1]["state"] == "running", "the master itself goes on"


def test_delete_refuses_while_a_job_runs_then_force_kills_it_and_stops_everything(server, cluster):
    cluster_id = cluster["id"]
    status, job = call(server, "POST", "jobs/", {"name": "in the way", "cluster_id": cluster_id, "code": HELD_JOB})
    assert status == 202, job
    wait_job(server, job["id"], {"running"})
    status, error = call(server, "DELETE", f"clusters/{cluster_id}")
    assert status == 409 and f"'in the way' ({job['id']}, running)" in error["message"], error
    processes = daemon_processes(server, cluster_id)
    assert set(processes) == {"master", "worker-1", "worker-2"}
    assert all(len(tree) >= 2 for tree in processes.values()), "each supervisor runs its daemon's JVM"

    status, stopping = call(server, "DELETE", f"clusters/{cluster_id}?force=true")
    assert status == 202 and stopping["state"] == "stopping", stopping
    assert wait_job(server, job["id"], TERMINAL)["state"] == "killed"
    assert wait_cluster(server, cluster_id, {"gone"}, timeout=60) is None
    leftovers = still_running([process for tree in processes.values() for process in tree])
    assert not leftovers, f"processes of the cluster still run: {leftovers}"
    assert not os.path.exists(cluster_dir(server, cluster_id))
    assert call(server, "GET", f"monitoring/services/{cluster_id}/logs")[0] == 404


def test_a_killed_worker_fails_its_cluster_and_nothing_of_it_is_left(server):
    stream = Stream(server, "worker-killed-watcher")
    status, cluster = call(server, "POST", "clusters/", {"name": "loses a worker", "kind": "standalone",
                                                         "workers": 1, "cores_per_worker": 1,
                                                         "memory_per_worker": "512m"})
    assert status == 202, cluster
    cluster_id = cluster["id"]
    try:
        assert wait_cluster(server, cluster_id, {"running", "failed"})["state"] == "running"
        supervisors = {name.split("/", 1)[1]: identity for name, identity in daemon_supervisors(server).items()
                       if name.startswith(f"{cluster_id}/")}
        assert set(supervisors) == {"master", "worker-1"}
        processes = daemon_processes(server, cluster_id)
        # The worker's JVM, by identity below its supervisor (a pidfd-checked signal).
        jvms = [identity for identity in descendants(supervisors["worker-1"].pid)
                if "org.apache.spark.deploy.worker.Worker" in psutil.Process(identity.pid).cmdline()]
        assert len(jvms) == 1, jvms
        assert jvms[0].send_signal(signal.SIGKILL)

        failed = stream.until(lambda m: m["type"] == "cluster_update" and m["data"]["id"] == cluster_id
                              and m["data"]["state"] in ("failed", "stopped"))["data"]
        assert failed["state"] == "failed" and failed["reason"].startswith("worker-1 ended"), failed
        _, shown = call(server, "GET", f"clusters/{cluster_id}")
        assert (shown["state"], shown["reason"]) == ("failed", failed["reason"]), shown
        # `failed` is set once every daemon's supervisor has ended, each after its tree.
        assert not [name for name, identity in supervisors.items() if identity.matches()]
        leftovers = still_running([process for tree in processes.values() for process in tree])
        assert not leftovers, f"processes of the cluster still run: {leftovers}"
    finally:
        stream.close()
        if call(server, "GET", f"clusters/{cluster_id}")[0] == 200:
            call(server, "DELETE", f"clusters/{cluster_id}?force=true")
            wait_cluster(server, cluster_id, {"gone"}, timeout=60)
    assert not os.path.exists(cluster_dir(server, cluster_id))
