"""Embedded defaults and the seed's environment variables as config defaults."""

import os

import pytest
from traitlets import TraitError

from dataharbour_ext.app import DataHarbourApp


@pytest.fixture
def spark_env(monkeypatch):
    monkeypatch.setenv("SPARK_MASTER_URL", "spark://127.0.0.1:7077")
    monkeypatch.setenv("SPARK_UI_URL", "http://127.0.0.1:8080")


@pytest.fixture
def no_spark_env(monkeypatch):
    monkeypatch.delenv("SPARK_MASTER_URL", raising=False)
    monkeypatch.delenv("SPARK_UI_URL", raising=False)


def test_embedded_defaults(no_spark_env, extension, jp_data_dir):
    assert extension.spark_master_url == "local[*]"
    assert extension.state_dir == os.path.join(str(jp_data_dir), "dataharbour")
    assert extension.db_url.startswith("sqlite:///") and os.path.exists(extension.db_url.removeprefix("sqlite:///"))
    default = extension.clusters.get("spark-cluster-default")
    assert default.master_url == "local[*]" and default.ui_url is None


def test_seed_environment_variables_are_defaults(spark_env, extension):
    default = extension.clusters.get("spark-cluster-default")
    assert default.master_url == "spark://127.0.0.1:7077"
    assert default.ui_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize("dataharbour_config", [{"spark_master_url": "local[2]", "max_concurrent_jobs": 7}])
def test_traitlets_override_the_environment(spark_env, extension):
    assert extension.clusters.get("spark-cluster-default").master_url == "local[2]"
    assert extension.jobs.config.max_concurrent_jobs == 7


@pytest.mark.parametrize("dataharbour_config", [{"cluster_job_modes": {"spark-cluster-default": "connect"}}])
def test_a_clusters_job_mode_overrides_the_default(extension):
    default = extension.clusters.get("spark-cluster-default")
    assert extension.default_job_mode == "batch"
    assert extension.jobs.modes.default_for(default) == "connect"


def test_cluster_job_modes_from_the_command_line():
    app = DataHarbourApp()
    app.parse_command_line(["--DataHarbourApp.cluster_job_modes", "spark-cluster-default=auto"])
    assert app.cluster_job_modes == {"spark-cluster-default": "auto"}


def test_a_bad_cluster_job_mode_is_refused_naming_it():
    with pytest.raises(TraitError, match="cluster_job_modes: cluster 'spark-cluster-default' has mode 'warm'"):
        DataHarbourApp(cluster_job_modes={"spark-cluster-default": "warm"})
