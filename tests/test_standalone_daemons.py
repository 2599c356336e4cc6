"""Reading standalone daemons without running them: why one failed, their logs merged, the
master's status."""

import json
import os
import time

import pytest

from dataharbour_ext.spark.daemon_logs import DaemonLogs
from dataharbour_ext.spark.standalone import NotAMaster, failure_reason, parse_master_status


@pytest.mark.parametrize("lines, code, reason", [
    (["JAVA_HOME is not set"], 1, "Java was not found: install Java 17 or later, or set JAVA_HOME (spark-class could "
                                  "not run java)"),
    (["26/11/27 12:00:01 ERROR MasterWebUI: Failed to bind MasterWebUI",
      "java.net.BindException: Service 'MasterUI' failed after 0 retries (on a random free port)! ...",
      "Caused by: java.net.BindException: Address already in use"], 1,
     "the master's web UI port 8080 is taken (BindException: Address already in use)"),
    (["26/11/27 12:00:01 WARN Worker: Failed to connect to master 127.0.0.1:7077",
      "26/11/27 12:01:01 ERROR Worker: All masters are unresponsive! Giving up."], 1,
     "the worker could not reach its master"),
    (["26/11/27 12:00:01 ERROR Master: RECEIVED SIGNAL TERM"], 143, "26/11/27 12:00:01 ERROR Master: RECEIVED SIGNAL "
                                                                   "TERM"),
    ([], -9, "it was killed by signal 9"),
    ([], 3, "it exited with code 3"),
])
def test_a_daemons_failure_in_words(lines, code, reason):
    assert failure_reason(lines, code, {"sparkMaster": 7077, "MasterUI": 8080}) == reason


def test_daemon_logs_are_merged_by_time_with_their_daemon_named(tmp_path):
    master, worker = tmp_path / "master.log", tmp_path / "worker.log"
    master.write_text("26/11/27 12:00:01 INFO Master: Starting Spark master\n"
                      "26/11/27 12:00:04 INFO Master: Registering worker 127.0.0.1:4242\n")
    worker.write_text("spark-class says hello\n"
                      "26/11/27 12:00:03 INFO Worker: Starting Spark worker\n"
                      "26/11/27 12:00:05 ERROR Worker: something broke\n"
                      "java.lang.IllegalStateException: here\n"
                      "\tat Worker.java:1\n")
    last_write = time.mktime((2026, 11, 27, 12, 0, 6, 0, 0, -1))  # local time, as Spark writes its times
    os.utime(worker, (last_write, last_write))
    logs = DaemonLogs(lambda: [("master", master), ("worker-1", worker), ("worker-2", tmp_path / "missing.log")])
    assert logs.tail(100) == [
        "[master] 26/11/27 12:00:01 INFO Master: Starting Spark master",
        "[worker-1] spark-class says hello",  # before the worker's first time, after nothing known
        "[worker-1] 26/11/27 12:00:03 INFO Worker: Starting Spark worker",
        "[master] 26/11/27 12:00:04 INFO Master: Registering worker 127.0.0.1:4242",
        "[worker-1] 26/11/27 12:00:05 ERROR Worker: something broke",
        "[worker-1] java.lang.IllegalStateException: here",
        "[worker-1] \tat Worker.java:1",
    ]
    # The end of a stack trace without its first line: written by the file's last write at latest.
    assert logs.tail(2) == ["[worker-1] java.lang.IllegalStateException: here", "[worker-1] \tat Worker.java:1"]


def test_a_masters_status_and_what_is_not_one():
    status = parse_master_status({
        "url": "spark://127.0.0.1:7077", "status": "ALIVE", "cores": 2, "coresused": 1, "memory": 2048,
        "memoryused": 1024, "workers": [
            {"id": "worker-1", "host": "127.0.0.1", "port": 4242, "state": "ALIVE", "cores": 1, "coresused": 1,
             "memory": 1024, "memoryused": 1024},
            {"id": "worker-0", "host": "127.0.0.1", "port": 4241, "state": "DEAD", "cores": 1, "coresused": 0,
             "memory": 1024, "memoryused": 0},
        ]})
    assert [worker.id for worker in status.alive_workers] == ["worker-1"]
    assert (status.cores, status.cores_used, status.memory_mb) == (2, 1, 2048)
    with pytest.raises(NotAMaster):
        parse_master_status({"spark": "a driver's page"})


async def test_a_ui_urls_password_is_in_no_probe_reason_view_or_health_message():
    from dataharbour_ext.services.cluster_views import ClusterViews
    from dataharbour_ext.services.clusters import Cluster, ClusterService
    from dataharbour_ext.services.health.check import Unhealthy
    from dataharbour_ext.services.health.spark_standalone import StandaloneSparkCheck
    from dataharbour_ext.spark.master_probe import probe_master
    from dataharbour_ext.spark.standalone import free_port

    ui_url = f"http://admin:hunter2@127.0.0.1:{free_port()}"  # nothing listens there

    async def no_status(url):
        return None

    state, reason = await probe_master("spark://127.0.0.1:7077", ui_url, no_status, 1.0)
    assert state == "unknown" and "hunter2" not in reason and "admin:********@127.0.0.1" in reason

    class Counts:  # the job store's part the view reads
        async def run_counts(self, states):
            return {}

    class Config:
        max_concurrent_jobs = 4

    clusters = ClusterService("local[1]")
    cluster = Cluster("external-1", "with a password", "spark://127.0.0.1:7077", ui_url, kind="external")
    clusters.add(cluster, state, f"{reason}; also {ui_url}")
    views = ClusterViews(clusters, Counts(), Config())
    try:
        view = (await views.get(cluster.id)).model_dump(mode="json")
    finally:
        await views.aclose()
    assert "hunter2" not in json.dumps(view) and "admin:********@" in view["reason"]

    check = StandaloneSparkCheck(cluster)
    try:
        with pytest.raises(Unhealthy) as unhealthy:
            await check.probe(1.0)
    finally:
        await check.aclose()
    assert "hunter2" not in str(unhealthy.value) and "admin:********@" in str(unhealthy.value)
    assert "hunter2" not in json.dumps(check.target())


@pytest.mark.parametrize("url, accepted", [
    ("local", True), ("local[1]", True), ("local[*]", True), ("local[2,3]", True),
    ("local[0]", False), ("local[00]", False), ("local[0,2]", False),
])
def test_local_masters_need_a_thread(url, accepted):
    from dataharbour_ext.spark.master_url import check_master_url

    if accepted:
        assert check_master_url(url) == url
    else:
        with pytest.raises(ValueError, match="at least 1 thread"):
            check_master_url(url)


def test_the_daemons_log_config_is_sparks_with_their_own_loggers(tmp_path):
    from dataharbour_ext.spark.log_config import SparkLogConfig
    from dataharbour_ext.spark.standalone import DAEMON_LOG_CONFIG, DaemonLogConfig

    options = DaemonLogConfig(tmp_path).java_options()
    path = tmp_path / "spark-conf" / DAEMON_LOG_CONFIG
    assert options == [f"-Dlog4j2.configurationFile={path}"]
    driver = SparkLogConfig(tmp_path).write().read_text()
    daemons = path.read_text()
    assert daemons.startswith(driver) and "org.apache.spark.deploy.master.Master" in daemons[len(driver):]


def test_a_daemons_secret_goes_to_an_owner_only_properties_file_not_its_command(tmp_path):
    from dataharbour_ext.spark.standalone import daemon_properties, new_auth_conf, write_daemon_folder

    conf = {"spark.driver.host": "127.0.0.1", **new_auth_conf()}
    run_dir = write_daemon_folder(tmp_path / "master", ["spark-class", "Master"], {}, stop_grace_seconds=1,
                                  niceness=0, properties=daemon_properties(conf))
    properties = run_dir / "daemon.properties"
    assert properties.stat().st_mode & 0o777 == 0o600
    assert properties.read_text() == (f"spark.authenticate=true\n"
                                      f"spark.authenticate.secret={conf['spark.authenticate.secret']}\n")
    command = (run_dir / "command.json").read_text()
    assert conf["spark.authenticate.secret"] not in command and f'"--properties-file", "{properties}"' in command


@pytest.mark.parametrize("state, reason, status, said", [
    ("starting", None, "disabled", "the cluster is starting"),
    ("stopped", "its master and workers ended while the server was down", "disabled",
     "the cluster is stopped: its master and workers ended while the server was down"),
    ("failed", "master ended: the master's port 7077 is taken", "unhealthy",
     "the cluster failed: master ended: the master's port 7077 is taken"),
])
async def test_a_launched_cluster_that_is_not_running_is_reported_in_its_launchers_words(state, reason, status, said):
    from dataharbour_ext.services.clusters import Cluster, ClusterCondition
    from dataharbour_ext.services.health import spark_cluster_check
    from dataharbour_ext.spark.standalone import free_port

    cluster = Cluster("standalone-1", "mine", "spark://127.0.0.1:7077", f"http://127.0.0.1:{free_port()}",
                      kind="standalone")
    check = spark_cluster_check(cluster, lambda cluster_id: ClusterCondition(state, reason))
    try:
        found = await check.run(2.0)
    finally:
        await check.aclose()
    assert (found.status, found.reason) == (status, said)
