"""Real spark-submit runs of the job command: a class-data archive built for real and used,
a garbage archive tolerated, driver signals from the bootstrap, the quiet log config, and
a failing program's own error line last. Each run is ~10 s on 2 busy cores: few of them."""

import os
import signal
import subprocess
import time

import psutil
import pytest

from dataharbour_ext.spark.class_data import ClassDataArchive
from dataharbour_ext.spark.driver_log import error_summary
from dataharbour_ext.spark.driver_signals import SIGNALS_FILE, read_signals
from dataharbour_ext.spark.log_config import SparkLogConfig
from dataharbour_ext.spark.submit import SubmitSpec, build_command, build_environment_overlay, write_properties

RUN_TIMEOUT = 240.0
BUILD_TIMEOUT = 420.0

# Prints what the test checks from inside the driver: its signals while it runs (and that
# the UI port they name really listens), the driver JVM's options, its own argv.
PROGRAM = r"""
import json, os, socket, sys, time
print("argv", sys.argv[1:])
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
signals = json.load(open(sys.argv[1]))
print("signals", json.dumps(signals))
port = int(signals["ui_url"].rsplit(":", 1)[1])
with socket.create_connection(("127.0.0.1", port), timeout=10):
    print("ui listening", port)
jvm = open(f"/proc/{os.getppid()}/cmdline", "rb").read().split(b"\0")
print("jvm options", json.dumps([a.decode() for a in jvm if a.startswith(b"-XX:Shared") or a.startswith(b"-D")]))
print("count", spark.range(1000).count())
spark.stop()
"""

FAILING = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("started", spark.range(5).count())

def check(x):
    if x == 42:
        raise ValueError(f"bad input {x}")
    return x

check(42)
"""


@pytest.fixture
def workdir(tmp_path):
    # A space in every path: SPARK_SUBMIT_OPTS must carry it through Spark's launcher.
    root = tmp_path / "state dir"
    root.mkdir()
    yield root
    # Nothing we started may outlive the test.
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(str(root) in arg for arg in process.info["cmdline"] or ()):
                process.kill()
        except psutil.Error:
            pass


def run_job(root, name: str, code: str, *, java_options, conf=None, args=()) -> tuple[int, str, str]:
    run_dir = root / name
    run_dir.mkdir()
    program = run_dir / "job.py"
    program.write_text(code)
    signals = str(run_dir / SIGNALS_FILE)
    spec = SubmitSpec(
        master="local[1]", app_name=name, app_file=str(program), args=[signals, *args],
        signals_file=signals, java_options=java_options, conf=dict(conf or {}),
    )  # fmt: skip
    if spec.conf:
        spec.properties_file = str(run_dir / "spark.properties")
        write_properties(spec.properties_file, spec.conf)
    env = {**os.environ, **build_environment_overlay(spec)}
    log_path = run_dir / "output.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            build_command(spec), cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            returncode = process.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
    output = log_path.read_text(errors="replace")
    assert returncode is not None, f"{name} did not finish within {RUN_TIMEOUT:.0f}s:\n{output[-3000:]}"
    return returncode, output, str(run_dir)


def line_after(output: str, prefix: str) -> str:
    return next(line[len(prefix) :].strip() for line in output.splitlines() if line.startswith(prefix))


def test_built_archive_is_used_and_the_driver_signals_without_info_noise(workdir):
    log_config = SparkLogConfig(workdir)
    archive = ClassDataArchive(workdir, extra_java_options=log_config.java_options())
    assert archive.state == "not built" and archive.java_options() == []
    archive.build_in_background()
    assert archive.state == "building"
    started = time.monotonic()
    assert archive.wait(BUILD_TIMEOUT) == "ready", archive.build_log.read_text(errors="replace")[-3000:]
    assert time.monotonic() - started < BUILD_TIMEOUT
    assert archive.path.stat().st_size > 10_000_000
    assert [p.name for p in archive.dir.iterdir() if p.suffix == ".jsa"] == [archive.path.name]

    options = archive.java_options() + log_config.java_options()
    returncode, output, run_dir = run_job(
        workdir, "with archive", PROGRAM, java_options=options,
        conf={"spark.driver.extraJavaOptions": "-Duser.own.option=kept"}, args=["a b", "--conf"],
    )  # fmt: skip
    assert returncode == 0, output[-3000:]
    assert line_after(output, "argv") == repr([str(workdir / "with archive" / SIGNALS_FILE), "a b", "--conf"])
    assert line_after(output, "count") == "1000"
    # Signals: a real local application id and the UI's address, whose port listened.
    ready = read_signals(run_dir)
    assert ready.app_id.startswith("local-") and ready.ready and ready.stopped
    assert f"ui listening {ready.ui_port}" in output
    assert line_after(output, "signals").startswith('{"app_id": "' + ready.app_id)
    # The driver JVM got the archive and the log config through SPARK_SUBMIT_OPTS, and
    # the user's own extraJavaOptions alongside.
    jvm_options = line_after(output, "jvm options")
    assert f"-XX:SharedArchiveFile={archive.path}" in jvm_options
    assert f"-Dlog4j2.configurationFile={log_config.path}" in jvm_options
    assert "-Duser.own.option=kept" in jvm_options
    # WARN by default: no INFO lines, just the program's own output (and JVM notices).
    assert " INFO " not in output, output[:3000]


def test_garbage_archive_is_ignored_and_a_failing_programs_error_line_is_last(workdir):
    garbage = workdir / "garbage.jsa"
    garbage.write_bytes(os.urandom(64 * 1024))
    options = [f"-XX:SharedArchiveFile={garbage}", "-Xshare:auto", *SparkLogConfig(workdir).java_options()]
    returncode, output, run_dir = run_job(workdir, "failing", FAILING, java_options=options)
    assert returncode == 1, output[-3000:]
    assert "started 5" in output.splitlines()  # the JVM ran despite the garbage archive
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[-1] == "ValueError: bad input 42"
    assert error_summary(output, returncode) == "ValueError: bad input 42"
    # Neither the bootstrap nor runpy appear in the user's traceback.
    traceback = output[output.rindex("Traceback (most recent call last):") :]
    assert "bootstrap.py" not in traceback and "runpy" not in traceback
    assert read_signals(run_dir).app_id.startswith("local-")


def test_log_level_info_brings_sparks_info_lines_back(workdir):
    code = "from pyspark import SparkContext\nSparkContext.getOrCreate().stop()\nprint('done')\n"
    returncode, output, _ = run_job(workdir, "info", code, java_options=SparkLogConfig(workdir).java_options("INFO"))
    assert returncode == 0, output[-3000:]
    assert "done" in output.splitlines()
    assert " INFO SparkContext: Successfully stopped SparkContext" in output
