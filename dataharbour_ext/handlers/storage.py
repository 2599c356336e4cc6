"""REST handlers for /api/v1/storage: buckets, listings, objects streamed in and out, presigned URLs.

Reads are `read`, uploads and deletes `write`; a presigned URL needs what its use does (GET
`read`, PUT `write`). An upload's body streams: Tornado calls `put` only once the whole body
has arrived, so its checks (token, authorization, names, size, the bucket) run in `prepare`,
before any of it is read, and the body flows to S3 while it arrives.
"""

import asyncio
import json
import re
import sys

from jupyter_server.auth.decorator import authorized
from tornado import web
from tornado.iostream import StreamClosedError

from ..errors import DataHarbourError, InvalidInput, PayloadTooLarge
from ..models import ObjectQuery, PresignRequest
from ..services.storage import ObjectHead, UploadAborted, UploadBody
from .base import DataHarbourHandler
from .notebooks import attachment

AUTH_RESOURCE = "dataharbour:storage"
READ = "read"
WRITE = "write"
SMALL_BODY_BYTES = 64 * 1024
# Tornado refuses a chunked body past its own limit by closing the connection, at the chunk
# that crosses it; a little above ours, so that a body just over the limit gets our 413.
CHUNKED_SLACK_BYTES = 64 * 1024 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def requested_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`(first, last)` byte of a single `Range: bytes=...` within an object of `size` bytes;
    None to send the whole object (no Range, another unit, several ranges or bad syntax:
    RFC 9110 lets a server ignore those). ValueError: a range the object cannot satisfy."""
    match = _RANGE.fullmatch((header or "").strip())
    if match is None or not any(match.groups()):
        return None
    first, last = match.groups()
    if not first:  # bytes=-N: the last N bytes
        if int(last) == 0 or size == 0:
            raise ValueError(f"the last {last} bytes of an object of {size} bytes")
        return max(size - int(last), 0), size - 1
    if last and int(last) < int(first):
        return None  # not a valid range: ignored
    if int(first) >= size:
        raise ValueError(f"bytes from {first} of an object of {size} bytes")
    return int(first), min(int(last), size - 1) if last else size - 1


class StorageBaseHandler(DataHarbourHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def storage(self):
        return self.services["storage"]


class BucketListHandler(StorageBaseHandler):
    @web.authenticated
    @authorized(READ)
    async def get(self):
        self.write_model(await self.storage.buckets())


class ObjectListHandler(StorageBaseHandler):
    @web.authenticated
    @authorized(READ)
    async def get(self):
        self.write_model(await self.storage.list_objects(self.parse_query(ObjectQuery)))


class PresignHandler(StorageBaseHandler):
    @web.authenticated
    @authorized(READ)
    async def post(self):
        request = self.parse_body(PresignRequest, SMALL_BODY_BYTES)
        if request.method == "PUT":
            await self._may_write()
        self.write_model(await self.storage.presign(request))

    @web.authenticated
    @authorized(WRITE)
    async def _may_write(self) -> None:
        """A PUT URL lets its holder write: the asker needs `write`."""


@web.stream_request_body
class ObjectHandler(StorageBaseHandler):
    _body: UploadBody | None = None
    _body_complete = False  # the whole body came: `put` answers, whatever the upload's outcome
    _client_gone = False
    _upload = None

    # ---- download ---------------------------------------------------------------------
    @web.authenticated
    @authorized(READ)
    async def get(self, bucket: str, key: str):
        await self._send(await self.storage.head(bucket, key), with_body=True)

    @web.authenticated
    @authorized(READ)
    async def head(self, bucket: str, key: str):
        await self._send(await self.storage.head(bucket, key), with_body=False)

    async def _send(self, head: ObjectHead, with_body: bool) -> None:
        try:
            byte_range = requested_range(self.request.headers.get("Range"), head.size)
        except ValueError as problem:
            return self._not_satisfiable(head, str(problem))
        first, last = byte_range or (0, head.size - 1)
        reader = await self.storage.open(head, first, last - first + 1) if with_body and head.size else None
        if byte_range:
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {first}-{last}/{head.size}")
        self.set_header("Content-Type", head.content_type)
        self.set_header("Content-Length", str(last - first + 1))
        self.set_header("Accept-Ranges", "bytes")
        if head.etag:
            self.set_header("ETag", f'"{head.etag}"')
        if head.last_modified:
            self.set_header("Last-Modified", head.last_modified)
        # Any content type may be stored: never rendered as a page of this server's origin.
        self.set_header("Content-Disposition", attachment(head.key.rsplit("/", 1)[-1] or "object"))
        self.set_header("Content-Security-Policy", "sandbox; default-src 'none'")
        self.set_header("X-Content-Type-Options", "nosniff")
        if reader is None:  # HEAD, or an empty object: Jupyter's own finish would say JSON
            self.finish(set_content_type=head.content_type)
            return
        try:
            while chunk := await reader.read():
                self.write(chunk)
                await self.flush()
        except StreamClosedError:
            pass  # the client went away
        except DataHarbourError as error:
            if not self._headers_written:
                raise
            # The status is sent: cutting the connection short is the only way left to say so.
            self.log.warning("%s %s: %s; the response was cut short", self.request.method, self.request.path,
                             error.message)
            self.request.connection.close()
        finally:
            await reader.close()

    def _not_satisfiable(self, head: ObjectHead, problem: str) -> None:
        self._error_message = f"Range {self.request.headers.get('Range')!r}: {problem}"
        self.set_header("Content-Range", f"bytes */{head.size}")
        self.write_json(json.dumps({"message": self._error_message, "reason": "Range Not Satisfiable"})
                        .encode(), 416)

    # ---- upload -----------------------------------------------------------------------
    async def prepare(self):
        await super().prepare()
        if self.request.method == "PUT":
            await self._start_upload(**self.path_kwargs)

    @web.authenticated
    @authorized(WRITE)
    async def _start_upload(self, bucket: str, key: str) -> None:
        length = self._declared_length()
        limit = self.storage.max_object_bytes
        if length is not None and length > limit:
            raise PayloadTooLarge(f"the body is {length} bytes; objects are at most {limit} bytes "
                                  "(DataHarbourApp.max_object_bytes)")
        await self.storage.check_writable(bucket, key)
        self.request.connection.set_max_body_size(limit + CHUNKED_SLACK_BYTES)
        content_type = self.request.headers.get("Content-Type") or "application/octet-stream"
        self._body = UploadBody(asyncio.get_running_loop(), idle_timeout=self.storage.upload_idle_timeout)
        self._upload = self.storage.start_upload(bucket, key, self._body, length, content_type)
        self._upload.add_done_callback(self._upload_ended)

    def _declared_length(self) -> int | None:
        if "Content-Length" not in self.request.headers:
            return None  # chunked: the length shows at the end
        try:
            return int(self.request.headers["Content-Length"])
        except ValueError:
            raise InvalidInput("Content-Length", "must be a number of bytes") from None

    async def data_received(self, chunk: bytes) -> None:
        if self._body is None or self._finished:
            return  # not an upload, or already answered: the rest is dropped
        limit = self.storage.max_object_bytes
        if self._body.received + len(chunk) > limit:
            self._body.abort("the body is too large")
            try:
                raise PayloadTooLarge(f"the body is larger than {limit} bytes, the most an object may be "
                                      "(DataHarbourApp.max_object_bytes)")
            except PayloadTooLarge:
                self.send_error(413, exc_info=sys.exc_info())  # now, not after the rest has come
            return
        if self._upload.done():  # failed mid-way: answered by `_upload_ended`, now or just before
            self._upload_ended(self._upload)
            if self._finished:
                return
        await self._body.feed(chunk)

    def _upload_ended(self, upload: asyncio.Future) -> None:
        """An upload that failed while its body was still coming in (S3 failed, or the client
        sent nothing for upload_idle_timeout seconds) is answered now, not after the rest of
        the body, which may never come; Tornado then closes the connection, the rest unread."""
        error = None if upload.cancelled() else upload.exception()  # (always looked at: never "unretrieved")
        if error is None or isinstance(error, UploadAborted) or self._body_complete or self._finished \
                or self._client_gone:
            return  # a success, a body refused (answered already), nobody to answer, or `put` answers
        exc_info = (type(error), error, error.__traceback__)
        self.log_exception(*exc_info)  # as Tornado does: a bug's traceback; a domain error logs one line
        self.send_error(getattr(error, "status", 500), exc_info=exc_info)

    @web.authenticated
    @authorized(WRITE)
    async def put(self, bucket: str, key: str):
        self._body_complete = True
        await self._body.end()
        self.write_model(await self._upload)

    def on_connection_close(self) -> None:
        self._client_gone = True
        if self._body is not None and not self._finished:
            self._body.abort("the client closed the connection")
            self.log.warning("%s %s: the client closed the connection; the upload was abandoned",
                             self.request.method, self.request.path)
        super().on_connection_close()

    # ---- delete -----------------------------------------------------------------------
    @web.authenticated
    @authorized(WRITE)
    async def delete(self, bucket: str, key: str):
        await self.storage.delete(bucket, key)
        self.set_status(204)
        self.finish()
