"""The clusters table on SQLite and PostgreSQL: records in and out, conditional state changes,
launched clusters kept to their host, tenants apart."""

from datetime import datetime

from dataharbour_ext.store import JobStore
from dataharbour_ext.store.cluster_store import ClusterRecord, ClusterStore, DaemonRecord

T0 = datetime(2026, 11, 27, 12, 0, 0)


def _launched(cluster_id: str, host: str) -> ClusterRecord:
    return ClusterRecord(id=cluster_id, name="two workers", kind="standalone", master_url="spark://127.0.0.1:7077",
                         ui_url="http://127.0.0.1:8080", state="starting", created_at=T0, updated_at=T0, host=host,
                         spec={"workers": 2, "cores_per_worker": 1, "memory_per_worker": "1g",
                               "memory_per_worker_mb": 1024},
                         conf={"spark.driver.host": "127.0.0.1"})


async def test_clusters_are_stored_per_tenant_and_launched_ones_per_host(store_url):
    mine, theirs = JobStore(store_url, tenant="me"), JobStore(store_url, tenant="someone else")
    here, elsewhere = ClusterStore(mine, "host-a"), ClusterStore(mine, "host-b")
    try:
        await here.add(_launched("standalone-1", "host-a"))
        await here.add(ClusterRecord(id="external-1", name="prod", kind="external", master_url="yarn",
                                     state="unknown", reason="not probed", created_at=T0, updated_at=T0))
        assert [c.id for c in await here.all()] == ["external-1", "standalone-1"]
        assert [c.id for c in await elsewhere.all()] == ["external-1"], "a launched cluster runs on its own host"
        assert await ClusterStore(theirs, "host-a").all() == []
        assert await here.count() == 2

        daemons = [DaemonRecord("master", "/runs/master", 123, 456, "boot"), DaemonRecord("worker-1", "/runs/w1")]
        assert await here.update("standalone-1", now=T0, daemons=daemons)
        assert await here.update("standalone-1", now=T0, from_states=("starting",), state="running")
        assert not await here.update("standalone-1", now=T0, from_states=("starting",), state="failed")
        (stored,) = [c for c in await here.all() if c.id == "standalone-1"]
        assert (stored.state, stored.daemons, stored.spec["workers"]) == ("running", daemons, 2)
        assert await here.delete("standalone-1") and not await here.delete("standalone-1")
        assert [c.id for c in await here.all()] == ["external-1"]
    finally:
        theirs.close()
        mine.close()


async def test_a_launched_cluster_is_adopted_by_one_server_only(store_url):
    from dataharbour_ext.store import Owner

    jobs = JobStore(store_url, tenant="me")
    store = ClusterStore(jobs, "host-a")
    dead = Owner("host-a", "boot", "instance-dead", 10, 100)
    first, second = Owner("host-a", "boot", "instance-1", 11, 110), Owner("host-a", "boot", "instance-2", 12, 120)
    try:
        record = _launched("standalone-1", "host-a")
        record.owner = dead
        await store.add(record)
        (stored,) = await store.all()
        assert stored.owner == dead
        adopted = await store.adopt("standalone-1", dead, first, now=T0)
        assert adopted is not None and adopted.owner == first and adopted.state == "starting"
        assert await store.adopt("standalone-1", dead, second, now=T0) is None, "the owner read is out of date"
        assert (await store.all())[0].owner == first
        await store.add(_launched("standalone-2", "host-a"))  # from before owners: nobody's
        assert (await store.adopt("standalone-2", None, second, now=T0)).owner == second
    finally:
        jobs.close()
