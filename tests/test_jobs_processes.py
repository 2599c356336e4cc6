"""Process hygiene: nothing of a run outlives it, launches happen once, the UI proxy
only reaches the run's own driver."""

import asyncio
import http.server
import threading

import psutil
import pytest

from dataharbour_ext.services import jobs as jobs_module
from dataharbour_ext.spark import process_group


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


@pytest.mark.parametrize("dataharbour_config", [{"kill_grace_seconds": 2.0}])
async def test_kill_waits_for_processes_that_ignore_sigterm(api, extension):
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('stubborn', flush=True)\ntime.sleep(600)\n"
    job = await api.submit(name="stubborn", code=code)
    for _ in range(100):
        if "stubborn" in "\n".join((await api.logs(job["id"]))["lines"]):
            break
        await asyncio.sleep(0.2)
    pgid = extension.store.get_run(job["id"], 1).pid
    assert len(process_group.members(pgid)) >= 3  # supervisor, JVM, Python driver

    kill = asyncio.ensure_future(api.call("POST", f"jobs/{job['id']}/kill"))
    await asyncio.sleep(1.0)  # SIGTERM sent; the Python driver shrugs it off
    status, body = await api.call("POST", f"jobs/{job['id']}/restart")
    assert status == 409, body
    status, body = await api.call("POST", f"jobs/{job['id']}/kill")
    assert status == 409 and "being killed" in body["message"]
    assert (await api.job(job["id"]))["state"] != "killed"  # not while its processes live

    status, killed = await kill
    assert status == 200 and killed["state"] == "killed" and killed["attempt"] == 1
    assert process_group.members(pgid) == []


@pytest.mark.parametrize("dataharbour_config", [{"max_concurrent_jobs": 0}])
async def test_a_failed_launch_starts_every_other_run_once(api, extension, monkeypatch):
    jobs = [await api.submit(name=f"q{i}", code=f"print('ran {i}')\n") for i in range(3)]
    launches = []
    real_launch = jobs_module.process_group.launch_supervisor

    def flaky_launch(run_dir, log_path):
        launches.append(run_dir)
        if len(launches) == 1:
            raise OSError(11, "Resource temporarily unavailable")
        return real_launch(run_dir, log_path)

    monkeypatch.setattr(jobs_module.process_group, "launch_supervisor", flaky_launch)
    extension.jobs.config.max_concurrent_jobs = 3
    extension.jobs._start_queued()
    assert sorted(launches) == sorted(set(launches)) and len(launches) == 3
    states = [(await api.wait(job["id"]))["state"] for job in jobs]
    assert states == ["failed", "succeeded", "succeeded"]
    failed = await api.job(jobs[0]["id"])
    assert "could not start the run supervisor" in failed["error"]


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


async def test_proxy_refuses_a_port_the_run_does_not_own(api, foreign_server):
    code = (
        "import time\n"
        f"print(\"INFO Utils: Successfully started service 'SparkUI' on port {foreign_server}.\")\n"
        "print('INFO BlockManager: Initialized BlockManager: BlockManagerId(driver, x, 1, None)', flush=True)\n"
        "time.sleep(600)\n"
    )
    job = await api.submit(name="pretender", code=code)
    await api.wait(job["id"], states={"running"})
    status, body = await api.call("GET", f"jobs/{job['id']}/spark-ui")
    assert status == 409 and "listens" in body["message"]
    status, body = await api.call("GET", f"jobs/{job['id']}/spark-ui/proxy/")
    assert status == 409 and "not a Spark UI" not in body
