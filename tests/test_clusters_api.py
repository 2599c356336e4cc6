"""GET /api/v1/clusters/: the clusters this server knows, with their jobs running and queued."""

import pytest

GATED = "import os, time\nwhile not os.path.exists('{gate}'):\n    time.sleep(0.05)\n"


@pytest.mark.parametrize("dataharbour_config", [{"max_concurrent_jobs": 1}])
async def test_the_default_cluster_with_its_running_and_queued_jobs(api, jp_root_dir):
    status, listing = await api.call("GET", "clusters/")
    assert status == 200
    assert listing == {"clusters": [{
        "id": "spark-cluster-default", "name": "Default Spark cluster", "kind": "local", "master_url": "local[*]",
        "ui_url": None, "state": "running", "max_concurrent_jobs": 1, "running_jobs": 0, "queued_jobs": 0,
    }]}
    first = await api.submit(name="holds the slot", code=GATED.format(gate="first.go"))
    second = await api.submit(name="waits", code=GATED.format(gate="second.go"))
    await api.wait(first["id"], states=("starting", "running"))
    status, cluster = await api.call("GET", "clusters/spark-cluster-default")
    assert status == 200 and (cluster["running_jobs"], cluster["queued_jobs"]) == (1, 1)
    (jp_root_dir / "first.go").touch()
    (jp_root_dir / "second.go").touch()
    for job in (first, second):
        assert (await api.wait(job["id"]))["state"] == "succeeded"
    _, cluster = await api.call("GET", "clusters/spark-cluster-default")
    assert (cluster["running_jobs"], cluster["queued_jobs"]) == (0, 0)


async def test_an_unknown_cluster_is_404(api):
    status, error = await api.call("GET", "clusters/nope")
    assert status == 404 and error["message"] == "no cluster with id 'nope'"


@pytest.mark.parametrize("dataharbour_config", [{"spark_master_url": "spark://127.0.0.1:7077"}])
async def test_a_configured_master_is_an_external_cluster(api):
    _, cluster = await api.call("GET", "clusters/spark-cluster-default")
    assert (cluster["kind"], cluster["master_url"], cluster["state"]) == ("external", "spark://127.0.0.1:7077",
                                                                          "unknown")
