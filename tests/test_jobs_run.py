"""Jobs run real PySpark through real spark-submit: output, failure, args/conf/env, files."""

import json

import nbformat

SEED_BODY = {
    "name": "Word Count Job",
    "code": 'from pyspark.sql import SparkSession\nspark = SparkSession.builder.getOrCreate()\ndf = spark.read.text("data.txt")\ndf.show()',
    "cluster_id": "spark-cluster-default",
}

OPTIONS_PROGRAM = """
import os, sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("ARGS", sys.argv[1:])
print("CONF", spark.conf.get("spark.sql.shuffle.partitions"))
print("ENV", os.environ["GREETING"])
print("APPNAME", spark.sparkContext.appName)
print("SECRET LENGTH", len(spark.conf.get("spark.hadoop.fs.s3a.secret.key")))
print("PATH CONF", spark.conf.get("spark.myapp.path"))
print("CWD", os.getcwd())
"""


async def test_seed_example_and_options_run_on_real_spark(api, extension, jp_root_dir):
    (jp_root_dir / "data.txt").write_text("hello harbour\nsecond line\n")
    events = []
    extension.hub.subscribe(events.append)
    seed = await api.submit(**SEED_BODY)
    assert seed["state"] in ("queued", "starting")
    assert seed["cluster_id"] == "spark-cluster-default" and seed["attempt"] == 1
    options = await api.submit(
        name="options",
        code=OPTIONS_PROGRAM,
        args=["--input", "a b", 7],
        conf={
            "spark.sql.shuffle.partitions": 3,
            "spark.hadoop.fs.s3a.secret.key": "s3cr3t-value",
            "spark.myapp.path": "C:\\data\\x=1 #not a comment",
        },
        env={"GREETING": "ahoy", "AWS_SECRET_ACCESS_KEY": "hunter2"},
    )
    assert options["env"]["AWS_SECRET_ACCESS_KEY"] == "********", "secrets never come back"

    done = await api.wait(seed["id"])
    assert done["state"] == "succeeded", done
    assert done["exit_code"] == 0 and done["error"] is None
    assert done["spark_app_id"].startswith("local-")
    assert done["started_at"] and done["finished_at"] and done["duration"] > 0
    log = await api.full_log(seed["id"])
    assert "|hello harbour|" in log and "  second line|" in log  # df.show() of the user's own file
    seed_states = [e.data["state"] for e in events if e.type == "job_update" and e.data["id"] == seed["id"]]
    assert [state for i, state in enumerate(seed_states) if i == 0 or seed_states[i - 1] != state] == [
        "queued", "starting", "running", "succeeded"
    ]  # every state change was published, in order

    done = await api.wait(options["id"])
    assert done["state"] == "succeeded", done
    log = await api.full_log(options["id"])
    assert "ARGS ['--input', 'a b', '7']" in log
    assert "CONF 3" in log and "ENV ahoy" in log and "APPNAME options" in log
    assert "SECRET LENGTH 12" in log and "PATH CONF C:\\data\\x=1 #not a comment" in log
    with open(f"{extension.state_dir}/runs/{options['id']}/1/command.json") as f:
        command = json.load(f)
    assert not any("s3cr3t" in part for part in command["argv"])  # conf is not on the command line
    assert f"CWD {jp_root_dir}" in log
    assert "hunter2" not in json.dumps(await api.job(options["id"]))
    assert "s3cr3t" not in json.dumps(await api.job(options["id"]))


async def test_failing_job_reports_the_exception_line(api):
    job = await api.submit(
        name="fails",
        code="import sys\nprint('about to fail')\ndef load():\n    raise ValueError('bad input 42')\nload()\n",
    )
    done = await api.wait(job["id"])
    assert done["state"] == "failed"
    assert done["exit_code"] not in (0, None)
    assert done["error"] == "ValueError: bad input 42"
    assert done["runs"][0]["error"] == "ValueError: bad input 42"


async def test_job_from_contents_file_and_notebook(api, jp_root_dir):
    (jp_root_dir / "jobs").mkdir()
    (jp_root_dir / "jobs" / "hello.py").write_text("import sys\nprint('from file', sys.argv[1])\n")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("%matplotlib inline\nvalue = 6 * 7"),
        nbformat.v4.new_code_cell("print('from notebook', value)"),
    ]
    nbformat.write(notebook, jp_root_dir / "jobs" / "nb.ipynb")

    from_file = await api.submit(name="file job", file="jobs/hello.py", args=["x"])
    from_notebook = await api.submit(name="notebook job", file="jobs/nb.ipynb")
    assert from_file["source"] == "file" and from_file["file"] == "jobs/hello.py"
    assert (await api.wait(from_file["id"]))["state"] == "succeeded"
    assert (await api.wait(from_notebook["id"]))["state"] == "succeeded"
    assert "from file x" in await api.full_log(from_file["id"])
    assert "from notebook 42" in await api.full_log(from_notebook["id"])
