"""Process hygiene: nothing of a run outlives it, launches happen once, the UI proxy
only reaches the run's own driver."""

import asyncio
import http.server
import json
import os
import threading
import time

import psutil
import pytest

from dataharbour_ext.runs.identity import ProcessIdentity
from dataharbour_ext.runs.process import descendants


async def run_tree(extension, job_id: str, attempt: int = 1) -> list[ProcessIdentity]:
    """The run's supervisor and every live process below it."""
    run = await extension.store.get_run(job_id, attempt)
    supervisor = ProcessIdentity(run.pid, run.pid_start_ticks, run.pid_boot_id)
    return [supervisor, *descendants(run.pid)] if supervisor.matches() else []


def _processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(process.info["cmdline"] or ()):
            found.append(process)
    return found


async def test_background_processes_do_not_outlive_the_run(api):
    code = "import subprocess\nsubprocess.Popen(['sleep', '4321.5'])\nprint('left a sleeper behind')\n"
    job = await api.submit(name="leaves a child", code=code)
    done = await api.wait(job["id"])
    assert done["state"] == "succeeded"
    assert _processes_with("sleep 4321.5") == []


STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("stubborn", flush=True)
time.sleep(600)
"""


async def wait_for_line(api, job_id: str, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in "\n".join((await api.logs(job_id, stream="stdout"))["lines"]):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} never printed {text!r}")


@pytest.mark.parametrize("dataharbour_config", [{"kill_grace_seconds": 10.0}])
async def test_kill_waits_for_processes_that_ignore_sigterm(api, extension):
    job = await api.submit(name="stubborn", code=STUBBORN)
    await wait_for_line(api, job["id"], "stubborn")
    tree = await run_tree(extension, job["id"])
    assert len(tree) >= 3  # supervisor, JVM, Python driver

    kill = asyncio.ensure_future(api.call("POST", f"jobs/{job['id']}/kill"))
    deadline = time.monotonic() + 30
    while not (await extension.store.get_run(job["id"], 1)).kill_requested:  # the kill is under way
        assert time.monotonic() < deadline and not kill.done()
        await asyncio.sleep(0.05)
    status, body = await api.call("POST", f"jobs/{job['id']}/restart")
    assert status == 409, body
    status, body = await api.call("POST", f"jobs/{job['id']}/kill")
    assert status == 409 and body["message"] == f"job {job['id']} is already being killed"
    assert (await api.job(job["id"]))["state"] == "starting"  # not killed while its processes live (no Spark: never running)
    assert any(process.matches() for process in tree[1:])

    status, killed = await kill
    assert status == 200 and killed["state"] == "killed" and killed["attempt"] == 1
    assert not any(process.matches() for process in tree)


@pytest.mark.parametrize("dataharbour_config", [{"max_concurrent_jobs": 0}])
async def test_a_failed_launch_fails_that_job_and_the_queue_moves_on(api, extension, monkeypatch):
    jobs = [await api.submit(name=f"q{i}", code=f"print('ran {i}')\n") for i in range(3)]
    backend = extension.jobs.backends["spark-submit"]
    launches = []
    real_launch = backend.launch

    async def flaky_launch(run, cluster):
        launches.append(run.run_dir)
        if run.job_id == jobs[0]["id"]:  # runs launch side by side: fail a given one, not the first called
            raise OSError(11, "Resource temporarily unavailable")
        return await real_launch(run, cluster)

    monkeypatch.setattr(backend, "launch", flaky_launch)
    extension.jobs.config.max_concurrent_jobs = 3
    extension.jobs.engine.request_admission()
    states = [(await api.wait(job["id"]))["state"] for job in jobs]
    assert states == ["failed", "succeeded", "succeeded"]
    assert sorted(launches) == sorted(set(launches)) and len(launches) == 3  # each launched once
    failed = await api.job(jobs[0]["id"])
    assert "could not launch the run" in failed["error"] and "temporarily unavailable" in failed["error"]


async def test_a_run_folder_that_cannot_be_written_fails_that_job(api, extension, tmp_path):
    runs_dir = extension.jobs.config.runs_dir
    (tmp_path / "a-file").write_text("not a folder")
    extension.jobs.config.runs_dir = str(tmp_path / "a-file" / "runs")  # mkdir fails, even for root
    job = await api.submit(name="nowhere", code="print('never')\n")
    done = await api.wait(job["id"])
    assert done["state"] == "failed" and "cannot write the run folder" in done["error"]
    extension.jobs.config.runs_dir = runs_dir
    after = await api.submit(name="after", code="print('fine')\n")
    assert (await api.wait(after["id"]))["state"] == "succeeded"


async def test_a_stored_record_that_cannot_be_written_fails_only_that_run(api, extension):
    """Start-up and the queue survive any stored record: here conf that cannot be encoded."""
    from sqlalchemy import text

    job = await api.submit(name="poisoned", code="print('x')\n", conf={"spark.a": "placeholder"})
    await api.wait(job["id"])
    with extension.store.engine.begin() as connection:
        connection.execute(text("UPDATE jobs SET conf = :conf WHERE id = :id"),
                           {"conf": '{"spark.a": "\\ud800"}', "id": job["id"]})
    status, restarted = await api.call("POST", f"jobs/{job['id']}/restart")
    assert status == 202, restarted
    done = await api.wait(job["id"])
    assert done["state"] == "failed" and "UTF-8" in done["error"]
    status, listing = await api.call("GET", "jobs/")
    assert status == 200 and listing["total"] == 1
    later = await api.submit(name="later", code="print('fine')\n")
    assert (await api.wait(later["id"]))["state"] == "succeeded"


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"not a Spark UI")

    def log_message(self, *args):
        pass


@pytest.fixture
def foreign_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


async def test_proxy_refuses_a_port_the_run_does_not_own(api, extension, foreign_server):
    job = await api.submit(name="pretender", code="import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    deadline = time.monotonic() + 60
    while (run := await extension.store.get_run(job["id"], 1)).pid is None:  # launched: its folder is ready
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    # What a program could write as well: the engine's signals file, naming a foreign port.
    with open(os.path.join(run.run_dir, "spark.json"), "w") as f:
        json.dump({"app_id": "local-1", "ui_url": f"http://127.0.0.1:{foreign_server}", "ready_at": time.time()}, f)
    await api.wait(job["id"], states={"running"})
    status, body = await api.call("GET", f"jobs/{job['id']}/spark-ui")
    assert status == 409 and "listens" in body["message"]
    status, body = await api.call("GET", f"jobs/{job['id']}/spark-ui/proxy/")
    assert status == 409 and "not a Spark UI" not in body


@pytest.mark.parametrize("dataharbour_config", [{"max_concurrent_jobs": 2}])
async def test_killing_every_job_at_once_leaves_no_process(api, extension):
    """Kills free slots, and the queue claims the next runs while their own kills are in
    flight: each of them must still end `killed` with nothing left running."""
    code = "import time\nprint('up', flush=True)\ntime.sleep(600)\n"
    for round_ in range(2):
        jobs = [await api.submit(name=f"k{round_}-{i}", code=code) for i in range(8)]
        await api.wait(jobs[0]["id"], states={"running", "starting"})
        results = await asyncio.gather(*[api.call("POST", f"jobs/{job['id']}/kill") for job in jobs])
        assert [(status, body["state"]) for status, body in results] == [(200, "killed")] * 8, results
    runs_dir = extension.jobs.config.runs_dir
    assert _processes_with(runs_dir) == []


@pytest.mark.parametrize("dataharbour_config", [{"max_concurrent_jobs": 0}])
async def test_runs_of_a_silent_server_on_another_host_end_lost(api, extension):
    """A server on another host that stops reporting (its machine died) leaves runs this
    host cannot reach: they end `lost` after the owner timeout, freeing their slots. A
    server on another host that still reports is left alone."""
    from datetime import timedelta

    from dataharbour_ext.services.clock import utcnow
    from dataharbour_ext.store import Owner

    silent = await api.submit(name="on a dead laptop", code="print('x')\n")
    alive = await api.submit(name="on a live laptop", code="print('x')\n")
    long_ago = utcnow() - timedelta(hours=1)
    for job, seen in ((silent, long_ago), (alive, utcnow())):
        owner = Owner(host="laptop/other-machine/1", boot_id="b", instance=job["id"], pid=1, start_ticks=1)
        run = await extension.store.claim_next(owner, {}, 10, now=seen)
        assert run is not None
    await extension.jobs.engine._adopt_orphans()
    lost = await api.job(silent["id"])
    assert lost["state"] == "lost" and "its server on laptop stopped reporting" in lost["error"]
    assert (await api.job(alive["id"]))["state"] == "starting"
    # Not ours to kill: end it here so that the test's clean-up has nothing to wait for.
    assert await extension.store.transition(alive["id"], 1, ("starting",), "lost", now=utcnow())
