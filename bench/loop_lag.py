"""Worst event-loop lag of the Jupyter server while the jobs API is busy, vs the idle server.

The lag is measured inside the server by bench/loop_probe.py, a bench-only server
extension (bench/ goes on the server's PYTHONPATH): a task sleeps 5 ms again and again on
the server's event loop and records how late it wakes up; GET /loop-lag returns the worst
overshoot of the window and starts a new one. During every phase a poller also times
GET /api/status (what any Jupyter client does) back to back.

Phases, in order, on one server (SQLite store pre-filled with --stored finished jobs):

    idle      nothing happening (the baseline)
    (a)       4 real small PySpark jobs start, until all 4 are running (they then sleep,
              holding the cluster's 4 slots, so later submissions stay queued)
    idle+4    the 4 running jobs being watched, nothing else
    (b)       100 jobs submitted at once (100 concurrent POSTs); also: time until all 100
              are accepted (202)
    (c)       GET /api/v1/jobs/?limit=1000, --list-requests times, 4 at a time
    (d)       a 200 MB log (appended to a finished job's run folder output.log) read by 8
              concurrent readers for --log-seconds: 4 follow offset pages (limit 10000
              lines), 4 ask for tail=100000
    kill      every queued and running job killed through the API, concurrently

Goals: worst lag <= 20 ms in (a)-(d); all 100 submissions accepted within 2 s.
At the end no process of the run may be left (checked with psutil).

    python3 bench/loop_lag.py [--stored N] [--burst N] [--list-requests N] [--log-mb MB]
                              [--log-seconds S] [--idle-seconds S]
"""

import argparse
import asyncio
import math
import os
import re
import sys
import time

import httpx
import psutil

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
from api_list import fill_store  # noqa: E402
from server import TERMINAL_STATES, BenchError, BenchServer, run_bench  # noqa: E402

from dataharbour_ext.store.log_files import MAX_TAIL_BYTES  # noqa: E402

SPARK_PROGRAM = (
    "import time\n"
    "from pyspark.sql import SparkSession\n"
    "spark = SparkSession.builder.getOrCreate()\n"
    "print(spark.range(1000).count(), flush=True)\n"
    "time.sleep(900)  # hold the slot until the bench kills it\n"
)
SMALL_PROGRAM = "print('hello from a queued bench job')\n"
LINE_BODY = "x" * 190
GOAL_LAG_MS = 20.0
GOAL_ACCEPT_S = 2.0
START_TIMEOUT = 300.0
ACTIVE = "queued,starting,running"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def write_log(path: str, megabytes: int) -> int:
    """Append numbered 200-byte lines until the file is `megabytes` MB larger."""
    target = megabytes * 1_000_000
    written = 0
    i = 0
    with open(path, "a", encoding="utf-8") as f:
        while written < target:
            chunk = "".join(f"{n:09d} {LINE_BODY}\n" for n in range(i, i + 20000))
            f.write(chunk)
            written += len(chunk)
            i += 20000
    return os.path.getsize(path)


class Bench:
    def __init__(self, server: BenchServer, client: httpx.AsyncClient):
        self.server = server
        self.client = client
        self.rows: list[dict] = []
        self.show_stalls = False

    async def call(self, method: str, path: str, body=None, expect=(200,)) -> dict:
        response = await self.client.request(method, path, json=body)
        if response.status_code not in expect:
            raise BenchError(f"{method} {path} answered {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else {}

    def server_cpu(self) -> float:
        """CPU seconds of the Jupyter server process (all its threads), not of the jobs."""
        times = psutil.Process(self.server.process.pid).cpu_times()
        return times.user + times.system

    async def lag(self) -> dict:
        return await self.call("GET", "loop-lag")

    async def phase(self, label: str, work) -> object:
        """Run `work()` with the status poller going; record the loop lag of the window."""
        await self.lag()  # start a new window
        statuses: list[float] = []
        done = asyncio.Event()

        async def poll() -> None:
            while not done.is_set():
                t0 = time.perf_counter()
                await self.call("GET", "api/status")
                statuses.append(time.perf_counter() - t0)
                await asyncio.sleep(0.005)

        poller = asyncio.create_task(poll())
        cpu_before = self.server_cpu()
        start = time.perf_counter()
        try:
            result = await work()
        finally:
            elapsed = time.perf_counter() - start
            done.set()
            await poller
        cpu = self.server_cpu() - cpu_before
        lag = await self.lag()
        row = {"label": label, "elapsed": elapsed, "lag": lag, "status": statuses, "cpu": cpu}
        self.rows.append(row)
        print(f"  {label:8s} {elapsed:6.2f}s  server CPU {cpu:5.2f}s  worst lag {lag['max_ms']:7.1f} ms (at {lag['max_at_s']:.2f}s)  "
              f"tick p99 {lag['p99_ms']:6.1f} ms  ticks>20ms {lag['over_20ms']:4d}  "
              f"GET /api/status p50 {percentile(statuses, 0.5) * 1000:6.1f} ms p99 "
              f"{percentile(statuses, 0.99) * 1000:6.1f} ms (n={len(statuses)})")  # fmt: skip
        if self.show_stalls:
            for stack, samples in lag.get("stalls", []):
                print(f"           stalled loop, {samples} samples (~10 ms each) in: {stack}")
        return result

    async def wait_states(self, job_ids: list[str], states: set[str], timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            jobs = await asyncio.gather(*(self.call("GET", f"api/v1/jobs/{i}") for i in job_ids))
            current = {job["id"]: job["state"] for job in jobs}
            if all(state in states for state in current.values()):
                return current
            if time.monotonic() > deadline:
                raise BenchError(f"jobs not in {sorted(states)} after {timeout:.0f}s: {current}")
            await asyncio.sleep(0.2)


async def run(server: BenchServer, options) -> None:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    headers = {"Authorization": f"token {server.token}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, limits=limits, timeout=300) as client:
        b = Bench(server, client)
        b.show_stalls = options.stalls

        # The log job: a finished job whose run folder gets a 200 MB output.log.
        log_job = await b.call("POST", "api/v1/jobs/", {"name": "bench-log", "code": SMALL_PROGRAM}, (202,))
        states = await b.wait_states([log_job["id"]], TERMINAL_STATES, START_TIMEOUT)
        if states[log_job["id"]] != "succeeded":
            raise BenchError(f"log job {log_job['id']} {states[log_job['id']]}")
        t0 = time.perf_counter()
        size = await asyncio.to_thread(write_log, server.log_path(log_job["id"]), options.log_mb)
        print(f"log job {log_job['id']}: output.log now {size / 1e6:.0f} MB (written in "
              f"{time.perf_counter() - t0:.1f}s)")  # fmt: skip
        await asyncio.sleep(1)

        print(f"phases (server pid {server.process.pid}, load average {os.getloadavg()[0]:.2f}):")
        await b.phase("idle", lambda: asyncio.sleep(options.idle_seconds))

        # (a) 4 real PySpark jobs start.
        spark_ids: list[str] = []

        async def start_four() -> None:
            jobs = await asyncio.gather(*(
                b.call("POST", "api/v1/jobs/", {"name": f"bench-spark-{i}", "code": SPARK_PROGRAM}, (202,))
                for i in range(4)
            ))  # fmt: skip
            spark_ids.extend(job["id"] for job in jobs)
            states = await b.wait_states(spark_ids, {"running"} | TERMINAL_STATES, START_TIMEOUT)
            if any(state != "running" for state in states.values()):
                raise BenchError(f"spark jobs did not all reach running: {states}")

        await b.phase("(a)", start_four)
        await b.phase("idle+4", lambda: asyncio.sleep(options.idle_seconds))

        # (b) 100 concurrent submissions.
        accepted: list[float] = []

        async def burst() -> None:
            start = time.perf_counter()

            async def one(i: int) -> None:
                await b.call("POST", "api/v1/jobs/", {"name": f"bench-burst-{i}", "code": SMALL_PROGRAM}, (202,))
                accepted.append(time.perf_counter() - start)

            await asyncio.gather(*(one(i) for i in range(options.burst)))

        await b.phase("(b)", burst)

        # (c) list 1000 jobs.
        list_times: list[float] = []

        async def list_many() -> None:
            queue = list(range(options.list_requests))

            async def lister() -> None:
                while queue:
                    queue.pop()
                    t0 = time.perf_counter()
                    body = await b.call("GET", "api/v1/jobs/?limit=1000")
                    list_times.append(time.perf_counter() - t0)
                    if len(body["jobs"]) != 1000:
                        raise BenchError(f"GET api/v1/jobs/?limit=1000 returned {len(body['jobs'])} jobs")

            await asyncio.gather(*(lister() for _ in range(4)))

        await b.phase("(c)", list_many)

        # (d) the 200 MB log, paged and tailed by 8 readers.
        log_stats = {"page": [], "tail": [], "bytes": 0}

        async def read_log() -> None:
            deadline = time.perf_counter() + options.log_seconds
            path = f"api/v1/jobs/{log_job['id']}/logs"

            async def pager(start_fraction: float) -> None:
                offset = None
                while time.perf_counter() < deadline:
                    if offset is None:  # start mid-file at a line boundary found by a page
                        page = await b.call("GET", f"{path}?offset={int(size * start_fraction)}&limit=1")
                        offset = page["next_offset"]
                    t0 = time.perf_counter()
                    response = await client.get(f"{path}?offset={offset}&limit=10000")
                    log_stats["page"].append(time.perf_counter() - t0)
                    log_stats["bytes"] += len(response.content)
                    page = response.json()
                    offset = page["next_offset"] if page["next_offset"] < page["size"] else 0

            async def tailer() -> None:
                while time.perf_counter() < deadline:
                    t0 = time.perf_counter()
                    response = await client.get(f"{path}?tail=100000")
                    log_stats["tail"].append(time.perf_counter() - t0)
                    log_stats["bytes"] += len(response.content)
                    # A response carries at most MAX_TAIL_BYTES of log: the newest lines that fit.
                    line_bytes = len(LINE_BODY) + 11
                    expected = min(100000, size // line_bytes, MAX_TAIL_BYTES // line_bytes - 1)
                    page = response.json()
                    if len(page["lines"]) < expected or page["next_offset"] != page["size"]:
                        raise BenchError(f"tail=100000 returned {len(page['lines'])} lines, not the last {expected}")

            await asyncio.gather(*(pager(i / 4) for i in range(4)), *(tailer() for _ in range(4)))

        await b.phase("(d)", read_log)

        # Kill everything still queued or running, through the API, concurrently.
        killed: list[str] = []

        async def kill_all() -> None:
            body = await b.call("GET", f"api/v1/jobs/?state={ACTIVE}&limit=1000")
            ids = [job["id"] for job in body["jobs"]]
            results = await asyncio.gather(*(
                b.call("POST", f"api/v1/jobs/{i}/kill", expect=(200, 409)) for i in ids
            ))  # fmt: skip
            killed.extend(i for i, r in zip(ids, results, strict=True) if r.get("state") == "killed")

        await b.phase("kill", kill_all)
        body = await b.call("GET", f"api/v1/jobs/?state={ACTIVE}&limit=1000")
        if body["total"]:
            raise BenchError(f"{body['total']} jobs still active after the kills")

    report(b.rows, accepted, options.burst, list_times, log_stats, len(killed))


def report(rows, accepted, burst, list_times, log_stats, killed) -> None:
    by_label = {row["label"]: row for row in rows}
    idle = by_label["idle"]["lag"]["max_ms"]
    print()
    print(
        f"{'phase':8s} {'worst lag':>10s} {'x idle':>7s} {'status p99':>11s}   goal: worst lag <= {GOAL_LAG_MS:.0f} ms"
    )
    for row in rows:
        worst = row["lag"]["max_ms"]
        verdict = "" if row["label"] in ("idle", "idle+4", "kill") else ("MET" if worst <= GOAL_LAG_MS else "NOT MET")
        print(f"{row['label']:8s} {worst:8.1f}ms {worst / idle if idle else float('inf'):6.1f}x "
              f"{percentile(row['status'], 0.99) * 1000:9.1f}ms   {verdict}")  # fmt: skip
    all_in = max(accepted) if len(accepted) == burst else float("inf")
    print(f"(b) {len(accepted)}/{burst} submissions accepted, all within {all_in:.2f}s "
          f"(median {percentile(accepted, 0.5):.2f}s; goal <= {GOAL_ACCEPT_S:.0f}s): "
          f"{'MET' if all_in <= GOAL_ACCEPT_S else 'NOT MET'}; GET /api/status p99 during the burst "
          f"{percentile(by_label['(b)']['status'], 0.99) * 1000:.1f} ms")  # fmt: skip
    print(f"(c) GET /jobs/?limit=1000: {len(list_times)} requests, p50 {percentile(list_times, 0.5) * 1000:.0f} ms, "
          f"max {max(list_times) * 1000:.0f} ms")  # fmt: skip
    elapsed = by_label["(d)"]["elapsed"]
    print(f"(d) log reads: {len(log_stats['page'])} pages (p50 {percentile(log_stats['page'], 0.5) * 1000:.0f} ms), "
          f"{len(log_stats['tail'])} tails of 100000 lines (p50 {percentile(log_stats['tail'], 0.5) * 1000:.0f} ms), "
          f"{log_stats['bytes'] / 1e6 / elapsed:.0f} MB/s of JSON")  # fmt: skip
    print(f"kill: {killed} jobs killed in {by_label['kill']['elapsed']:.2f}s")
    worst = max(row["lag"]["max_ms"] for row in rows if row["label"].startswith("("))
    print(
        f"worst lag over (a)-(d) = {worst:.1f} ms = {worst / idle if idle else float('inf'):.1f}x idle "
        f"({idle:.1f} ms) (goal <= {GOAL_LAG_MS:.0f} ms): {'MET' if worst <= GOAL_LAG_MS else 'NOT MET'}"
    )


def run_processes(tmp: str, exclude: set[int]) -> list[psutil.Process]:
    """Live processes (not zombies) whose command line or working directory is in `tmp`."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd", "status"]):
        try:
            if process.pid in exclude or process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = process.info["cmdline"] or ()
            if any(tmp in arg for arg in cmdline) or (process.info["cwd"] or "").startswith(tmp):
                found.append(process)
        except psutil.Error:
            continue
    return found


def describe(processes: list[psutil.Process]) -> str:
    parts = []
    for p in processes:
        try:
            parts.append(f"{p.pid} {p.name()}")
        except psutil.Error:
            parts.append(str(p.pid))
    return ", ".join(parts)


def explain_leftovers(server: BenchServer, processes: list[psutil.Process]) -> None:
    """Which job each leftover process belongs to, and what the API says about that job."""
    jobs = set()
    for process in processes:
        try:
            cmdline = " ".join(process.cmdline())
            cwd = process.cwd()
        except psutil.Error:
            continue
        match = re.search(r"/runs/([0-9a-f]{32})/(\d+)", cmdline + " " + cwd)
        print(f"  leftover {process.pid} {process.name()} job {match[1] if match else '?'}: "
              f"{cmdline.replace(server.tmp, '<tmp>')[:200]}")  # fmt: skip
        if match:
            jobs.add((match[1], int(match[2])))
    for job_id, attempt in sorted(jobs):
        status, job = server.request("GET", f"api/v1/jobs/{job_id}")
        run = next((r for r in (job or {}).get("runs", []) if r["attempt"] == attempt), {})
        print(f"  job {job_id} ({(job or {}).get('name')}): API {status}, state {(job or {}).get('state')}, "
              f"run {attempt}: {run.get('state')} started {run.get('started_at')} finished {run.get('finished_at')} "
              f"exit {run.get('exit_code')} error {run.get('error')!r}")  # fmt: skip
        try:
            with open(os.path.join(server.run_dir(job_id, attempt), "output.log"), errors="replace") as f:
                print("  its output.log ends: " + " | ".join(f.read().splitlines()[-3:]))
        except OSError as error:
            print(f"  no output.log: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stored", type=int, default=1000, help="finished jobs in the store at start (1000)")
    parser.add_argument("--burst", type=int, default=100, help="concurrent submissions in (b) (100)")
    parser.add_argument("--list-requests", type=int, default=20, help="GET ?limit=1000 requests in (c) (20)")
    parser.add_argument("--log-mb", type=int, default=200, help="size of the log read in (d), MB (200)")
    parser.add_argument("--log-seconds", type=float, default=10.0, help="duration of (d) (10)")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="duration of the idle phases (5)")
    parser.add_argument(
        "--stalls", action="store_true", help="print where the loop thread was while it stalled (stack samples)"
    )
    options = parser.parse_args()
    if options.stored < 1000:
        parser.error("--stored must be >= 1000 so that (c) lists 1000 jobs")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, httpx {httpx.__version__}")
    python_path = os.pathsep.join(p for p in (BENCH_DIR, os.environ.get("PYTHONPATH")) if p)
    server = BenchServer(
        extra_args=["--DataHarbourApp.class_data_sharing=False", *os.environ.get("BENCH_SERVER_ARGS", "").split()],
        extensions={"loop_probe": True},
        extra_env={"PYTHONPATH": python_path},
    )
    try:
        state_dir = os.path.join(server.data_dir, "dataharbour")
        os.makedirs(state_dir, mode=0o700)
        filled = fill_store("sqlite:///" + os.path.join(state_dir, "dataharbour.db"), options.stored,
                            os.path.join(state_dir, "runs"))  # fmt: skip
        print(f"SQLite store pre-filled with {options.stored} finished jobs in {filled:.1f}s")
        with server:
            asyncio.run(run(server, options))
            left = run_processes(server.tmp, {server.process.pid, os.getpid()})
            print(f"processes of the run left after the kills: {describe(left) or 'none'}")
            if left:
                explain_leftovers(server, left)
                time.sleep(15)
                left = run_processes(server.tmp, {server.process.pid, os.getpid()})
                print(f"15 s later: {describe(left) or 'none'}")
        left = run_processes(server.tmp, {os.getpid()})
        print(f"processes left after the server stopped: {describe(left) or 'none'}")
    finally:
        server.stop()


if __name__ == "__main__":
    run_bench(main)
