"""The sidebar's Storage tab in real Chromium against a real `jupyter lab` and a real S3
server (SeaweedFS): browse, upload, download, use as a job's input, delete; and the words
shown where object storage is not configured. Screenshots go to test-artifacts/lab_ui/."""

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import expect
from seaweedfs import seaweedfs_fixture  # noqa: F401  (the `seaweedfs` fixture)
from server_process import ServerProcess, stop_runs_under
from test_lab_ui import _browser_on, _open_sidebar, _shot, _type_code

BUCKET = "lab-storage-ui"
PAGE_SIZE = 200  # the panel's page (storage.ts)
JOB_TIMEOUT_MS = 120_000
# Needs no Spark: the job only reads the object it was given.
PRINT_INPUT = (
    "import os, pathlib\n"
    "path = pathlib.Path(os.environ['DATAHARBOUR_INPUT_DIR'], 'hello.txt')\n"
    "print('input says:', path.read_text().strip())\n"
    "pathlib.Path(os.environ['DATAHARBOUR_OUTPUT_DIR'], 'result.txt').write_text(path.read_text().upper())\n"
)


def _lab(tmp_path, env):
    server = ServerProcess(str(tmp_path), lab=True, env=env)
    server.start()
    return server


@pytest.fixture
def storage_lab(tmp_path, seaweedfs):
    client = seaweedfs.client()
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    server = _lab(tmp_path, {
        "MINIO_ENDPOINT": f"http://{seaweedfs.endpoint}", "MINIO_ACCESS_KEY": seaweedfs.access_key,
        "MINIO_SECRET_KEY": seaweedfs.secret_key, "MINIO_BUCKET_NAME": BUCKET, "MINIO_SECURE": None,
    })
    yield server
    server.stop()
    stop_runs_under(str(tmp_path))


def _open_storage(page) -> None:
    _open_sidebar(page)
    _storage_tab(page)


def _storage_tab(page) -> None:
    page.click(".dh-TabBar li:has-text('Storage')")
    expect(page.locator("#dataharbour-storage")).to_be_visible()


def test_upload_download_use_as_job_input_and_delete(storage_lab, seaweedfs, page_on_storage_lab, tmp_path):
    page = page_on_storage_lab
    client = seaweedfs.client()
    client.put_object(BUCKET, "raw/seed.csv", io.BytesIO(b"a,b\n1,2\n"), 8)

    _open_storage(page)
    storage = page.locator("#dataharbour-storage")
    expect(storage.locator(".dh-BucketSelect")).to_have_value(BUCKET, timeout=30_000)
    expect(storage.locator(".dh-FolderName", has_text="raw/")).to_be_visible()
    _shot(page, "storage-1-root.png")

    # Into the folder, and upload a file there through the panel.
    storage.locator(".dh-FolderName", has_text="raw/").click()
    expect(storage.locator(".dh-Crumb.dh-mod-current")).to_have_text("raw")
    expect(storage.locator(".dh-Object[data-key='raw/seed.csv'] .dh-ObjectSize")).to_have_text("8 B")
    storage.locator(".dh-UploadInput").set_input_files(
        files=[{"name": "hello.txt", "mimeType": "text/plain", "buffer": b"hello from the storage tab\n"}])
    uploaded = storage.locator(".dh-Object[data-key='raw/hello.txt']")
    expect(uploaded).to_be_visible(timeout=30_000)
    expect(uploaded.locator(".dh-ObjectSize")).to_have_text("27 B")
    assert client.get_object(BUCKET, "raw/hello.txt").read() == b"hello from the storage tab\n"
    _shot(page, "storage-2-uploaded.png")

    # Download: a plain link, authenticated by Jupyter's login cookie.
    with page.expect_download() as download:
        uploaded.locator(".dh-Download").click()
    saved = tmp_path / "downloaded.txt"
    download.value.save_as(saved)
    assert saved.read_bytes() == b"hello from the storage tab\n"
    assert download.value.suggested_filename == "hello.txt"

    # Use as job input: the Jobs tab's form opens with the object as an input.
    uploaded.locator("input[type=checkbox]").check()
    storage.locator(".dh-UseAsInput").click()
    form = page.locator("#dataharbour-jobs .dh-Form")
    expect(form.locator(".dh-InputUri")).to_have_text(f"s3://{BUCKET}/raw/hello.txt")
    expect(form.locator(".dh-InputAs")).to_have_value("hello.txt")
    form.locator("input").first.fill("reads its input")
    if form.locator(".dh-ModeSelect").count():
        form.locator(".dh-ModeSelect").select_option("batch")
    _type_code(page, PRINT_INPUT)
    _shot(page, "storage-3-job-form-with-input.png")
    form.locator("button[type=submit]").click()
    expect(page.locator(".dh-Details h3")).to_contain_text("reads its input", timeout=30_000)
    expect(page.locator(".dh-Details .dh-State")).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    expect(page.locator(".dh-Log-lines")).to_contain_text("input says: hello from the storage tab", timeout=30_000)
    details = page.locator(".dh-Details")
    expect(details.locator(".dh-JobInputs")).to_contain_text(f"hello.txt ← s3://{BUCKET}/raw/hello.txt")
    # Its archived files, once uploaded, each a download.
    result = details.locator(".dh-Artifacts a", has_text="output/result.txt")
    expect(result).to_be_visible(timeout=60_000)
    expect(details.locator(".dh-Artifacts a", has_text="output.log")).to_be_visible()
    _shot(page, "storage-4-job-read-input.png")
    with page.expect_download() as download:
        result.click()
    saved = tmp_path / "result.txt"
    download.value.save_as(saved)
    assert saved.read_bytes() == b"HELLO FROM THE STORAGE TAB\n"

    # Delete, after saying yes.
    _storage_tab(page)
    uploaded.locator(".dh-DeleteObject").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text(f"s3://{BUCKET}/raw/hello.txt")
    _shot(page, "storage-5-delete-dialog.png")
    dialog.locator("button:has-text('Delete')").click()
    expect(uploaded).to_have_count(0, timeout=30_000)
    expect(storage.locator(".dh-Object[data-key='raw/seed.csv']")).to_be_visible()
    assert [o.object_name for o in client.list_objects(BUCKET, prefix="raw/")] == ["raw/seed.csv"]
    _shot(page, "storage-6-deleted.png")


def test_a_long_folder_loads_page_by_page(storage_lab, seaweedfs, page_on_storage_lab):
    page = page_on_storage_lab
    client = seaweedfs.client()
    count = PAGE_SIZE + 5
    keys = [f"many/object-{i:03d}.txt" for i in range(count)]
    with ThreadPoolExecutor(8) as pool:  # 205 small puts: a few seconds one by one
        list(pool.map(lambda key: client.put_object(BUCKET, key, io.BytesIO(b"x"), 1), keys))

    _open_storage(page)
    storage = page.locator("#dataharbour-storage")
    storage.locator(".dh-FolderName", has_text="many/").click(timeout=30_000)
    rows = storage.locator(".dh-Object")
    expect(rows).to_have_count(PAGE_SIZE, timeout=30_000)
    more = storage.locator(".dh-LoadMore")
    expect(more).to_be_visible()
    expect(rows.last).to_have_attribute("data-key", keys[PAGE_SIZE - 1])
    more.scroll_into_view_if_needed()
    _shot(page, "storage-7-load-more.png")

    more.click()
    expect(rows).to_have_count(count, timeout=30_000)
    expect(more).to_have_count(0)
    assert rows.evaluate_all("rows => rows.map(row => row.dataset.key)") == keys  # in order, none twice
    rows.last.scroll_into_view_if_needed()
    expect(storage.locator(".dh-StorageBar")).to_be_in_viewport()  # the head stays over a long listing
    _shot(page, "storage-8-all-loaded.png")

    # An error far down the listing shows where the user is, in the head.
    client.remove_object(BUCKET, keys[-1])
    rows.last.locator(".dh-DeleteObject").click()
    page.locator(".jp-Dialog button:has-text('Delete')").click()
    alert = storage.get_by_role("alert")
    expect(alert).to_contain_text(f"Deleting {keys[-1].split('/')[-1]}:", timeout=30_000)
    expect(alert).to_be_in_viewport()
    _shot(page, "storage-8b-error-far-down.png")
    expect(rows).to_have_count(PAGE_SIZE, timeout=30_000)  # listed again from its first page
    more.click()
    expect(rows).to_have_count(count - 1, timeout=30_000)


def test_a_failed_action_is_said_in_words_and_the_panel_goes_on(storage_lab, seaweedfs, page_on_storage_lab):
    page = page_on_storage_lab
    client = seaweedfs.client()
    for name in ("stale.txt", "keep.txt", "next.txt"):
        client.put_object(BUCKET, f"gone/{name}", io.BytesIO(b"bytes"), 5)

    _open_storage(page)
    storage = page.locator("#dataharbour-storage")
    storage.locator(".dh-FolderName", has_text="gone/").click(timeout=30_000)
    stale = storage.locator(".dh-Object[data-key='gone/stale.txt']")
    expect(stale).to_be_visible(timeout=30_000)

    # Another client deletes it while the panel still lists it; deleting it here is a 404.
    client.remove_object(BUCKET, "gone/stale.txt")
    stale.locator(".dh-DeleteObject").click()
    page.locator(".jp-Dialog button:has-text('Delete')").click()
    alert = storage.get_by_role("alert")
    expect(alert).to_have_count(1, timeout=30_000)
    expect(alert).to_contain_text("Deleting stale.txt:")
    expect(alert).to_contain_text("does not exist")
    # The folder is listed again: what is shown is what is there.
    expect(stale).to_have_count(0, timeout=30_000)
    expect(storage.locator(".dh-Object")).to_have_count(2)
    _shot(page, "storage-9-delete-error.png")

    # Still usable: the next delete works, and the old error goes away.
    storage.locator(".dh-Object[data-key='gone/next.txt'] .dh-DeleteObject").click()
    page.locator(".jp-Dialog button:has-text('Delete')").click()
    expect(storage.locator(".dh-Object[data-key='gone/next.txt']")).to_have_count(0, timeout=30_000)
    expect(alert).to_have_count(0)
    assert [o.object_name for o in client.list_objects(BUCKET, prefix="gone/")] == ["gone/keep.txt"]

    # Moving to another folder drops an error that is about what was shown before.
    client.remove_object(BUCKET, "gone/keep.txt")
    storage.locator(".dh-Object[data-key='gone/keep.txt'] .dh-DeleteObject").click()
    page.locator(".jp-Dialog button:has-text('Delete')").click()
    expect(alert).to_contain_text("Deleting keep.txt:", timeout=30_000)
    # SeaweedFS still lists the emptied folder's own `gone/` marker: the panel shows no nameless row.
    expect(storage.locator(".dh-Empty")).to_have_text("This folder is empty.")
    _shot(page, "storage-10-emptied-with-error.png")
    storage.locator(".dh-Crumb", has_text=BUCKET).click()
    expect(alert).to_have_count(0)
    expect(storage.locator(".dh-Crumb.dh-mod-current")).to_have_text(BUCKET)


@pytest.fixture
def page_on_storage_lab(storage_lab):
    with _browser_on(storage_lab) as page:
        yield page


@pytest.fixture
def unconfigured_lab(tmp_path):
    server = _lab(tmp_path, {"MINIO_ENDPOINT": None})
    yield server
    server.stop()


def test_without_object_storage_the_tab_says_how_to_set_it_up(unconfigured_lab):
    with _browser_on(unconfigured_lab) as page:
        _open_storage(page)
        note = page.locator(".dh-StorageNotConfigured")
        expect(note).to_contain_text("Object storage is not configured on this server.", timeout=30_000)
        expect(note).to_contain_text("MINIO_ENDPOINT")
        expect(page.locator("#dataharbour-storage .dh-Error")).to_have_count(0)
        _shot(page, "storage-0-not-configured.png")
