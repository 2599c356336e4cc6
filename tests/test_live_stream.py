"""The live stream over a real websocket: job updates, logs, progress, resume, lag, auth."""

import asyncio
import base64
import json
import os
import socket
import struct
import time

import pytest
import tornado.httpclient
import tornado.websocket
from conftest import WsClient as Client
from jupyter_server.auth import Authorizer

from dataharbour_ext.event_bus import JOB_STATE_SCHEMA_ID

SHORT_JOB = "print('hello from the stream')\n"
SPARK_JOB = (
    "from pyspark.sql import SparkSession\n"
    "spark = SparkSession.builder.getOrCreate()\n"
    "print('hello from the stream', spark.range(10).count())\n"
)
LOG_JOB = (
    "import sys, time\n"
    "for i in range(3000):\n"
    "    print(f'line {i:05d} ' + 'x' * 60)\n"
    "    if i % 1000 == 999:\n"
    "        sys.stdout.flush(); time.sleep(0.3)\n"
    "print('héllo ünïcode done')\n"
)


def _seqs(messages):
    return [m["seq"] for m in messages]


async def test_a_real_job_streams_its_updates_and_log_on_the_seed_address(stream, api):
    ws = await stream("client-123", "ws")  # the seed's {base_url}ws/{client_id}, default topics
    welcome = await ws.next()
    assert welcome["type"] == "welcome" and welcome["seq"] == 1
    assert welcome["data"] == {"client_id": "client-123", "session": welcome["data"]["session"], "resumed": False,
                               "topics": ["jobs", "metrics"]}
    job = await api.submit(name="streamed", code=SPARK_JOB)
    await ws.send({"type": "subscribe", "topics": [{"topic": f"job_log:{job['id']}", "offset": 0}]})
    states, lines, complete = [], [], False
    while not (complete and states[-1:] == ["succeeded"]):  # the log may end before the state does
        message = await ws.next(180)
        assert set(message) == {"type", "data", "timestamp", "seq"}
        if message["type"] == "job_update" and message["data"]["id"] == job["id"]:
            states.append(message["data"]["state"])
        if message["type"] == "job_log":
            assert message["data"]["job_id"] == job["id"] and not complete
            lines += message["data"]["lines"]
            complete = message["data"]["complete"]
    assert states == ["queued", "starting", "running", "succeeded"]
    assert _seqs(ws.received) == list(range(1, len(ws.received) + 1)), "seq grows by one per message"
    assert "hello from the stream 10" in lines
    assert "\n".join(lines) == await api.full_log(job["id"])


async def test_a_log_subscription_resumes_from_an_offset_byte_for_byte(stream, api):
    job = await api.submit(name="long log", code=LOG_JOB)
    done = await api.wait(job["id"])
    assert done["state"] == "succeeded"
    first = await api.logs(job["id"], limit=1234)
    ws = await stream("log-reader")
    await ws.next()  # welcome
    await ws.send({"type": "subscribe", "topics": [
        {"topic": f"job_log:{job['id']}", "offset": first["next_offset"], "stream": "stdout"}]})
    pages = []
    while not (pages and pages[-1]["complete"]):
        message = await ws.until(lambda m: m["type"] == "job_log")
        pages.append(message["data"])
    assert pages[0]["offset"] == first["next_offset"] and pages[0]["stream"] == "stdout"
    assert all(a["next_offset"] == b["offset"] for a, b in zip(pages, pages[1:], strict=False)), "no gap, no overlap"
    rest = await api.logs(job["id"], offset=first["next_offset"], limit=100000, stream="stdout")
    assert [line for page in pages for line in page["lines"]] == rest["lines"]
    assert pages[-1]["next_offset"] == rest["next_offset"] == rest["size"]
    assert rest["lines"][-1] == "héllo ünïcode done"


async def test_progress_and_updates_of_one_job_by_topic(stream, api):
    ws = await stream("progress-watcher")
    await ws.next()
    await ws.send({"type": "unsubscribe", "topics": ["jobs"]})
    assert (await ws.next())["type"] == "unsubscribed"
    other = await api.submit(name="not watched", code=SHORT_JOB)
    job = await api.submit(name="watched", code=(
        "from pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.getOrCreate()\n"
        "print(spark.sparkContext.parallelize(range(100), 4).sum())\n"))
    await ws.send({"type": "subscribe", "topics": [f"job:{job['id']}"]})
    subscribed = await ws.until(lambda m: m["type"] == "subscribed")
    assert subscribed["data"]["topics"] == [f"job:{job['id']}", "metrics"]
    final = await ws.until(lambda m: m["type"] == "job_update" and m["data"]["state"] in ("succeeded", "failed"))
    assert final["data"]["state"] == "succeeded"
    progress = [m["data"] for m in ws.received if m["type"] == "job_progress"]
    assert progress and progress[-1]["percent"] == 100.0 and progress[-1]["tasks"]["done"] == 4
    ids = {m["data"].get("id") or m["data"].get("job_id") for m in ws.received if m["type"].startswith("job_")}
    assert ids == {job["id"]}, "nothing of the job this client did not subscribe to"
    await api.wait(other["id"])


async def test_reconnect_with_since_seq_gets_what_was_missed(stream, api):
    ws = await stream("resumer")
    assert (await ws.next())["seq"] == 1
    ws.close()
    job = await api.submit(name="while away", code=SHORT_JOB)
    await api.wait(job["id"])
    back = await stream("resumer", since_seq=1)
    missed = [await back.until(lambda m: m["type"] == "job_update" and m["data"]["state"] == "succeeded")]
    welcome = await back.until(lambda m: m["type"] == "welcome")
    assert welcome["data"]["resumed"] is True
    assert _seqs(back.received) == list(range(2, 2 + len(back.received))), "continues at seq 2, no gap"
    assert missed[0]["data"]["id"] == job["id"]
    states = [m["data"]["state"] for m in back.received if m["type"] == "job_update"]
    assert states[0] == "queued" and states[-1] == "succeeded"


@pytest.mark.parametrize("dataharbour_config", [{"stream_session_ttl": 60.0}])
async def test_a_resume_beyond_the_buffer_gets_a_snapshot(stream, api, extension):
    extension.stream.config.ring_size = 3
    ws = await stream("forgetful")
    await ws.next()
    ws.close()
    jobs = [await api.submit(name=f"many {i}", code=SHORT_JOB) for i in range(3)]
    for job in jobs:
        await api.wait(job["id"])
    back = await stream("forgetful", since_seq=1)
    welcome = await back.next()
    assert welcome["type"] == "welcome" and welcome["data"]["resumed"] is False
    snapshot = await back.next()
    assert snapshot["type"] == "snapshot" and snapshot["seq"] == welcome["seq"] + 1
    states = {job["id"]: job["state"] for job in snapshot["data"]["jobs"]}
    assert all(states[job["id"]] == "succeeded" for job in jobs)
    assert snapshot["data"]["complete"] is False, "the skipped messages are gone: it cannot vouch for all jobs"
    unknown = await stream("never-seen", since_seq=5)
    assert [(await unknown.next())["type"], (await unknown.next())["type"]] == ["welcome", "snapshot"]


async def test_a_resume_names_its_session_and_a_re_created_one_is_not_taken_for_it(stream, api):
    first = await stream("tab")
    old_session = (await first.next())["data"]["session"]
    first.close()
    fresh = await stream("tab")  # the same id, connected anew without since_seq: a new session
    new_session = (await fresh.next())["data"]["session"]
    assert new_session != old_session
    await fresh.send({"type": "ping"})
    await fresh.until(lambda m: m["type"] == "pong")
    fresh.close()
    # The old tab comes back with its own numbering: it gets the current state, not seq 2 of another session.
    back = await stream("tab", since_seq=1, session=old_session)
    welcome = await back.next()
    assert welcome["type"] == "welcome" and welcome["data"]["resumed"] is False
    assert (await back.next())["type"] == "snapshot"
    back.close()
    again = await stream("tab", since_seq=welcome["seq"], session=welcome["data"]["session"])
    replayed = await again.next()
    assert replayed["type"] == "snapshot" and replayed["seq"] == welcome["seq"] + 1, "the one it had not had"
    assert (await again.next())["data"]["resumed"] is True


class NoJobsAuthorizer(Authorizer):
    """May use the stream, may not read jobs."""

    def is_authorized(self, handler, user, action, resource):
        return resource != "dataharbour:jobs"


@pytest.mark.parametrize("jp_server_config", [{
    "ServerApp": {"jpserver_extensions": {"dataharbour_ext": True, "jupyter_server_terminals": False},
                  "allow_unauthenticated_access": False, "authorizer_class": NoJobsAuthorizer},
}])
async def test_job_topics_need_permission_to_read_jobs(stream, extension):
    ws = await stream("no-jobs")
    assert (await ws.next())["data"]["topics"] == ["metrics"]
    await ws.send({"type": "subscribe", "topics": ["jobs"]})
    assert "not authorized" in (await ws.until(lambda m: m["type"] == "error"))["data"]["message"]
    await ws.send({"type": "subscribe", "topics": ["services"]})  # monitoring is another permission
    assert (await ws.until(lambda m: m["type"] == "subscribed"))["data"]["topics"] == ["metrics", "services"]


class NoMonitoringAuthorizer(Authorizer):
    """May use the stream and read jobs, may not read monitoring."""

    def is_authorized(self, handler, user, action, resource):
        return resource != "dataharbour:monitoring"


@pytest.mark.parametrize("jp_server_config", [{
    "ServerApp": {"jpserver_extensions": {"dataharbour_ext": True, "jupyter_server_terminals": False},
                  "allow_unauthenticated_access": False, "authorizer_class": NoMonitoringAuthorizer},
}])
async def test_monitoring_topics_need_permission_to_read_monitoring(stream, extension):
    ws = await stream("no-monitoring")
    assert (await ws.next())["data"]["topics"] == ["jobs"]
    for topic in ("metrics", "services"):
        await ws.send({"type": "subscribe", "topics": [topic]})
        error = await ws.until(lambda m: m["type"] == "error")
        assert error["data"] == {"message": f"{topic}: not authorized to read monitoring (dataharbour:monitoring)",
                                 "topic": topic}


class NoClustersAuthorizer(Authorizer):
    """May use the stream and read jobs, may not read clusters."""

    def is_authorized(self, handler, user, action, resource):
        return resource != "dataharbour:clusters"


@pytest.mark.parametrize("jp_server_config", [{
    "ServerApp": {"jpserver_extensions": {"dataharbour_ext": True, "jupyter_server_terminals": False},
                  "allow_unauthenticated_access": False, "authorizer_class": NoClustersAuthorizer},
}])
async def test_the_clusters_topic_needs_permission_to_read_clusters(stream, extension):
    ws = await stream("no-clusters")
    assert (await ws.next())["data"]["topics"] == ["jobs", "metrics"]
    await ws.send({"type": "subscribe", "topics": ["clusters"]})
    error = await ws.until(lambda m: m["type"] == "error")
    assert error["data"] == {"message": "not authorized to read clusters (dataharbour:clusters)", "topic": "clusters"}


@pytest.mark.parametrize("jp_server_config", [{
    "ServerApp": {"jpserver_extensions": {"dataharbour_ext": True, "jupyter_server_terminals": False},
                  "allow_unauthenticated_access": False, "authorizer_class": NoJobsAuthorizer},
}])
async def test_readers_of_clusters_get_cluster_messages_without_reading_jobs(stream, extension):
    from dataharbour_ext.models import ExternalClusterCreate

    ws = await stream("clusters-only")
    await ws.next()
    await ws.send({"type": "subscribe", "topics": ["clusters"]})
    await ws.until(lambda m: m["type"] == "subscribed")
    launcher = extension.cluster_launcher
    cluster = await launcher.register_external(ExternalClusterCreate(name="seen", kind="external",
                                                                     master_url="local[1]"))
    update = await ws.until(lambda m: m["type"] == "cluster_update")
    assert update["data"] == cluster.model_dump(mode="json")
    await launcher.delete(cluster.id)
    assert (await ws.until(lambda m: m["type"] == "cluster_deleted"))["data"] == {"id": cluster.id}


class LimitedByQueryAuthorizer(Authorizer):
    """Refuses monitoring to connections that say `?limited=1`."""

    def is_authorized(self, handler, user, action, resource):
        return not (resource == "dataharbour:monitoring" and handler.get_query_argument("limited", "") == "1")


@pytest.mark.parametrize("jp_server_config", [{
    "ServerApp": {"jpserver_extensions": {"dataharbour_ext": True, "jupyter_server_terminals": False},
                  "allow_unauthenticated_access": False, "authorizer_class": LimitedByQueryAuthorizer},
}])
async def test_a_resume_with_fewer_rights_starts_afresh(stream, extension):
    ws = await stream("shared-id")
    welcome = await ws.next()
    assert welcome["data"]["topics"] == ["jobs", "metrics"]
    ws.close()
    limited = await stream("shared-id", since_seq=str(welcome["seq"]), limited="1")
    again = await limited.next()
    assert again["type"] == "welcome" and again["data"]["resumed"] is False
    assert again["data"]["topics"] == ["jobs"], "not the metrics the earlier connection could read"


async def test_bad_messages_get_an_error_and_the_stream_stays_up(stream, api):
    ws = await stream("careless")
    await ws.next()
    for bad, says in [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ({"type": "dance"}, "unknown message type"),
        ({"type": "subscribe", "topics": "jobs"}, "non-empty list"),
        ({"type": "subscribe", "topics": ["everything"]}, "unknown topic"),
        ({"type": "subscribe", "topics": ["job:0000"]}, "no job with id"),
        ({"type": "subscribe", "topics": [{"topic": "job_log:abc", "offset": -1}]}, "offset"),
    ]:
        await ws.send(bad)
        error = await ws.until(lambda m: m["type"] == "error")
        assert says in error["data"]["message"], (bad, error)
    await ws.send({"type": "ping", "id": 7})
    assert (await ws.until(lambda m: m["type"] == "pong"))["data"] == {"id": 7}


async def _login_cookie(jp_serverapp, jp_http_port, jp_base_url) -> str:
    """The login cookie JupyterLab's browser holds (from the token login page)."""
    token = jp_serverapp.identity_provider.token
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        f"http://localhost:{jp_http_port}{jp_base_url}login?token={token}", follow_redirects=False, raise_error=False)
    return response.headers.get_list("Set-Cookie")[0].split(";", 1)[0]


async def test_the_login_cookie_works_from_the_servers_origin_only(jp_ws_fetch, jp_serverapp, jp_http_port,
                                                                   jp_base_url, api):
    cookie = await _login_cookie(jp_serverapp, jp_http_port, jp_base_url)
    own = {"Authorization": "", "Cookie": cookie, "Origin": f"http://localhost:{jp_http_port}"}
    ws = Client(await jp_ws_fetch("api", "v1", "ws", "browser", headers=own))
    assert (await ws.next())["type"] == "welcome"
    ws.close()
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:  # a page elsewhere using the cookie
        await jp_ws_fetch("api", "v1", "ws", "browser", headers={**own, "Origin": "https://evil.example"})
    assert refused.value.code == 403


@pytest.mark.parametrize("headers, client_id, params, status", [
    ({"Authorization": ""}, "c1", {}, 403),  # no token
    ({"Authorization": "token wrong"}, "c1", {}, 403),
    ({}, "-bad", {}, 400),
    ({}, "c" * 200, {}, 400),
    ({}, "c1", {"since_seq": "x"}, 400),
])
async def test_the_stream_refuses_without_a_token_a_foreign_origin_or_bad_arguments(jp_ws_fetch, api, headers,
                                                                                   client_id, params, status):
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await jp_ws_fetch("api", "v1", "ws", client_id, headers=headers, params=params)
    assert refused.value.code == status


async def _collect(client: Client, message_type: str, count: int) -> list[dict]:
    return [await client.until(lambda m: m["type"] == message_type) for _ in range(count)]


class _SilentClient:
    """A websocket client that shakes hands and then never reads: its socket fills up."""

    def __init__(self, port: int, path: str, token: str):
        self.sock = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Authorization: token {token}\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def read_messages(self, until_type: str, timeout: float = 60.0) -> list[dict]:
        """Read frames (blocking, in a thread) until a message of `until_type` arrives."""
        self.sock.settimeout(timeout)
        messages = []
        while not any(m["type"] == until_type for m in messages):
            while True:
                frame = self._frame()
                if frame is not None:
                    messages.append(json.loads(frame))
                    break
                self.buffer += self.sock.recv(65536)
        return messages

    def _frame(self):
        if len(self.buffer) < 2:
            return None
        length, start = self.buffer[1] & 0x7F, 2
        if length == 126:
            if len(self.buffer) < 4:
                return None
            length, start = struct.unpack(">H", self.buffer[2:4])[0], 4
        elif length == 127:
            if len(self.buffer) < 10:
                return None
            length, start = struct.unpack(">Q", self.buffer[2:10])[0], 10
        if len(self.buffer) < start + length:
            return None
        payload, self.buffer = self.buffer[start:start + length], self.buffer[start + length:]
        return payload.decode()

    def close(self):
        self.sock.close()


async def test_a_client_that_never_reads_delays_nobody_and_is_skipped_forward(stream, api, extension, jp_http_port,
                                                                             jp_base_url, jp_auth_header):
    token = jp_auth_header["Authorization"].split()[-1]
    silent = await asyncio.to_thread(_SilentClient, jp_http_port, f"{jp_base_url}api/v1/ws/silent", token)
    try:
        reader = await stream("reader")
        await reader.next()
        deadline = time.monotonic() + 10
        while "silent" not in extension.stream._sessions:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        stuck = extension.stream._sessions["silent"]
        filler = {"job_id": "f" * 32, "name": "x" * 20_000}
        reading = asyncio.create_task(_collect(reader, "job_progress", 1500))
        reading_session = extension.stream._sessions["reader"]
        deadline = time.monotonic() + 120
        for n in range(1500):
            extension.hub.publish("job_progress", {**filler, "n": n}, ("jobs",))
            while reading_session.backlog() > 20:  # events at the pace a live client reads them
                assert time.monotonic() < deadline, "the reading client stalled"
                await asyncio.sleep(0.001)
        got = await asyncio.wait_for(reading, 120)
        assert [m["data"]["n"] for m in got] == list(range(1500)), "the reading client got every message in order"
        assert not [m for m in reader.received if m["type"] == "lagged"]
        assert stuck.sent_seq < stuck.seq, "the silent client is behind"
        assert len(stuck.ring) <= extension.stream.config.ring_size
        # Once it reads, it learns it lagged and gets the current state, not a silent loss.
        messages = await asyncio.to_thread(silent.read_messages, "snapshot")
        lagged = [m for m in messages if m["type"] == "lagged"]
        assert lagged and lagged[0]["data"]["missed_to_seq"] >= lagged[0]["data"]["missed_from_seq"]
        assert messages[-1]["seq"] == lagged[0]["seq"] + 1
        assert messages[-1]["data"]["reason"] == "lagged" and messages[-1]["data"]["topics"] == ["jobs", "metrics"]
    finally:
        silent.close()


async def test_job_state_changes_reach_jupyters_event_bus(jp_ws_fetch, api):
    events = Client(await jp_ws_fetch("api", "events", "subscribe"))
    try:
        job = await api.submit(name="on the bus", code=SHORT_JOB)
        seen = []
        while "succeeded" not in seen:
            message = await events.next(180)
            if message.get("schema_id") == JOB_STATE_SCHEMA_ID and message["job_id"] == job["id"]:
                seen.append(message["state"])
                assert set(message) <= {"schema_id", "version", "timestamp", "job_id", "name", "cluster_id",
                                        "attempt", "state", "exit_code", "__timestamp__", "__schema__",
                                        "__schema_version__", "__metadata_version__"}
        assert seen[0] == "queued" and seen[-1] == "succeeded" and len(seen) == len(set(seen))
    finally:
        events.close()


async def test_quick_cluster_changes_are_each_published_as_they_were(stream, extension):
    """Each cluster_update shows the state the cluster had when it changed, even when the
    next change (or its removal) came before the message was built."""
    from dataharbour_ext.services.clusters import Cluster

    ws = await stream("cluster-changes")
    await ws.next()
    await ws.send({"type": "subscribe", "topics": ["clusters"]})
    await ws.until(lambda m: m["type"] == "subscribed")
    clusters = extension.cluster_launcher.clusters
    cluster = Cluster("standalone-quick", "quick", "spark://127.0.0.1:1", kind="standalone",
                      conf={"spark.authenticate": "true", "spark.authenticate.secret": "the-clusters-own-secret"})
    # All at once, as the launcher may: no message is built before the last change.
    clusters.add(cluster, "starting")
    clusters.set_state(cluster.id, "failed", "the master ended: it exited with code 1")
    clusters.set_state(cluster.id, "stopping")
    clusters.remove(cluster.id)
    told = []
    while not told or told[-1][0] != "cluster_deleted":
        message = await ws.until(lambda m: m["type"] in ("cluster_update", "cluster_deleted"))
        told.append((message["type"], message["data"].get("state"), message["data"].get("reason")))
        assert "the-clusters-own-secret" not in json.dumps(message)
    assert told == [("cluster_update", "starting", None),
                    ("cluster_update", "failed", "the master ended: it exited with code 1"),
                    ("cluster_update", "stopping", None),
                    ("cluster_deleted", None, None)]
