"""Jobs and object storage, against a real S3 server (SeaweedFS): input objects downloaded into
the run folder before it starts, outputs, logs and executed notebooks archived in the bucket
after it ends, downloadable through the API, logs read back from the archive, and the S3A
settings in the owner-only properties file only."""

import asyncio
import io
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import replace

import nbformat
import pytest
from seaweedfs import seaweedfs_fixture  # noqa: F401  (the `seaweedfs` fixture)

DATA = "job-data"
ARCHIVE = "job-archive"
STORAGE_VARIABLES = ("MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_BUCKET_NAME", "MINIO_SECURE")

# No Spark session: the program reads its input, writes its output, and ends.
READ_AND_WRITE = """
import os, pathlib
text = pathlib.Path(os.environ["DATAHARBOUR_INPUT_DIR"], "nested", "words.txt").read_text()
print("READ", text.strip())
out = pathlib.Path(os.environ["DATAHARBOUR_OUTPUT_DIR"])
print("OUTPUT EMPTY", list(out.iterdir()) == [])
(out / "sub").mkdir()
(out / "sub" / "result.txt").write_text(text.upper())
print("CWD", os.getcwd())
"""

WRITE_ONE_FILE = "import os, pathlib\npathlib.Path(os.environ['DATAHARBOUR_OUTPUT_DIR'], 'r.txt').write_text('r')\n"


@pytest.fixture(autouse=True)
def no_storage_from_the_environment(monkeypatch):
    """Only what a test configures is configured."""
    for name in STORAGE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def storage(bucket: str = ARCHIVE, **traits):
    """The test server's object storage: the session's SeaweedFS, archiving into `bucket`."""

    def build(request):
        weed = request.getfixturevalue("seaweedfs")
        client = weed.client()
        for name in (DATA, ARCHIVE):
            if not client.bucket_exists(name):
                client.make_bucket(name)
        return {"service_environment": {
            "MINIO_ENDPOINT": f"http://{weed.endpoint}", "MINIO_ACCESS_KEY": weed.access_key,
            "MINIO_SECRET_KEY": weed.secret_key, "MINIO_BUCKET_NAME": bucket,
        }, **traits}

    return pytest.mark.parametrize("dataharbour_config", [build], indirect=True)


def silent_storage(**traits):
    """The test server's object storage: a loopback port that takes connections and never
    answers, as a hung S3 would (the kernel completes the handshakes; nobody reads)."""

    def build(request):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        request.addfinalizer(listener.close)  # the waiting connections are reset: no thread stays blocked
        host, port = listener.getsockname()
        return {"service_environment": {
            "MINIO_ENDPOINT": f"http://{host}:{port}", "MINIO_ACCESS_KEY": "silent-key",
            "MINIO_SECRET_KEY": "silent-secret", "MINIO_BUCKET_NAME": ARCHIVE,
        }, **traits}

    return pytest.mark.parametrize("dataharbour_config", [build], indirect=True)


@pytest.fixture
def dataharbour_config(request):
    build = getattr(request, "param", None)
    return build(request) if build else {}


def put(weed, key: str, body: bytes, bucket: str = DATA) -> str:
    weed.client().put_object(bucket, key, io.BytesIO(body), len(body))
    return f"s3://{bucket}/{key}"


def read(weed, uri: str) -> bytes:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    response = weed.client().get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


async def archived(api, job_id, timeout=60):
    """The job once its latest run's files are archived (or archiving failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await api.job(job_id)
        if job["artifacts"] is not None or job["artifacts_error"]:
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id}: its files were not archived within {timeout} s")


@storage()
async def test_a_job_reads_its_input_and_its_output_and_log_are_archived(api, extension, seaweedfs, jp_root_dir):
    uri = put(seaweedfs, "in/words.txt", b"harbour lights\n")
    job = await api.submit(name="reads and writes", code=READ_AND_WRITE,
                           inputs=[{"uri": uri, "as": "nested/words.txt"}])
    assert job["inputs"] == [{"uri": uri, "as": "nested/words.txt"}]

    done = await api.wait(job["id"])
    assert done["state"] == "succeeded", done
    log = await api.full_log(job["id"])
    assert "READ harbour lights" in log and "OUTPUT EMPTY True" in log
    assert f"CWD {jp_root_dir}" in log  # the working directory stays the Jupyter root

    done = await archived(api, job["id"])
    assert done["state"] == "succeeded" and done["artifacts_error"] is None
    prefix = f"s3://{ARCHIVE}/jobs/{job['id']}/1/"
    result = b"HARBOUR LIGHTS\n"
    by_name = {artifact["name"]: artifact for artifact in done["artifacts"]}
    assert set(by_name) == {"output.log", "output/sub/result.txt"}
    assert by_name["output/sub/result.txt"] == {"name": "output/sub/result.txt", "uri": prefix + "output/sub/result.txt",
                                                "size": len(result)}
    assert by_name["output.log"]["uri"] == prefix + "output.log"
    assert done["runs"][0]["artifacts"] == done["artifacts"]
    # In the bucket, as the program wrote them.
    assert read(seaweedfs, prefix + "output/sub/result.txt") == result
    assert b"READ harbour lights" in read(seaweedfs, prefix + "output.log")

    # Downloadable through the API, streamed from the bucket.
    response = await api.fetch("api", "v1", "jobs", job["id"], "artifacts", "output", "sub", "result.txt",
                               method="GET", params={"attempt": 1})
    assert response.code == 200 and response.body == result
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="result.txt"')
    status, body = await api.call("GET", f"jobs/{job['id']}/artifacts/output/nothing-here.txt")
    assert status == 404 and "no archived file 'output/nothing-here.txt'" in body["message"]

    # The S3A settings went into the owner-only properties file, and nowhere else.
    run_dir = f"{extension.state_dir}/runs/{job['id']}/1"
    with open(f"{run_dir}/spark.properties") as f:
        properties = f.read()
    assert f"spark.hadoop.fs.s3a.endpoint=http://{seaweedfs.endpoint}\n" in properties
    assert "spark.hadoop.fs.s3a.path.style.access=true\n" in properties
    assert "spark.hadoop.fs.s3a.connection.ssl.enabled=false\n" in properties
    assert f"spark.hadoop.fs.s3a.access.key={seaweedfs.access_key}\n" in properties
    assert f"spark.hadoop.fs.s3a.secret.key={seaweedfs.secret_key}\n" in properties
    assert os.stat(f"{run_dir}/spark.properties").st_mode & 0o077 == 0
    with open(f"{run_dir}/command.json") as f:
        assert seaweedfs.secret_key not in f.read()
    view = json.dumps(await api.job(job["id"]))
    assert seaweedfs.secret_key not in view and "fs.s3a" not in view


@storage()
async def test_the_log_is_read_from_the_archive_once_the_run_folder_is_gone(api, extension, seaweedfs):
    job = await api.submit(name="archived log", code="for i in range(3):\n    print('line', i)\n")
    assert (await api.wait(job["id"]))["state"] == "succeeded"
    await archived(api, job["id"])
    before = await api.logs(job["id"], limit=100000)

    shutil.rmtree(f"{extension.state_dir}/runs/{job['id']}/1")  # the run folder is removed

    # Readers arriving together share one fetch of the archived copy, and all get it whole.
    pages = await asyncio.gather(*(api.logs(job["id"], limit=100000) for _ in range(4)))
    assert all(page["lines"] == before["lines"] for page in pages)
    after = await api.logs(job["id"], limit=100000)
    assert "line 2" in after["lines"]
    assert (after["lines"], after["size"], after["complete"]) == (before["lines"], before["size"], True)
    tail = await api.logs(job["id"], tail=1)
    assert tail["lines"] == ["line 2"]


@storage()
async def test_a_missing_or_too_large_input_fails_the_job_before_spark_starts(api, extension, seaweedfs):
    missing = await api.submit(name="missing input", code="print('never runs')\n",
                               inputs=[{"uri": f"s3://{DATA}/no/such/object.csv"}])
    done = await api.wait(missing["id"])
    assert done["state"] == "failed", done
    assert done["error"].startswith(f"could not launch the run: input s3://{DATA}/no/such/object.csv: NoSuchKey"), done
    assert done["exit_code"] is None and done["spark_app_id"] is None
    run_dir = f"{extension.state_dir}/runs/{missing['id']}/1"
    assert not os.path.exists(f"{run_dir}/command.json")  # nothing was launched

    extension.jobs.config.max_input_bytes = 10
    try:
        uri = put(seaweedfs, "in/large.bin", b"x" * 100)
        large = await api.submit(name="large input", code="print('never runs')\n", inputs=[{"uri": uri}])
        done = await api.wait(large["id"])
    finally:
        extension.jobs.config.max_input_bytes = 10 * 1024**3
    assert done["state"] == "failed"
    assert done["error"] == ("could not launch the run: the inputs hold 100 bytes, more than the limit of 10 bytes "
                             "(DataHarbourApp.max_input_bytes)")
    assert not os.path.exists(f"{extension.state_dir}/runs/{large['id']}/1/inputs/large.bin")


@silent_storage()
async def test_a_kill_while_an_input_hangs_ends_the_run_at_once(api, extension):
    job = await api.submit(name="hung input", code="print('never runs')\n",
                           inputs=[{"uri": f"s3://{DATA}/in/large.bin"}])
    await api.wait(job["id"], states={"starting"}, timeout=30)
    await asyncio.sleep(0.5)  # its download is blocked, waiting for an answer that never comes

    status, _ = await api.call("POST", f"jobs/{job['id']}/kill")
    assert status == 200
    # Well within the storage's 60 s read timeout: the kill does not wait for the download.
    done = await api.wait(job["id"], timeout=20)
    assert done["state"] == "killed" and done["error"] is None, done
    assert not os.path.exists(f"{extension.state_dir}/runs/{job['id']}/1/command.json")  # nothing was launched


def objects_under(weed, prefix: str, bucket: str = ARCHIVE) -> list[str]:
    return sorted(item.object_name for item in weed.client().list_objects(bucket, prefix, recursive=True))


async def until(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {timeout} s")


@storage()
async def test_runs_a_stopped_server_left_unarchived_are_archived_by_the_next_one(api, extension, seaweedfs):
    store, me = extension.jobs.store, extension.jobs.engine.owner
    first = await api.submit(name="left unarchived", code="print('left behind')\n")
    second = await api.submit(name="its server lives", code="print('still owned')\n")
    for job in (first, second):
        assert (await api.wait(job["id"]))["state"] == "succeeded"
        await archived(api, job["id"])
        assert not (await store.get_run(job["id"], 1)).archive_pending
    # As a server that stopped before archiving leaves its runs: pending, nothing in the bucket.
    ended = subprocess.Popen(["true"])
    ended.wait()
    gone = replace(me, instance="a-server-that-stopped", pid=ended.pid)  # no such process any more
    alive = replace(me, instance="a-server-that-lives")  # this process: provably alive
    third = await api.submit(name="another host's", code="print('elsewhere')\n")
    assert (await api.wait(third["id"]))["state"] == "succeeded"
    await archived(api, third["id"])
    elsewhere = replace(gone, host="another-machine/1", instance="a-server-elsewhere")
    for job, owner in ((first, gone), (second, alive), (third, elsewhere)):
        await store.update_run(job["id"], 1, artifacts=None, artifacts_error=None, archive_pending=True, owner=owner)
        seaweedfs.client().remove_object(ARCHIVE, f"jobs/{job['id']}/1/output.log")

    assert await extension.jobs.artifacts.resume(me) == 1
    done = await archived(api, first["id"])
    assert [a["name"] for a in done["artifacts"]] == ["output.log"]
    assert b"left behind" in read(seaweedfs, f"s3://{ARCHIVE}/jobs/{first['id']}/1/output.log")
    run = await store.get_run(first["id"], 1)
    assert not run.archive_pending and run.owner.instance == me.instance  # adopted, once
    # The living server's run is its own to archive; the other host's, that host's.
    for job in (second, third):
        run = await store.get_run(job["id"], 1)
        assert run.archive_pending and run.artifacts is None
        assert objects_under(seaweedfs, f"jobs/{job['id']}/") == []


@storage()
async def test_deleting_a_job_deletes_its_archive_unless_told_to_keep_it(api, extension, seaweedfs):
    jobs = []
    for name in ("deleted with its archive", "archive kept"):
        job = await api.submit(name=name, code=WRITE_ONE_FILE)
        assert (await api.wait(job["id"]))["state"] == "succeeded"
        await archived(api, job["id"])
        assert objects_under(seaweedfs, f"jobs/{job['id']}/") == [f"jobs/{job['id']}/1/output.log",
                                                                   f"jobs/{job['id']}/1/output/r.txt"]
        jobs.append(job)

    status, _ = await api.call("DELETE", f"jobs/{jobs[0]['id']}")
    assert status == 204
    await until(lambda: objects_under(seaweedfs, f"jobs/{jobs[0]['id']}/") == [])

    extension.jobs.config.keep_archives_of_deleted_jobs = True
    try:
        status, _ = await api.call("DELETE", f"jobs/{jobs[1]['id']}")
    finally:
        extension.jobs.config.keep_archives_of_deleted_jobs = False
    assert status == 204
    await asyncio.sleep(1)
    assert len(objects_under(seaweedfs, f"jobs/{jobs[1]['id']}/")) == 2


@storage(run_folder_retention_days=1.0)
async def test_folders_of_archived_runs_are_removed_after_their_retention(api, extension, seaweedfs):
    from sqlalchemy import text

    archived_job = await api.submit(name="archived", code="print('from the archive')\n")
    unarchived_job = await api.submit(name="partly archived", code="print('only here')\n")
    elsewhere_job = await api.submit(name="another host's", code="print('elsewhere')\n")
    recent_job = await api.submit(name="recent", code="print('recent')\n")
    jobs = (archived_job, unarchived_job, elsewhere_job, recent_job)
    for job in jobs:
        assert (await api.wait(job["id"]))["state"] == "succeeded"
        await archived(api, job["id"])
    store, me = extension.jobs.store, extension.jobs.engine.owner
    # Its log is archived, but not all of its outputs: the folder holds the only copy of those.
    await store.update_run(unarchived_job["id"], 1, artifacts_error="uploading output/x.csv: it failed")
    await store.update_run(elsewhere_job["id"], 1, owner=replace(me, host="another-machine/1"))
    with store.engine.begin() as connection:
        for job in jobs[:3]:
            connection.execute(text("UPDATE runs SET finished_at = '2020-01-01 00:00:00' WHERE job_id = :id"),
                               {"id": job["id"]})

    assert await extension.jobs.retention.remove_archived_folders() == 1
    runs_dir = f"{extension.state_dir}/runs"
    assert not os.path.exists(f"{runs_dir}/{archived_job['id']}/1")
    assert os.path.exists(f"{runs_dir}/{unarchived_job['id']}/1/output.log")
    assert os.path.exists(f"{runs_dir}/{recent_job['id']}/1/output.log")
    # Another host's run is left to that host, whose folder it is.
    assert [(await store.get_run(job["id"], 1)).folder_state for job in jobs] == ["removed", "kept", None, None]
    # The job stays, and its log is read from the archive.
    assert (await api.job(archived_job["id"]))["state"] == "succeeded"
    assert "from the archive" in await api.full_log(archived_job["id"])
    assert await extension.jobs.retention.remove_archived_folders() == 0  # each run is looked at once


@storage(bucket="no-such-archive")
async def test_a_failed_upload_shows_on_the_job_and_leaves_its_state_alone(api, seaweedfs):
    job = await api.submit(name="nowhere to archive", code="print('done')\n")
    assert (await api.wait(job["id"]))["state"] == "succeeded"
    done = await archived(api, job["id"])
    assert done["state"] == "succeeded" and done["exit_code"] == 0 and done["error"] is None
    assert done["artifacts"] == []
    assert done["artifacts_error"].startswith(
        f"uploading output.log to s3://no-such-archive/jobs/{job['id']}/1/output.log: NoSuchBucket"), done
    assert done["runs"][0]["artifacts_error"] == done["artifacts_error"]
    assert done["archiving"] is False and done["runs"][0]["archiving"] is False
    status, page = await api.call("GET", "jobs/")  # the list says so too (the sidebar reads the files then)
    listed = next(item for item in page["jobs"] if item["id"] == job["id"])
    assert (listed["artifacts_error"], listed["archiving"]) == (done["artifacts_error"], False)
    assert "artifacts" not in listed
    status, body = await api.call("GET", f"jobs/{job['id']}/artifacts/output.log")
    assert status == 404 and "NoSuchBucket" in body["message"]


@storage()
async def test_a_notebook_jobs_executed_notebook_is_archived(api, extension, seaweedfs, jp_root_dir):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os, pathlib\n"
        "pathlib.Path(os.environ['DATAHARBOUR_OUTPUT_DIR'], 'table.csv').write_text('a,b\\n1,2\\n')\n"
        "print('wrote the table')"
    )])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    nbformat.write(notebook, jp_root_dir / "report.ipynb")
    job = await api.submit(name="report", notebook="report.ipynb")
    assert (await api.wait(job["id"]))["state"] == "succeeded"
    done = await archived(api, job["id"])
    assert sorted(a["name"] for a in done["artifacts"]) == ["output.ipynb", "output.log", "output/table.csv"]
    executed = nbformat.reads(read(seaweedfs, f"s3://{ARCHIVE}/jobs/{job['id']}/1/output.ipynb").decode(), 4)
    assert "wrote the table" in executed.cells[0].outputs[0]["text"]
    assert read(seaweedfs, f"s3://{ARCHIVE}/jobs/{job['id']}/1/output/table.csv") == b"a,b\n1,2\n"

    # Once its run folder is gone, the executed notebook is read from the archive.
    shutil.rmtree(f"{extension.state_dir}/runs/{job['id']}/1")
    status, output = await api.call("GET", f"jobs/{job['id']}/output")
    assert status == 200 and "wrote the table" in "".join(output["cells"][0]["outputs"][0]["text"]), output


@pytest.mark.timeout(300)
@storage(warm_pool_size=1, connect_idle_timeout=0)
async def test_a_warm_job_gets_its_inputs_and_its_output_is_archived(api, extension, seaweedfs):
    uri = put(seaweedfs, "in/warm.txt", b"warm words\n")
    job = await api.submit(name="warm", mode="connect", code=READ_AND_WRITE,
                           inputs=[{"uri": uri, "as": "nested/words.txt"}])
    done = await api.wait(job["id"])
    assert (done["state"], done["mode"]) == ("succeeded", "connect"), done
    assert "READ warm words" in await api.full_log(job["id"])
    done = await archived(api, job["id"])
    assert sorted(a["name"] for a in done["artifacts"]) == ["output.log", "output/sub/result.txt"]
    assert read(seaweedfs, f"s3://{ARCHIVE}/jobs/{job['id']}/1/output/sub/result.txt") == b"WARM WORDS\n"
    # The cluster's Spark Connect server (the warm jobs' driver) has the S3A settings in its own file.
    properties = (extension.connect_servers.config.connect_dir / "spark-cluster-default" / "daemon.properties")
    assert f"spark.hadoop.fs.s3a.secret.key={seaweedfs.secret_key}\n" in properties.read_text()
    with open(extension.connect_servers.config.connect_dir / "spark-cluster-default" / "command.json") as f:
        assert seaweedfs.secret_key not in f.read()


@storage()
async def test_inputs_are_checked_at_submit(api):
    uri = f"s3://{DATA}/in/a.csv"
    cases = [
        ([{"uri": uri, "as": "../a.csv"}], "inputs[0]['as']: must be a relative path of names"),
        ([{"uri": uri, "as": "/etc/a.csv"}], "inputs[0]['as']: must be a relative path (inside the run's input"),
        ([{"uri": uri}, {"uri": "https://example.org/a.csv"}], "inputs[1].uri: 'https://example.org/a.csv' is not"),
        ([{"uri": uri}, {"uri": f"s3://{DATA}/other/a.csv"}], "inputs[1]: its path 'a.csv' collides with inputs[0]"),
        ([{"uri": uri, "as": "d"}, {"uri": uri, "as": "d/a.csv"}], "inputs[1]: its path 'd/a.csv' collides with"),
        ([{"uri": "s3://Bad_Bucket/a.csv"}], "inputs[0].uri: 'Bad_Bucket' is not a bucket name"),
        ([{"uri": uri, "to": "x"}], "inputs[0]['to']: unknown field"),
        ([{"uri": uri, "as": f"f{i}"} for i in range(101)], "inputs: must have at most 100 items"),
    ]
    for inputs, message in cases:
        status, body = await api.call("POST", "jobs/", {"name": "bad inputs", "code": "print(1)", "inputs": inputs})
        assert status == 400 and body["message"].startswith(message), (inputs[:2], body)
    status, body = await api.call("POST", "jobs/", {"name": "env", "code": "print(1)",
                                                   "env": {"DATAHARBOUR_OUTPUT_DIR": "/tmp"}})
    assert status == 400 and body["message"] == "env['DATAHARBOUR_OUTPUT_DIR']: is managed by DataHarbour", body


async def test_inputs_need_object_storage(api):
    status, body = await api.call("POST", "jobs/", {"name": "no storage", "code": "print(1)",
                                                   "inputs": [{"uri": f"s3://{DATA}/a.csv"}]})
    assert status == 400, body
    assert body["message"].startswith("inputs: object storage is not configured"), body
