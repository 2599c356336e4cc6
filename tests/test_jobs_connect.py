"""Warm jobs (`"mode": "connect"`) on a real Spark Connect server, through the jobs API: the same
job as in batch mode (states, logs, kill, restart, progress, error summary), run by warm
workers of the cluster's pool, each job in its own session.

One server for the whole scenario: a Connect server start costs ~10 s on two busy cores."""

import asyncio
import os
import time

import psutil
import pytest

CONNECT = {"default_job_mode": "auto", "warm_pool_size": 2, "connect_idle_timeout": 0}  # jobs naming no mode go warm

VIEW_JOB = """
import sys, time
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
label = sys.argv[1]
spark.createDataFrame([(label, int(sys.argv[2]))], "label string, n int").createOrReplaceTempView("mine")
time.sleep(1.5)  # both jobs hold their view at once
row = spark.sql("select label, n from mine").collect()
print("VIEW", label, [tuple(r) for r in row], spark.conf.get("spark.sql.shuffle.partitions"), flush=True)
"""

LONG_JOB = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("LONG started", flush=True)
spark.range(10**12).selectExpr("max(id)").collect()
"""


def _processes_of(supervisor_pid: int) -> list[psutil.Process]:
    try:
        supervisor = psutil.Process(supervisor_pid)
        return [supervisor, *supervisor.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


async def _wait_for_line(api, job_id: str, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in await api.full_log(job_id):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{text!r} not in the log of {job_id}")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("dataharbour_config", [CONNECT])
async def test_warm_jobs_behave_like_batch_jobs_in_sessions_of_their_own(api, extension):
    # Two at once, each with its own temp view and SQL conf, each log holding only its own output.
    first = await api.submit(name="view a", code=VIEW_JOB, args=["a", "1"],
                             conf={"spark.sql.shuffle.partitions": "3"})
    second = await api.submit(name="view b", code=VIEW_JOB, args=["b", "2"])
    assert first["mode"] == "connect" and first["requested_mode"] is None
    done = [await api.wait(job["id"]) for job in (first, second)]
    assert [job["state"] for job in done] == ["succeeded", "succeeded"], done
    log_a, log_b = await api.full_log(first["id"]), await api.full_log(second["id"])
    assert "VIEW a [('a', 1)] 3" in log_a and "VIEW b" not in log_a, log_a
    assert "VIEW b [('b', 2)] 200" in log_b and "VIEW a" not in log_b, log_b
    assert done[0]["runs"][0]["mode"] == "connect" and done[0]["progress"]["jobs"]["done"] >= 1

    # Once warm, a job is back in well under the seconds a batch run needs (not asserted:
    # timing goals live in bench/); here only that it succeeds through a ready worker.
    quick = await api.submit(name="quick", code="print('QUICK', 6 * 7)\n")
    assert (await api.wait(quick["id"]))["state"] == "succeeded"
    assert "QUICK 42" in await api.full_log(quick["id"])

    # A failing job: its exception line is the summary.
    failing = await api.submit(name="fails", code="raise ValueError('bad input')\n")
    failed = await api.wait(failing["id"])
    assert (failed["state"], failed["error"]) == ("failed", "ValueError: bad input"), failed

    # What Spark Connect cannot do fails with Spark's error and the advice to run it batch.
    rdd = await api.submit(name="rdd", code="from pyspark.sql import SparkSession\n"
                                            "SparkSession.builder.getOrCreate().sparkContext.parallelize([1])\n")
    rdd_failed = await api.wait(rdd["id"])
    assert rdd_failed["state"] == "failed" and "JVM_ATTRIBUTE_NOT_SUPPORTED" in rdd_failed["error"]
    assert '"mode": "batch"' in rdd_failed["error"], rdd_failed
    batch = await api.submit(name="rdd in batch", mode="batch", code=(
        "from pyspark.sql import SparkSession\n"
        "print('RDD', SparkSession.builder.getOrCreate().sparkContext.parallelize([1, 2]).sum())\n"))
    assert batch["mode"] == "batch"

    # Kill: the job's Spark work is interrupted, nothing of its run is left, and the
    # Connect server serves the next job.
    long = await api.submit(name="long", code=LONG_JOB)
    await _wait_for_line(api, long["id"], "LONG started")
    # Killed once its Spark job runs (its progress shows tasks at work): a kill in the instant
    # the query is being planned can miss the Spark job it goes on to start (see the README).
    deadline = time.monotonic() + 120
    running = await api.job(long["id"])
    while not ((running.get("progress") or {}).get("tasks", {}).get("active")) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        running = await api.job(long["id"])
    assert running["state"] == "running" and running["progress"]["tasks"]["active"] > 0, running
    run = await extension.jobs.store.get_run(long["id"], 1)
    processes = _processes_of(run.pid)
    assert processes, "the run's supervisor and worker"
    status, killed = await api.call("POST", f"jobs/{long['id']}/kill")
    assert status == 200 and killed["state"] == "killed", killed
    assert not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    after_kill = await api.submit(name="after kill", code=(
        "from pyspark.sql import SparkSession\n"
        "print('COUNT', SparkSession.builder.getOrCreate().range(3).count())\n"))
    assert (await api.wait(after_kill["id"]))["state"] == "succeeded", "the killed job left no Spark work behind"
    assert "COUNT 3" in await api.full_log(after_kill["id"])

    # Restart: a second attempt, through a fresh worker.
    status, restarted = await api.call("POST", f"jobs/{quick['id']}/restart")
    assert status == 202 and restarted["attempt"] == 2, restarted
    again = await api.wait(quick["id"])
    assert again["state"] == "succeeded" and "QUICK 42" in await api.full_log(quick["id"], attempt=2)
    assert (await api.wait(batch["id"]))["state"] == "succeeded"
    assert "RDD 3" in await api.full_log(batch["id"])

    # The Connect server is a monitored service with its logs; its crash is survived.
    status, services = await api.call("GET", "monitoring/services")
    (service,) = [s for s in services["services"] if s["name"] == "connect:spark-cluster-default"]
    assert service["status"] == "healthy" and service["kind"] == "spark_connect", service
    status, logs = await api.call("GET", "monitoring/services/connect:spark-cluster-default/logs")
    assert status == 200 and any("Spark Connect server started at" in line for line in logs["lines"]), logs
    jvm = extension.connect_servers.status("spark-cluster-default").pid
    os.kill(jvm, 9)
    after_crash = await api.submit(name="after crash", code="print('ALIVE', 1 + 1)\n")
    assert (await api.wait(after_crash["id"], timeout=240))["state"] == "succeeded"
    assert "ALIVE 2" in await api.full_log(after_crash["id"])


@pytest.mark.parametrize("dataharbour_config", [{"default_job_mode": "batch"}])
async def test_connect_mode_is_refused_where_the_cluster_cannot_have_a_connect_server(api, extension):
    status, cluster = await api.call("POST", "clusters/", {"name": "yarn", "kind": "external", "master_url": "yarn"})
    assert status == 201, cluster
    status, error = await api.call("POST", "jobs/", {"name": "warm", "code": "print(1)", "mode": "connect",
                                                     "cluster_id": cluster["id"]})
    assert status == 400 and "connect mode is not available" in error["message"], error
    status, error = await api.call("POST", "jobs/", {"name": "warm", "code": "print(1)", "mode": "warm"})
    assert status == 400 and "mode" in error["message"], error


GATED_WARM_JOB = """
import os, time
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("started", spark.range(10).count(), flush=True)
for _ in range(3000):
    if os.path.exists("warm.go"):
        break
    time.sleep(0.1)
print("finished after the restart", spark.range(5).count(), flush=True)
"""


@pytest.mark.timeout(600)
def test_a_warm_job_outlives_a_server_sigkill_and_ends_truthfully(tmp_path):
    from server_process import TERMINAL, ServerProcess, stop_runs_under

    server = ServerProcess(str(tmp_path))
    try:
        server.start()
        job = server.request("POST", "/api/v1/jobs/", {"name": "warm survivor", "code": GATED_WARM_JOB,
                                                       "mode": "connect"})
        assert job["mode"] == "connect"
        server.wait(job["id"], {"running"})
        server.wait_for_line(job["id"], "started 10")
        server.kill()  # the warm job and its Connect server run on
        server.start()
        assert server.request("GET", f"/api/v1/jobs/{job['id']}")["state"] == "running"  # re-attached
        open(os.path.join(server.root, "warm.go"), "w").close()
        done = server.wait(job["id"], TERMINAL, timeout=120)
        log = "\n".join(server.request("GET", f"/api/v1/jobs/{job['id']}/logs?limit=100000")["lines"])
        assert done["state"] == "succeeded", (done, log)
        assert "started 10" in log and "finished after the restart 5" in log
    finally:
        server.stop()  # a clean stop: the Connect server goes with it
        server.kill()
        stop_runs_under(str(tmp_path))
