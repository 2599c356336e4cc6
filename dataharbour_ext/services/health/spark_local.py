"""A local cluster (`local[*]`): Spark runs inside each job's driver, so it is healthy when
a driver can start here: spark-submit is installed and Java runs."""

import asyncio
import re
import subprocess
from functools import lru_cache
from pathlib import Path

from ...spark.class_data import java_home
from ...spark.installation import spark_home
from ..clusters import Cluster
from .check import Finding, HealthCheck, Unhealthy

JAVA_VERSION = re.compile(r'version "([^"]+)"')
SPARK_CORE_JAR = re.compile(r"^spark-core_[0-9.]+-(.+)\.jar$")


@lru_cache(maxsize=4)
def java_version(java: str) -> str:
    """`java -version`'s version, run once per Java installation (failures are not cached:
    a Java installed later is found on the next check)."""
    result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    found = JAVA_VERSION.search(result.stderr + result.stdout)
    if result.returncode != 0 or found is None:
        raise Unhealthy(f"`{java} -version` failed (exit {result.returncode}): {result.stderr.strip()[:200]}")
    return found.group(1)


def spark_version(home: Path) -> str | None:
    """Spark's version from its core jar's name: true for a pip install and a distribution."""
    for jar in (home / "jars").glob("spark-core_*.jar"):
        if found := SPARK_CORE_JAR.match(jar.name):
            return found.group(1)
    return None


def _inspect_installation() -> Finding:
    try:
        home = spark_home()
    except RuntimeError as error:
        raise Unhealthy(str(error)) from None
    if not (home / "bin" / "spark-submit").is_file():
        raise Unhealthy(f"spark-submit is missing from {home / 'bin'}")
    java = java_home()
    if java is None:
        raise Unhealthy("Java is not installed: set JAVA_HOME or put `java` on PATH (Spark 4 needs Java 17 or 21)")
    return Finding(version=spark_version(home), details={
        "java_version": java_version(str(java / "bin" / "java")),
        "spark_home": str(home),
    })


class LocalSparkCheck(HealthCheck):
    kind = "spark"

    def __init__(self, cluster: Cluster):
        super().__init__(cluster.id)
        self.cluster = cluster

    def no_logs_reason(self) -> str:
        return ("a local cluster has no daemons: Spark runs inside each job's driver, whose output is the job's "
                "log (GET /api/v1/jobs/{job_id}/logs)")

    def target(self) -> dict:
        return {"master_url": self.cluster.master_url}

    async def probe(self, timeout: float) -> Finding:
        return await asyncio.to_thread(_inspect_installation)
