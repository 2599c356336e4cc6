"""Which backend a run gets from the mode its job asked for, its cluster's or the server's default and
its cluster."""

import pytest

from dataharbour_ext.errors import InvalidInput
from dataharbour_ext.services.clusters import Cluster
from dataharbour_ext.services.connect_servers import ConnectStatus
from dataharbour_ext.services.connect_views import ConnectViews
from dataharbour_ext.services.job_modes import JobModes
from dataharbour_ext.services.warm_pool import PoolStatus

LOCAL = Cluster("local", "Local", "local[*]")
YARN = Cluster("yarn", "YARN", "yarn")


def refusal(cluster: Cluster) -> str | None:
    return "no Spark Connect server for yarn here" if cluster.master_url == "yarn" else None


@pytest.mark.parametrize(
    ("default", "requested", "cluster", "backend"),
    [
        ("auto", None, LOCAL, "spark-connect"),
        ("auto", None, YARN, "spark-submit"),
        ("connect", None, YARN, "spark-submit"),  # the server's default is a preference
        ("batch", None, LOCAL, "spark-submit"),
        ("batch", "connect", LOCAL, "spark-connect"),
        ("connect", "batch", LOCAL, "spark-submit"),
        ("batch", "auto", YARN, "spark-submit"),
    ],
)
def test_the_mode_asked_for_else_the_default_resolved_against_the_cluster(default, requested, cluster, backend):
    assert JobModes(default, refusal).backend_for(requested, cluster) == backend


def test_connect_asked_for_where_the_cluster_cannot_is_400_naming_why():
    with pytest.raises(InvalidInput) as refused:
        JobModes("batch", refusal).backend_for("connect", YARN)
    assert "no Spark Connect server for yarn here" in str(refused.value) and '"mode": "batch"' in str(refused.value)


def test_with_connect_off_auto_is_batch():
    assert JobModes("auto").backend_for(None, LOCAL) == "spark-submit"


def test_a_clusters_own_default_overrides_the_servers():
    modes = JobModes("batch", refusal, {"local": "connect"})
    assert modes.default_for(LOCAL) == "connect" and modes.default_for(YARN) == "batch"
    assert modes.backend_for(None, LOCAL) == "spark-connect"
    assert modes.backend_for("batch", LOCAL) == "spark-submit"  # what a job asks for still wins
    assert JobModes("auto", refusal, {"local": "batch"}).backend_for(None, LOCAL) == "spark-submit"


def failed_on_local(cluster_id: str) -> str:
    return "failed" if cluster_id == "local" else "stopped"


@pytest.mark.parametrize(
    ("default", "cluster_modes", "requested", "backend"),
    [
        ("auto", {}, None, "spark-submit"),
        ("connect", {}, None, "spark-submit"),
        ("batch", {"local": "connect"}, None, "spark-submit"),
        ("batch", {}, "auto", "spark-submit"),
        ("batch", {}, "connect", "spark-connect"),  # asked for by name: its server is started again
    ],
)
def test_a_failed_connect_server_turns_preferences_to_batch(default, cluster_modes, requested, backend):
    modes = JobModes(default, refusal, cluster_modes, failed_on_local)
    assert modes.backend_for(requested, LOCAL) == backend


def test_a_connect_server_that_has_not_failed_keeps_the_warm_path():
    assert JobModes("auto", refusal, {}, lambda cluster_id: "stopped").backend_for(None, LOCAL) == "spark-connect"


class FakeServers:
    def __init__(self, state: str):
        self.state = state

    def refusal(self, cluster: Cluster) -> str | None:
        return refusal(cluster)

    def status(self, cluster_id: str) -> ConnectStatus:
        return ConnectStatus(cluster_id, self.state)


class FakePool:
    def status(self, cluster_id: str) -> PoolStatus:
        return PoolStatus(cluster_id, 2, 0, 0, 0)


@pytest.mark.parametrize(
    ("cluster_modes", "state", "cluster", "shown"),
    [
        ({"local": "connect"}, "stopped", LOCAL, "connect"),
        ({"local": "batch"}, "stopped", LOCAL, "batch"),
        ({"yarn": "connect"}, "stopped", YARN, "batch"),  # refused: its jobs run batch
        ({"local": "auto"}, "failed", LOCAL, "batch"),
    ],
)
def test_the_cluster_view_shows_the_mode_a_job_naming_none_gets(cluster_modes, state, cluster, shown):
    servers = FakeServers(state)
    modes = JobModes("batch", servers.refusal, cluster_modes, lambda cluster_id: servers.status(cluster_id).state)
    assert ConnectViews(servers, FakePool(), modes)(cluster).default_mode == shown


def test_a_conf_a_session_cannot_take_needs_batch():
    modes = JobModes("auto", lambda cluster: None)
    sql_only = {"spark.sql.shuffle.partitions": "3"}
    assert modes.backend_for("connect", LOCAL, sql_only) == "spark-connect"
    assert modes.backend_for(None, LOCAL, {**sql_only, "spark.executor.memory": "2g"}) == "spark-submit"
    with pytest.raises(InvalidInput) as refused:
        modes.backend_for("connect", LOCAL, {"spark.executor.memory": "2g", "spark.driver.maxResultSize": "1g"})
    assert refused.value.field == "conf"
    assert "spark.driver.maxResultSize, spark.executor.memory" in str(refused.value)
    assert '"mode": "batch"' in str(refused.value)


async def test_through_the_api_a_warm_job_with_driver_conf_is_400_and_nothing_is_stored(api):
    status, body = await api.call("POST", "jobs/", {
        "name": "warm with executor memory", "code": "print(1)\n", "mode": "connect",
        "conf": {"spark.executor.memory": "2g"}})
    assert status == 400 and "spark.executor.memory" in body["message"] and '"mode": "batch"' in body["message"], body
    status, page = await api.call("GET", "jobs/")
    assert status == 200 and page["total"] == 0
