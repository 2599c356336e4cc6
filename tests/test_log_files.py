"""Log pages and tails by byte offset, including partial lines and large files."""

from dataharbour_ext.store import log_files
from dataharbour_ext.store.log_files import read_page, read_tail


def _write(path, text):
    path.write_bytes(text.encode())
    return str(path)


def test_tail_returns_the_last_lines(tmp_path):
    path = _write(tmp_path / "log", "".join(f"line {i}\n" for i in range(100)))
    part = read_tail(path, 3, final=True)
    assert part.lines == ["line 97", "line 98", "line 99"]
    assert part.next_offset == part.size
    assert read_tail(path, 1000, final=True).lines == [f"line {i}" for i in range(100)]


def test_tail_across_block_boundaries_of_a_large_log(tmp_path):
    lines = [f"{i:08d} " + "x" * (i % 300) for i in range(40_000)]
    path = _write(tmp_path / "log", "\n".join(lines) + "\n")
    assert read_tail(path, 1000, final=True).lines == lines[-1000:]
    part = read_tail(path, 1, final=True)
    assert part.lines == lines[-1:] and part.offset == part.size - len(lines[-1]) - 1


def test_partial_last_line_waits_while_running(tmp_path):
    path = _write(tmp_path / "log", "one\ntwo\nthr")
    assert read_tail(path, 5, final=False).lines == ["one", "two"]
    assert read_tail(path, 5, final=True).lines == ["one", "two", "thr"]
    page = read_page(path, 0, 10, final=False)
    assert page.lines == ["one", "two"] and page.next_offset == 8
    assert read_page(path, 8, 10, final=False).lines == []
    assert read_page(path, 8, 10, final=True).lines == ["thr"]


def test_pages_follow_next_offset_to_the_end(tmp_path):
    path = _write(tmp_path / "log", "".join(f"l{i}\n" for i in range(25)))
    seen, offset = [], 0
    for _ in range(10):
        page = read_page(path, offset, 10, final=True)
        seen += page.lines
        if page.next_offset == offset:
            break
        offset = page.next_offset
    assert seen == [f"l{i}" for i in range(25)]


def test_missing_log_and_offsets_past_the_end(tmp_path):
    missing = str(tmp_path / "none")
    assert read_tail(missing, 5, final=False).lines == []
    assert read_page(missing, 0, 5, final=False).lines == []
    path = _write(tmp_path / "log", "a\n")
    page = read_page(path, 50, 5, final=True)
    assert page.lines == [] and page.next_offset == 50


def test_undecodable_bytes_are_replaced_not_fatal(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"ok\n\xff\xfe bad\n")
    assert read_tail(str(path), 2, final=True).lines == ["ok", "\ufffd\ufffd bad"]


def test_page_limit_holds_at_the_end_of_a_final_log(tmp_path):
    path = _write(tmp_path / "log", "a\nb")
    assert read_page(path, 0, 1, final=True).lines == ["a"]
    assert read_page(path, 2, 1, final=True).lines == ["b"]


def test_only_newline_ends_a_line(tmp_path):
    path = _write(tmp_path / "log", "x\r50%\r100%\r\nnext\u2028same line\n")
    assert read_tail(path, 1, final=True).lines == ["next\u2028same line"]
    assert read_page(path, 0, 1, final=True).lines == ["x\r50%\r100%"]


def test_partial_line_longer_than_a_block_is_left_while_running(tmp_path):
    path = _write(tmp_path / "log", "done\n" + "p" * 200_000)
    assert read_tail(path, 3, final=False).lines == ["done"]
    assert read_tail(path, 1, final=True).lines == ["p" * 200_000]


def test_tail_of_one_enormous_line_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(log_files, "MAX_TAIL_BYTES", 256 * 1024)
    path = _write(tmp_path / "log", "first\n" + "z" * 1_000_000 + "\nlast\n")
    part = read_tail(path, 2, final=True)
    assert part.lines[-1] == "last" and len(part.lines) == 1  # the cut line is not half-shown


def test_enormous_line_pages_split_on_character_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(log_files, "MAX_PAGE_BYTES", 64 * 1024)
    text = "é" * 100_000  # two bytes each, no newline
    path = _write(tmp_path / "log", text + "\n")
    pieces, offset = [], 0
    for _ in range(10):
        page = read_page(path, offset, 10, final=True)
        if page.next_offset == offset:
            break
        pieces += page.lines
        offset = page.next_offset
    assert "".join(pieces) == text


def test_tails_before_an_offset_walk_back_to_the_start_with_no_gap(tmp_path):
    """How a log view loads earlier lines: each tail ends where the previous one began."""
    path = tmp_path / "walk.log"
    path.write_text("".join(f"line {i:04d}\n" for i in range(5000)) + "partial")
    got, before = [], None
    part = read_tail(str(path), 700, final=False)
    assert part.lines[-1] == "line 4999" and part.size == path.stat().st_size
    got = part.lines
    before = part.offset
    while before > 0:
        part = read_tail(str(path), 700, final=False, before=before)
        assert part.next_offset == before and part.lines
        got = part.lines + got
        before = part.offset
    assert got == [f"line {i:04d}" for i in range(5000)]
    assert read_tail(str(path), 10, final=False, before=0).lines == []
