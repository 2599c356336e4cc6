"""Reading run logs by byte offset: a page costs O(page), a tail costs O(tail), never O(file).

Lines end with "\\n" (a "\\r" before it is dropped); "\\r" alone, as progress bars print it,
does not end a line. While a run still writes (`final=False`), a trailing partial line is
left for later, so a client following `next_offset` never sees a line split in two.
"""

import os
from dataclasses import dataclass

BLOCK = 64 * 1024
# One response carries at most this much log text: encoding a bigger one holds the GIL
# (and so Jupyter's event loop) for tens of milliseconds, whichever thread does it.
MAX_PAGE_BYTES = 512 * 1024
MAX_TAIL_BYTES = 512 * 1024


@dataclass
class LogSlice:
    lines: list[str]
    offset: int
    next_offset: int
    size: int


def _decode(chunk: bytes) -> list[str]:
    lines = chunk.decode("utf-8", errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def _utf8_boundary(data: bytearray, end: int) -> int:
    """Back `end` up so that it does not cut a UTF-8 character in two."""
    start = end
    while start > 0 and end - start < 3 and data[start - 1] & 0xC0 == 0x80:
        start -= 1  # continuation bytes of the last character
    if start > 0 and data[start - 1] >= 0xC0:  # its lead byte says how long it is
        lead = data[start - 1]
        length = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        if end - (start - 1) < length:
            return start - 1
    return end


def read_page(path: str, offset: int, limit: int, *, final: bool) -> LogSlice:
    """Up to `limit` whole lines from byte `offset` (a `next_offset` of an earlier slice)."""
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
    end = taken = 0
    while taken < limit:
        nl = data.find(b"\n", end)
        if nl < 0:
            break
        end, taken = nl + 1, taken + 1
    if end < len(data) and taken < limit:
        if final and offset + len(data) >= size:
            end = len(data)  # the run is over: its last line will never get a newline
        elif end == 0 and len(data) >= MAX_PAGE_BYTES:
            end = _utf8_boundary(data, len(data))  # one enormous line: hand it out in pieces
    return LogSlice(_decode(bytes(data[:end])), offset, offset + end, size)


def read_tail(path: str, count: int, *, final: bool, before: int | None = None) -> LogSlice:
    """The last `count` whole lines, reading backwards block by block from the end, or
    from `before` (the `offset` of an earlier slice: a line start) to read further back.

    Reads at most MAX_TAIL_BYTES: a tail of enormous lines is cut to what fits.
    """
    file_size = _size(path)
    size = file_size if before is None else min(before, file_size)
    if before is not None:
        final = True  # `before` is where a line starts: everything up to it is whole lines
    if size == 0:
        return LogSlice([], 0, 0, file_size)
    blocks: list[bytes] = []  # newest first
    newlines = 0
    end = size if final else None  # None: the end of the last whole line is still unknown
    pos = size
    with open(path, "rb") as f:
        while pos > 0 and size - pos < MAX_TAIL_BYTES and newlines <= count:
            step = min(BLOCK, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            if end is None:
                last_nl = block.rfind(b"\n")
                if last_nl < 0:
                    continue  # all of this block belongs to the unfinished last line
                end = pos + last_nl + 1
                block = block[: last_nl + 1]
            blocks.append(block)
            newlines += block.count(b"\n")
    if end is None or not blocks:
        return LogSlice([], 0, 0, file_size)
    data = b"".join(reversed(blocks))
    # `count` lines need the newline that ends the line before them (unless the file starts).
    body = data[:-1] if data.endswith(b"\n") else data
    cut = len(body)
    for _ in range(count):
        cut = body.rfind(b"\n", 0, cut)
        if cut < 0:
            break
    if cut >= 0:
        start = cut + 1
    elif pos == 0:
        start = 0
    else:  # the byte cap cut the oldest line: drop its partial start
        first_nl = data.find(b"\n")
        start = first_nl + 1 if 0 <= first_nl < len(data) - 1 else 0
    return LogSlice(_decode(data[start:]), pos + start, end, file_size)
