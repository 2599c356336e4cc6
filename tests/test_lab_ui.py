"""The sidebar in real Chromium against a real `jupyter lab` with the built plugin: what a
user does and sees. Screenshots of each view go to test-artifacts/lab_ui/."""

import json
import os
import re

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
    "cells": [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {}, "outputs": [],
               "source": "print('from the notebook toolbar')"}],
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


@pytest.fixture
def page(lab):
    assert os.path.exists(CHROMIUM), "the browser tests need Debian's chromium: apt-get install -y chromium"
    os.makedirs(ARTIFACTS, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"http://127.0.0.1:{lab.port}/lab?token={lab.token}")
        page.wait_for_selector(".jp-LabShell", timeout=90_000)
        yield page
        browser.close()
    assert not errors, f"errors in the page: {errors}"


def _shot(page, name: str) -> None:
    page.screenshot(path=os.path.join(ARTIFACTS, name))


def _open_sidebar(page) -> None:
    page.click("li[data-id='dataharbour-sidebar']")
    expect(page.locator(".dh-Sidebar")).to_be_visible(timeout=30_000)


def _type_code(page, code: str) -> None:
    """Into the form's CodeMirror editor, replacing what is there."""
    page.click(".dh-CodeEditor .cm-content")
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(code)


def _submit(page, name: str, code: str) -> None:
    page.click(".dh-NewJob")
    page.fill(".dh-Form input", name)
    _type_code(page, code)
    page.click(".dh-Form button[type=submit]")
    expect(page.locator(".dh-Details h3")).to_contain_text(name, timeout=30_000)


def test_submit_watch_kill_and_a_readable_error(lab, page):
    _open_sidebar(page)
    expect(page.locator(".dh-Empty")).to_have_text("No jobs yet. Submit one above.")
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
    page.locator(".dh-JobRow", has_text="long").click()
    page.keyboard.press("Control+Shift+C")
    page.keyboard.type('DataHarbour: Restart Job "long"')
    page.keyboard.press("Enter")
    expect(page.locator(".dh-Details dd").nth(2)).to_have_text("2", timeout=30_000)  # attempt 2
    expect(page.locator(".dh-Details .dh-State")).to_have_text(re.compile("queued|starting|running"))
    page.keyboard.press("Control+Shift+C")
    page.keyboard.type('DataHarbour: Kill Job "long"')
    page.keyboard.press("Enter")
    expect(page.locator(".dh-Details .dh-State")).to_have_text("killed", timeout=60_000)


def test_the_log_view_loads_earlier_lines_on_scroll(lab, page):
    _open_sidebar(page)
    _submit(page, "chatty", "for i in range(2500):\n    print(f'line {i:04d}')\n")
    expect(page.locator(".dh-Details .dh-State")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    page.click(".dh-Back")  # opened again, the view starts from the last 1000 lines
    page.locator(".dh-JobRow", has_text="chatty").click()
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
    button.click()
    expect(page.locator(".Toastify__toast").filter(has_text='Spark job "pipeline.ipynb" submitted')).to_be_visible(
        timeout=30_000)
    _open_sidebar(page)
    page.locator(".dh-JobRow", has_text="pipeline.ipynb").click()
    expect(page.locator(".dh-Details .dh-State")).to_have_text(re.compile("succeeded"), timeout=JOB_TIMEOUT_MS)
    expect(page.locator(".dh-Log-lines")).to_contain_text("from the notebook toolbar", timeout=30_000)
    _shot(page, "7-notebook-job.png")
