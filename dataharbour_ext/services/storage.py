"""StorageService: the storage API's operations on the object storage (ObjectStorage).

Every SDK call runs in this service's own threads, never on the event loop and never in the
loop's default pool: a slow or hung S3 then holds up storage requests only, not the store
queries and file reads that share the default pool. Objects stream through in chunks both
ways; neither a download nor an upload is ever held whole in memory.
"""

import asyncio
import time
import xml.etree.ElementTree as ET
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote_plus

from minio.datatypes import Object
from minio.error import S3Error
from minio.helpers import MAX_MULTIPART_COUNT, MIN_PART_SIZE
from minio.xml import findall, findtext

from ..errors import Conflict, InvalidInput, NotFound, RequestTimeout
from ..models import (
    BucketInfo,
    BucketList,
    ObjectInfo,
    ObjectList,
    ObjectQuery,
    PresignedUrl,
    PresignRequest,
    StoredObject,
)
from .object_storage import ObjectStorage, check_bucket, check_key, require

# An upload holds a thread for as long as its body comes in; reads hold one per S3 call. A
# download holds two chunks: the one being written out and the next, read meanwhile.
DOWNLOAD_CHUNK_BYTES = 1024 * 1024
# Tornado hands a body over in 64 KiB pieces: at most 1 MiB of it waits for the upload thread.
UPLOAD_QUEUE_CHUNKS = 16
# One part of a multipart upload in flight at a time: an upload holds about two parts in
# memory (the one being sent, the next being read), whatever the object's size.
UPLOAD_PARALLEL_PARTS = 1
THREAD_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class ObjectHead:
    """What a download's headers say about an object."""

    bucket: str
    key: str
    size: int
    etag: str | None
    last_modified: datetime | None
    content_type: str


class UploadAborted(Exception):
    """The request body stopped coming (the client went away, or it was too large)."""


class UploadBody:
    """A request body as it arrives, as the file `put_object` reads in a thread.

    The event loop `feed`s chunks into a bounded queue, and Tornado reads no more of the
    socket until `feed` returns: a client is slowed to the upload's pace and memory stays
    bounded. The thread `read`s them; `abort` makes its next read fail, so that the SDK
    abandons a multipart upload instead of completing a truncated object. A body that
    stops coming for `idle_timeout` seconds (0: no limit) fails the read the same way, with
    `RequestTimeout`: a stalled client must not hold a storage thread forever."""

    def __init__(self, loop: asyncio.AbstractEventLoop, idle_timeout: float = 0.0):
        self._loop = loop
        self.idle_timeout = idle_timeout
        self._queue: asyncio.Queue = asyncio.Queue(UPLOAD_QUEUE_CHUNKS)
        self._leftover = b""
        self._ended = False
        self._aborted: str | None = None
        self._closed = False  # the upload ended (done or failed): what still comes is dropped
        self.received = 0

    # -- the event loop's side --
    async def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if not self._closed and not self._aborted:
            await self._queue.put(chunk)

    async def end(self) -> None:
        if not self._closed and not self._aborted:
            await self._queue.put(b"")

    def abort(self, reason: str) -> None:
        if self._aborted or self._closed:
            return
        self._aborted = reason
        try:
            self._queue.put_nowait(None)  # wakes a thread waiting for data
        except asyncio.QueueFull:
            pass  # the thread is not waiting: it sees `_aborted` before its next wait

    def close(self) -> None:
        """The upload is over: frees a `feed` waiting for room, drops what comes later."""
        self._closed = True
        while not self._queue.empty():
            self._queue.get_nowait()

    # -- the upload thread's side --
    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left for -1); b"" at the end of the body. Joined
        once: the SDK asks for a whole part (5 MiB) at a time."""
        pieces, have = [], 0
        if self._leftover:
            pieces.append(self._leftover)
            have = len(self._leftover)
            self._leftover = b""
        while (size < 0 or have < size) and not self._ended:
            chunk = self._next_chunk()
            if not chunk:
                self._ended = True
                break
            if 0 <= size < have + len(chunk):  # keep what goes beyond for the next read
                chunk, self._leftover = chunk[:size - have], chunk[size - have:]
            pieces.append(chunk)
            have += len(chunk)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _next_chunk(self) -> bytes:
        if self._aborted:
            raise UploadAborted(self._aborted)
        if self._loop.is_closed():
            raise UploadAborted("the server is stopping")
        waiting = asyncio.run_coroutine_threadsafe(self._queue.get(), self._loop)
        deadline = time.monotonic() + self.idle_timeout if self.idle_timeout else None
        while True:
            left = deadline - time.monotonic() if deadline is not None else THREAD_WAIT_SECONDS
            try:
                chunk = waiting.result(max(0.0, min(left, THREAD_WAIT_SECONDS)))
                break
            except FutureTimeout:
                # A slow client: wait on (never cancel: a chunk taken just then would be lost),
                # unless the loop that feeds the queue has stopped or the client went quiet.
                if self._loop.is_closed() or not self._loop.is_running():
                    raise UploadAborted("the server is stopping") from None
                if deadline is not None and time.monotonic() >= deadline and waiting.cancel():
                    # (A chunk the cancelled wait took just then is lost with the whole upload.)
                    self._aborted = "the request body stopped coming"
                    raise RequestTimeout(
                        f"no part of the request body came for {self.idle_timeout:g} s; the upload was abandoned "
                        "(DataHarbourApp.upload_idle_timeout)") from None
        if chunk is None:
            raise UploadAborted(self._aborted or "aborted")
        return chunk


class ObjectReader:
    """An object's bytes as S3 sends them, chunk by chunk, each read in a storage thread; the
    next chunk is read while the caller writes out the last, so S3 and the client overlap."""

    def __init__(self, service: "StorageService", response):
        self._service = service
        self._response = response
        self._ahead: asyncio.Future | None = None

    async def read(self) -> bytes:
        """The next chunk; b"" at the end."""
        ahead, self._ahead = self._ahead, None
        chunk = await (ahead or self._fetch())
        if chunk:
            self._ahead = asyncio.ensure_future(self._fetch())
        return chunk

    def _fetch(self):
        return self._service._call("read the object", self._response.read, DOWNLOAD_CHUNK_BYTES)

    async def close(self) -> None:
        if self._ahead is not None:  # the response is not thread-safe: its read ends first
            await asyncio.gather(self._ahead, return_exceptions=True)
        response = self._response
        await self._service._run(lambda: (response.close(), response.release_conn()))


class StorageService:
    def __init__(self, storage: ObjectStorage, *, max_object_bytes: int, upload_idle_timeout: float = 0.0):
        self.storage = storage
        self.max_object_bytes = max_object_bytes
        self.upload_idle_timeout = upload_idle_timeout

    def require(self) -> ObjectStorage:
        """The storage, or the clear 404 when none is configured."""
        return require(self.storage)

    def bucket(self, name: str | None, field: str = "bucket") -> str:
        """`name` checked by S3's rules, or the default bucket when no name is given."""
        if name is None:
            default = self.require().default_bucket
            if default is None:
                raise InvalidInput(field, "is required (no default bucket: MINIO_BUCKET_NAME is not set)")
            name = default
        return check_bucket(name, field)

    # ---- reads ------------------------------------------------------------------------
    async def buckets(self) -> BucketList:
        storage = self.require()
        found = await self._call("list buckets", lambda: storage.client.list_buckets())
        return BucketList(buckets=[BucketInfo(name=b.name, created=b.creation_date) for b in found],
                          default_bucket=storage.default_bucket)

    async def list_objects(self, query: ObjectQuery) -> ObjectList:
        self.require()
        bucket = self.bucket(query.bucket)
        if query.prefix:
            check_key(query.prefix, "prefix")
        if query.delimiter:
            check_key(query.delimiter, "delimiter")
        return await self._call(f"list {bucket}", self._list_page, bucket, query)

    def _list_page(self, bucket: str, query: ObjectQuery) -> ObjectList:
        """One page of ListObjectsV2. The SDK's list_objects pages internally and hides S3's
        continuation token, so the request is made through its signed-request primitive and
        the token passed through as the cursor: a page ends where S3 says, folders included."""
        params = {"list-type": "2", "delimiter": query.delimiter, "encoding-type": "url",
                  "max-keys": str(query.limit), "prefix": query.prefix}
        if query.cursor:
            params["continuation-token"] = query.cursor
        response = self.storage.client._execute("GET", bucket, query_params=params)
        root = ET.fromstring(response.data.decode())
        encoding = findtext(root, "EncodingType")
        objects = [Object.fromxml(element, bucket, encoding_type=encoding) for element in findall(root, "Contents")]
        if query.delimiter and query.prefix.endswith(query.delimiter):
            # The folder's own marker (`folder/`, as S3 consoles create folders) is not in it.
            objects = [o for o in objects if o.object_name != query.prefix]
        folders = [findtext(element, "Prefix", True) or "" for element in findall(root, "CommonPrefixes")]
        if encoding == "url":
            folders = [unquote_plus(folder) for folder in folders]
        truncated = (findtext(root, "IsTruncated") or "").lower() == "true"
        return ObjectList(
            bucket=bucket, prefix=query.prefix, delimiter=query.delimiter, folders=folders,
            objects=[ObjectInfo(key=o.object_name, size=o.size or 0, etag=o.etag, last_modified=o.last_modified)
                     for o in objects],
            next_cursor=(findtext(root, "NextContinuationToken") or None) if truncated else None,
        )

    async def head(self, bucket: str, key: str, action: str = "read") -> ObjectHead:
        storage = self.require()
        bucket, key = check_bucket(bucket), check_key(key)
        found = await self._call(f"{action} {bucket}/{key}", lambda: storage.client.stat_object(bucket, key))
        return ObjectHead(bucket, key, found.size or 0, found.etag or None, found.last_modified,
                          found.content_type or "application/octet-stream")

    async def open(self, head: ObjectHead, offset: int = 0, length: int = 0) -> ObjectReader:
        """The object's bytes from `offset` (`length` of them; 0: to the end), provided it is
        still the object `head` describes (If-Match): its headers must not describe another."""
        storage = self.require()
        headers = {"If-Match": f'"{head.etag}"'} if head.etag else None

        def get():
            try:
                return storage.client.get_object(head.bucket, head.key, offset=offset, length=length,
                                                 request_headers=headers)
            except S3Error as error:
                if error.code == "PreconditionFailed":
                    raise Conflict(f"{head.bucket}/{head.key} changed while it was being read: ask again") from None
                raise

        return ObjectReader(self, await self._call(f"read {head.bucket}/{head.key}", get))

    # ---- changes ----------------------------------------------------------------------
    async def check_writable(self, bucket: str, key: str) -> None:
        """Before an upload's body comes in: the names are valid, the bucket exists and the
        credentials work (404 / 502 now, not after gigabytes were sent)."""
        storage = self.require()
        bucket, key = check_bucket(bucket), check_key(key)
        exists = await self._call(f"write {bucket}/{key}", lambda: storage.client.bucket_exists(bucket))
        if not exists:
            raise NotFound(f"write {bucket}/{key}: bucket {bucket} does not exist")

    def start_upload(self, bucket: str, key: str, body: UploadBody, length: int | None,
                     content_type: str) -> "asyncio.Future[StoredObject]":
        """Starts `put_object` reading `body` in a storage thread; its result once the body
        has ended. A known `length` is sent as such; an unknown one as a multipart upload
        whose parts are large enough for `max_object_bytes`."""
        storage = self.require()
        # An unknown length needs a part size up front: S3 allows 10,000 parts.
        part_size = 0 if length is not None else max(MIN_PART_SIZE, -(-self.max_object_bytes // MAX_MULTIPART_COUNT))

        def put() -> StoredObject:
            written = storage.client.put_object(
                bucket, key, body, -1 if length is None else length, content_type=content_type,
                part_size=part_size, num_parallel_uploads=UPLOAD_PARALLEL_PARTS,
            )
            etag = (written.etag or "").strip('"') or None
            return StoredObject(bucket=bucket, key=key, size=body.received, etag=etag, version_id=written.version_id)

        upload = asyncio.ensure_future(self._call(f"write {bucket}/{key}", put))
        upload.add_done_callback(lambda _: body.close())
        return upload

    async def delete(self, bucket: str, key: str) -> None:
        """Deletes an object; 404 when there is none (S3 itself would answer 204 either way)."""
        head = await self.head(bucket, key, "delete")
        storage = self.storage
        await self._call(f"delete {bucket}/{key}", lambda: storage.client.remove_object(head.bucket, head.key))

    async def presign(self, request: PresignRequest) -> PresignedUrl:
        storage = self.require()
        bucket, key = self.bucket(request.bucket), check_key(request.key)
        now = datetime.now(timezone.utc).replace(microsecond=0)
        expires = timedelta(seconds=request.expires_seconds)
        # Signing is local, but the SDK first asks the bucket's region of the server (once).
        url = await self._call(f"presign {bucket}/{key}", lambda: storage.client.get_presigned_url(
            request.method, bucket, key, expires=expires, request_date=now))
        return PresignedUrl(url=url, method=request.method, bucket=bucket, key=key, expires_at=now + expires)

    # ---- threads ----------------------------------------------------------------------
    async def _call(self, what: str, function, *args):
        """`function(*args)` in a storage thread, the SDK's errors as domain errors."""

        def call():
            with self.storage.errors(what):
                return function(*args)

        return await self._run(call)

    async def _run(self, function, *args):
        return await self.storage.run(function, *args)
