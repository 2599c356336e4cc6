"""What the metrics sampler costs: the server's CPU at 1 Hz sampling vs the same server with
sampling off, as a share of one core.

Two servers, identical but for `--DataHarbourApp.metrics_interval` (1 vs 0), run side by side
over the same window, so whatever else the machine does weighs on both alike. Each has
--clients (1) live-stream clients connected with the default topics (`jobs`, `metrics`),
as an open JupyterLab sidebar would be: the sampled server also pays for sending every
sample. The figure is the difference of the two servers' CPU time (user + system, the
server process itself) over the window, divided by the window.

Prints both servers' CPU seconds, the samples the sampled server stored and sent in the
window, and the sampler's share of one core. Goal: <= 1%.

    python3 bench/sampler.py [--seconds S] [--interval S] [--clients N] [--settle S]
"""

import argparse
import asyncio
import json
import os
import sys
import time

import psutil
import tornado.httpclient
import tornado.websocket

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
from server import BenchError, BenchServer, cpu_seconds, run_bench  # noqa: E402

GOAL_SHARE_OF_CORE = 0.01


async def listen(server: BenchServer, client_id: str, seconds: float) -> int:
    """A live-stream client that reads for `seconds`; returns how many `metrics` messages it got."""
    url = f"ws://127.0.0.1:{server.port}/api/v1/ws/{client_id}"
    request = tornado.httpclient.HTTPRequest(url, headers={"Authorization": f"token {server.token}"},
                                             connect_timeout=60, request_timeout=60)
    connection = await tornado.websocket.websocket_connect(request)
    metrics = 0
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                text = await asyncio.wait_for(connection.read_message(), left)
            except asyncio.TimeoutError:
                break
            if text is None:
                raise BenchError(f"server on port {server.port} closed the live stream")
            metrics += json.loads(text)["type"] == "metrics"
    finally:
        connection.close()
    return metrics


async def measure(servers: dict[str, BenchServer], seconds: float, clients: int) -> dict[str, dict]:
    processes = {name: psutil.Process(server.process.pid) for name, server in servers.items()}
    listeners = {name: [asyncio.create_task(listen(server, f"bench-{name}-{i}", seconds + 1.0))
                        for i in range(clients)] for name, server in servers.items()}
    await asyncio.sleep(0.5)  # the clients are connected before the window opens
    opened = time.time()
    started = {name: (time.monotonic(), cpu_seconds(process)) for name, process in processes.items()}
    await asyncio.sleep(seconds)
    ended = {name: (time.monotonic(), cpu_seconds(process)) for name, process in processes.items()}
    closed = time.time()
    results = {}
    for name in servers:
        received = await asyncio.gather(*listeners[name])
        wall = ended[name][0] - started[name][0]
        results[name] = {"cpu": ended[name][1] - started[name][1], "wall": wall, "metrics_messages": received,
                         "window": (opened, closed)}
    return results


def stored_samples(server: BenchServer, window: tuple[float, float]) -> int:
    """Samples the server stored within `window` (epoch seconds), from its raw history."""
    status, history = server.request("GET", "api/v1/monitoring/metrics/history?minutes=60&step=1")
    if status != 200:
        raise BenchError(f"GET metrics/history answered {status}: {history}")
    return sum(window[0] <= stamp <= window[1] for stamp in history["timestamps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window (60)")
    parser.add_argument("--interval", type=float, default=1.0, help="sampling interval of the sampled server (1)")
    parser.add_argument("--clients", type=int, default=1, help="live-stream clients per server (1)")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds after start-up before the window (start-up work is not the sampler's)")
    args = parser.parse_args()

    common = ["--DataHarbourApp.class_data_sharing=False"]
    with BenchServer(extra_args=[*common, f"--DataHarbourApp.metrics_interval={args.interval}"]) as sampled, \
            BenchServer(extra_args=[*common, "--DataHarbourApp.metrics_interval=0"]) as off:
        servers = {"sampled": sampled, "off": off}
        time.sleep(args.settle)
        results = asyncio.run(measure(servers, args.seconds, args.clients))
        stored = stored_samples(sampled, results["sampled"]["window"])
        if stored_samples(off, (0, time.time())) != 0:
            raise BenchError("the server with sampling off stored samples")

    on, idle = results["sampled"], results["off"]
    share = (on["cpu"] - idle["cpu"]) / on["wall"]
    print(f"window {on['wall']:.1f} s, sampling every {args.interval:g} s, {args.clients} live-stream client(s) each")
    print(f"  server with sampling on : {on['cpu']:.3f} CPU s ({on['cpu'] / on['wall']:.2%} of one core); "
          f"{stored} samples stored, metrics messages per client: {on['metrics_messages']}")
    print(f"  server with sampling off: {idle['cpu']:.3f} CPU s ({idle['cpu'] / idle['wall']:.2%} of one core); "
          f"metrics messages per client: {idle['metrics_messages']}")
    per_sample_ms = 1000 * (on["cpu"] - idle["cpu"]) / stored if stored else float("nan")
    print(f"sampler cost: {share:.3%} of one core ({per_sample_ms:.2f} ms CPU per sample); "
          f"goal <= {GOAL_SHARE_OF_CORE:.0%}: {'met' if share <= GOAL_SHARE_OF_CORE else 'NOT met'}")


if __name__ == "__main__":
    run_bench(main)
