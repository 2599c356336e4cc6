"""The sidebar's Storage tab in real Chromium against a real `jupyter lab` and a real S3
server (SeaweedFS): browse, upload, download, use as a job's input, delete; and the words
shown where object storage is not configured. Screenshots go to test-artifacts/lab_ui/."""

import io

import pytest
from playwright.sync_api import expect
from seaweedfs import seaweedfs_fixture  # noqa: F401  (the `seaweedfs` fixture)
from server_process import ServerProcess, stop_runs_under
from test_lab_ui import _browser_on, _open_sidebar, _shot, _type_code

BUCKET = "lab-storage-ui"
JOB_TIMEOUT_MS = 120_000
# Needs no Spark: the job only reads the object it was given.
PRINT_INPUT = (
    "import os, pathlib\n"
    "path = pathlib.Path(os.environ['DATAHARBOUR_INPUT_DIR'], 'hello.txt')\n"
    "print('input says:', path.read_text().strip())\n"
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
    _shot(page, "storage-4-job-read-input.png")

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
