"""Bodies that stream: an upload's bytes read from a file a chunk at a time, and a download
written to a file as it arrives. So an object is never held whole in memory when it comes
from or goes to a file; the sync and the async transport both use these."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

CHUNK_BYTES = 1024 * 1024  # read from a file, or written to one, at a time
DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class UploadBody:
    """An upload's bytes: `bytes` as they are; a `str` or `os.PathLike` is a file path, read in
    chunks; a binary file object or an iterable of bytes chunks (an async iterable too, in the
    async client) is streamed as it is read. Whether a failed attempt may be sent again is the
    transport's to say (`transport.RetryPolicy`), from `replayable` and `path`."""

    source: Any
    content_type: str = DEFAULT_CONTENT_TYPE

    @classmethod
    def of(cls, data_or_path: Any, content_type: str | None = None) -> UploadBody:
        if isinstance(data_or_path, (bytearray, memoryview)):
            data_or_path = bytes(data_or_path)
        if isinstance(data_or_path, str):
            data_or_path = Path(data_or_path)
        if not isinstance(data_or_path, (bytes, os.PathLike)) and not hasattr(data_or_path, "read") \
                and not isinstance(data_or_path, (Iterable, AsyncIterable)):
            raise TypeError(f"upload bytes, a file path, a binary file object or an iterable of bytes, "
                            f"not {type(data_or_path).__name__}")
        return cls(data_or_path, content_type or DEFAULT_CONTENT_TYPE)

    @property
    def path(self) -> str | None:
        """The file read from, if the body is one: it can be opened again from its start."""
        return os.fspath(self.source) if isinstance(self.source, os.PathLike) else None

    @property
    def replayable(self) -> bool:
        """Bytes can be sent again as they are; a stream only once (a path: see RetryPolicy)."""
        return isinstance(self.source, bytes)

    def _headers(self, length: int | None) -> dict[str, str]:
        # A known length is declared, so the server refuses an object too large before reading
        # it (413) and uploads it in one piece when small; an unknown one goes chunked.
        headers = {"Content-Type": self.content_type}
        if length is not None:
            headers["Content-Length"] = str(length)
        return headers

    @contextmanager
    def sync_content(self) -> Iterator[tuple[Any, dict[str, str]]]:
        """`(content, headers)` for httpx.Client, with any file it opened closed afterwards."""
        if isinstance(self.source, bytes):
            yield self.source, self._headers(len(self.source))
        elif self.path is not None:
            with open(self.path, "rb") as file:
                yield _file_chunks(file), self._headers(_remaining_bytes(file))
        elif hasattr(self.source, "read"):
            yield _file_chunks(self.source), self._headers(_remaining_bytes(self.source))
        elif isinstance(self.source, Iterable):
            yield iter(self.source), self._headers(None)
        else:
            raise TypeError("an async iterable is uploaded by the async client only")

    @asynccontextmanager
    async def async_content(self) -> AsyncIterator[tuple[Any, dict[str, str]]]:
        """`(content, headers)` for httpx.AsyncClient; file reads run on a thread."""
        if isinstance(self.source, bytes):
            yield self.source, self._headers(len(self.source))
        elif self.path is not None:
            file = await asyncio.to_thread(open, self.path, "rb")
            try:
                yield _async_file_chunks(file), self._headers(await asyncio.to_thread(_remaining_bytes, file))
            finally:
                await asyncio.to_thread(file.close)
        elif hasattr(self.source, "read"):
            length = await asyncio.to_thread(_remaining_bytes, self.source)
            yield _async_file_chunks(self.source), self._headers(length)
        elif isinstance(self.source, AsyncIterable):
            yield self.source, self._headers(None)
        else:
            yield _async_chunks(iter(self.source)), self._headers(None)


def _file_chunks(file: BinaryIO) -> Iterator[bytes]:
    while chunk := file.read(CHUNK_BYTES):
        yield chunk


async def _async_file_chunks(file: BinaryIO) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
        yield chunk


async def _async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A blocking iterator (a generator reading a file, say) stepped on a thread."""
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        yield chunk


def _remaining_bytes(file: BinaryIO) -> int | None:
    """Bytes left in a plain file on disk from its position; None for anything else (a pipe, a
    BytesIO, a gzip.GzipFile: its descriptor's size is not what it reads), which goes chunked."""
    raw = file.raw if isinstance(file, (io.BufferedReader, io.BufferedRandom)) else file
    if not isinstance(raw, io.FileIO):
        return None
    try:
        status = os.fstat(file.fileno())
        return max(status.st_size - file.tell(), 0) if stat.S_ISREG(status.st_mode) else None
    except (OSError, ValueError):
        return None


# ---- downloads into a file ------------------------------------------------------------------
# The body goes to a temporary file beside the target, renamed over it once complete: a
# failed or interrupted download leaves no partial file where the whole one is expected, and
# an attempt that is retried starts from an empty file.


def _temporary_beside(target: Path) -> tuple[BinaryIO, str]:
    descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.chmod(name, 0o666 & ~_umask())  # as a file opened for writing would be, not mkstemp's 0600
    return os.fdopen(descriptor, "wb"), name


def _umask() -> int:
    mask = os.umask(0o022)  # read by setting it: there is no other way
    os.umask(mask)
    return mask


def save_sync(chunks: Iterable[bytes], target: str | os.PathLike) -> Path:
    """Write `chunks` to the file `target` as they come; the target's path once complete."""
    target = Path(target)
    file, name = _temporary_beside(target)
    try:
        with file:
            for chunk in chunks:
                file.write(chunk)
        os.replace(name, target)
    except BaseException:
        _remove(name)
        raise
    return target


async def save_async(chunks: AsyncIterable[bytes], target: str | os.PathLike) -> Path:
    """`save_sync` for async code: the file's writes run on a thread, one chunk at a time."""
    target = Path(target)
    file, name = await asyncio.to_thread(_temporary_beside, target)
    try:
        try:
            pending = bytearray()  # the pieces as they arrive, written a chunk at a time (fewer thread hops)
            async for piece in chunks:
                pending += piece
                if len(pending) >= CHUNK_BYTES:
                    await asyncio.to_thread(file.write, pending)
                    pending.clear()
            if pending:
                await asyncio.to_thread(file.write, pending)
        finally:
            await asyncio.to_thread(file.close)
        await asyncio.to_thread(os.replace, name, target)
    except BaseException:
        _remove(name)
        raise
    return target


def _remove(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass
