"""Job turnaround through the API vs a bare spark-submit of the same trivial PySpark program.

API: from POST /api/v1/jobs/ until GET /api/v1/jobs/{id} shows a terminal state (polled
every 0.05 s). Bare: `spark-submit --master local[*] script.py`, the whole run. One untimed
warm-up of each, then N alternating rounds.

First (same run, untimed) it builds the JVM class-data archive of Spark's classes into the
server's state dir (`<jupyter data dir>/dataharbour/class-data/`), where the server finds
it ready, so API jobs start with it. Goal with the archive: median(api) / median(bare)
<= 0.6; without it (--no-class-data): <= 1.05.

--direct measures the archive without a server: the exact command and environment a job
gets from dataharbour_ext.spark.submit (bootstrap, quiet log config, class-data archive)
against bare spark-submit, both run directly.

--progress-cost (with --direct) measures what Spark progress costs a job: the job command
with progress sampling (the default, every 0.5 s) against the same command with it off,
alternated; goal: the ratio moves by no more than 2%.

--warm measures the warm path: the job through the API in connect mode (a pre-started Python
worker of the default cluster's Spark Connect server; POST to the terminal state the client
sees, polled every 0.02 s) against bare spark-submit and against the same script run as a
fresh `python3 script.py` with SPARK_REMOTE naming that Connect server (port and token from
its run folder), alternated warm, bare, fresh in each round. The first warm job starts the
Connect server and the warm pool: timed apart (the cold start), then one untimed warm-up of
each. Every measurement starts with the pool settled (every worker ready, none
starting), so refilling the pool after a warm job does not load the other two. The server
runs without the class-data archive (--DataHarbourApp.class_data_sharing=False): neither
baseline uses it, and building it would load the machine during the rounds. Goals:
median(bare) / median(warm) >= 20, median(warm) / median(fresh) <= 0.5.

    python3 bench/turnaround.py [--rounds N] [--direct [--progress-cost]] [--no-class-data]
    python3 bench/turnaround.py --warm [--rounds N]
"""

import argparse
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import HOST, BenchError, BenchServer, run_bench  # noqa: E402

from dataharbour_ext.models import DEFAULT_CLUSTER_ID  # noqa: E402
from dataharbour_ext.spark.class_data import ClassDataArchive  # noqa: E402
from dataharbour_ext.spark.connect_server import endpoint_url, read_server_folder  # noqa: E402
from dataharbour_ext.spark.log_config import SparkLogConfig  # noqa: E402
from dataharbour_ext.spark.submit import SubmitSpec, build_command, build_environment_overlay  # noqa: E402

PROGRAM = (
    "from pyspark.sql import SparkSession\n"
    "spark = SparkSession.builder.getOrCreate()\n"
    "print(spark.range(1000).count())\n"
    "spark.stop()\n"
)
GOAL = 1.05
GOAL_WITH_CLASS_DATA = 0.6
JOB_TIMEOUT = 180.0
BUILD_TIMEOUT = 400.0
POLL_INTERVAL = 0.05
# The warm path: a job of a fraction of a second, so the client looks more often.
WARM_POLL_INTERVAL = 0.02
POOL_TIMEOUT = 120.0
WARM_POOL_SIZE = 2  # the server's default
GOAL_WARM_VS_BARE = 1 / 20  # warm at least 20x faster than bare spark-submit
GOAL_WARM_VS_FRESH = 0.5  # warm at most half of a fresh Python process on the same Connect server


def spark_submit() -> str:
    return os.path.join(os.path.dirname(importlib.util.find_spec("pyspark").origin), "bin", "spark-submit")


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def run_api(server: BenchServer, name: str, mode: str = "batch", interval: float = POLL_INTERVAL) -> tuple[float, dict]:
    start = time.perf_counter()
    status, job = server.request("POST", "api/v1/jobs/", {"name": name, "code": PROGRAM, "mode": mode})
    if status != 202:
        raise BenchError(f"POST api/v1/jobs/ answered {status}: {job}")
    job = server.wait_terminal(job["id"], JOB_TIMEOUT, interval)
    elapsed = time.perf_counter() - start
    server.require_success(job)
    if job["mode"] != mode:
        raise BenchError(f"job {job['id']} ran in mode {job['mode']}, not {mode}")
    _, page = server.request("GET", f"api/v1/jobs/{job['id']}/logs?tail=200")
    if "1000" not in page["lines"]:
        raise BenchError(f"job {job['id']} succeeded but its log has no line '1000'")
    return elapsed, job


def run_bare(server: BenchServer, script: str, log_path: str) -> float:
    env = dict(os.environ)
    env.update({"SPARK_LOCAL_IP": HOST, "PYSPARK_PYTHON": sys.executable})
    argv = [spark_submit(), "--master", "local[*]", script]
    return run_command(argv, env, server.root_dir, log_path, "bare spark-submit")


def run_fresh(server: BenchServer, script: str, log_path: str, remote: str) -> float:
    """The script as a fresh Python process, a Spark Connect client of `remote` (SPARK_REMOTE)."""
    env = dict(os.environ)
    env.update({"SPARK_LOCAL_IP": HOST, "SPARK_REMOTE": remote})
    return run_command([sys.executable, script], env, server.root_dir, log_path, "fresh Connect script")


def run_command(argv: list[str], env: dict[str, str], cwd: str, log_path: str, what: str) -> float:
    """Seconds a command of PROGRAM takes, start to exit; it must succeed, print '1000' and
    leave no process behind."""
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, so a timeout can kill the JVM and Python driver too
        )  # fmt: skip
        try:
            returncode = process.wait(JOB_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise BenchError(f"{what} did not finish within {JOB_TIMEOUT:.0f}s") from None
        elapsed = time.perf_counter() - start
    # Zombies don't count: this container's pid 1 does not reap orphans, so the Python
    # driver's exited workers can stay <defunct> in the group.
    leftovers = [
        p.pid for p in psutil.process_iter(["status"])
        if p.info["status"] != psutil.STATUS_ZOMBIE and _pgid(p.pid) == process.pid
    ]  # fmt: skip
    if leftovers:
        os.killpg(process.pid, signal.SIGKILL)
        print(f"warning: {what} left processes {leftovers}; killed them", file=sys.stderr)
    with open(log_path, "rb") as f:
        output = f.read().decode("utf-8", errors="replace")
    if returncode != 0:
        raise BenchError(f"{what} exited with {returncode}:\n{output[-3000:]}")
    if "1000" not in output.splitlines():
        raise BenchError(f"{what} succeeded but printed no line '1000'")
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


def build_class_data(state_dir: str) -> ClassDataArchive:
    """The archive the server will find ready (same key: same Java, same Spark jars)."""
    archive = ClassDataArchive(state_dir, extra_java_options=SparkLogConfig(state_dir).java_options())
    start = time.perf_counter()
    archive.build_in_background()
    state = archive.wait(BUILD_TIMEOUT)
    if state != "ready":
        archive.stop()
        raise BenchError(f"class-data archive: {state}")
    print(f"class-data archive built in {time.perf_counter() - start:.1f}s: {archive.path} "
          f"({archive.path.stat().st_size / 1e6:.0f} MB)")  # fmt: skip
    return archive


def uses_class_data(server: BenchServer, job: dict) -> bool:
    try:
        with open(os.path.join(server.run_dir(job["id"], job.get("attempt") or 1), "command.json")) as f:
            return "-XX:SharedArchiveFile=" in f.read()
    except OSError:
        return False


def report(first: str, second: str, first_times: list[float], second_times: list[float], goal: float) -> None:
    print(f"load average {os.getloadavg()[0]:.2f} at the end (other CPU load skews both sides)")
    first_median = print_median(first, first_times)
    second_median = print_median(second, second_times)
    ratio = first_median / second_median
    print(f"difference    = {first_median - second_median:+.3f} s")
    print(f"ratio {first}/{second} = {ratio:.2f} (goal <= {goal:.2f}): {'PASS' if ratio <= goal else 'FAIL'}")


def print_median(name: str, times: list[float]) -> float:
    median = statistics.median(times)
    print(f"median {name:6s} = {median:.3f} s  (min {min(times):.3f}, max {max(times):.3f})")
    return median


def report_warm(warm_times: list[float], bare_times: list[float], fresh_times: list[float]) -> None:
    print(f"load average {os.getloadavg()[0]:.2f} at the end (other CPU load skews all sides)")
    warm = print_median("warm", warm_times)
    bare = print_median("bare", bare_times)
    fresh = print_median("fresh", fresh_times)
    vs_bare, vs_fresh = warm / bare, warm / fresh
    print(f"ratio warm/bare = {vs_bare:.3f}, bare is {1 / vs_bare:.1f}x warm "
          f"(goal <= {GOAL_WARM_VS_BARE:.3f}, {1 / GOAL_WARM_VS_BARE:.0f}x): "
          f"{'PASS' if vs_bare <= GOAL_WARM_VS_BARE else 'FAIL'}")  # fmt: skip
    print(f"ratio warm/fresh = {vs_fresh:.2f} (goal <= {GOAL_WARM_VS_FRESH:.2f}): "
          f"{'PASS' if vs_fresh <= GOAL_WARM_VS_FRESH else 'FAIL'}")  # fmt: skip


def wait_for_pool(server: BenchServer) -> None:
    """Until the default cluster's warm pool is full again: every worker ready, none starting
    (a worker starting after a warm job would load whatever is measured next)."""
    deadline = time.monotonic() + POOL_TIMEOUT
    while True:
        status, cluster = server.request("GET", f"api/v1/clusters/{DEFAULT_CLUSTER_ID}")
        connect = ((cluster or {}).get("connect") or {}) if status == 200 else {}
        if connect.get("warm_ready", 0) >= WARM_POOL_SIZE and connect.get("warm_starting", 0) == 0:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"the warm pool did not settle within {POOL_TIMEOUT:.0f}s: {status} {connect}")
        time.sleep(0.1)


def connect_endpoint(server: BenchServer) -> str:
    """SPARK_REMOTE for the default cluster's Connect server, with its token (never print it):
    port and token from its run folder, the port checked against what the API shows."""
    recorded = read_server_folder(os.path.join(server.state_dir, "connect", DEFAULT_CLUSTER_ID))
    if recorded is None or recorded.port is None or recorded.token is None:
        raise BenchError("the Connect server's run folder names no port or token")
    _, cluster = server.request("GET", f"api/v1/clusters/{DEFAULT_CLUSTER_ID}")
    address = ((cluster or {}).get("connect") or {}).get("address")
    if address != endpoint_url(recorded.port, None):
        raise BenchError(f"the API shows the Connect server at {address}, its run folder at port {recorded.port}")
    return endpoint_url(recorded.port, recorded.token)


class JobCommand:
    """The exact command and environment a job gets (dataharbour_ext.spark.submit), run
    directly in a temporary folder, without a server."""

    def __init__(self, tmp: str, class_data: bool):
        self.tmp = tmp
        state_dir = os.path.join(tmp, "state")
        self.script = os.path.join(tmp, "turnaround_job.py")
        with open(self.script, "w") as f:
            f.write(PROGRAM)
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        archive = build_class_data(state_dir) if class_data else None
        self.java_options = SparkLogConfig(state_dir).java_options() + (archive.java_options() if archive else [])

    def run(self, name: str, progress_interval: float = 0.5) -> float:
        run_dir = os.path.join(self.tmp, name)
        os.makedirs(run_dir)
        spec = SubmitSpec(
            master="local[*]", app_name=name, app_file=self.script, local_ip=HOST,
            signals_file=os.path.join(run_dir, "spark.json"), java_options=self.java_options,
            progress_interval=progress_interval,
        )  # fmt: skip
        env = dict(os.environ)
        env.update(build_environment_overlay(spec))
        return run_command(build_command(spec), env, self.tmp, os.path.join(run_dir, "output.log"), name)


def main_progress_cost(rounds: int, class_data: bool) -> None:
    """The job command with progress sampling vs without, no server."""
    with tempfile.TemporaryDirectory(prefix="dataharbour-bench-progress-") as tmp:
        command = JobCommand(tmp, class_data)

        def run_job(name: str, progress_interval: float) -> float:
            took = command.run(name, progress_interval)
            if progress_interval and not os.path.exists(os.path.join(tmp, name, "progress.json")):
                raise BenchError(f"{name}: no progress.json was written")
            return took

        print(f"program: spark.range(1000).count() on local[*]; {rounds} rounds, progress on then off")
        run_job("warm-on", 0.5), run_job("warm-off", 0.0)
        on_times, off_times = [], []
        for i in range(1, rounds + 1):
            on, off = run_job(f"on-{i}", 0.5), run_job(f"off-{i}", 0.0)
            on_times.append(on)
            off_times.append(off)
            print(f"round {i:2d}     progress on {on:7.3f}s   off {off:7.3f}s   on-off {on - off:+.3f}s")
    report("progress on", "off", on_times, off_times, 1.02)


def main_direct(rounds: int, class_data: bool) -> None:
    """Job command (dataharbour_ext.spark.submit) vs bare spark-submit, no server."""
    with tempfile.TemporaryDirectory(prefix="dataharbour-bench-direct-") as tmp:
        command = JobCommand(tmp, class_data)
        bare_env = dict(os.environ)
        bare_env.update({"SPARK_LOCAL_IP": HOST, "PYSPARK_PYTHON": sys.executable})
        bare_argv = [spark_submit(), "--master", "local[*]", command.script]
        bare_log = os.path.join(tmp, "bare.log")
        print(f"program: spark.range(1000).count() on local[*]; {rounds} rounds, job command then bare")
        print(f"job command JVM options: {' '.join(command.java_options)}")
        job_warm = command.run("run-0")
        bare_warm = run_command(bare_argv, bare_env, tmp, bare_log, "bare spark-submit")
        print(f"warm-up      job {job_warm:7.3f}s   bare {bare_warm:7.3f}s")
        job_times, bare_times = [], []
        for i in range(1, rounds + 1):
            job = command.run(f"run-{i}")
            bare = run_command(bare_argv, bare_env, tmp, bare_log, "bare spark-submit")
            job_times.append(job)
            bare_times.append(bare)
            print(f"round {i:2d}     job {job:7.3f}s   bare {bare:7.3f}s   job-bare {job - bare:+.3f}s")
        with open(os.path.join(tmp, f"run-{rounds}", "output.log"), errors="replace") as f:
            print(f"last job's output.log: {len(f.read().splitlines())} lines")
    report("job", "bare", job_times, bare_times, GOAL_WITH_CLASS_DATA if class_data else GOAL)


def main_warm(rounds: int) -> None:
    """Warm API job vs bare spark-submit vs a fresh Connect client process, one server."""
    with BenchServer(extra_args=["--DataHarbourApp.class_data_sharing=False",
                                 f"--DataHarbourApp.warm_pool_size={WARM_POOL_SIZE}"]) as server:
        script = os.path.join(server.root_dir, "turnaround_job.py")
        with open(script, "w") as f:
            f.write(PROGRAM)
        bare_log = os.path.join(server.tmp, "bare.log")
        fresh_log = os.path.join(server.tmp, "fresh.log")
        print(f"jupyter server {server.base_url} (pid {server.process.pid}), {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
        print(f"program: spark.range(1000).count(); {rounds} rounds: warm (API, connect mode), "
              "bare (spark-submit, local[*]), fresh (python3 script.py, SPARK_REMOTE)")  # fmt: skip

        cold, job = run_api(server, "bench-turnaround-cold", "connect", WARM_POLL_INTERVAL)
        print(f"cold start   warm {cold:7.3f}s ({server_side(job)}): starts the Connect server and the warm pool")
        remote = connect_endpoint(server)
        wait_for_pool(server)
        warm_warm, job = run_api(server, "bench-turnaround-warmup", "connect", WARM_POLL_INTERVAL)
        wait_for_pool(server)
        bare_warm = run_bare(server, script, bare_log)
        wait_for_pool(server)
        fresh_warm = run_fresh(server, script, fresh_log, remote)
        print(f"warm-up      warm {warm_warm:7.3f}s ({server_side(job)})   bare {bare_warm:7.3f}s   "
              f"fresh {fresh_warm:7.3f}s")  # fmt: skip

        warm_times, bare_times, fresh_times = [], [], []
        for i in range(1, rounds + 1):
            wait_for_pool(server)
            warm, job = run_api(server, f"bench-turnaround-warm-{i}", "connect", WARM_POLL_INTERVAL)
            wait_for_pool(server)
            bare = run_bare(server, script, bare_log)
            wait_for_pool(server)
            fresh = run_fresh(server, script, fresh_log, remote)
            warm_times.append(warm)
            bare_times.append(bare)
            fresh_times.append(fresh)
            print(f"round {i:2d}     warm {warm:7.3f}s ({server_side(job)})   bare {bare:7.3f}s   fresh {fresh:7.3f}s")

    report_warm(warm_times, bare_times, fresh_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each (default 5)")
    parser.add_argument("--direct", action="store_true", help="job command vs bare spark-submit, no server")
    parser.add_argument("--no-class-data", action="store_true", help="do not build the class-data archive first")
    parser.add_argument("--progress-cost", action="store_true", help="with --direct: progress sampling on vs off")
    parser.add_argument("--warm", action="store_true", help="warm API job vs bare vs fresh Connect script")
    options = parser.parse_args()
    if not 1 <= options.rounds <= 100:
        parser.error("--rounds must be between 1 and 100")
    if options.warm and (options.direct or options.progress_cost or options.no_class_data):
        parser.error("--warm takes only --rounds")
    if options.warm:
        main_warm(options.rounds)
        return
    if options.direct and options.progress_cost:
        main_progress_cost(options.rounds, not options.no_class_data)
        return
    if options.direct:
        main_direct(options.rounds, not options.no_class_data)
        return

    server = BenchServer()
    if not options.no_class_data:
        try:
            build_class_data(os.path.join(server.data_dir, "dataharbour"))
        except BaseException:
            server.stop()
            raise
    with server:
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
        print(f"api jobs start with the class-data archive: {'yes' if uses_class_data(server, job) else 'no'}")

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

    report("api", "bare", api_times, bare_times, GOAL if options.no_class_data else GOAL_WITH_CLASS_DATA)


if __name__ == "__main__":
    run_bench(main)
