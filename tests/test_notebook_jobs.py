"""Notebook jobs: `POST /jobs/` with `notebook` and `parameters` runs the whole notebook in a
kernel of its own under the run's supervisor, on real ipykernel (and real Spark for the PySpark
notebook), with the states, progress, logs, kill and restart of any job."""

import asyncio
import json
import time

import nbformat
import psutil
import pytest

from dataharbour_ext.runs import folder


def notebook(*cells, kernel="python3"):
    nb = nbformat.v4.new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    return nb


def code(source, *tags, outputs=None):
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)} if tags else {})
    if outputs:
        cell.outputs = outputs
        cell.execution_count = 7
    return cell


def write(root, path, nb):
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, root / path)


def stream_text(cell) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", []) if output["output_type"] == "stream")


async def output(api, job_id, **params):
    status, body = await api.call("GET", f"jobs/{job_id}/output", params=params)
    assert status == 200, body
    return nbformat.reads(json.dumps(body), as_version=4) if isinstance(body, dict) else body


async def test_parameters_are_injected_and_the_executed_notebook_is_the_output(api, jp_root_dir, extension):
    write(jp_root_dir, "reports/daily.ipynb", notebook(
        code("region = 'eu'\ndays = 1", "parameters"),
        code("import os\nprint('region', region, 'days', days, 'cwd', os.path.basename(os.getcwd()))"),
        code("total = days * 2\nprint('total', total)"),
        code("print('from an earlier run')", outputs=[nbformat.v4.new_output("stream", text="stale\n")]),
    ))

    job = await api.submit(name="daily", notebook="reports/daily.ipynb", parameters={"region": "us", "days": 3})

    assert (job["source"], job["notebook"], job["parameters"]) == ("notebook", "reports/daily.ipynb",
                                                                     {"region": "us", "days": 3})
    assert job["mode"] == "notebook"
    snapshot = nbformat.reads(job["code"], as_version=4)
    assert snapshot.cells[3].outputs == [] and snapshot.cells[3].execution_count is None  # outputs left out
    done = await api.wait(job["id"])
    assert done["state"] == "succeeded", done["error"]
    assert done["progress"]["cells"] == {"total": 5, "done": 5, "failed": 0, "active": 0}
    assert done["progress"]["percent"] == 100.0

    executed = await output(api, job["id"])
    assert executed.cells[1].metadata["tags"] == ["injected-parameters"]
    assert executed.cells[1].source == "# Parameters\nregion = 'us'\ndays = 3\n"
    assert stream_text(executed.cells[2]) == "region us days 3 cwd reports\n"  # run in the notebook's folder
    assert stream_text(executed.cells[3]) == "total 6\n"
    assert stream_text(executed.cells[4]) == "from an earlier run\n"
    assert executed.metadata["dataharbour"]["status"] == "succeeded"
    # The log: cell by cell, with the cells' output.
    log = await api.full_log(job["id"])
    assert "[cell 2/5] started" in log and "region us days 3 cwd reports" in log and "[cell 5/5] done in" in log

    response = await api.fetch("api", "v1", "jobs", job["id"], "output", params={"format": "html"})
    html = response.body.decode()
    assert "total 6" in html and "<html" in html
    # Its scripts run in a sandbox of their own origin, framed by this server only.
    assert response.headers["Content-Security-Policy"] == "sandbox allow-scripts; frame-ancestors 'self'"
    assert response.headers["Content-Disposition"].startswith('inline; filename="daily.')
    # The notebook itself is as it was: the job ran a snapshot.
    assert "stale" in (jp_root_dir / "reports/daily.ipynb").read_text()

    # A restart is a second attempt with its own output; the first stays readable.
    await api.call("POST", f"jobs/{job['id']}/restart")
    again = await api.wait(job["id"])
    assert (again["state"], again["attempt"]) == ("succeeded", 2)
    assert stream_text((await output(api, job["id"], attempt=2)).cells[3]) == "total 6\n"
    assert stream_text((await output(api, job["id"], attempt=1)).cells[3]) == "total 6\n"


async def test_secret_parameters_reach_the_kernel_but_never_an_answer(api, jp_root_dir):
    write(jp_root_dir, "secret.ipynb", notebook(
        code("db_password = ''\nuser = 'nobody'", "parameters"),
        code("print('length', len(db_password), 'user', user)"),
    ))

    job = await api.submit(name="secret", notebook="secret.ipynb", parameters={"db_password": "hunter2", "user": "ann"})
    done = await api.wait(job["id"])

    assert done["state"] == "succeeded", done["error"]
    assert done["parameters"] == {"db_password": "********", "user": "ann"}
    executed = await output(api, job["id"])
    assert stream_text(executed.cells[2]) == "length 7 user ann\n"  # the kernel had the real value
    assert executed.cells[1].source == "# Parameters\ndb_password = '********'\nuser = 'ann'\n"
    assert executed.metadata["dataharbour"]["parameters"] == {"db_password": "********", "user": "ann"}
    status, html = await api.call("GET", f"jobs/{job['id']}/output", params={"format": "html"})
    assert "hunter2" not in html and "hunter2" not in json.dumps(executed)


async def test_a_notebook_job_by_file_id_and_a_failing_cell(api, jp_root_dir):
    write(jp_root_dir, "broken.ipynb", notebook(
        code("print('first')"),
        code("raise ValueError('no data for ' + 'today')"),
        code("print('never')"),
    ))
    status, listed = await api.call("GET", "notebooks/")
    notebook_id = next(item["id"] for item in listed["notebooks"] if item["path"] == "broken.ipynb")

    job = await api.submit(name="broken", notebook=notebook_id)
    done = await api.wait(job["id"])

    assert done["state"] == "failed"
    assert done["error"] == "ValueError: no data for today (cell 2)"
    assert done["progress"]["cells"] == {"total": 3, "done": 1, "failed": 1, "active": 0}
    executed = await output(api, job["id"])
    assert executed.cells[1].outputs[-1]["ename"] == "ValueError"
    assert executed.cells[2].execution_count is None
    assert executed.metadata["dataharbour"]["status"] == "failed"


DEEP = 1
for _ in range(600):  # deeper than Python's recursion would take: a 400, never a 500
    DEEP = [DEEP]


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"notebook": "missing.ipynb"}, "notebook", "no notebook 'missing.ipynb'"),
        ({"notebook": "run.ipynb", "parameters": {"not valid": 1}}, "parameters", "not a Python identifier"),
        ({"notebook": "run.ipynb", "parameters": {"class": 1}}, "parameters", "not a Python identifier"),
        ({"notebook": "run.ipynb", "args": ["x"]}, "args", "takes parameters, not args"),
        ({"notebook": "run.ipynb", "mode": "connect"}, "mode", "kernel of its own"),
        ({"notebook": "run.ipynb", "kernel_name": "nope"}, "kernel_name", "no kernel 'nope'"),
        ({"notebook": "run.ipynb", "code": "print(1)"}, "notebook", "not code and notebook"),
        ({"code": "print(1)", "parameters": {"a": 1}}, "parameters", "only notebook jobs"),
        ({"notebook": "notes.txt"}, "notebook", "not a notebook"),
        ({"notebook": "../outside.ipynb"}, "notebook", "outside"),
        ({"notebook": ".hidden.ipynb"}, "notebook", "no notebook '.hidden.ipynb'"),
        ({"notebook": "run.ipynb", "parameters": {"deep": DEEP}},
         "parameters", "nested more than 32 levels"),
    ],
)
async def test_bad_notebook_jobs_are_refused_with_the_field(api, jp_root_dir, body, field, words):
    write(jp_root_dir, "run.ipynb", notebook(code("print(1)")))
    write(jp_root_dir, ".hidden.ipynb", notebook(code("print(1)")))
    (jp_root_dir / "notes.txt").write_text("text")

    status, error = await api.call("POST", "jobs/", {"name": "bad", **body})

    assert status == 400, error
    assert field in error["message"] and words in error["message"], error
    status, jobs = await api.call("GET", "jobs/")
    assert jobs["total"] == 0


async def test_unknown_notebook_id_is_404_and_output_of_other_jobs(api):
    status, error = await api.call("POST", "jobs/", {"name": "x", "notebook": "4c9f2d0e-0000-4000-8000-000000000000"})
    assert status == 404, error

    job = await api.submit(name="program", code="print(1)")
    status, error = await api.call("GET", f"jobs/{job['id']}/output")
    assert status == 404 and "not a notebook job" in error["message"]
    status, error = await api.call("GET", "jobs/nope/output")
    assert status == 404
    await api.wait(job["id"])


async def test_kill_stops_a_running_notebook_job_its_kernel_and_its_children(api, jp_root_dir, extension):
    write(jp_root_dir, "slow.ipynb", notebook(
        code("import subprocess, time\nchild = subprocess.Popen(['sleep', '300'])\nprint('child', child.pid)"),
        code("print('sleeping', flush=True)\ntime.sleep(300)"),
    ))
    job = await api.submit(name="slow", notebook="slow.ipynb")
    deadline = time.monotonic() + 120
    while "sleeping" not in await api.full_log(job["id"]):
        assert time.monotonic() < deadline, await api.full_log(job["id"])
        await asyncio.sleep(0.2)
    running = await api.job(job["id"])
    while not running["progress"]:  # the engine reads it at its next tick
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
        running = await api.job(job["id"])
    assert running["state"] == "running"
    assert running["progress"]["cells"] == {"total": 2, "done": 1, "failed": 0, "active": 1}
    assert running["progress"]["current_cell"] == 1
    # Watchable while it runs: the output so far.
    so_far = await output(api, job["id"])
    assert stream_text(so_far.cells[0]).startswith("child ")
    run_dir = extension.jobs.engine.watched(job["id"]).run.run_dir
    supervisor = folder.read_supervisor(run_dir)
    below = psutil.Process(supervisor.pid).children(recursive=True)
    assert any(p.name() == "sleep" for p in below)

    status, killed = await api.call("POST", f"jobs/{job['id']}/kill")

    assert status == 200 and killed["state"] == "killed", killed
    _, alive = psutil.wait_procs(below, timeout=10)
    assert alive == []
    executed = await output(api, job["id"])
    assert executed.metadata["dataharbour"]["status"] == "killed"


PYSPARK_NOTEBOOK = [
    code("rows = 1000", "parameters"),
    code("from pyspark.sql import SparkSession\nspark = SparkSession.builder.getOrCreate()\n"
         "print('master', spark.sparkContext.master)"),
    code("print('sum', spark.range(rows).selectExpr('sum(id) as s').first().s)"),
]


async def test_a_pyspark_notebook_runs_on_the_default_cluster(api, jp_root_dir):
    write(jp_root_dir, "spark.ipynb", notebook(*PYSPARK_NOTEBOOK))

    job = await api.submit(name="pyspark notebook", notebook="spark.ipynb", parameters={"rows": 100},
                           conf={"spark.sql.shuffle.partitions": "3"})
    done = await api.wait(job["id"], timeout=240)

    assert done["state"] == "succeeded", (done["error"], await api.full_log(job["id"]))
    executed = await output(api, job["id"])
    assert stream_text(executed.cells[2]) == "master local[*]\n", executed.cells[2]
    assert stream_text(executed.cells[3]) == "sum 4950\n", executed.cells[3]
    # The kernel's SparkContext reported itself as a batch driver does: its application, Spark progress.
    assert (done["spark_app_id"] or "").startswith("local-"), done
    assert done["progress"]["jobs"]["done"] >= 1 and done["progress"]["cells"]["done"] == 4, done
