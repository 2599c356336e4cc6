"""Bad input: a clear 4xx naming the field, and nothing is run or stored."""

import json

import pytest

GOOD = {"name": "ok", "code": "print(1)\n"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "no program"}, "code"),
        ({"name": "both", "code": "print(1)", "file": "x.py"}, "file"),
        ({**GOOD, "cluster_id": "nope"}, "cluster_id"),
        ({**GOOD, "conf": {"not.spark": "1"}}, "conf"),
        ({**GOOD, "conf": {"spark.executor.memory": "1g\n--conf spark.x=y"}}, "conf"),
        ({**GOOD, "conf": {"spark.master": "yarn"}}, "conf"),
        ({**GOOD, "conf": {"spark.x": {"nested": 1}}}, "conf"),
        ({**GOOD, "conf": ["spark.x=1"]}, "conf"),
        ({**GOOD, "args": "--verbose"}, "args"),
        ({**GOOD, "args": [["nested"]]}, "args"),
        ({**GOOD, "env": {"BAD-NAME": "x"}}, "env"),
        ({**GOOD, "env": {"SPARK_HOME": "/elsewhere"}}, "env"),
        ({**GOOD, "name": "x" * 201}, "name"),
        ({**GOOD, "name": "   "}, "name"),
        ({**GOOD, "name": "two\nlines"}, "name"),
        ({"code": "print(1)"}, "name"),
        ({**GOOD, "code": "def broken(:\n"}, "code"),
        ({**GOOD, "code": "   \n"}, "code"),
        ({**GOOD, "code": 42}, "code"),
        ({**GOOD, "colour": "red"}, "colour"),
        ({"name": "missing", "file": "does/not/exist.py"}, "file"),
        ({"name": "wrong kind", "file": "data.csv"}, "file"),
    ],
)
async def test_bad_submissions_get_400_naming_the_field(api, body, field):
    status, error = await api.call("POST", "jobs/", body)
    assert status == 400, error
    assert error["message"].startswith(f"{field}"), error
    _, listing = await api.call("GET", "jobs/")
    assert listing["total"] == 0  # nothing stored, nothing run


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"text"', ""])
async def test_malformed_bodies_get_400(api, raw):
    status, error = await api.call("POST", "jobs/", raw_body=raw)
    assert status == 400 and error["message"].startswith(("body", "name")), error


async def test_oversized_program_gets_413(api):
    status, error = await api.call("POST", "jobs/", {"name": "big", "code": "#" * (1024 * 1024 + 1)})
    assert status == 413 and "code" in error["message"]
    status, error = await api.call("POST", "jobs/", raw_body=json.dumps({"name": "huge", "code": "#" * 3_000_000}))
    assert status == 413
    _, listing = await api.call("GET", "jobs/")
    assert listing["total"] == 0


async def test_args_and_conf_cannot_become_spark_submit_flags(api, extension):
    job = await api.submit(
        name="--master yarn",
        code=(
            "import sys\nfrom pyspark.sql import SparkSession\nspark = SparkSession.builder.getOrCreate()\n"
            "print('ARGV', sys.argv[1:])\nprint('MASTER', spark.sparkContext.master)\n"
            "print('NOTE', spark.conf.get('spark.myapp.note'))\n"
        ),
        args=["--master", "yarn", "--conf", "spark.x=1"],
        conf={"spark.myapp.note": "x --master yarn --py-files /etc/passwd"},
    )
    done = await api.wait(job["id"])
    assert done["state"] == "succeeded", done
    log = await api.full_log(job["id"])
    assert "ARGV ['--master', 'yarn', '--conf', 'spark.x=1']" in log
    assert "MASTER local[*]" in log and "NOTE x --master yarn --py-files /etc/passwd" in log


async def test_unknown_job_is_404(api):
    for method, path in [
        ("GET", "jobs/nope"),
        ("POST", "jobs/nope/kill"),
        ("POST", "jobs/nope/restart"),
        ("GET", "jobs/nope/logs"),
        ("GET", "jobs/nope/spark-ui"),
        ("GET", "jobs/nope/spark-ui/proxy/"),
    ]:
        status, body = await api.call(method, path)
        assert status == 404, (method, path, body)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("jobs/", {"offset": "99999999999999999999"}, "offset"),
        ("jobs/", {"limit": "abc"}, "limit"),
        ("jobs/", {"order": "sideways"}, "order"),
    ],
)
async def test_bad_query_values_get_400(api, path, params, field):
    status, error = await api.call("GET", path, params=params)
    assert status == 400 and error["message"].startswith(field), error


async def test_huge_log_attempt_and_odd_json_get_400(api):
    job = await api.submit(name="tiny", code="print(1)\n")
    status, error = await api.call("GET", f"jobs/{job['id']}/logs", params={"attempt": str(2**63)})
    assert status == 400 and error["message"].startswith("attempt")
    status, error = await api.call("GET", f"jobs/{job['id']}/logs", params={"offset": "-1"})
    assert status == 400 and error["message"].startswith("offset")
    for raw in ["[" * 100_000, '{"name": "x", "code": "print(1)", "args": [NaN]}']:
        status, error = await api.call("POST", "jobs/", raw_body=raw)
        assert status == 400 and error["message"].startswith("body"), error
    await api.wait(job["id"])


async def test_messages_keep_percent_signs(api):
    status, error = await api.call("POST", "jobs/", {**GOOD, "cluster_id": "100%"})
    assert status == 400 and "'100%'" in error["message"] and "%%" not in error["message"]


async def test_file_outside_the_root_is_400(api):
    for path in ["../../etc/passwd.py", "a\u0000.py"]:
        status, error = await api.call("POST", "jobs/", {"name": "escape", "file": path})
        assert status == 400 and error["message"].startswith("file"), error
