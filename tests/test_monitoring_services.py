"""GET /api/v1/monitoring/services and /services/{name}/logs against real services.

- PostgreSQL: the machine's server at 127.0.0.1:5432 (trust auth, database `test`).
- S3: SeaweedFS's `weed mini` (tests/seaweedfs.py), started on free loopback ports.
- Spark: the default local cluster (this machine's pyspark and Java), and a real standalone
  master and worker started from the pyspark install.
- Airflow is NOT a real Airflow: apache-airflow is too heavy to install and start within the
  suite on two cores, so a loopback HTTP server in this module serves Airflow's documented
  health document (Airflow 3's `/api/v2/monitor/health`, `/api/v2/version`; for the fallback
  case a 404 there and Airflow 2's `/health`, `/api/v1/version`).
- A stopped service is a loopback port bound and never listening (a connect is refused); a
  hung one a loopback port that accepts connections and never answers.
"""

import asyncio
import importlib.metadata
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jupyter_server
import psycopg
import pytest
from seaweedfs import seaweedfs_fixture  # noqa: F401  (the `seaweedfs` fixture)

from dataharbour_ext import __version__
from dataharbour_ext.events import EventHub
from dataharbour_ext.models import MetricsSample
from dataharbour_ext.services.clusters import Cluster, ClusterService
from dataharbour_ext.services.health import Finding, HealthCheck, ObjectStorageCheck, http_client
from dataharbour_ext.services.service_health import ServiceHealth
from dataharbour_ext.services.service_logs import LogFiles
from dataharbour_ext.spark.installation import spark_home

PLATFORM_VARIABLES = (
    "MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_BUCKET_NAME", "MINIO_SECURE",
    "AIRFLOW_BASE_URL", "AIRFLOW_USERNAME", "AIRFLOW_PASSWORD",
    "POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB",
    "SPARK_MASTER_URL", "SPARK_UI_URL",
)
SERVICE_NAMES = ["jupyter", "spark-cluster-default", "minio", "airflow", "postgresql"]
# No cache: every GET after the first answers with the latest round and starts the next one;
# no rounds on a timer unless a test asks.
BASE_CONFIG = {"service_check_timeout": 2.0, "service_check_cache_seconds": 0.0, "service_check_interval": 0.0}


@pytest.fixture(autouse=True)
def no_platform_from_the_environment(monkeypatch):
    """Only what a test configures is configured."""
    for name in PLATFORM_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def dataharbour_config(request):
    """BASE_CONFIG plus the test's own: `@configure(build)` where `build(request)` returns
    traits, so that ports of servers fixtures start can go into the server's config."""
    build = getattr(request, "param", None)
    return {**BASE_CONFIG, **(build(request) if build else {})}


def configure(build):
    return pytest.mark.parametrize("dataharbour_config", [build], indirect=True)


def environment(**variables):
    return configure(lambda request: {"service_environment": variables})


async def services(api) -> tuple[dict, str]:
    """The statuses by name, and the whole body as text (to look for secrets in)."""
    response = await api.fetch("api", "v1", "monitoring", "services", method="GET")
    assert response.code == 200
    body = response.body.decode()
    listing = json.loads(body)["services"]
    assert [s["name"] for s in listing][:2] == ["jupyter", "spark-cluster-default"]
    return {s["name"]: s for s in listing}, body


async def _wait_for_status(api, name, predicate, timeout=120.0) -> dict:
    """The first status of `name` that satisfies `predicate` (each GET answers with the latest
    round and starts the next), or the last one seen at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        status = (await services(api))[0][name]
        if predicate(status) or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.2)


async def _until(condition, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- a service that is not configured, and Jupyter and the local cluster -------------


async def test_unconfigured_services_are_disabled_without_a_check(api):
    statuses, _ = await services(api)
    assert list(statuses) == SERVICE_NAMES
    for name, variable in [("minio", "MINIO_ENDPOINT"), ("airflow", "AIRFLOW_BASE_URL"),
                           ("postgresql", "POSTGRES_HOST")]:
        status = statuses[name]
        assert (status["status"], status["latency_ms"], status["details"]) == ("disabled", None, {})
        assert status["reason"] == f"not configured: {variable} is not set"
    assert [statuses[n]["kind"] for n in SERVICE_NAMES] == ["jupyter", "spark", "object_storage", "airflow",
                                                            "database"]


async def test_jupyter_reports_its_kernels_sessions_and_versions(api, jp_fetch):
    before = (await services(api))[0]["jupyter"]
    assert before["status"] == "healthy" and before["version"] == jupyter_server.__version__
    assert before["details"]["extension_version"] == __version__
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kernel = json.loads(response.body)
    try:
        after = await _wait_for_status(api, "jupyter",
                                       lambda s: s["details"]["kernels"] == before["details"]["kernels"] + 1)
        assert after["details"]["kernels"] == before["details"]["kernels"] + 1
        assert after["details"]["sessions"] == before["details"]["sessions"]
    finally:
        await jp_fetch("api", "kernels", kernel["id"], method="DELETE")


async def test_the_local_cluster_is_healthy_with_spark_and_java_versions(api):
    cluster = (await services(api))[0]["spark-cluster-default"]
    assert cluster["status"] == "healthy", cluster
    assert cluster["version"] == importlib.metadata.version("pyspark")
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    assert f'"{cluster["details"]["java_version"]}"' in java
    assert cluster["details"]["master_url"] == "local[*]"


@pytest.fixture
def no_java(monkeypatch):
    """No JAVA_HOME and no `java` on PATH from the server's start, as on a machine without
    Java. Gives the PATH with Java, to put back."""
    with_java = os.environ.get("PATH", "")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", os.pathsep.join(
        folder for folder in with_java.split(os.pathsep) if not os.path.exists(os.path.join(folder, "java"))))
    return with_java


async def test_without_java_the_local_cluster_is_unhealthy_until_java_is_found(no_java, api, monkeypatch):
    cluster = (await services(api))[0]["spark-cluster-default"]
    assert (cluster["status"], cluster["reason"]) == (
        "unhealthy", "Java is not installed: set JAVA_HOME or put `java` on PATH (Spark 4 needs Java 17 or 21)")
    monkeypatch.setenv("PATH", no_java)  # Java installed meanwhile: a failed reading is read again
    found = await _wait_for_status(api, "spark-cluster-default", lambda s: s["status"] == "healthy")
    assert found["status"] == "healthy" and found["details"]["java_version"], found


# ---- PostgreSQL -------------------------------------------------------------------------

PG_PASSWORD = "pg-secret-4f1c9e"  # trust auth ignores it; it must still never show


@environment(POSTGRES_HOST="127.0.0.1", POSTGRES_PORT="5432", POSTGRES_USER="postgres", POSTGRES_DB="test",
             POSTGRES_PASSWORD=PG_PASSWORD)
async def test_postgresql_is_healthy_with_its_version(api):
    statuses, body = await services(api)
    database = statuses["postgresql"]
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test") as connection:
        server_version = connection.execute("SHOW server_version").fetchone()[0]
    assert (database["status"], database["version"], database["reason"]) == ("healthy", server_version, None)
    assert database["details"] == {"host": "127.0.0.1", "port": "5432", "database": "test", "user": "postgres"}
    assert database["latency_ms"] > 0
    assert PG_PASSWORD not in body


# ---- stopped and hung services ----------------------------------------------------------


@pytest.fixture
def closed_port():
    """A loopback port bound for the whole test and never listening: a connect to it is
    refused, and no other process can take the port meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def hung_port():
    """A loopback port that accepts connections (the kernel completes the handshake) and
    never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


@configure(lambda request: {"service_check_timeout": 1.0, "service_environment": {
    "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(request.getfixturevalue("closed_port")),
    "AIRFLOW_BASE_URL": f"http://127.0.0.1:{request.getfixturevalue('closed_port')}",
    "MINIO_ENDPOINT": f"127.0.0.1:{request.getfixturevalue('closed_port')}",
    "MINIO_ACCESS_KEY": "k", "MINIO_SECRET_KEY": "minio-secret-77aa",
}})
async def test_stopped_services_are_unhealthy_with_the_reason(api, closed_port):
    statuses, body = await services(api)
    for name in ("minio", "airflow", "postgresql"):
        assert statuses[name]["status"] == "unhealthy", statuses[name]
    assert "Connection refused" in statuses["postgresql"]["reason"]
    assert statuses["minio"]["reason"].startswith(f"cannot reach 127.0.0.1:{closed_port}: ")
    assert statuses["minio"]["details"] == {"endpoint": f"127.0.0.1:{closed_port}", "secure": False, "bucket": None}
    assert "Connection refused" in statuses["minio"]["reason"]
    assert statuses["airflow"]["reason"].startswith(f"cannot reach http://127.0.0.1:{closed_port}")
    assert "minio-secret-77aa" not in body


@configure(lambda request: {"service_check_timeout": 1.0, "service_environment": {
    "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(request.getfixturevalue("hung_port")),
    "AIRFLOW_BASE_URL": f"http://127.0.0.1:{request.getfixturevalue('hung_port')}",
    "MINIO_ENDPOINT": f"127.0.0.1:{request.getfixturevalue('hung_port')}",
}})
async def test_hung_services_are_unhealthy_after_the_timeout_and_the_rest_still_answer(api):
    statuses, _ = await services(api)
    for name in ("minio", "airflow", "postgresql"):
        assert (statuses[name]["status"], statuses[name]["reason"]) == ("unhealthy", "no answer within 1 s")
    assert statuses["jupyter"]["status"] == statuses["spark-cluster-default"]["status"] == "healthy"


# ---- S3 (SeaweedFS) ---------------------------------------------------------------------


def s3_environment(*, bucket: str, secret: str | None = None):
    def build(request):
        weed = request.getfixturevalue("seaweedfs")
        if not weed.client().bucket_exists("present"):
            weed.client().make_bucket("present")
        return {"service_environment": {
            "MINIO_ENDPOINT": f"http://{weed.endpoint}", "MINIO_ACCESS_KEY": weed.access_key,
            "MINIO_SECRET_KEY": secret or weed.secret_key, "MINIO_BUCKET_NAME": bucket,
        }}

    return configure(build)


@s3_environment(bucket="present")
async def test_object_storage_is_healthy_with_its_bucket(api, seaweedfs):
    statuses, body = await services(api)
    storage = statuses["minio"]
    assert (storage["status"], storage["reason"]) == ("healthy", None)
    assert storage["details"] == {"endpoint": seaweedfs.endpoint, "secure": False, "bucket": "present"}
    assert seaweedfs.secret_key not in body


@s3_environment(bucket="present", secret="wrong-secret-e3b0c442")
async def test_object_storage_with_wrong_credentials_is_unhealthy_with_s3s_reason(api, seaweedfs):
    statuses, body = await services(api)
    storage = statuses["minio"]
    assert storage["status"] == "unhealthy"
    assert storage["reason"].startswith("S3 refused the request: SignatureDoesNotMatch: "), storage
    assert "wrong-secret-e3b0c442" not in body and seaweedfs.secret_key not in body


@s3_environment(bucket="absent-bucket")
async def test_a_missing_bucket_is_reported(api, seaweedfs):
    storage = (await services(api))[0]["minio"]
    assert (storage["status"], storage["reason"]) == ("unhealthy", "bucket absent-bucket does not exist")


# ---- Airflow (a loopback server with Airflow's documented documents) --------------------

HEARTBEAT = "2025-06-02T10:15:30.123456+00:00"
AIRFLOW_3_HEALTHY = {
    "metadatabase": {"status": "healthy"},
    "scheduler": {"status": "healthy", "latest_scheduler_heartbeat": HEARTBEAT},
    "triggerer": {"status": None, "latest_triggerer_heartbeat": None},  # no triggerer deployed
    "dag_processor": {"status": "healthy", "latest_dag_processor_heartbeat": HEARTBEAT},
}
AIRFLOW_2_HEALTHY = {
    "metadatabase": {"status": "healthy"},
    "scheduler": {"status": "healthy", "latest_scheduler_heartbeat": HEARTBEAT},
    "triggerer": {"status": "healthy", "latest_triggerer_heartbeat": HEARTBEAT},
}
AIRFLOW_3 = {
    "/api/v2/monitor/health": (200, AIRFLOW_3_HEALTHY),
    "/api/v2/version": (200, {"version": "3.0.2", "git_version": ".release:abc"}),
}
AIRFLOW_3_SCHEDULER_DOWN = {
    **AIRFLOW_3,
    "/api/v2/monitor/health": (200, {**AIRFLOW_3_HEALTHY, "scheduler": {
        "status": "unhealthy", "latest_scheduler_heartbeat": HEARTBEAT}}),
}
AIRFLOW_2 = {
    "/health": (200, AIRFLOW_2_HEALTHY),
    "/api/v1/version": (200, {"version": "2.10.5", "git_version": ".release:def"}),
}
AIRFLOW_PASSWORD = "airflow-secret-9d2b"


class AirflowDocuments:
    """A loopback HTTP server answering GETs from `routes` (path -> (status, JSON)); every
    other path is 404, as on an Airflow without that API. Records what it was asked.

    After `hang()` it accepts requests and does not answer them until `release()`."""

    def __init__(self):
        self.routes: dict[str, tuple[int, dict]] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization header)
        self.held: list[str] = []  # paths of the requests it is not answering
        self._answering = threading.Event()
        self._answering.set()
        documents = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                documents.requests.append((self.path, self.headers.get("Authorization")))
                if not documents._answering.is_set():
                    documents.held.append(self.path)
                    documents._answering.wait(300)
                status, body = documents.routes.get(self.path, (404, {"detail": "Not Found"}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hang(self) -> None:
        self._answering.clear()

    def release(self) -> None:
        self._answering.set()

    def stop(self) -> None:
        self.release()
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()


@pytest.fixture
def airflow():
    documents = AirflowDocuments()
    yield documents
    documents.stop()


def airflow_serving(routes, **extra):
    def build(request):
        documents = request.getfixturevalue("airflow")
        documents.routes = routes
        variables = {"AIRFLOW_BASE_URL": documents.url, "AIRFLOW_USERNAME": "admin",
                     "AIRFLOW_PASSWORD": AIRFLOW_PASSWORD}
        return {"service_environment": variables, **extra}

    return configure(build)


@airflow_serving(AIRFLOW_3)
async def test_airflow_3_health_with_each_component(api, airflow):
    statuses, body = await services(api)
    status = statuses["airflow"]
    assert (status["status"], status["version"], status["reason"]) == ("healthy", "3.0.2", None)
    assert status["details"] == {
        "url": airflow.url, "health_endpoint": "/api/v2/monitor/health", "metadatabase": "healthy",
        "scheduler": "healthy", "scheduler_heartbeat": HEARTBEAT, "triggerer": None, "dag_processor": "healthy",
        "dag_processor_heartbeat": HEARTBEAT,
    }
    assert {path for path, _ in airflow.requests} == {"/api/v2/monitor/health", "/api/v2/version"}
    assert AIRFLOW_PASSWORD not in body


@airflow_serving(AIRFLOW_3_SCHEDULER_DOWN)
async def test_airflow_with_an_unhealthy_component_is_unhealthy(api):
    status = (await services(api))[0]["airflow"]
    assert status["status"] == "unhealthy" and status["version"] == "3.0.2"
    assert status["reason"] == f"scheduler is unhealthy (last heartbeat {HEARTBEAT})"


@airflow_serving(AIRFLOW_2)
async def test_airflow_2_is_checked_through_health_when_v2_is_404(api, airflow):
    statuses, body = await services(api)
    status = statuses["airflow"]
    assert (status["status"], status["version"]) == ("healthy", "2.10.5")
    assert status["details"]["health_endpoint"] == "/health" and status["details"]["triggerer"] == "healthy"
    assert [path for path, _ in airflow.requests if path in ("/health", "/api/v1/version")]
    # Basic auth was sent (the loopback server saw it), and the password shows nowhere.
    assert all(auth and auth.startswith("Basic ") for _, auth in airflow.requests)
    assert AIRFLOW_PASSWORD not in body


@configure(lambda request: {"service_environment": {
    "AIRFLOW_BASE_URL": f"http://admin:{AIRFLOW_PASSWORD}@127.0.0.1:{request.getfixturevalue('closed_port')}"}})
async def test_a_password_inside_a_url_never_shows(api):
    statuses, body = await services(api)
    assert statuses["airflow"]["status"] == "unhealthy"
    assert AIRFLOW_PASSWORD not in body and "admin:********@" in statuses["airflow"]["details"]["url"]


# ---- answering while a service hangs ---------------------------------------------------------


@airflow_serving(AIRFLOW_3, service_check_timeout=60.0)
async def test_after_the_first_round_a_hung_service_never_holds_up_the_answer(api, airflow):
    """Only the first call waits for a round. Later ones answer at once with the latest results
    and start the next round in the background, which every caller meanwhile shares."""
    first = (await services(api))[0]["airflow"]
    assert first["status"] == "healthy"
    airflow.hang()  # accepts, and answers nothing until released
    airflow.routes = AIRFLOW_3_SCHEDULER_DOWN
    answers = await asyncio.gather(*(services(api) for _ in range(3)))
    # The round these calls started cannot end before the release (its timeout is a minute,
    # and a timed-out Airflow would read differently): each answered while it was stuck.
    assert [statuses["airflow"] for statuses, _ in answers] == [first] * 3
    await _until(lambda: "/api/v2/monitor/health" in airflow.held)
    assert (await services(api))[0]["airflow"] == first
    assert airflow.held.count("/api/v2/monitor/health") == 1, "one round in the background, shared"
    airflow.release()
    updated = await _wait_for_status(api, "airflow", lambda s: s["status"] == "unhealthy")
    assert updated["reason"] == f"scheduler is unhealthy (last heartbeat {HEARTBEAT})"


AIRFLOW_3_TWO_DOWN = {
    **AIRFLOW_3,
    "/api/v2/monitor/health": (200, {
        **AIRFLOW_3_HEALTHY,
        "scheduler": {"status": "unhealthy", "latest_scheduler_heartbeat": HEARTBEAT},
        "dag_processor": {"status": "unhealthy", "latest_dag_processor_heartbeat": HEARTBEAT},
    }),
}


@airflow_serving(AIRFLOW_3_SCHEDULER_DOWN)
async def test_a_new_reason_is_a_service_update_even_when_the_status_stays(api, airflow, extension):
    health = extension.service_health
    updates = []

    def collect(event):
        if event.type == "service_update" and event.data["name"] == "airflow":
            updates.append(event.data)

    extension.hub.subscribe(collect)
    first = next(status for status in await health.refresh() if status.name == "airflow")
    assert first.reason == f"scheduler is unhealthy (last heartbeat {HEARTBEAT})"
    airflow.routes = AIRFLOW_3_TWO_DOWN
    await health.refresh()
    await health.refresh()  # the same again: no update
    assert [(u["status"], u["previous_status"], u["reason"]) for u in updates] == [(
        "unhealthy", "unhealthy",
        f"scheduler is unhealthy (last heartbeat {HEARTBEAT}); dag_processor is unhealthy (last heartbeat {HEARTBEAT})",
    )]


# ---- service_update on the live stream -----------------------------------------------------


@pytest.fixture
def stream(jp_ws_fetch, api):
    opened = []

    async def connect(client_id):
        connection = await jp_ws_fetch("api", "v1", "ws", client_id)
        opened.append(connection)
        return connection

    yield connect
    for connection in opened:
        connection.close()


async def _next_message(connection, predicate, timeout=60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        text = await asyncio.wait_for(connection.read_message(), max(0.1, deadline - time.monotonic()))
        assert text is not None, "the server closed the stream"
        message = json.loads(text)
        if predicate(message):
            return message


@airflow_serving(AIRFLOW_3, service_check_interval=0.3)
async def test_a_change_of_status_is_a_service_update_message(api, airflow, stream):
    ws = await stream("health-watcher")
    welcome = await _next_message(ws, lambda m: m["type"] == "welcome")
    assert "services" not in welcome["data"]["topics"], "not a default topic: clients subscribe to it"
    await ws.write_message(json.dumps({"type": "subscribe", "topics": ["services"]}))
    await _next_message(ws, lambda m: m["type"] == "subscribed")
    assert (await services(api))[0]["airflow"]["status"] == "healthy"
    airflow.stop()
    update = await _next_message(ws, lambda m: m["type"] == "service_update")
    assert update["data"]["name"] == "airflow"
    assert (update["data"]["status"], update["data"]["previous_status"]) == ("unhealthy", "healthy")
    assert update["data"]["reason"].startswith(f"cannot reach {airflow.url}")
    assert AIRFLOW_PASSWORD not in json.dumps(update)


# ---- the checks' frame on its own: names, removal, threads, HTTP clients ---------------------


class Answering(HealthCheck):
    """A check whose service always answers (it stands for Jupyter in the tests below)."""

    kind = "jupyter"

    async def probe(self, timeout: float) -> Finding:
        return Finding()


class KnownClusters:
    """What ServiceHealth asks the cluster service: the clusters of the moment."""

    def __init__(self, *clusters: Cluster):
        self.clusters = list(clusters)

    def all(self) -> list[Cluster]:
        return list(self.clusters)


async def test_a_cluster_named_like_a_built_in_service_is_prefixed_and_its_removal_is_published():
    hub = EventHub()
    events = []
    hub.subscribe(events.append)
    clashing = Cluster("minio", "A cluster called minio", "k8s://https://127.0.0.1:6443")
    clusters = KnownClusters(Cluster("k8s-prod", "Production", "k8s://https://127.0.0.1:6444"), clashing)
    health = ServiceHealth(hub, clusters, Answering("jupyter"), [ObjectStorageCheck(None)], timeout=30.0,
                           cache_seconds=0.0, interval=0.0)
    try:
        first = await health.refresh()
        assert [(s.name, s.kind) for s in first] == [("jupyter", "jupyter"), ("k8s-prod", "spark"),
                                                     ("spark:minio", "spark"), ("minio", "object_storage")]
        assert events == [], "the first round has nothing to compare with"
        clusters.clusters.remove(clashing)
        second = await health.refresh()
        assert [s.name for s in second] == ["jupyter", "k8s-prod", "minio"]
        assert [(e.type, e.data, e.topics) for e in events] == [
            ("service_removed", {"name": "spark:minio", "kind": "spark", "previous_status": "disabled"}, ("services",))
        ]
    finally:
        await health.stop()


async def test_a_cluster_added_or_changed_is_checked_at_once_not_at_the_next_round():
    hub = EventHub()
    events = []
    hub.subscribe(events.append)
    clusters = ClusterService("local[1]")
    health = ServiceHealth(hub, clusters, Answering("jupyter"), [], timeout=30.0, cache_seconds=3600.0,
                           interval=0.0)  # no background rounds: only a change starts one
    clusters.on_change(health.cluster_changed)
    try:
        health.start()
        await health.refresh()
        external = Cluster("external-1", "Elsewhere", "k8s://https://127.0.0.1:6444")
        clusters.add(external, "unknown")
        clusters.set_state(external.id, "running")  # while the round for the addition runs

        def updates():
            return [e.data for e in events if e.type == "service_update" and e.data["name"] == external.id]

        deadline = asyncio.get_running_loop().time() + 30
        while not updates() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert updates()[0]["previous_status"] is None, "a service_update as soon as the cluster is known"
        assert external.id in {s.name for s in await health.statuses()}
        clusters.remove(external.id)
        while not any(e.type == "service_removed" for e in events) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert [e.data["name"] for e in events if e.type == "service_removed"] == [external.id]
    finally:
        await health.stop()


class BlockingProbe(HealthCheck):
    """A check whose probe work holds its thread until released, as an SDK call to a hung
    service does (a timeout cannot stop a thread)."""

    kind = "object_storage"

    def __init__(self):
        super().__init__("blocking")
        self.released = threading.Event()
        self.threads_used: list[str] = []

    def _work(self) -> Finding:
        self.threads_used.append(threading.current_thread().name)
        self.released.wait(120)
        return Finding(version="1.0")

    async def probe(self, timeout: float) -> Finding:
        return await self.in_thread(self._work)


async def test_a_probe_thread_that_outlives_its_timeout_is_not_started_again():
    blocking = BlockingProbe()
    health = ServiceHealth(EventHub(), KnownClusters(), Answering("jupyter"), [blocking], timeout=0.2,
                           cache_seconds=0.0, interval=0.0)

    async def status():
        return next(s for s in await health.refresh() if s.name == "blocking")

    try:
        timed_out = await status()
        assert (timed_out.status, timed_out.reason) == ("unhealthy", "no answer within 0.2 s")
        held = await status()
        assert held.status == "unhealthy" and held.reason.startswith("the previous check has not finished after "), held
        assert len(blocking.threads_used) == 1, "no second thread while the first is held"
        assert blocking.threads_used[0].startswith("dataharbour-health"), "the checks' own threads"
        blocking.released.set()
        deadline = time.monotonic() + 60
        while (answered := await status()).status != "healthy":
            assert time.monotonic() < deadline, answered
        assert answered.version == "1.0" and len(blocking.threads_used) == 2
    finally:
        blocking.released.set()
        await health.stop()


async def test_an_http_client_still_being_built_when_its_check_is_cancelled_is_closed(monkeypatch):
    building, proceed, built = threading.Event(), threading.Event(), []

    class SlowToBuild(httpx.AsyncClient):
        def __init__(self, **options):
            building.set()
            proceed.wait(60)
            super().__init__(**options)
            built.append(self)

    monkeypatch.setattr(http_client.httpx, "AsyncClient", SlowToBuild)
    client = http_client.LazyHttpClient()
    check = asyncio.ensure_future(client.get())
    assert await asyncio.to_thread(building.wait, 60)
    check.cancel()  # the check's timeout, or the server stopping
    with pytest.raises(asyncio.CancelledError):
        await check
    proceed.set()
    await client.aclose()
    assert len(built) == 1 and built[0].is_closed


# ---- a real standalone Spark master ------------------------------------------------------


class StandaloneSpark:
    """A Spark standalone master and one worker from the pyspark install, on loopback."""

    def __init__(self, directory):
        self.directory = directory
        self.port, self.ui_port, self.worker_ui_port = _free_port(), _free_port(), _free_port()
        self.processes: list[subprocess.Popen] = []
        self.env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_WORKER_DIR": str(directory / "work"),
                    "SPARK_LOG_DIR": str(directory)}

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _start(self, name: str, *args: str) -> None:
        with open(self.directory / f"{name}.log", "ab") as log:
            self.processes.append(subprocess.Popen(
                [str(spark_home() / "bin" / "spark-class"), *args], env=self.env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))

    def start_master(self) -> None:
        self._start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port",
                    str(self.port), "--webui-port", str(self.ui_port))

    def start_worker(self) -> None:
        self._start("worker", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--webui-port",
                    str(self.worker_ui_port), "--cores", "1", "--memory", "512m", self.master_url)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()


@pytest.fixture
def standalone_spark(tmp_path):
    spark = StandaloneSpark(tmp_path)
    yield spark
    spark.stop()


@configure(lambda request: {
    "spark_master_url": request.getfixturevalue("standalone_spark").master_url,
    "spark_ui_url": f"http://127.0.0.1:{request.getfixturevalue('standalone_spark').ui_port}",
})
async def test_a_standalone_master_through_its_json_status(api, standalone_spark):
    ui = f"http://127.0.0.1:{standalone_spark.ui_port}"
    down = (await services(api))[0]["spark-cluster-default"]
    assert down["status"] == "unhealthy" and down["reason"].startswith(f"{ui}: "), down
    standalone_spark.start_master()
    alone = await _wait_for_status(api, "spark-cluster-default", lambda s: s["details"].get("status") == "ALIVE")
    assert (alone["status"], alone["reason"]) == ("unhealthy", "the master is ALIVE but has no alive workers")
    assert alone["version"] == importlib.metadata.version("pyspark")
    standalone_spark.start_worker()
    ready = await _wait_for_status(api, "spark-cluster-default", lambda s: s["status"] == "healthy")
    assert ready["status"] == "healthy", ready
    assert ready["details"]["alive_workers"] == 1 and ready["details"]["cores"] == 1
    assert ready["details"]["memory_mb"] == 512 and ready["details"]["master_url"] == standalone_spark.master_url


# ---- logs ---------------------------------------------------------------------------------


async def test_the_jupyter_log_holds_what_the_server_logged(api, jp_serverapp):
    token = jp_serverapp.identity_provider.token
    # What `jupyter server` logs at start-up (here the test harness has taken its handlers then).
    jp_serverapp.log.info("Jupyter Server is running at: http://127.0.0.1:8888/lab?token=%s", token)
    status, error = await api.call("GET", "monitoring/services/nope/logs")
    assert status == 404
    assert error["message"] == "no service named 'nope' (known: " + ", ".join(SERVICE_NAMES) + ")"
    status, logs = await api.call("GET", "monitoring/services/jupyter/logs", params={"lines": 5000})
    assert status == 200 and logs["name"] == "jupyter"
    refused = [line for line in logs["lines"] if "404 GET " in line and "api/v1/monitoring/services/nope/logs" in line]
    assert refused and refused[-1].startswith("[W "), "the server's own line, formatted as it prints it"
    assert any("DataHarbour: default cluster on local[*]" in line for line in logs["lines"])
    # The server logs its address with its token at start-up: a reader of logs sees neither.
    assert any(line.endswith("running at: http://127.0.0.1:8888/lab?token=********") for line in logs["lines"])
    assert token not in json.dumps(logs)
    status, last = await api.call("GET", "monitoring/services/jupyter/logs", params={"lines": 1})
    assert status == 200 and len(last["lines"]) == 1


@pytest.fixture
def jp_argv(request):
    """The test server's command line: `@pytest.mark.parametrize("jp_argv", [[...]], indirect=True)`."""
    return list(getattr(request, "param", []))


@pytest.mark.parametrize("jp_argv", [["--ServerApp.log_level=INFO"]], indirect=True)
async def test_the_jupyter_log_keeps_what_the_server_shows_at_its_log_level(api, jp_serverapp):
    # traitlets leaves the server's logger at DEBUG and filters on its console handler.
    assert jp_serverapp.log_level == logging.INFO and jp_serverapp.log.getEffectiveLevel() == logging.DEBUG
    jp_serverapp.log.debug("marker: a debug line")
    jp_serverapp.log.info("marker: an info line")
    assert (await api.call("GET", "monitoring/services/jupyter/logs", params={"lines": 1}))[0] == 200  # DEBUG
    assert (await api.call("GET", "monitoring/services/nope/logs"))[0] == 404  # WARNING
    status, logs = await api.call("GET", "monitoring/services/jupyter/logs", params={"lines": 5000})
    assert status == 200
    text = "\n".join(logs["lines"])
    assert "marker: an info line" in text and "marker: a debug line" not in text
    assert "404 GET " in text and "200 GET " not in text


async def test_log_lines_must_be_between_1_and_5000(api):
    for lines in ("0", "5001", "many"):
        status, error = await api.call("GET", "monitoring/services/jupyter/logs", params={"lines": lines})
        assert status == 400 and error["message"].startswith("lines: "), (lines, error)


async def test_no_logs_of_services_that_run_elsewhere(api):
    for name in ("minio", "airflow", "postgresql"):
        status, error = await api.call("GET", f"monitoring/services/{name}/logs")
        assert (status, error["message"]) == (404, f"this server keeps no logs of {name}: it runs outside this "
                                                   "server")
    status, error = await api.call("GET", "monitoring/services/spark-cluster-default/logs")
    assert status == 404
    assert error["message"].startswith("this server keeps no logs of spark-cluster-default: a local cluster has no "
                                       "daemons")


async def test_a_registered_log_source_reads_the_last_lines_across_its_files(api, extension, tmp_path):
    """How the clusters capability will show its daemons' logs: files registered by name."""
    older, newer = tmp_path / "master.log.1", tmp_path / "master.log"
    older.write_text("".join(f"old {i}\n" for i in range(3)))
    newer.write_text("".join(f"new {i} password=http://u:hunter2@host\n" for i in range(100_000)))
    extension.settings["dataharbour"]["service_logs"].register("spark-cluster-default", LogFiles([older, newer]))
    status, logs = await api.call("GET", "monitoring/services/spark-cluster-default/logs", params={"lines": 2})
    assert status == 200
    assert logs["lines"] == ["new 99998 password=http://u:********@host", "new 99999 password=http://u:********@host"]
    newer.write_text("new 0\n")
    _, logs = await api.call("GET", "monitoring/services/spark-cluster-default/logs", params={"lines": 3})
    assert logs["lines"] == ["old 1", "old 2", "new 0"]


# ---- the overview ---------------------------------------------------------------------------


async def test_the_overview_has_metrics_services_and_jobs_by_state(api):
    job = await api.submit(name="counted", code="print('counted')\n")
    assert (await api.wait(job["id"]))["state"] == "succeeded"
    status, overview = await api.call("GET", "monitoring/overview")
    assert status == 200 and set(overview) == {"metrics", "services", "jobs", "errors"}
    assert overview["errors"] == {}
    MetricsSample.model_validate(overview["metrics"])
    assert overview["metrics"]["jobs"] == {"running": 0, "queued": 0}
    assert [s["name"] for s in overview["services"]] == SERVICE_NAMES
    assert [s["status"] for s in overview["services"]] == ["healthy", "healthy", "disabled", "disabled", "disabled"]
    assert overview["jobs"] == {"queued": 0, "starting": 0, "running": 0, "succeeded": 1, "failed": 0, "killed": 0,
                                "lost": 0}


async def test_the_overview_answers_without_the_parts_the_store_cannot_give(api, extension, monkeypatch):
    async def store_down(*args, **kwargs):
        raise ConnectionRefusedError("connection to the store at 127.0.0.1:5432 refused")

    monkeypatch.setattr(extension.metrics, "current", store_down)
    monkeypatch.setattr(extension.settings["dataharbour"]["dashboard"].statistics, "totals", store_down)
    status, overview = await api.call("GET", "monitoring/overview")
    assert status == 200, overview
    assert (overview["metrics"], overview["jobs"]) == (None, None)
    reason = "could not be read (ConnectionRefusedError); the server log has the details"
    assert overview["errors"] == {"metrics": reason, "jobs": reason}
    assert [s["name"] for s in overview["services"]] == SERVICE_NAMES
    _, logs = await api.call("GET", "monitoring/services/jupyter/logs", params={"lines": 5000})
    assert any("the monitoring overview could not read its metrics" in line for line in logs["lines"])
    assert any("connection to the store at 127.0.0.1:5432 refused" in line for line in logs["lines"])
