"""Bench-only Jupyter server extension: measures the server's own event-loop lag.

Put bench/ on the server's PYTHONPATH and enable it next to dataharbour_ext:

    --ServerApp.jpserver_extensions={"dataharbour_ext":True,"loop_probe":True}

A ticker task sleeps TICK seconds again and again on the server's event loop and records
how late each wake-up is (the overshoot beyond TICK): anything that holds the loop (CPU
work in a handler, a blocking call, a long GIL hold by another thread) shows up as lag.

GET /loop-lag (token auth like any Jupyter API) returns the worst overshoot since the
previous call, in ms, with a few percentiles of the ticks, and starts a new window.
"""

import asyncio
import collections
import json
import os
import sys
import threading
import time
import traceback

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import IOLoop

TICK = 0.005
STALL = 0.030  # the watchdog samples the loop thread's stack while a tick is this late


class _Probe:
    def __init__(self) -> None:
        self.reset()
        self.task: asyncio.Task | None = None

    def reset(self) -> None:
        self.window_start = time.perf_counter()
        self.overshoots: list[float] = []
        self.worst = 0.0
        self.worst_at = 0.0
        self.stalls: collections.Counter = collections.Counter()

    async def run(self) -> None:
        self.loop_thread = threading.get_ident()
        self.last_tick = time.perf_counter()
        threading.Thread(target=self._watchdog, name="loop-probe-watchdog", daemon=True).start()
        while True:
            start = time.perf_counter()
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            self.last_tick = now
            overshoot = max(0.0, now - start - TICK)
            self.overshoots.append(overshoot)
            if overshoot > self.worst:
                self.worst = overshoot
                self.worst_at = now - self.window_start

    def _watchdog(self) -> None:
        """Sample what the loop thread runs while the ticker is late (~every 10 ms of a stall)."""
        while True:
            time.sleep(0.010)
            if time.perf_counter() - self.last_tick < TICK + STALL:
                continue
            all_frames = sys._current_frames()
            frame = all_frames.get(self.loop_thread)
            if frame is None:
                continue
            if os.environ.get("LOOP_PROBE_ALL_THREADS"):
                names = {t.ident: t.name for t in threading.enumerate()}
                for ident, other in all_frames.items():
                    if ident in (self.loop_thread, threading.get_ident()):
                        continue
                    top = traceback.extract_stack(other)[-3:]
                    self.stalls["   other " + names.get(ident, "?") + ": " + " <- ".join(
                        f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in reversed(top))] += 1
            frames = traceback.extract_stack(frame)
            # The innermost frames of the project, Tornado or pydantic: where the time goes.
            picked = [f for f in frames if "asyncio" not in f.filename][-5:]
            key = " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in reversed(picked))
            self.stalls[key] += 1

    def snapshot(self) -> dict:
        ordered = sorted(self.overshoots)

        def pct(p: float) -> float:
            if not ordered:
                return 0.0
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

        result = {
            "max_ms": self.worst * 1000,
            "max_at_s": self.worst_at,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "ticks": len(ordered),
            "over_20ms": sum(1 for o in ordered if o > 0.020),
            "over_50ms": sum(1 for o in ordered if o > 0.050),
            "window_s": time.perf_counter() - self.window_start,
            "stalls": self.stalls.most_common(4),
        }
        self.reset()
        return result


PROBE = _Probe()


class LoopLagHandler(APIHandler):
    auth_resource = "loop_probe"

    @web.authenticated
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(PROBE.snapshot()))


def _jupyter_server_extension_points():
    return [{"module": "loop_probe"}]


def _load_jupyter_server_extension(serverapp) -> None:
    pattern = url_path_join(serverapp.base_url, "loop-lag")
    serverapp.web_app.add_handlers(".*$", [(pattern, LoopLagHandler)])

    def start() -> None:
        PROBE.task = asyncio.get_running_loop().create_task(PROBE.run())

    # Extensions load before the loop runs; start the ticker on it once it does.
    IOLoop.current().add_callback(start)
    serverapp.log.info("loop_probe: ticking every %.0f ms, GET %s", TICK * 1000, pattern)
