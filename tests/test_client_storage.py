"""The Python client's object storage (`client.storage`) and job artifacts (`client.jobs.artifact`)
against a real `jupyter server` with the extension and a real S3 server (SeaweedFS): listings in
pages, uploads and downloads streamed from and to files, ranges, presigned URLs, the error
classes, the async client, and which uploads the client sends again."""

import gzip
import hashlib
import io
import os
import socket
import time
import tracemalloc
import uuid
from pathlib import Path

import httpx
import pytest
from loopback_http import LoopbackHttp, QuietHandler
from seaweedfs import seaweedfs_fixture  # noqa: F401  (the `seaweedfs` fixture)
from server_process import ServerProcess, stop_runs_under

from dataharbour_ext.client import (
    AsyncDataHarbourClient,
    BadGateway,
    ConnectionFailed,
    DataHarbourClient,
    InvalidRequest,
    NotFound,
    ObjectHead,
    PayloadTooLarge,
    RangeNotSatisfiable,
    RetryPolicy,
    ServiceUnavailable,
)
from dataharbour_ext.client.calls import Call
from dataharbour_ext.client.transfer import UploadBody
from dataharbour_ext.models import BucketList, JobState, ObjectInfo, ObjectList, PresignedUrl, StoredObject

BUCKET = "client-storage-tests"
MIB = 1024 * 1024
MAX_OBJECT_BYTES = 8 * MIB  # the test server's limit, so that a 413 costs little
WRITE_OUTPUT = (
    "import os, pathlib\n"
    "out = pathlib.Path(os.environ['DATAHARBOUR_OUTPUT_DIR'], 'tables')\n"
    "out.mkdir()\n"
    "(out / 'result.csv').write_text('a,b\\n' + '1,2\\n' * 1000)\n"
    "print('wrote it')\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, seaweedfs):
    """One real server for the module, with the session's S3 server as its object storage."""
    weed = seaweedfs.client()
    if not weed.bucket_exists(BUCKET):
        weed.make_bucket(BUCKET)
    base = str(tmp_path_factory.mktemp("client-storage"))
    server = ServerProcess(base, extra_args=("--DataHarbourApp.metrics_interval=0",
                                             f"--DataHarbourApp.max_object_bytes={MAX_OBJECT_BYTES}"),
                           env={"MINIO_ENDPOINT": f"http://{seaweedfs.endpoint}",
                                "MINIO_ACCESS_KEY": seaweedfs.access_key, "MINIO_SECRET_KEY": seaweedfs.secret_key,
                                "MINIO_BUCKET_NAME": BUCKET, "MINIO_SECURE": None})
    server.start()
    yield server
    server.kill()
    stop_runs_under(base)  # runs outlive their server by design


@pytest.fixture
def client(server):
    with DataHarbourClient(f"http://127.0.0.1:{server.port}/", server.token) as client:
        yield client


@pytest.fixture
def prefix() -> str:
    """A folder of the test's own in the shared bucket."""
    return f"c-{uuid.uuid4().hex[:10]}/"


def test_buckets_and_listings_in_pages(client, seaweedfs, prefix):
    buckets = client.storage.buckets()
    assert isinstance(buckets, BucketList) and buckets.default_bucket == BUCKET
    assert BUCKET in [b.name for b in buckets.buckets]

    keys = [f"{prefix}{name}.txt" for name in "abcde"]
    for key in keys:
        seaweedfs.client().put_object(BUCKET, key, io.BytesIO(key.encode()), len(key.encode()))
    seaweedfs.client().put_object(BUCKET, f"{prefix}sub/x", io.BytesIO(b"x"), 1)

    # Pages of two through the cursor: five objects, then the folder.
    seen, cursor, pages = [], None, 0
    while True:
        page = client.storage.list(BUCKET, prefix, limit=2, cursor=cursor)
        assert isinstance(page, ObjectList) and len(page.folders) + len(page.objects) <= 2
        seen += page.folders + [o.key for o in page.objects]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted([*keys, f"{prefix}sub/"]) and pages == 3
    first = client.storage.list(prefix=prefix, limit=1).objects[0]  # the default bucket
    assert (first.key, first.size, first.etag) == (keys[0], len(keys[0]), hashlib.md5(keys[0].encode()).hexdigest())

    entries = list(client.storage.list_all(BUCKET, prefix, page_size=2))
    assert sorted(e if isinstance(e, str) else e.key for e in entries) == sorted([*keys, f"{prefix}sub/"])
    assert [e for e in entries if isinstance(e, str)] == [f"{prefix}sub/"]
    assert all(isinstance(e, ObjectInfo) for e in entries if not isinstance(e, str))
    flat = list(client.storage.list_all(BUCKET, prefix, delimiter=""))  # every key, no folders
    assert [o.key for o in flat] == [*keys, f"{prefix}sub/x"]

    with pytest.raises(NotFound) as missing:
        client.storage.list("no-such-bucket-here", "")
    assert missing.value.status == 404 and "no-such-bucket-here" in str(missing.value)
    with pytest.raises(InvalidRequest, match="bucket"):
        client.storage.list("Not_A_Bucket")


def test_upload_download_head_range_and_delete(client, seaweedfs, prefix, tmp_path):
    # From a path of a few MB (over S3's 5 MiB part: a multipart upload), streamed from disk.
    source = tmp_path / "source.bin"
    content = os.urandom(6 * MIB + 123)
    source.write_bytes(content)
    key = f"{prefix}big/data.bin"
    tracemalloc.start()  # the client holds a chunk or two, never the object
    try:
        stored = client.storage.upload(BUCKET, key, source, content_type="application/x-test")
        client.storage.download(BUCKET, key, to=tmp_path / "streamed.bin")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * MIB, peak
    assert (tmp_path / "streamed.bin").read_bytes() == content
    assert isinstance(stored, StoredObject) and (stored.bucket, stored.key, stored.size) == (BUCKET, key, len(content))
    stat = seaweedfs.client().stat_object(BUCKET, key)
    assert stat.size == len(content) and stat.content_type == "application/x-test"
    assert client.storage.upload(BUCKET, f"{prefix}named-by-str.bin", str(source)).size == len(content)

    # Down to bytes, and streamed into a file: the same bytes.
    assert client.storage.download(BUCKET, key) == content
    target = tmp_path / "down" / "copy.bin"
    target.parent.mkdir()
    saved = client.storage.download(BUCKET, key, to=target)
    assert saved == target and target.read_bytes() == content
    assert os.listdir(target.parent) == ["copy.bin"]  # the temporary file was renamed, none left
    assert client.storage.download(BUCKET, key, range=(10, 19)) == content[10:20]
    assert client.storage.download(BUCKET, key, range=(len(content) - 5, None)) == content[-5:]
    client.storage.download(BUCKET, key, to=target, range=(MIB, 2 * MIB - 1))
    assert target.read_bytes() == content[MIB:2 * MIB]
    with pytest.raises(RangeNotSatisfiable):
        client.storage.download(BUCKET, key, range=(len(content) + 10, None))
    for bad in ((5, 2), (-10, None)):  # the server would ignore them and send it all
        with pytest.raises(ValueError, match="range="):
            client.storage.download(BUCKET, key, range=bad)
    with pytest.raises(ValueError, match="`.` or `..`"):  # HTTP would fold them: another object
        client.storage.delete(BUCKET, f"{prefix}x/../{key.rsplit('/', 1)[-1]}")
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as any file written, not mkstemp's 0600

    # A compressed file object: its descriptor's size is not what it reads, so it goes chunked.
    with gzip.open(tmp_path / "packed.gz", "wb") as packed:
        packed.write(content[:MIB] * 3)
    with gzip.open(tmp_path / "packed.gz", "rb") as packed:
        client.storage.upload(BUCKET, f"{prefix}unpacked.bin", packed)
    assert client.storage.download(BUCKET, f"{prefix}unpacked.bin") == content[:MIB] * 3

    head = client.storage.head(BUCKET, key)
    assert isinstance(head, ObjectHead)
    assert (head.bucket, head.key, head.size, head.etag) == (BUCKET, key, len(content), stat.etag)
    assert head.content_type == "application/x-test"
    assert head.last_modified is not None and abs(head.last_modified.timestamp() - stat.last_modified.timestamp()) < 2

    # From bytes, and from a file object of unknown length (sent chunked).
    small = client.storage.upload(BUCKET, f"{prefix}small.txt", b"hello storage\n", content_type="text/plain")
    assert small.size == 14 and client.storage.download(BUCKET, f"{prefix}small.txt") == b"hello storage\n"
    assert seaweedfs.client().stat_object(BUCKET, f"{prefix}small.txt").content_type == "text/plain"
    chunked = client.storage.upload(BUCKET, f"{prefix}chunked.bin", io.BytesIO(content[:MIB + 7]))
    assert chunked.size == MIB + 7 and client.storage.download(BUCKET, f"{prefix}chunked.bin") == content[:MIB + 7]
    chunks = client.storage.upload(BUCKET, f"{prefix}chunks.bin", iter([b"one ", b"two"]))
    assert chunks.size == 7 and client.storage.download(BUCKET, f"{prefix}chunks.bin") == b"one two"

    # Larger than the server takes: refused before the body is read (a declared length).
    too_big = tmp_path / "too-big.bin"
    with open(too_big, "wb") as file:
        file.truncate(MAX_OBJECT_BYTES + 1)
    with pytest.raises(PayloadTooLarge) as refused:
        client.storage.upload(BUCKET, f"{prefix}too-big.bin", too_big)
    assert refused.value.status == 413 and "max_object_bytes" in refused.value.message

    client.storage.delete(BUCKET, key)
    with pytest.raises(NotFound):
        client.storage.head(BUCKET, key)
    with pytest.raises(NotFound) as gone:
        client.storage.download(BUCKET, key, to=tmp_path / "never.bin")
    assert "NoSuchKey" in str(gone.value) and not (tmp_path / "never.bin").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".never")] == []
    with pytest.raises(NotFound):
        client.storage.download("no-such-bucket-here", "x")


def test_presigned_get_works_with_plain_httpx(client, prefix):
    key = f"{prefix}shared/report file.csv"  # a space: escaped in the path, kept in the key
    client.storage.upload(BUCKET, key, b"a,b\n1,2\n")
    assert [o.key for o in client.storage.list(BUCKET, f"{prefix}shared/").objects] == [key]
    signed = client.storage.presign(BUCKET, key, expires=120)
    assert isinstance(signed, PresignedUrl) and (signed.method, signed.bucket, signed.key) == ("GET", BUCKET, key)
    response = httpx.get(signed.url, timeout=30)  # no Jupyter token
    assert response.status_code == 200 and response.content == b"a,b\n1,2\n"
    assert client.storage.presign(None, key, "PUT").method == "PUT"  # the default bucket


async def test_async_client_lists_uploads_and_downloads(server, prefix, tmp_path):
    content = os.urandom(2 * MIB + 3)
    source = tmp_path / "async-source.bin"
    source.write_bytes(content)

    async def generated():
        yield b"async "
        yield b"chunks"

    async with AsyncDataHarbourClient(f"http://127.0.0.1:{server.port}", server.token) as client:
        stored = await client.storage.upload(BUCKET, f"{prefix}a/from-path.bin", source)
        assert stored.size == len(content)
        await client.storage.upload(BUCKET, f"{prefix}a/from-bytes.txt", b"async bytes")
        assert (await client.storage.upload(BUCKET, f"{prefix}a/from-gen.txt", generated())).size == 12
        assert (await client.storage.upload(BUCKET, f"{prefix}a/from-file.bin", io.BytesIO(b"12345"))).size == 5

        page = await client.storage.list(BUCKET, f"{prefix}a/", limit=2)
        assert len(page.objects) == 2 and page.next_cursor
        keys = [o.key async for o in client.storage.list_all(BUCKET, f"{prefix}a/", page_size=2)]
        assert sorted(keys) == sorted(f"{prefix}a/{n}" for n in ("from-path.bin", "from-bytes.txt", "from-gen.txt",
                                                                 "from-file.bin"))

        assert await client.storage.download(BUCKET, f"{prefix}a/from-bytes.txt") == b"async bytes"
        assert await client.storage.download(BUCKET, f"{prefix}a/from-gen.txt") == b"async chunks"
        saved = await client.storage.download(BUCKET, f"{prefix}a/from-path.bin", to=tmp_path / "async-copy.bin")
        assert saved.read_bytes() == content
        assert await client.storage.download(BUCKET, f"{prefix}a/from-path.bin", range=(0, 3)) == content[:4]
        assert (await client.storage.head(BUCKET, f"{prefix}a/from-path.bin")).size == len(content)
        await client.storage.delete(BUCKET, f"{prefix}a/from-path.bin")
        with pytest.raises(NotFound):
            await client.storage.head(BUCKET, f"{prefix}a/from-path.bin")


def test_a_jobs_archived_output_downloads(client, tmp_path):
    job = client.jobs.submit(name="client artifact job", code=WRITE_OUTPUT)
    done = client.jobs.wait(job.id, timeout=60)
    assert done.state == JobState.succeeded, done.error
    deadline = time.monotonic() + 30
    while done.artifacts is None and not done.artifacts_error and time.monotonic() < deadline:
        time.sleep(0.2)
        done = client.jobs.get(job.id)
    assert done.artifacts_error is None and done.artifacts is not None
    by_name = {artifact.name: artifact for artifact in done.artifacts}
    assert set(by_name) == {"output.log", "output/tables/result.csv"}

    expected = b"a,b\n" + b"1,2\n" * 1000
    assert client.jobs.artifact(job.id, "output/tables/result.csv") == expected
    assert by_name["output/tables/result.csv"].size == len(expected)
    saved = client.jobs.artifact(job.id, "output/tables/result.csv", attempt=1, to=tmp_path / "result.csv")
    assert saved == tmp_path / "result.csv" and saved.read_bytes() == expected
    assert b"wrote it" in client.jobs.artifact(job.id, "output.log")
    # The archive is the bucket's too.
    assert client.storage.download(BUCKET, f"jobs/{job.id}/1/output/tables/result.csv") == expected

    with pytest.raises(NotFound, match="nothing-here"):
        client.jobs.artifact(job.id, "output/nothing-here.txt")
    with pytest.raises(NotFound):
        client.jobs.artifact(job.id, "output.log", attempt=2)
    client.jobs.delete(job.id)


# ---- which uploads are sent again --------------------------------------------------------


class FailingServer(LoopbackHttp):
    """A plain HTTP server on loopback that reads each PUT's body whole and answers `status`."""

    def __init__(self, status: int):
        self.bodies: list[bytes] = []
        failing = self

        class Handler(QuietHandler):
            def do_PUT(self):
                failing.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.answer_json(status, b'{"message": "storage unreachable", "reason": "BadGateway"}')

        super().__init__(Handler)


def test_bytes_are_uploaded_again_a_stream_only_once(tmp_path):
    path = tmp_path / "body.bin"
    path.write_bytes(b"from a file")
    failing = FailingServer(502)
    try:
        with DataHarbourClient(failing.url, "t", backoff=0.01) as client:
            with pytest.raises(BadGateway) as refused:
                client.storage.upload(BUCKET, "k", b"bytes")
            assert (refused.value.status, refused.value.message) == (502, "storage unreachable")
            assert failing.bodies == [b"bytes"] * 3  # the first attempt and two retries

            failing.bodies.clear()
            with pytest.raises(BadGateway):
                client.storage.upload(BUCKET, "k", path)
            with open(path, "rb") as file, pytest.raises(BadGateway):
                client.storage.upload(BUCKET, "k", file)
            assert failing.bodies == [b"from a file"] * 2  # each sent once
    finally:
        failing.close()

    failing = FailingServer(503)
    try:
        with DataHarbourClient(failing.url, "t", backoff=0.01) as client:
            with pytest.raises(ServiceUnavailable):
                client.storage.upload(BUCKET, "k", path)
            assert failing.bodies == [b"from a file"]
    finally:
        failing.close()

    policy = RetryPolicy()
    put = Call("PUT", "storage/objects/b/k", upload=UploadBody.of(path))
    assert policy.delay(put, 1, error=httpx.ConnectError("refused")) is not None  # nothing was sent
    assert policy.delay(put, 1, error=httpx.WriteError("reset")) is None  # part of it may have been
    streamed = Call("PUT", "storage/objects/b/k", upload=UploadBody.of(iter([b"x"])))
    assert policy.delay(streamed, 1, error=httpx.ConnectError("refused")) is None

    with socket.socket() as sock:  # a port nobody listens on: the path is tried again, then given up
        sock.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    with DataHarbourClient(nobody, "t", backoff=0.01) as client:
        with pytest.raises(ConnectionFailed, match="could not be reached"):
            client.storage.upload(BUCKET, "k", Path(path))
