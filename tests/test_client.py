"""The Python client (dataharbour_ext.client) against a real `jupyter server` with the
extension: every route group, sync and async, error mapping, the live stream's resume, how it
finds the server, and which calls it retries."""

import json
import os
import socket

import nbformat
import pytest
from loopback_http import LoopbackHttp, QuietHandler
from pydantic import ValidationError
from server_process import ServerProcess, stop_runs_under

from dataharbour_ext.client import (
    AsyncDataHarbourClient,
    AsyncStream,
    Conflict,
    ConnectionFailed,
    DataHarbourClient,
    Forbidden,
    Gone,
    InvalidRequest,
    NotFound,
    ServerNotFound,
    ServiceUnavailable,
    find_server,
)
from dataharbour_ext.client.discovery import pick_running_server
from dataharbour_ext.models import (
    CellExecution,
    ClusterInfo,
    DashboardOverview,
    Job,
    JobList,
    JobState,
    JobSubmit,
    LogPage,
    MetricsSample,
    Notebook,
    NotebookSummary,
)

PRINTING_JOB = "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.2)\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real server for the whole module (its start-up is the slow part)."""
    base = str(tmp_path_factory.mktemp("client"))
    # No metrics sampling: its messages would interleave with the ones the stream tests count.
    server = ServerProcess(base, extra_args=("--DataHarbourApp.metrics_interval=0",))
    server.start()
    yield server
    server.kill()
    stop_runs_under(base)  # runs outlive their server by design


@pytest.fixture
def client(server):
    with DataHarbourClient(f"http://127.0.0.1:{server.port}/", server.token) as client:
        yield client


# ---- jobs ------------------------------------------------------------------------------


def test_jobs_submit_follow_read_restart_and_delete(client):
    job = client.jobs.submit(name="client printing job", code=PRINTING_JOB)
    assert isinstance(job, Job) and job.state == JobState.queued and job.code == PRINTING_JOB

    messages = list(client.jobs.follow(job.id))
    lines = [line for m in messages if m.type == "job_log" for line in m.data["lines"]]
    assert [line for line in lines if line.startswith("line")] == ["line 0", "line 1", "line 2"]
    assert messages[-1].type in ("job_log", "job_update")
    assert any(m.type == "job_log" and m.model().complete for m in messages)

    done = client.jobs.wait(job.id, timeout=60)
    assert done.state == JobState.succeeded and done.exit_code == 0 and len(done.runs) == 1

    listed = client.jobs.list(state="succeeded", name="client printing", limit=5)
    assert isinstance(listed, JobList) and [j.id for j in listed.jobs] == [job.id] and listed.total == 1
    assert client.jobs.list(state=["queued", "running"], name="client printing").total == 0

    page = client.jobs.logs(job.id, stream="stdout")
    assert isinstance(page, LogPage) and page.lines == ["line 0", "line 1", "line 2"] and page.complete
    assert client.jobs.logs(job.id, stream="stdout", offset=page.next_offset).lines == []
    assert client.jobs.tail(job.id, 1, stream="stdout").lines == ["line 2"]

    with pytest.raises(Conflict) as killed:  # error mapping: 409 with the server's words
        client.jobs.kill(job.id)
    assert killed.value.status == 409 and "already succeeded" in killed.value.message
    assert killed.value.reason == "Conflict"
    with pytest.raises(Gone):
        client.jobs.spark_ui(job.id)
    with pytest.raises(NotFound, match="not a notebook job"):
        client.jobs.output(job.id)

    again = client.jobs.restart(job.id)
    assert again.attempt == 2
    assert client.jobs.wait(job.id, timeout=60).runs[-1].state == JobState.succeeded

    assert client.jobs.delete(job.id) is None
    with pytest.raises(NotFound) as missing:
        client.jobs.get(job.id)
    assert missing.value.status == 404 and job.id in missing.value.message and missing.value.reason == "NotFound"


def test_errors_carry_the_servers_status_message_and_reason(client, server):
    with pytest.raises(InvalidRequest) as bad:  # valid for the model, refused by the server
        client.jobs.submit(JobSubmit(name="x" * 300, code="print(1)"))
    assert bad.value.status == 400 and bad.value.message == "name: must be at most 200 characters"
    assert bad.value.reason == "InvalidInput"
    with pytest.raises(ValidationError):  # refused before it is sent
        client.jobs.submit(name="bad mode", code="print(1)", mode="warp")
    with pytest.raises(TypeError):
        client.jobs.submit(JobSubmit(name="a", code="b"), name="both")

    with DataHarbourClient(f"http://127.0.0.1:{server.port}/", "not-the-token") as stranger:
        with pytest.raises(Forbidden) as refused:
            stranger.jobs.list()
    assert refused.value.status == 403


# ---- notebooks and notebook jobs -------------------------------------------------------


def test_notebooks_and_a_notebook_job_with_parameters(client):
    notebook = client.notebooks.create(name="client report", description="made by the client")
    assert isinstance(notebook, Notebook) and notebook.path == "client report.ipynb" and notebook.cells == []
    defaults = client.notebooks.add_cell(notebook.id, source="region = 'eu'", metadata={"tags": ["parameters"]})
    printing = client.notebooks.add_cell(notebook.id, cell_type="code", source="print('region is', region)")
    note = client.notebooks.add_cell(notebook.id, {"cell_type": "markdown", "source": "a note"})
    client.notebooks.delete_cell(notebook.id, note.id)
    changed = client.notebooks.update(notebook.id, description="changed")
    assert changed.description == "changed" and [c.id for c in changed.cells] == [defaults.id, printing.id]

    executed = client.notebooks.execute_cell(notebook.id, defaults.id, timeout=60)
    assert isinstance(executed, CellExecution) and executed.status == "ok" and executed.execution_count == 1
    assert [n.id for n in client.notebooks.list().notebooks] == [notebook.id]
    script = client.notebooks.export(notebook.id, format="py").decode()
    assert "region = 'eu'" in script and "# %%" in script
    assert nbformat.reads(client.notebooks.export(notebook.id), as_version=4).cells[0].source == "region = 'eu'"

    job = client.jobs.submit(name="client notebook job", notebook=notebook.path, parameters={"region": "us"})
    done = client.jobs.wait(job.id, timeout=120)
    assert done.state == JobState.succeeded, done.error
    output = nbformat.reads(client.jobs.output(job.id), as_version=4)
    printed = [o.text for c in output.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"]
    assert printed == ["region is us\n"]
    assert b"region is us" in client.jobs.output(job.id, format="html")

    imported = client.notebooks.import_notebook("# %%\nx = 1\n\n# %% [markdown]\n# hello\n", format="py",
                                                name="client import")
    assert isinstance(imported, NotebookSummary) and imported.cell_count == 2
    client.notebooks.delete(imported.id)
    client.notebooks.delete(notebook.id)
    with pytest.raises(NotFound):
        client.notebooks.get(notebook.id)
    client.jobs.delete(job.id)


# ---- clusters, monitoring, dashboard ---------------------------------------------------


def test_clusters_monitoring_and_dashboard(client):
    clusters = client.clusters.list()
    assert [c.id for c in clusters.clusters] == ["spark-cluster-default"] and clusters.limits is not None
    assert client.clusters.get("spark-cluster-default").kind == "local"
    registered = client.clusters.register("client external", "local[2]")
    assert isinstance(registered, ClusterInfo) and registered.kind == "external"
    with pytest.raises(Conflict, match="default"):
        client.clusters.delete("spark-cluster-default")
    assert client.clusters.delete(registered.id) is None  # an external one goes at once (204)
    with pytest.raises(NotFound):
        client.clusters.get(registered.id)
    with pytest.raises(ValidationError):
        client.clusters.launch("too small", workers=1, cores_per_worker=1, memory_per_worker="1m")

    assert isinstance(client.monitoring.metrics(), MetricsSample)
    history = client.monitoring.metrics_history(minutes=5)
    assert history.minutes == 5 and history.host
    services = {s.name: s for s in client.monitoring.services().services}
    assert services["jupyter"].status == "healthy"
    assert client.monitoring.service_logs("jupyter", lines=5).name == "jupyter"
    with pytest.raises(NotFound):
        client.monitoring.service_logs("no-such-service")
    overview = client.monitoring.overview()
    assert overview.errors == {} and overview.jobs is not None

    stats = client.dashboard.stats()
    trends = client.dashboard.trends(days=3, tz="Europe/Paris")
    assert trends.tz == "Europe/Paris" and len(trends.points) == 3
    dashboard = client.dashboard.overview(days=2)
    assert isinstance(dashboard, DashboardOverview) and dashboard.stats.total_jobs == stats.total_jobs
    assert "/api/v1/jobs/" in client.openapi()["paths"]


# ---- the async client ------------------------------------------------------------------


async def test_async_client(server, monkeypatch):
    async with AsyncDataHarbourClient(f"http://127.0.0.1:{server.port}", server.token) as client:
        job = await client.jobs.submit({"name": "async job", "code": "print('async', 42)"})

        async def no_stream(self):
            raise ConnectionFailed("no live stream here")

        with monkeypatch.context() as patched:  # where the stream cannot be had, follow polls
            patched.setattr(AsyncStream, "open", no_stream)
            seen = [m async for m in client.jobs.follow(job.id, stream="stdout")]
        assert [line for m in seen if m.type == "job_log" for line in m.data["lines"]] == ["async 42"]
        assert seen[-1].type == "job_log" and seen[-1].model().complete
        assert [m.data["state"] for m in seen if m.type == "job_update"][-1] == "succeeded"

        done = await client.jobs.wait(job.id, timeout=60)
        assert done.state == JobState.succeeded and done.id == job.id
        assert (await client.jobs.list(name="async job")).total == 1
        assert (await client.clusters.get("spark-cluster-default")).id == "spark-cluster-default"
        assert (await client.dashboard.stats()).total_jobs >= 1
        assert (await client.monitoring.services()).services
        with pytest.raises(NotFound):
            await client.notebooks.get("no-such-notebook")

        async with client.stream(control=True) as live:  # the server's default topics
            assert (await live.receive(timeout=30)).data["topics"] == ["jobs", "metrics"]
            await live.subscribe([f"job:{job.id}"])  # added to the defaults, which stay
            assert (await live.receive(timeout=30)).data["topics"] == ["job:" + job.id, "jobs", "metrics"]
            await client.jobs.delete(job.id)
            deleted = await live.receive(timeout=30)
        assert (deleted.type, deleted.data) == ("job_deleted", {"id": job.id})
        assert sorted(live.wanted) == ["job:" + job.id, "jobs", "metrics"]


# ---- the live stream -------------------------------------------------------------------


def _drop_connection(stream) -> None:
    """What a network drop does: the connection is gone, the client is not told first."""
    async def close():
        stream._stream._ws.close()
    stream._loop.run(close())


def test_stream_resumes_after_a_disconnect_without_losing_messages(client):
    received = []

    def until_terminal(stream, job_id):
        while True:
            message = stream.receive(timeout=60)
            assert message is not None, "no message within 60 s"
            received.append(message)
            if message.type == "job_update" and message.data["id"] == job_id \
                    and message.data["state"] in ("succeeded", "failed", "killed", "lost"):
                return

    with client.stream(["jobs"], control=True) as stream:
        first = client.jobs.submit(name="before the drop", code="print(1)")
        until_terminal(stream, first.id)
        _drop_connection(stream)

        # Published while the client is away: it must get them on its reconnect.
        missed = client.jobs.submit(name="while away", code="print(2)")
        assert client.jobs.wait(missed.id, timeout=60).state == JobState.succeeded
        until_terminal(stream, missed.id)
        # The server resends what was missed, then greets the resumed connection.
        received.extend(_read_until(stream, lambda m: m.type == "welcome"))
        assert stream.reconnects == 1

    seqs = [m.seq for m in received]
    assert seqs == list(range(1, len(seqs) + 1))  # continuous: nothing lost, nothing twice
    assert [m.data["resumed"] for m in received if m.type == "welcome"] == [False, True]
    away = [m.data["state"] for m in received if m.type == "job_update" and m.data["id"] == missed.id]
    assert away[0] == "queued" and away[-1] == "succeeded"
    for job in (first, missed):
        client.jobs.delete(job.id)


def _read_until(stream, wanted) -> list:
    """Messages up to and including the first one `wanted` accepts."""
    messages = []
    while not messages or not wanted(messages[-1]):
        message = stream.receive(timeout=60)
        assert message is not None, f"no message within 60 s after {[m.type for m in messages]}"
        messages.append(message)
    return messages


def test_stream_subscribes_again_when_the_server_lost_the_session(client):
    with client.stream(["jobs"], control=True) as stream:
        initial = _read_until(stream, lambda m: m.type == "unsubscribed")
        assert [m.type for m in initial] == ["welcome", "unsubscribed"]  # the default `metrics` dropped
        old_session = initial[0].data["session"]
        stream._stream.session_id = "0" * 16  # as after a server restart: the server has no such session
        _drop_connection(stream)

        again = _read_until(stream, lambda m: m.type == "unsubscribed")
        welcome = again[0]
        assert welcome.type == "welcome" and welcome.data["resumed"] is False and welcome.seq == 1
        assert welcome.data["session"] != old_session and welcome.data["topics"] == ["jobs", "metrics"]
        assert [m.type for m in again] == ["welcome", "snapshot", "unsubscribed"]
        assert again[-1].data["topics"] == ["jobs"]  # the client's topics, subscribed again

        job = client.jobs.submit(name="after the new session", code="print(3)")
        update = _read_until(stream, lambda m: m.type == "job_update")[-1]
        assert update.data["id"] == job.id and update.seq == 4
    client.jobs.wait(job.id, timeout=60)
    client.jobs.delete(job.id)


# ---- finding the server ----------------------------------------------------------------


def test_the_server_is_found_from_arguments_environment_and_runtime_file(server, monkeypatch, tmp_path):
    url = f"http://127.0.0.1:{server.port}/"
    env = {"DATAHARBOUR_URL": url, "DATAHARBOUR_TOKEN": "kernel-token", "JUPYTER_BASE_URL": "http://other:1",
           "JUPYTER_TOKEN": "seed-token"}
    assert find_server(environ=env) == find_server(url, "kernel-token")
    assert find_server(environ=env).token == "kernel-token"  # the kernel's variables come first
    seed = find_server(environ={"JUPYTER_BASE_URL": "http://127.0.0.1:9/base", "JUPYTER_TOKEN": "t"})
    assert (seed.url, seed.token) == ("http://127.0.0.1:9/base/", "t")
    assert find_server("http://h:1", "arg", environ=env).token == "arg"
    # A token goes only to its own server: another URL given alone gets none of the environment's.
    assert find_server(url, environ=env).token == "kernel-token"
    assert find_server("http://elsewhere.example/", environ=env, runtime_dir=str(tmp_path)).token is None
    assert "kernel-token" not in repr(find_server(environ=env))

    for name in env:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", os.path.join(server.base, "runtime"))
    monkeypatch.chdir(server.root)
    found = find_server()
    assert (found.url, found.token) == (url, server.token)
    with DataHarbourClient() as discovered:
        assert discovered.jobs.list(limit=1).limit == 1

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))  # no server there
    with pytest.raises(ServerNotFound, match="JUPYTER_BASE_URL"):
        find_server()


def test_the_running_server_is_picked_by_root_then_by_age(tmp_path):
    def server(root, started):
        return {"url": f"http://127.0.0.1:{started}/", "root_dir": str(root), "started": started, "sock": ""}

    outer, inner = tmp_path / "a", tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    servers = [server(outer, 1), server(inner, 2), server(tmp_path / "elsewhere", 3)]
    assert pick_running_server(servers, str(inner / "c"))["started"] == 2  # the deepest root holding it
    assert pick_running_server(servers, str(outer))["started"] == 1
    assert pick_running_server(servers, "/")["started"] == 3  # none holds it: the most recent
    assert pick_running_server([], "/") is None


# ---- retries ---------------------------------------------------------------------------


class FlakyServer(LoopbackHttp):
    """A plain HTTP server on loopback that answers each request from a script of statuses."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.requests = []
        flaky = self

        class Handler(QuietHandler):
            def do_GET(self):
                self._answer()

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._answer()

            def _answer(self):
                flaky.requests.append(self.command)
                status = flaky.statuses.pop(0) if flaky.statuses else 200
                body = (json.dumps({"message": "busy", "reason": "Restarting"}) if status >= 400
                        else json.dumps({"jobs": [], "total": 0, "limit": 50, "offset": 0})).encode()
                self.answer_json(status, body)

        super().__init__(Handler)


def test_only_idempotent_calls_are_retried():
    flaky = FlakyServer([502, 503])
    try:
        with DataHarbourClient(flaky.url, "t", backoff=0.01) as client:
            assert client.jobs.list().total == 0  # two failures, then an answer
            assert flaky.requests == ["GET", "GET", "GET"]

            flaky.requests.clear()
            flaky.statuses = [503] * 10
            with pytest.raises(ServiceUnavailable) as unavailable:
                client.jobs.list()
            assert flaky.requests == ["GET"] * 3  # the first attempt and two retries
            assert (unavailable.value.status, unavailable.value.message, unavailable.value.reason) == (
                503, "busy", "Restarting")

            flaky.requests.clear()
            with pytest.raises(ServiceUnavailable):
                client.jobs.submit(name="once", code="print(1)")
            with pytest.raises(ServiceUnavailable):
                client.jobs.kill("some-job")
            assert flaky.requests == ["POST", "POST"]  # never sent twice
    finally:
        flaky.close()

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    with DataHarbourClient(nobody, "t", backoff=0.01) as client:
        with pytest.raises(ConnectionFailed, match="could not be reached"):
            client.jobs.list()
        with pytest.raises(ConnectionFailed, match=nobody):
            client.jobs.submit(name="n", code="print(1)")
