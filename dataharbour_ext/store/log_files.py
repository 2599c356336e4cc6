"""Reading run logs by byte offset: a page costs O(page), a tail costs O(tail), never O(file)."""

import os
from dataclasses import dataclass

BLOCK = 64 * 1024
MAX_PAGE_BYTES = 4 * 1024 * 1024


@dataclass
class LogSlice:
    lines: list[str]
    offset: int
    next_offset: int
    size: int


def _decode(chunk: bytes) -> list[str]:
    return chunk.decode("utf-8", errors="replace").splitlines()


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def read_page(path: str, offset: int, limit: int, *, final: bool) -> LogSlice:
    """Up to `limit` whole lines from byte `offset`.

    While the run is still writing (`final=False`) a trailing partial line is left for the
    next call, so a client following `next_offset` never sees a line split in two.
    """
    size = _size(path)
    if offset >= size:
        return LogSlice([], offset, offset, size)
    with open(path, "rb") as f:
        f.seek(offset)
        data = bytearray()
        newlines = 0
        while newlines < limit and len(data) < MAX_PAGE_BYTES:
            chunk = f.read(BLOCK)
            if not chunk:
                break
            newlines += chunk.count(b"\n")
            data += chunk
    end = 0
    for _ in range(limit):
        nl = data.find(b"\n", end)
        if nl < 0:
            break
        end = nl + 1
    at_eof = offset + len(data) >= size
    if end < len(data) and (final and at_eof and data.count(b"\n", end) == 0):
        end = len(data)  # the run is over: its last line will never get a newline
    elif end == 0 and len(data) >= MAX_PAGE_BYTES:
        end = len(data)  # one enormous line: hand it out in pieces rather than never
    return LogSlice(_decode(bytes(data[:end])), offset, offset + end, size)


def read_tail(path: str, count: int, *, final: bool) -> LogSlice:
    """The last `count` whole lines, reading backwards block by block from the end."""
    size = _size(path)
    if size == 0:
        return LogSlice([], 0, 0, 0)
    with open(path, "rb") as f:
        end = size
        if not final:
            # Drop a partial last line that is still being written.
            f.seek(max(0, size - BLOCK))
            tail_block = f.read(size - max(0, size - BLOCK))
            last_nl = tail_block.rfind(b"\n")
            if last_nl >= 0:
                end = size - len(tail_block) + last_nl + 1
            elif size <= BLOCK:
                end = 0
        data = b""
        pos = end
        # count+1 newlines before the wanted lines bound the slice (the file's last byte is
        # usually a newline itself).
        while pos > 0 and data.count(b"\n") <= count:
            step = min(BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    start = 0
    body = data[:-1] if data.endswith(b"\n") else data
    cut = len(body)
    for _ in range(count):
        cut = body.rfind(b"\n", 0, cut)
        if cut < 0:
            break
    if cut >= 0:
        start = cut + 1
    return LogSlice(_decode(data[start:]), pos + start, end, size)
