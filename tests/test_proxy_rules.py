"""The driver UI proxy's rules: no kill links, honest error statuses, 504 on a slow driver."""

import asyncio
import socket
from types import SimpleNamespace

import pytest
from tornado.simple_httpclient import HTTPTimeoutError

from dataharbour_ext.handlers import spark_ui_proxy
from dataharbour_ext.handlers.spark_ui_proxy import is_forbidden_ui_path, plain_error_body, upstream_failure_status


@pytest.mark.parametrize(
    "path",
    [
        "jobs/job/kill/",
        "jobs/job/kill",
        "stages/stage/kill/",
        "STAGES/stage/KILL/",
        "jobs//job//kill/",
        "jobs/job/kill;jsessionid=1/",
        "jobs/x/../job/kill/",
        "jobs/./job/kill/",
        "kill",
    ],
)
def test_kill_links_are_forbidden(path):
    assert is_forbidden_ui_path(path)


@pytest.mark.parametrize(
    "path", ["", "jobs/", "jobs/job/", "stages/stage/", "executors/", "api/v1/applications", "static/killer.js",
             "jobs/job/skill/"],
)
def test_read_only_pages_are_forwarded(path):
    assert not is_forbidden_ui_path(path)


def test_upstream_failures_map_to_504_for_timeouts_and_502_otherwise():
    assert upstream_failure_status(HTTPTimeoutError("Timeout during request")) == 504
    assert upstream_failure_status(TimeoutError()) == 504
    assert upstream_failure_status(ConnectionRefusedError()) == 502


@pytest.mark.parametrize(
    ("status", "reason", "body"),
    [
        (410, "Gone", "410 Gone: it ended\n"),
        (404, None, "404 Not Found: it ended\n"),
        (504, None, "504 Gateway Timeout: it ended\n"),
        (599, None, "599 Error: it ended\n"),
    ],
)
def test_error_body_states_the_real_status(status, reason, body):
    assert plain_error_body(status, reason, "it ended") == body


async def test_unknown_job_gets_a_plain_404(api):
    status, body = await api.call("GET", "jobs/nope/spark-ui/proxy/")
    assert status == 404 and body.startswith("404 Not Found: "), body


async def test_kill_link_gets_403_pointing_to_the_kill_endpoint(api, jp_base_url):
    response = await api.fetch("api", "v1", "jobs/some-job/spark-ui/proxy/jobs/job/kill/", params={"id": "1"},
                               raise_error=False)
    body = response.body.decode()
    assert response.code == 403 and response.headers["Content-Type"].startswith("text/plain")
    assert body.startswith("403 Forbidden: ") and "POST " in body and "api/v1/jobs/some-job/kill" in body, body


@pytest.fixture
def silent_driver():
    """A 'driver UI' that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def _serve_ui_at(monkeypatch, extension, url):
    async def live_ui(job_id):
        return SimpleNamespace(job_id=job_id, attempt=1, state="running", url=url, spark_app_id=None)

    monkeypatch.setattr(extension.jobs, "live_ui", live_ui)


async def test_a_driver_that_does_not_answer_in_time_gets_504(api, extension, monkeypatch, silent_driver):
    _serve_ui_at(monkeypatch, extension, silent_driver)
    monkeypatch.setattr(spark_ui_proxy, "UPSTREAM_TIMEOUT_SECONDS", 0.5)
    status, body = await asyncio.wait_for(api.call("GET", "jobs/j1/spark-ui/proxy/jobs/"), 60)
    assert status == 504 and body.startswith("504 Gateway Timeout: the driver UI of job j1 did not answer"), body


async def test_a_driver_that_is_gone_gets_502(api, extension, monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    _serve_ui_at(monkeypatch, extension, f"http://127.0.0.1:{port}")
    status, body = await api.call("GET", "jobs/j1/spark-ui/proxy/jobs/")
    assert status == 502 and body.startswith("502 Bad Gateway: the driver UI of job j1 did not answer"), body
