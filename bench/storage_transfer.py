"""An object moved through the storage API vs straight to the S3 server, same run.

Upload (`PUT /api/v1/storage/objects/{bucket}/{key}`, the body streamed from memory in 1 MiB
chunks) and download (`GET` of the same path, read in 1 MiB chunks) of an object of --mb MiB
through a real `jupyter server` with DataHarbour, against the same object put and got with
the minio SDK straight to the same S3 server (SeaweedFS's `weed mini`, started here on
loopback ports). One client, transfers one after the other, alternating the two paths in
rounds after an untimed warm-up. Also the server's peak resident memory over its start: the
API streams, so it must not grow by the object's size.

Goal: the API moves data at least half as fast as the SDK does straight to S3 (both ways),
and the server's memory grows by less than half the object's size.

    python3 bench/storage_transfer.py [--mb N] [--rounds R]
"""

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import urllib3

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))  # the SeaweedFS runner the tests use
from seaweedfs import SeaweedFS  # noqa: E402
from server import BenchError, BenchServer, run_bench  # noqa: E402

BUCKET = "bench-transfer"
CHUNK = 1024 * 1024
GOAL_SPEED_SHARE = 0.5
GOAL_MEMORY_SHARE = 0.5


def chunks(data: bytes):
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        yield bytes(view[start:start + CHUNK])


class ApiPath:
    """Through the API, with urllib3 as the minio SDK uses it: the two paths differ only in the hop."""

    def __init__(self, server: BenchServer):
        self.base_url = server.base_url
        self.headers = {"Authorization": f"token {server.token}"}
        self.http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=10, read=300), retries=False)

    def upload(self, key: str, data: bytes) -> float:
        started = time.perf_counter()
        response = self.http.request("PUT", f"{self.base_url}api/v1/storage/objects/{BUCKET}/{key}",
                                     body=chunks(data), headers={**self.headers, "Content-Length": str(len(data))})
        elapsed = time.perf_counter() - started
        if response.status not in (200, 201):
            raise BenchError(f"PUT answered {response.status}: {response.data[:300]!r}")
        return elapsed

    def download(self, key: str, size: int) -> float:
        started = time.perf_counter()
        got = 0
        response = self.http.request("GET", f"{self.base_url}api/v1/storage/objects/{BUCKET}/{key}",
                                     headers=self.headers, preload_content=False)
        try:
            if response.status != 200:
                raise BenchError(f"GET answered {response.status}")
            for chunk in response.stream(CHUNK):
                got += len(chunk)
        finally:
            response.release_conn()
        elapsed = time.perf_counter() - started
        if got != size:
            raise BenchError(f"GET gave {got} bytes of {size}")
        return elapsed


class DirectPath:
    def __init__(self, weed: SeaweedFS):
        self.client = weed.client()

    def upload(self, key: str, data: bytes) -> float:
        started = time.perf_counter()
        self.client.put_object(BUCKET, key, io.BytesIO(data), len(data))
        return time.perf_counter() - started

    def download(self, key: str, size: int) -> float:
        started = time.perf_counter()
        response = self.client.get_object(BUCKET, key)
        got = 0
        try:
            for chunk in response.stream(CHUNK):
                got += len(chunk)
        finally:
            response.close()
            response.release_conn()
        elapsed = time.perf_counter() - started
        if got != size:
            raise BenchError(f"get_object gave {got} bytes of {size}")
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    data = os.urandom(options.mb * CHUNK)
    with tempfile.TemporaryDirectory(prefix="dataharbour-bench-s3-") as directory:
        weed = SeaweedFS(Path(directory))
        weed.start()
        try:
            weed.client().make_bucket(BUCKET)
            env = {"MINIO_ENDPOINT": f"http://{weed.endpoint}", "MINIO_ACCESS_KEY": weed.access_key,
                   "MINIO_SECRET_KEY": weed.secret_key, "MINIO_BUCKET_NAME": BUCKET}
            with BenchServer(extra_env=env) as server:
                measure(server, weed, data, options.rounds)
        finally:
            weed.stop()


def measure(server: BenchServer, weed: SeaweedFS, data: bytes, rounds: int) -> None:
    api, direct = ApiPath(server), DirectPath(weed)
    process = psutil.Process(server.process.pid)
    api.upload("warm-up", data[:CHUNK])
    api.download("warm-up", CHUNK)
    rss_before = process.memory_info().rss
    peak = rss_before
    times = {("api", "up"): [], ("api", "down"): [], ("direct", "up"): [], ("direct", "down"): []}
    for round_ in range(rounds):
        for name, path in (("api", api), ("direct", direct)) if round_ % 2 == 0 else (("direct", direct), ("api", api)):
            key = f"{name}-{round_}.bin"
            times[(name, "up")].append(path.upload(key, data))
            peak = max(peak, process.memory_info().rss)
            times[(name, "down")].append(path.download(key, len(data)))
            peak = max(peak, process.memory_info().rss)
    size_mb = len(data) / CHUNK
    print(f"object {size_mb:.0f} MiB, {rounds} rounds; S3: SeaweedFS on loopback")
    speeds = {}
    for (name, way), values in times.items():
        speeds[(name, way)] = size_mb / statistics.median(values)
        print(f"{name:6} {way:4}  median {statistics.median(values) * 1000:8.1f} ms  "
              f"{speeds[(name, way)]:7.1f} MiB/s  n={len(values)}")
    growth = (peak - rss_before) / CHUNK
    verdicts = []
    for way in ("up", "down"):
        share = speeds[("api", way)] / speeds[("direct", way)]
        met = share >= GOAL_SPEED_SHARE
        verdicts.append(met)
        print(f"{way:4} ratio api/direct (speed) = {share:.2f}; goal >= {GOAL_SPEED_SHARE}: {'MET' if met else 'NOT MET'}")
    met = growth < GOAL_MEMORY_SHARE * size_mb
    verdicts.append(met)
    print(f"server memory grew {growth:.1f} MiB over its start (peak RSS {peak / CHUNK:.0f} MiB) for a "
          f"{size_mb:.0f} MiB object; goal < {GOAL_MEMORY_SHARE * size_mb:.0f} MiB: {'MET' if met else 'NOT MET'}")
    print("all goals MET" if all(verdicts) else "some goals NOT MET")


if __name__ == "__main__":
    run_bench(main)
