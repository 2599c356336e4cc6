"""A cell executed through the API vs the same cell sent straight to a kernel, same run.

`POST /api/v1/notebooks/{id}/cells/{cell_id}/execute` of a `1+1` cell (the notebook made with
`POST /api/v1/notebooks/`, the cell with `POST /api/v1/notebooks/{id}/cells`) against a direct
jupyter_client execute of `1+1` on a kernel of the same kind (python3) that this script starts
with the server's environment: send execute_request, wait for the execute reply and the
kernel's idle status (what a client needs to have all outputs). One client, requests one after
the other, alternating the two in rounds after an untimed warm-up (the API's first execute
starts the notebook's session and kernel).

Goal: median(API) <= 1.2 x median(direct) + 5 ms. The API does more than the kernel round
trip by design: it reads the notebook, finds the cell's session, and stores the outputs and
execution count in the file (read again first, then saved through the contents manager).

    python3 bench/cell_execute.py [--requests N] [--rounds R] [--warmup N]
"""

import argparse
import math
import os
import statistics
import sys
import time

import httpx
from jupyter_client.manager import KernelManager

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import BenchError, BenchServer, run_bench  # noqa: E402

GOAL_RATIO = 1.2
GOAL_EXTRA_MS = 5.0
KERNEL_NAME = "python3"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


class ApiCell:
    """A notebook with one `1+1` cell, made through the API, executed through it."""

    def __init__(self, server: BenchServer):
        self.client = httpx.Client(base_url=server.base_url, headers={"Authorization": f"token {server.token}"},
                                   timeout=120)  # fmt: skip
        notebook = self._post("api/v1/notebooks/", {"name": "bench-cell", "kernel_name": KERNEL_NAME})
        cell = self._post(f"api/v1/notebooks/{notebook['id']}/cells", {"cell_type": "code", "source": "1+1"})
        self.path = f"api/v1/notebooks/{notebook['id']}/cells/{cell['id']}/execute"

    def _post(self, path: str, body: dict) -> dict:
        response = self.client.post(path, json=body)
        if response.status_code not in (200, 201):
            raise BenchError(f"POST {path} answered {response.status_code}: {response.text}")
        return response.json()

    def execute(self) -> float:
        started = time.perf_counter()
        response = self.client.post(self.path, json={"timeout": 30})
        elapsed = time.perf_counter() - started
        body = response.json() if response.status_code == 200 else None
        if not body or body["status"] != "ok" or body["outputs"][0].get("data") != {"text/plain": "2"}:
            raise BenchError(f"POST {self.path} answered {response.status_code}: {response.text}")
        return elapsed

    def close(self) -> None:
        self.client.close()


class DirectKernel:
    """A kernel of the same kind, started here, and a client of it connected once."""

    def __init__(self, env: dict[str, str]):
        self.manager = KernelManager(kernel_name=KERNEL_NAME)
        self.manager.start_kernel(env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def execute(self) -> float:
        started = time.perf_counter()
        msg_id = self.client.execute("1+1")
        result, idle = None, False
        while not idle:
            message = self.client.get_iopub_msg(timeout=30)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "execute_result":
                result = message["content"]["data"]
            idle = message["msg_type"] == "status" and message["content"]["execution_state"] == "idle"
        while (reply := self.client.get_shell_msg(timeout=30))["parent_header"].get("msg_id") != msg_id:
            pass
        elapsed = time.perf_counter() - started
        if reply["content"]["status"] != "ok" or result != {"text/plain": "2"}:
            raise BenchError(f"direct execute: {reply['content']}, result {result}")
        return elapsed

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def summary(label: str, seconds: list[float]) -> str:
    return (f"{label:7s} median {statistics.median(seconds) * 1000:6.2f} ms  p95 {percentile(seconds, 0.95) * 1000:6.2f} ms  "
            f"min {min(seconds) * 1000:6.2f} ms  n={len(seconds)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100, help="executes per side per round (default 100)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (default 4)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed executes per side first (default 20)")
    options = parser.parse_args()
    if options.requests < 1 or options.rounds < 1 or options.warmup < 1:
        parser.error("need --requests, --rounds and --warmup >= 1")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    # File ids are how the notebooks API names notebooks.
    with BenchServer(extensions={"jupyter_server_fileid": True}) as server:
        api = ApiCell(server)
        direct = DirectKernel(server.env())
        try:
            for _ in range(options.warmup):
                api.execute()
                direct.execute()
            times: dict[str, list[float]] = {"api": [], "direct": []}
            sides = {"api": api.execute, "direct": direct.execute}
            for r in range(options.rounds):
                for label in ("api", "direct") if r % 2 == 0 else ("direct", "api"):
                    round_times = [sides[label]() for _ in range(options.requests)]
                    times[label] += round_times
                    print(f"  round {r + 1} {summary(label, round_times)}")
        finally:
            api.close()
            direct.close()
    api_median, direct_median = statistics.median(times["api"]), statistics.median(times["direct"])
    goal = GOAL_RATIO * direct_median + GOAL_EXTRA_MS / 1000
    print(summary("api", times["api"]))
    print(summary("direct", times["direct"]))
    print(f"ratio api/direct (medians) = {api_median / direct_median:.2f}; goal median(api) <= {GOAL_RATIO} x "
          f"direct + {GOAL_EXTRA_MS:g} ms = {goal * 1000:.2f} ms: {'MET' if api_median <= goal else 'NOT MET'} "
          f"(api is {(api_median - direct_median) * 1000:.2f} ms over direct)")  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    run_bench(main)
