"""A cluster's Spark Connect server: its command, environment and conf, the URL clients use,
and why it failed, from its log. Pure functions (and one folder writer); the service that
runs and supervises the servers is services/connect_servers.py.

    spark-submit --class org.apache.spark.sql.connect.service.SparkConnectServer
                 --name "Spark Connect server" --master M
                 --conf spark.connect.grpc.binding.address=127.0.0.1
                 --conf spark.connect.grpc.binding.port=P  [--conf spark.driver.host=127.0.0.1 ...]
                 --load-spark-defaults --properties-file <run folder>/daemon.properties

spark-submit execs down to the JVM (spark-class cannot start this class). The server is a
driver of its cluster, so it carries the cluster's conf (a launched standalone cluster's
`spark.authenticate` secret among it): that conf goes into the 0600 properties file, never
onto the command line, where `ps` would show it. Spark's launcher treats this class as a
daemon: its JVM options come from SPARK_DAEMON_JAVA_OPTS, its heap from SPARK_DAEMON_MEMORY.

Clients authenticate with a token the server gets in SPARK_CONNECT_AUTHENTICATE_TOKEN (new
for every start). With a token, a client must name the host `localhost`: given `127.0.0.1`
and a token, the Python client turns to TLS and hangs.

A server a dead Jupyter server left running can be adopted by the next one: its folder
(`read_server_folder`) says where it listens, its token, and for which cluster definition it
was started.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..runs import folder
from .installation import spark_home, spark_submit
from .log_config import SparkLogConfig
from .standalone import failure_reason as daemon_failure_reason
from .standalone import write_daemon_folder
from .submit import join_java_options

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
APP_NAME = "Spark Connect server"
HOST = "127.0.0.1"
CLIENT_HOST = "localhost"  # see the module's docstring: never 127.0.0.1 with a token
TOKEN_VARIABLE = "SPARK_CONNECT_AUTHENTICATE_TOKEN"
DEFAULT_MEMORY = "1g"
LOG_CONFIG = "log4j2-dataharbour-connect.properties"
# An external cluster whose Connect server someone else runs names it in its conf.
EXTERNAL_URL_CONF = "dataharbour.connect.url"

# Where the driver binds: 127.0.0.1 unless the cluster's own conf says otherwise.
DRIVER_ADDRESS_CONF = {"spark.driver.host": HOST, "spark.driver.bindAddress": HOST}
# Defaults for keys the cluster's conf does not set. A client that dies leaves its query
# running until the server notices nobody reattaches: by default that takes ~7 minutes of
# the cluster's cores; these make it about a minute. Kill links off, as for every driver.
DEFAULT_CONF = {
    "spark.connect.execute.manager.detachedTimeout": "60s",
    "spark.connect.execute.reattachable.senderMaxStreamDuration": "30s",
    "spark.ui.killEnabled": "false",
}
# Its own start line at INFO ("Spark Connect server started at: 127.0.0.1:P"), the rest at WARN.
_CONNECT_LOGGERS = """
# DataHarbour: the Connect server's own start and stop lines.
logger.dataharbourConnect.name = org.apache.spark.sql.connect.service.SparkConnectServer
logger.dataharbourConnect.level = info
"""
BINDING_PORT_CONF = "spark.connect.grpc.binding.port"
STARTED_LINE = re.compile(r"Spark Connect server started at: \S+:(?P<port>\d+)")


@dataclass(frozen=True)
class ConnectServerSpec:
    master_url: str
    port: int
    token: str = field(repr=False)
    cluster_conf: dict[str, str] = field(default_factory=dict, repr=False)  # may hold the cluster's secret
    java_options: list[str] = field(default_factory=list)  # class-data archive, log config
    memory: str = DEFAULT_MEMORY


def binding_conf(port: int) -> dict[str, str]:
    """Where the gRPC service listens: ours to choose, so set on the command line; a port
    taken meanwhile fails the start (where we look for it) instead of moving the server."""
    return {"spark.connect.grpc.binding.address": HOST, BINDING_PORT_CONF: str(port),
            "spark.connect.grpc.port.maxRetries": "0"}


class ConnectLogConfig(SparkLogConfig):
    """Spark's log4j2 defaults at WARN plus the server's start line, under
    `<state_dir>/spark-conf/`; `java_options()` writes it (blocking: in a thread)."""

    def __init__(self, state_dir: str | os.PathLike):
        super().__init__(state_dir, name=LOG_CONFIG, extra=_CONNECT_LOGGERS)


def server_properties(spec: ConnectServerSpec) -> dict[str, str]:
    """The conf for the 0600 properties file: the cluster's, with our defaults where it is silent."""
    defaults = {key: value for key, value in DEFAULT_CONF.items() if key not in spec.cluster_conf}
    return {**defaults, **spec.cluster_conf}


def server_command(spec: ConnectServerSpec) -> list[str]:
    """spark-submit's arguments, without the properties file (write_server_folder adds it)."""
    argv = [spark_submit(), "--class", SERVER_CLASS, "--name", APP_NAME, "--master", spec.master_url]
    command_line = {**binding_conf(spec.port),
                    **{key: value for key, value in DRIVER_ADDRESS_CONF.items() if key not in spec.cluster_conf}}
    for key, value in command_line.items():
        argv += ["--conf", f"{key}={value}"]
    # spark-defaults.conf still applies under the properties file, as for jobs.
    return [*argv, "--load-spark-defaults"]


def server_environment(spec: ConnectServerSpec) -> dict[str, str]:
    """What the server adds to the environment it inherits (the server's own is never written)."""
    env = {
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": HOST,
        "SPARK_CONNECT_MODE": "0",  # the launcher must start a classic driver, not a Connect client
        "SPARK_DAEMON_MEMORY": spec.memory,
        TOKEN_VARIABLE: spec.token,
    }
    if spec.java_options:
        env["SPARK_DAEMON_JAVA_OPTS"] = join_java_options(spec.java_options)
    return env


def write_server_folder(run_dir: str | os.PathLike, spec: ConnectServerSpec, *, stop_grace_seconds: float,
                        niceness: int) -> Path:
    """The server's run folder (command.json, the 0600 properties file), ready for
    `runs.process.launch`. Blocking: call it in a thread."""
    return write_daemon_folder(run_dir, server_command(spec), server_environment(spec),
                               stop_grace_seconds=stop_grace_seconds, niceness=niceness,
                               properties=server_properties(spec))


@dataclass(frozen=True)
class RecordedServer:
    """What a server's run folder says it was started with (see `write_server_folder`). The
    token is a secret: never log it."""

    master_url: str | None
    port: int | None
    token: str | None = field(repr=False)
    properties: dict[str, str] = field(default_factory=dict, repr=False)  # may hold the cluster's secret

    def serves(self, master_url: str, cluster_conf: dict[str, str]) -> bool:
        """Whether it was started for a cluster of this definition: the master URL and the conf
        a start for it would be given now."""
        spec = ConnectServerSpec(master_url=master_url, port=self.port or 0, token="",
                                 cluster_conf=dict(cluster_conf))
        return self.master_url == master_url and self.properties == server_properties(spec)


def read_server_folder(run_dir: str | os.PathLike) -> RecordedServer | None:
    """The server a run folder was written for (None without a readable command.json; a
    properties file that cannot be read counts as an empty conf). Blocking: in a thread."""
    command = folder.read_json(Path(run_dir) / folder.COMMAND_FILE)
    if command is None or not isinstance(command.get("argv"), list) or not isinstance(command.get("env"), dict):
        return None
    argv = [str(arg) for arg in command["argv"]]
    conf = dict(value.partition("=")[::2] for value in _option_values(argv, "--conf"))
    try:
        port = int(conf.get(BINDING_PORT_CONF, ""))
    except ValueError:
        port = None
    properties = {}
    for path in _option_values(argv, "--properties-file")[-1:]:
        try:
            properties = read_properties(path)
        except (OSError, UnicodeDecodeError):
            pass
    token = command["env"].get(TOKEN_VARIABLE)
    return RecordedServer(master_url=next(iter(_option_values(argv, "--master")[-1:]), None), port=port,
                          token=token if isinstance(token, str) and token else None, properties=properties)


def _option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == option]


_UNESCAPED = {"n": "\n", "r": "\r", "t": "\t", "f": "\f"}


def read_properties(path: str | os.PathLike) -> dict[str, str]:
    """A properties file as spark/submit.py's `write_properties` writes it: `key=value` a line,
    backslash escapes, `=` in a key escaped. Blocking; OSError or UnicodeDecodeError."""
    conf = {}
    for line in Path(path).read_text(encoding="utf-8").split("\n"):  # \r and the like are escaped
        if not line:
            continue
        key, value = [], []
        into, escaped = key, False
        for c in line:
            if escaped:
                into.append(_UNESCAPED.get(c, c))
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == "=" and into is key:
                into = value
            else:
                into.append(c)
        conf["".join(key)] = "".join(value)
    return conf


# In the environment of a JVM or driver we launch, these make pyspark and spark-submit clients
# of some Spark Connect server ("Remote cannot be specified with master"): never inherited.
CLIENT_MODE_VARIABLES = ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE")


def take_client_mode_variables(environ) -> dict[str, str]:
    """Remove CLIENT_MODE_VARIABLES from `environ` (os.environ: every process this server starts
    inherits it); what was there."""
    return {name: environ.pop(name) for name in CLIENT_MODE_VARIABLES if name in environ}


def endpoint_url(port: int, token: str | None) -> str:
    """The sc:// URL a client connects with (it holds the token: never show it)."""
    return f"sc://{CLIENT_HOST}:{port}/;token={token}" if token else f"sc://{CLIENT_HOST}:{port}"


def public_url(url: str) -> str:
    """An sc:// URL with its parameters (the token among them) left out: safe to show."""
    return url.split(";", 1)[0].rstrip("/")


def parse_connect_url(url: str) -> tuple[str, int, str | None]:
    """Host, port and token of an sc:// URL; ValueError saying what is expected otherwise."""
    if not isinstance(url, str) or not url.startswith("sc://"):
        raise ValueError("must be an sc://HOST:PORT URL of a Spark Connect server")
    address, _, parameters = url.partition(";")
    parts = urlsplit(address)
    try:
        port = parts.port or 15002  # Spark Connect's default port
    except ValueError:
        raise ValueError("the port of the sc:// URL is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("the sc:// URL names no host")
    token = None
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        if key == "token" and value:
            token = value
    return parts.hostname, port, token


def started_port(log_lines: list[str]) -> int | None:
    """The port the server's log says it started on, if it says so."""
    for line in reversed(log_lines):
        if found := STARTED_LINE.search(line):
            return int(found["port"])
    return None


def failure_reason(log_lines: list[str], exit_code: int | None, port: int | None = None) -> str:
    """Why a Connect server ended, in words, from the end of its log: Java missing, its port
    taken, out of memory, its master unreachable, else what cluster daemons' logs tell."""
    text = "\n".join(log_lines)
    if "OutOfMemoryError" in text:
        return ("it ran out of memory (java.lang.OutOfMemoryError); give it more with "
                "DataHarbourApp.connect_server_memory")
    if "BindException" in text or "Address already in use" in text:
        if "SparkConnectService" in text:
            return f"its port{f' {port}' if port else ''} is taken (BindException: Address already in use)"
        return daemon_failure_reason(log_lines, exit_code)
    if "All masters are unresponsive" in text or "Failed to connect to master" in text \
            or "Could not connect to spark://" in text:
        return "it could not reach the cluster's master"
    if re.search(r"Could not parse Master URL|Master must either be yarn or start with spark, k8s, or local", text):
        return "Spark does not accept the cluster's master URL"
    return daemon_failure_reason(log_lines, exit_code)
