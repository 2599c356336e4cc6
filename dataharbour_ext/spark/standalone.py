"""Spark standalone daemons: a master and its workers, on 127.0.0.1, as supervised runs.

    master:  spark-class org.apache.spark.deploy.master.Master --host 127.0.0.1 --port P --webui-port W
    worker:  spark-class org.apache.spark.deploy.worker.Worker --host 127.0.0.1 --port 0 --webui-port 0
             --cores C --memory M --work-dir DIR spark://127.0.0.1:P

Each daemon gets its own run folder (runs/folder.py: command.json, output.log, exit.json)
and runs under a supervisor, so it outlives a server restart and its whole tree (a worker's
executors) stops with it. The JVM options (SPARK_DAEMON_JAVA_OPTS) carry the class-data
archive, a log config that keeps the daemons at WARN except for the master's and workers'
own lines (start, registration, applications), and `spark.port.maxRetries=0`: a port taken
meanwhile fails the daemon (and the cluster, with that reason) instead of Spark quietly
moving to the next port, where nobody would look for it.

A launched cluster has a secret of its own (`spark.authenticate`): without it, any local
user could register an application with a master on 127.0.0.1, and the workers would run its
executors as this user. Master and workers read it from a 0600 `--properties-file` in their
run folder (never a command line or SPARK_DAEMON_JAVA_OPTS, which `ps` shows); jobs on the
cluster get it from the cluster's conf, through their own 0600 properties file.

The master's JSON status (`http://127.0.0.1:W/json/`) says when workers have registered
and what they offer; `MasterStatusReader` reads it with a short timeout, off the loop.
"""

import asyncio
import os
import re
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..runs import folder
from .installation import spark_home
from .log_config import SparkLogConfig
from .submit import join_java_options, write_properties

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
DAEMON_LOG_CONFIG = "log4j2-dataharbour-daemons.properties"
# The daemons' own classes log what a reader of the cluster's log wants at INFO: started,
# elected leader, worker registered / removed, application registered / removed.
_DAEMON_LOGGERS = """
# DataHarbour: the master's and workers' own lines (start, registration, applications).
logger.dataharbourMaster.name = org.apache.spark.deploy.master.Master
logger.dataharbourMaster.level = info
logger.dataharbourWorker.name = org.apache.spark.deploy.worker.Worker
logger.dataharbourWorker.level = info
"""
# A port taken between choosing it and binding it fails the daemon instead of moving it;
# kill links off in the master UI (jobs are killed through the API); no REST submission port.
DAEMON_SYSTEM_PROPERTIES = ("-Dspark.port.maxRetries=0", "-Dspark.ui.killEnabled=false",
                            "-Dspark.master.rest.enabled=false")
STATUS_TIMEOUT_SECONDS = 2.0
AUTH_CONF_KEYS = ("spark.authenticate", "spark.authenticate.secret")
DAEMON_PROPERTIES_FILE = "daemon.properties"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the daemon binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def spark_class() -> str:
    return str(spark_home() / "bin" / "spark-class")


def master_url(port: int) -> str:
    return f"spark://{HOST}:{port}"


def master_ui_url(webui_port: int) -> str:
    return f"http://{HOST}:{webui_port}"


def master_command(port: int, webui_port: int) -> list[str]:
    return [spark_class(), MASTER_CLASS, "--host", HOST, "--port", str(port), "--webui-port", str(webui_port)]


def worker_command(master: str, cores: int, memory_mb: int, work_dir: str) -> list[str]:
    # Port 0: the worker's own ports are the kernel's choice, so no race for them.
    return [spark_class(), WORKER_CLASS, "--host", HOST, "--port", "0", "--webui-port", "0", "--cores", str(cores),
            "--memory", f"{memory_mb}m", "--work-dir", work_dir, master]


def new_auth_conf() -> dict[str, str]:
    """The conf that makes a new cluster's master, workers and jobs share a secret."""
    return {"spark.authenticate": "true", "spark.authenticate.secret": secrets.token_urlsafe(32)}


def daemon_properties(cluster_conf: dict[str, str]) -> dict[str, str]:
    """What of a cluster's conf its daemons read from their properties file."""
    return {key: cluster_conf[key] for key in AUTH_CONF_KEYS if key in cluster_conf}


class DaemonLogConfig(SparkLogConfig):
    """Spark's log4j2 defaults at WARN (spark/log_config.py) plus the daemons' own loggers at
    INFO, under `<state_dir>/spark-conf/`; `java_options()` writes it (blocking: in a thread)."""

    def __init__(self, state_dir: str | os.PathLike):
        super().__init__(state_dir, name=DAEMON_LOG_CONFIG, extra=_DAEMON_LOGGERS)


def daemon_environment(java_options: list[str], local_ip: str = HOST) -> dict[str, str]:
    """What a daemon adds to the environment it inherits (the server's own is never written)."""
    return {
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": local_ip,  # the web UIs bind where this says
        "SPARK_DAEMON_JAVA_OPTS": join_java_options([*java_options, *DAEMON_SYSTEM_PROPERTIES]),
    }


def write_daemon_folder(run_dir: str | os.PathLike, argv: list[str], env: dict[str, str], *,
                        stop_grace_seconds: float, niceness: int, properties: dict[str, str] | None = None) -> Path:
    """A daemon's run folder with its command, ready for `runs.process.launch` (blocking).
    `properties` (the cluster's secret) go into an owner-only file the daemon is pointed at."""
    path = folder.create(run_dir)
    folder.clear_outcome(path)
    if properties:
        properties_file = path / DAEMON_PROPERTIES_FILE
        write_properties(str(properties_file), properties)
        os.chmod(properties_file, 0o600)  # an existing file keeps its mode through O_TRUNC
        # Master and Worker take their options in any order, the master URL included.
        argv = [*argv, "--properties-file", str(properties_file)]
    folder.write_command(path, argv, env, path, stop_grace_seconds=stop_grace_seconds, niceness=niceness)
    return path


# ---- the master's JSON status ---------------------------------------------------------


@dataclass
class WorkerStatus:
    id: str
    host: str
    port: int
    state: str
    cores: int
    cores_used: int
    memory_mb: int
    memory_used_mb: int


@dataclass
class MasterStatus:
    status: str  # ALIVE, STANDBY, RECOVERING, ...
    url: str | None
    workers: list[WorkerStatus] = field(default_factory=list)
    cores: int = 0
    cores_used: int = 0
    memory_mb: int = 0
    memory_used_mb: int = 0
    active_apps: int = 0

    @property
    def alive_workers(self) -> list[WorkerStatus]:
        return [worker for worker in self.workers if worker.state == "ALIVE"]


class NotAMaster(ValueError):
    """The address answered, but not with a standalone master's status."""


def parse_master_status(data) -> MasterStatus:
    if not isinstance(data, dict) or not isinstance(data.get("status"), str):
        raise NotAMaster("the answer is not a Spark master's status (is it a driver's UI?)")
    workers = []
    for item in data.get("workers") or ():
        if not isinstance(item, dict):
            continue
        workers.append(WorkerStatus(
            id=str(item.get("id", "")), host=str(item.get("host", "")), port=_int(item.get("port")),
            state=str(item.get("state", "UNKNOWN")), cores=_int(item.get("cores")),
            cores_used=_int(item.get("coresused")), memory_mb=_int(item.get("memory")),
            memory_used_mb=_int(item.get("memoryused")),
        ))
    return MasterStatus(status=data["status"], url=data.get("url"), workers=workers, cores=_int(data.get("cores")),
                        cores_used=_int(data.get("coresused")), memory_mb=_int(data.get("memory")),
                        memory_used_mb=_int(data.get("memoryused")),
                        active_apps=len(apps) if isinstance(apps := data.get("activeapps"), list) else 0)


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class MasterStatusReader:
    """GET `<master UI>/json/` with a short timeout. The HTTP client is built once, on a
    thread (building one loads the CA bundle: CPU the event loop must not spend)."""

    def __init__(self, timeout: float = STATUS_TIMEOUT_SECONDS):
        self.timeout = timeout
        self._client: asyncio.Future | None = None

    async def read(self, ui_url: str) -> MasterStatus:
        """The status; httpx.HTTPError when it cannot be read, NotAMaster when it is not one."""
        if self._client is None:
            self._client = asyncio.ensure_future(asyncio.to_thread(
                httpx.AsyncClient, limits=httpx.Limits(max_keepalive_connections=0), follow_redirects=True))
        client = await asyncio.shield(self._client)
        response = await client.get(f"{ui_url.rstrip('/')}/json/", timeout=self.timeout)
        response.raise_for_status()
        try:
            return parse_master_status(response.json())
        except ValueError as error:
            raise NotAMaster(str(error)) from None

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await (await client).aclose()
            except Exception:
                pass


# ---- why a daemon failed, from its log ------------------------------------------------

_BIND_SERVICE = re.compile(r"Service '(?P<service>[^']+)' (?:failed after|could not bind)")
_SERVICE_WORDS = {"sparkMaster": "the master's port", "MasterUI": "the master's web UI port",
                  "sparkWorker": "the worker's port", "WorkerUI": "the worker's web UI port"}
ERROR_LINE = re.compile(r"\b(ERROR|FATAL)\b|Exception|Error:")


def failure_reason(log_lines: list[str], exit_code: int | None, ports: dict[str, int] | None = None) -> str:
    """Why a daemon ended, in words, from the end of its log: Java missing, a port taken,
    the master unreachable, else the last error line, else its exit code."""
    text = "\n".join(log_lines)
    if "JAVA_HOME is not set" in text or re.search(r"bin/java: (No such file|not found)|java: command not found",
                                                   text):
        return "Java was not found: install Java 17 or later, or set JAVA_HOME (spark-class could not run java)"
    if "BindException" in text or "Address already in use" in text:
        found = _BIND_SERVICE.search(text)
        service = found["service"] if found else None
        what = _SERVICE_WORDS.get(service, f"the port of {service}" if service else "a port")
        port = (ports or {}).get(service) if service else None
        return f"{what}{f' {port}' if port else ''} is taken (BindException: Address already in use)"
    if "All masters are unresponsive" in text or "Failed to connect to master" in text:
        return "the worker could not reach its master"
    errors = [line.strip() for line in log_lines if ERROR_LINE.search(line)]
    if errors:
        return errors[-1][:400]
    if exit_code is None:
        return "it ended without recording how"
    return f"it exited with code {exit_code}" if exit_code >= 0 else f"it was killed by signal {-exit_code}"
