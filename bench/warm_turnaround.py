"""Warm (Spark Connect) job turnaround vs batch (spark-submit) turnaround, through the API.

Both: from POST /api/v1/jobs/ until GET /api/v1/jobs/{id} shows a terminal state (polled
every 0.02 s), the same small PySpark program (a DataFrame count). The first warm job starts
the default cluster's Connect server and warm pool (timed apart: the cold start); then N
alternating rounds of one warm and one batch job, each round after the pool is ready again.
Without the class-data archive on either side, as the test servers run.

Goals: median(warm) < 1 s; median(warm) / median(batch) as printed.

    python3 bench/warm_turnaround.py [--rounds N]
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import BenchError, BenchServer, run_bench  # noqa: E402

PROGRAM = (
    "from pyspark.sql import SparkSession\n"
    "spark = SparkSession.builder.getOrCreate()\n"
    "print('COUNT', spark.range(1000).filter('id % 7 = 0').count())\n"
)
JOB_TIMEOUT = 300.0
POOL_TIMEOUT = 120.0


def run_job(server: BenchServer, name: str, mode: str) -> float:
    started = time.monotonic()
    status, job = server.request("POST", "api/v1/jobs/", {"name": name, "code": PROGRAM, "mode": mode})
    if status != 202:
        raise BenchError(f"POST api/v1/jobs/ answered {status}: {job}")
    done = server.wait_terminal(job["id"], JOB_TIMEOUT, 0.02)
    elapsed = time.monotonic() - started
    if done["state"] != "succeeded" or done["mode"] != mode:
        raise BenchError(f"{name}: {done['state']} in mode {done['mode']}: {done.get('error')}")
    return elapsed


def wait_for_pool(server: BenchServer) -> None:
    """Until the default cluster's warm pool has a ready worker again."""
    deadline = time.monotonic() + POOL_TIMEOUT
    while time.monotonic() < deadline:
        _, cluster = server.request("GET", "api/v1/clusters/spark-cluster-default")
        if cluster and (cluster.get("connect") or {}).get("warm_ready", 0) >= 1:
            return
        time.sleep(0.1)
    raise BenchError(f"no warm worker was ready within {POOL_TIMEOUT:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with BenchServer(extra_args=["--DataHarbourApp.class_data_sharing=False"]) as server:
        cold = run_job(server, "cold warm job", "connect")
        print(f"first warm job (starts the Connect server and the pool): {cold:.2f} s")
        run_job(server, "batch warm-up", "batch")  # untimed: the OS caches Spark's jars
        warm_times, batch_times = [], []
        for n in range(args.rounds):
            wait_for_pool(server)
            warm_times.append(run_job(server, f"warm {n}", "connect"))
            batch_times.append(run_job(server, f"batch {n}", "batch"))
            print(f"round {n + 1}: warm {warm_times[-1]:.3f} s, batch {batch_times[-1]:.3f} s", flush=True)
    warm, batch = statistics.median(warm_times), statistics.median(batch_times)
    print(f"median warm {warm:.3f} s, median batch {batch:.3f} s")
    print(f"ratio warm/batch = {warm / batch:.3f}")
    print(f"goal median(warm) < 1 s: {'met' if warm < 1.0 else 'NOT met'}")


if __name__ == "__main__":
    run_bench(main)
