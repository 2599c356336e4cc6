"""Per-cluster Spark Connect servers (services/connect_servers.py) against real servers.

A real Connect server (spark-submit, `local[1]`) costs ~10 s of JVM start on this machine,
so one test walks one server through its whole life: concurrent first uses, a real client
(in a subprocess: the test process stays free of pyspark's client), the token, a SIGKILL
and the restart, the idle stop, a start again and the shutdown stop. Failures that need no
JVM (Java missing) or one short-lived one (a taken port) have tests of their own. A server
left behind by a crashed server is adopted by the next one (one more real server); what
adoption refuses, and how an adopted server is watched, is shown with stand-ins (a Python
process in the server's real run folder, listening on its port or not).

Every process a test starts is stopped in teardown by its supervisor's identity.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dataharbour_ext.errors import Conflict, ServiceUnavailable
from dataharbour_ext.events import EventHub
from dataharbour_ext.runs import folder
from dataharbour_ext.runs import process as supervision
from dataharbour_ext.runs.identity import ProcessIdentity
from dataharbour_ext.runs.process import Supervised
from dataharbour_ext.services.clusters import Cluster, ClusterService
from dataharbour_ext.services.connect_servers import OWNER_FILE, ConnectConfig, ConnectServers
from dataharbour_ext.services.health import ConnectServerChecks, Finding, HealthCheck
from dataharbour_ext.services.service_health import ServiceHealth
from dataharbour_ext.services.service_logs import ServiceLogs
from dataharbour_ext.spark import connect_server
from dataharbour_ext.spark.connect_server import failure_reason
from dataharbour_ext.spark.standalone import free_port

pytestmark = pytest.mark.timeout(900)

DEADLINE = 240.0  # a loaded two-core machine: generous, never a fixed sleep
LOCAL = Cluster("local-test", "Local test cluster", "local[1]")
# A cluster's secret, as a launched standalone cluster has one: the server carries it, unseen.
SECRET = "cluster-secret-6f1c2a9e"
GUARDED = Cluster("local-test", "Local test cluster", "local[1]",
                  conf={"spark.authenticate": "true", "spark.authenticate.secret": SECRET})

# The client, fed its URL on stdin (never on a command line): without the token first (it
# must be refused), then with it.
CLIENT = """
import sys
from pyspark.sql import SparkSession
url = sys.stdin.readline().strip()
if len(sys.argv) > 1:
    bare = url.split(";", 1)[0]
    try:
        SparkSession.builder.remote(bare).create().range(1).count()
        print("NO-TOKEN ACCEPTED")
    except Exception as error:
        print("NO-TOKEN REFUSED", "UNAUTHENTICATED" in str(error))
spark = SparkSession.builder.remote(url).create()  # a new session: never the refused one
print("COUNT", spark.range(5).count())
spark.stop()
"""


class AlwaysHealthy(HealthCheck):
    kind = "jupyter"

    async def probe(self, timeout: float) -> Finding:
        return Finding()


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    yield path
    # Whatever a failed test left running, stopped by its supervisor's identity.
    for supervisor_file in path.glob(f"connect/*/{folder.SUPERVISOR_FILE}"):
        identity = folder.read_supervisor(supervisor_file.parent)
        supervised = Supervised.attach(identity) if identity else None
        if supervised is not None:
            supervised.force_stop()


@pytest.fixture
def no_client_token(monkeypatch):
    # pyspark's client takes its token from here when the URL has none.
    monkeypatch.delenv("SPARK_CONNECT_AUTHENTICATE_TOKEN", raising=False)


def platform(servers: ConnectServers) -> tuple[ServiceHealth, ServiceLogs]:
    """ServiceHealth with the Connect servers as its extra checks, and the service logs."""
    health = ServiceHealth(EventHub(), ClusterService("local[1]"), AlwaysHealthy("jupyter"), [], timeout=5.0,
                           cache_seconds=0.0, interval=0.0, extra_checks=ConnectServerChecks(servers))
    logs = ServiceLogs(health)
    servers.service_logs = logs
    return health, logs


async def wait_for(predicate, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"still waiting for {what}"
        await asyncio.sleep(0.1)


async def run_client(url: str, *, without_token_first: bool = False) -> str:
    argv = [sys.executable, "-c", CLIENT, *(["check-token"] if without_token_first else [])]
    env = {key: value for key, value in os.environ.items() if key != "SPARK_CONNECT_AUTHENTICATE_TOKEN"}
    result = await asyncio.to_thread(subprocess.run, argv, input=url + "\n", capture_output=True, text=True,
                                     timeout=DEADLINE, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def processes_of(run_dir: Path) -> dict[str, list[psutil.Process]]:
    """The supervisors and server JVMs running for `run_dir` (one each when it is up)."""
    found = {"supervisors": [], "servers": []}
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(run_dir) not in cmdline:
            continue
        if "dataharbour_ext.runs.supervisor" in cmdline:
            found["supervisors"].append(process)
        elif "SparkConnectServer" in cmdline:
            found["servers"].append(process)
    return found


def gone(*identities: ProcessIdentity | None) -> bool:
    return all(identity is None or not identity.matches() for identity in identities)


async def health_of(health: ServiceHealth, name: str):
    return next(status for status in await health.refresh() if status.name == name)


async def test_a_clusters_connect_server_serves_restarts_idles_and_stops(state_dir, no_client_token):
    servers = ConnectServers(ConnectConfig(str(state_dir), start_timeout=DEADLINE, idle_timeout=3.0,
                                           stop_grace_seconds=5.0, restart_delay=0.5))
    health, logs = platform(servers)
    changes = []
    servers.on_change(changes.append)
    run_dir = state_dir / "connect" / LOCAL.id
    try:
        # Three first uses at once: one start, one server, one endpoint.
        endpoints = await asyncio.gather(*(servers.ensure(GUARDED) for _ in range(3)))
        servers.hold(LOCAL.id)  # in use until the idle stop is the point
        endpoint = endpoints[0]
        assert all(other == endpoint for other in endpoints)
        assert endpoint.url == f"sc://localhost:{endpoint.port}/;token={endpoint.token}"
        running = processes_of(run_dir)
        assert (len(running["supervisors"]), len(running["servers"])) == (1, 1)
        status = servers.status(LOCAL.id)
        assert (status.state, status.port, status.pid, status.in_use) == ("ready", endpoint.port,
                                                                         running["servers"][0].pid, 1)
        assert status.address == f"sc://localhost:{endpoint.port}"
        first_jvm = ProcessIdentity.of(status.pid)
        # Its JVM options and heap came through; the cluster's secret is in its 0600
        # properties file, never on its command line.
        cmdline = running["servers"][0].cmdline()
        assert "-Xmx1g" in cmdline and any("log4j2-dataharbour-connect.properties" in arg for arg in cmdline)
        assert not any(SECRET in arg for arg in cmdline)
        properties = run_dir / "daemon.properties"
        assert properties.stat().st_mode & 0o777 == 0o600
        assert f"spark.authenticate.secret={SECRET}" in properties.read_text()
        assert "spark.connect.execute.manager.detachedTimeout=60s" in properties.read_text()
        first_supervisor = folder.read_supervisor(run_dir)

        # Its log, its health; the token in none of them.
        started_line = f"Spark Connect server started at: 127.0.0.1:{endpoint.port}"
        deadline = time.monotonic() + DEADLINE  # the port may answer before the line reaches the log
        lines = await logs.tail(f"connect:{LOCAL.id}", 500)
        while not any(started_line in line for line in lines):
            assert time.monotonic() < deadline, lines[-20:]
            await asyncio.sleep(0.1)
            lines = await logs.tail(f"connect:{LOCAL.id}", 500)
        checked = await health_of(health, f"connect:{LOCAL.id}")
        assert (checked.kind, checked.status, checked.details["port"]) == ("spark_connect", "healthy", endpoint.port)
        for shown in (json.dumps(checked.model_dump(mode="json")), repr(status), repr(endpoint), "\n".join(lines)):
            assert endpoint.token not in shown and SECRET not in shown

        # A real client: refused without the token, served with it.
        output = await run_client(endpoint.url, without_token_first=True)
        assert "NO-TOKEN REFUSED True" in output and "COUNT 5" in output, output

        # Its JVM SIGKILLed: restarted (new port, new token), and serving again.
        assert first_jvm.send_signal(signal.SIGKILL)
        await wait_for(lambda: servers.status(LOCAL.id).state == "starting", "the server to be restarting")
        restarted = await servers.ensure(GUARDED)
        assert servers.status(LOCAL.id).state == "ready"
        assert restarted.token != endpoint.token
        assert gone(first_jvm, first_supervisor)
        output = await run_client(restarted.url)
        assert "COUNT 5" in output, output

        # Released: stopped after 3 s without use, nothing of it left; its health says why.
        second_jvm = ProcessIdentity.of(servers.status(LOCAL.id).pid)
        second_supervisor = folder.read_supervisor(run_dir)
        servers.release(LOCAL.id)
        await wait_for(lambda: servers.status(LOCAL.id).state == "stopped", "the idle stop")
        assert servers.status(LOCAL.id).reason == "idle for 3 s; it starts again on first use"
        assert gone(second_jvm, second_supervisor)
        assert processes_of(run_dir) == {"supervisors": [], "servers": []}
        checked = await health_of(health, f"connect:{LOCAL.id}")
        assert (checked.status, checked.reason) == (
            "disabled", "the Spark Connect server is stopped: idle for 3 s; it starts again on first use")

        # Used again: started again; the server's shutdown stops it, and nothing is left.
        async with servers.using(GUARDED) as again:
            assert servers.status(LOCAL.id).in_use == 1
            third_jvm = ProcessIdentity.of(servers.status(LOCAL.id).pid)
            third_supervisor = folder.read_supervisor(run_dir)
            assert again.port and third_jvm is not None
            await servers.stop()
        assert servers.status(LOCAL.id).state == "stopped"
        assert gone(third_jvm, third_supervisor)
        assert processes_of(run_dir) == {"supervisors": [], "servers": []}
        with pytest.raises(ServiceUnavailable):
            await servers.ensure(GUARDED)
        assert set(changes) == {LOCAL.id} and len(changes) >= 8
    finally:
        await servers.stop()
        await health.stop()


async def test_a_start_without_java_fails_with_the_reason_from_its_log(state_dir, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", "/nonexistent")
    servers = ConnectServers(ConnectConfig(str(state_dir), start_timeout=DEADLINE, stop_grace_seconds=5.0))
    health, logs = platform(servers)
    try:
        with pytest.raises(ServiceUnavailable, match="Java was not found") as raised:
            await servers.ensure(LOCAL)
        assert raised.value.message.startswith(f"the Spark Connect server of cluster {LOCAL.id} could not start: ")
        status = servers.status(LOCAL.id)
        assert status.state == "failed" and status.reason.startswith("Java was not found")
        checked = await health_of(health, f"connect:{LOCAL.id}")
        assert (checked.status, checked.reason) == ("unhealthy", f"the Spark Connect server failed: {status.reason}")
        assert any("/nonexistent/bin/java" in line for line in await logs.tail(f"connect:{LOCAL.id}", 50))
        assert processes_of(state_dir / "connect" / LOCAL.id) == {"supervisors": [], "servers": []}
    finally:
        await servers.stop()
        await health.stop()


async def test_a_taken_port_fails_the_start_and_never_counts_as_ready(state_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()  # it answers: only the process check tells it is not the server
        port = taken.getsockname()[1]
        servers = ConnectServers(ConnectConfig(str(state_dir), start_timeout=DEADLINE, stop_grace_seconds=5.0),
                                 choose_port=lambda: port)
        try:
            with pytest.raises(ServiceUnavailable, match=f"its port {port} is taken"):
                await servers.ensure(LOCAL)
            assert servers.status(LOCAL.id).state == "failed"
            assert processes_of(state_dir / "connect" / LOCAL.id) == {"supervisors": [], "servers": []}
        finally:
            await servers.stop()


async def test_external_and_unsupported_clusters_start_nothing(state_dir):
    servers = ConnectServers(ConnectConfig(str(state_dir)))
    elsewhere = Cluster("external-1", "Elsewhere", "k8s://https://10.0.0.1:6443",
                        conf={"dataharbour.connect.url": "sc://connect.example:15002/;token=s3cr3t-t0ken"})
    endpoint = await servers.ensure(elsewhere)
    assert (endpoint.url, endpoint.port, endpoint.token) == ("sc://connect.example:15002/;token=s3cr3t-t0ken", 15002,
                                                             "s3cr3t-t0ken")
    status = servers.status(elsewhere.id)
    assert (status.state, status.address, status.pid) == ("external", "sc://connect.example:15002", None)
    assert "s3cr3t-t0ken" not in repr(status) + repr(endpoint)
    for master in ("k8s://https://10.0.0.1:6443", "yarn"):
        with pytest.raises(Conflict, match="cannot have a Spark Connect server"):
            await servers.ensure(Cluster("other", "Other", master))
    assert not (state_dir / "connect").exists()
    await servers.stop()


# ---- servers left behind by a server that crashed ------------------------------------------

# A stand-in for a Connect server, started with the server's own arguments after its own:
# listens on the port (or, given "silent" in its environment, does not) until stopped.
STAND_IN = """
import os, socket, sys, time
port = int(next(a for a in sys.argv if a.startswith("spark.connect.grpc.binding.port=")).split("=")[1])
if not os.environ.get("STAND_IN_SILENT"):
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen()
print("stand-in up", flush=True)
time.sleep(600)
"""


def known_clusters(*clusters: Cluster) -> ClusterService:
    service = ClusterService("local[1]")
    for cluster in clusters:
        service.add(cluster, "running")
    return service


def gone_owner() -> dict:
    """An owner.json of a server process that has ended."""
    ended = subprocess.Popen(["true"])
    identity = ProcessIdentity.of(ended.pid)
    ended.wait()
    return {**identity.to_json(), "instance": "crashed"}


def crash(servers: ConnectServers) -> None:
    """As if its server process died: its Connect servers run on, unwatched, none stopped."""
    for server in servers._servers.values():
        if server.idle_timer is not None:
            server.idle_timer.cancel()
        server.group.detach()
    for task in list(servers._tasks):
        task.cancel()


async def leave_stand_in(state_dir: Path, cluster: Cluster, *, listening: bool = True) -> tuple[Supervised, int]:
    """A server's real run folder for `cluster` (its command, token and conf as a start writes
    them) running a stand-in instead of spark-submit, owned by a server that is gone."""
    port = free_port()
    run_dir = state_dir / "connect" / cluster.id
    spec = connect_server.ConnectServerSpec(master_url=cluster.master_url, port=port, token="stand-in-token",
                                            cluster_conf=dict(cluster.conf))
    connect_server.write_server_folder(run_dir, spec, stop_grace_seconds=2.0, niceness=0)
    command = folder.read_json(run_dir / folder.COMMAND_FILE)
    command["argv"] = [sys.executable, "-c", STAND_IN, *command["argv"][1:]]
    if not listening:
        command["env"]["STAND_IN_SILENT"] = "1"
    folder.write_json_atomically(run_dir / folder.COMMAND_FILE, command)
    folder.write_json_atomically(run_dir / OWNER_FILE, gone_owner())
    supervised = await asyncio.to_thread(supervision.launch, run_dir)
    await wait_for(lambda: folder.read_supervisor(run_dir) and "stand-in up" in
                   (run_dir / folder.LOG_FILE).read_text(errors="replace"), "the stand-in to be up")
    return supervised, port


async def test_a_server_left_by_a_crashed_server_is_adopted_and_keeps_serving(state_dir, no_client_token):
    config = ConnectConfig(str(state_dir), start_timeout=DEADLINE, stop_grace_seconds=5.0)
    clusters = known_clusters(LOCAL)
    crashed = ConnectServers(config, clusters=clusters)
    adopting = ConnectServers(config, clusters=clusters)
    run_dir = state_dir / "connect" / LOCAL.id
    try:
        endpoint = await crashed.ensure(LOCAL)
        jvm = ProcessIdentity.of(crashed.status(LOCAL.id).pid)
        supervisor = folder.read_supervisor(run_dir)
        crash(crashed)
        folder.write_json_atomically(run_dir / OWNER_FILE, gone_owner())

        # The next server adopts it: the same JVM, port and token; no second server starts.
        await adopting.start([LOCAL], wait=True)
        status = adopting.status(LOCAL.id)
        assert (status.state, status.port, status.pid) == ("ready", endpoint.port, jvm.pid)
        assert jvm.matches() and supervisor.matches()
        adopted = await adopting.ensure(LOCAL)
        assert (adopted.url, adopted.port, adopted.token) == (endpoint.url, endpoint.port, endpoint.token)
        assert adopted.started_at is not None and endpoint.token not in repr(status) + repr(adopted)
        running = processes_of(run_dir)
        assert (len(running["supervisors"]), len(running["servers"])) == (1, 1)
        owner = folder.read_json(run_dir / OWNER_FILE)
        assert (owner["pid"], owner["instance"]) == (os.getpid(), adopting.instance)

        # A client that had the old endpoint is served by it.
        output = await run_client(endpoint.url)
        assert "COUNT 5" in output, output

        # It is this server's now: its shutdown stops it, and no JVM of it is left.
        await adopting.stop()
        assert adopting.status(LOCAL.id).state == "stopped"
        assert gone(jvm, supervisor)
        assert processes_of(run_dir) == {"supervisors": [], "servers": []}
    finally:
        await adopting.stop()
        await crashed.stop()
        for server in crashed._servers.values():  # its supervisor is this process's child: reaped
            if server.daemon is not None:
                server.daemon.supervised.reap()


async def test_an_adopted_server_is_watched_for_its_end_and_stopped_when_idle(state_dir):
    held, idle = Cluster("held", "Held", "local[1]"), Cluster("idle", "Idle", "local[1]")
    left = {cluster.id: await leave_stand_in(state_dir, cluster) for cluster in (held, idle)}
    servers = ConnectServers(ConnectConfig(str(state_dir), idle_timeout=3.0, stop_grace_seconds=2.0, max_deaths=1),
                             clusters=known_clusters(held, idle))
    try:
        await servers.start()
        # Both held while they are looked at: the idle one's 3 s may pass on a busy machine.
        servers.hold(held.id)
        servers.hold(idle.id)
        for cluster_id, (supervised, port) in left.items():
            status = servers.status(cluster_id)
            assert (status.state, status.port) == ("ready", port)
            children = await asyncio.to_thread(lambda pid: [c.pid for c in psutil.Process(pid).children(recursive=True)],
                                               supervised.identity.pid)
            assert status.pid in children
        servers.release(idle.id)
        # Its end is seen, as for a server started here (one end allowed: failed, no restart).
        stand_in = ProcessIdentity.of(servers.status(held.id).pid)
        assert stand_in.send_signal(signal.SIGKILL)
        await wait_for(lambda: servers.status(held.id).state == "failed", "the adopted server's end")
        assert servers.status(held.id).reason.startswith("it ended 1 times within 300 s")
        # Unused since its adoption: stopped when idle.
        await wait_for(lambda: servers.status(idle.id).state == "stopped", "the idle stop")
        assert servers.status(idle.id).reason == "idle for 3 s; it starts again on first use"
        await wait_for(lambda: not left[idle.id][0].alive(), "the idle server's supervisor to end")
        assert folder.read_exit_status(state_dir / "connect" / idle.id)["stop_requested"] is True
    finally:
        await servers.stop()
        for supervised, _ in left.values():
            await asyncio.to_thread(supervised.force_stop)
            supervised.reap()
            supervised.close()


async def test_leftovers_that_cannot_be_adopted_are_stopped_at_start(state_dir, caplog):
    redefined = Cluster("redefined", "Redefined", "local[1]", conf={"spark.sql.shuffle.partitions": "4"})
    unknown = Cluster("left-behind", "Gone", "local[1]")
    left = {
        LOCAL.id: await leave_stand_in(state_dir, LOCAL, listening=False),  # nothing holds its port
        redefined.id: await leave_stand_in(state_dir, redefined),  # started for another definition
        unknown.id: await leave_stand_in(state_dir, unknown),  # its cluster is not known here
    }
    # The owner of this one still runs (this very process): another server's, left alone.
    others = Cluster("others", "Another server's", "local[1]")
    left[others.id] = await leave_stand_in(state_dir, others)
    me = ProcessIdentity.of(os.getpid())
    folder.write_json_atomically(state_dir / "connect" / others.id / OWNER_FILE,
                                 {**me.to_json(), "instance": "another-server"})
    servers = ConnectServers(ConnectConfig(str(state_dir), stop_grace_seconds=2.0),
                             clusters=known_clusters(LOCAL, Cluster("redefined", "Redefined", "local[1]"), others))
    try:
        with caplog.at_level("WARNING", logger="dataharbour_ext.connect"):
            await servers.start()
        why = {cluster_id: next((r.getMessage().rsplit(": ", 1)[1] for r in caplog.records
                                 if f"server of cluster {cluster_id} left behind" in r.getMessage()), None)
               for cluster_id in left}
        assert why == {LOCAL.id: f"nothing of it listens on its port {left[LOCAL.id][1]}",
                       redefined.id: "it was started for another definition of its cluster",
                       unknown.id: "cluster left-behind is unknown here, or has no Spark Connect server now",
                       others.id: None}
        assert "stand-in-token" not in caplog.text
        for cluster_id in (LOCAL.id, redefined.id, unknown.id):
            supervised, _ = left[cluster_id]
            assert not supervised.alive(), cluster_id
            assert folder.read_exit_status(state_dir / "connect" / cluster_id)["stop_requested"] is True
            assert folder.read_json(state_dir / "connect" / cluster_id / OWNER_FILE)["instance"] == "crashed"
            assert servers.status(cluster_id).state == "stopped"
        assert left[others.id][0].alive() and servers.status(others.id).state == "stopped"
    finally:
        await servers.stop()
        for supervised, _ in left.values():
            await asyncio.to_thread(supervised.force_stop)
            supervised.reap()
            supervised.close()


@pytest.mark.parametrize("lines, code, reason", [
    (["26/11/27 14:48:27 ERROR SparkConnectServer: Error starting Spark Connect server",
      "java.net.BindException: Failed to bind to address /127.0.0.1:39957: Service "
      "'org.apache.spark.sql.connect.service.SparkConnectService' failed after 0 retries (starting from 39957)!"],
     255, "its port 39957 is taken (BindException: Address already in use)"),
    (["/nonexistent/bin/java: No such file or directory"], 127,
     "Java was not found: install Java 17 or later, or set JAVA_HOME (spark-class could not run java)"),
    (["Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space"], 1,
     "it ran out of memory (java.lang.OutOfMemoryError); give it more with DataHarbourApp.connect_server_memory"),
    (["26/11/27 12:01:01 ERROR StandaloneSchedulerBackend: Application has been killed. Reason: All masters are "
      "unresponsive! Giving up."], 1, "it could not reach the cluster's master"),
    ([], -9, "it was killed by signal 9"),
])
def test_why_a_connect_server_failed_in_words(lines, code, reason):
    assert failure_reason(lines, code, 39957) == reason
