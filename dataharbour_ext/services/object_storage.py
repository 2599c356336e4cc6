"""ObjectStorage: the S3 server the seed's MINIO_* variables name, through the minio SDK.

Shared by the storage API (services/storage.py) and jobs' inputs and artifacts. Blocking, as
the SDK is: callers run it in a thread. Names are checked by S3's rules before any request,
and the SDK's errors become domain errors: a missing bucket or object 404, refused
credentials or an unreachable endpoint 502 with the reason, never a 500 and never a secret.
"""

import asyncio
import functools
import os
import re
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from ..errors import BadGateway, InvalidInput, NotFound
from .health.settings import MinioSettings

NOT_CONFIGURED = "object storage is not configured: set MINIO_ENDPOINT (and MINIO_ACCESS_KEY, MINIO_SECRET_KEY)"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
MAX_KEY_BYTES = 1024
FILE_CHUNK_BYTES = 1024 * 1024  # read from S3 and written to a file at a time
# Threads of their own for every blocking storage call (the API's, inputs', artifacts'): a hung
# or slow S3 holds up storage work only, never the default pool that file and log reads use.
STORAGE_THREADS = 32
# S3's bucket naming rules: 3-63 characters, lower-case letters, digits, dots and hyphens,
# starting and ending with a letter or digit, not an IP address.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "NoSuchUpload", "NoSuchVersion"}


class StorageNotConfigured(NotFound):
    def __init__(self):
        super().__init__(NOT_CONFIGURED)


def check_bucket(name: str, field: str = "bucket") -> str:
    if not _BUCKET.fullmatch(name or "") or ".." in name or _IP_ADDRESS.fullmatch(name):
        raise InvalidInput(field, f"{name!r} is not a bucket name: 3-63 lower-case letters, digits, dots and "
                                  "hyphens, starting and ending with a letter or digit")
    return name


def check_key(key: str, field: str = "key") -> str:
    if not key:
        raise InvalidInput(field, "an object key must not be empty")
    if len(key.encode("utf-8", errors="surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidInput(field, f"an object key is at most {MAX_KEY_BYTES} bytes")
    if any(ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF for ch in key):
        raise InvalidInput(field, "an object key must not hold control characters")
    if any(segment in (".", "..") for segment in key.split("/")):
        # HTTP clients fold them away, so the request would not name the object signed for.
        raise InvalidInput(field, "an object key must not hold `.` or `..` path segments")
    return key


def parse_uri(uri: str, field: str = "uri") -> tuple[str, str]:
    """`s3://bucket/key` (s3a:// too, as Spark writes it) as (bucket, key). Split by hand: an
    object key may hold `?` and `#`, which a URL parser would take for a query or fragment."""
    scheme, separator, rest = uri.partition("://")
    bucket, slash, key = rest.partition("/")
    if not separator or scheme not in ("s3", "s3a") or not bucket or not slash or not key:
        raise InvalidInput(field, f"{uri!r} is not an s3://bucket/key URI")
    return check_bucket(bucket, field), check_key(key, field)


class ObjectStorage:
    def __init__(self, settings: MinioSettings | None):
        self.settings = settings
        self._client: Minio | None = None
        self._threads: ThreadPoolExecutor | None = None

    async def run(self, function, *args):
        """`function(*args)` on the storage's threads."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(max_workers=STORAGE_THREADS, thread_name_prefix="dataharbour-storage")
        return await asyncio.get_running_loop().run_in_executor(self._threads, functools.partial(function, *args))

    def shutdown(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)

    @property
    def configured(self) -> bool:
        return self.settings is not None

    @property
    def default_bucket(self) -> str | None:
        return self.settings.bucket if self.settings else None

    def secrets(self) -> list[str]:
        return self.settings.secrets() if self.settings else []

    @property
    def client(self) -> Minio:
        """The SDK's client (thread-safe; one connection pool). 404 when storage is not configured."""
        if self.settings is None:
            raise StorageNotConfigured()
        if self._client is None:
            settings = self.settings
            http = urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
                maxsize=10,
                cert_reqs="CERT_REQUIRED",
                # As the SDK's own default: a storage with a private CA is trusted through SSL_CERT_FILE.
                ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
                # The SDK retries itself; urllib3 retries connections only, twice, quickly.
                retries=urllib3.Retry(total=2, connect=2, read=0, redirect=0, status=0, backoff_factor=0.2),
            )
            self._client = Minio(settings.endpoint, access_key=settings.access_key, secret_key=settings.secret_key,
                                 secure=settings.secure, http_client=http)
        return self._client

    def download_file(self, bucket: str, key: str, target: Path,
                      before_chunk: Callable[[int], None] | None = None) -> int:
        """The object streamed into `target` through a fresh owner-only partial file renamed into
        place (never another file's name; a log may quote credentials): whole or not at all.
        `before_chunk(bytes so far)` may raise to stop. Its size; blocking (a storage thread)."""
        response = self.client.get_object(bucket, key)
        partial = None
        written = 0
        try:
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=".dataharbour-", suffix=".partial")  # 0600
            partial = Path(name)
            with os.fdopen(fd, "wb") as out:
                for chunk in response.stream(FILE_CHUNK_BYTES):
                    written += len(chunk)
                    if before_chunk is not None:
                        before_chunk(written)
                    out.write(chunk)
            os.replace(partial, target)
            partial = None
            return written
        finally:
            if partial is not None:
                partial.unlink(missing_ok=True)
            response.close()
            response.release_conn()

    @contextmanager
    def errors(self, what: str):
        """The SDK's and urllib3's errors while doing `what`, as domain errors."""
        try:
            yield
        except S3Error as error:
            if error.code in _MISSING:
                raise NotFound(f"{what}: {error.code}: {error.message}") from None
            raise BadGateway(f"{what}: object storage refused it: {error.code}: {error.message}") from None
        except (InvalidResponseError, ServerError) as error:
            raise BadGateway(f"{what}: object storage answered badly: {self._scrub(str(error))[:300]}") from None
        except urllib3.exceptions.HTTPError as error:
            endpoint = self.settings.endpoint if self.settings else "?"
            cause = getattr(error, "reason", None) or error  # a MaxRetryError's reason is the last failure
            raise BadGateway(f"{what}: cannot reach object storage at {endpoint}: "
                             f"{self._scrub(_describe(cause))}") from None  # fmt: skip
        except ValueError as error:  # the SDK's own argument checks
            raise InvalidInput(None, f"{what}: {self._scrub(str(error))}") from None

    def _scrub(self, text: str) -> str:
        for secret in self.secrets():
            text = text.replace(secret, "********")
        return text


def _describe(error: BaseException) -> str:
    """The kind of failure and the system's words for it (connection refused, name unknown)."""
    text = str(error)
    words = text.rsplit(": ", 1)[-1] if ": " in text else text
    return f"{type(error).__name__}: {words[:200]}" if words else type(error).__name__


def require(storage: "ObjectStorage | None") -> ObjectStorage:
    if storage is None or not storage.configured:
        raise StorageNotConfigured()
    return storage

