"""The notebook magics on real kernels started by the test server (so they get its
DATAHARBOUR_URL and token), cells run with nbclient: `%load_ext`, `%%spark_submit` that
succeeds on real Spark, fails, returns at once, is interrupted; the line magics."""

import asyncio
import time

import nbformat
import pytest
from nbclient import NotebookClient

TIMEOUT = 240


class Kernel:
    """A kernel of the test server, and cells run in it one by one with nbclient."""

    def __init__(self, serverapp, kernel_id):
        self.manager = serverapp.kernel_manager.get_kernel(kernel_id)
        self.nb = nbformat.v4.new_notebook()
        self.client = NotebookClient(self.nb, km=self.manager, allow_errors=True, timeout=TIMEOUT)
        self.client.kc = self.manager.client()
        self.client.kc.start_channels()

    async def ready(self):
        await self.client.kc._async_wait_for_ready(timeout=60)

    async def run(self, source: str):
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        await self.client.async_execute_cell(cell, len(self.nb.cells) - 1)
        return cell

    def close(self):
        self.client.kc.stop_channels()


@pytest.fixture
def kernel(api, extension, jp_asyncio_loop):
    serverapp = extension.serverapp
    kernel_id = jp_asyncio_loop.run_until_complete(serverapp.kernel_manager.start_kernel(kernel_name="python3"))
    kernel = Kernel(serverapp, kernel_id)
    jp_asyncio_loop.run_until_complete(kernel.ready())
    jp_asyncio_loop.run_until_complete(kernel.run("%load_ext dataharbour_ext"))
    yield kernel
    kernel.close()
    jp_asyncio_loop.run_until_complete(serverapp.kernel_manager.shutdown_kernel(kernel_id, now=True))


def text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")


def error(cell):
    return next((o for o in cell.outputs if o["output_type"] == "error"), None)


def shown(cell) -> str:
    """The text/plain of displays and results (tables, progress)."""
    return "".join(o.get("data", {}).get("text/plain", "") for o in cell.outputs if "data" in o)


async def test_a_pyspark_cell_runs_as_a_job_and_its_output_shows_in_the_cell(api, kernel):
    cell = await kernel.run(
        "%%spark_submit --name counted --conf spark.sql.shuffle.partitions=2\n"
        "from pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.getOrCreate()\n"
        "print('rows', spark.range(1000).filter('id % 7 = 0').count())\n"
    )

    assert error(cell) is None, error(cell)
    assert "rows 143\n" in text(cell)
    assert "Spark job 'counted'" in shown(cell) and "succeeded" in shown(cell)
    job_id = (await kernel.run("print(_spark_job)")).outputs[0]["text"].strip()
    job = await api.job(job_id)
    assert (job["name"], job["state"], job["conf"]) == ("counted", "succeeded", {"spark.sql.shuffle.partitions": "2"})


async def test_a_failing_cell_raises_with_the_error_summary(api, kernel):
    cell = await kernel.run("%%spark_submit --name broken\nraise ValueError('no input for 2026-11-27')\n")

    failure = error(cell)
    assert failure["ename"] == "SparkJobFailed"
    assert "'broken'" in failure["evalue"] and "failed: ValueError: no input for 2026-11-27" in failure["evalue"]
    assert failure["traceback"] == [f"SparkJobFailed: {failure['evalue']}"]  # no frames of the magic's own


async def test_no_wait_then_status_jobs_logs_and_a_usage_error(api, kernel):
    cell = await kernel.run("%%spark_submit --no-wait --name later -- one two\nimport sys\nprint('args', sys.argv[1:])\n")
    assert error(cell) is None
    link = cell.outputs[0]["data"]["text/html"]
    assert "submitted" in link and "/logs?tail=200' target='_blank'>log</a>" in link
    job_id = (await kernel.run("print(_spark_job)")).outputs[0]["text"].strip()
    await api.wait(job_id)

    status = await kernel.run(f"%spark_status {job_id}")
    assert "succeeded" in shown(status) and job_id in shown(status)
    jobs = await kernel.run("%spark_jobs --limit 5")
    assert "later" in shown(jobs) and "<table>" in jobs.outputs[0]["data"]["text/html"]
    logs = await kernel.run(f"%spark_logs {job_id} --tail 5")
    assert "args ['one', 'two']" in text(logs)
    clusters = await kernel.run("%spark_clusters")
    assert "spark-cluster-default" in shown(clusters)

    unknown = await kernel.run("%spark_status nope")
    assert error(unknown)["ename"] == "SparkApiError" and "404 no job with id 'nope'" in error(unknown)["evalue"]
    refused = await kernel.run("%%spark_submit --conf spark.master=x\nprint(1)\n")
    assert error(refused)["ename"] == "SparkApiError" and "spark.master" in error(refused)["evalue"]
    bad = await kernel.run("%%spark_submit --conf nokey\nprint(1)\n")
    assert "UsageError: --conf takes KEY=VALUE" in text(bad)  # IPython shows usage errors on stderr
    # Inputs reach the server, which has no object storage here.
    no_storage = await kernel.run("%%spark_submit --input s3://raw/a.csv sales.csv --input s3://raw/b.csv\nprint(1)\n")
    assert error(no_storage)["ename"] == "SparkApiError"
    assert "inputs: object storage is not configured" in error(no_storage)["evalue"]
    too_many = await kernel.run("%%spark_submit --input s3://raw/a.csv a b\nprint(1)\n")
    assert "UsageError: --input takes URI [AS]" in text(too_many)


async def test_interrupting_a_waiting_cell_kills_its_job(api, kernel):
    running = asyncio.ensure_future(kernel.run(
        "%%spark_submit --name sleeper\nimport time\nprint('up', flush=True)\ntime.sleep(300)\n"
    ))
    deadline = time.monotonic() + 120
    job = None
    while job is None or "up" not in await api.full_log(job["id"]):
        assert time.monotonic() < deadline and not running.done(), "the job never started"
        await asyncio.sleep(0.2)
        listing = (await api.call("GET", "jobs/", params={"name": "sleeper"}))[1]
        job = listing["jobs"][0] if listing["jobs"] else None

    await kernel.manager.interrupt_kernel()
    cell = await asyncio.wait_for(running, 60)

    assert error(cell)["ename"] == "KeyboardInterrupt"
    assert f"Interrupted: Spark job {job['id']} killed" in text(cell)
    assert (await api.job(job["id"]))["state"] == "killed"


async def test_in_a_terminal_ipython_the_wait_is_plain_lines(api, extension, monkeypatch, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    for name, value in extension.kernel_environment.variables().items():
        if name.startswith("DATAHARBOUR_"):  # not SPARK_REMOTE: this process is the server, its runs inherit it
            monkeypatch.setenv(name, value)
    shell = InteractiveShell.instance()
    try:
        # The shell's blocking client calls this test's server: the shell runs on a thread.
        await asyncio.to_thread(shell.run_cell, "%load_ext dataharbour_ext")
        result = await asyncio.to_thread(
            shell.run_cell, "%%spark_submit --name plain\nprint('from a terminal')\n"
        )
        out = capsys.readouterr().out
        assert result.success, (result.error_in_exec, out)
        assert "from a terminal\n" in out
        assert "Spark job 'plain'" in out and ": succeeded" in out
        assert "<div" not in out  # no HTML where nothing renders it
    finally:
        await asyncio.to_thread(shell.run_cell, "%unload_ext dataharbour_ext")
        InteractiveShell.clear_instance()
