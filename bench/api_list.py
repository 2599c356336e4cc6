"""Job list under load vs Jupyter's own directory listing, same server, same run.

`GET /api/v1/jobs/?limit=50` with N jobs in the store (default 100,000) against
`GET /api/contents/bench50` (a folder of 50 files), 32 concurrent keep-alive clients
(httpx), alternating the two endpoints in rounds of --seconds each (after an untimed
warm-up). Once on SQLite (the default store) and once on PostgreSQL (a fresh database
`dataharbour_bench_<pid>` on 127.0.0.1:5432, user postgres, trust auth, dropped at the end).

The store is filled before the server starts, straight into the `jobs` and `runs` tables
with SQLAlchemy Core (the schema comes from JobStore's migrations): mostly terminal
jobs, ~1 KB of code each, one run per job.

Goals: throughput(jobs) / throughput(contents) >= 1.0 and p99(jobs) <= 25 ms.

Also printed: the server's and the client's CPU use during each endpoint's load (if the
server is not near 100% of a core, the client or something else is the bottleneck), and
the latency of one client alone (no queueing: with 32 clients in a closed loop, latency is
at least 32 / throughput by Little's law).

    python3 bench/api_list.py [--jobs N] [--clients N] [--seconds S] [--rounds R]
                              [--store sqlite|postgresql|both]
"""

import argparse
import asyncio
import math
import os
import random
import sys
import time
import uuid
from datetime import datetime, timedelta

import httpx
import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import BenchError, BenchServer, cpu_seconds, insert_jobs, run_bench, server_on_store  # noqa: E402

FOLDER = "bench50"
FOLDER_FILES = 50
GOAL_RATIO = 1.0
GOAL_P99_MS = 25.0

CODE = (
    "from pyspark.sql import SparkSession, functions as F\n"
    "spark = SparkSession.builder.appName('nightly-etl').getOrCreate()\n"
    "orders = spark.read.parquet('warehouse/orders')\n"
    "customers = spark.read.parquet('warehouse/customers')\n"
    "daily = (orders.join(customers, 'customer_id')\n"
    "         .where(F.col('status') == 'shipped')\n"
    "         .groupBy(F.to_date('created_at').alias('day'), 'country')\n"
    "         .agg(F.sum('amount').alias('revenue'), F.countDistinct('customer_id').alias('buyers')))\n"
    "daily.write.mode('overwrite').partitionBy('day').parquet('warehouse/daily_revenue')\n"
    "print(daily.count())\n"
    "spark.stop()\n"
)


# ---- filling the store ------------------------------------------------------------------


def _code(i: int) -> str:
    text = f"# job {i}\n" + CODE
    while len(text) < 1000:
        text += f"# padding line for job {i}: {'-' * 40}\n"
    return text


def _rows(i: int, runs_dir: str, start: datetime, rng: random.Random) -> tuple[dict, list[dict]]:
    job_id = uuid.uuid4().hex
    roll = rng.random()
    state, exit_code, error = "succeeded", 0, None
    if roll > 0.97:
        state, exit_code, error = "killed", -15, "killed by request"
    elif roll > 0.87:
        state, exit_code = "failed", 1
        error = 'Traceback (most recent call last):\n  File "job.py", line 3\nAnalysisException: Path does not exist'
    created = start + timedelta(seconds=30 * i)
    started = created + timedelta(seconds=rng.uniform(0.05, 2))
    finished = started + timedelta(seconds=rng.uniform(3, 600))
    job = {
        "id": job_id, "name": f"etl-{i % 700}-{i}", "cluster_id": "spark-cluster-default", "state": state,
        "code": _code(i), "file": None, "args": ["--day", created.date().isoformat()],
        "conf": {"spark.executor.memory": "2g", "spark.sql.shuffle.partitions": "64"}, "env": {"STAGE": "prod"},
        "attempt": 1, "created_at": created, "updated_at": finished, "log_level": None,
    }  # fmt: skip
    run = {
        "job_id": job_id, "attempt": 1, "cluster_id": "spark-cluster-default", "state": state,
        "run_dir": os.path.join(runs_dir, job_id, "1"), "queued_at": created, "started_at": started,
        "finished_at": finished, "exit_code": exit_code, "error": error,
        "spark_app_id": f"local-{int(started.timestamp() * 1000)}", "spark_ui_url": None,
        "pid": 10000 + i % 50000, "pid_started": None, "kill_requested": state == "killed", "backend": "spark-submit",
        "pid_start_ticks": 123456 + i, "pid_boot_id": "0f3c1d2e-bench", "owner_host": "bench-host",
        "owner_boot_id": "0f3c1d2e-bench", "owner_instance": "old-server-instance", "owner_pid": 4242,
        "owner_start_ticks": 1000,
    }  # fmt: skip
    return job, [run]


def fill_store(url: str, count: int, runs_dir: str) -> float:
    """Create the schema (JobStore's migrations) and insert `count` finished jobs with one
    run each. Returns the seconds it took."""
    rng = random.Random(1)
    first = datetime(2026, 1, 1) - timedelta(seconds=30 * count)
    return insert_jobs(url, (_rows(i, runs_dir, first, rng) for i in range(count)))


def make_folder(root_dir: str) -> None:
    folder = os.path.join(root_dir, FOLDER)
    os.makedirs(folder)
    for i in range(FOLDER_FILES):
        suffix = (".py", ".ipynb", ".csv", ".txt", ".json")[i % 5]
        with open(os.path.join(folder, f"file_{i:02d}{suffix}"), "w") as f:
            f.write("{}\n" if suffix in (".ipynb", ".json") else f"line {i}\n" * 40)


# ---- load -------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


class Endpoint:
    def __init__(self, label: str, path: str):
        self.label = label
        self.path = path
        self.latencies: list[float] = []
        self.seconds = 0.0
        self.errors = 0
        self.server_cpu = 0.0
        self.client_cpu = 0.0

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


async def load(client: httpx.AsyncClient, path: str, clients: int, seconds: float) -> tuple[list[float], float, int]:
    """`clients` workers in a closed loop for `seconds`; returns latencies, wall time, errors."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            response = await client.get(path)
            elapsed = time.perf_counter() - t0
            if response.status_code == 200:
                latencies.append(elapsed)
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, time.perf_counter() - start, errors


async def measure(server: BenchServer, endpoints: list[Endpoint], clients: int, seconds: float, rounds: int,
                  solo_requests: int) -> None:  # fmt: skip
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"token {server.token}"}
    server_process = psutil.Process(server.process.pid)
    me = psutil.Process()
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, limits=limits, timeout=120) as client:
        for endpoint in endpoints:  # warm-up: connections, caches, first-call imports
            await load(client, endpoint.path, clients, min(2.0, seconds))
        for r in range(rounds):
            for endpoint in endpoints if r % 2 == 0 else endpoints[::-1]:
                server_before, client_before = cpu_seconds(server_process), cpu_seconds(me)
                latencies, elapsed, errors = await load(client, endpoint.path, clients, seconds)
                endpoint.server_cpu += cpu_seconds(server_process) - server_before
                endpoint.client_cpu += cpu_seconds(me) - client_before
                endpoint.latencies += latencies
                endpoint.seconds += elapsed
                endpoint.errors += errors
                print(f"  round {r + 1} {endpoint.label:8s} {len(latencies) / elapsed:7.1f} req/s  "
                      f"p50 {percentile(latencies, 0.5) * 1000:6.1f} ms  p99 {percentile(latencies, 0.99) * 1000:6.1f} ms"
                      + (f"  ({errors} errors)" if errors else ""))  # fmt: skip
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=120) as client:
        for endpoint in endpoints:
            solo = []
            for _ in range(solo_requests):
                t0 = time.perf_counter()
                response = await client.get(endpoint.path)
                solo.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    raise BenchError(f"GET {endpoint.path} answered {response.status_code}")
            endpoint.solo = solo


def check_responses(server: BenchServer, count: int) -> None:
    status, body = server.request("GET", "api/v1/jobs/?limit=50")
    if status != 200 or len(body["jobs"]) != min(50, count) or body["total"] != count:
        raise BenchError(f"GET api/v1/jobs/?limit=50 answered {status}: {len(body.get('jobs', []))} jobs, "
                         f"total {body.get('total')} (expected {count})")  # fmt: skip
    status, body = server.request("GET", f"api/contents/{FOLDER}")
    if status != 200 or len(body["content"]) != FOLDER_FILES:
        raise BenchError(f"GET api/contents/{FOLDER} answered {status}")


def run_store(kind: str, options) -> tuple[Endpoint, Endpoint]:
    extra_args = ["--DataHarbourApp.class_data_sharing=False"]
    with server_on_store(kind, f"dataharbour_bench_{os.getpid()}", extra_args) as (server, url):
        filled = fill_store(url, options.jobs, os.path.join(server.state_dir, "runs"))
        print(f"\n== {kind}: {options.jobs} jobs written in {filled:.1f}s "
              f"({url.replace(server.tmp, '<tmp>')})")  # fmt: skip
        make_folder(server.root_dir)
        with server:
            check_responses(server, options.jobs)
            endpoints = [Endpoint("jobs", "api/v1/jobs/?limit=50"), Endpoint("contents", f"api/contents/{FOLDER}")]
            print(
                f"  server pid {server.process.pid}, load average {os.getloadavg()[0]:.2f}; "
                f"{options.clients} clients, {options.rounds} rounds x {options.seconds:g}s per endpoint"
            )
            asyncio.run(measure(server, endpoints, options.clients, options.seconds, options.rounds,
                                options.solo_requests))  # fmt: skip
    return endpoints[0], endpoints[1]


def report(kind: str, job_ep: Endpoint, contents_ep: Endpoint) -> tuple[float, float]:
    print(f"-- {kind} summary (GET {job_ep.path} vs GET {contents_ep.path})")
    for e in (job_ep, contents_ep):
        print(
            f"  {e.label:8s} {e.throughput:7.1f} req/s  p50 {percentile(e.latencies, 0.5) * 1000:6.1f} ms  "
            f"p99 {percentile(e.latencies, 0.99) * 1000:6.1f} ms  n={len(e.latencies)} errors={e.errors}  "
            f"server CPU {100 * e.server_cpu / e.seconds:3.0f}%  client CPU {100 * e.client_cpu / e.seconds:3.0f}%  "
            f"| 1 client: p50 {percentile(e.solo, 0.5) * 1000:5.1f} ms p99 {percentile(e.solo, 0.99) * 1000:5.1f} ms"
        )
    ratio = job_ep.throughput / contents_ep.throughput
    p99 = percentile(job_ep.latencies, 0.99) * 1000
    print(
        f"  throughput ratio jobs/contents = {ratio:.2f} (goal >= {GOAL_RATIO:.1f}): "
        f"{'MET' if ratio >= GOAL_RATIO else 'NOT MET'}"
    )
    print(f"  p99 jobs = {p99:.1f} ms (goal <= {GOAL_P99_MS:.0f} ms): {'MET' if p99 <= GOAL_P99_MS else 'NOT MET'}")
    return ratio, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in the store (default 100000)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per endpoint per round (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--solo-requests", type=int, default=100, help="sequential requests of one client (100)")
    parser.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="both")
    options = parser.parse_args()
    if options.jobs < 50 or options.clients < 1 or options.seconds <= 0 or options.rounds < 1:
        parser.error("need --jobs >= 50, --clients >= 1, --seconds > 0, --rounds >= 1")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, httpx {httpx.__version__}")
    kinds = ["sqlite", "postgresql"] if options.store == "both" else [options.store]
    results = {kind: run_store(kind, options) for kind in kinds}
    print()
    for kind, (job_ep, contents_ep) in results.items():
        report(kind, job_ep, contents_ep)
    print(f"load average {os.getloadavg()[0]:.2f} at the end (other CPU load skews both sides alike)")


if __name__ == "__main__":
    run_bench(main)
