"""Bad input: a clear 4xx naming the field, and nothing is run or stored."""

import json
import logging

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


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"text"', "", "  \n"])
async def test_malformed_bodies_get_400(api, raw):
    status, error = await api.call("POST", "jobs/", raw_body=raw)
    assert status == 400 and error["message"].startswith(("body", "name", "request body")), error


async def test_empty_body_says_so(api):
    status, error = await api.call("POST", "jobs/", raw_body="")
    assert (status, error["message"]) == (400, "request body is empty")


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


# ---- text that cannot be encoded as UTF-8 (JSON's "\ud800" escapes) -------------------------

LONE = "\ud800"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "name": f"x{LONE}"}, "name"),
        ({**GOOD, "code": f"print('{LONE}')\n"}, "code"),
        ({"name": "f", "file": f"job{LONE}.py"}, "file"),
        ({**GOOD, "cluster_id": LONE}, "cluster_id"),
        ({**GOOD, "args": ["ok", LONE]}, "args[1]"),
        ({**GOOD, "conf": {"spark.a": LONE}}, "conf['spark.a']"),
        ({**GOOD, "conf": {f"spark.{LONE}": "1"}}, "conf"),
        ({**GOOD, "env": {"GREETING": LONE}}, "env['GREETING']"),
        ({**GOOD, "env": {f"X{LONE}": "1"}}, "env"),
        ({**GOOD, LONE: 1}, "body"),
    ],
)
async def test_unencodable_text_gets_400_naming_the_field(api, body, field):
    status, error = await api.call("POST", "jobs/", raw_body=json.dumps(body))  # ensure_ascii: \ud800
    assert status == 400, error
    assert error["message"].startswith(f"{field}: "), error
    assert "UTF-8" in error["message"]
    _, listing = await api.call("GET", "jobs/")
    assert listing["total"] == 0


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("jobs/", {"name": b"\xed\xa0\x80"}, "name"),  # a UTF-8 encoded surrogate
        ("jobs/", {"cluster_id": b"\xff"}, "cluster_id"),
        ("jobs/", {"state": b"queued,\xed\xa0\x80"}, "state"),
        ("jobs/", {b"\xff": "1"}, "%FF"),
        ("jobs/nope/logs", {"tail": b"1\xff"}, "tail"),
    ],
)
async def test_query_text_that_is_not_utf8_gets_400(api, path, params, field):
    status, error = await api.call("GET", path, params=params)
    assert status == 400, error
    assert error["message"].startswith(f"{field}: ") and "UTF-8" in error["message"], error


# ---- messages in plain English, with the user's own field path --------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**GOOD, "conf": {"spark.a": {"nested": 1}}}, "conf['spark.a']: must be a string, a number or a boolean"),
        ({**GOOD, "conf": {"spark.a": None}}, "conf['spark.a']: must be a string, a number or a boolean"),
        ({**GOOD, "args": ["ok", 2, ["nested"]]}, "args[2]: must be a string, a number or a boolean"),
        ({**GOOD, "args": "--verbose"}, "args: must be a list"),
        ({**GOOD, "conf": ["spark.x=1"]}, "conf: must be an object"),
        ({**GOOD, "env": {"X": {"y": 1}}}, "env['X']: must be a string, a number or a boolean"),
        ({**GOOD, "name": "   "}, "name: must not be blank"),
        ({**GOOD, "name": ""}, "name: must not be blank"),
        ({"code": "print(1)"}, "name: is required"),
        ({**GOOD, "code": 42}, "code: must be a string"),
        ({**GOOD, "colour": "red"}, "colour: unknown field"),
        ({**GOOD, "args": ["x"] * 1001}, "args: must have at most 1000 items"),
    ],
)
async def test_messages_are_plain_english(api, body, message):
    status, error = await api.call("POST", "jobs/", body)
    assert (status, error["message"]) == (400, message)


@pytest.mark.parametrize(
    ("body", "prefix"),
    [
        ({**GOOD, "conf": {"not.spark": "1"}}, "conf['not.spark']: not a Spark conf key"),
        ({**GOOD, "conf": {"spark.master": "yarn"}}, "conf['spark.master']: is set by DataHarbour"),
        ({**GOOD, "conf": {"spark.x": "1\n--conf a=b"}}, "conf['spark.x']: must be one line"),
        ({**GOOD, "env": {"BAD-NAME": "x"}}, "env['BAD-NAME']: not a valid environment variable name"),
        ({**GOOD, "env": {"SPARK_HOME": "/x"}}, "env['SPARK_HOME']: is managed by DataHarbour"),
        ({**GOOD, "args": ["ok", "a\x00b"]}, "args[1]: must be under"),
    ],
)
async def test_item_errors_name_the_item(api, body, prefix):
    status, error = await api.call("POST", "jobs/", body)
    assert status == 400 and error["message"].startswith(prefix), error


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "abc"}, "limit: must be an integer"),
        ({"limit": "0"}, "limit: must be at least 1"),
        ({"order": "sideways"}, "order: must be 'asc' or 'desc'"),
        ({"sort": "colour"}, "sort: must be 'created_at', 'updated_at', 'name' or 'state'"),
    ],
)
async def test_query_messages_are_plain_english(api, params, message):
    status, error = await api.call("GET", "jobs/", params=params)
    assert (status, error["message"]) == (400, message)


@pytest.mark.parametrize("key", ["spark.driver.bindAddress", "spark.driver.host"])
async def test_driver_address_comes_from_the_cluster_not_the_job(api, key):
    status, error = await api.call("POST", "jobs/", {**GOOD, "conf": {key: "0.0.0.0"}})
    assert status == 400 and error["message"].startswith(f"conf['{key}']: "), error
    assert "cluster" in error["message"]


# ---- every 4xx is logged once -----------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def server_log(jp_serverapp, extension):
    """Every record the server logs: the extension's and ServerApp's loggers do not propagate."""
    handler = _Records()
    loggers = {extension.log, jp_serverapp.log, logging.getLogger()}
    for logger in loggers:
        logger.addHandler(handler)
    yield handler.records
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "jobs/", {**GOOD, "name": "   "}, 400, "name: must not be blank"),
        ("GET", "jobs/", {"limit": "0"}, 400, "limit: must be at least 1"),
        ("GET", "jobs/nope", None, 404, "nope"),
        ("GET", "jobs/nope/spark-ui/proxy/", None, 404, "nope"),
        ("GET", "jobs/nope/spark-ui/proxy/jobs/job/kill/", None, 403, "kill"),
    ],
)
async def test_each_4xx_is_logged_once(api, server_log, method, path, body, status, message):
    if method == "GET":
        got, _ = await api.call(method, path, params=body)
    else:
        got, _ = await api.call(method, path, body)
    assert got == status
    warnings = [r.getMessage() for r in server_log if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{status} {method} ") and f"/api/v1/{path}" in warnings[0], warnings
    assert message in warnings[0]


async def test_jupyterlabs_cache_buster_is_not_an_unknown_field(api):
    """ServerConnection adds `&<milliseconds>` to every GET; a named unknown field is still 400."""
    for path, params in (("jobs/", {"limit": 5, "1795770527680": ""}), ("clusters/", {"1795770527680": ""})):
        status, body = await api.call("GET", path, params=params)
        assert status == 200, body
    status, body = await api.call("GET", "jobs/", params={"limit": 5, "1795770527680": "1"})
    assert status == 400 and "1795770527680" in body["message"]


async def test_before_goes_with_tail(api):
    job = await api.submit(name="short", code="print('a')\nprint('b')\n")
    await api.wait(job["id"])
    status, body = await api.call("GET", f"jobs/{job['id']}/logs", params={"before": 2})
    assert status == 400 and body["message"] == "before: goes with tail: the last N lines before that offset"
    last = await api.logs(job["id"], tail=1)
    earlier = await api.logs(job["id"], tail=1, before=last["offset"])
    assert earlier["next_offset"] == last["offset"] and earlier["lines"] != last["lines"]
