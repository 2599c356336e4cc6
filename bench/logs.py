"""Tail of a 200 MB run log through the API. Goal: 1000 lines in <= 20 ms (median).

A job writes ~211 MB of numbered lines to stdout without starting Spark. Then
GET /api/v1/jobs/{id}/logs?tail=1000 is timed over one persistent HTTP connection (3
warm-ups, 30 timed), against GNU `tail -n 1000` on the same file and against reading the
whole file once in Python (what an O(file) tail would cost at least).

    python3 bench/logs.py [--repeat N]
"""

import argparse
import http.client
import json
import math
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import HOST, BenchError, BenchServer, run_bench  # noqa: E402

LINES = 1_050_000
PROGRAM = (
    "import sys\n"
    'line = "x" * 190 + "\\n"\n'
    f"for i in range({LINES}):\n"
    '    sys.stdout.write(f"{i:09d} " + line)\n'
)
MIN_SIZE = 200e6
TAIL = 1000
WARMUPS = 3
GOAL_MS = 20.0
JOB_TIMEOUT = 300.0


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def time_api_tail(server: BenchServer, job_id: str, repeat: int) -> tuple[list[float], list[str]]:
    connection = http.client.HTTPConnection(HOST, server.port, timeout=30)
    headers = {"Authorization": f"token {server.token}"}
    path = f"/api/v1/jobs/{job_id}/logs?tail={TAIL}"
    times, lines = [], []
    try:
        for i in range(WARMUPS + repeat):
            start = time.perf_counter()
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - start
            if response.status != 200:
                raise BenchError(f"GET {path} answered {response.status}: {body[:500]!r}")
            lines = json.loads(body)["lines"]
            if len(lines) != TAIL:
                raise BenchError(f"GET {path} returned {len(lines)} lines, expected {TAIL}")
            if i >= WARMUPS:
                times.append(elapsed)
    finally:
        connection.close()
    return times, lines


def time_tail_command(log_path: str, repeat: int) -> tuple[list[float], list[str]]:
    times, lines = [], []
    for i in range(WARMUPS + repeat):
        start = time.perf_counter()
        result = subprocess.run(["tail", "-n", str(TAIL), log_path], capture_output=True, timeout=60)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise BenchError(f"tail exited with {result.returncode}: {result.stderr[:500]!r}")
        lines = result.stdout.decode("utf-8", errors="replace").splitlines()
        if i >= WARMUPS:
            times.append(elapsed)
    return times, lines


def time_full_read(log_path: str) -> tuple[float, int]:
    start = time.perf_counter()
    with open(log_path, "rb") as f:
        size = len(f.read())
    return time.perf_counter() - start, size


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30, help="timed requests (default 30)")
    options = parser.parse_args()
    if not 1 <= options.repeat <= 10_000:
        parser.error("--repeat must be between 1 and 10000")

    with BenchServer() as server:
        print(f"jupyter server {server.base_url} (pid {server.process.pid})")
        start = time.perf_counter()
        job = server.submit("bench-logs-200mb", PROGRAM)
        job = server.wait_terminal(job["id"], JOB_TIMEOUT, interval=0.2)
        server.require_success(job)
        print(f"log-writing job {job['id']} {job['state']} in {time.perf_counter() - start:.1f} s")

        status, page = server.request("GET", f"api/v1/jobs/{job['id']}/logs?tail=1")
        if status != 200:
            raise BenchError(f"GET logs?tail=1 answered {status}: {page}")
        size = page["size"]
        log_path = server.log_path(job["id"])
        if not os.path.exists(log_path):
            raise BenchError(f"log file not found at {log_path}")
        if size < MIN_SIZE:
            raise BenchError(f"log is only {size} bytes, expected >= {MIN_SIZE:.0f}")
        if size != os.path.getsize(log_path):
            raise BenchError(f"API says the log has {size} bytes, the file has {os.path.getsize(log_path)}")
        print(f"log: {size / 1e6:.1f} MB ({size} bytes) at {log_path}")

        api_times, api_lines = time_api_tail(server, job["id"], options.repeat)
        tail_times, tail_lines = time_tail_command(log_path, options.repeat)
        if api_lines != tail_lines:
            raise BenchError("the API's last 1000 lines differ from `tail -n 1000`")
        expected_last = f"{LINES - 1:09d} " + "x" * 190
        if expected_last not in api_lines:
            raise BenchError(f"the program's last line ({LINES - 1:09d} ...) is not among the last {TAIL} lines")
        read_time, read_size = time_full_read(log_path)
        if read_size != size:
            raise BenchError(f"read {read_size} bytes, expected {size}")

    api_median, tail_median = statistics.median(api_times), statistics.median(tail_times)
    print(f"tail={TAIL}: API and `tail -n {TAIL}` return the same {TAIL} lines")
    print(f"{options.repeat} timed requests after {WARMUPS} warm-ups (one persistent connection):")
    for label, times in ((f"API GET logs?tail={TAIL}", api_times), (f"tail -n {TAIL} (subprocess)", tail_times)):
        print(f"  {label:<27} median {ms(statistics.median(times))}   p95 {ms(p95(times))}   min {ms(min(times))}")
    print(f"  {'whole-file read (once)':<27}        {ms(read_time)}   "
          f"({read_size / 1e6:.1f} MB, open(path, 'rb').read(), page cache warm)")  # fmt: skip
    print(f"ratio api/tail-command = {api_median / tail_median:.2f}")
    verdict = "PASS" if api_median <= GOAL_MS / 1000 else "FAIL"
    print(f"api tail median = {api_median * 1000:.2f} ms, p95 = {p95(api_times) * 1000:.2f} ms "
          f"(goal <= {GOAL_MS:.0f} ms): {verdict}")  # fmt: skip


if __name__ == "__main__":
    run_bench(main)
