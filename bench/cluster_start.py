"""Standalone cluster start through the API vs the same daemons started by hand.

API: from POST /api/v1/clusters/ (1 master, 2 workers) until GET /api/v1/clusters/{id}
says `running` (polled every 0.05 s); then the cluster is deleted (untimed).
By hand: `spark-class ...Master` on free loopback ports, poll its JSON status until it is
ALIVE, start both workers with `spark-class ...Worker`, poll until both are alive (every
0.05 s), the same commands and JVM options the server uses (its quiet log config, no
class-data archive on either side); then they are killed (untimed).

Alternating rounds after one untimed warm-up of each. Goal: median(api) / median(by hand) <= 1.1.

    python3 bench/cluster_start.py [--rounds N]
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import BenchError, BenchServer, run_bench  # noqa: E402

from dataharbour_ext.spark import standalone  # noqa: E402

GOAL = 1.1
POLL_INTERVAL = 0.05
TIMEOUT = 180.0
WORKERS, CORES, MEMORY_MB = 2, 1, 1024


def through_the_api(server: BenchServer) -> float:
    body = {"name": "bench", "kind": "standalone", "workers": WORKERS, "cores_per_worker": CORES,
            "memory_per_worker": f"{MEMORY_MB}m"}
    started = time.perf_counter()
    status, cluster = server.request("POST", "api/v1/clusters/", body)
    if status != 202:
        raise BenchError(f"POST api/v1/clusters/ answered {status}: {cluster}")
    deadline = time.monotonic() + TIMEOUT
    while True:
        status, cluster = server.request("GET", f"api/v1/clusters/{cluster['id']}")
        if cluster["state"] == "running":
            elapsed = time.perf_counter() - started
            break
        if cluster["state"] != "starting" or time.monotonic() > deadline:
            raise BenchError(f"cluster {cluster['id']} is {cluster['state']}: {cluster['reason']}")
        time.sleep(POLL_INTERVAL)
    server.request("DELETE", f"api/v1/clusters/{cluster['id']}")
    while server.request("GET", f"api/v1/clusters/{cluster['id']}")[0] != 404:
        if time.monotonic() > deadline + 60:
            raise BenchError(f"cluster {cluster['id']} was not deleted")
        time.sleep(0.2)
    return elapsed


def _status(ui_url: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{ui_url}/json/", timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def _wait(ui_url: str, ready, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        status = _status(ui_url)
        if status is not None and ready(status):
            return
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            raise BenchError("the hand-started cluster did not come up")
        time.sleep(POLL_INTERVAL)


def by_hand(state_dir: str) -> float:
    """The daemons as the server starts them, without the server: same commands and JVM options."""
    env = {**os.environ, **standalone.daemon_environment(standalone.DaemonLogConfig(state_dir).java_options())}
    with tempfile.TemporaryDirectory(prefix="dataharbour-bench-cluster-") as directory:
        processes: list[subprocess.Popen] = []

        def start(name: str, argv: list[str]) -> None:
            with open(os.path.join(directory, f"{name}.log"), "ab") as log:
                processes.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, start_new_session=True))

        port, ui_port = standalone.free_port(), standalone.free_port()
        ui_url = standalone.master_ui_url(ui_port)
        started = time.perf_counter()
        try:
            start("master", standalone.master_command(port, ui_port))
            _wait(ui_url, lambda status: status.get("status") == "ALIVE", processes)
            for n in range(1, WORKERS + 1):
                start(f"worker-{n}", standalone.worker_command(standalone.master_url(port), CORES, MEMORY_MB,
                                                               os.path.join(directory, f"work-{n}")))
            _wait(ui_url, lambda status: status.get("aliveworkers", 0) >= WORKERS, processes)
            return time.perf_counter() - started
        finally:
            for process in processes:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            for process in processes:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-arg", action="append", default=[], help="an extra `jupyter server` argument")
    args = parser.parse_args()
    with BenchServer(extra_args=["--DataHarbourApp.class_data_sharing=False", *args.server_arg]) as server:
        print("warm-up (untimed): one of each", flush=True)
        through_the_api(server)
        by_hand(server.state_dir)
        api, hand = [], []
        for round_ in range(1, args.rounds + 1):
            pair = [("api", lambda: through_the_api(server)), ("by hand", lambda: by_hand(server.state_dir))]
            for name, measure in pair if round_ % 2 else reversed(pair):
                seconds = measure()
                (api if name == "api" else hand).append(seconds)
                print(f"round {round_}: {name:8s} {seconds:6.2f} s", flush=True)
    ratio = statistics.median(api) / statistics.median(hand)
    print(f"\n1 master + {WORKERS} workers ({CORES} core, {MEMORY_MB} MB each), {args.rounds} rounds")
    print(f"through the API: median {statistics.median(api):.2f} s  {[round(s, 2) for s in api]}")
    print(f"by hand:         median {statistics.median(hand):.2f} s  {[round(s, 2) for s in hand]}")
    print(f"ratio api / by hand: {ratio:.3f} (goal <= {GOAL}) -> {'met' if ratio <= GOAL else 'NOT met'}")


if __name__ == "__main__":
    run_bench(main)
