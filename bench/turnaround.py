"""Job turnaround through the API vs a bare spark-submit of the same trivial PySpark program.

API: from POST /api/v1/jobs/ until GET /api/v1/jobs/{id} shows a terminal state (polled
every 0.05 s). Bare: `spark-submit --master local[*] script.py`, the whole run. One untimed
warm-up of each, then N alternating rounds. Goal: median(api) / median(bare) <= 1.05.

    python3 bench/turnaround.py [--rounds N]
"""

import argparse
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import HOST, BenchError, BenchServer, run_bench  # noqa: E402

PROGRAM = (
    "from pyspark.sql import SparkSession\n"
    "spark = SparkSession.builder.getOrCreate()\n"
    "print(spark.range(1000).count())\n"
    "spark.stop()\n"
)
GOAL = 1.05
JOB_TIMEOUT = 180.0
POLL_INTERVAL = 0.05


def spark_submit() -> str:
    return os.path.join(os.path.dirname(importlib.util.find_spec("pyspark").origin), "bin", "spark-submit")


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def run_api(server: BenchServer, name: str) -> tuple[float, dict]:
    start = time.perf_counter()
    job = server.submit(name, PROGRAM)
    job = server.wait_terminal(job["id"], JOB_TIMEOUT, POLL_INTERVAL)
    elapsed = time.perf_counter() - start
    server.require_success(job)
    _, page = server.request("GET", f"api/v1/jobs/{job['id']}/logs?tail=200")
    if "1000" not in page["lines"]:
        raise BenchError(f"job {job['id']} succeeded but its log has no line '1000'")
    return elapsed, job


def run_bare(server: BenchServer, script: str, log_path: str) -> float:
    env = dict(os.environ)
    env.update({"SPARK_LOCAL_IP": HOST, "PYSPARK_PYTHON": sys.executable})
    argv = [spark_submit(), "--master", "local[*]", script]
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        process = subprocess.Popen(
            argv, cwd=server.root_dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, so a timeout can kill the JVM and Python driver too
        )  # fmt: skip
        try:
            returncode = process.wait(JOB_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise BenchError(f"bare spark-submit did not finish within {JOB_TIMEOUT:.0f}s") from None
        elapsed = time.perf_counter() - start
    # Zombies don't count: this container's pid 1 does not reap orphans, so the Python
    # driver's exited workers can stay <defunct> in the group.
    leftovers = [
        p.pid for p in psutil.process_iter(["status"])
        if p.info["status"] != psutil.STATUS_ZOMBIE and _pgid(p.pid) == process.pid
    ]  # fmt: skip
    if leftovers:
        os.killpg(process.pid, signal.SIGKILL)
        print(f"warning: bare spark-submit left processes {leftovers}; killed them", file=sys.stderr)
    with open(log_path, "rb") as f:
        output = f.read().decode("utf-8", errors="replace")
    if returncode != 0:
        raise BenchError(f"bare spark-submit exited with {returncode}:\n{output[-3000:]}")
    if "1000" not in output.splitlines():
        raise BenchError("bare spark-submit succeeded but printed no line '1000'")
    return elapsed


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def server_side(job: dict) -> str:
    """What the job record says: queued->started and started->finished, in seconds."""
    run = job["runs"][-1]
    queued, started, finished = (_parse_time(run[k]) for k in ("queued_at", "started_at", "finished_at"))
    parts = []
    if queued and started:
        parts.append(f"queue {(started - queued).total_seconds():.3f}s")
    if started and finished:
        parts.append(f"run {(finished - started).total_seconds():.3f}s")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each (default 5)")
    options = parser.parse_args()
    if not 1 <= options.rounds <= 100:
        parser.error("--rounds must be between 1 and 100")

    with BenchServer() as server:
        script = os.path.join(server.root_dir, "turnaround_job.py")
        with open(script, "w") as f:
            f.write(PROGRAM)
        bare_log = os.path.join(server.tmp, "bare.log")
        print(f"jupyter server {server.base_url} (pid {server.process.pid}), {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
        print(f"program: spark.range(1000).count() on local[*]; {options.rounds} rounds, api then bare")

        api_warm, job = run_api(server, "bench-turnaround-warmup")
        bare_warm = run_bare(server, script, bare_log)
        print(f"warm-up      api {api_warm:7.3f}s ({server_side(job)})   bare {bare_warm:7.3f}s")

        api_times, bare_times = [], []
        for i in range(1, options.rounds + 1):
            api, job = run_api(server, f"bench-turnaround-{i}")
            bare = run_bare(server, script, bare_log)
            api_times.append(api)
            bare_times.append(bare)
            print(
                f"round {i:2d}     api {api:7.3f}s ({server_side(job)})   bare {bare:7.3f}s"
                f"   api-bare {api - bare:+.3f}s"
            )

    print(f"load average {os.getloadavg()[0]:.2f} at the end (other CPU load skews both sides)")
    api_median = statistics.median(api_times)
    bare_median = statistics.median(bare_times)
    ratio = api_median / bare_median
    print(f"median api  = {api_median:.3f} s  (min {min(api_times):.3f}, max {max(api_times):.3f})")
    print(f"median bare = {bare_median:.3f} s  (min {min(bare_times):.3f}, max {max(bare_times):.3f})")
    print(f"overhead    = {api_median - bare_median:+.3f} s")
    print(f"ratio api/bare = {ratio:.2f} (goal <= {GOAL:.2f}): {'PASS' if ratio <= GOAL else 'FAIL'}")


if __name__ == "__main__":
    run_bench(main)
