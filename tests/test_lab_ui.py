"""The sidebar in real Chromium against a real `jupyter lab` with the built plugin: what a
user does and sees. Screenshots of each view go to test-artifacts/lab_ui/."""

import contextlib
import json
import os
import re
import socket

import pytest
from playwright.sync_api import expect, sync_playwright
from server_process import ServerProcess, stop_runs_under

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test-artifacts", "lab_ui")
JOB_TIMEOUT_MS = 240_000

TWO_STAGES = (
    "from pyspark.sql import SparkSession\n"
    "spark = SparkSession.builder.getOrCreate()\n"
    "sc = spark.sparkContext\n"
    "print('pairs', sc.parallelize(range(100), 3).map(lambda x: (x % 5, 1)).reduceByKey(lambda a, b: a + b).count())\n"
)
LONG = (
    "import time\n"
    "from pyspark.sql import SparkSession\n"
    "spark = SparkSession.builder.getOrCreate()\n"
    "print('up', flush=True)\n"
    "time.sleep(600)\n"
)
NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "id": "p1", "metadata": {"tags": ["parameters"]},
               "outputs": [], "source": "greeting = 'hi'\nn = 2\n"},
              {"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {}, "outputs": [],
               "source": "print(f'{greeting} from the notebook toolbar, n * 2 = {n * 2}')"}],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 5,
}


@pytest.fixture
def lab(tmp_path):
    server = ServerProcess(str(tmp_path), lab=True)
    with open(os.path.join(server.root, "pipeline.ipynb"), "w") as f:
        json.dump(NOTEBOOK, f)
    server.start()
    yield server
    server.stop()
    stop_runs_under(str(tmp_path))  # a run outlives its server by design


@contextlib.contextmanager
def _browser_on(server):
    """JupyterLab of `server` in headless Chromium; fails the test on any error in the page."""
    assert os.path.exists(CHROMIUM), "the browser tests need Debian's chromium: apt-get install -y chromium"
    os.makedirs(ARTIFACTS, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"http://127.0.0.1:{server.port}/lab?token={server.token}")
        page.wait_for_selector(".jp-LabShell", timeout=90_000)
        yield page
        browser.close()
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture
def page(lab):
    with _browser_on(lab) as page:
        yield page


@pytest.fixture
def platform_lab(tmp_path):
    """JupyterLab whose platform services are real and in three states: PostgreSQL (the
    machine's) healthy, an Airflow address where nothing listens unhealthy, object storage
    not configured. Samples twice a second so the charts move within the test."""
    closed = socket.socket()  # bound, never listening: connections to it are refused, and no one else takes it
    closed.bind(("127.0.0.1", 0))
    server = ServerProcess(
        str(tmp_path), lab=True,
        db_url="sqlite:///" + os.path.join(str(tmp_path), "store.db"),  # POSTGRES_* would move the store there
        env={"POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": "5432", "POSTGRES_USER": "postgres",
             "POSTGRES_DB": "test", "POSTGRES_PASSWORD": None,
             "AIRFLOW_BASE_URL": f"http://127.0.0.1:{closed.getsockname()[1]}", "MINIO_ENDPOINT": None},
        extra_args=("--DataHarbourApp.metrics_interval=0.5", "--DataHarbourApp.service_check_interval=2"),
    )
    server.start()
    yield server
    server.stop()
    closed.close()
    stop_runs_under(str(tmp_path))


def _shot(page, name: str) -> None:
    page.screenshot(path=os.path.join(ARTIFACTS, name), animations="disabled")  # notifications in place


def _open_sidebar(page) -> None:
    page.click("li[data-id='dataharbour-sidebar']")
    expect(page.locator(".dh-Sidebar")).to_be_visible(timeout=30_000)


def _type_code(page, code: str) -> None:
    """Into the form's CodeMirror editor, replacing what is there."""
    page.click(".dh-CodeEditor .cm-content")
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(code)


def _submit(page, name: str, code: str, mode: str = "batch") -> None:
    page.click(".dh-NewJob")
    page.fill(".dh-Form input", name)
    # The form proposes warm where the cluster has the warm path; these tests use batch
    # (driver UI, RDDs) unless they say otherwise.
    page.select_option(".dh-ModeSelect", mode, timeout=30_000)
    _type_code(page, code)
    page.click(".dh-Form button[type=submit]")
    expect(page.locator(".dh-Details h3")).to_contain_text(name, timeout=30_000)


def test_submit_watch_kill_and_a_readable_error(lab, page):
    _open_sidebar(page)
    expect(page.locator("#dataharbour-jobs .dh-Empty")).to_have_text("No jobs yet. Submit one above.")
    expect(page.locator(".dh-Connection")).to_have_text("live", timeout=30_000)
    _shot(page, "1-empty.png")

    _submit(page, "two stages", TWO_STAGES)
    expect(page.locator(".dh-Details .dh-State")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    expect(page.locator(".dh-Log-lines")).to_contain_text("pairs 5", timeout=30_000)
    expect(page.locator(".dh-Details .dh-Progress-label")).to_contain_text("100%")
    expect(page.locator(".jp-Notification-Toast-success, .Toastify__toast--success").first).to_contain_text(
        'Spark job "two stages" succeeded', timeout=30_000)
    _shot(page, "2-succeeded.png")

    page.click(".dh-Back")
    expect(page.locator(".dh-JobRow")).to_have_count(1)
    expect(page.locator(".dh-JobRow .dh-State")).to_have_text("succeeded")
    _shot(page, "3-list.png")

    _submit(page, "long", LONG)
    expect(page.locator(".dh-Details .dh-State")).to_have_text("running", timeout=JOB_TIMEOUT_MS)
    expect(page.locator(".dh-Log-lines")).to_contain_text("up", timeout=60_000)
    expect(page.locator(".dh-StatusItem")).to_have_text("Spark: 1 running")
    page.click(".dh-Details button:has-text('Kill')")
    expect(page.locator(".dh-Details .dh-State")).to_have_text("killed", timeout=60_000)
    expect(page.locator(".dh-StatusItem")).to_have_text("Spark: 0 running")
    _shot(page, "4-killed.png")

    page.click(".dh-Back")
    page.click(".dh-NewJob")
    _type_code(page, "   ")
    page.click(".dh-Form button[type=submit]")
    expect(page.locator(".dh-Form .dh-Error")).to_have_text("code: the program is empty")
    _shot(page, "5-bad-submission.png")

    # Every action is in the command palette: restart the killed job from there.
    page.click(".dh-Form button:has-text('Cancel')")
    _open_job(page, "long")
    page.keyboard.press("Control+Shift+C")
    page.keyboard.type('DataHarbour: Restart Job "long"')
    page.keyboard.press("Enter")
    expect(page.locator(".dh-Details dd").nth(2)).to_have_text("2", timeout=30_000)  # attempt 2
    expect(page.locator(".dh-Details .dh-State")).to_have_text(re.compile("queued|starting|running"))
    page.keyboard.press("Control+Shift+C")
    page.keyboard.type('DataHarbour: Kill Job "long"')
    page.keyboard.press("Enter")
    expect(page.locator(".dh-Details .dh-State")).to_have_text("killed", timeout=60_000)


def _open_job(page, name: str) -> None:
    """Click a job's row and check its details opened: a list re-rendered under a busy
    machine's pointer can take the click to the row that moved there (then go back, again)."""
    for _ in range(3):
        page.locator(".dh-JobRow", has_text=name).click()
        title = page.locator(".dh-Details h3")
        try:
            expect(title).to_contain_text(name, timeout=5_000)
            return
        except AssertionError:
            if page.locator(".dh-Back").is_visible():
                page.click(".dh-Back")
    expect(page.locator(".dh-Details h3")).to_contain_text(name)


def test_the_log_view_loads_earlier_lines_on_scroll(lab, page):
    _open_sidebar(page)
    _submit(page, "chatty", "for i in range(2500):\n    print(f'line {i:04d}')\n")
    expect(page.locator(".dh-Details .dh-State")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    page.click(".dh-Back")  # opened again, the view starts from the last 1000 lines
    _open_job(page, "chatty")
    log = page.locator(".dh-Log-lines")
    expect(log).to_contain_text("line 2499", timeout=30_000)
    expect(log).not_to_contain_text("line 1499")
    for earliest in ("line 1000", "line 0500", "line 0000"):
        log.evaluate("node => { node.scrollTop = 0; node.dispatchEvent(new Event('scroll')); }")
        expect(log).to_contain_text(earliest, timeout=30_000)
    text = log.inner_text()
    numbers = [int(line[5:]) for line in text.splitlines() if line.startswith("line ")]
    assert numbers == list(range(2500)), "every line once, in order"
    _shot(page, "6-log-scrolled-back.png")


def test_run_the_open_notebook_from_its_toolbar(lab, page):
    page.goto(f"http://127.0.0.1:{lab.port}/lab/tree/pipeline.ipynb?token={lab.token}")
    button = page.locator(".jp-NotebookPanel-toolbar [data-jp-item-name='dataharbour-run'] button")
    expect(button).to_be_visible(timeout=90_000)
    expect(button).to_have_accessible_name("Run notebook as job")
    button.click()
    dialog = page.locator(".jp-Dialog")
    greeting = dialog.locator("input[name='greeting']")
    expect(greeting).to_have_value("'hi'", timeout=30_000)  # the defaults of the cell tagged parameters
    expect(dialog.locator("input[name='n']")).to_have_value("2")
    greeting.fill("hello")  # text without its quotes is no Python value: the dialog says so
    expect(dialog.locator(".dh-ParameterNote.dh-mod-error")).to_have_text(
        "hello is not a value: text goes in quotes, e.g. 'hello'")
    greeting.fill("'hello'")
    dialog.locator("input[name='n']").fill("21")
    expect(dialog.locator(".dh-ParameterNote.dh-mod-error")).to_have_count(0)
    _shot(page, "7-notebook-job-parameters.png")
    dialog.locator("button.jp-mod-accept").click()
    expect(page.locator(".Toastify__toast").filter(has_text='Spark job "pipeline.ipynb" submitted')).to_be_visible(
        timeout=30_000)
    page.reload()  # the follow-up outlives a reload: the job is remembered in the browser
    # When the run ends, its executed notebook opens in a tab of its own, saved next to the notebook.
    output_name = re.compile(r"pipeline\.output-[0-9a-f]{8}\.ipynb")
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=output_name)
    expect(tab).to_be_visible(timeout=JOB_TIMEOUT_MS)
    output = page.locator(".jp-NotebookPanel:visible")
    expect(output.locator(".jp-OutputArea-output")).to_contain_text(
        "hello from the notebook toolbar, n * 2 = 42", timeout=30_000)
    expect(output.locator(".jp-Cell").nth(1)).to_contain_text("greeting = 'hello'")  # the injected cell
    expect(page.locator(".Toastify__toast").filter(
        has_text=re.compile(r'Spark job "pipeline.ipynb" succeeded, output in pipeline\.output-'))).to_be_visible()
    assert os.path.exists(os.path.join(lab.root, tab.inner_text().strip()))
    _shot(page, "7-notebook-job-output.png")


def _chart_points(page, selector: str) -> tuple[int, float]:
    chart = page.locator(selector)
    return int(chart.get_attribute("data-points") or 0), float(chart.get_attribute("data-last") or 0)


def test_platform_panel_shows_live_metrics_service_health_and_job_statistics(platform_lab, page_on_platform_lab):
    page = page_on_platform_lab
    job = platform_lab.request("POST", "/api/v1/jobs/", {"name": "counted", "code": "print('counted')"})
    platform_lab.wait(job["id"], {"succeeded"}, timeout=240)

    _open_sidebar(page)
    page.click(".dh-TabBar .lm-TabBar-tab:has-text('Platform')")
    platform = page.locator("#dataharbour-platform")
    expect(platform.locator(".dh-CpuChart canvas").first).to_be_visible(timeout=30_000)

    # The chart is back-filled from the history, then moves with each live sample.
    expect(platform.locator(".dh-CpuChart")).not_to_have_attribute("data-points", "0", timeout=30_000)
    points, last = _chart_points(page, "#dataharbour-platform .dh-CpuChart")
    page.wait_for_function(
        f"Number(document.querySelector('#dataharbour-platform .dh-CpuChart').dataset.last) > {last}", timeout=15_000)
    later_points, later_last = _chart_points(page, "#dataharbour-platform .dh-CpuChart")
    assert later_last > last and later_points >= points
    expect(platform.locator(".dh-Figures").first).to_contain_text("cores")

    # Each service's badge shows its real state; the reason is on hover.
    expect(platform.locator(".dh-Service-healthy", has_text="jupyter")).to_be_visible(timeout=30_000)
    expect(platform.locator(".dh-Service-healthy", has_text="postgresql")).to_be_visible()
    expect(platform.locator(".dh-Service-healthy", has_text="spark-cluster-default")).to_be_visible()
    airflow = platform.locator(".dh-Service-unhealthy", has_text="airflow")
    expect(airflow).to_be_visible()
    assert "unhealthy" in (airflow.get_attribute("title") or "")
    expect(platform.locator(".dh-Service-disabled", has_text="minio")).to_be_visible()

    # The dashboard counts the job that ran, and the trend chart has its 14 days.
    expect(platform.locator(".dh-StateCounts .dh-State-succeeded")).to_have_text("succeeded 1", timeout=30_000)
    expect(platform.locator(".dh-TrendChart")).to_have_attribute("data-points", "14")
    _shot(page, "8-platform.png")

    # A service's logs are a click away: the Jupyter server's own lines.
    platform.locator("button.dh-Service", has_text="jupyter").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog.locator(".dh-ServiceLog")).to_contain_text("DataHarbour", timeout=30_000)
    _shot(page, "9-service-logs.png")
    dialog.locator("button:has-text('Close')").click()

    # Readable in the dark theme too.
    page.keyboard.press("Control+Shift+C")
    page.keyboard.type("Use Theme: JupyterLab Dark")
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-jp-theme-name='JupyterLab Dark']", state="attached", timeout=30_000)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=30_000)  # the theme is loaded
    # The charts are drawn again in the dark theme's colours.
    expect(platform.locator(".dh-CpuChart")).to_have_attribute("data-theme", "JupyterLab Dark")
    expect(platform.locator(".dh-CpuChart canvas").first).to_be_visible()
    _shot(page, "10-platform-dark.png")


@pytest.fixture
def page_on_platform_lab(platform_lab):
    with _browser_on(platform_lab) as page:
        yield page


def test_clusters_panel_launches_a_cluster_runs_a_job_on_it_and_deletes_it(lab, page):
    _open_sidebar(page)
    page.click(".dh-TabBar .lm-TabBar-tab:has-text('Clusters')")
    panel = page.locator("#dataharbour-clusters")
    expect(panel.locator(".dh-Cluster[data-cluster-id='spark-cluster-default']")).to_be_visible(timeout=30_000)

    panel.locator(".dh-NewCluster").click()
    panel.locator(".dh-ClusterForm input").first.fill("ui cluster")  # 1 worker, 1 core, 1g: the form's defaults
    expect(panel.locator(".dh-ClusterForm")).to_contain_text("Workers (≤ 4)")  # the server's limits
    _shot(page, "11-cluster-form.png")
    panel.locator(".dh-ClusterForm button[type=submit]").click()
    card = panel.locator(".dh-Cluster", has_text="ui cluster")
    expect(card.locator(".dh-ClusterState")).to_have_text("running", timeout=180_000)
    expect(card.locator(".dh-Workers li")).to_have_count(1)
    cluster_id = card.get_attribute("data-cluster-id")
    _shot(page, "12-clusters.png")

    # Its master UI, proxied, in a JupyterLab tab.
    card.locator("button:has-text('Master UI')").click()
    master_tab = page.locator(".jp-MainAreaWidget").filter(has=page.locator("iframe")).last
    expect(page.locator(".lm-TabBar-tab", has_text="Spark master: ui cluster")).to_be_visible(timeout=30_000)
    expect(master_tab.frame_locator("iframe").locator("body")).to_contain_text("Spark Master at spark://",
                                                                              timeout=30_000)
    _shot(page, "13-master-ui.png")

    # The submit form's picker has it, live: run a job there.
    page.click(".dh-TabBar .lm-TabBar-tab:has-text('Jobs')")
    page.click(".dh-NewJob")
    page.fill(".dh-Form input", "on ui cluster")
    page.select_option(".dh-Form select", value=cluster_id)
    page.select_option(".dh-ModeSelect", "batch", timeout=30_000)  # the warm path is issue 10's tests'
    _type_code(page, TWO_STAGES)
    page.click(".dh-Form button[type=submit]")
    expect(page.locator(".dh-Details .dh-State")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    expect(page.locator(".dh-Details dd").nth(1)).to_have_text(cluster_id)
    expect(page.locator(".dh-Log-lines")).to_contain_text("pairs 5", timeout=30_000)

    # Delete it, with a confirmation.
    page.click(".dh-TabBar .lm-TabBar-tab:has-text('Clusters')")
    card.locator(".dh-DeleteClusterButton").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("No job runs on it.")
    dialog.locator("button:has-text('Delete')").click()
    expect(panel.locator(f".dh-Cluster[data-cluster-id='{cluster_id}']")).to_have_count(0, timeout=60_000)
    _shot(page, "14-cluster-deleted.png")
