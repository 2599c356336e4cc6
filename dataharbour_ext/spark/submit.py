"""Builds the spark-submit argument list and environment for one run. Never a shell string."""

import os
import sys
from dataclasses import dataclass, field

from .installation import spark_home, spark_submit


@dataclass
class SubmitSpec:
    master: str
    app_name: str
    app_file: str
    args: list[str] = field(default_factory=list)
    conf: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    local_ip: str = "127.0.0.1"
    # Where the job's conf is written (see write_properties); None when it has none.
    properties_file: str | None = None


def write_properties(path: str, conf: dict[str, str]) -> None:
    """The job's Spark conf as a properties file, owner-only.

    On the command line (`--conf k=v`) any local user could read secret values in
    /proc/*/cmdline. Keys are validated dotted names; in values only a backslash and a
    leading space mean something to the properties format.
    """
    lines = []
    for key, value in conf.items():
        value = value.replace("\\", "\\\\")
        if value.startswith(" "):
            value = "\\" + value
        lines.append(f"{key}={value}\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(lines)


def build_command(spec: SubmitSpec) -> list[str]:
    argv = [spark_submit(), "--master", spec.master, "--name", spec.app_name]
    if spec.properties_file:
        # spark-defaults.conf still applies; the job's own settings take precedence.
        argv += ["--properties-file", spec.properties_file, "--load-spark-defaults"]
    # Everything after the application file is the program's own arguments, so user args
    # can never be read as spark-submit options.
    argv.append(spec.app_file)
    argv += spec.args
    return argv


def build_environment(spec: SubmitSpec) -> dict[str, str]:
    env = dict(os.environ)
    env.update(spec.env)
    env.update(
        {
            "SPARK_HOME": str(spark_home()),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": spec.local_ip,
            # The log is read while the job runs: print() must reach it at once.
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env
