"""The job store on SQLite and PostgreSQL: plain records, conditional state changes, an
atomic claim that respects a cluster's limit across servers, and in-place upgrades."""

import asyncio
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from dataharbour_ext.store import JobRecord, JobStore, Owner, RunRecord
from dataharbour_ext.store.migrate import MIGRATIONS, current_revision

T0 = datetime(2026, 1, 1, 12, 0, 0)


def _owner(name: str) -> Owner:
    return Owner(host="host", boot_id="boot", instance=name, pid=1, start_ticks=1)


def _job(job_id: str, cluster: str = "c1", at: datetime = T0, code: str = "print(1)\n") -> tuple[JobRecord, RunRecord]:
    job = JobRecord(id=job_id, name=f"job {job_id}", cluster_id=cluster, state="queued", file=None, args=["a"],
                    conf={"spark.x": "1"}, env={"E": "v"}, attempt=1, created_at=at, updated_at=at, code=code)
    run = RunRecord(job_id=job_id, attempt=1, cluster_id=cluster, state="queued", run_dir=f"/runs/{job_id}/1",
                    queued_at=at)
    return job, run


@pytest.fixture
def store(store_url):
    store = JobStore(store_url)
    yield store
    store.close()


async def test_records_round_trip_and_lists_leave_out_code_and_runs(store):
    for i in range(3):
        await store.add_job(*_job(f"j{i}", at=T0 + timedelta(seconds=i), code=f"print({i})\n"))
    job = await store.get_job("j1")
    assert job.code == "print(1)\n" and job.args == ["a"] and job.conf == {"spark.x": "1"} and job.env == {"E": "v"}
    assert [run.attempt for run in job.runs] == [1] and job.runs[0].state == "queued"
    jobs, total = await store.list_jobs(states=None, cluster_id=None, name=None, sort="created_at", descending=True,
                                        limit=2, offset=0)
    assert total == 3 and [j.id for j in jobs] == ["j2", "j1"]
    assert all(j.code is None for j in jobs)
    assert [len(j.runs) for j in jobs] == [1, 1]  # the latest run's facts only
    summary = await store.get_job("j0", detail=False)
    assert summary.code is None and summary.runs[0].attempt == 1
    assert await store.get_job("missing") is None


async def test_transition_applies_only_from_the_allowed_states(store):
    await store.add_job(*_job("j"))
    assert await store.transition("j", 1, ("starting",), "running", now=T0) is None
    run = await store.transition("j", 1, ("queued",), "starting", now=T0, started_at=T0)
    assert run.state == "starting" and run.started_at == T0
    assert (await store.get_job("j")).state == "starting"  # mirrored on the job
    done = await store.transition("j", 1, ("starting", "running"), "succeeded", now=T0, exit_code=0)
    assert done.state == "succeeded" and done.exit_code == 0
    assert await store.transition("j", 1, ("starting", "running"), "killed", now=T0) is None  # lost the race
    assert (await store.get_run("j", 1)).state == "succeeded"


async def test_a_new_attempt_is_queued_once(store):
    job, run = _job("j")
    await store.add_job(job, run)
    await store.transition("j", 1, ("queued",), "failed", now=T0)
    second = RunRecord(job_id="j", attempt=2, cluster_id="c1", state="queued", run_dir="/runs/j/2", queued_at=T0)
    results = await asyncio.gather(*[
        store.new_attempt("j", 1, second, from_states=("failed",), now=T0) for _ in range(4)
    ], return_exceptions=True)
    assert results.count(True) == 1
    job = await store.get_job("j")
    assert job.attempt == 2 and job.state == "queued" and [r.attempt for r in job.runs] == [1, 2]


async def test_claims_respect_each_clusters_limit_and_queue_order(store):
    for i in range(5):
        await store.add_job(*_job(f"a{i}", cluster="a", at=T0 + timedelta(seconds=i)))
    await store.add_job(*_job("b0", cluster="b", at=T0 + timedelta(seconds=10)))
    me = _owner("me")
    claimed = []
    while (run := await store.claim_next(me, {"a": 2}, 4, now=T0)) is not None:
        claimed.append(run.job_id)
        assert run.state == "starting" and run.owner == me
    assert claimed == ["a0", "a1", "b0"]  # a's limit of 2 does not hold b back
    await store.transition("a0", 1, ("starting",), "succeeded", now=T0)
    assert (await store.claim_next(me, {"a": 2}, 4, now=T0)).job_id == "a2"


def _claimer(url: str, name: str, rounds: int) -> None:
    """A second server's admission loop, in its own process."""
    async def main():
        store = JobStore(url)
        won = []
        for _ in range(rounds):
            run = await store.claim_next(_owner(name), {}, 3, now=T0)
            if run is not None:
                won.append(run.job_id)
        store.close()
        print(",".join(won))
    asyncio.run(main())


async def test_two_servers_claim_each_run_once_within_the_limit(store, store_url):
    for i in range(12):
        await store.add_job(*_job(f"j{i:02}", at=T0 + timedelta(seconds=i)))
    code = f"import sys; sys.path.insert(0, {repr(str(__import__('pathlib').Path(__file__).parent))});" \
           f"from test_store import _claimer; _claimer({store_url!r}, sys.argv[1], 20)"
    servers = [subprocess.Popen([sys.executable, "-c", code, name], stdout=subprocess.PIPE, text=True)
               for name in ("s1", "s2")]
    outputs = [server.communicate(timeout=120)[0].strip() for server in servers]
    assert all(server.returncode == 0 for server in servers)
    won = [job for output in outputs for job in output.split(",") if job]
    assert len(won) == len(set(won)) == 3  # the cluster's limit holds across both servers
    starting = await store.runs_in_states(["starting"])
    assert sorted(r.job_id for r in starting) == sorted(won) == ["j00", "j01", "j02"]


async def test_adopt_has_one_winner(store):
    await store.add_job(*_job("j"))
    await store.claim_next(_owner("old"), {}, 4, now=T0)
    results = await asyncio.gather(store.adopt("j", 1, "old", _owner("x"), now=T0),
                                   store.adopt("j", 1, "old", _owner("y"), now=T0))
    assert sorted(results) == [False, True]
    assert (await store.get_run("j", 1)).owner.instance in ("x", "y")


async def test_delete_only_finished_jobs(store):
    await store.add_job(*_job("j"))
    assert not await store.delete_job("j", from_states=("succeeded", "failed"))
    await store.transition("j", 1, ("queued",), "failed", now=T0)
    assert await store.delete_job("j", from_states=("succeeded", "failed"))
    assert await store.get_job("j") is None and await store.get_run("j", 1) is None


FIRST_RELEASE_SCHEMA = """
CREATE TABLE jobs (
    id VARCHAR(32) NOT NULL PRIMARY KEY, name VARCHAR(1024) NOT NULL, cluster_id VARCHAR(256) NOT NULL,
    state VARCHAR(16) NOT NULL, code TEXT NOT NULL, file VARCHAR(4096), args JSON NOT NULL, conf JSON NOT NULL,
    env JSON NOT NULL, attempt INTEGER NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL);
CREATE TABLE runs (
    job_id VARCHAR(32) NOT NULL REFERENCES jobs (id), attempt INTEGER NOT NULL, cluster_id VARCHAR(256) NOT NULL,
    state VARCHAR(16) NOT NULL, run_dir VARCHAR(4096) NOT NULL, queued_at DATETIME NOT NULL, started_at DATETIME,
    finished_at DATETIME, exit_code INTEGER, error TEXT, spark_app_id VARCHAR(256), spark_ui_url VARCHAR(1024),
    pid INTEGER, pid_started FLOAT, kill_requested BOOLEAN NOT NULL, PRIMARY KEY (job_id, attempt));
CREATE INDEX ix_jobs_state ON jobs (state);
CREATE INDEX ix_runs_state ON runs (state);
INSERT INTO jobs VALUES ('old1', 'first release job', 'spark-cluster-default', 'succeeded', 'print(1)', NULL,
    '["x"]', '{}', '{}', 1, '2026-01-01 10:00:00.000000', '2026-01-01 10:00:05.000000');
INSERT INTO runs VALUES ('old1', 1, 'spark-cluster-default', 'succeeded', '/r/old1/1', '2026-01-01 10:00:00.000000',
    '2026-01-01 10:00:01.000000', '2026-01-01 10:00:05.000000', 0, NULL, 'local-1', NULL, 4242, 1.5, 0);
"""


async def test_a_store_of_the_first_release_upgrades_in_place_and_keeps_its_jobs(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in FIRST_RELEASE_SCHEMA.split(";"):
            if statement.strip():
                connection.execute(text(statement))
    engine.dispose()

    store = JobStore(url)
    try:
        assert current_revision(store.engine) == ScriptDirectory(str(MIGRATIONS)).get_current_head()  # the latest
        job = await store.get_job("old1")
        assert job.name == "first release job" and job.args == ["x"] and job.code == "print(1)"
        run = job.runs[0]
        assert run.state == "succeeded" and run.spark_app_id == "local-1" and run.backend == "spark-submit"
        assert run.owner is None
        columns = {c["name"] for c in inspect(store.engine).get_columns("runs")}
        assert {"owner_instance", "pid_start_ticks", "pid_boot_id", "backend", "progress"} <= columns
    finally:
        store.close()
    JobStore(url).close()  # opening it again changes nothing


async def test_tenants_sharing_a_store_see_and_run_only_their_own_jobs(store_url):
    alice, bob = JobStore(store_url, tenant="alice"), JobStore(store_url, tenant="bob")
    try:
        await alice.add_job(*_job("a1"))
        await bob.add_job(*_job("b1"))
        assert [j.id for j in (await alice.list_jobs(states=None, cluster_id=None, name=None, sort="created_at",
                                                      descending=True, limit=10, offset=0))[0]] == ["a1"]
        assert await alice.get_job("b1") is None and await alice.get_run("b1", 1) is None
        assert await alice.transition("b1", 1, ("queued",), "killed", now=T0) is None
        assert not await alice.delete_job("b1", from_states=("queued",))
        # Each tenant's server claims only its own runs, within its own limit.
        assert (await alice.claim_next(_owner("a"), {}, 1, now=T0)).job_id == "a1"
        assert await alice.claim_next(_owner("a"), {}, 1, now=T0) is None
        assert (await bob.claim_next(_owner("b"), {}, 1, now=T0)).job_id == "b1"
    finally:
        alice.close()
        bob.close()
