"""System metrics: the latest sample, the `metrics` stream messages, the stored history (raw and
downsampled, on SQLite and PostgreSQL, across a server restart, pruned by retention) and the
answers to bad history queries. Everything measured on the real machine, through real servers."""

import asyncio
import json
import logging
import socket
import time
from datetime import datetime, timedelta, timezone

import psutil
import pytest
from server_process import ServerProcess
from traitlets import TraitError

from dataharbour_ext.app import DataHarbourApp
from dataharbour_ext.json_body import model_json
from dataharbour_ext.models import MetricsHistoryQuery, MetricsSample
from dataharbour_ext.services.metrics_history import MetricsHistoryView
from dataharbour_ext.store import JobStore
from dataharbour_ext.store.metrics_store import SERIES, MetricsStore

GATED = "import os, time\nwhile not os.path.exists('{gate}'):\n    time.sleep(0.05)\n"
FAST = {"metrics_interval": 0.2}
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


async def _until(condition, timeout: float = 60.0, what: str = "condition"):
    """Poll an async `condition` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} not met within {timeout}s"
        await asyncio.sleep(0.05)


def _assert_sane(sample: dict) -> None:
    MetricsSample.model_validate(sample)
    cpu, memory, swap, disk = sample["cpu"], sample["memory"], sample["swap"], sample["disk"]
    assert sample["host"] == socket.gethostname()
    taken = datetime.fromisoformat(sample["timestamp"])
    assert taken.tzinfo is not None and abs(datetime.now(timezone.utc) - taken) < timedelta(minutes=5)
    assert len(cpu["per_core"]) == cpu["count"] == psutil.cpu_count()
    for percent in (cpu["percent"], *cpu["per_core"], memory["percent"], swap["percent"], disk["percent"]):
        assert 0 <= percent <= 100
    assert min(cpu["load_1"], cpu["load_5"], cpu["load_15"]) >= 0
    assert memory["total"] > 0 and 0 < memory["used"] <= memory["total"] and 0 < memory["available"] <= memory["total"]
    assert swap["total"] >= 0 and 0 <= swap["used"] <= swap["total"]
    assert disk["total"] > 0 and 0 < disk["used"] <= disk["total"]
    assert disk["read_bytes_per_sec"] >= 0 and disk["write_bytes_per_sec"] >= 0
    assert sample["network"]["rx_bytes_per_sec"] >= 0 and sample["network"]["tx_bytes_per_sec"] >= 0
    assert sample["processes"] >= 1


def _assert_history_shape(history: dict, *, downsampled: bool, step: float) -> None:
    assert history["downsampled"] is downsampled and history["step"] == step
    assert set(history["series"]) == set(SERIES)
    stamps = history["timestamps"]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), "ascending, one point per time"
    for name, points in history["series"].items():
        assert set(points) == ({"min", "avg", "max"} if downsampled else {"avg"}), name
        for values in points.values():
            assert len(values) == len(stamps), name
    if downsampled:  # each point at its step's middle, the last at most at the newest sample
        assert all((stamp - step / 2) % step == 0 for stamp in stamps[:-1]), "points sit mid-step"
        assert not stamps or stamps[-1] % step <= step / 2, "the last point in its step, at most at its middle"
        for name, points in history["series"].items():
            for low, mean, high in zip(points["min"], points["avg"], points["max"], strict=True):
                assert (low, mean, high) == (None, None, None) or low <= mean <= high, name


# ---- the latest sample ---------------------------------------------------------------------


@pytest.mark.parametrize("dataharbour_config", [{**FAST, "max_concurrent_jobs": 1}])
async def test_the_latest_sample_measures_the_machine_kernels_sessions_and_jobs(api, extension, jp_fetch,
                                                                               jp_root_dir):
    status, sample = await api.call("GET", "monitoring/metrics")
    assert status == 200
    _assert_sane(sample)
    assert sample["jupyter"] == {"kernels": 0, "sessions": 0} and sample["jobs"] == {"running": 0, "queued": 0}

    response = await jp_fetch("api", "sessions", method="POST", body=json.dumps(
        {"path": "watched.ipynb", "name": "watched.ipynb", "type": "notebook", "kernel": {"name": "python3"}}))
    session = json.loads(response.body)
    first = await api.submit(name="holds the slot", code=GATED.format(gate="first.go"))
    second = await api.submit(name="waits", code=GATED.format(gate="second.go"))
    await api.wait(first["id"], states=("starting", "running"))

    async def busy_sample():
        _, now = await api.call("GET", "monitoring/metrics")
        return now if (now["jupyter"], now["jobs"]) == ({"kernels": 1, "sessions": 1},
                                                        {"running": 1, "queued": 1}) else None

    _assert_sane(await _until(busy_sample, what="a sample with the kernel, the session and both jobs"))
    # Stopped while it still starts, a kernel prints a KeyboardInterrupt: let it answer first.
    client = extension.serverapp.kernel_manager.get_kernel(session["kernel"]["id"]).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
    finally:
        client.stop_channels()
    await jp_fetch("api", "sessions", session["id"], method="DELETE")
    (jp_root_dir / "first.go").touch()
    (jp_root_dir / "second.go").touch()
    for job in (first, second):
        assert (await api.wait(job["id"]))["state"] == "succeeded"


async def test_with_sampling_off_a_sample_is_taken_when_asked_and_nothing_is_stored(api, extension):
    assert extension.metrics_interval == 0  # tests/conftest.py's default
    status, sample = await api.call("GET", "monitoring/metrics")
    assert status == 200
    _assert_sane(sample)
    assert await extension.metrics_store.count() == 0
    status, history = await api.call("GET", "monitoring/metrics/history", params={"minutes": 5})
    assert status == 200 and history["timestamps"] == [] and history["interval"] == 0


@pytest.mark.parametrize("dataharbour_config", [FAST])
async def test_a_failing_tick_is_logged_and_sampling_goes_on(api, extension, monkeypatch):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("dataharbour_ext.metrics").addHandler(handler)
    real_add, failures = extension.metrics_store.add, []

    async def failing_add(values):
        if len(failures) < 3:
            failures.append(values["taken_at_ms"])
            raise OSError("disk full")
        return await real_add(values)

    try:
        monkeypatch.setattr(extension.metrics_store, "add", failing_add)
        await _until(lambda: _stored_after(extension, failures), what="samples stored after three failed writes")
    finally:
        logging.getLogger("dataharbour_ext.metrics").removeHandler(handler)
    logged = [record for record in records if record.levelno == logging.ERROR]
    assert len(logged) == 1, "one report while failing, not one per tick"
    assert "metrics sample failed" in logged[0].getMessage() and "disk full" in str(logged[0].exc_info[1])


async def _stored_after(extension, failures: list[int]) -> bool:
    if len(failures) < 3:
        return False
    status = await extension.metrics_store.history(failures[-1] + 1, None)
    return len(status.timestamps) >= 2


@pytest.mark.parametrize("interval", [-1, 0.05])
def test_a_sampling_interval_is_0_or_at_least_a_tenth_of_a_second(interval):
    with pytest.raises(TraitError, match="metrics_interval"):
        DataHarbourApp(metrics_interval=interval)


# ---- the live stream -----------------------------------------------------------------------


@pytest.mark.parametrize("dataharbour_config", [FAST])
async def test_each_sample_is_a_metrics_message_for_a_subscribed_client(jp_ws_fetch, api, extension):
    connection = await jp_ws_fetch("api", "v1", "ws", "metrics-watcher")
    try:
        async def receive(timeout=30.0):
            return json.loads(await asyncio.wait_for(connection.read_message(), timeout))

        assert (await receive())["type"] == "welcome"
        await connection.write_message(json.dumps({"type": "unsubscribe", "topics": ["jobs", "metrics"]}))
        await connection.write_message(json.dumps({"type": "subscribe", "topics": ["metrics"]}))
        samples = []
        while len(samples) < 2:
            message = await receive()
            if message["type"] == "metrics":
                samples.append(message["data"])
            else:
                assert message["type"] in ("unsubscribed", "subscribed"), message
        for sample in samples:
            _assert_sane(sample)
        assert samples[0]["timestamp"] < samples[1]["timestamp"]
        latest = extension.metrics.latest.model_dump(mode="json")
        assert latest["timestamp"] >= samples[1]["timestamp"]
    finally:
        connection.close()


# ---- history -------------------------------------------------------------------------------


@pytest.mark.parametrize("dataharbour_config", [FAST])
async def test_history_is_downsampled_in_steps_of_min_avg_max(api, extension):
    await _until(lambda: _stored_at_least(extension, 15), what="15 stored samples")
    status, history = await api.call("GET", "monitoring/metrics/history", params={"minutes": 1, "step": 1})
    assert status == 200
    assert (history["minutes"], history["interval"], history["host"]) == (1, 0.2, socket.gethostname())
    _assert_history_shape(history, downsampled=True, step=1)
    assert len(history["timestamps"]) >= 3
    assert history["timestamps"][-1] <= extension.metrics.latest.timestamp.timestamp(), "never past the data"
    assert max(history["series"]["cpu_percent"]["max"]) <= 100
    assert all(total > 0 for total in history["series"]["memory_total"]["avg"])
    # Without a step, a short range gets steps of a second too (at most 360 points).
    status, default = await api.call("GET", "monitoring/metrics/history", params={"minutes": 1})
    assert status == 200 and default["step"] == 1 and default["downsampled"] is True
    status, coarse = await api.call("GET", "monitoring/metrics/history", params={"step": 20})
    assert status == 200 and coarse["minutes"] == 60
    _assert_history_shape(coarse, downsampled=True, step=20)


@pytest.mark.parametrize("dataharbour_config", [{"metrics_interval": 1.0}])
async def test_history_at_the_sampling_interval_is_the_samples_themselves(api, extension):
    await _until(lambda: _stored_at_least(extension, 3), what="3 stored samples")
    latest = extension.metrics.latest
    latest_at = int(latest.timestamp.timestamp() * 1000) / 1000

    async def history_with_latest():
        status, history = await api.call("GET", "monitoring/metrics/history", params={"minutes": 1, "step": 1})
        assert status == 200
        return history if latest_at in history["timestamps"] else None

    history = await _until(history_with_latest, what="the latest sample in the history")
    _assert_history_shape(history, downsampled=False, step=1.0)
    assert len(history["timestamps"]) >= 3
    # The latest sample is one of the points, with its own values.
    index = history["timestamps"].index(latest_at)
    assert history["series"]["cpu_percent"]["avg"][index] == latest.cpu.percent
    assert history["series"]["memory_used"]["avg"][index] == latest.memory.used
    assert history["series"]["processes"]["avg"][index] == latest.processes


async def _stored_at_least(extension, count: int) -> bool:
    return await extension.metrics_store.count() >= count


@pytest.mark.parametrize("dataharbour_config", [{"metrics_retention_hours": 2.0}])
@pytest.mark.parametrize("params, field, says", [
    ({"minutes": 0}, "minutes", "at least 1"),
    ({"minutes": "an hour"}, "minutes", "integer"),
    ({"minutes": 121}, "minutes", "at most 120"),
    ({"step": 0}, "step", "at least 1"),
    ({"step": "1.5"}, "step", "integer"),
    ({"minutes": 1, "step": 61}, "step", "at most 60 seconds, the whole range (minutes=1)"),
    ({"minutes": 10, "resolution": 5}, "resolution", ""),
])
async def test_bad_history_queries_are_400_naming_the_field(api, params, field, says):
    status, answer = await api.call("GET", "monitoring/metrics/history", params=params)
    assert status == 400, answer
    assert answer["message"].startswith(f"{field}:") and says in answer["message"], answer


@pytest.mark.parametrize("dataharbour_config", [{"metrics_retention_hours": 200.0}])
async def test_a_history_of_too_many_points_is_400_with_the_least_step(api):
    status, answer = await api.call("GET", "monitoring/metrics/history", params={"minutes": 12000, "step": 1})
    assert status == 400
    assert answer["message"] == ("step: 1 gives 720000 points over minutes=12000, more than 5000: "
                                 "use a step of at least 144 seconds")


# ---- the store, on SQLite and PostgreSQL ---------------------------------------------------


def _row(at_ms: int, cpu: float, **values) -> dict:
    row = {name: 0 for name in SERIES}
    row.update(memory_total=1000, disk_total=1000, cpu_count=2, taken_at_ms=at_ms, cpu_percent=cpu, **values)
    return row


@pytest.fixture
def metrics_stores(store_url):
    job_store = JobStore(store_url)
    here, there = MetricsStore(job_store, "here"), MetricsStore(job_store, "there")
    yield here, there
    here.close()
    there.close()
    job_store.close()


async def test_the_store_downsamples_in_sql_per_host_and_prunes(metrics_stores):
    here, there = metrics_stores
    # 10 s buckets from T0: [0, 3, 6, 9] -> cpu 10, 20, 30, 40; [12, 15] -> 50, null rate; [33] -> 90
    for offset, cpu in [(0, 10), (3, 20), (6, 30), (9, 40), (12, 50), (15, 60), (33, 90)]:
        rate = None if offset == 15 else offset * 1000.0
        await here.add(_row(T0_MS + offset * 1000, cpu, disk_read_bytes_per_sec=rate, memory_used=100 + offset))
    await there.add(_row(T0_MS + 1000, 99.0))  # another server's machine on a shared store

    raw = await here.history(T0_MS, None)
    assert raw.timestamps == [(T0_MS + s * 1000) / 1000 for s in (0, 3, 6, 9, 12, 15, 33)]
    assert raw.series["cpu_percent"] == {"avg": [10, 20, 30, 40, 50, 60, 90]}

    # Each bucket's point at its middle; the last bucket's middle (35) is past its newest sample (33).
    buckets = await here.history(T0_MS, 10_000)
    assert buckets.timestamps == [T0_MS / 1000 + 5, T0_MS / 1000 + 15, T0_MS / 1000 + 33]
    assert buckets.series["cpu_percent"] == {"min": [10, 50, 90], "avg": [25, 55, 90], "max": [40, 60, 90]}
    assert buckets.series["memory_used"] == {"min": [100, 112, 133], "avg": [104.5, 113.5, 133],
                                             "max": [109, 115, 133]}
    assert buckets.series["disk_read_bytes_per_sec"] == {"min": [0, 12000, 33000], "avg": [4500, 12000, 33000],
                                                         "max": [9000, 12000, 33000]}, "nulls are left out"
    assert all(type(value) in (int, float) for value in buckets.series["memory_used"]["avg"])

    later = await here.history(T0_MS + 12_000, 10_000)
    assert later.timestamps == [T0_MS / 1000 + 15, T0_MS / 1000 + 33]
    assert (await here.history(T0_MS, 4_000)).timestamps[:3] == [T0_MS / 1000 + 2, T0_MS / 1000 + 6,
                                                                 T0_MS / 1000 + 10]

    assert await here.prune(T0_MS + 10_000) == 4
    assert (await here.history(0, None)).series["cpu_percent"]["avg"] == [50, 60, 90]
    assert await there.count() == 1, "a server prunes only its own host's samples"


async def test_the_history_document_is_the_models_json_raw_and_downsampled(metrics_stores):
    here, _ = metrics_stores
    now_ms = int(time.time() * 1000)
    for seconds_ago in range(30, 0, -3):
        await here.add(_row(now_ms - seconds_ago * 1000, 1.5 + seconds_ago, memory_used=seconds_ago,
                            network_rx_bytes_per_sec=seconds_ago / 3))
    view = MetricsHistoryView(here, interval=3.0, retention_hours=1.0)
    for query, downsampled in [(MetricsHistoryQuery(minutes=1, step=3), False),
                               (MetricsHistoryQuery(minutes=1, step=7), True)]:
        document = json.loads(await view.history_json(query))
        assert document == json.loads(model_json(await view.history(query)))
        assert document["downsampled"] is downsampled and len(document["timestamps"]) >= 4
        assert document["step"] == (3.0 if not downsampled else 7)
        if not downsampled:  # the samples themselves, the newest last
            assert document["series"]["cpu_percent"] == {"avg": [31.5 - 3 * i for i in range(10)]}


# ---- across a restart, pruned by retention (real server processes) ------------------------


@pytest.fixture
def server_base(tmp_path):
    servers: list[ServerProcess] = []

    def start(*extra_args: str, db_url: str | None = None) -> ServerProcess:
        server = ServerProcess(str(tmp_path), db_url=db_url, extra_args=extra_args)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


def _history(server: ServerProcess) -> dict:
    return server.request("GET", "/api/v1/monitoring/metrics/history?minutes=5&step=1")


def _complete_buckets(history: dict) -> dict[float, float]:
    """Point time (its step's middle) -> cpu average, for the steps before the last (which may still grow)."""
    stamps, averages = history["timestamps"], history["series"]["cpu_percent"]["avg"]
    return dict(zip(stamps[:-1], averages[:-1], strict=True))


def test_history_survives_a_restart_and_old_samples_are_pruned(server_base, store_url):
    first = server_base("--DataHarbourApp.metrics_interval=0.2", db_url=store_url)
    deadline = time.monotonic() + 60
    while len(_history(first)["timestamps"]) < 4:
        assert time.monotonic() < deadline, "the first server stored no history"
        time.sleep(0.2)
    before = _complete_buckets(_history(first))
    first.kill()  # SIGKILL: what was stored must already be on disk

    # Samples older than the next server's retention, of this host and of another one.
    job_store = JobStore(store_url)
    here, there = MetricsStore(job_store, socket.gethostname()), MetricsStore(job_store, "another-host")
    try:
        three_hours_ago = int((time.time() - 3 * 3600) * 1000)

        async def add_old():
            await here.add(_row(three_hours_ago, 5.0))
            await there.add(_row(three_hours_ago, 5.0))
            return await here.count()

        stored = asyncio.run(add_old())
        assert stored >= 5

        second = server_base("--DataHarbourApp.metrics_interval=0.2", "--DataHarbourApp.metrics_retention_hours=1",
                             db_url=store_url)
        after = _history(second)
        assert before and all(after["timestamps"].count(stamp) == 1 for stamp in before), "earlier samples are kept"
        carried = dict(zip(after["timestamps"], after["series"]["cpu_percent"]["avg"], strict=True))
        assert {stamp: carried[stamp] for stamp in before} == pytest.approx(before)

        async def old_ones_left():
            return await here.history(0, None), await there.count()

        deadline = time.monotonic() + 30
        while (left := asyncio.run(old_ones_left()))[0].timestamps[0] <= three_hours_ago / 1000:
            assert time.monotonic() < deadline, "the sample beyond the retention was not pruned"
            time.sleep(0.2)
        assert left[1] == 1, "another host's samples are its own server's to prune"
    finally:  # the servers are server_base's to stop
        here.close()
        there.close()
        job_store.close()
