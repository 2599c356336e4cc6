"""A quieter log4j2 configuration for Spark drivers: what the user reads is their program.

Spark's own default (`org/apache/spark/log4j2-defaults.properties`, in the pyspark jars)
logs at INFO: a one-line `df.show()` sits among ~100 lines of start-up logging. Ours is
that same file with the root level taken from a lookup, WARN unless a run asks otherwise:

    rootLogger.level = ${sys:dataharbour.log.level:-${env:DATAHARBOUR_LOG_LEVEL:-WARN}}

so a run's level is one JVM system property (`-Ddataharbour.log.level=INFO`) or one
environment variable. Output still goes to stderr with Spark's pattern, so warnings and
errors keep reading as before.

It reaches the driver through `-Dlog4j2.configurationFile=...` in SPARK_SUBMIT_OPTS (in
client mode the spark-submit JVM is the driver).
"""

import logging
import os
import zipfile
from pathlib import Path

from .installation import spark_home

LOG_LEVELS = ("ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")
DEFAULT_LEVEL = "WARN"
LEVEL_PROPERTY = "dataharbour.log.level"
LEVEL_ENV = "DATAHARBOUR_LOG_LEVEL"
CONFIG_NAME = "log4j2-dataharbour.properties"
SPARK_DEFAULTS = "org/apache/spark/log4j2-defaults.properties"
ROOT_LEVEL = f"${{sys:{LEVEL_PROPERTY}:-${{env:{LEVEL_ENV}:-{DEFAULT_LEVEL}}}}}"

# Used when no pyspark jar carries Spark's defaults (a stripped install): the same essentials.
_FALLBACK_DEFAULTS = """\
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = console

appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex

logger.jetty.name = org.sparkproject.jetty
logger.jetty.level = warn
logger.jetty2.name = org.sparkproject.jetty.util.component.AbstractLifeCycle
logger.jetty2.level = error
"""

# Known start-up noise that says nothing about the user's program, even at WARN.
_QUIET = """
# DataHarbour: warnings that every local run prints and no user can act on.
logger.dataharbourNativeCode.name = org.apache.hadoop.util.NativeCodeLoader
logger.dataharbourNativeCode.level = error
"""

log = logging.getLogger("dataharbour_ext.spark.log_config")


def validate_level(level: str) -> str:
    """The level's canonical name; ValueError naming the allowed ones otherwise."""
    name = level.strip().upper() if isinstance(level, str) else ""
    if name == "WARNING":
        name = "WARN"
    if name not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    return name


def spark_default_config(home: Path | None = None) -> str:
    """Spark's own log4j2 defaults, read from the jar that carries them."""
    jars = (home or spark_home()) / "jars"
    try:
        candidates = sorted(jars.glob("spark-common-utils*.jar")) + sorted(jars.glob("spark-core_*.jar"))
    except OSError:
        candidates = []
    for jar in candidates:
        try:
            with zipfile.ZipFile(jar) as archive:
                return archive.read(SPARK_DEFAULTS).decode("utf-8")
        except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError):
            continue
    log.warning("Spark's %s not found under %s; using a built-in copy", SPARK_DEFAULTS, jars)
    return _FALLBACK_DEFAULTS


def render_config(defaults: str) -> str:
    """Spark's defaults with the root level replaced by our lookup."""
    lines = []
    replaced = False
    for line in defaults.splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "rootLogger.level":
            line = f"rootLogger.level = {ROOT_LEVEL}"
            replaced = True
        lines.append(line)
    if not replaced:
        lines.append(f"rootLogger.level = {ROOT_LEVEL}")
    header = (
        "# Written by DataHarbour from Spark's log4j2-defaults.properties: the root level is\n"
        f"# -D{LEVEL_PROPERTY}=LEVEL, else ${LEVEL_ENV}, else {DEFAULT_LEVEL}.\n"
    )
    return header + "\n".join(lines) + "\n" + _QUIET


class SparkLogConfig:
    """The config file under `<state_dir>/spark-conf/` and the JVM options that apply it;
    `extra` lines (loggers of its own) go after Spark's defaults, under file name `name`."""

    def __init__(self, state_dir: str | os.PathLike, *, name: str = CONFIG_NAME, extra: str = ""):
        self.path = Path(state_dir) / "spark-conf" / name
        self.extra = extra
        self._written = False

    def write(self) -> Path:
        """Write the file if it is missing or differs (an upgraded Spark); cheap afterwards."""
        if self._written:
            return self.path
        content = render_config(spark_default_config()) + self.extra
        try:
            current = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current != content:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.partial")
            partial.write_text(content, encoding="utf-8")
            os.replace(partial, self.path)
        self._written = True
        return self.path

    def java_options(self, level: str | None = None) -> list[str]:
        """`-Dlog4j2.configurationFile=...` plus the level when one is asked for."""
        options = [f"-Dlog4j2.configurationFile={self.write()}"]
        if level is not None:
            options.append(f"-D{LEVEL_PROPERTY}={validate_level(level)}")
        return options
