"""Kill, restart, queueing, listing and the driver UI, on real spark-submit runs."""

import asyncio
import time

import pytest
from test_jobs_processes import run_tree

LONG_SPARK_JOB = """
import time
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("rows", spark.range(1000).count(), flush=True)
time.sleep(600)
"""


async def test_driver_ui_proxy_and_kill_leave_no_process(api, extension):
    job = await api.submit(name="long", code=LONG_SPARK_JOB)
    status, body = await api.call("GET", f"jobs/{job['id']}/spark-ui")
    assert status == 409 and "not up yet" in body["message"]  # the JVM takes seconds to start

    running = await api.wait(job["id"], states={"running"}, timeout=120)
    assert running["spark_app_id"].startswith("local-")  # from the run's own signals file
    status, ui = await api.call("GET", f"jobs/{job['id']}/spark-ui")
    assert status == 200, ui
    assert ui["url"].startswith("http://127.0.0.1:") and ui["proxy_url"].endswith(f"/jobs/{job['id']}/spark-ui/proxy/")
    for _ in range(50):  # `running` can come a moment before the UI leaves its start-up page
        status, page = await api.call("GET", f"jobs/{job['id']}/spark-ui/proxy/jobs/")
        if "Spark Jobs" in page:
            break
        await asyncio.sleep(0.2)
    assert status == 200 and "Spark Jobs" in page
    redirect = await api.fetch("api", "v1", "jobs", job["id"], "spark-ui", "proxy", "jobs", follow_redirects=False,
                               raise_error=False)
    assert redirect.code in (301, 302, 307, 308)  # the driver's own redirect (Spark 4.0: 302, 4.3: 301) ...
    assert redirect.headers["Location"] == f"{ui['proxy_url']}jobs/"  # ... kept inside the proxy
    assert f"/jobs/{job['id']}/spark-ui/proxy/static/" in page  # links stay inside the proxy

    tree = await run_tree(extension, job["id"])
    assert len(tree) >= 3  # supervisor, driver JVM, Python driver
    status, killed = await api.call("POST", f"jobs/{job['id']}/kill")
    assert status == 200, killed
    assert killed["state"] == "killed" and killed["finished_at"]
    assert not any(process.matches() for process in tree)

    status, body = await api.call("POST", f"jobs/{job['id']}/kill")
    assert status == 409 and body["message"] == f"job {job['id']} has already been killed"
    status, body = await api.call("GET", f"jobs/{job['id']}/spark-ui")
    assert status == 410


async def test_restart_makes_a_new_attempt_and_keeps_old_logs(api):
    job = await api.submit(name="twice", code="import os\nprint('run marker', os.getpid())\n")
    assert (await api.wait(job["id"]))["state"] == "succeeded"
    first_log = await api.full_log(job["id"])

    status, restarted = await api.call("POST", f"jobs/{job['id']}/restart")
    assert status == 202 and restarted["attempt"] == 2
    status, body = await api.call("POST", f"jobs/{job['id']}/restart")
    assert status == 409  # still queued/starting/running

    done = await api.wait(job["id"])
    assert done["state"] == "succeeded" and done["attempt"] == 2
    assert [run["attempt"] for run in done["runs"]] == [1, 2]
    assert [run["state"] for run in done["runs"]] == ["succeeded", "succeeded"]
    assert await api.full_log(job["id"], attempt=1) == first_log
    second_log = await api.full_log(job["id"], attempt=2)
    assert "run marker" in second_log and second_log != first_log
    status, body = await api.call("GET", f"jobs/{job['id']}/logs", params={"attempt": 3})
    assert status == 404


async def test_kill_queued_job_and_restart_killed_job(api, extension):
    extension.jobs.config.max_concurrent_jobs = 1
    blocker = await api.submit(name="blocker", code="import time\ntime.sleep(600)\n")
    queued = await api.submit(name="waiting", code="print('finally ran')\n")
    assert (await api.job(queued["id"]))["state"] == "queued"
    status, killed = await api.call("POST", f"jobs/{queued['id']}/kill")
    assert status == 200 and killed["state"] == "killed" and killed["exit_code"] is None

    status, _ = await api.call("POST", f"jobs/{blocker['id']}/kill")
    assert status == 200
    status, again = await api.call("POST", f"jobs/{queued['id']}/restart")
    assert status == 202
    done = await api.wait(queued["id"])
    assert done["state"] == "succeeded" and "finally ran" in await api.full_log(queued["id"])


@pytest.mark.parametrize("dataharbour_config", [{"max_concurrent_jobs": 2}])
async def test_queue_never_exceeds_the_cluster_limit(api, extension):
    active_counts, states = [], {}

    def count_active(event):
        states[event.data["id"]] = event.data["state"]
        active_counts.append(sum(state in ("starting", "running") for state in states.values()))

    extension.hub.subscribe(count_active)
    jobs = [await api.submit(name=f"queued {i}", code=f"import time\ntime.sleep(1)\nprint('job {i} done')\n") for i in range(5)]
    assert [job["state"] for job in jobs].count("queued") >= 3
    finished = [await api.wait(job["id"]) for job in jobs]
    assert [job["state"] for job in finished] == ["succeeded"] * 5
    assert max(active_counts) == 2
    starts = [job["started_at"] for job in finished]
    assert starts == sorted(starts)  # first in, first out
    for i, job in enumerate(jobs):
        assert f"job {i} done" in await api.full_log(job["id"])


async def test_list_filters_sorts_and_pages(api):
    ok = [await api.submit(name=f"etl nightly {i}", code="print('ok')\n") for i in range(3)]
    bad = await api.submit(name="Report weekly", code="raise SystemExit(3)\n")
    for job in [*ok, bad]:
        await api.wait(job["id"])

    status, page = await api.call("GET", "jobs/")
    assert status == 200 and page["total"] == 4 and len(page["jobs"]) == 4
    assert [j["id"] for j in page["jobs"]] == [bad["id"], *[j["id"] for j in reversed(ok)]]  # newest first
    assert "code" not in page["jobs"][0] and "runs" not in page["jobs"][0]  # details only on GET /jobs/{id}

    _, page = await api.call("GET", "jobs/", params={"state": "failed"})
    assert [j["id"] for j in page["jobs"]] == [bad["id"]] and page["jobs"][0]["exit_code"] == 3
    _, page = await api.call("GET", "jobs/", params={"state": "failed,succeeded", "name": "NIGHTLY"})
    assert page["total"] == 3
    _, page = await api.call("GET", "jobs/", params={"sort": "name", "order": "asc", "limit": 2, "offset": 1})
    assert page["total"] == 4 and [j["name"] for j in page["jobs"]] == ["etl nightly 1", "etl nightly 2"]
    _, page = await api.call("GET", "jobs/", params={"cluster_id": "elsewhere"})
    assert page["total"] == 0 and page["jobs"] == []
    for params in ({"state": "exploded"}, {"limit": 0}, {"offset": -1}, {"sort": "color"}, {"colour": "red"}):
        status, body = await api.call("GET", "jobs/", params=params)
        assert status == 400, (params, body)
        assert next(iter(params)) in body["message"]


async def test_logs_page_and_tail_while_running_and_after(api, jp_root_dir):
    # The program waits for a gate file in its working directory (the Jupyter root): the
    # test, not a clock, decides how long it runs.
    code = (
        "import os, time\n"
        "for i in range(3000):\n"
        "    print(f'line {i:05d}')\n"
        "while not os.path.exists('chatty.go'):\n"
        "    time.sleep(0.05)\n"
        "for i in range(3000, 5000):\n"
        "    print(f'line {i:05d}')\n"
    )
    job = await api.submit(name="chatty", code=code)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        tail = await api.logs(job["id"], tail=1)
        if tail["lines"] == ["line 02999"]:
            break
        await asyncio.sleep(0.2)
    assert tail["lines"] == ["line 02999"] and not tail["complete"]  # read while it runs
    (jp_root_dir / "chatty.go").touch()

    done = await api.wait(job["id"])
    assert done["state"] == "succeeded"
    tail = await api.logs(job["id"], tail=10)
    full = (await api.full_log(job["id"])).split("\n")
    assert len(tail["lines"]) == 10 and tail["lines"] == full[-10:]
    assert "line 04999" in tail["lines"]  # spark-submit's own shutdown lines may follow
    assert tail["next_offset"] == tail["size"] and tail["complete"]

    collected, offset, pages = [], 0, 0
    while True:
        page = await api.logs(job["id"], offset=offset, limit=700)
        assert len(page["lines"]) <= 700 and page["offset"] == offset
        collected += page["lines"]
        offset, pages = page["next_offset"], pages + 1
        if page["complete"]:
            break
        assert pages < 100
    numbered = [line for line in collected if line.startswith("line ")]
    assert numbered == [f"line {i:05d}" for i in range(5000)]
    assert pages >= 8

    status, body = await api.call("GET", f"jobs/{job['id']}/logs", params={"tail": 0})
    assert status == 400 and "tail" in body["message"]
