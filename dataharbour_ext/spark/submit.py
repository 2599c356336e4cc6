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


def build_command(spec: SubmitSpec) -> list[str]:
    argv = [spark_submit(), "--master", spec.master, "--name", spec.app_name]
    for key, value in spec.conf.items():
        # One argv element per setting: a value can't smuggle in another flag.
        argv += ["--conf", f"{key}={value}"]
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
