"""Unit tests of what a run is started with: argv, environment overlay, properties file,
log config, driver signals and the class-data archive's bookkeeping. No Spark runs here."""

import json
import os
import stat

import pytest

from dataharbour_ext.spark import class_data, log_config
from dataharbour_ext.spark.driver_signals import SIGNALS_FILE, read_signals
from dataharbour_ext.spark.submit import (
    BOOTSTRAP,
    SubmitSpec,
    build_command,
    build_environment,
    build_environment_overlay,
    join_java_options,
    spark_conf,
    write_properties,
)


def spec(**kw) -> SubmitSpec:
    base = dict(master="local[*]", app_name="job", app_file="/runs/1/job.py", args=["--x", "a b"])
    return SubmitSpec(**{**base, **kw})


def test_argv_runs_the_program_through_the_bootstrap_with_args_last():
    argv = build_command(spec(signals_file="/runs/1/spark.json", properties_file="/runs/1/spark.properties"))
    assert argv[1:5] == ["--master", "local[*]", "--name", "job"]
    assert argv[argv.index("--properties-file") + 1] == "/runs/1/spark.properties"
    i = argv.index(BOOTSTRAP)
    assert argv[i:] == [BOOTSTRAP, "/runs/1/spark.json", "/runs/1/job.py", "--x", "a b"]
    # Without a signals file the program is the application file itself.
    argv = build_command(spec())
    assert BOOTSTRAP not in argv and argv[-3:] == ["/runs/1/job.py", "--x", "a b"]


def test_ui_kill_is_off_by_default_and_the_cluster_or_job_conf_decides_otherwise():
    argv = build_command(spec())
    assert argv[argv.index("--conf") + 1] == "spark.ui.killEnabled=false"
    # Set in the cluster's conf (which goes into the properties file): no --conf, which
    # would override the file.
    on = spec(cluster_conf={"spark.ui.killEnabled": "true", "spark.executor.memory": "1g"})
    assert "--conf" not in build_command(on)
    assert spark_conf(on) == {"spark.ui.killEnabled": "true", "spark.executor.memory": "1g"}
    # The job's conf is merged over the cluster's.
    both = spec(cluster_conf={"spark.executor.memory": "1g", "a.b": "c"}, conf={"spark.executor.memory": "2g"})
    assert spark_conf(both) == {"spark.executor.memory": "2g", "a.b": "c"}
    # Our own cluster settings (a Connect server's URL and token) never reach a batch run.
    own = spec(cluster_conf={"dataharbour.connect.url": "sc://h:15002/;token=t", "a.b": "c"})
    assert spark_conf(own) == {"a.b": "c"}
    assert "--conf" not in build_command(spec(conf={"spark.ui.killEnabled": "true"}))


def test_environment_overlay_holds_only_what_the_run_adds(monkeypatch):
    monkeypatch.setenv("DATAHARBOUR_SERVER_SECRET", "s3cr3t")
    monkeypatch.setenv("SPARK_SUBMIT_OPTS", "-Dfrom.server=1")
    overlay = build_environment_overlay(
        spec(env={"MY_VAR": "1", "SPARK_SUBMIT_OPTS": "-Duser.opt=2"}, java_options=["-Da=1", "-Dpath=/state dir/x"])
    )
    assert set(overlay) == {
        "MY_VAR", "SPARK_HOME", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_LOCAL_IP", "PYTHONUNBUFFERED",
        "SPARK_SUBMIT_OPTS", "DATAHARBOUR_PROGRESS_INTERVAL",
    }  # fmt: skip
    assert "s3cr3t" not in json.dumps(overlay) and "from.server" not in json.dumps(overlay)
    # Ours first (escaped for Spark's launcher), then the job's own.
    assert overlay["SPARK_SUBMIT_OPTS"] == "-Da=1 -Dpath=/state\\ dir/x -Duser.opt=2"
    assert overlay["SPARK_LOCAL_IP"] == "127.0.0.1" and overlay["PYTHONUNBUFFERED"] == "1"
    assert overlay["DATAHARBOUR_PROGRESS_INTERVAL"] == "0.5"
    # No options at all: no SPARK_SUBMIT_OPTS in the overlay.
    assert "SPARK_SUBMIT_OPTS" not in build_environment_overlay(spec())
    # The old whole-environment form still works for callers not yet on the overlay.
    full = build_environment(spec(env={"MY_VAR": "1"}))
    assert full["DATAHARBOUR_SERVER_SECRET"] == "s3cr3t" and full["MY_VAR"] == "1"


def test_job_env_cannot_replace_the_managed_variables():
    overlay = build_environment_overlay(spec(env={"PYSPARK_PYTHON": "/bin/evil", "SPARK_LOCAL_IP": "0.0.0.0"}))
    assert overlay["PYSPARK_PYTHON"] != "/bin/evil" and overlay["SPARK_LOCAL_IP"] == "127.0.0.1"


def test_java_options_are_escaped_for_sparks_option_parser():
    assert (
        join_java_options(["-Da=b c", '-Dq="x"', "-Dback=\\", "-Dt=\t"]) == '-Da=b\\ c -Dq=\\"x\\" -Dback=\\\\ -Dt=\\\t'
    )


def test_properties_file_is_owner_only_and_values_cannot_inject_lines(tmp_path):
    path = tmp_path / "spark.properties"
    write_properties(
        str(path),
        {
            "spark.a": "x\nspark.injected=1",
            "spark.b": "C:\\dir",
            "spark.c": " leading",
            "spark.d": "=starts with equals",
            "spark.e": "ünïcødé ✓",
        },
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text(encoding="utf-8")
    assert text.splitlines() == [
        "spark.a=x\\nspark.injected=1",
        "spark.b=C:\\\\dir",
        "spark.c=\\ leading",
        "spark.d=\\=starts with equals",
        "spark.e=ünïcødé ✓",
    ]


def test_properties_value_that_is_not_utf8_names_the_key(tmp_path):
    path = tmp_path / "spark.properties"
    with pytest.raises(ValueError, match="spark.secret.thing"):
        write_properties(str(path), {"spark.ok": "1", "spark.secret.thing": "bad \ud800 value"})
    assert not path.exists()


def test_log_levels_are_validated():
    for name in log_config.LOG_LEVELS:
        assert log_config.validate_level(name.lower()) == name
    assert log_config.validate_level("warning") == "WARN"
    for bad in ("verbose", "", "INFO -Devil=1", None):
        with pytest.raises(ValueError, match="log level must be one of"):
            log_config.validate_level(bad)


def test_log_config_is_sparks_default_with_a_level_lookup(tmp_path):
    config = log_config.SparkLogConfig(tmp_path)
    options = config.java_options("info")
    assert options == [f"-Dlog4j2.configurationFile={config.path}", "-Ddataharbour.log.level=INFO"]
    assert config.java_options() == options[:1]
    text = config.path.read_text()
    assert "rootLogger.level = ${sys:dataharbour.log.level:-${env:DATAHARBOUR_LOG_LEVEL:-WARN}}" in text
    assert "appender.console.target = SYSTEM_ERR" in text  # from Spark's own defaults
    assert "rootLogger.level = info" not in text


def test_read_signals_tolerates_missing_partial_and_malformed_files(tmp_path):
    assert read_signals(tmp_path) is None
    path = tmp_path / SIGNALS_FILE
    for junk in (b"", b'{"app_id": "local-1', b"[1, 2]", b"\xff\xfe"):
        path.write_bytes(junk)
        assert read_signals(tmp_path) is None
    path.write_text(json.dumps({"app_id": "local-123", "ui_url": "http://localhost:4041", "ready_at": 1.5}))
    signals = read_signals(tmp_path)
    assert (signals.app_id, signals.ui_url, signals.ui_port, signals.ready, signals.stopped) == (
        "local-123", "http://localhost:4041", 4041, True, False,
    )  # fmt: skip
    path.write_text(json.dumps({"app_id": 7, "ui_url": None, "ready_at": 1.5, "stopped_at": 2.0}))
    signals = read_signals(tmp_path)
    assert (signals.app_id, signals.ui_port, signals.ready, signals.stopped) == (None, None, True, True)


def fake_spark_home(root):
    jars = root / "jars"
    jars.mkdir(parents=True)
    (jars / "spark-core_2.13-4.0.0.jar").write_bytes(b"core")
    return root


def test_archive_key_changes_with_the_classpath_and_the_java(tmp_path):
    home = fake_spark_home(tmp_path / "spark")
    java = tmp_path / "java"
    (java / "lib" / "server").mkdir(parents=True)
    (java / "release").write_text('JAVA_VERSION="17.0.15"\n')
    key = class_data.archive_key(java, home)
    assert key == class_data.archive_key(java, home)
    (home / "jars" / "extra.jar").write_bytes(b"x")
    added = class_data.archive_key(java, home)
    assert added != key
    (home / "jars" / "extra.jar").write_bytes(b"xy")  # same name, new size
    resized = class_data.archive_key(java, home)
    assert resized != added
    os.utime(home / "jars" / "extra.jar", ns=(1, 1))  # same size, new mtime
    assert class_data.archive_key(java, home) != resized
    before = class_data.archive_key(java, home)
    (java / "release").write_text('JAVA_VERSION="21.0.1"\n')
    assert class_data.archive_key(java, home) != before


def test_archive_is_offered_only_while_it_is_what_the_build_recorded(tmp_path):
    archive = class_data.ClassDataArchive(tmp_path)
    assert archive.state == "not built" and archive.java_options() == []
    archive.dir.mkdir(parents=True)
    archive.path.write_bytes(b"x" * 1000)
    st = archive.path.stat()
    archive.manifest_path.write_text(json.dumps({"key": archive.key, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))
    again = class_data.ClassDataArchive(tmp_path)
    assert again.state == "ready"
    assert again.java_options() == [f"-XX:SharedArchiveFile={again.path}", "-Xshare:auto"]
    # Truncated (a truncated archive crashes JDK 17 with SIGBUS): no longer offered.
    with open(again.path, "r+b") as f:
        f.truncate(500)
    assert again.java_options() == []
    disabled = class_data.ClassDataArchive(tmp_path, enabled=False)
    assert disabled.state == "disabled" and disabled.java_options() == []
    assert disabled.build_in_background() is None
