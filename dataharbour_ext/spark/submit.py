"""Builds the spark-submit argument list and environment for one run. Never a shell string.

    argv:  spark-submit --master M --name N [--properties-file F --load-spark-defaults]
           [--conf spark.ui.killEnabled=false] bootstrap.py SIGNALS PROGRAM ARGS...
    env:   build_environment_overlay(spec): only what the run adds; the supervisor merges
           it over the environment it inherited, so the server's own environment is never
           written into the run folder.

Spark conf: the cluster's conf, then the job's on top (`spark_conf(spec)`), goes into the
0600 properties file. Defaults we set (`DEFAULT_CONF`) go on the command line only when
neither the cluster nor the job sets that key: a `--conf` would override the file.
JVM options of the driver (class-data archive, log config) go through SPARK_SUBMIT_OPTS:
in client mode the spark-submit JVM is the driver, and spark.driver.extraJavaOptions
still applies after them.
"""

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .bootstrap import PROGRESS_INTERVAL, PROGRESS_INTERVAL_VARIABLE
from .installation import spark_home, spark_submit

BOOTSTRAP = str(Path(__file__).with_name("bootstrap.py"))
# Spark UI's kill links are GETs anyone who reaches the UI could follow; jobs are killed
# through the API. A cluster's own conf may turn them back on.
DEFAULT_CONF = {"spark.ui.killEnabled": "false"}
# What build_environment_overlay sets itself (the job's env cannot override these).
MANAGED_ENV = ("SPARK_HOME", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_LOCAL_IP", "PYTHONUNBUFFERED",
               PROGRESS_INTERVAL_VARIABLE)


@dataclass
class SubmitSpec:
    master: str
    app_name: str
    # The user's program (job.py). With signals_file set, spark-submit runs bootstrap.py,
    # which runs this program exactly as `python app_file args...` would.
    app_file: str
    args: list[str] = field(default_factory=list)
    conf: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    local_ip: str = "127.0.0.1"
    # Where spark_conf(spec) is written (see write_properties); None when it is empty.
    properties_file: str | None = None
    # The cluster's Spark conf; the job's conf is merged over it.
    cluster_conf: dict[str, str] = field(default_factory=dict)
    # Where bootstrap.py writes the driver's signals (driver_signals.SIGNALS_FILE in the
    # run folder); None runs the program directly, without signals.
    signals_file: str | None = None
    # Driver JVM options: ClassDataArchive.java_options() + SparkLogConfig.java_options().
    java_options: list[str] = field(default_factory=list)
    # Seconds between two progress samples in the driver's Python (bootstrap.py); 0: none.
    progress_interval: float = PROGRESS_INTERVAL


OWN_CONF_PREFIX = "dataharbour."  # cluster settings of ours (a Connect server's URL and token), not Spark's


def spark_conf(spec: SubmitSpec) -> dict[str, str]:
    """The conf for the properties file: the cluster's (without our own keys), with the job's on top."""
    cluster = {key: value for key, value in spec.cluster_conf.items() if not key.startswith(OWN_CONF_PREFIX)}
    return {**cluster, **spec.conf}


def default_conf(spec: SubmitSpec) -> dict[str, str]:
    """Our defaults for keys neither the cluster nor the job sets."""
    conf = spark_conf(spec)
    return {key: value for key, value in DEFAULT_CONF.items() if key not in conf}


def _escape_properties(text: str, *, is_key: bool) -> str:
    out = []
    for i, c in enumerate(text):
        if c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c == "\f":
            out.append("\\f")
        elif c in "=:#!" and (is_key or i == 0):
            out.append("\\" + c)
        elif c == " " and (is_key or i == 0):
            out.append("\\ ")
        else:
            out.append(c)
    return "".join(out)


def write_properties(path: str, conf: dict[str, str]) -> None:
    """The Spark conf as a properties file (UTF-8, as Spark reads it), owner-only.

    On the command line (`--conf k=v`) any local user could read secret values in
    /proc/*/cmdline. Escaped so that no value can end its line early or start another
    property. A key or value that UTF-8 cannot encode (a lone surrogate from a JSON
    `\\ud800`) raises ValueError naming the key, before anything is written.
    """
    lines = []
    for key, value in conf.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"Spark conf {key!r}: keys and values must be strings")
        line = f"{_escape_properties(key, is_key=True)}={_escape_properties(value, is_key=False)}\n"
        try:
            lines.append(line.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError(f"Spark conf {key.encode('utf-8', 'backslashreplace').decode()!r}: "
                             "not encodable as UTF-8") from None  # fmt: skip
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.writelines(lines)


def join_java_options(options: list[str]) -> str:
    """Options as one SPARK_SUBMIT_OPTS string. Spark's launcher splits it on whitespace
    and honours quotes and backslashes (CommandBuilderUtils.parseOptionString), so those
    are backslash-escaped: a path with a space stays one option."""
    return " ".join("".join("\\" + c if c.isspace() or c in "\\'\"" else c for c in option) for option in options)


def submit_options(spec: SubmitSpec) -> list[str]:
    """spark-submit's options for the run: master, name, conf."""
    argv = ["--master", spec.master, "--name", spec.app_name]
    if spec.properties_file:
        # spark-defaults.conf still applies; the job's own settings take precedence.
        argv += ["--properties-file", spec.properties_file, "--load-spark-defaults"]
    for key, value in default_conf(spec).items():
        argv += ["--conf", f"{key}={value}"]
    return argv


def pyspark_submit_args(spec: SubmitSpec) -> str:
    """PYSPARK_SUBMIT_ARGS for a Python process that starts its own driver (a notebook job's
    kernel): pyspark launches `spark-submit <these> pyspark-shell`, splitting it with shlex."""
    return shlex.join([*submit_options(spec), "pyspark-shell"])


def build_command(spec: SubmitSpec) -> list[str]:
    argv = [spark_submit(), *submit_options(spec)]
    # Everything after the application file is the program's own arguments, so user args
    # can never be read as spark-submit options.
    if spec.signals_file:
        argv += [BOOTSTRAP, spec.signals_file, spec.app_file]
    else:
        argv.append(spec.app_file)
    argv += spec.args
    return argv


def build_environment_overlay(spec: SubmitSpec) -> dict[str, str]:
    """What the run adds to the environment it inherits: the job's env and ours, nothing else."""
    env = dict(spec.env)
    env.update(
        {
            "SPARK_HOME": str(spark_home()),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": spec.local_ip,
            # The log is read while the job runs: print() must reach it at once.
            "PYTHONUNBUFFERED": "1",
            PROGRESS_INTERVAL_VARIABLE: repr(float(spec.progress_interval)),
        }
    )
    # Ours first, the job's own after them (for a repeated -D or -XX the last one wins).
    parts = (join_java_options(spec.java_options), spec.env.get("SPARK_SUBMIT_OPTS", ""))
    submit_opts = " ".join(part for part in parts if part)
    if submit_opts:
        env["SPARK_SUBMIT_OPTS"] = submit_opts
    return env


def build_environment(spec: SubmitSpec) -> dict[str, str]:
    """The whole environment (the server's plus the overlay). Deprecated: it writes the
    server's environment into command.json; use build_environment_overlay."""
    env = dict(os.environ)
    env.update(build_environment_overlay(spec))
    return env
