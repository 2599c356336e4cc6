"""The dashboard with 100,000 jobs stored vs Jupyter's own listing of a 50-file folder.

`GET /api/v1/dashboard/overview` (stats, 14-day trends, recent jobs) against
`GET /api/contents/bench50`, on one real Jupyter server, one client on one keep-alive
connection each, requests alternating between the two, in two phases:

- warm: nothing is written between requests, so the dashboard's job statistics come from
  its cache (reused while the store has not written, for at most 1 s); a cache expiry
  falls inside this phase every second, as it would for a dashboard polled all day.
- cold: before every request one finished job is deleted through the API (a store write,
  untimed), so each overview computes every statistic again in SQL: the cost after any
  job's state change. The folder listing gets the same write before it, for fairness.

The store is filled before the server starts, straight into the `jobs` and `runs` tables
(schema from JobStore's migrations): jobs created over the last 30 days, mostly
succeeded, some failed, killed (a few before they started), lost, restarted after a
failure (two runs), durations from seconds to an hour. Once on SQLite (the default store)
and once on PostgreSQL (a fresh database on 127.0.0.1:5432, dropped at the end).

Goal: p99(overview) <= 25 ms.

    python3 bench/dashboard.py [--jobs N] [--requests N] [--store sqlite|postgresql|both] [--cache-seconds S]
"""

import argparse
import http.client
import json
import os
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_list import FOLDER, FOLDER_FILES, make_folder, percentile  # noqa: E402
from server import HOST, BenchError, BenchServer, cpu_seconds, insert_jobs, run_bench, server_on_store  # noqa: E402

GOAL_P99_MS = 25.0
DAYS = 30
# The runs whose length the dashboard's mean and p95 are over (a kill or a loss is no program's end).
TIMED_STATES = ("succeeded", "failed")
OVERVIEW = "/api/v1/dashboard/overview"
CONTENTS = f"/api/contents/{FOLDER}"
CODE = (
    "from pyspark.sql import SparkSession, functions as F\n"
    "spark = SparkSession.builder.getOrCreate()\n"
    "orders = spark.read.parquet('warehouse/orders')\n"
    "daily = orders.groupBy(F.to_date('created_at').alias('day')).agg(F.sum('amount').alias('revenue'))\n"
    "daily.write.mode('overwrite').parquet('warehouse/daily_revenue')\n"
)


# ---- filling the store ------------------------------------------------------------------


def _run(job_id: str, attempt: int, state: str, queued: datetime, started: datetime | None,
         finished: datetime, runs_dir: str) -> dict:  # fmt: skip
    return {
        "job_id": job_id, "attempt": attempt, "cluster_id": "spark-cluster-default", "state": state,
        "run_dir": os.path.join(runs_dir, job_id, str(attempt)), "queued_at": queued, "started_at": started,
        "finished_at": finished, "exit_code": {"succeeded": 0, "failed": 1}.get(state),
        "error": "AnalysisException: Path does not exist" if state == "failed" else None,
        "spark_app_id": f"local-{int(started.timestamp() * 1000)}" if started else None, "spark_ui_url": None,
        "pid": None, "pid_started": None, "kill_requested": state == "killed", "backend": "spark-submit",
        "pid_start_ticks": None, "pid_boot_id": None, "owner_host": None, "owner_boot_id": None,
        "owner_instance": None, "owner_pid": None, "owner_start_ticks": None, "tenant": "bench",
    }  # fmt: skip


def _rows(i: int, now: datetime, runs_dir: str, rng: random.Random) -> tuple[dict, list[dict]]:
    """One finished job (and its one or two runs) created in the last DAYS days."""
    job_id = uuid.uuid4().hex
    created = now - timedelta(seconds=rng.uniform(3600, DAYS * 86400))
    roll = rng.random()
    state = ("succeeded" if roll < 0.84 else "failed" if roll < 0.93 else "killed" if roll < 0.97
             else "lost" if roll < 0.98 else "restarted")  # fmt: skip
    seconds = min(3500.0, rng.lognormvariate(4.0, 1.0))  # median ~55 s, a long tail
    runs_rows, attempt, started = [], 1, created + timedelta(seconds=rng.uniform(0.1, 3))
    if state == "restarted":  # failed once, then succeeded
        failed_at = started + timedelta(seconds=rng.uniform(5, 60))
        runs_rows.append(_run(job_id, 1, "failed", created, started, failed_at, runs_dir))
        attempt, state, started = 2, "succeeded", failed_at + timedelta(seconds=rng.uniform(60, 600))
    if state == "killed" and rng.random() < 0.2:
        started = None  # killed while queued
    finished = (started or created) + timedelta(seconds=seconds if started else rng.uniform(1, 60))
    runs_rows.append(_run(job_id, attempt, state, started or created, started, finished, runs_dir))
    job = {
        "id": job_id, "name": f"etl-{i % 700}-{i}", "cluster_id": "spark-cluster-default", "state": state,
        "code": CODE, "file": None, "args": ["--day", created.date().isoformat()],
        "conf": {"spark.executor.memory": "2g"}, "env": {"STAGE": "prod"}, "attempt": attempt,
        "created_at": created, "updated_at": finished, "log_level": None, "tenant": "bench",
        "duration": (finished - started).total_seconds() if started and state in TIMED_STATES else None,
    }  # fmt: skip
    return job, runs_rows


def fill_store(url: str, count: int, runs_dir: str) -> tuple[float, list[str]]:
    """Create the schema (JobStore's migrations) and insert `count` finished jobs. Returns
    the seconds it took and the ids of the jobs, in the order written."""
    rng = random.Random(8)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    ids = []

    def rows():
        for i in range(count):
            job, job_runs = _rows(i, now, runs_dir, rng)
            ids.append(job["id"])
            yield job, job_runs

    return insert_jobs(url, rows(), tenant="bench"), ids


# ---- timing -----------------------------------------------------------------------------


class Client:
    """One keep-alive connection; `get` returns (milliseconds, parsed body)."""

    def __init__(self, server: BenchServer):
        self.connection = http.client.HTTPConnection(HOST, server.port, timeout=60)
        self.headers = {"Authorization": f"token {server.token}"}

    def call(self, method: str, path: str) -> tuple[float, int, bytes]:
        start = time.perf_counter()
        self.connection.request(method, path, headers=self.headers)
        response = self.connection.getresponse()
        body = response.read()
        return (time.perf_counter() - start) * 1000, response.status, body

    def get(self, path: str) -> tuple[float, dict]:
        elapsed, status, body = self.call("GET", path)
        if status != 200:
            raise BenchError(f"GET {path} answered {status}: {body[:300]!r}")
        return elapsed, json.loads(body)

    def delete_job(self, job_id: str) -> None:
        _, status, body = self.call("DELETE", f"/api/v1/jobs/{job_id}")
        if status != 204:
            raise BenchError(f"DELETE job {job_id} answered {status}: {body[:300]!r}")

    def close(self) -> None:
        self.connection.close()


def check(client: Client, count: int) -> dict:
    _, overview = client.get(OVERVIEW)
    stats = overview["stats"]
    if stats["total_jobs"] != count or len(overview["recent_jobs"]) != 10 or len(overview["trends"]["points"]) != 14:
        raise BenchError(f"unexpected overview: {json.dumps(overview)[:500]}")
    _, listing = client.get(CONTENTS)
    if len(listing["content"]) != FOLDER_FILES:
        raise BenchError(f"GET {CONTENTS} listed {len(listing['content'])} files")
    return stats


def measure(server: BenchServer, ids: list[str], requests: int) -> dict[str, dict[str, list[float]]]:
    client = Client(server)
    results = {"warm": {"overview": [], "contents": []}, "cold": {"overview": [], "contents": []}}
    doomed = iter(ids)  # finished jobs to delete, one per cold request
    try:
        stats = check(client, len(ids))
        print(f"  overview: {stats['total_jobs']} jobs, success rate {stats['success_rate']}, mean "
              f"{stats['mean_duration']} s, p95 {stats['p95_duration']} s, notebooks {stats['notebooks']}")
        for _ in range(50):  # warm-up: imports, connection, caches
            client.get(OVERVIEW)
            client.get(CONTENTS)
        for i in range(requests):
            for label, path in (("overview", OVERVIEW), ("contents", CONTENTS))[:: 1 if i % 2 else -1]:
                results["warm"][label].append(client.get(path)[0])
        for i in range(requests):
            for label, path in (("overview", OVERVIEW), ("contents", CONTENTS))[:: 1 if i % 2 else -1]:
                client.delete_job(next(doomed))
                results["cold"][label].append(client.get(path)[0])
        _, overview = client.get(OVERVIEW)
        if overview["stats"]["total_jobs"] != len(ids) - 2 * requests:
            raise BenchError(f"after {2 * requests} deletes the overview counts {overview['stats']['total_jobs']}")
    finally:
        client.close()
    return results


def run_store(kind: str, options) -> dict:
    extra_args = ["--DataHarbourApp.class_data_sharing=False", "--DataHarbourApp.store_tenant=bench",
                  f"--DataHarbourApp.dashboard_cache_seconds={options.cache_seconds}"]
    with server_on_store(kind, f"dataharbour_bench_dashboard_{os.getpid()}", extra_args) as (server, url):
        filled, ids = fill_store(url, options.jobs, os.path.join(server.state_dir, "runs"))
        print(f"\n== {kind}: {options.jobs} jobs written in {filled:.1f}s")
        make_folder(server.root_dir)
        with server:
            process = psutil.Process(server.process.pid)
            cpu_before = cpu_seconds(process)
            started = time.perf_counter()
            results = measure(server, ids, options.requests)
            cpu = (cpu_seconds(process) - cpu_before) / (time.perf_counter() - started)
            print(f"  server CPU {100 * cpu:.0f}% of a core over the run, load average {os.getloadavg()[0]:.2f}")
    return results


def report(kind: str, results: dict) -> None:
    print(f"-- {kind}: GET {OVERVIEW} vs GET {CONTENTS} (1 client, keep-alive, ms)")
    for phase, label in (("warm", "cache warm (no writes)"), ("cold", "cache cold (a job deleted before each)")):
        overview, contents = results[phase]["overview"], results[phase]["contents"]
        o50, o99 = percentile(overview, 0.5), percentile(overview, 0.99)
        c50, c99 = percentile(contents, 0.5), percentile(contents, 0.99)
        verdict = "MET" if o99 <= GOAL_P99_MS else "NOT MET"
        print(f"  {label:40s} overview p50 {o50:6.2f} p99 {o99:6.2f} | contents p50 {c50:6.2f} p99 {c99:6.2f} | "
              f"ratio p50 {o50 / c50:4.2f} p99 {o99 / c99:4.2f} | n={len(overview)} | goal p99 <= "
              f"{GOAL_P99_MS:.0f} ms: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in the store (default 100000)")
    parser.add_argument("--requests", type=int, default=500, help="timed requests per endpoint and phase (500)")
    parser.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--cache-seconds", type=float, default=1.0,
                        help="the server's DataHarbourApp.dashboard_cache_seconds (default 1, the product's default)")
    options = parser.parse_args()
    if options.jobs < 2 * options.requests + 10 or options.requests < 10:
        parser.error("need --requests >= 10 and --jobs >= 2 * requests + 10 (each cold request deletes a job)")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    kinds = ["sqlite", "postgresql"] if options.store == "both" else [options.store]
    results = {kind: run_store(kind, options) for kind in kinds}
    print()
    for kind, result in results.items():
        report(kind, result)
    print(f"load average {os.getloadavg()[0]:.2f} at the end (other CPU load skews both sides alike)")


if __name__ == "__main__":
    run_bench(main)
