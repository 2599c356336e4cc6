"""Deleting jobs, what a user reads in the log (WARN by default, stdout alone), and kills
that arrive right after a submit."""

import json
import os

import pytest
from test_jobs_processes import run_tree

SPARK_SHOW = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
spark.range(3).show()
print("to stderr", file=sys.stderr)
"""


async def test_delete_a_finished_job_removes_it_and_its_run_folders(api, extension):
    job = await api.submit(name="short-lived", code="print('bye')\n")
    await api.wait(job["id"])
    run_folder = os.path.join(extension.jobs.config.runs_dir, job["id"])
    assert os.path.isdir(run_folder)
    status, _ = await api.call("DELETE", f"jobs/{job['id']}")
    assert status == 204
    status, body = await api.call("GET", f"jobs/{job['id']}")
    assert status == 404
    assert not os.path.exists(run_folder)
    status, body = await api.call("DELETE", f"jobs/{job['id']}")
    assert status == 404


async def test_delete_of_a_running_job_needs_force(api, extension):
    job = await api.submit(name="busy", code="import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    await api.wait(job["id"], states={"starting", "running"})
    status, body = await api.call("DELETE", f"jobs/{job['id']}")
    assert status == 409 and "force=true" in body["message"]
    assert (await api.job(job["id"]))["state"] in ("starting", "running")
    tree = await run_tree(extension, job["id"])
    status, body = await api.call("DELETE", f"jobs/{job['id']}", params={"force": "true"})
    assert status == 204, body
    assert not any(process.matches() for process in tree)
    status, _ = await api.call("GET", f"jobs/{job['id']}")
    assert status == 404
    status, body = await api.call("DELETE", f"jobs/{job['id']}", params={"force": "maybe"})
    assert status == 400 and "force" in body["message"]


async def test_the_log_shows_the_programs_output_and_warnings_not_spark_info(api, extension):
    job = await api.submit(name="quiet", code=SPARK_SHOW, conf={"spark.sql.shuffle.partitions": 2})
    done = await api.wait(job["id"])
    assert done["state"] == "succeeded" and done["spark_app_id"].startswith("local-")
    log = await api.full_log(job["id"])
    assert "|  0|" in log and "to stderr" in log
    assert " INFO " not in log
    run_dir = os.path.join(extension.jobs.config.runs_dir, job["id"], "1")
    files = sorted(os.listdir(run_dir))
    assert {"job.py", "spark.properties", "command.json", "spark.json", "output.log", "exit.json"} <= set(files)
    assert os.stat(run_dir).st_mode & 0o777 == 0o700
    folders = {"inputs", "output"}  # DATAHARBOUR_INPUT_DIR and DATAHARBOUR_OUTPUT_DIR
    assert folders <= set(files)
    assert {name: os.stat(os.path.join(run_dir, name)).st_mode & 0o777 for name in files} == {
        name: 0o700 if name in folders else 0o600 for name in files}


async def test_a_job_can_ask_for_spark_info_and_still_read_its_own_output_alone(api):
    job = await api.submit(name="chatty spark", code=SPARK_SHOW, log_level="info")
    assert (await api.wait(job["id"]))["state"] == "succeeded"
    assert " INFO SparkContext: " in await api.full_log(job["id"])
    # The program's own output (PySpark's driver merges its stdout and stderr), no Spark logging.
    own = await api.logs(job["id"], stream="stdout", limit=1000)
    assert own["stream"] == "stdout" and "|  2|" in own["lines"] and "to stderr" in own["lines"]
    assert not [line for line in own["lines"] if " INFO " in line]
    # Offsets of the stdout stream resume exactly: two halves make the whole.
    first = await api.logs(job["id"], stream="stdout", limit=2)
    rest = await api.logs(job["id"], stream="stdout", offset=first["next_offset"], limit=1000)
    assert first["lines"] + rest["lines"] == own["lines"]
    status, body = await api.call("POST", "jobs/", {"name": "x", "code": "pass", "log_level": "LOUD"})
    assert status == 400 and body["message"].startswith("log_level")


@pytest.mark.parametrize("dataharbour_config", [{"kill_grace_seconds": 60.0}])
async def test_a_kill_right_after_submit_is_never_lost(api, extension):
    """The supervisor holds stop requests from its first instruction: a kill that arrives
    while it starts is acted on at once, never after the (here 60 s) grace period."""
    for attempt in range(3):
        job = await api.submit(name=f"killed at once {attempt}", code="import time\ntime.sleep(600)\n")
        status, killed = await api.call("POST", f"jobs/{job['id']}/kill")
        assert status == 200 and killed["state"] == "killed", killed
        run = await extension.store.get_run(job["id"], 1)
        exit_file = os.path.join(run.run_dir, "exit.json")
        if os.path.exists(exit_file):  # the supervisor had started: it recorded the stop itself
            with open(exit_file) as f:
                status = json.load(f)
            assert status["stop_requested"] is True and status["leftovers"] == 0


@pytest.mark.parametrize("dataharbour_config", [{"job_retention_days": 1.0}])
async def test_retention_removes_jobs_that_ended_long_ago(api, extension):
    from sqlalchemy import text

    old = await api.submit(name="old", code="print('old')\n")
    recent = await api.submit(name="recent", code="print('recent')\n")
    for job in (old, recent):
        await api.wait(job["id"])
    with extension.store.engine.begin() as connection:
        connection.execute(text("UPDATE jobs SET updated_at = '2020-01-01 00:00:00' WHERE id = :id"), {"id": old["id"]})
    assert await extension.jobs.retention.remove_expired() == 1
    status, _ = await api.call("GET", f"jobs/{old['id']}")
    assert status == 404
    assert (await api.job(recent["id"]))["state"] == "succeeded"
