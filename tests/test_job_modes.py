"""Which backend a run gets from the mode its job asked for, the server's default and its cluster."""

import pytest

from dataharbour_ext.errors import InvalidInput
from dataharbour_ext.services.clusters import Cluster
from dataharbour_ext.services.job_modes import JobModes

LOCAL = Cluster("local", "Local", "local[*]")
YARN = Cluster("yarn", "YARN", "yarn")


def refusal(cluster: Cluster) -> str | None:
    return "no Spark Connect server for yarn here" if cluster.master_url == "yarn" else None


@pytest.mark.parametrize(("default", "requested", "cluster", "backend"), [
    ("auto", None, LOCAL, "spark-connect"),
    ("auto", None, YARN, "spark-submit"),
    ("connect", None, YARN, "spark-submit"),  # the server's default is a preference
    ("batch", None, LOCAL, "spark-submit"),
    ("batch", "connect", LOCAL, "spark-connect"),
    ("connect", "batch", LOCAL, "spark-submit"),
    ("batch", "auto", YARN, "spark-submit"),
])
def test_the_mode_asked_for_else_the_default_resolved_against_the_cluster(default, requested, cluster, backend):
    assert JobModes(default, refusal).backend_for(requested, cluster) == backend


def test_connect_asked_for_where_the_cluster_cannot_is_400_naming_why():
    with pytest.raises(InvalidInput) as refused:
        JobModes("batch", refusal).backend_for("connect", YARN)
    assert "no Spark Connect server for yarn here" in str(refused.value) and '"mode": "batch"' in str(refused.value)


def test_with_connect_off_auto_is_batch():
    assert JobModes("auto").backend_for(None, LOCAL) == "spark-submit"
