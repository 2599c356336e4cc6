"""The dashboard: numbers checked against real jobs the test ran, per-day trends in the
client's time zone, bad queries, an empty store; the store's statistics on SQLite and
PostgreSQL; the notebook count through Jupyter's contents managers."""

import asyncio
import json
import math
import time
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager, LargeFileManager
from sqlalchemy import select

from dataharbour_ext.services.notebook_count import NotebookCount, NotebookCounter
from dataharbour_ext.store import JobRecord, JobStore, RunRecord
from dataharbour_ext.store.job_statistics import JobStatistics
from dataharbour_ext.store.migrate import alembic_config
from dataharbour_ext.store.tables import jobs

RUNS_UNTIL_KILLED = """
import time
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("rows", spark.range(10).count(), flush=True)
time.sleep(600)
"""
STATES = ("queued", "starting", "running", "succeeded", "failed", "killed", "lost")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _nearest_rank(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(share * len(ordered)) - 1]


def _notebook(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


async def _stats(api) -> dict:
    status, stats = await api.call("GET", "dashboard/stats")
    assert status == 200, stats
    return stats


# ---- through the API, with real jobs -------------------------------------------------------


async def test_an_empty_store_has_zeros_and_no_rates(api, jp_root_dir):
    _notebook(jp_root_dir / "a.ipynb")
    _notebook(jp_root_dir / "reports" / "2026" / "b.ipynb")
    _notebook(jp_root_dir / ".hidden" / "c.ipynb")  # the file browser does not show it
    _notebook(jp_root_dir / "reports" / ".ipynb_checkpoints" / "b-checkpoint.ipynb")
    (jp_root_dir / "reports" / "notes.py").write_text("print(1)\n")

    stats = await _stats(api)
    assert stats == {
        "total_jobs": 0, "jobs_by_state": dict.fromkeys(STATES, 0), "finished_jobs": 0, "success_rate": None,
        "timed_jobs": 0, "mean_duration": None, "p95_duration": None, "active_clusters": 0, "known_clusters": 1,
        "notebooks": 2, "notebooks_truncated": False,
    }  # fmt: skip
    status, trends = await api.call("GET", "dashboard/trends")
    assert status == 200 and trends["days"] == 14 and trends["tz"] == "UTC"
    today = datetime.now(timezone.utc).date()
    assert [p["date"] for p in trends["points"]] == [str(today - timedelta(days=13 - i)) for i in range(14)]
    assert all(p["succeeded"] == 0 and p["failed"] == 0 for p in trends["points"])
    status, overview = await api.call("GET", "dashboard/overview", params={"days": 3})
    assert status == 200 and overview["stats"] == stats and overview["recent_jobs"] == []
    assert len(overview["trends"]["points"]) == 3


@pytest.mark.parametrize("dataharbour_config", [{"dashboard_notebook_scan_limit": 3}])
async def test_the_notebook_count_says_when_it_stopped_early(api, jp_root_dir):
    for i in range(5):
        _notebook(jp_root_dir / f"n{i}.ipynb")
    stats = await _stats(api)
    assert stats["notebooks"] == 3 and stats["notebooks_truncated"] is True


async def test_numbers_match_the_jobs_that_ran(api):
    long = await api.submit(name="until killed", code=RUNS_UNTIL_KILLED)
    await api.wait(long["id"], states={"running"}, timeout=180)
    stats = await _stats(api)
    assert stats["jobs_by_state"] == {**dict.fromkeys(STATES, 0), "running": 1}
    assert stats["total_jobs"] == 1 and stats["finished_jobs"] == 0 and stats["success_rate"] is None
    assert stats["active_clusters"] == 1 and stats["known_clusters"] == 1

    quick = [await api.submit(name="quick ok", code="print('ok')\n"),
             await api.submit(name="slower ok", code="import time\ntime.sleep(1)\nprint('ok')\n"),
             await api.submit(name="fails", code="raise SystemExit(3)\n")]
    ended = [await api.wait(job["id"]) for job in quick]
    assert [job["state"] for job in ended] == ["succeeded", "succeeded", "failed"]
    status, killed = await api.call("POST", f"jobs/{long['id']}/kill")
    assert status == 200 and killed["state"] == "killed"

    # Straight after the kill: the statistics follow the store's writes, not a timer.
    stats = await _stats(api)
    assert stats["jobs_by_state"] == {**dict.fromkeys(STATES, 0), "succeeded": 2, "failed": 1, "killed": 1}
    assert stats["total_jobs"] == 4 and stats["finished_jobs"] == 4 and stats["success_rate"] == 0.5
    assert stats["active_clusters"] == 0

    finished = [*ended, killed]
    # Durations are of the runs that succeeded or failed: the kill cut the long one short.
    durations = [(_utc(job["finished_at"]) - _utc(job["started_at"])).total_seconds() for job in ended]
    assert stats["timed_jobs"] == 3
    assert stats["mean_duration"] == pytest.approx(sum(durations) / 3, abs=1e-3)
    assert stats["p95_duration"] == pytest.approx(_nearest_rank(durations, 0.95), abs=1e-3)

    status, trends = await api.call("GET", "dashboard/trends", params={"days": 7})
    assert status == 200 and len(trends["points"]) == 7
    expected: dict[str, dict[str, int]] = {}
    for job in finished:  # the day each one ended, in UTC
        day = expected.setdefault(str(_utc(job["finished_at"]).date()), {"succeeded": 0, "failed": 0})
        day["succeeded" if job["state"] == "succeeded" else "failed"] += 1
    assert trends["points"][-1]["date"] == str(datetime.now(timezone.utc).date())
    for point in trends["points"]:
        assert {"succeeded": point["succeeded"], "failed": point["failed"]} == expected.get(
            point["date"], {"succeeded": 0, "failed": 0})
    assert sum(p["succeeded"] for p in trends["points"]) == 2 and sum(p["failed"] for p in trends["points"]) == 2

    status, overview = await api.call("GET", "dashboard/overview", params={"days": 7})
    assert status == 200 and overview["stats"] == stats and overview["trends"] == trends
    status, listing = await api.call("GET", "jobs/", params={"sort": "updated_at", "limit": 10})
    assert overview["recent_jobs"] == listing["jobs"]  # as the job list shows them
    assert overview["recent_jobs"][0]["id"] == long["id"]  # the kill was the latest change


async def test_trends_count_days_in_the_clients_time_zone(api, extension):
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    yesterday = (now - timedelta(days=1)).date()
    # 23:30 UTC yesterday is already today in Tokyo (+9) and India (+5:30); 18:15 UTC is today in
    # Tokyo but still yesterday (23:45) in India.
    late = datetime.combine(yesterday, datetime.min.time()) + timedelta(hours=23, minutes=30)
    evening = datetime.combine(yesterday, datetime.min.time()) + timedelta(hours=18, minutes=15)
    await extension.store.add_job(*_ended("late", "succeeded", late - timedelta(minutes=5), late))
    await extension.store.add_job(*_ended("evening", "lost", evening - timedelta(minutes=5), evening))

    async def points(**params) -> dict[str, tuple[int, int]]:
        status, trends = await api.call("GET", "dashboard/trends", params=params)
        assert status == 200, trends
        zone = ZoneInfo(params.get("tz", "UTC"))
        assert trends["tz"] == params.get("tz", "UTC")
        assert trends["points"][-1]["date"] == str(datetime.now(zone).date())
        return {p["date"]: (p["succeeded"], p["failed"]) for p in trends["points"] if p["succeeded"] or p["failed"]}

    today = str(yesterday + timedelta(days=1))
    assert await points() == {str(yesterday): (1, 1)}
    assert await points(tz="Asia/Tokyo") == {today: (1, 1)}
    assert await points(tz="Asia/Kolkata") == {str(yesterday): (0, 1), today: (1, 0)}
    assert await points(tz="America/Los_Angeles") == {str(yesterday): (1, 1)}


@pytest.mark.parametrize(
    ("params", "field"),
    [({"days": "0"}, "days"), ({"days": "366"}, "days"), ({"days": "abc"}, "days"), ({"tz": "Not/AZone"}, "tz"),
     ({"tz": "../../etc/passwd"}, "tz"), ({"tz": ""}, "tz"), ({"week": "1"}, "week")],
)
async def test_bad_trend_queries_are_refused_naming_the_field(api, params, field):
    for route in ("dashboard/trends", "dashboard/overview"):
        status, body = await api.call("GET", route, params=params)
        assert status == 400, (route, body)
        assert body["message"].startswith(f"{field}: "), body
    status, body = await api.call("GET", "dashboard/trends", params={"tz": "Not/AZone"})
    assert "unknown time zone 'Not/AZone'" in body["message"]


# ---- the store's statistics on SQLite and PostgreSQL ----------------------------------------

T0 = datetime(2026, 3, 1, 12, 0, 0)


def _ended(job_id: str, state: str, started: datetime | None, finished: datetime, cluster: str = "c1"):
    job = JobRecord(id=job_id, name=job_id, cluster_id=cluster, state=state, file=None, args=[], conf={}, env={},
                    attempt=1, created_at=finished - timedelta(minutes=10), updated_at=finished, code="print(1)\n")
    run = RunRecord(job_id=job_id, attempt=1, cluster_id=cluster, state=state, run_dir=f"/runs/{job_id}/1",
                    queued_at=job.created_at, started_at=started, finished_at=finished)
    return job, run


def _queued(job_id: str, cluster: str = "c1"):
    job = JobRecord(id=job_id, name=job_id, cluster_id=cluster, state="queued", file=None, args=[], conf={}, env={},
                    attempt=1, created_at=T0, updated_at=T0, code="print(1)\n")
    return job, RunRecord(job_id=job_id, attempt=1, cluster_id=cluster, state="queued", run_dir="/r", queued_at=T0)


@pytest.fixture
def store(store_url):
    store = JobStore(store_url, tenant="me")
    yield store
    store.close()


async def test_statistics_in_sql_on_both_databases(store, store_url):
    # Twenty runs of 1..20 s ended on 1 March: 1..14 succeeded, 15 and 18 failed, 16 and 19 were
    # killed, 17 and 20 lost. Durations are those of the 16 that succeeded or failed.
    for i in range(1, 21):
        state = "succeeded" if i <= 14 else ("failed", "killed", "lost")[i % 3]
        await store.add_job(*_ended(f"d{i}", state, T0, T0 + timedelta(seconds=i)))
    await store.add_job(*_ended("never-started", "killed", None, T0))  # killed while queued: no duration
    for job_id, cluster in (("r1", "c1"), ("r2", "c1"), ("r3", "c2"), ("q1", "c3")):
        await store.add_job(*_queued(job_id, cluster))
    for job_id in ("r1", "r2", "r3"):
        await store.transition(job_id, 1, ("queued",), "running", now=T0, started_at=T0)
    other = JobStore(store_url, tenant="someone-else")  # other tenants' jobs are not ours to count
    try:
        await other.add_job(*_ended("theirs", "failed", T0, T0 + timedelta(seconds=1000)))
    finally:
        other.close()

    statistics = JobStatistics(store, ttl=60)
    totals = await statistics.totals()
    assert totals.by_state == {"queued": 1, "starting": 0, "running": 3, "succeeded": 14, "failed": 2,
                               "killed": 3, "lost": 2}
    timed = [*range(1, 15), 15, 18]
    assert totals.timed_jobs == 16 and totals.mean_duration == sum(timed) / 16 == 8.625
    assert totals.p95_duration == _nearest_rank(timed, 0.95) == 18.0
    assert totals.active_cluster_ids == {"c1", "c2"}

    # A run that ends through the store gets its duration at once: no waiting for the cache.
    await store.transition("r1", 1, ("running",), "succeeded", now=T0, finished_at=T0 + timedelta(seconds=400))
    totals = await statistics.totals()
    assert totals.by_state["running"] == 2 and totals.by_state["succeeded"] == 15
    timed.append(400)
    assert totals.timed_jobs == 17 and totals.mean_duration == round(sum(timed) / 17, 3)
    assert totals.p95_duration == 400.0 and totals.active_cluster_ids == {"c1", "c2"}
    # A kill and a lost run end their jobs without a duration: how long they ran is not the program's.
    await store.transition("r2", 1, ("running",), "killed", now=T0, finished_at=T0 + timedelta(seconds=500))
    await store.transition("r3", 1, ("running",), "lost", now=T0, finished_at=T0 + timedelta(hours=9))
    totals = await statistics.totals()
    assert totals.by_state["killed"] == 4 and totals.by_state["lost"] == 3 and totals.active_cluster_ids == set()
    assert totals.timed_jobs == 17 and totals.mean_duration == round(sum(timed) / 17, 3)
    # A restart leaves the statistics of its job until the new attempt ends.
    second = RunRecord(job_id="d18", attempt=2, cluster_id="c1", state="queued", run_dir="/r", queued_at=T0)
    assert await store.new_attempt("d18", 1, second, from_states=("failed", "killed", "lost", "succeeded"), now=T0)
    totals = await statistics.totals()
    timed.remove(18)
    assert totals.timed_jobs == 16 and totals.mean_duration == round(sum(timed) / 16, 3)
    assert totals.by_state["queued"] == 2

    day = timedelta(days=1)
    windows = [(T0 - 2 * day, T0 - day), (T0 - day + timedelta(hours=12), T0 + timedelta(hours=12)),
               (T0 + timedelta(hours=12), T0 + timedelta(hours=36))]
    completions = await statistics.completions(windows)
    # Window 2 holds every end (the restarted job's first attempt still counts: it did end);
    # r1's, r2's and r3's too. Failed, killed and lost count as not succeeded.
    assert [(c.succeeded, c.unsuccessful) for c in completions] == [(0, 0), (15, 9), (0, 0)]


async def test_another_servers_writes_show_once_the_cache_expires(store, store_url):
    statistics = JobStatistics(store, ttl=2.0)
    other_server = JobStore(store_url, tenant="me")  # same user, another Jupyter server: its own generation
    try:
        assert (await statistics.totals()).by_state["succeeded"] == 0
        await other_server.add_job(*_ended("elsewhere", "succeeded", T0, T0 + timedelta(seconds=3)))
    finally:
        other_server.close()
    assert (await statistics.totals()).by_state["succeeded"] == 0  # this server wrote nothing: cached
    deadline = time.monotonic() + 20
    while (totals := await statistics.totals()).by_state["succeeded"] != 1:
        assert time.monotonic() < deadline, "the other server's job never showed"
        await asyncio.sleep(0.05)
    assert totals.timed_jobs == 1 and totals.mean_duration == 3.0


async def test_an_older_store_gets_durations_for_jobs_that_already_ended(store_url):
    store = JobStore(store_url, tenant="me")
    try:
        for job_id, state, seconds in [("j0", "succeeded", 2.000123), ("j1", "failed", 7.5), ("k", "killed", 60),
                                       ("l", "lost", 86400), ("q", "queued", None)]:
            if seconds is None:
                await store.add_job(*_queued(job_id))
            else:
                await store.add_job(*_ended(job_id, state, T0, T0 + timedelta(seconds=seconds)))
        with store.engine.connect().execution_options(write=True) as connection:
            command.downgrade(alembic_config(connection), "0005")
            connection.commit()
    finally:
        store.close()
    store = JobStore(store_url, tenant="me")  # upgrades to 0006 again, filling the durations in
    try:
        with store.engine.connect() as connection:
            durations = dict(connection.execute(select(jobs.c.id, jobs.c.duration)).all())
        assert durations == {"j0": pytest.approx(2.000123, abs=1e-9), "j1": 7.5, "k": None, "l": None, "q": None}
        totals = await JobStatistics(store).totals()
        assert totals.timed_jobs == 2 and totals.mean_duration == 4.75 and totals.p95_duration == 7.5
    finally:
        store.close()


# ---- the notebook count through Jupyter's contents managers ---------------------------------


def _browsable_tree(base) -> str:
    """A root with hidden files and folders, checkpoints, hide_globs, symlink loops, a link to a
    folder outside the root and a broken link; returns the root."""
    root = base / "root"
    for path in ("top.ipynb", "a/b/c/deep.ipynb", "a/two.ipynb", ".secret/hidden.ipynb", ".dotted.ipynb",
                 "a/.ipynb_checkpoints/two-checkpoint.ipynb", "a/__pycache__/globbed.ipynb", "../outside/linked.ipynb"):
        _notebook(root / path)
    (root / "a" / "b" / "data.csv").write_text("x\n1\n")
    (root / "a" / "up").symlink_to("..")  # a loop back to the root
    (root / "a" / "b" / "c" / "here").symlink_to(".")  # a loop onto itself
    (root / "a" / "self").symlink_to("self")  # a link that resolves to nothing but itself
    (root / "elsewhere").symlink_to(base / "outside")  # the browser follows links out of the root
    (root / "a" / "ghost.ipynb").symlink_to("gone.ipynb")  # broken, yet listed as a notebook
    return str(root)


@pytest.mark.parametrize("manager_class", [AsyncLargeFileManager, LargeFileManager])
@pytest.mark.parametrize(("allow_hidden", "expected"), [(False, 5), (True, 8)])
async def test_notebooks_are_counted_as_the_file_browser_lists_them(tmp_path, manager_class, allow_hidden, expected):
    # top, two, deep, linked (once, though two links lead into the root again) and ghost; with
    # hidden files allowed also .secret/hidden, .dotted and the checkpoint; __pycache__ never
    # (hide_globs).
    manager = manager_class(root_dir=_browsable_tree(tmp_path), allow_hidden=allow_hidden)
    counter = NotebookCounter(manager, limit=1000, ttl=60)
    # Both ways of counting see the same: the folder itself, and the manager's own listings.
    assert await asyncio.to_thread(counter.scan_files) == NotebookCount(expected, truncated=False)
    assert await counter.walk_contents() == NotebookCount(expected, truncated=False)

    def not_through_the_manager(*args, **kwargs):
        raise AssertionError("a file-based manager's folder is read directly, off the event loop")

    manager.get = not_through_the_manager
    assert await counter.count() == NotebookCount(expected, truncated=False)


@pytest.mark.parametrize("limit", [1, 4, 7, 11])  # 12 entries are listed in all
async def test_both_ways_of_counting_stop_at_the_same_entry(tmp_path, limit):
    counter = NotebookCounter(LargeFileManager(root_dir=_browsable_tree(tmp_path)), limit=limit, ttl=60)
    scanned = await asyncio.to_thread(counter.scan_files)
    assert scanned.truncated and scanned == await counter.walk_contents()


async def test_the_notebook_count_is_reused_then_refreshed_in_the_background(tmp_path):
    _notebook(tmp_path / "one.ipynb")
    counter = NotebookCounter(AsyncLargeFileManager(root_dir=str(tmp_path)), limit=1000, ttl=0.2)
    try:
        assert (await counter.count()).notebooks == 1
        _notebook(tmp_path / "two.ipynb")
        assert (await counter.count()).notebooks == 1  # within the ttl
        deadline = time.monotonic() + 10
        while (await counter.count()).notebooks != 2:  # the stale count, until a new walk has run
            assert time.monotonic() < deadline, "the count was never refreshed"
            await asyncio.sleep(0.05)
    finally:
        counter.stop()


def test_days_are_calendar_days_of_the_zone():
    from dataharbour_ext.services.dashboard import local_days

    # 2026-03-29: Europe/Paris moves its clocks forward; that day has 23 hours.
    days = local_days(3, ZoneInfo("Europe/Paris"), datetime(2026, 3, 30, 12, 0))
    assert [d for d, _, _ in days] == [date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30)]
    assert [(end - start).total_seconds() / 3600 for _, start, end in days] == [24, 23, 24]
    assert days[1][1] == datetime(2026, 3, 28, 23, 0)  # midnight in Paris, in UTC
