"""The syntax check of submitted programs: right verdicts, and the event loop keeps running."""

import asyncio
import logging
import time

import psutil
import pytest

from dataharbour_ext.errors import InvalidInput
from dataharbour_ext.services.program_check import check_syntax

# 450 KB of list comprehensions: compile() needs 15-30 s for it, all of it holding the GIL.
SLOW_TO_COMPILE = "[i for i in y]\n" * (450 * 1024 // 15)


async def _max_loop_lag_while(awaitable, tick: float = 0.01) -> float:
    """Run `awaitable` while a ticker measures how late the loop wakes it; the worst delay."""
    worst = 0.0
    done = asyncio.Event()

    async def ticker():
        nonlocal worst
        while not done.is_set():
            start = time.monotonic()
            await asyncio.sleep(tick)
            worst = max(worst, time.monotonic() - start - tick)

    task = asyncio.create_task(ticker())
    try:
        await awaitable
    finally:
        done.set()
        await task
    return worst


async def test_valid_program_passes():
    await check_syntax("from pyspark.sql import SparkSession\nprint(1)\n", "<job>", "code")


async def test_large_valid_program_passes_through_the_worker():
    program = "x = [i * 2 for i in range(10)]\n" * 2000  # 62 KB, over the inline limit
    await check_syntax(program, "<job>", "code", timeout=60)


@pytest.mark.parametrize("size", ["small", "large"])
async def test_syntax_error_names_field_and_line(size):
    program = ("x = 1\n" * (10 if size == "small" else 5000)) + "def broken(:\n"
    line = program.count("\n")
    with pytest.raises(InvalidInput) as caught:
        await check_syntax(program, "job.py", "file", timeout=60)
    assert caught.value.message == f"file: SyntaxError (line {line}): invalid syntax"


@pytest.mark.parametrize(
    "program",
    [
        "-" * 200_000 + "1",
        "a" + ".b" * 200_000,
        "f" + "()" * 200_000,
        "lambda: " * 200_000 + "1",
        "-" * 10_000 + "1",  # small enough to compile inline
        "(" * 10_000,
    ],
    ids=["unary-chain", "attribute-chain", "call-chain", "nested-lambdas", "inline-unary-chain", "open-parens"],
)
async def test_pathological_programs_get_a_clear_400(program):
    with pytest.raises(InvalidInput) as caught:
        await check_syntax(program, "<job>", "code", timeout=60)
    assert caught.value.status == 400
    assert caught.value.message.startswith("code: "), caught.value.message


async def test_slow_program_does_not_block_the_event_loop(caplog):
    caplog.set_level(logging.INFO, logger="dataharbour_ext.services.program_check")
    started = time.monotonic()
    lag = await _max_loop_lag_while(check_syntax(SLOW_TO_COMPILE, "<job>", "code", timeout=2.0))
    assert lag < 0.2, f"the event loop stalled for {lag:.3f}s"
    # It is a valid program: accepted, either checked in time or unchecked after the timeout.
    if time.monotonic() - started >= 2.0:
        assert "accepting it unchecked" in caplog.text


async def test_timeout_accepts_the_program_and_stops_the_worker(caplog):
    caplog.set_level(logging.INFO, logger="dataharbour_ext.services.program_check")
    await check_syntax(SLOW_TO_COMPILE, "<job>", "code", timeout=0.5)
    assert "took over 0.5s; accepting it unchecked" in caplog.text
    workers = [p for p in psutil.Process().children() if "program_check" in " ".join(p.cmdline())]
    assert not workers


async def test_crashed_worker_accepts_the_program(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="dataharbour_ext.services.program_check")
    monkeypatch.setattr("sys.executable", "/bin/false")
    await check_syntax("x = 1\n" * 5000 + "def broken(:\n", "<job>", "code")
    assert "accepting it unchecked" in caplog.text
