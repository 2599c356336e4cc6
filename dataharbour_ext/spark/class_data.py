"""A JVM class-data sharing (AppCDS) archive of Spark's classes: faster cold starts.

A trivial PySpark job spends most of its ~9 s starting the JVM and loading Spark's classes.
With a dynamic AppCDS archive (one run with `-XX:ArchiveClassesAtExit=spark.jsa`, then
`-XX:SharedArchiveFile=spark.jsa`) the same job took 4.8-5.0 s here instead of 8-9.5 s.

The archive belongs to one JVM and one Spark classpath, so it lives at
`<state_dir>/class-data/<key>.jsa` where the key hashes the Java installation (its
`release` file and libjvm) and the Spark jars (names, sizes, mtimes, Spark version); a new
key means a new archive and older ones are removed. It is built once, in the background,
from a small representative job (`--master local[1]`, bounded by a timeout), never in a
user's way: until it is ready `java_options()` is empty and jobs start as they always did.

Using it can only cost speed, never fail a job: `-Xshare:auto` makes the JVM ignore an
archive it cannot map or validate (garbage, another JVM, another classpath). One case it
does not survive: a *truncated* archive crashes JDK 17 with SIGBUS while mapping it. So
`java_options()` offers the archive only while its size and mtime are exactly what the
build recorded in `<key>.json` beside it (two stat calls, no subprocess).

How the options reach a JVM: in client mode the driver is the spark-submit JVM, so
SPARK_SUBMIT_OPTS (see submit.py); daemons and Spark Connect servers can take the same
list through SPARK_DAEMON_JAVA_OPTS.
"""

import asyncio
import atexit
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..runs import folder
from ..runs import process as supervision
from .installation import spark_home, spark_submit
from .submit import join_java_options

BUILD_TIMEOUT = 300.0
ARCHIVE_SUFFIX = ".jsa"
MANIFEST_SUFFIX = ".json"
BUILD_MARKER = "dataharbour-class-data-ok"
# Touches what most jobs touch: SparkSession and the SQL engine (codegen included), a
# Python DataFrame, show(), and an RDD with a Python lambda (the Python worker path).
REPRESENTATIVE_PROGRAM = f"""\
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("dataharbour-class-data").getOrCreate()
df = spark.createDataFrame([(1, "a"), (2, "b"), (3, "a")], ["n", "k"])
df.groupBy("k").count().orderBy("k").show()
spark.range(1000).selectExpr("id % 7 AS k").groupBy("k").count().collect()
assert spark.sparkContext.parallelize(range(10), 2).map(lambda x: x * 2).sum() == 90
spark.stop()
print({BUILD_MARKER!r})
"""

_default_log = logging.getLogger("dataharbour_ext.spark.class_data")


def java_home() -> Path | None:
    """The Java installation spark-class will run: $JAVA_HOME, else `java` on PATH."""
    configured = os.environ.get("JAVA_HOME")
    if configured and (Path(configured) / "bin" / "java").exists():
        return Path(configured).resolve()
    found = shutil.which("java")
    if found is None:
        return None
    return Path(os.path.realpath(found)).parent.parent


def _stat_line(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path.name} missing"
    return f"{path.name} {st.st_size} {st.st_mtime_ns}"


def archive_key(java: Path | None = None, home: Path | None = None) -> str:
    """A hash of everything an archive depends on: the JVM build and Spark's class path."""
    java = java or java_home()
    home = home or spark_home()
    digest = hashlib.sha256()
    if java is not None:
        digest.update(f"java {java}\n".encode())
        try:
            digest.update((java / "release").read_bytes())
        except OSError:
            pass
        for libjvm in (java / "lib" / "server" / "libjvm.so", java / "lib" / "server" / "classes.jsa"):
            digest.update(f"{_stat_line(libjvm)}\n".encode())
    jars = home / "jars"
    digest.update(f"spark {home}\n".encode())
    try:
        names = sorted(os.listdir(jars))
    except OSError:
        names = []
    for name in names:
        if name.endswith(".jar"):
            digest.update(f"{_stat_line(jars / name)}\n".encode())
    for version_file in (home / "version.py", home / "RELEASE"):
        try:
            digest.update(version_file.read_bytes())
        except OSError:
            pass
    return digest.hexdigest()[:20]


class ClassDataArchive:
    """One archive per JVM + Spark classpath, built in the background, offered when sound."""

    def __init__(
        self,
        state_dir: str | os.PathLike,
        enabled: bool = True,
        log: logging.Logger = _default_log,
        timeout: float = BUILD_TIMEOUT,
        extra_java_options: list[str] | None = None,
        local_ip: str = "127.0.0.1",
    ):
        self.dir = Path(state_dir) / "class-data"
        self.enabled = enabled
        self.log = log
        self.timeout = timeout
        # Options real jobs also get (the log config): the build then loads what they load.
        self.extra_java_options = list(extra_java_options or [])
        self.local_ip = local_ip
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen | None = None
        self._stopping = False
        self._manifest: dict | None = None
        self._state = "disabled"
        self.key = ""
        if not enabled:
            return
        # A few hundred stat calls: milliseconds, so it may run where the archive is built.
        self.key = archive_key()
        self._manifest = self._read_manifest()
        self._state = "ready" if self._manifest and self._sound(self._manifest) else "not built"

    # ---- where ----------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.dir / f"{self.key}{ARCHIVE_SUFFIX}"

    @property
    def manifest_path(self) -> Path:
        return self.dir / f"{self.key}{MANIFEST_SUFFIX}"

    @property
    def build_log(self) -> Path:
        return self.dir / "build.log"

    @property
    def state(self) -> str:
        """One of: disabled, not built, building, ready, failed: <reason>."""
        return self._state

    # ---- use ------------------------------------------------------------------------

    def java_options(self) -> list[str]:
        """JVM options that use the archive, or [] while there is no sound one. No subprocess."""
        manifest = self._manifest
        if not self.enabled or manifest is None or not self._sound(manifest):
            return []
        return [f"-XX:SharedArchiveFile={self.path}", "-Xshare:auto"]

    def _sound(self, manifest: dict) -> bool:
        try:
            st = self.path.stat()
        except OSError:
            return False
        return st.st_size == manifest.get("size") and st.st_mtime_ns == manifest.get("mtime_ns")

    def _read_manifest(self) -> dict | None:
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) and manifest.get("key") == self.key else None

    # ---- build ----------------------------------------------------------------------

    def build_in_background(self) -> threading.Thread | None:
        """Start building unless disabled, ready or already building; returns the thread."""
        with self._lock:
            if not self.enabled or self._state == "ready" or self._stopping:
                return None
            if self._thread is not None and self._thread.is_alive():
                return self._thread
            self._state = "building"
            self._thread = threading.Thread(target=self._build_logged, name="class-data-build", daemon=True)
            self._thread.start()
        atexit.register(self.stop)
        return self._thread

    async def start_building(self) -> None:
        """For an event loop: starts the build thread and returns at once."""
        await asyncio.sleep(0)
        self.build_in_background()

    def wait(self, timeout: float | None = None) -> str:
        """Block until a started build ends (or `timeout`); returns the state."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self._state

    def stop(self) -> None:
        """Kill a running build (server shutdown); the archive is simply not made."""
        self._stopping = True
        process = self._process
        if process is not None and process.alive():
            self._stop_build(process)

    @staticmethod
    def _stop_build(process) -> None:
        """Stop the build's whole tree through its supervisor; force it if that hangs."""
        process.request_stop()
        try:
            process.popen.wait(30)
        except subprocess.TimeoutExpired:
            process.force_stop()

    def _build_logged(self) -> None:
        self.log.info("class-data archive building: no archive yet for this Java and Spark (key %s)", self.key)
        try:
            reason = self.build()
        except Exception as error:  # a bug here must never reach a job
            reason = f"{type(error).__name__}: {error}"
        if reason is None:
            size = self._manifest["size"] / 1e6 if self._manifest else 0
            seconds = self._manifest.get("seconds", 0) if self._manifest else 0
            self.log.info("class-data archive ready: %s (%.0f MB, built in %.1f s)", self.path, size, seconds)
        else:
            self._state = f"failed: {reason}"
            self.log.info("class-data archive failed: %s (jobs start without it; see %s)", reason, self.build_log)

    def build(self) -> str | None:
        """Build the archive now (blocking; for a worker thread). None on success, else why not."""
        self.dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="build-", dir=self.dir))
        partial = work / f"{self.key}{ARCHIVE_SUFFIX}"
        program = work / "class_data_job.py"
        program.write_text(REPRESENTATIVE_PROGRAM)
        bootstrap = Path(__file__).with_name("bootstrap.py")
        argv = [
            spark_submit(), "--master", "local[1]", "--name", "dataharbour-class-data",
            "--conf", "spark.ui.killEnabled=false",
            str(bootstrap), str(work / "spark.json"), str(program),
        ]  # fmt: skip
        overlay = {
            "SPARK_HOME": str(spark_home()),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": self.local_ip,
            "PYTHONUNBUFFERED": "1",
            # (-Xlog:cds=error: the JVM's "Skipping ...: Signed JAR" notes would fill the log.)
            "SPARK_SUBMIT_OPTS": join_java_options(
                [*self.extra_java_options, f"-XX:ArchiveClassesAtExit={partial}", "-Xlog:cds=error"]
            ),
        }
        started = time.monotonic()
        try:
            # Under the run supervisor like every Spark process we start: a timeout or a
            # server shutdown stops its whole tree, and nothing is signalled by a bare pid.
            run_dir = folder.create(work / "run")
            folder.write_command(run_dir, argv, overlay, work, stop_grace_seconds=5.0, leftover_grace_seconds=5.0)
            if self._stopping:
                return "stopped"
            try:
                self._process = supervision.launch(run_dir)
            except OSError as error:
                return f"could not start the build job: {error}"
            try:
                self._process.popen.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self._stop_build(self._process)
                return f"the build job did not finish within {self.timeout:.0f} s"
            finally:
                if (run_dir / folder.LOG_FILE).exists():  # kept for a look after the folder is gone
                    shutil.copyfile(run_dir / folder.LOG_FILE, self.build_log)
            status = folder.read_exit_status(run_dir) or {}
            returncode = status.get("returncode")
            seconds = time.monotonic() - started
            if self._stopping or status.get("stop_requested"):
                return "stopped"
            if returncode != 0:
                return f"the build job exited with {returncode}"
            if BUILD_MARKER not in self.build_log.read_text(errors="replace"):
                return "the build job did not complete its program"
            try:
                st = partial.stat()
            except OSError:
                return "the JVM wrote no archive"
            if st.st_size == 0:
                return "the JVM wrote an empty archive"
            # Rename into place first, then record what was renamed (size + mtime survive
            # a rename): a reader that sees the manifest also sees this very file.
            os.replace(partial, self.path)
            st = self.path.stat()
            manifest = {
                "key": self.key,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "java_home": str(java_home()),
                "spark_home": str(spark_home()),
                "built_at": time.time(),
                "seconds": round(seconds, 2),
            }
            manifest_partial = work / "manifest.json"
            manifest_partial.write_text(json.dumps(manifest))
            os.replace(manifest_partial, self.manifest_path)
            self._manifest = manifest
            self._state = "ready"
            self._remove_others()
            return None
        finally:
            if self._process is not None:
                self._process.close()
            self._process = None
            shutil.rmtree(work, ignore_errors=True)

    def _remove_others(self) -> None:
        """Archives of other keys are for a JVM or Spark that is no longer ours."""
        for entry in self.dir.iterdir():
            if entry.suffix in (ARCHIVE_SUFFIX, MANIFEST_SUFFIX) and entry.stem != self.key:
                try:
                    entry.unlink()
                except OSError:
                    pass
