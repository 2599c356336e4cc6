"""The real defect the supervisor fixes: stopping a PySpark run leaves no Python worker behind.

pyspark.daemon calls setpgid(0, 0), so a process-group kill misses it and its forked workers;
the supervisor, a child subreaper, stops its whole descendant tree instead.
"""

import os
import sys
import time
from pathlib import Path

import psutil

from dataharbour_ext.runs import folder
from dataharbour_ext.runs.process import descendants, launch

SPARK_SUBMIT = str(Path(__import__("pyspark").__file__).parent / "bin" / "spark-submit")
# JVM start on 2 busy cores (other suites may run Spark meanwhile) can take a while.
SPARK_UP_SECONDS = 240.0
STOP_GRACE_SECONDS = 10.0

JOB = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("dataharbour-runs-tree").getOrCreate()
print("driver up", flush=True)
spark.sparkContext.parallelize(range(2), 2).map(lambda x: __import__("time").sleep(600)).collect()
"""


def cmdline(pid):
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def test_stop_leaves_no_pyspark_worker_behind(tmp_path, supervisors):
    run_dir = folder.create(tmp_path / "runs" / "spark-1")
    program = run_dir / "job.py"
    program.write_text(JOB)
    folder.write_command(
        run_dir,
        [SPARK_SUBMIT, "--master", "local[2]", "--conf", "spark.ui.enabled=false", str(program)],
        {"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable},
        str(run_dir),
        stop_grace_seconds=STOP_GRACE_SECONDS,
    )
    supervised = launch(str(run_dir))
    supervisors.append(supervised)

    def pyspark_daemons():
        return [p for p in descendants(supervised.identity.pid) if "pyspark.daemon" in cmdline(p.pid)]

    # The daemon plus at least one worker it forked for the sleeping map task.
    deadline = time.monotonic() + SPARK_UP_SECONDS
    while len(pyspark_daemons()) < 2:
        assert supervised.alive(), (run_dir / folder.LOG_FILE).read_text()[-3000:]
        assert time.monotonic() < deadline, (
            "no pyspark worker appeared:\n" + (run_dir / folder.LOG_FILE).read_text()[-3000:]
        )
        time.sleep(0.2)
    tree = descendants(supervised.identity.pid)
    workers = [p for p in tree if "pyspark.daemon" in cmdline(p.pid)]
    # The defect: the Python workers have left the run's process group.
    assert any(os.getpgid(p.pid) != supervised.identity.pid for p in workers)

    assert supervised.request_stop()
    supervised.popen.wait(STOP_GRACE_SECONDS + 60)
    status = folder.read_exit_status(run_dir)
    assert status is not None and status["stop_requested"] is True
    assert status["returncode"] != 0
    left = [(p.pid, cmdline(p.pid)) for p in tree if p.matches()]
    assert left == []
    assert not supervised.alive()
