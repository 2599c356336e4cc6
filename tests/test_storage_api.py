"""The storage API (/api/v1/storage) against a real S3 server (SeaweedFS's `weed mini`)."""

import asyncio
import hashlib
import io
import json
import os
import re
import threading
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import psutil
import pytest
from jupyter_server.auth import Authorizer
from seaweedfs import seaweedfs_fixture  # noqa: F401  (the `seaweedfs` fixture)

from dataharbour_ext.services.object_storage import NOT_CONFIGURED

BUCKET = "dataharbour-storage-tests"
MIB = 1024 * 1024
MINIO_VARIABLES = ("MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_BUCKET_NAME", "MINIO_SECURE")


@pytest.fixture(autouse=True)
def no_storage_from_the_environment(monkeypatch):
    """Only what a test configures is configured."""
    for name in MINIO_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def bucket(seaweedfs) -> str:
    client = seaweedfs.client()
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    return BUCKET


def storage_settings(*, secret: str | None = None, endpoint: str | None = None, **traits):
    """DataHarbourApp traits: the session's S3 server (or `endpoint`), with `secret` if given."""

    def build(request) -> dict:
        weed = request.getfixturevalue("seaweedfs")
        request.getfixturevalue("bucket")
        return {"service_environment": {
            "MINIO_ENDPOINT": f"http://{endpoint or weed.endpoint}", "MINIO_ACCESS_KEY": weed.access_key,
            "MINIO_SECRET_KEY": secret or weed.secret_key, "MINIO_BUCKET_NAME": BUCKET,
        }, **traits}

    return build


@pytest.fixture
def dataharbour_config(request):
    """Storage on the session's S3 server unless a test configures otherwise (`@configure`)."""
    build = getattr(request, "param", None) or storage_settings()
    return build(request)


def configure(build):
    return pytest.mark.parametrize("dataharbour_config", [build], indirect=True)


@pytest.fixture
def authorizer():
    return None


@pytest.fixture
def jp_server_config(jp_server_config, authorizer):
    if authorizer is None:
        return jp_server_config
    return {**jp_server_config, "ServerApp": {**jp_server_config["ServerApp"], "authorizer_class": authorizer}}


@pytest.fixture
def prefix() -> str:
    """A folder of the test's own in the shared bucket."""
    return f"t-{uuid.uuid4().hex[:10]}/"


@pytest.fixture
def http(http_server_client, jp_http_port, jp_base_url, jp_auth_header, extension, jp_asyncio_loop):
    """httpx against the test server's storage API (streams both ways); `http_server_client`
    makes the server accept connections."""
    base = f"http://127.0.0.1:{jp_http_port}{jp_base_url}api/v1/storage/"
    client = httpx.AsyncClient(base_url=base, headers=jp_auth_header, timeout=60)
    yield client
    jp_asyncio_loop.run_until_complete(client.aclose())


def put_objects(seaweedfs, objects: dict[str, bytes]) -> None:
    client = seaweedfs.client()
    for key, data in objects.items():
        client.put_object(BUCKET, key, io.BytesIO(data), len(data))


def object_path(key: str, bucket: str = BUCKET) -> str:
    return f"objects/{bucket}/{key}"


# ---- listing ----------------------------------------------------------------------------


async def test_buckets_and_a_folder_listing_in_pages(api, seaweedfs, prefix):
    keys = [f"{prefix}a.csv", f"{prefix}b.csv", f"{prefix}c.csv", f"{prefix}sub1/x", f"{prefix}sub1/y",
            f"{prefix}sub2/deeper/z"]
    put_objects(seaweedfs, {key: key.encode() * 3 for key in keys})

    status, listing = await api.call("GET", "storage/buckets")
    assert status == 200, listing
    assert BUCKET in [b["name"] for b in listing["buckets"]] and listing["default_bucket"] == BUCKET

    status, page = await api.call("GET", "storage/objects", params={"bucket": BUCKET, "prefix": prefix})
    assert status == 200, page
    assert page["folders"] == [f"{prefix}sub1/", f"{prefix}sub2/"]
    assert [o["key"] for o in page["objects"]] == keys[:3] and page["next_cursor"] is None
    first = page["objects"][0]
    assert first["size"] == len(keys[0]) * 3 and first["etag"] == hashlib.md5(keys[0].encode() * 3).hexdigest()
    modified = datetime.fromisoformat(first["last_modified"])
    assert abs(datetime.now(timezone.utc) - modified) < timedelta(minutes=5)

    # Pages of two, through the cursor: everything once, folders included, in S3's order.
    seen, cursor, pages = [], None, 0
    while True:
        params = {"prefix": prefix, "limit": 2, **({"cursor": cursor} if cursor else {})}  # the default bucket
        status, page = await api.call("GET", "storage/objects", params=params)
        assert status == 200, page
        assert len(page["folders"]) + len(page["objects"]) <= 2
        seen += page["folders"] + [o["key"] for o in page["objects"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(keys[:3] + [f"{prefix}sub1/", f"{prefix}sub2/"]) and len(seen) == 5
    assert pages == 3

    # No delimiter: every key under the prefix, no folders.
    status, flat = await api.call("GET", "storage/objects", params={"prefix": prefix, "delimiter": ""})
    assert status == 200 and flat["folders"] == [] and [o["key"] for o in flat["objects"]] == keys


# ---- streaming up and down, with the server's memory bounded ----------------------------


class PeakMemory:
    """The highest RSS of this process (the in-process test server's) while it runs."""

    def __init__(self):
        self.process = psutil.Process()
        self.baseline = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def numbered_chunks(count: int, size: int = MIB):
    """`count` distinct chunks of `size` bytes (each starts with its number)."""
    block = os.urandom(size)
    return [index.to_bytes(8, "big") + block[8:] for index in range(count)]


async def test_a_50_mb_object_streams_up_and_down_without_the_server_holding_it(http, seaweedfs, prefix):
    size = 50 * MIB
    block = os.urandom(MIB)
    expected = hashlib.sha256()
    for index in range(50):
        expected.update(index.to_bytes(8, "big") + block[8:])

    async def body():
        for index in range(50):
            yield index.to_bytes(8, "big") + block[8:]

    key = f"{prefix}big/data.bin"
    with PeakMemory() as upload_memory:
        response = await http.put(object_path(key), content=body(),
                                  headers={"Content-Length": str(size), "Content-Type": "application/x-test"})
    assert response.status_code == 200, response.text
    stored = response.json()
    assert (stored["bucket"], stored["key"], stored["size"]) == (BUCKET, key, size)
    stat = seaweedfs.client().stat_object(BUCKET, key)
    assert stat.size == size and stat.content_type == "application/x-test" and stored["etag"] == stat.etag

    received = hashlib.sha256()
    with PeakMemory() as download_memory:
        async with http.stream("GET", object_path(key)) as response:
            assert response.status_code == 200
            headers = response.headers
            async for chunk in response.aiter_bytes():
                received.update(chunk)
    assert received.hexdigest() == expected.hexdigest()
    assert headers["Content-Length"] == str(size) and headers["Content-Type"] == "application/x-test"
    assert headers["ETag"] == f'"{stat.etag}"' and headers["Accept-Ranges"] == "bytes"
    assert "Last-Modified" in headers and headers["Content-Disposition"].startswith('attachment; filename="data.bin"')
    # The object passed through in parts and chunks, never whole: an upload holds a few parts of
    # S3's minimum size (5 MiB), a download a few 256 KiB chunks, whatever the object's size.
    assert upload_memory.growth < 30 * MIB, f"upload: RSS grew by {upload_memory.growth / MIB:.1f} MiB"
    assert download_memory.growth < 10 * MIB, f"download: RSS grew by {download_memory.growth / MIB:.1f} MiB"


async def test_a_body_of_unknown_length_is_a_multipart_upload(http, seaweedfs, prefix):
    chunks = numbered_chunks(12)  # 12 MiB: three parts of the 5 MiB minimum

    async def body():
        for chunk in chunks:
            yield chunk

    key = f"{prefix}chunked.bin"
    response = await http.put(object_path(key), content=body())  # no length: chunked transfer
    assert response.status_code == 200, response.text
    assert response.json()["size"] == 12 * MIB
    stored = seaweedfs.client().get_object(BUCKET, key)
    try:
        assert stored.read() == b"".join(chunks)
    finally:
        stored.close()
        stored.release_conn()
    assert seaweedfs.client().stat_object(BUCKET, key).etag.endswith("-3")  # S3's multipart ETag: 3 parts


async def _until(condition, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.05)


async def test_an_upload_the_client_abandons_leaves_nothing(api, http, jp_http_port, jp_base_url, jp_auth_header,
                                                            seaweedfs, prefix):
    key = f"{prefix}abandoned.bin"
    reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
    writer.write(f"PUT {jp_base_url}api/v1/storage/{object_path(key)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"Authorization: {jp_auth_header['Authorization']}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    for _ in range(7):  # past the first 5 MiB part: a multipart upload is under way
        writer.write(b"%x\r\n" % MIB + b"y" * MIB + b"\r\n")
        await writer.drain()

    async def under_way():
        return bool(seaweedfs.client()._list_multipart_uploads(BUCKET, prefix=prefix).uploads)

    await _until(under_way)
    writer.close()

    async def abandoned():
        _, logs = await api.call("GET", "monitoring/services/jupyter/logs", params={"lines": 200})
        return any(f"{key}: the client closed the connection; the upload was abandoned" in line
                   for line in logs["lines"])

    async def aborted():
        return not seaweedfs.client()._list_multipart_uploads(BUCKET, prefix=prefix).uploads

    await _until(abandoned)
    await _until(aborted)  # the SDK aborted its multipart upload: no parts left behind
    assert not list(seaweedfs.client().list_objects(BUCKET, prefix=prefix))


@configure(storage_settings(upload_idle_timeout=1.5))
async def test_an_upload_whose_body_stalls_is_408_and_leaves_nothing(api, http, jp_http_port, jp_base_url,
                                                                     jp_auth_header, seaweedfs, prefix):
    key = f"{prefix}stalled.bin"
    reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
    try:
        # 6 of the 8 MiB it announces: the first 5 MiB part goes to S3 as a multipart upload, then nothing.
        writer.write(f"PUT {jp_base_url}api/v1/storage/{object_path(key)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: {jp_auth_header['Authorization']}\r\nContent-Length: {8 * MIB}\r\n\r\n"
                     .encode() + b"s" * 6 * MIB)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 60)  # all of it: the server closes the connection
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:300]
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert error == {"message": "no part of the request body came for 1.5 s; the upload was abandoned "
                                "(DataHarbourApp.upload_idle_timeout)", "reason": "RequestTimeout"}, error

    async def aborted():
        return not seaweedfs.client()._list_multipart_uploads(BUCKET, prefix=prefix).uploads

    await _until(aborted)  # the SDK's read failed and it aborted its multipart upload
    assert not list(seaweedfs.client().list_objects(BUCKET, prefix=prefix))
    _, logs = await api.call("GET", "monitoring/services/jupyter/logs", params={"lines": 200})
    said = [line for line in logs["lines"] if key in line]  # one line, no traceback
    assert len(said) == 1 and f"408 PUT {jp_base_url}api/v1/storage/{object_path(key)}: no part" in said[0], said

    # The storage is not left worse off: the next upload works.
    response = await http.put(object_path(f"{prefix}after.bin"), content=b"fine")
    assert response.status_code == 200, response.text
    assert seaweedfs.client().stat_object(BUCKET, f"{prefix}after.bin").size == 4


# ---- ranges -----------------------------------------------------------------------------


async def test_range_reads(http, seaweedfs, prefix):
    data = bytes(range(256)) * 4  # 1024 bytes
    key = f"{prefix}ranged.bin"
    put_objects(seaweedfs, {key: data})

    for header, first, last in [("bytes=10-19", 10, 19), ("bytes=1000-", 1000, 1023), ("bytes=-5", 1019, 1023),
                                ("bytes=1020-5000", 1020, 1023)]:
        response = await http.get(object_path(key), headers={"Range": header})
        assert response.status_code == 206, (header, response.text)
        assert response.headers["Content-Range"] == f"bytes {first}-{last}/1024", header
        assert response.content == data[first:last + 1] and response.headers["Content-Length"] == str(last - first + 1)

    response = await http.get(object_path(key), headers={"Range": "bytes=1024-"})
    assert response.status_code == 416 and response.headers["Content-Range"] == "bytes */1024"
    assert response.json()["reason"] == "Range Not Satisfiable" and "1024 bytes" in response.json()["message"]

    # Several ranges, or another unit: ignored, as RFC 9110 allows; the whole object.
    for header in ["bytes=0-1,5-6", "items=0-4"]:
        response = await http.get(object_path(key), headers={"Range": header})
        assert response.status_code == 200 and response.content == data, header

    response = await http.head(object_path(key))
    assert response.status_code == 200 and response.headers["Content-Length"] == "1024" and response.content == b""
    assert response.headers["Content-Type"] == "application/octet-stream"  # the object's, not Jupyter's JSON
    seaweedfs.client().put_object(BUCKET, f"{prefix}empty.csv", io.BytesIO(b""), 0, content_type="text/csv")
    for request in (http.head, http.get):
        response = await request(object_path(f"{prefix}empty.csv"))
        assert response.status_code == 200 and response.content == b"", request
        assert (response.headers["Content-Type"], response.headers["Content-Length"]) == ("text/csv", "0")
    response = await http.head(object_path(key), headers={"Range": "bytes=-0"})
    assert response.status_code == 416 and response.headers["Content-Range"] == "bytes */1024"


# ---- presigned URLs, delete ---------------------------------------------------------------


async def test_presigned_urls_work_without_jupyter(api, seaweedfs, prefix):
    key = f"{prefix}shared report.txt"
    put_objects(seaweedfs, {key: b"quarterly numbers"})
    before = datetime.now(timezone.utc).replace(microsecond=0)
    status, signed = await api.call("POST", "storage/presign", {"bucket": BUCKET, "key": key, "expires_seconds": 60})
    assert status == 200, signed
    assert signed["method"] == "GET" and signed["key"] == key
    expires_at = datetime.fromisoformat(signed["expires_at"])
    assert before + timedelta(seconds=60) <= expires_at <= datetime.now(timezone.utc) + timedelta(seconds=60)
    async with httpx.AsyncClient() as plain:  # no token, no cookie: the signature is the permission
        response = await plain.get(signed["url"])
        assert response.status_code == 200 and response.content == b"quarterly numbers"

        status, signed = await api.call("POST", "storage/presign", {"key": f"{prefix}upload.txt", "method": "PUT"})
        assert status == 200, signed
        assert (await plain.put(signed["url"], content=b"sent by a browser")).status_code == 200
    status, listing = await api.call("GET", "storage/objects", params={"prefix": prefix})
    assert [o["key"] for o in listing["objects"]] == [key, f"{prefix}upload.txt"]

    for expires in (0, 7 * 24 * 3600 + 1):
        status, error = await api.call("POST", "storage/presign", {"key": key, "expires_seconds": expires})
        assert status == 400 and error["message"].startswith("expires_seconds: must be"), error


async def test_delete_then_the_object_is_missing(api, http, seaweedfs, prefix):
    key = f"{prefix}gone.txt"
    put_objects(seaweedfs, {key: b"x"})
    assert (await http.delete(object_path(key))).status_code == 204
    for response in [await http.delete(object_path(key)), await http.get(object_path(key))]:
        assert response.status_code == 404 and "NoSuchKey" in response.json()["message"], response.text
    status, listing = await api.call("GET", "storage/objects", params={"prefix": prefix})
    # (SeaweedFS keeps the emptied folder and lists it as the object `prefix`; S3 would not.)
    assert key not in [o["key"] for o in listing["objects"]]


# ---- bad input, missing things, limits ----------------------------------------------------


async def test_bad_names_and_fields_are_400_naming_the_field(api, http):
    cases = [
        (await api.call("GET", "storage/objects", params={"bucket": "Bad_Bucket"}), "bucket: 'Bad_Bucket'"),
        (await api.call("GET", "storage/objects", params={"limit": "0"}), "limit: must be at least 1"),
        (await api.call("GET", "storage/objects", params={"sort": "name"}), "sort: unknown field"),
        (await api.call("POST", "storage/presign", {"bucket": "ab", "key": "k"}), "bucket: 'ab'"),
        (await api.call("POST", "storage/presign", {"key": "k", "method": "POST"}), "method: must be"),
    ]
    for (status, error), start in cases:
        assert status == 400 and error["message"].startswith(start), error
    for method in ("GET", "PUT", "DELETE"):
        response = await http.request(method, "objects/no_such_bucket/key", content=b"x" if method == "PUT" else None)
        assert response.status_code == 400 and response.json()["message"].startswith("bucket: "), response.text
        response = await http.request(method, f"objects/{BUCKET}/", content=b"x" if method == "PUT" else None)
        assert response.status_code == 400 and response.json()["message"] == "key: an object key must not be empty"


async def test_a_missing_bucket_is_404_before_an_upload_is_read(api, http):
    status, error = await api.call("GET", "storage/objects", params={"bucket": "no-such-bucket-here"})
    assert status == 404 and "NoSuchBucket" in error["message"], error
    response = await http.put(object_path("k", "no-such-bucket-here"), content=b"data")
    assert response.status_code == 404
    assert response.json()["message"] == "write no-such-bucket-here/k: bucket no-such-bucket-here does not exist"


async def _raw_exchange(port: int, request: bytes, then: list[bytes] = ()) -> bytes:
    """Sends `request` (and the pieces in `then`, each once the last is taken), reads the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        for piece in then:
            await writer.drain()
            writer.write(piece)
        await writer.drain()
        return await asyncio.wait_for(reader.read(64 * 1024), 30)
    finally:
        writer.close()


@configure(storage_settings(max_object_bytes=MIB))
async def test_a_body_over_max_object_bytes_is_413(http, jp_http_port, jp_base_url, jp_auth_header, seaweedfs, prefix):
    path = f"{jp_base_url}api/v1/storage/{object_path(prefix + 'big')}"
    head = f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {jp_auth_header['Authorization']}\r\n"
    # A declared length: refused before any of the body is sent (the client asked to wait for 100 Continue).
    answer = await _raw_exchange(jp_http_port, (head + f"Content-Length: {2 * MIB}\r\nExpect: 100-continue\r\n\r\n")
                                 .encode())
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"objects are at most 1048576 bytes (DataHarbourApp.max_object_bytes)" in answer
    # A chunked body: refused at the chunk that goes over.
    chunk = b"%x\r\n" % (64 * 1024) + b"x" * 64 * 1024 + b"\r\n"
    answer = await _raw_exchange(jp_http_port, (head + "Transfer-Encoding: chunked\r\n\r\n").encode(), [chunk] * 17)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"the body is larger than 1048576 bytes" in answer
    assert not [o for o in seaweedfs.client().list_objects(BUCKET, prefix=prefix)]


# ---- configuration, credentials, permissions ----------------------------------------------


@configure(lambda request: {})
async def test_without_storage_every_route_is_404_saying_so(http):
    requests = [("GET", "buckets", None), ("GET", "objects", None), ("GET", object_path("k"), None),
                ("HEAD", object_path("k"), None), ("PUT", object_path("k"), b"data"), ("DELETE", object_path("k"), None),
                ("POST", "presign", json.dumps({"bucket": BUCKET, "key": "k"}).encode()),
                ("GET", "objects/Not_A_Bucket/k", None)]
    for method, path, body in requests:
        response = await http.request(method, path, content=body)
        assert response.status_code == 404, (method, path, response.text)
        if method != "HEAD":
            assert response.json()["message"] == NOT_CONFIGURED, (method, path)


WRONG_SECRET = "wrong-secret-5f1c0d9e"


@configure(storage_settings(secret=WRONG_SECRET))
async def test_wrong_credentials_are_502_with_the_reason_and_no_secret(api, http, jp_base_url, seaweedfs, prefix):
    answers = [await http.get("buckets"), await http.get("objects"), await http.get(object_path("k")),
               await http.put(object_path(prefix + "k"), content=b"data"),
               await http.post("presign", json={"key": "k"})]
    for response in answers:
        assert response.status_code == 502, response.text
        message = response.json()["message"]
        assert "object storage refused it: SignatureDoesNotMatch" in message, message
    status, logs = await api.call("GET", "monitoring/services/jupyter/logs", params={"lines": 5000})
    assert status == 200
    for text in [response.text for response in answers] + logs["lines"]:
        assert WRONG_SECRET not in text and seaweedfs.secret_key not in text
    # Each is one warning line, as a 4xx is: not an uncaught exception with a traceback.
    for method, path in [("GET", "buckets"), ("GET", "objects"), ("GET", object_path("k")),
                         ("PUT", object_path(prefix + "k")), ("POST", "presign")]:
        request = re.compile(rf"\b{method} {re.escape(jp_base_url)}api/v1/storage/{re.escape(path)}(?![\w/-])")
        said = [line for line in logs["lines"] if request.search(line)]
        assert len(said) == 1 and said[0].startswith("[W "), (method, path, said)
        assert f"502 {method} " in said[0] and "object storage refused it: SignatureDoesNotMatch" in said[0]
    assert not [line for line in logs["lines"] if "Traceback" in line or "Uncaught exception" in line]


@pytest.fixture
def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@configure(lambda request: storage_settings(endpoint=f"127.0.0.1:{request.getfixturevalue('closed_port')}")(request))
async def test_an_unreachable_endpoint_is_502_with_the_reason(http, closed_port):
    response = await http.get("buckets")
    assert response.status_code == 502
    assert response.json()["message"].startswith(f"list buckets: cannot reach object storage at 127.0.0.1:{closed_port}")


class ReadOnlyStorage(Authorizer):
    """Allows only "read" on DataHarbour resources."""

    def is_authorized(self, handler, user, action, resource):
        return action == "read" or not resource.startswith("dataharbour:")


@pytest.mark.parametrize("authorizer", [ReadOnlyStorage])
async def test_a_read_only_user_reads_but_writes_nothing(api, http, seaweedfs, prefix):
    key = f"{prefix}kept.txt"
    put_objects(seaweedfs, {key: b"kept"})
    assert (await http.get(object_path(key))).content == b"kept"
    assert (await http.post("presign", json={"key": key})).status_code == 200  # a download URL: reading
    refused = [await http.put(object_path(f"{prefix}new.txt"), content=b"new"), await http.delete(object_path(key)),
               await http.post("presign", json={"key": key, "method": "PUT"})]
    for response in refused:
        assert response.status_code == 403 and "write" in response.json()["message"], response.text
    assert [o.object_name for o in seaweedfs.client().list_objects(BUCKET, prefix=prefix)] == [key]
