"""A local cluster (`local[*]`): Spark runs inside each job's driver, so it is healthy when
a driver can start here: spark-submit is installed and Java runs.

What the check reports (Spark's home and version, Java's version) is read once, in the
background from the server's start, outside any check's timeout: `java -version` starts a
JVM, which takes seconds on a busy machine and would read as a false `unhealthy` inside a
3-second timeout. A failed reading (no Java) is read again by the next check, so a Java
installed later is found."""

import asyncio
import re
import subprocess
from functools import lru_cache
from pathlib import Path

from ...models.services import cluster_service_name
from ...spark.class_data import java_home
from ...spark.installation import spark_home
from ..clusters import Cluster
from .check import Finding, HealthCheck, Unhealthy

JAVA_VERSION = re.compile(r'version "([^"]+)"')
SPARK_CORE_JAR = re.compile(r"^spark-core_[0-9.]+-(.+)\.jar$")


@lru_cache(maxsize=4)
def java_version(java: str) -> str:
    """`java -version`'s version, once per Java installation in this process (a failure is
    not cached: it raises)."""
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
        super().__init__(cluster_service_name(cluster.id))
        self.cluster = cluster
        self._installation: asyncio.Future | None = None  # the reading of Spark's and Java's versions

    def no_logs_reason(self) -> str:
        return ("a local cluster has no daemons: Spark runs inside each job's driver, whose output is the job's "
                "log (GET /api/v1/jobs/{job_id}/logs)")

    def target(self) -> dict:
        return {"master_url": self.cluster.master_url}

    def start(self) -> None:
        self._read_installation()

    def _read_installation(self) -> asyncio.Future:
        """The reading under way or done; a new one if the last failed."""
        reading = self._installation
        if reading is None or (reading.done() and (reading.cancelled() or reading.exception() is not None)):
            reading = self._installation = asyncio.ensure_future(self.in_thread(_inspect_installation))
            # Marks a failure as seen: the check that awaits the reading reports it, and one that
            # nobody awaited (the server stopped first) is no "exception never retrieved" log.
            reading.add_done_callback(lambda done: done.cancelled() or done.exception())
        return reading

    async def probe(self, timeout: float) -> Finding:
        # Ready long before almost every check; shielded, so that a timeout ends the wait,
        # not the reading, which the next check then finds done.
        return await asyncio.shield(self._read_installation())

    async def aclose(self) -> None:
        if self._installation is not None and not self._installation.done():
            self._installation.cancel()  # the thread finishes on its own; nobody waits for it
